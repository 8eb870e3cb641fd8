//! One attempt at one provider: the task sent reliably, the wait for its answer while the
//! provider's heartbeats say it lives, the result's signed receipt checked, and the router's
//! handlers that feed the answer in (`task_result`, `task_error`, `task_chunk`,
//! `heartbeat`), each checking that the sender is the node the job was given to.
//!
//! The receipt ([`crate::protocol::receipt`]) is checked on every result, paid or not,
//! before the result is accepted (so before anything is paid): a receipt that is missing,
//! not signed by the job's provider, or that names another job, model, digest, sampling,
//! prompt or output than the job's refuses the result, and the job fails over like a failed
//! attempt. Accepted or refused, the receipt is kept with the job (`/jobs`), the evidence a
//! dispute attaches. What was asked is kept with the job when the task is sent
//! ([`asked_of`]), so a paid result that comes after the delegation gave up is checked
//! against the same ([`crate::paid`]'s late path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Requester;
use crate::axl::PeerKey;
use crate::jobs::{now_ms, Asked, Side};
use crate::mesh::heartbeat::Pulse;
use crate::mesh::ProviderOutcome;
use crate::protocol::receipt::check_receipt;
use crate::protocol::{
    DropReason, Heartbeat, JobId, Message, ResourceAd, TaskCancel, TaskChunk, TaskError,
    TaskErrorCode, TaskResult,
};
use crate::request::{AttemptOutcome, ValidRequest};
use crate::stream::ChunkDrop;

/// What a task of `req` sent to `ad`'s provider now asks: the digest the model must have
/// is the pinned one, else the one the ad claimed (empty when it claimed none).
pub(super) fn asked_of(ad: &ResourceAd, req: &ValidRequest) -> Asked {
    let claimed = ad
        .model_info
        .iter()
        .find(|m| crate::inference::model_matches(&req.model, &m.name))
        .and_then(|m| m.digest.as_deref());
    Asked::new(
        req.model_digest.as_deref().or(claimed).unwrap_or_default(),
        req.options.as_ref(),
        &req.prompt,
        req.messages.as_deref(),
        now_ms(),
    )
}

/// What the router hands a waiting attempt.
enum Outcome {
    Result(Box<TaskResult>),
    Error(TaskError),
}

/// An attempt waiting for its provider's answer.
pub(super) struct Waiter {
    provider: PeerKey,
    tx: oneshot::Sender<Outcome>,
    pulse: Arc<Pulse>,
}

/// How one attempt at a provider ended.
pub(super) enum AttemptEnd {
    Result(Box<TaskResult>),
    Error(TaskError),
    Dead,
    Unreachable(String),
    Deadline,
    /// A result whose signed receipt does not match the job (why).
    BadReceipt(String),
    /// A result a spot check caught (why).
    Caught(String),
    /// A result with an empty output: refused, a failure, not paid.
    EmptyOutput,
}

impl AttemptEnd {
    pub(super) fn outcome(&self) -> AttemptOutcome {
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
            AttemptEnd::BadReceipt(_) => AttemptOutcome::BadReceipt,
            AttemptEnd::Caught(_) => AttemptOutcome::Caught,
            AttemptEnd::EmptyOutput => AttemptOutcome::EmptyOutput,
        }
    }
}

/// A result a delegation holds while it checks it (its receipt, a spot check, its proof):
/// a copy the provider sends again meanwhile (it resends until acknowledged) is neither a
/// late result nor a stray one. Removed when dropped.
pub(super) struct InHand<'a> {
    req: &'a Requester,
    job: JobId,
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.req.in_hand.lock().remove(&self.job);
    }
}

impl Requester {
    /// Hold `job`'s result while the delegation checks it ([`InHand`]).
    fn hold_result(&self, job: JobId) -> InHand<'_> {
        self.in_hand.lock().insert(job);
        InHand { req: self, job }
    }

    /// One attempt at one provider: send the task reliably and wait for its answer,
    /// until the deadline or until the provider shows no life for
    /// [`crate::mesh::DeliverySettings::dead_after`]; then check a result's receipt against
    /// what was `asked` of `model` (`None`: the caller checks it). A result that arrived is
    /// held ([`InHand`]) while the delegation checks it.
    pub(super) async fn attempt(
        &self,
        job_id: JobId,
        provider: PeerKey,
        (task, model): (&Message, &str),
        asked: Option<&Asked>,
        deadline: Instant,
    ) -> (AttemptEnd, Option<InHand<'_>>) {
        let settings = &self.ctx.config.delivery;
        let dead_after = settings.dead_after();
        // The first sign of life may wait for one slow send (AXL's first send after
        // peering takes about 3 s).
        let pulse = Arc::new(Pulse::new(
            settings.send_timeout,
            dead_after,
            settings.stream_dead_after(),
        ));
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(
            job_id,
            Waiter {
                provider,
                tx,
                pulse: pulse.clone(),
            },
        );
        let send = self.ctx.endpoint.send_acked(&provider, task, deadline);
        tokio::pin!(send);
        tokio::pin!(rx);
        let mut send_done = false;
        let mut send_err: Option<String> = None;
        let mut held = None;
        let end = loop {
            let dead_at = pulse.dead_at().min(deadline);
            tokio::select! {
                r = &mut send, if !send_done => {
                    send_done = true;
                    match r {
                        Ok(_) => pulse.touch(),
                        Err(e) => send_err = Some(e.to_string()),
                    }
                }
                o = &mut rx => break match o {
                    Ok(Outcome::Result(r)) if crate::protocol::is_empty_result(&r) => {
                        held = Some(self.hold_result(job_id));
                        tracing::warn!(job = %job_id, provider = %provider.short(), "empty output refused: a failure, not paid");
                        AttemptEnd::EmptyOutput
                    }
                    Ok(Outcome::Result(r)) => {
                        held = Some(self.hold_result(job_id));
                        AttemptEnd::Result(r)
                    }
                    Ok(Outcome::Error(e)) => AttemptEnd::Error(e),
                    Err(_) => AttemptEnd::Unreachable("the wait was cancelled".into()),
                },
                // The first chunk shortens the silence that counts: wait again with it.
                _ = pulse.stream_began(), if !pulse.is_streaming() => {}
                _ = tokio::time::sleep_until(dead_at.into()) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break AttemptEnd::Deadline;
                    }
                    if pulse.dead_at() <= now {
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
        {
            let mut map = self.waiting.lock();
            if map.get(&job_id).is_some_and(|w| w.provider == provider) {
                map.remove(&job_id);
            }
        }
        let (AttemptEnd::Result(r), Some(asked)) = (&end, asked) else {
            return (end, held);
        };
        // The receipt, kept with the job whatever it says.
        let expected = asked.expected(&job_id, &provider, model, &r.output, &r.tool_calls);
        let refused = check_receipt(r.receipt.as_ref(), &expected)
            .err()
            .map(|e| e.to_string());
        let (receipt, why) = (r.receipt.clone(), refused.clone());
        let res = self.ctx.jobs.update(&job_id, Side::Requester, |rec| {
            rec.receipt = receipt;
            rec.receipt_refused = why;
        });
        if let Err(e) = res {
            tracing::warn!(job = %job_id, error = %e, "cannot keep the receipt with the job");
        }
        match refused {
            Some(why) => {
                tracing::warn!(job = %job_id, provider = %provider.short(), %why, "receipt refused: the result is not accepted and not paid");
                (AttemptEnd::BadReceipt(why), held)
            }
            None => (end, held),
        }
    }

    /// Tell the provider history how one attempt went: a result is a success (with its
    /// latency); a provider that failed, refused, died or could not be reached is a failure
    /// (an unreachable one is also backed off in the directory). Busy and the agent's own
    /// deadline say nothing about the provider. Disputes are recorded by the paid flow.
    pub(super) fn record_attempt(
        &self,
        provider: &PeerKey,
        outcome: AttemptOutcome,
        latency: Duration,
    ) {
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
            | AttemptOutcome::EmptyOutput
            | AttemptOutcome::Dead => history.record(provider, ProviderOutcome::Failure, None),
            // A signed lie, or a caught cheat: the worst mark (ranked last from then on).
            AttemptOutcome::BadReceipt | AttemptOutcome::Caught => {
                history.record(provider, ProviderOutcome::Dispute, None)
            }
        }
    }

    fn take_waiter(&self, from: &PeerKey, job_id: &JobId, kind: &str) -> Option<Waiter> {
        let mut map = self.waiting.lock();
        match map.get(job_id) {
            Some(w) if w.provider.same_node(from) => map.remove(job_id),
            other => {
                let spoofed = other.is_some();
                drop(map);
                let (reason, why) = if spoofed {
                    (DropReason::Spoofed, "sender is not this job's provider")
                } else {
                    (
                        DropReason::Unexpected,
                        "no delegation is waiting for this job",
                    )
                };
                self.ctx.metrics.dropped(reason);
                tracing::warn!(from = %from.short(), job = %job_id, kind, "dropped: {why}");
                None
            }
        }
    }

    /// A result arrived. One no delegation waits for may still settle a paid job.
    pub async fn on_task_result(&self, from: &PeerKey, r: TaskResult) {
        if self.in_hand.lock().contains(&r.job_id) {
            tracing::debug!(job = %r.job_id, from = %from.short(), "repeated task_result while its delegation checks it: ignored");
            return;
        }
        let waited = self.waiting.lock().contains_key(&r.job_id);
        if !waited
            && self
                .payments
                .requester()
                .on_late_result(from, r.clone())
                .await
        {
            return;
        }
        if let Some(w) = self.take_waiter(from, &r.job_id, "task_result") {
            // A streamed result must extend what the agent already read (line 31).
            let outcome = match self.chunks.check_result(&r.job_id, &r.output) {
                Ok(()) => Outcome::Result(Box::new(r)),
                Err(why) => {
                    tracing::warn!(job = %r.job_id, from = %from.short(), %why, "streamed result refused");
                    Outcome::Error(crate::protocol::TaskError {
                        job_id: r.job_id,
                        code: crate::protocol::TaskErrorCode::InferenceFailed,
                        message: why,
                        retry_after_ms: None,
                        status: None,
                    })
                }
            };
            let _ = w.tx.send(outcome);
        }
    }

    /// A provider's heartbeat for a job we wait on: it is alive (and maybe queued).
    pub fn on_heartbeat(&self, from: &PeerKey, hb: Heartbeat) {
        let map = self.waiting.lock();
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
        let taken = self.chunks.on_chunk(from, c);
        if taken.is_ok() {
            if let Some(w) = self.waiting.lock().get(&job) {
                if w.provider.same_node(from) {
                    w.pulse.chunk();
                }
            }
        }
        if let Err(why) = taken {
            let reason = match why {
                ChunkDrop::Spoofed => crate::protocol::DropReason::Spoofed,
                ChunkDrop::Unknown | ChunkDrop::TooLarge => crate::protocol::DropReason::Unexpected,
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
        let provider = self.waiting.lock().get(&job_id).map(|w| w.provider);
        if let Some(p) = provider {
            tracing::info!(job = %job_id, provider = %p.short(), "agent gone: cancelling the job");
            let msg = Message::TaskCancel(TaskCancel { job_id });
            let _ = self.ctx.endpoint.send(&p, &msg).await;
        }
    }
}
