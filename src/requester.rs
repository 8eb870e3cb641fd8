//! Delegation, the requester's side: discover -> choose -> (stake) -> task -> result.
//!
//! `/delegate` calls [`Requester::delegate`]. It asks every node the topology knows
//! (`resource_request`), collects `resource_ad`s for a short window, picks the best by
//! model, price, free memory and load, sends the `task`, and waits for the `task_result`
//! or `task_error` until the deadline. The router feeds ads and results in through the
//! `on_*` methods; each checks that the sender is the node the job was given to.
//!
//! Failover: one attempt loop for unpaid and paid jobs. A failed attempt hands the job to
//! the next candidate within the same deadline. Paid attempts after the first run under a
//! fresh job id with their own stake (an escrow stake names one job id and one provider);
//! the failed attempt's record points to the next (`moved_to`), and what became of its
//! stake (declined and refunded, pending refund after its deadline, never made) is read
//! from the chain and listed in the answer's `attempts`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::axl::PeerKey;
use crate::ctx::NodeCtx;
use crate::inference::model_matches;
use crate::jobs::{now_ms, JobRecord, JobState, Side, Timings};
use crate::mesh::ads::ANSWER_AD_TTL;
use crate::mesh::heartbeat::Pulse;
use crate::mesh::score::{self, Want};
use crate::mesh::{gossip, ProviderOutcome};
use crate::payment::{PayProgress, RequesterPayments};
use crate::request::{
    Attempt, AttemptOutcome, DelegateError, DelegateRequest, DelegateResponse, JobErrorCode,
    PaymentSummary, ProviderInfo, StakeOutcome, Unserved, ValidRequest, WaitFor,
};

/// How many times discovery sends its request to a node that accepted it but gave no ad:
/// AXL acknowledges nothing, and a request it accepted may still be lost on the way.
const DISCOVERY_ROUNDS: u32 = 3;

/// Most ads one discovery counts as answers (the rest still land in the ad cache).
const MAX_ANSWERS: usize = 256;

/// How long a paid delegation waits for the proof after its result, at least.
const PROOF_GRACE: Duration = Duration::from_secs(10);
use crate::front::stream::{ChunkDrop, ChunkRegistry, Retry, StreamEvent};
use crate::protocol::{
    Heartbeat, JobId, Message, ResourceAd, ResourceRequest, Task, TaskCancel, TaskChunk, TaskError,
    TaskErrorCode, TaskResult, MAX_RELAY_HOPS,
};

/// While a discovery send is still under way, discovery waits at least this long: AXL's
/// first send after two nodes peer takes about 3 s.
const SLOW_SEND_WAIT: Duration = Duration::from_millis(4_000);

/// Failed discovery sends, and nodes learnt of meanwhile, are tried again this often.
const RETRY_EVERY: Duration = Duration::from_millis(1_000);

/// Most nodes one discovery asks directly (relays reach the rest).
const MAX_ASKED: usize = 256;

/// Where one discovery send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Pending,
    Ok,
    Failed,
}

/// One node a discovery asked: where its last send stands, and how many it took.
#[derive(Debug, Clone, Copy)]
struct Ask {
    key: PeerKey,
    state: Asked,
    sends: u32,
}

/// What one node said to a delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// Asked, nothing back.
    Silent,
    /// The send failed or did not complete in time.
    Failed,
    /// It answered; why it did not serve, when it did not.
    Answered(Option<&'static str>),
}

/// What the mesh said to one delegation, node by node: the counts of its `no_provider`
/// answer ([`Unserved`]).
#[derive(Debug, Default)]
struct Tally {
    nodes: HashMap<[u8; 16], Said>,
}

impl Tally {
    fn asked(&mut self, node: &PeerKey) {
        self.nodes.entry(node.address()).or_insert(Said::Silent);
    }

    /// The send failed: a node that answered with a reason keeps it.
    fn failed(&mut self, node: &PeerKey) {
        let e = self.nodes.entry(node.address()).or_insert(Said::Silent);
        if matches!(*e, Said::Silent | Said::Answered(None)) {
            *e = Said::Failed;
        }
    }

    fn answered(&mut self, node: &PeerKey, unfit: Option<&'static str>) {
        self.nodes.insert(node.address(), Said::Answered(unfit));
    }

    fn is_silent(&self, node: &PeerKey) -> bool {
        self.nodes.get(&node.address()) == Some(&Said::Silent)
    }

    fn unserved(
        &self,
        model: &str,
        retry_after_secs: Option<u64>,
        note: Option<String>,
    ) -> Unserved {
        let mut u = Unserved {
            model: model.to_string(),
            asked: self.nodes.len(),
            retry_after_secs,
            note,
            ..Unserved::default()
        };
        for said in self.nodes.values() {
            match said {
                Said::Silent => {}
                Said::Failed => u.failed += 1,
                Said::Answered(why) => {
                    u.answered += 1;
                    if let Some(why) = why {
                        *u.unfit.entry((*why).to_string()).or_default() += 1;
                    }
                }
            }
        }
        u
    }
}

enum Outcome {
    Result(TaskResult),
    Error(TaskError),
}

struct Waiter {
    provider: PeerKey,
    tx: oneshot::Sender<Outcome>,
    pulse: Arc<Pulse>,
}

/// How one attempt at a provider ended.
enum AttemptEnd {
    Result(TaskResult),
    Error(TaskError),
    Dead,
    Unreachable(String),
    Deadline,
}

impl AttemptEnd {
    fn outcome(&self) -> AttemptOutcome {
        match self {
            AttemptEnd::Result(_) => AttemptOutcome::Completed,
            AttemptEnd::Error(e) => match e.code {
                TaskErrorCode::Busy => AttemptOutcome::Busy,
                TaskErrorCode::ModelUnavailable => AttemptOutcome::ModelUnavailable,
                TaskErrorCode::InferenceFailed => AttemptOutcome::InferenceFailed,
                TaskErrorCode::Cancelled => AttemptOutcome::Cancelled,
                TaskErrorCode::DeadlineTooClose => AttemptOutcome::Deadline,
                _ => AttemptOutcome::Refused,
            },
            AttemptEnd::Dead => AttemptOutcome::Dead,
            AttemptEnd::Unreachable(_) => AttemptOutcome::Unreachable,
            AttemptEnd::Deadline => AttemptOutcome::Deadline,
        }
    }
}

/// The requester side of a node.
pub struct Requester {
    ctx: Arc<NodeCtx>,
    payments: Arc<dyn RequesterPayments>,
    /// Discoveries under way: where the answers to their request go (to be counted).
    discoveries: Mutex<HashMap<Uuid, mpsc::Sender<ResourceAd>>>,
    waiting: Mutex<HashMap<JobId, Waiter>>,
    /// Streamed jobs: where their `task_chunk`s go (see [`crate::front::stream`]).
    chunks: ChunkRegistry,
    /// Paid delegations that failed over: their first job id -> the current attempt's.
    current: Mutex<HashMap<JobId, JobId>>,
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
        let current = lock(&self.req.current).remove(&self.job_id);
        for job in std::iter::once(self.job_id).chain(current) {
            lock(&self.req.waiting).remove(&job);
            self.req.chunks.remove(&job);
        }
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
            current: Mutex::new(HashMap::new()),
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
            &crate::jobs::prompt_of(&req.prompt, req.messages.as_deref()),
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
            // A paid delegation that failed over ends on its last attempt's record.
            let job_id = self.current_job(&job_id);
            let state = match e {
                DelegateError::Deadline(_) => JobState::TimedOut,
                DelegateError::Cancelled(_) => JobState::Cancelled,
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
        let (model, max_price) = (req.model.as_str(), req.max_price);
        // What every node said, for the one `no_provider` answer.
        let mut tally = Tally::default();
        // 1. Discover (from the ad cache, or asking the mesh).
        let ads = self
            .discover(
                request_id,
                model,
                req.min_memory_mb,
                max_price,
                deadline,
                &mut tally,
            )
            .await?;
        let discover_ms = started.elapsed().as_millis() as u64;
        let mut candidates = choose(ads, model, max_price, req.min_memory_mb);
        if self.payments.paid() {
            candidates = rank_for_payment(candidates, |k| self.payments.disputes(k));
        }
        if candidates.is_empty() {
            return Err(tally.unserved(model, None, None).into());
        }
        tracing::info!(job = %job_id, candidates = candidates.len(), discover_ms, "providers found");

        // 2. Give the task to the candidates in turn until one answers: a provider that
        // is busy, fails, stops sending heartbeats or never acknowledges the task hands
        // the job to the next, within the same deadline. A paid attempt's stake names its
        // provider and its job id, so each paid attempt after the first runs under a fresh
        // job id with its own stake; the failed one's stake was declined (refunded at
        // once) or is refunded after its deadline by the payment watcher.
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut last_fail: Option<DelegateError> = None;
        let mut busy_retry_ms: Option<u64> = None;
        let mut all_busy = true;
        let mut tasked = false;
        let mut attempt_job = job_id;
        for ad in candidates {
            if Instant::now() >= deadline {
                break;
            }
            if self.payments.paid() && !attempts.is_empty() {
                let next = JobId::new();
                self.move_job(job_id, attempt_job, next, req, deadline_ms, discover_ms)?;
                attempt_job = next;
                tasked = false;
            }
            if let Some(wait) = self.payments.own_stake_wait() {
                if Instant::now() + wait >= deadline {
                    return Err(DelegateError::Deadline(format!(
                        "the deadline is closer than a stake takes to land ({} ms): no stake was made",
                        wait.as_millis()
                    )));
                }
            }
            let provider = ad.node_id;
            let stake = self
                .payments
                .stake(&attempt_job, &ad, deadline_ms)
                .await
                .map_err(|e| DelegateError::Payment(e.to_string()))?;
            let paid = stake.is_some();
            let task = Message::Task(Task {
                job_id: attempt_job,
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
                self.chunks.register(attempt_job, provider, sink.clone());
                let _ = sink.events.send(StreamEvent::Started {
                    job_id: attempt_job,
                    provider: ProviderInfo {
                        node_id: provider,
                        ens: ad.ens.clone(),
                        wallet: ad.wallet.clone(),
                    },
                });
                if self.chunks.cancelled(&job_id) {
                    return Err(DelegateError::Cancelled("the agent went away".into()));
                }
            }
            let record = |r: &mut JobRecord| {
                r.peer = Some(provider);
                r.peer_ens = ad.ens.clone();
                r.peer_wallet = ad.wallet.clone();
                r.price_units = Some(ad.price);
                r.timings.discover_ms = Some(discover_ms);
            };
            if tasked {
                self.ctx
                    .jobs
                    .update(&attempt_job, Side::Requester, record)?;
            } else {
                self.ctx.jobs.transition(
                    &attempt_job,
                    Side::Requester,
                    JobState::Tasked,
                    record,
                )?;
                tasked = true;
            }
            tracing::info!(job = %attempt_job, provider = %provider.short(), ens = ?ad.ens, attempt = attempts.len() + 1, "task sent");

            // 3. Wait for the outcome, watching the provider's heartbeats.
            tally.asked(&provider);
            let t0 = Instant::now();
            let end = self.attempt(attempt_job, provider, &task, deadline).await;
            let outcome = end.outcome();
            self.record_attempt(&provider, outcome, t0.elapsed());
            attempts.push(Attempt {
                provider,
                outcome,
                ms: t0.elapsed().as_millis() as u64,
                job_id: Some(attempt_job),
                stake: None,
            });
            let who = ad.ens.clone().unwrap_or_else(|| provider.short());
            let gone = matches!(end, AttemptEnd::Dead | AttemptEnd::Unreachable(_));
            let fail = match end {
                AttemptEnd::Result(r) => {
                    return self
                        .finish(
                            attempt_job,
                            &ad,
                            r,
                            paid,
                            req.wait,
                            deadline,
                            started,
                            discover_ms,
                            attempts,
                        )
                        .await
                }
                AttemptEnd::Deadline => Some(DelegateError::Deadline(format!(
                    "no result from {who} before the deadline"
                ))),
                AttemptEnd::Error(e) if e.code == TaskErrorCode::DeadlineTooClose => {
                    tally.answered(&provider, Some(outcome.as_str()));
                    Some(DelegateError::Deadline(format!(
                        "{who} cannot meet the deadline: {}",
                        e.message
                    )))
                }
                AttemptEnd::Error(e) if e.code == TaskErrorCode::Cancelled => {
                    return Err(DelegateError::Cancelled(format!(
                        "the agent went away and {who} stopped: {}",
                        e.message
                    )))
                }
                AttemptEnd::Error(e) => {
                    tally.answered(&provider, Some(outcome.as_str()));
                    if e.code == TaskErrorCode::Busy {
                        busy_retry_ms = busy_retry_ms.max(Some(e.retry_after_ms.unwrap_or(1_000)));
                    } else {
                        all_busy = false;
                    }
                    Some(DelegateError::ProviderFailed {
                        code: e.code,
                        message: e.message,
                    })
                }
                AttemptEnd::Dead => {
                    all_busy = false;
                    tally.answered(&provider, Some(outcome.as_str()));
                    None
                }
                AttemptEnd::Unreachable(why) => {
                    all_busy = false;
                    tally.failed(&provider);
                    tracing::debug!(job = %attempt_job, provider = %provider.short(), %why, "task not acknowledged");
                    None
                }
            };
            // A streamed job whose text already reached the agent, or whose agent went
            // away, goes to no other provider (see crate::front::stream).
            let why = fail
                .as_ref()
                .map_or_else(|| outcome.as_str().to_string(), |f| f.to_string());
            match self.chunks.end_attempt(&attempt_job) {
                Retry::Allowed => {}
                Retry::Cancelled => {
                    return Err(DelegateError::Cancelled(format!(
                        "the agent went away ({why})"
                    )))
                }
                Retry::Streamed if outcome.fails_over() => {
                    tracing::warn!(job = %attempt_job, provider = %provider.short(), error = %why, "part of the answer already reached the agent: no failover");
                    let fail = fail.unwrap_or_else(|| {
                        tally
                            .unserved(model, None, Some(format!("{who}: {why}")))
                            .into()
                    });
                    return Err(with_pending_stakes(streamed_no_failover(fail), &attempts));
                }
                Retry::Streamed => {}
            }
            if paid && outcome != AttemptOutcome::Deadline {
                if gone {
                    // It may only look dead: asked to stop, a live provider declines the
                    // stake (the requester is refunded at once) instead of finishing a job
                    // nobody will pay for.
                    let ctx = self.ctx.clone();
                    let cancel = Message::TaskCancel(TaskCancel {
                        job_id: attempt_job,
                    });
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            ctx.config.delivery.send_timeout,
                            ctx.send(&provider, &cancel),
                        )
                        .await;
                    });
                }
                let stake = self.payments.attempt_failed(&attempt_job).await;
                if let Some(last) = attempts.last_mut() {
                    last.stake = stake;
                }
            }
            self.note_attempts(&attempt_job, &attempts);
            if !outcome.fails_over() {
                let fail = fail.unwrap_or_else(|| tally.unserved(model, None, None).into());
                return Err(with_pending_stakes(fail, &attempts));
            }
            tracing::warn!(job = %attempt_job, provider = %provider.short(), outcome = outcome.as_str(), error = %why, "trying the next provider");
            if fail.is_some() {
                last_fail = fail;
            }
        }
        if attempts.is_empty() || Instant::now() >= deadline {
            let fail = DelegateError::Deadline(format!(
                "deadline passed after {} attempt(s)",
                attempts.len()
            ));
            return Err(with_pending_stakes(fail, &attempts));
        }
        // One provider that failed the job: its own reason (502). Otherwise what every
        // node said (503), with `Retry-After` when they were all busy.
        if attempts.len() == 1 && !all_busy {
            if let Some(fail @ DelegateError::ProviderFailed { .. }) = last_fail {
                return Err(with_pending_stakes(fail, &attempts));
            }
        }
        let retry = busy_retry_ms
            .filter(|_| all_busy)
            .map(|ms| ms.div_ceil(1000).max(1));
        Err(with_pending_stakes(
            tally.unserved(model, retry, None).into(),
            &attempts,
        ))
    }

    /// A paid delegation fails over: the attempt under `from` ends `failed` (its record
    /// keeps its payment, which the watcher ends) pointing to `to`, a new record of the
    /// same delegation, which the next attempt stakes for.
    fn move_job(
        &self,
        root: JobId,
        from: JobId,
        to: JobId,
        req: &ValidRequest,
        deadline_ms: u64,
        discover_ms: u64,
    ) -> Result<(), DelegateError> {
        let mut rec = JobRecord::new(to, Side::Requester, &req.model, &req.prompt, deadline_ms);
        rec.timings.discover_ms = Some(discover_ms);
        self.ctx.jobs.insert(&rec)?;
        let res = self
            .ctx
            .jobs
            .transition(&from, Side::Requester, JobState::Failed, |r| {
                let outcome = r
                    .attempts
                    .last()
                    .map_or(JobErrorCode::Failed, |a| JobErrorCode::Attempt(a.outcome));
                r.error = Some(format!(
                    "{outcome}: the delegation moved to job {to} (another provider, its own stake)"
                ));
                r.error_code = Some(outcome);
                r.moved_to = Some(to);
            });
        if let Err(e) = res {
            tracing::warn!(job = %from, error = %e, "cannot record the failed-over attempt");
        }
        lock(&self.current).insert(root, to);
        tracing::info!(job = %from, next = %to, "paid failover: a fresh job id and stake for the next provider");
        Ok(())
    }

    /// Keep the attempts so far on the attempt's job record (`/jobs` shows them).
    fn note_attempts(&self, job: &JobId, attempts: &[Attempt]) {
        let res = self.ctx.jobs.update(job, Side::Requester, |r| {
            r.attempts = attempts.to_vec();
        });
        if let Err(e) = res {
            tracing::warn!(%job, error = %e, "cannot record the attempts");
        }
    }

    /// The job id a delegation that started as `root` runs under now (paid failover
    /// gives each attempt its own).
    fn current_job(&self, root: &JobId) -> JobId {
        lock(&self.current).get(root).copied().unwrap_or(*root)
    }

    /// One attempt at one provider: send the task reliably and wait for its answer,
    /// until the deadline or until the provider shows no life for
    /// [`crate::mesh::DeliverySettings::dead_after`].
    async fn attempt(
        &self,
        job_id: JobId,
        provider: PeerKey,
        task: &Message,
        deadline: Instant,
    ) -> AttemptEnd {
        let settings = &self.ctx.config.delivery;
        let dead_after = settings.dead_after();
        // The first sign of life may wait for one slow send (AXL's first send after
        // peering takes about 3 s).
        let pulse = Arc::new(Pulse::new(settings.send_timeout));
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(
            job_id,
            Waiter {
                provider,
                tx,
                pulse: pulse.clone(),
            },
        );
        let send = self.ctx.send_acked(&provider, task, deadline);
        tokio::pin!(send);
        tokio::pin!(rx);
        let mut send_done = false;
        let mut send_err: Option<String> = None;
        let end = loop {
            let dead_at = pulse.dead_at(dead_after).min(deadline);
            tokio::select! {
                r = &mut send, if !send_done => {
                    send_done = true;
                    match r {
                        Ok(_) => pulse.touch(),
                        Err(e) => send_err = Some(e.to_string()),
                    }
                }
                o = &mut rx => break match o {
                    Ok(Outcome::Result(r)) => AttemptEnd::Result(r),
                    Ok(Outcome::Error(e)) => AttemptEnd::Error(e),
                    Err(_) => AttemptEnd::Unreachable("the wait was cancelled".into()),
                },
                _ = tokio::time::sleep_until(dead_at.into()) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break AttemptEnd::Deadline;
                    }
                    if pulse.dead_at(dead_after) <= now {
                        break if pulse.heard() {
                            AttemptEnd::Dead
                        } else {
                            AttemptEnd::Unreachable(send_err.take().unwrap_or_else(|| {
                                format!("no ack within {} ms", dead_after.as_millis())
                            }))
                        };
                    }
                }
            }
        };
        let mut map = lock(&self.waiting);
        if map.get(&job_id).is_some_and(|w| w.provider == provider) {
            map.remove(&job_id);
        }
        end
    }

    /// The provider answered: record the result, wait for the payment when paid, answer.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        job_id: JobId,
        ad: &ResourceAd,
        r: TaskResult,
        paid: bool,
        wait: WaitFor,
        deadline: Instant,
        started: Instant,
        discover_ms: u64,
        attempts: Vec<Attempt>,
    ) -> Result<DelegateResponse, DelegateError> {
        let provider = ad.node_id;
        let total_ms = started.elapsed().as_millis() as u64;
        let mut timings = Timings {
            discover_ms: Some(discover_ms),
            inference_ms: Some(r.usage.inference_ms),
            total_ms: Some(total_ms),
            ..Timings::default()
        };
        let output = r.output.clone();
        let usage = r.usage.clone();
        let t = timings.clone();
        let tried = attempts.clone();
        let rec =
            self.ctx
                .jobs
                .transition(&job_id, Side::Requester, JobState::Completed, |rec| {
                    rec.output = Some(output);
                    rec.usage = Some(usage);
                    rec.attempts = tried;
                    let stake_ms = rec.timings.stake_ms;
                    rec.timings = t;
                    rec.timings.stake_ms = stake_ms;
                })?;
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
        tracing::info!(job = %job_id, total_ms = timings.total_ms, attempts = attempts.len(), "delegation completed");
        Ok(DelegateResponse {
            job_id,
            provider: ProviderInfo {
                node_id: provider,
                ens: ad.ens.clone(),
                wallet: ad.wallet.clone(),
            },
            output: r.output,
            usage: r.usage,
            timings,
            proof_verified,
            payment,
            attempts,
        })
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

    /// Tell the provider history how one attempt went: a result is a success (with its
    /// latency); a provider that failed, refused, died or could not be reached is a failure
    /// (an unreachable one is also backed off in the directory). Busy and the agent's own
    /// deadline say nothing about the provider. Disputes are recorded by the paid flow.
    fn record_attempt(&self, provider: &PeerKey, outcome: AttemptOutcome, latency: Duration) {
        let history = &self.ctx.mesh.history;
        match outcome {
            AttemptOutcome::Completed => {
                history.record(provider, ProviderOutcome::Success, Some(latency))
            }
            AttemptOutcome::Busy | AttemptOutcome::Deadline | AttemptOutcome::Cancelled => {}
            AttemptOutcome::Unreachable => {
                self.ctx.mesh.directory.send_failed(provider);
                history.record(provider, ProviderOutcome::Failure, None);
            }
            AttemptOutcome::ModelUnavailable
            | AttemptOutcome::InferenceFailed
            | AttemptOutcome::Refused
            | AttemptOutcome::Dead => history.record(provider, ProviderOutcome::Failure, None),
        }
    }

    /// Find the providers for `model`, best first ([`crate::mesh::score`]).
    ///
    /// From the ad cache at once when a fresh ad serves the model (no mesh round trip).
    /// Otherwise a `resource_request` (relayed up to [`MAX_RELAY_HOPS`] hops) goes to every
    /// node the directory knows, and the answers land in the cache. Discovery ends
    /// [`DISCOVERY_SETTLE_MS`](crate::config::Config::discovery_settle) after the first usable
    /// ad, or when nothing came: `DISCOVERY_WINDOW_MS` after the start and after the last
    /// accepted send, and never before [`SLOW_SEND_WAIT`] while a send is still under way
    /// (AXL's first send after peering takes 3 s). Sends that failed, and nodes learnt of
    /// meanwhile, are tried again every [`RETRY_EVERY`] until an ad comes. AXL acknowledges
    /// nothing, so a request it accepted may still be lost: when a window ends with no ad,
    /// the nodes that accepted it are asked again, [`DISCOVERY_ROUNDS`] sends each at most
    /// (a node that saw the request once does not answer it twice, so this only recovers a
    /// lost request; a lost ad comes back with the provider's next announcement).
    ///
    /// Every node asked, and what it said, goes into `tally`: a send still under way when
    /// discovery ends counts as failed (timed out), and an asked node whose announced ad
    /// does not fit counts as answered with that reason.
    async fn discover(
        &self,
        request_id: Uuid,
        model: &str,
        min_memory_mb: u64,
        max_price: u64,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Result<Vec<ResourceAd>, DelegateError> {
        let mesh = &self.ctx.mesh;
        let access = &self.ctx.config.access;
        let want = Want {
            model,
            max_price,
            min_memory_mb,
            paid: self.payments.paid(),
        };
        let ranked = || {
            score::rank(mesh.ads.fresh_for(model), &want, access, |k| {
                mesh.history.get(k)
            })
        };
        let mut changes = mesh.ads.subscribe();
        let fresh = ranked();
        if !fresh.is_empty() {
            tracing::debug!(
                candidates = fresh.len(),
                "providers chosen from the ad cache"
            );
            return Ok(fresh);
        }
        mesh.my_requests.insert(request_id);
        let (answers_tx, mut answers) = mpsc::channel(MAX_ANSWERS);
        lock(&self.discoveries).insert(request_id, answers_tx);
        let topo_nodes = match gossip::learn_topology(&self.ctx).await {
            Ok(n) => n,
            Err(e) if mesh.directory.is_empty() => return Err(DelegateError::Mesh(e.to_string())),
            Err(e) => {
                tracing::debug!(error = %e, "/topology failed; asking the nodes already known");
                Vec::new()
            }
        };
        let msg = Message::ResourceRequest(ResourceRequest {
            request_id,
            node_id: self.ctx.me,
            model: model.to_string(),
            min_memory_mb,
            max_price: Some(max_price),
            sender_ens: self.ctx.config.ens_name.clone(),
            hops: MAX_RELAY_HOPS,
        });
        let started = Instant::now();
        let window = self.ctx.config.discovery_window;
        let settle = self.ctx.config.discovery_settle;
        let mut asked: HashMap<[u8; 16], Ask> = HashMap::new();
        let mut sends = tokio::task::JoinSet::new();
        self.ask_round(&msg, &topo_nodes, &mut asked, &mut sends, tally);
        let mut last_ok: Option<Instant> = None;
        let mut first_ad: Option<Instant> = None;
        let mut next_retry = started + RETRY_EVERY;
        let outcome = loop {
            if asked.is_empty() {
                break Err(());
            }
            let now = Instant::now();
            let found = ranked();
            if !found.is_empty() {
                let at = *first_ad.get_or_insert(now);
                if now >= at + settle || now >= deadline {
                    break Ok(found);
                }
            }
            let pending = asked.values().any(|a| a.state == Asked::Pending);
            let mut end = started + window;
            if let Some(t) = last_ok {
                end = end.max(t + window);
            }
            if pending {
                end = end.max(started + SLOW_SEND_WAIT);
            }
            let end = end.min(deadline);
            if first_ad.is_none() && now >= end {
                // A window with no ad: ask the nodes that accepted the request again.
                if now + window >= deadline || !self.ask_again(&msg, &mut asked, &mut sends) {
                    break Err(());
                }
                tracing::debug!(request = %request_id, "no ad within the window; asking again");
                last_ok = Some(now);
                continue;
            }
            let mut wake = match first_ad {
                Some(at) => (at + settle).min(deadline),
                None => end,
            };
            if first_ad.is_none() {
                wake = wake.min(next_retry);
            }
            tokio::select! {
                Some(done) = sends.join_next(), if !sends.is_empty() => {
                    if let Ok((key, ok)) = done {
                        if let Some(a) = asked.get_mut(&key.address()) {
                            a.state = if ok { Asked::Ok } else { Asked::Failed };
                        }
                        if ok {
                            last_ok = Some(Instant::now());
                        } else {
                            tally.failed(&key);
                        }
                    }
                }
                Some(ad) = answers.recv() => {
                    tally.answered(&ad.node_id, score::unfit(&ad, &want, access));
                }
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {
                    if first_ad.is_none() && Instant::now() >= next_retry {
                        let topo = gossip::learn_topology(&self.ctx).await.unwrap_or_default();
                        self.ask_round(&msg, &topo, &mut asked, &mut sends, tally);
                        next_retry = Instant::now() + RETRY_EVERY;
                    }
                }
            }
        };
        sends.detach_all();
        lock(&self.discoveries).remove(&request_id);
        while let Ok(ad) = answers.try_recv() {
            tally.answered(&ad.node_id, score::unfit(&ad, &want, access));
        }
        match outcome {
            Ok(found) => {
                tracing::debug!(
                    asked = asked.len(),
                    candidates = found.len(),
                    "discovery done"
                );
                Ok(found)
            }
            Err(()) if Instant::now() >= deadline => Err(DelegateError::Deadline(
                "deadline passed during discovery".into(),
            )),
            Err(()) => {
                for a in asked.values().filter(|a| a.state == Asked::Pending) {
                    tracing::debug!(to = %a.key.short(), "resource_request still being sent when discovery ended: counted as failed (timed out)");
                    tally.failed(&a.key);
                }
                // Providers asked that stayed silent, whose announced ad says why.
                for ad in mesh.ads.fresh() {
                    if tally.is_silent(&ad.node_id) {
                        if let Some(why) = score::unfit(&ad, &want, access) {
                            tally.answered(&ad.node_id, Some(why));
                        }
                    }
                }
                let note = asked
                    .is_empty()
                    .then(|| "the mesh shows no other node".to_string());
                let u = tally.unserved(model, None, note);
                tracing::debug!(request = %request_id, ms = started.elapsed().as_millis() as u64, "{u}");
                Err(u.into())
            }
        }
    }

    /// Send the request to every node known and not asked yet (or whose send failed and
    /// whose back-off is over), each send in its own task with [`gossip::SEND_TIMEOUT`].
    fn ask_round(
        &self,
        msg: &Message,
        topo_nodes: &[PeerKey],
        asked: &mut HashMap<[u8; 16], Ask>,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
        tally: &mut Tally,
    ) {
        let mesh = &self.ctx.mesh;
        let mut targets = mesh.directory.targets();
        if targets.is_empty() {
            // Every known node is backing off: try the topology's anyway.
            targets = topo_nodes.to_vec();
        }
        for node in targets.into_iter().take(MAX_ASKED) {
            if node == self.ctx.me || self.ctx.config.access.denied_sender(&node) {
                continue;
            }
            let sends_before = match asked.get(&node.address()) {
                Some(Ask {
                    state: Asked::Pending | Asked::Ok,
                    ..
                }) => continue,
                Some(
                    a @ Ask {
                        state: Asked::Failed,
                        ..
                    },
                ) => {
                    if !mesh.directory.sendable(&node) {
                        continue;
                    }
                    a.sends
                }
                None => 0,
            };
            asked.insert(
                node.address(),
                Ask {
                    key: node,
                    state: Asked::Pending,
                    sends: sends_before + 1,
                },
            );
            tally.asked(&node);
            self.spawn_ask(node, msg, sends);
        }
    }

    /// Ask again the nodes that accepted the request or whose send failed,
    /// [`DISCOVERY_ROUNDS`] sends each at most. False when none is left to ask.
    fn ask_again(
        &self,
        msg: &Message,
        asked: &mut HashMap<[u8; 16], Ask>,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
    ) -> bool {
        let mut any = false;
        for a in asked.values_mut() {
            // A send that failed is tried again too: during AXL's slow first sends after
            // peering (3 s at first) a send can time out although the node is there.
            if matches!(a.state, Asked::Ok | Asked::Failed) && a.sends < DISCOVERY_ROUNDS {
                a.state = Asked::Pending;
                a.sends += 1;
                self.spawn_ask(a.key, msg, sends);
                any = true;
            }
        }
        any
    }

    /// One discovery send, bounded by [`gossip::SEND_TIMEOUT`]; the directory learns how
    /// it went.
    fn spawn_ask(
        &self,
        node: PeerKey,
        msg: &Message,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
    ) {
        let ctx = self.ctx.clone();
        let msg = msg.clone();
        sends.spawn(async move {
            let ok = match tokio::time::timeout(gossip::SEND_TIMEOUT, ctx.send(&node, &msg)).await
            {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(to = %node.short(), error = %e, "resource_request not sent");
                    false
                }
                Err(_) => {
                    tracing::debug!(to = %node.short(), ms = gossip::SEND_TIMEOUT.as_millis() as u64, "resource_request send timed out");
                    false
                }
            };
            if ok {
                ctx.mesh.directory.send_ok(&node);
            } else {
                ctx.mesh.directory.send_failed(&node);
            }
            (node, ok)
        });
    }

    /// An ad arrived (the router checked `node_id` against the sender). One answering a
    /// request of ours (even after its discovery ended) goes into the ad cache.
    pub fn on_resource_ad(&self, from: &PeerKey, ad: ResourceAd) {
        self.ctx
            .peers
            .saw(ad.node_id, ad.ens.clone(), Some(ad.models.clone()));
        if !self.ctx.mesh.my_requests.contains(&ad.request_id) {
            self.ctx
                .metrics
                .dropped(crate::protocol::DropReason::Unexpected);
            tracing::debug!(from = %from.short(), request = %ad.request_id, "resource_ad for no request of ours dropped");
            return;
        }
        if let Some(tx) = lock(&self.discoveries).get(&ad.request_id) {
            // Counted by its discovery; a full channel only loses the count.
            let _ = tx.try_send(ad.clone());
        }
        if self.ctx.mesh.directory.heard(ad.node_id) {
            self.ctx.mesh.greet(ad.node_id);
        }
        if !self
            .ctx
            .config
            .access
            .may_choose(&ad.node_id, ad.ens.as_deref())
        {
            tracing::debug!(from = %from.short(), "resource_ad from a node EDGENT_ALLOW/EDGENT_DENY excludes, ignored");
            return;
        }
        self.ctx.mesh.ads.insert(ad, ANSWER_AD_TTL);
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

    /// A provider's heartbeat for a job we wait on: it is alive (and maybe queued).
    pub fn on_heartbeat(&self, from: &PeerKey, hb: Heartbeat) {
        let map = lock(&self.waiting);
        match map.get(&hb.job_id) {
            Some(w) if w.provider.same_node(from) => w.pulse.beat(&hb),
            _ => {
                tracing::debug!(from = %from.short(), job = %hb.job_id, "heartbeat for a job not waited on");
            }
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
        let job_id = self.current_job(&job_id);
        self.chunks.cancel(&job_id);
        let provider = lock(&self.waiting).get(&job_id).map(|w| w.provider);
        if let Some(p) = provider {
            tracing::info!(job = %job_id, provider = %p.short(), "agent gone: cancelling the job");
            let msg = Message::TaskCancel(TaskCancel { job_id });
            let _ = self.ctx.send(&p, &msg).await;
        }
    }
}

/// The error of a streamed job whose provider failed after part of its answer reached the
/// agent: the cause, and why no other provider is tried.
fn streamed_no_failover(fail: DelegateError) -> DelegateError {
    const WHY: &str =
        "the answer is cut short: part of it already reached the agent, so no other provider restarts it";
    match fail {
        DelegateError::NoProvider(mut u) => {
            u.note = Some(match u.note.take() {
                Some(n) => format!("{n}; {WHY}"),
                None => WHY.to_string(),
            });
            DelegateError::NoProvider(u)
        }
        DelegateError::ProviderFailed { code, message } => DelegateError::ProviderFailed {
            code,
            message: format!("{message}; {WHY}"),
        },
        other => other,
    }
}

/// A failed paid delegation says when stakes of its attempts are still locked (they are
/// refunded after their deadline; `/jobs` lists them), so the agent knows its money is
/// coming back.
fn with_pending_stakes(e: DelegateError, attempts: &[Attempt]) -> DelegateError {
    let pending = attempts
        .iter()
        .filter(|a| {
            a.stake
                .as_ref()
                .is_some_and(|s| s.status == StakeOutcome::PendingRefund)
        })
        .count();
    if pending == 0 {
        return e;
    }
    let note = format!(
        "; {pending} stake(s) of this delegation are refunded after their deadline (see /jobs)"
    );
    match e {
        DelegateError::NoProvider(mut u) => {
            u.note = Some(match u.note.take() {
                Some(n) => format!("{n}{note}"),
                None => note.trim_start_matches("; ").to_string(),
            });
            DelegateError::NoProvider(u)
        }
        DelegateError::Deadline(m) => DelegateError::Deadline(m + &note),
        DelegateError::ProviderFailed { code, message } => DelegateError::ProviderFailed {
            code,
            message: message + &note,
        },
        other => other,
    }
}

/// Keep the ads that fit (model, price, memory), in the order given: [`Requester`]'s
/// discovery already ranks them ([`crate::mesh::score::rank`]).
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
            model_info: Vec::new(),
            slots: None,
            queue: None,
        }
    }

    #[test]
    fn choose_filters_and_keeps_the_order() {
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
        // Filtered, in the order given (discovery ranks).
        assert_eq!(ranked, vec![1, 2, 3]);
    }

    #[test]
    fn a_failed_paid_delegation_says_how_many_stakes_wait_for_their_refund() {
        let attempt = |stake: Option<StakeOutcome>| Attempt {
            provider: PeerKey([1; 32]),
            outcome: AttemptOutcome::Dead,
            ms: 1,
            job_id: Some(JobId([2; 32])),
            stake: stake.map(|s| crate::request::AttemptStake {
                status: s,
                tx_hash: None,
                refund_after: Some(10),
            }),
        };
        let e = with_pending_stakes(
            DelegateError::Internal("gone".into()),
            &[attempt(Some(StakeOutcome::PendingRefund))],
        );
        assert_eq!(
            e.to_string(),
            "internal error: gone",
            "other errors are left alone"
        );
        let e = with_pending_stakes(
            DelegateError::Deadline("gone".into()),
            &[
                attempt(Some(StakeOutcome::PendingRefund)),
                attempt(Some(StakeOutcome::Refunded)),
                attempt(Some(StakeOutcome::PendingRefund)),
            ],
        );
        assert!(e.to_string().contains("gone; 2 stake(s)"), "{e}");
        let e = with_pending_stakes(
            DelegateError::Deadline("gone".into()),
            &[attempt(Some(StakeOutcome::NotStaked)), attempt(None)],
        );
        assert!(e.to_string().ends_with("gone"), "{e}");
        let e = with_pending_stakes(
            crate::request::Unserved::default().into(),
            &[attempt(Some(StakeOutcome::PendingRefund))],
        );
        match e {
            DelegateError::NoProvider(u) => assert_eq!(
                u.note.as_deref(),
                Some("1 stake(s) of this delegation are refunded after their deadline (see /jobs)")
            ),
            other => panic!("{other:?}"),
        }
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
