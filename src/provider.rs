//! Serving, the provider's side: advertise -> (check stake) -> infer -> result
//! (-> prove -> payment_request).
//!
//! A `resource_request` is answered with a `resource_ad` only when this node serves the
//! model, has a free slot and enough memory, and its price is within the requester's
//! limit; otherwise it stays silent. A `task` is checked, run through the inference
//! [`Backend`] until the requester's deadline, and answered with `task_result` or
//! `task_error`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::axl::PeerKey;
use crate::inference::{model_matches, Backend, GenerateRequest, InferenceError};
use crate::jobs::{now_ms, JobRecord, JobState, Side};
use crate::node::NodeCtx;
use crate::payment::ProviderPayments;
use crate::protocol::{
    Message, PaymentConfirmed, ResourceAd, ResourceRequest, Task, TaskError, TaskErrorCode,
    TaskResult, Usage,
};

/// How many times a result is sent before the job counts as undelivered.
const DELIVERY_ATTEMPTS: u32 = 4;

/// What the backend offers, as last checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendStatus {
    /// Backend name.
    pub backend: String,
    /// Whether the last check reached it.
    pub reachable: bool,
    /// Models advertised (the backend's list, filtered by `PROVIDER_MODELS`).
    pub models: Vec<String>,
    /// Why it is unreachable or empty.
    pub error: Option<String>,
    /// When it was checked, unix ms.
    pub checked_ms: u64,
}

/// The provider side of a node.
pub struct Provider {
    ctx: Arc<NodeCtx>,
    backend: Arc<dyn Backend>,
    payments: Arc<dyn ProviderPayments>,
    active: AtomicUsize,
    status: RwLock<BackendStatus>,
}

/// Releases a job slot however the job ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
    pub fn new(
        ctx: Arc<NodeCtx>,
        backend: Arc<dyn Backend>,
        payments: Arc<dyn ProviderPayments>,
    ) -> Self {
        let status = BackendStatus {
            backend: backend.name().to_string(),
            ..Default::default()
        };
        Provider {
            ctx,
            backend,
            payments,
            active: AtomicUsize::new(0),
            status: RwLock::new(status),
        }
    }

    /// Ask the backend which models it has now, and keep the answer for ads and `/status`.
    pub async fn refresh_models(&self) {
        let res = self.backend.models().await;
        let filter = &self.ctx.config.provider_models;
        let mut st = BackendStatus {
            backend: self.backend.name().to_string(),
            checked_ms: now_ms(),
            ..Default::default()
        };
        match res {
            Ok(models) => {
                st.reachable = true;
                st.models = models
                    .into_iter()
                    .filter(|m| filter.is_empty() || filter.iter().any(|f| model_matches(f, m)))
                    .collect();
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
            } else if self.ctx.config.role.provides() {
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
        self.active.load(Ordering::SeqCst)
    }

    fn served_model(&self, requested: &str) -> Option<String> {
        let st = self.status.read().unwrap_or_else(|p| p.into_inner());
        st.models
            .iter()
            .find(|m| model_matches(requested, m))
            .cloned()
    }

    /// Answer a discovery request, or stay silent when we cannot serve it.
    pub async fn on_resource_request(&self, from: &PeerKey, req: ResourceRequest) {
        self.ctx
            .peers
            .saw(req.node_id, req.sender_ens.clone(), None);
        if !self.ctx.config.role.provides() || req.node_id == self.ctx.me {
            return;
        }
        let price = self.ctx.config.price_units;
        let Some(_model) = self.served_model(&req.model) else {
            tracing::debug!(from = %from.short(), model = %req.model, "not serving this model");
            return;
        };
        let active = self.active_jobs();
        let max = self.ctx.config.provider_max_jobs;
        if active >= max {
            tracing::info!(from = %from.short(), active, "at capacity, not advertising");
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
        let ad = Message::ResourceAd(ResourceAd {
            request_id: req.request_id,
            node_id: self.ctx.me,
            ens: self.ctx.config.ens_name.clone(),
            wallet: self.payments.wallet(),
            models: self.status().models,
            free_memory_mb: free,
            price,
            load: (active as f64 / max as f64).clamp(0.0, 1.0),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        let _ = self.ctx.send(&req.node_id, &ad).await;
    }

    /// Take a task; the work runs in its own task so the router moves on at once.
    pub fn on_task(self: Arc<Self>, from: PeerKey, task: Task) {
        tokio::spawn(async move { self.serve(from, task).await });
    }

    async fn reply_error(&self, to: &PeerKey, task: &Task, code: TaskErrorCode, message: String) {
        tracing::warn!(job = %task.job_id, code = code.as_str(), %message, "task refused or failed");
        let msg = Message::TaskError(TaskError {
            job_id: task.job_id,
            code,
            message,
        });
        let _ = self.ctx.send(to, &msg).await;
    }

    async fn serve(&self, from: PeerKey, task: Task) {
        // Reply to the full key when we know it (learnt from its resource_request).
        let requester = self.ctx.peers.full_key(&from).unwrap_or(from);
        if !self.ctx.config.role.provides() {
            return self
                .reply_error(
                    &requester,
                    &task,
                    TaskErrorCode::ModelUnavailable,
                    "this node does not serve jobs".into(),
                )
                .await;
        }
        let now = now_ms();
        if task.deadline_ms <= now + 50 {
            return self
                .reply_error(
                    &requester,
                    &task,
                    TaskErrorCode::DeadlineTooClose,
                    "the deadline has passed or is too close".into(),
                )
                .await;
        }
        let Some(model) = self.served_model(&task.model) else {
            return self
                .reply_error(
                    &requester,
                    &task,
                    TaskErrorCode::ModelUnavailable,
                    format!("{} is not served here", task.model),
                )
                .await;
        };
        let max = self.ctx.config.provider_max_jobs;
        if self.active.fetch_add(1, Ordering::SeqCst) >= max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return self
                .reply_error(
                    &requester,
                    &task,
                    TaskErrorCode::Busy,
                    format!("all {max} job slots are taken"),
                )
                .await;
        }
        let _slot = Slot(&self.active);
        let payment = match self.payments.check_stake(&task).await {
            Ok(p) => p,
            Err((code, message)) => {
                return self.reply_error(&requester, &task, code, message).await;
            }
        };
        let mut rec = JobRecord::new(
            task.job_id,
            Side::Provider,
            &task.model,
            &task.prompt,
            task.deadline_ms,
        );
        rec.peer = Some(requester);
        rec.peer_ens = task.sender_ens.clone();
        rec.price_units = payment.as_ref().map(|p| p.amount_units);
        rec.payment = payment;
        if let Err(e) = self.ctx.jobs.insert(&rec) {
            self.payments
                .decline(&task, "the job could not be recorded")
                .await;
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
        let left = Duration::from_millis(task.deadline_ms.saturating_sub(now_ms()));
        let req = GenerateRequest {
            model,
            prompt: task.prompt.clone(),
            options: task.options.clone(),
        };
        let outcome = match tokio::time::timeout(left, self.backend.generate(&req)).await {
            Ok(r) => r,
            Err(_) => Err(InferenceError::Backend(
                "the deadline passed during inference".into(),
            )),
        };
        let inference_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(out) => {
                let usage = Usage {
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.completion_tokens,
                    inference_ms,
                    backend: Some(self.backend.name().to_string()),
                };
                let delivered = if self.ctx.config.test_tamper_output {
                    // TEST ONLY (EDGENT_TEST_TAMPER_OUTPUT): prove one output, send another.
                    tracing::warn!(job = %task.job_id, "EDGENT_TEST_TAMPER_OUTPUT: sending an altered output");
                    format!("{} [altered after commitment]", out.text)
                } else {
                    out.text.clone()
                };
                let msg = Message::TaskResult(TaskResult {
                    job_id: task.job_id,
                    output: delivered,
                    usage: usage.clone(),
                });
                let sent = self.deliver(&requester, &msg, task.deadline_ms).await;
                let (state, err) = match &sent {
                    Ok(()) => (JobState::Completed, None),
                    Err(e) => (
                        JobState::Failed,
                        Some(format!("result could not be delivered: {e}")),
                    ),
                };
                let text = out.text.clone();
                let res = self
                    .ctx
                    .jobs
                    .transition(&task.job_id, Side::Provider, state, |r| {
                        r.output = Some(text);
                        r.usage = Some(usage);
                        r.timings.inference_ms = Some(inference_ms);
                        if let Some(e) = err {
                            r.error_code = Some("undelivered".into());
                            r.error = Some(e);
                        }
                    });
                if let Err(e) = res {
                    tracing::warn!(job = %task.job_id, error = %e, "cannot record the job");
                }
                if sent.is_ok() {
                    tracing::info!(job = %task.job_id, inference_ms, "result delivered");
                    self.payments
                        .after_delivery(&requester, &task, &out.text)
                        .await;
                }
            }
            Err(e) => {
                let code = match e {
                    InferenceError::ModelUnavailable(_) => TaskErrorCode::ModelUnavailable,
                    _ => TaskErrorCode::InferenceFailed,
                };
                let message = e.to_string();
                let m = message.clone();
                let res =
                    self.ctx
                        .jobs
                        .transition(&task.job_id, Side::Provider, JobState::Failed, |r| {
                            r.error_code = Some(code.as_str().into());
                            r.error = Some(m);
                            r.timings.inference_ms = Some(inference_ms);
                        });
                if let Err(e) = res {
                    tracing::warn!(job = %task.job_id, error = %e, "cannot record the job");
                }
                self.payments.decline(&task, &message).await;
                self.reply_error(&requester, &task, code, message).await;
            }
        }
    }

    /// Send the result, retrying a few times while the local AXL node is briefly away (a
    /// restart of the AXL child takes about a second), but not past the deadline.
    async fn deliver(
        &self,
        to: &PeerKey,
        msg: &Message,
        deadline_ms: u64,
    ) -> Result<(), crate::axl::AxlError> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.ctx.send(to, msg).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt >= DELIVERY_ATTEMPTS
                        || now_ms() + delay.as_millis() as u64 > deadline_ms =>
                {
                    return Err(e)
                }
                Err(e) => {
                    tracing::info!(to = %to.short(), attempt, error = %e, "result not sent; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// The requester says it paid.
    pub async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        self.payments.on_payment_confirmed(from, msg).await;
    }
}
