//! Delegation, the requester's side: discover -> choose -> (stake) -> task -> result.
//!
//! `/delegate` calls [`Requester::delegate`]. It asks every node the topology knows
//! (`resource_request`), collects `resource_ad`s for a short window, picks the best by
//! model, price, free memory and load, sends the `task`, and waits for the `task_result`
//! or `task_error` until the deadline. The router feeds ads and results in through the
//! `on_*` methods; each checks that the sender is the node the job was given to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::axl::{AxlError, PeerKey};
use crate::ctx::NodeCtx;
use crate::inference::model_matches;
use crate::jobs::{now_ms, JobRecord, JobState, Side, Timings};
use crate::payment::{PayProgress, RequesterPayments};
use crate::request::{
    DelegateError, DelegateRequest, DelegateResponse, PaymentSummary, ProviderInfo, ValidRequest,
    WaitFor,
};

/// How long a paid delegation waits for the proof after its result, at least.
const PROOF_GRACE: Duration = Duration::from_secs(10);
use crate::front::stream::{ChunkDrop, ChunkRegistry, StreamEvent};
use crate::protocol::{
    JobId, Message, ResourceAd, ResourceRequest, Task, TaskCancel, TaskChunk, TaskError, TaskResult,
};

enum Outcome {
    Result(TaskResult),
    Error(TaskError),
}

struct Waiter {
    provider: PeerKey,
    tx: oneshot::Sender<Outcome>,
}

/// The requester side of a node.
pub struct Requester {
    ctx: Arc<NodeCtx>,
    payments: Arc<dyn RequesterPayments>,
    discoveries: Mutex<HashMap<Uuid, mpsc::UnboundedSender<ResourceAd>>>,
    waiting: Mutex<HashMap<JobId, Waiter>>,
    /// Streamed jobs: where their `task_chunk`s go (see [`crate::front::stream`]).
    chunks: ChunkRegistry,
}

/// Removes a discovery's or a job's entry from its map however the delegation ends.
struct Unregister<'a> {
    req: &'a Requester,
    request_id: Uuid,
    job_id: JobId,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        lock(&self.req.discoveries).remove(&self.request_id);
        lock(&self.req.waiting).remove(&self.job_id);
        self.req.chunks.remove(&self.job_id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Requester {
    /// A requester over the shared node state.
    pub fn new(ctx: Arc<NodeCtx>, payments: Arc<dyn RequesterPayments>) -> Self {
        Requester {
            ctx,
            payments,
            discoveries: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            chunks: ChunkRegistry::default(),
        }
    }

    /// Run one delegation to its end. The job is recorded whatever happens.
    pub async fn delegate(&self, req: DelegateRequest) -> Result<DelegateResponse, DelegateError> {
        if !self.ctx.config.role.requests() {
            return Err(DelegateError::BadInput(format!(
                "this node's EDGENT_ROLE is {}: it does not delegate",
                self.ctx.config.role.as_str()
            )));
        }
        let started = Instant::now();
        let req = req.validate(&self.ctx.config)?;
        let job_id = JobId::new();
        let deadline = started + req.timeout;
        let deadline_ms = now_ms() + req.timeout.as_millis() as u64;
        self.ctx.jobs.insert(&JobRecord::new(
            job_id,
            Side::Requester,
            &req.model,
            &req.prompt,
            deadline_ms,
        ))?;
        let request_id = Uuid::new_v4();
        let _unregister = Unregister {
            req: self,
            request_id,
            job_id,
        };

        let result = self
            .run(job_id, request_id, &req, deadline, deadline_ms, started)
            .await;
        let total_ms = started.elapsed().as_millis() as u64;
        self.ctx
            .metrics
            .delegation_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e @ DelegateError::ProofInvalid(_)) = &result {
            // The job has its output; its payment record says what became of the money.
            tracing::warn!(job = %job_id, error = %e, "delegation answered without a verified proof");
        } else if let Err(e) = &result {
            let state = match e {
                DelegateError::Deadline(_) => JobState::TimedOut,
                _ => JobState::Failed,
            };
            let code = e.job_error_code();
            let msg = e.to_string();
            let res = self
                .ctx
                .jobs
                .transition(&job_id, Side::Requester, state, |r| {
                    r.error_code = Some(code);
                    r.error = Some(msg);
                    r.timings.total_ms = Some(total_ms);
                });
            if let Err(err) = res {
                tracing::warn!(job = %job_id, error = %err, "cannot record the failed job");
            }
            tracing::warn!(job = %job_id, error = %e, "delegation failed");
        }
        result
    }

    async fn run(
        &self,
        job_id: JobId,
        request_id: Uuid,
        req: &ValidRequest,
        deadline: Instant,
        deadline_ms: u64,
        started: Instant,
    ) -> Result<DelegateResponse, DelegateError> {
        let (model, max_price, wait) = (req.model.as_str(), req.max_price, req.wait);
        // 1. Discover.
        let ads = self
            .discover(request_id, model, req.min_memory_mb, max_price, deadline)
            .await?;
        let discover_ms = started.elapsed().as_millis() as u64;
        let mut candidates = choose(ads, model, max_price, req.min_memory_mb);
        if self.payments.paid() {
            candidates = rank_for_payment(candidates, |k| self.payments.disputes(k));
        }
        if candidates.is_empty() {
            return Err(DelegateError::NoProvider(format!(
                "no provider offers {model} within max_price and memory"
            )));
        }
        tracing::info!(job = %job_id, candidates = candidates.len(), discover_ms, "providers found");

        // 2. Give the task to the best candidate that can be reached.
        let mut last_err = None;
        for ad in candidates {
            if Instant::now() >= deadline {
                break;
            }
            let provider = ad.node_id;
            let stake = self
                .payments
                .stake(&job_id, &ad, deadline_ms)
                .await
                .map_err(|e| DelegateError::Payment(e.to_string()))?;
            let paid = stake.is_some();
            let (tx, rx) = oneshot::channel();
            lock(&self.waiting).insert(job_id, Waiter { provider, tx });
            let task = Message::Task(Task {
                job_id,
                model: model.to_string(),
                prompt: req.prompt.clone(),
                options: req.options.clone(),
                stake,
                deadline_ms,
                sender_ens: self.ctx.config.ens_name.clone(),
                messages: req.messages.clone(),
                stream: req.sink.is_some(),
            });
            if let Some(sink) = &req.sink {
                self.chunks.register(job_id, provider, sink.clone());
                let _ = sink.events.send(StreamEvent::Started {
                    job_id,
                    provider: ProviderInfo {
                        node_id: provider,
                        ens: ad.ens.clone(),
                        wallet: ad.wallet.clone(),
                    },
                });
            }
            let sent = tokio::time::timeout_at(deadline.into(), self.ctx.send(&provider, &task))
                .await
                .unwrap_or_else(|_| {
                    Err(AxlError::Unreachable(
                        "send timed out at the deadline".into(),
                    ))
                });
            match sent {
                Ok(()) => {}
                Err(e @ (AxlError::Unreachable(_) | AxlError::BadPeerId(_))) if paid => {
                    // The stake names this provider: another one cannot be paid from it.
                    return Err(DelegateError::NoProvider(format!(
                        "the staked provider became unreachable ({e}); the stake is refunded after its deadline"
                    )));
                }
                Err(e @ (AxlError::Unreachable(_) | AxlError::BadPeerId(_))) => {
                    tracing::warn!(job = %job_id, provider = %provider.short(), error = %e, "provider unreachable, trying the next");
                    lock(&self.waiting).remove(&job_id);
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(DelegateError::Mesh(e.to_string())),
            }
            self.ctx
                .jobs
                .transition(&job_id, Side::Requester, JobState::Tasked, |r| {
                    r.peer = Some(provider);
                    r.peer_ens = ad.ens.clone();
                    r.peer_wallet = ad.wallet.clone();
                    r.price_units = Some(ad.price);
                    r.timings.discover_ms = Some(discover_ms);
                })?;
            tracing::info!(job = %job_id, provider = %provider.short(), ens = ?ad.ens, "task sent");

            // 3. Wait for the outcome.
            let outcome = tokio::time::timeout_at(deadline.into(), rx).await;
            let total_ms = started.elapsed().as_millis() as u64;
            return match outcome {
                Err(_) => Err(DelegateError::Deadline(format!(
                    "no result from {} before the deadline",
                    ad.ens.clone().unwrap_or_else(|| provider.short())
                ))),
                Ok(Err(_)) => Err(DelegateError::Internal("result channel closed".into())),
                Ok(Ok(Outcome::Error(e))) => Err(DelegateError::ProviderFailed {
                    code: e.code.as_str().to_string(),
                    message: e.message,
                }),
                Ok(Ok(Outcome::Result(r))) => {
                    let mut timings = Timings {
                        discover_ms: Some(discover_ms),
                        inference_ms: Some(r.usage.inference_ms),
                        total_ms: Some(total_ms),
                        ..Timings::default()
                    };
                    let output = r.output.clone();
                    let usage = r.usage.clone();
                    let t = timings.clone();
                    let rec = self.ctx.jobs.transition(
                        &job_id,
                        Side::Requester,
                        JobState::Completed,
                        |rec| {
                            rec.output = Some(output);
                            rec.usage = Some(usage);
                            let stake_ms = rec.timings.stake_ms;
                            rec.timings = t;
                            rec.timings.stake_ms = stake_ms;
                        },
                    )?;
                    timings.stake_ms = rec.timings.stake_ms;
                    let (mut proof_verified, mut payment) = (None, None);
                    if paid {
                        let rec = self.await_payment(job_id, wait, deadline).await?;
                        let total_ms = started.elapsed().as_millis() as u64;
                        let rec = self
                            .ctx
                            .jobs
                            .update(&job_id, Side::Requester, |r| {
                                r.timings.total_ms = Some(total_ms)
                            })
                            .unwrap_or(rec);
                        timings = rec.timings.clone();
                        if let Some(p) = rec.payment {
                            proof_verified = p.proof_verified;
                            payment = Some(PaymentSummary {
                                status: p.status.as_str().to_string(),
                                amount_units: p.amount_units,
                                stake_tx: p.stake_tx,
                                tx_hash: p.tx_hash,
                                explorer_url: p.explorer_url,
                            });
                        }
                    }
                    tracing::info!(job = %job_id, total_ms = timings.total_ms, "delegation completed");
                    Ok(DelegateResponse {
                        job_id,
                        provider: ProviderInfo {
                            node_id: provider,
                            ens: ad.ens,
                            wallet: ad.wallet,
                        },
                        output: r.output,
                        usage: r.usage,
                        timings,
                        proof_verified,
                        payment,
                    })
                }
            };
        }
        match last_err {
            Some(e) => Err(DelegateError::NoProvider(format!(
                "no provider could be reached: {e}"
            ))),
            None => Err(DelegateError::Deadline(
                "deadline passed before a task was sent".into(),
            )),
        }
    }

    /// Wait until the paid job's proof checks (or, with `settled`, its stake is released),
    /// then return its record. The proof may come a little after the agent's deadline; it
    /// is waited for at least [`PROOF_GRACE`].
    async fn await_payment(
        &self,
        job_id: JobId,
        wait: WaitFor,
        deadline: Instant,
    ) -> Result<JobRecord, DelegateError> {
        let Some(mut rx) = self.payments.on_result(&job_id).await else {
            return Err(DelegateError::Internal(
                "payment tracking unavailable".into(),
            ));
        };
        let proof_until = deadline.max(Instant::now() + PROOF_GRACE);
        let settle_until = proof_until + self.ctx.config.stake_margin;
        loop {
            let state = rx.borrow_and_update().clone();
            match &state {
                PayProgress::Invalid(reason) => {
                    return Err(DelegateError::ProofInvalid(format!(
                        "the provider's proof was refused, nothing is paid and the stake goes back: {reason}"
                    )))
                }
                PayProgress::Verified if wait == WaitFor::Verified => break,
                PayProgress::Settled => break,
                PayProgress::SettleFailed(e) if wait == WaitFor::Settled => {
                    tracing::warn!(job = %job_id, error = %e, "release not confirmed yet");
                }
                _ => {}
            }
            let until = if matches!(state, PayProgress::Waiting) {
                proof_until
            } else {
                settle_until
            };
            match tokio::time::timeout_at(until.into(), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) if matches!(state, PayProgress::Waiting) => {
                    return Err(DelegateError::Deadline(
                        "the result came but no proof for it before the deadline; nothing is paid until one checks, and the stake is refunded after its deadline otherwise".into(),
                    ))
                }
                Err(_) => {
                    return Err(DelegateError::Deadline(
                        "the proof checked but the release was not confirmed in time; the payment watcher keeps trying".into(),
                    ))
                }
            }
        }
        self.ctx
            .jobs
            .get(&job_id, Side::Requester)?
            .ok_or_else(|| DelegateError::Internal("the job vanished from the store".into()))
    }

    /// Broadcast the request and collect ads: until the window ends, every asked node
    /// answered, or the settle time after the first ad passed.
    async fn discover(
        &self,
        request_id: Uuid,
        model: &str,
        min_memory_mb: u64,
        max_price: u64,
        deadline: Instant,
    ) -> Result<Vec<ResourceAd>, DelegateError> {
        let topo = self
            .ctx
            .transport
            .topology()
            .await
            .map_err(|e| DelegateError::Mesh(e.to_string()))?;
        let nodes = topo.reachable_nodes();
        if nodes.is_empty() {
            return Err(DelegateError::NoProvider(
                "the mesh shows no other node".into(),
            ));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.discoveries).insert(request_id, tx);
        let msg = Message::ResourceRequest(ResourceRequest {
            request_id,
            node_id: self.ctx.me,
            model: model.to_string(),
            min_memory_mb,
            max_price: Some(max_price),
            sender_ens: self.ctx.config.ens_name.clone(),
        });
        // Send to every node at once, without waiting on a slow or dead one: a /send to a
        // node that is gone can block for a long time in AXL. Ads are collected while the
        // sends are still under way.
        let window_end = (Instant::now() + self.ctx.config.discovery_window).min(deadline);
        let asked = nodes.len();
        let mut sends = tokio::task::JoinSet::new();
        for node in nodes {
            let ctx = self.ctx.clone();
            let msg = msg.clone();
            sends.spawn(async move {
                tokio::time::timeout_at(window_end.into(), ctx.send(&node, &msg))
                    .await
                    .is_ok_and(|r| r.is_ok())
            });
        }
        let mut failed = 0usize;
        let mut settle_end: Option<Instant> = None;
        let mut ads: Vec<ResourceAd> = Vec::new();
        loop {
            if ads.len() + failed >= asked {
                break;
            }
            let until = settle_end.map_or(window_end, |s| s.min(window_end));
            tokio::select! {
                Some(done) = sends.join_next(), if !sends.is_empty() => {
                    if !matches!(done, Ok(true)) {
                        failed += 1;
                    }
                }
                got = tokio::time::timeout_at(until.into(), rx.recv()) => match got {
                    Ok(Some(ad)) => {
                        if !ads.iter().any(|a| a.node_id == ad.node_id) {
                            ads.push(ad);
                        }
                        settle_end.get_or_insert(Instant::now() + self.ctx.config.discovery_settle);
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        sends.detach_all();
        tracing::debug!(asked, failed, ads = ads.len(), "discovery done");
        if ads.is_empty() && failed >= asked {
            lock(&self.discoveries).remove(&request_id);
            return Err(DelegateError::NoProvider(format!(
                "none of the {asked} nodes in the topology could be reached"
            )));
        }
        lock(&self.discoveries).remove(&request_id);
        if ads.is_empty() {
            if Instant::now() >= deadline {
                return Err(DelegateError::Deadline(
                    "deadline passed during discovery".into(),
                ));
            }
            return Err(DelegateError::NoProvider(format!(
                "no provider answered for {model} within {} ms",
                self.ctx.config.discovery_window.as_millis()
            )));
        }
        Ok(ads)
    }

    /// An ad arrived (the router checked `node_id` against the sender).
    pub fn on_resource_ad(&self, from: &PeerKey, ad: ResourceAd) {
        self.ctx
            .peers
            .saw(ad.node_id, ad.ens.clone(), Some(ad.models.clone()));
        let tx = lock(&self.discoveries).get(&ad.request_id).cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(ad);
            }
            None => {
                self.ctx
                    .metrics
                    .dropped(crate::protocol::DropReason::Unexpected);
                tracing::debug!(from = %from.short(), request = %ad.request_id, "stale or unknown resource_ad dropped");
            }
        }
    }

    fn take_waiter(&self, from: &PeerKey, job_id: &JobId, kind: &str) -> Option<Waiter> {
        let mut map = lock(&self.waiting);
        match map.get(job_id) {
            Some(w) if w.provider.same_node(from) => map.remove(job_id),
            Some(_) => {
                drop(map);
                self.ctx
                    .metrics
                    .dropped(crate::protocol::DropReason::Spoofed);
                tracing::warn!(from = %from.short(), job = %job_id, kind, "dropped: sender is not this job's provider");
                None
            }
            None => {
                drop(map);
                self.ctx
                    .metrics
                    .dropped(crate::protocol::DropReason::Unexpected);
                tracing::warn!(from = %from.short(), job = %job_id, kind, "dropped: no delegation is waiting for this job");
                None
            }
        }
    }

    /// A result arrived. One no delegation waits for may still settle a paid job.
    pub async fn on_task_result(&self, from: &PeerKey, r: TaskResult) {
        let waited = {
            let map = lock(&self.waiting);
            map.contains_key(&r.job_id)
        };
        if !waited && self.payments.on_late_result(from, r.clone()).await {
            return;
        }
        if let Some(w) = self.take_waiter(from, &r.job_id, "task_result") {
            let _ = w.tx.send(Outcome::Result(r));
        }
    }

    /// A provider refused or failed a task.
    pub fn on_task_error(&self, from: &PeerKey, e: TaskError) {
        if let Some(w) = self.take_waiter(from, &e.job_id, "task_error") {
            let _ = w.tx.send(Outcome::Error(e));
        }
    }

    /// A streamed job's provider sent more output.
    pub fn on_task_chunk(&self, from: &PeerKey, c: TaskChunk) {
        let job = c.job_id;
        if let Err(why) = self.chunks.on_chunk(from, c) {
            let reason = match why {
                ChunkDrop::Spoofed => crate::protocol::DropReason::Spoofed,
                ChunkDrop::Unknown => crate::protocol::DropReason::Unexpected,
            };
            self.ctx.metrics.dropped(reason);
            tracing::debug!(from = %from.short(), job = %job, ?why, "task_chunk dropped");
        }
    }

    /// The agent went away: ask the job's provider to stop (`task_cancel`). The provider
    /// answers `task_error` `cancelled`, which ends the delegation.
    pub async fn cancel(&self, job_id: JobId) {
        let provider = lock(&self.waiting).get(&job_id).map(|w| w.provider);
        if let Some(p) = provider {
            tracing::info!(job = %job_id, provider = %p.short(), "agent gone: cancelling the job");
            let msg = Message::TaskCancel(TaskCancel { job_id });
            let _ = self.ctx.send(&p, &msg).await;
        }
    }
}

/// Keep the ads that fit, best first: cheapest, then least loaded, then most free memory.
pub fn choose(
    mut ads: Vec<ResourceAd>,
    model: &str,
    max_price: u64,
    min_memory_mb: u64,
) -> Vec<ResourceAd> {
    ads.retain(|a| {
        a.price <= max_price
            && a.free_memory_mb >= min_memory_mb
            && a.models.iter().any(|m| model_matches(model, m))
    });
    ads.sort_by(|a, b| {
        a.price
            .cmp(&b.price)
            .then(a.load.total_cmp(&b.load))
            .then(b.free_memory_mb.cmp(&a.free_memory_mb))
    });
    ads
}

/// Paid jobs: keep the ads that name a wallet (somewhere to pay), and move providers whose
/// proofs failed here behind the others (stable, so `choose`'s order holds among equals).
pub fn rank_for_payment(
    mut ads: Vec<ResourceAd>,
    disputes: impl Fn(&PeerKey) -> u32,
) -> Vec<ResourceAd> {
    ads.retain(|a| a.wallet.is_some());
    ads.sort_by_key(|a| disputes(&a.node_id));
    ads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(id: u8, price: u64, load: f64, mem: u64, models: &[&str]) -> ResourceAd {
        ResourceAd {
            request_id: Uuid::nil(),
            node_id: PeerKey([id; 32]),
            ens: None,
            wallet: None,
            models: models.iter().map(|s| s.to_string()).collect(),
            free_memory_mb: mem,
            price,
            load,
            version: "t".into(),
        }
    }

    #[test]
    fn choose_filters_and_ranks() {
        let ads = vec![
            ad(1, 20, 0.0, 8000, &["tinyllama:latest"]),
            ad(2, 10, 0.5, 8000, &["tinyllama:latest"]),
            ad(3, 10, 0.1, 4000, &["tinyllama"]),
            ad(4, 5, 0.0, 8000, &["llama3:8b"]),
            ad(5, 1000, 0.0, 8000, &["tinyllama"]),
            ad(6, 1, 0.0, 100, &["tinyllama"]),
        ];
        let ranked: Vec<u8> = choose(ads, "tinyllama", 100, 1000)
            .iter()
            .map(|a| a.node_id.0[0])
            .collect();
        assert_eq!(ranked, vec![3, 2, 1]);
    }

    #[test]
    fn paid_ranking_needs_a_wallet_and_puts_disputed_providers_last() {
        let mut ads = vec![
            ad(1, 10, 0.0, 8000, &["m"]),
            ad(2, 20, 0.0, 8000, &["m"]),
            ad(3, 30, 0.0, 8000, &["m"]),
            ad(4, 5, 0.0, 8000, &["m"]),
        ];
        for a in &mut ads[..3] {
            a.wallet = Some(format!("0x{}", "b".repeat(40)));
        }
        // Node 1 (the cheapest with a wallet) lied once; node 4 advertises no wallet.
        let ranked: Vec<u8> = rank_for_payment(ads, |k| u32::from(k.0[0] == 1))
            .iter()
            .map(|a| a.node_id.0[0])
            .collect();
        assert_eq!(ranked, vec![2, 3, 1]);
    }
}
