//! Serving, the provider's side: advertise -> (check stake) -> infer -> result
//! (-> prove -> payment_request).
//!
//! A `resource_request` is answered with a `resource_ad` only when this node serves the
//! model, has a free slot and enough memory, and its price is within the requester's
//! limit; otherwise it stays silent. A `task` is checked, run through the inference
//! [`Backend`] until the requester's deadline, and answered with `task_result` or
//! `task_error`.

mod receipt;
mod reply;
mod sender;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::axl::PeerKey;
use crate::ctx::NodeCtx;
use crate::inference::{model_matches, Backend, GenerateRequest, InferenceError};
use crate::jobs::{now_ms, JobRecord, JobState, Side};
use crate::mesh::claims::{JobClaim, JobClaims};
use crate::mesh::heartbeat::spawn_beats;
use crate::mesh::queue::{Admission, JobQueue};
use crate::paid::PaymentSwitch;
use crate::protocol::receipt::ReceiptSigner;
use crate::protocol::{
    BeatState, JobId, Message, ResourceAd, ResourceRequest, Task, TaskCancel, TaskError,
    TaskErrorCode, Usage,
};
use crate::request::JobErrorCode;
use crate::stream::CancelRegistry;

/// The furthest deadline a task runs to, from when it arrives (1 h): a later
/// `deadline_ms` is cut to this, so no task holds a slot longer (threat model line 29).
pub const MAX_TASK_DEADLINE_MS: u64 = 3_600_000;

/// The `retry_after_ms` a `busy` answer suggests.
const BUSY_RETRY_AFTER_MS: u64 = 2_000;

/// What the backend offers, as last checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendStatus {
    /// Backend name.
    pub backend: String,
    /// Whether the last check reached it.
    pub reachable: bool,
    /// Models advertised (the backend's list, filtered by `PROVIDER_MODELS`).
    pub models: Vec<String>,
    /// The same models with their size and whether loaded, as the backend reports them.
    pub model_info: Vec<crate::protocol::ModelOffer>,
    /// Why it is unreachable or empty.
    pub error: Option<String>,
    /// When it was checked, unix ms.
    pub checked_ms: u64,
}

/// The provider side of a node.
pub struct Provider {
    ctx: Arc<NodeCtx>,
    backend: Arc<dyn Backend>,
    payments: Arc<PaymentSwitch>,
    queue: Arc<JobQueue>,
    status: RwLock<BackendStatus>,
    /// Running jobs their requester may cancel (see [`crate::stream`]).
    cancels: CancelRegistry,
    /// The job ids of the tasks being taken in (see [`crate::mesh::claims`]).
    claims: JobClaims,
    /// Signs each result's receipt with the AXL node key; `None` when the node does not
    /// hold it (its results are then refused).
    signer: Option<ReceiptSigner>,
}

/// Free memory on this machine in MiB (`MemAvailable` from /proc/meminfo), 0 if unknown.
pub fn free_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

impl Provider {
    /// A provider over the shared node state.
    pub fn new(ctx: Arc<NodeCtx>, backend: Arc<dyn Backend>, payments: Arc<PaymentSwitch>) -> Self {
        let status = BackendStatus {
            backend: backend.name().to_string(),
            ..Default::default()
        };
        Provider {
            backend,
            payments,
            queue: Arc::new({
                let (jobs, queue) = (
                    ctx.config.provider.max_jobs,
                    ctx.config.delivery.provider_max_queue,
                );
                let share = crate::mesh::queue::peer_share(
                    jobs,
                    queue,
                    ctx.config.delivery.provider_peer_max_jobs,
                );
                JobQueue::with_peer_share(jobs, queue, share)
            }),
            ctx,
            status: RwLock::new(status),
            cancels: CancelRegistry::default(),
            claims: JobClaims::default(),
            signer: None,
        }
    }

    /// Sign result receipts with `signer` (the AXL node's key).
    pub fn with_signer(mut self, signer: Option<ReceiptSigner>) -> Self {
        self.signer = signer;
        self
    }

    /// Ask the backend which models it has now, and keep the answer for ads and `/status`.
    pub async fn refresh_models(&self) {
        let res = self.backend.model_details().await;
        let filter = &self.ctx.config.provider.models;
        let mut st = BackendStatus {
            backend: self.backend.name().to_string(),
            checked_ms: now_ms(),
            ..Default::default()
        };
        match res {
            Ok(models) => {
                st.reachable = true;
                st.model_info = models
                    .into_iter()
                    .filter(|m| {
                        filter.is_empty() || filter.iter().any(|f| model_matches(f, &m.name))
                    })
                    .collect();
                if let Some(d) = self.ctx.config.provider.claim_digest() {
                    // TEST ONLY (EDGENT_TEST_CLAIM_DIGEST): claim a digest it does not serve.
                    st.model_info
                        .iter_mut()
                        .for_each(|m| m.digest = Some(d.to_string()));
                }
                st.models = st.model_info.iter().map(|m| m.name.clone()).collect();
                if st.models.is_empty() {
                    st.error = Some(if filter.is_empty() {
                        "the backend lists no models".into()
                    } else {
                        format!(
                            "none of PROVIDER_MODELS ({}) is installed",
                            filter.join(", ")
                        )
                    });
                }
            }
            Err(e) => {
                st.error = Some(e.to_string());
            }
        }
        let changed = {
            let old = self.status.read().unwrap_or_else(|p| p.into_inner());
            old.models != st.models || old.reachable != st.reachable
        };
        if changed {
            if st.reachable && !st.models.is_empty() {
                tracing::info!(backend = %st.backend, models = ?st.models, "serving models");
            } else if self.ctx.config.node.role.provides() {
                tracing::warn!(backend = %st.backend, error = ?st.error, "advertising nothing");
            }
        }
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = st;
    }

    /// Re-check the backend every `every` until cancelled.
    pub async fn refresh_loop(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => self.refresh_models().await,
            }
        }
    }

    /// The backend as last checked.
    pub fn status(&self) -> BackendStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Jobs running now.
    pub fn active_jobs(&self) -> usize {
        self.queue.running()
    }

    /// Tasks waiting for a job slot now.
    pub fn queued_jobs(&self) -> usize {
        self.queue.queued()
    }

    /// Job slots (`PROVIDER_MAX_JOBS`) and queue length (`PROVIDER_MAX_QUEUE`).
    pub fn capacity(&self) -> (usize, usize) {
        (self.queue.max_jobs(), self.queue.max_queue())
    }

    /// Whether a new task would run or wait in the queue rather than be answered `busy`.
    pub fn has_room(&self) -> bool {
        self.queue.has_room()
    }

    fn served_model(&self, requested: &str) -> Option<String> {
        let st = self.status.read().unwrap_or_else(|p| p.into_inner());
        st.models
            .iter()
            .find(|m| model_matches(requested, m))
            .cloned()
    }

    /// The digest of the served model `model` (as [`Provider::served_model`] names it), when
    /// the backend told one.
    fn served_digest(&self, model: &str) -> Option<String> {
        let st = self.status.read().unwrap_or_else(|p| p.into_inner());
        st.model_info
            .iter()
            .find(|m| m.name == model)
            .and_then(|m| m.digest.clone())
    }

    /// The ad this node would give now (any request id), `None` when it serves nothing.
    pub fn current_ad(&self, request_id: uuid::Uuid) -> Option<ResourceAd> {
        if !self.ctx.config.node.role.provides() {
            return None;
        }
        let st = self.status();
        if st.models.is_empty() {
            return None;
        }
        let active = self.active_jobs();
        let max = self.ctx.config.provider.max_jobs;
        Some(ResourceAd {
            request_id,
            node_id: self.ctx.endpoint.me(),
            ens: self.ctx.config.node.ens_name.clone(),
            wallet: self.payments.provider().wallet(),
            models: st.models,
            free_memory_mb: free_memory_mb(),
            price: self.ctx.config.provider.price_units,
            load: (active as f64 / max as f64).clamp(0.0, 1.0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            model_info: st.model_info,
            slots: u32::try_from(max).ok(),
            queue: u32::try_from(self.queued_jobs()).ok(),
        })
    }

    /// Answer a discovery request, or stay silent when we cannot serve it. It is not
    /// relayed (see [`crate::mesh::gossip`]).
    pub async fn on_resource_request(&self, from: &PeerKey, req: ResourceRequest) {
        self.ctx
            .mesh
            .peers
            .saw(req.node_id, req.sender_ens.clone(), None);
        if !crate::mesh::gossip::on_request(&self.ctx.endpoint, &self.ctx.mesh, &req) {
            return;
        }
        if !self.ctx.config.node.role.provides() || req.node_id == self.ctx.endpoint.me() {
            return;
        }
        let price = self.ctx.config.provider.price_units;
        let Some(_model) = self.served_model(&req.model) else {
            tracing::debug!(from = %from.short(), model = %req.model, "not serving this model");
            return;
        };
        let active = self.active_jobs();
        if !self.has_room() {
            tracing::info!(from = %from.short(), active, "slots and queue full, not advertising");
            return;
        }
        let free = free_memory_mb();
        if free < req.min_memory_mb {
            tracing::info!(from = %from.short(), free, wanted = req.min_memory_mb, "not enough free memory");
            return;
        }
        if req.max_price.is_some_and(|m| m < price) {
            tracing::info!(from = %from.short(), price, max = ?req.max_price, "requester's max_price is below our price");
            return;
        }
        let Some(mut ad) = self.current_ad(req.request_id) else {
            return;
        };
        ad.free_memory_mb = free;
        let _ = self
            .ctx
            .endpoint
            .send(&req.node_id, &Message::ResourceAd(ad))
            .await;
    }

    /// The requester of a running job asks to stop it (its agent went away).
    pub fn on_task_cancel(&self, from: &PeerKey, m: TaskCancel) {
        if self.cancels.cancel(from, &m.job_id) {
            tracing::info!(job = %m.job_id, from = %from.short(), "job cancelled by its requester");
        } else {
            self.ctx
                .metrics
                .dropped(crate::protocol::DropReason::Unexpected);
            tracing::debug!(job = %m.job_id, from = %from.short(), "task_cancel for no job of this requester");
        }
    }

    /// A task over the sender's per-peer task rate: answered `busy` without any work.
    pub async fn refuse_rate_limited(&self, from: PeerKey, task: Task) {
        self.ctx
            .metrics
            .dropped(crate::protocol::DropReason::RateLimited);
        self.refuse(
            &from,
            &task,
            TaskErrorCode::Busy,
            "too many tasks from this node; slow down".into(),
        )
        .await
    }

    /// Claim a new task's job id, or `None` when the id is known already: claimed by
    /// another task (in intake, queued or running) or in the job table. The caller drops
    /// such a task before any stake check or chain call, with no answer (its sender is an
    /// attacker, or the requester's own late resend, which must not fail the running job):
    /// only the task that took a stake can ever decline it (docs/threat-model.md, rule 1).
    fn claim_new_job(&self, from: &PeerKey, job: JobId) -> Option<JobClaim<'_>> {
        let claim = self.claims.claim(job);
        let recorded = || match self.ctx.jobs.get(&job, Side::Provider) {
            Ok(rec) => rec.is_some(),
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot read the job table: task refused");
                true
            }
        };
        if claim.is_none() || recorded() {
            self.ctx
                .metrics
                .dropped(crate::protocol::DropReason::KnownJob);
            tracing::warn!(%job, from = %from.short(), "task for a job id this provider knows already: dropped");
            return None;
        }
        claim
    }

    /// Take a task, run it, and answer it (the router runs this in a bounded task).
    pub async fn serve(&self, from: PeerKey, task: Task) {
        let Some(_claim) = self.claim_new_job(&from, task.job_id) else {
            return;
        };
        // Reply to the full key when we know it (learnt from its resource_request).
        let requester = self.ctx.mesh.peers.full_key(&from).unwrap_or(from);
        if !self.ctx.config.node.role.provides() {
            return self
                .refuse(
                    &requester,
                    &task,
                    TaskErrorCode::ModelUnavailable,
                    "this node does not serve jobs".into(),
                )
                .await;
        }
        if let Some(why) = self
            .sender_refused(&requester, task.sender_ens.as_deref())
            .await
        {
            return self
                .refuse(&requester, &task, TaskErrorCode::NotAllowed, why)
                .await;
        }
        let now = now_ms();
        // However far the requester's deadline, no task holds a slot or a place in the
        // queue longer than MAX_TASK_DEADLINE_MS from now (threat model line 29).
        let deadline_ms = task.deadline_ms.min(now + MAX_TASK_DEADLINE_MS);
        if task.deadline_ms <= now + 50 {
            return self
                .refuse(
                    &requester,
                    &task,
                    TaskErrorCode::DeadlineTooClose,
                    "the deadline has passed or is too close".into(),
                )
                .await;
        }
        let Some(model) = self.served_model(&task.model) else {
            return self
                .refuse(
                    &requester,
                    &task,
                    TaskErrorCode::ModelUnavailable,
                    format!("{} is not served here", task.model),
                )
                .await;
        };
        // A pinned task runs only on the model of that digest.
        if let Some(pinned) = &task.model_digest {
            let here = self.served_digest(&model);
            if here.as_ref() != Some(pinned) {
                let here = here.map_or("no known digest".into(), |d| format!("sha256:{d}"));
                return self
                    .refuse(
                        &requester,
                        &task,
                        TaskErrorCode::ModelUnavailable,
                        format!("{model} here has {here}, not the pinned sha256:{pinned}"),
                    )
                    .await;
            }
        }
        // The stake, before the task takes a slot or a place in the queue, so an unpaid task
        // costs neither (a paid provider's `paid::gate` also bounds the RPC calls it costs).
        // No money moves here: an authorized stake is made once the task holds a slot.
        let check = match self
            .payments
            .provider()
            .check_stake(&requester, &task)
            .await
        {
            Ok(c) => c,
            Err(refusal) => {
                return self
                    .refuse(&requester, &task, refusal.code(), refusal.to_string())
                    .await;
            }
        };
        // One requester's share of the slots and queue (threat model line 29).
        let _share = match self.queue.hold(&requester) {
            Ok(h) => h,
            Err(full) => {
                return self
                    .refuse(&requester, &task, TaskErrorCode::Busy, full.to_string())
                    .await;
            }
        };
        // A slot, or a place in the queue behind them; the requester hears from us every
        // HEARTBEAT_MS (with the queue position while waiting) until the job ends.
        let admission = match self.queue.admit(task.job_id) {
            Ok(a) => a,
            Err(full) => {
                return self
                    .refuse(&requester, &task, TaskErrorCode::Busy, full.to_string())
                    .await;
            }
        };
        let queue = self.queue.clone();
        let job = task.job_id;
        let _beats = spawn_beats(
            self.ctx.endpoint.clone(),
            requester,
            job,
            move || match queue.position(&job) {
                Some(p) => (BeatState::Queued, Some(p)),
                None => (BeatState::Running, None),
            },
        );
        let _slot = match admission {
            Admission::Run(slot) => slot,
            Admission::Queued(ticket) => {
                tracing::info!(job = %job, position = ?self.queue.position(&job), "task queued");
                let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
                match tokio::time::timeout(left, self.queue.wait_turn(ticket)).await {
                    Ok(Some(slot)) => slot,
                    Ok(None) | Err(_) => {
                        return self
                            .reply_error(
                                &requester,
                                &task,
                                TaskErrorCode::DeadlineTooClose,
                                "the deadline passed while the task was queued".into(),
                            )
                            .await;
                    }
                }
            }
        };
        let crate::paid::Taken { payment, landing } = match self
            .payments
            .provider()
            .take_stake(&requester, &task, check)
            .await
        {
            Ok(t) => t,
            Err(refusal) => {
                return self
                    .reply_error(&requester, &task, refusal.code(), refusal.to_string())
                    .await;
            }
        };
        let mut rec = JobRecord::new(
            task.job_id,
            Side::Provider,
            &task.model,
            &crate::jobs::stored_prompt(crate::jobs::prompt_of(
                &task.prompt,
                task.messages.as_deref(),
            )),
            deadline_ms,
        );
        rec.peer = Some(requester);
        rec.peer_ens = self.sender_shown(&requester, task.sender_ens.as_deref());
        rec.price_units = payment.as_ref().map(|p| p.amount_units);
        rec.payment = payment;
        let paid = rec.payment.is_some();
        if let Err(e) = self.ctx.jobs.insert(&rec) {
            // This task took the stake (its job id is claimed): it alone may decline it.
            if rec.payment.is_some() {
                self.payments
                    .provider()
                    .decline(&task, "the job could not be recorded")
                    .await;
            }
            return self
                .reply_error(
                    &requester,
                    &task,
                    TaskErrorCode::BadRequest,
                    format!("job not accepted: {e}"),
                )
                .await;
        }
        tracing::info!(job = %task.job_id, from = %requester.short(), %model, "running task");

        let started = Instant::now();
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let (options, dropped) = crate::inference::options::sanitize(task.options.as_ref());
        if !dropped.is_empty() {
            tracing::info!(job = %task.job_id, ?dropped, "options not allowed here dropped");
        }
        let req = GenerateRequest {
            model,
            prompt: task.prompt.clone(),
            options,
            messages: task.messages.clone(),
        };
        let cancel = self.cancels.start(task.job_id, requester);
        // A stake still landing: the job runs now, its output waits for it (paid::prestart).
        let landing = landing.map(|p| p.spawn(cancel.clone()));
        let outcome = crate::stream::infer(
            &self.ctx.endpoint,
            self.backend.as_ref(),
            &req,
            (task.stream, requester, task.job_id),
            left,
            cancel,
            landing.as_ref().map(|l| l.gate()),
        )
        .await;
        self.cancels.finish(&task.job_id);
        let inference_ms = started.elapsed().as_millis() as u64;
        if let Some(Err(why)) = match &landing {
            Some(l) => Some(l.landed().await),
            None => None,
        } {
            return self
                .stake_never_landed(&requester, &task, why, inference_ms)
                .await;
        }
        match outcome {
            Ok(out) => {
                let usage = Usage {
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.completion_tokens,
                    inference_ms,
                    backend: Some(self.backend.name().to_string()),
                };
                let delivered = if self.ctx.config.provider.tamper_output() {
                    // TEST ONLY (EDGENT_TEST_TAMPER_OUTPUT): prove one output, send another.
                    tracing::warn!(job = %task.job_id, "EDGENT_TEST_TAMPER_OUTPUT: sending an altered output");
                    format!("{} [altered after commitment]", out.text)
                } else {
                    out.text.clone()
                };
                let digest = self.served_digest(&req.model);
                let (msg, receipt) = self.signed_result(
                    &task,
                    digest.as_deref(),
                    (delivered, out.tool_calls.clone()),
                    usage.clone(),
                );
                let sent = self.deliver(&requester, &msg, deadline_ms).await;
                let (state, err) = match &sent {
                    Ok(()) => (JobState::Completed, None),
                    Err(e) => (
                        JobState::Failed,
                        Some(format!("result could not be delivered: {e}")),
                    ),
                };
                self.record_output(
                    &task,
                    state,
                    (out.text.clone(), usage, receipt),
                    err.map(|e| (Some(JobErrorCode::Undelivered), e)),
                );
                if sent.is_ok() {
                    tracing::info!(job = %task.job_id, inference_ms, "result delivered");
                } else if paid {
                    // The output left this node: never declined. Proved and submitted like
                    // any delivery; the watcher sends it again and finalizes after the window.
                    tracing::warn!(job = %task.job_id, "the result was never acknowledged: proving and submitting it anyway");
                }
                self.payments
                    .provider()
                    .after_delivery(&requester, &task, &out.text)
                    .await;
            }
            Err(stopped) if paid && !stopped.sent.is_empty() => {
                let digest = self.served_digest(&req.model);
                self.stopped_after_output(requester, &task, stopped, digest, inference_ms)
                    .await;
            }
            Err(crate::stream::Stopped { error: e, .. }) => {
                let (code, status) = match &e {
                    InferenceError::ModelUnavailable(_) => (TaskErrorCode::ModelUnavailable, None),
                    InferenceError::Cancelled => (TaskErrorCode::Cancelled, None),
                    InferenceError::Rejected { status, .. } => {
                        (TaskErrorCode::BadRequest, Some(*status))
                    }
                    _ => (TaskErrorCode::InferenceFailed, None),
                };
                // A refusal's message is the backend's own, as the agent will see it.
                let message = match &e {
                    InferenceError::Rejected { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let m = message.clone();
                let state = match code {
                    TaskErrorCode::Cancelled => JobState::Cancelled,
                    _ => JobState::Failed,
                };
                let res = self
                    .ctx
                    .jobs
                    .transition(&task.job_id, Side::Provider, state, |r| {
                        r.error_code = Some(code.into());
                        r.error = Some(m);
                        r.timings.inference_ms = Some(inference_ms);
                    });
                if let Err(e) = res {
                    tracing::warn!(job = %task.job_id, error = %e, "cannot record the job");
                }
                self.payments.provider().decline(&task, &message).await;
                let err = TaskError {
                    status,
                    ..task_error(&task, code, message)
                };
                self.send_error(&requester, err, false).await;
            }
        }
    }
}

impl crate::mesh::gossip::OfferSource for Provider {
    fn offer(&self) -> Option<ResourceAd> {
        self.current_ad(uuid::Uuid::nil())
    }
}

/// The `task_error` answering `task`.
fn task_error(task: &Task, code: TaskErrorCode, message: String) -> TaskError {
    TaskError {
        job_id: task.job_id,
        code,
        message,
        retry_after_ms: (code == TaskErrorCode::Busy).then_some(BUSY_RETRY_AFTER_MS),
        status: None,
    }
}
