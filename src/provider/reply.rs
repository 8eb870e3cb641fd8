//! How a provider answers besides a whole result: `task_error`s (reliable for a task that
//! ran or held a slot, sent once for a refusal, and only to a full key), the part of a paid
//! job's output that was streamed before it stopped, and the reliable delivery of a result.

use std::time::{Duration, Instant};

use crate::axl::PeerKey;
use crate::inference::InferenceError;
use crate::jobs::{now_ms, JobState, Side};
use crate::protocol::{Message, Receipt, Task, TaskError, TaskErrorCode, TaskResult, Usage};
use crate::request::JobErrorCode;

use super::{receipt, task_error, Provider};

impl Provider {
    /// The `task_result` carrying `output`, with its receipt signed by this node's key
    /// (also returned, for the job record).
    pub(super) fn signed_result(
        &self,
        task: &Task,
        digest: Option<&str>,
        (output, tool_calls): (String, Vec<serde_json::Value>),
        usage: Usage,
    ) -> (Message, Option<crate::protocol::Receipt>) {
        let receipt = receipt::sign(
            self.signer.as_ref(),
            self.ctx.config.provider.receipt_lie(),
            task,
            &receipt::Ran {
                digest,
                output: &output,
                tool_calls: &tool_calls,
            },
        );
        let msg = Message::TaskResult(TaskResult {
            job_id: task.job_id,
            output,
            tool_calls,
            usage,
            receipt: receipt.clone(),
        });
        (msg, receipt)
    }

    /// The stake the job started on never landed ([`crate::paid::prestart`]): the job
    /// fails with nothing of its output sent, and the requester is told why.
    pub(super) async fn stake_never_landed(
        &self,
        to: &PeerKey,
        task: &Task,
        why: String,
        inference_ms: u64,
    ) {
        let m = why.clone();
        let res = self
            .ctx
            .jobs
            .transition(&task.job_id, Side::Provider, JobState::Failed, |r| {
                r.error_code = Some(TaskErrorCode::StakeMissing.into());
                r.error = Some(m);
                r.timings.inference_ms = Some(inference_ms);
            });
        if let Err(e) = res {
            tracing::warn!(job = %task.job_id, error = %e, "cannot record the job");
        }
        let err = task_error(task, TaskErrorCode::StakeMissing, why);
        self.send_error(to, err, false).await;
    }

    /// A `task_error` for a task that ran or held a slot: sent reliably (slots and the
    /// queue bound how many there are).
    pub(super) async fn reply_error(
        &self,
        to: &PeerKey,
        task: &Task,
        code: TaskErrorCode,
        message: String,
    ) {
        self.send_error(to, task_error(task, code, message), false)
            .await
    }

    /// A `task_error` for a task refused before it took a slot or a place in the queue: sent
    /// once, with no ack expected, so a peer that sends tasks fast and never acks takes no
    /// place in the pending-ack table (threat model line 25); and only to a node whose full
    /// key we know (a send to a partial key blocks in AXL): otherwise it is counted
    /// (`edgent_bounded{table="refusals_unsent"}`) and not sent.
    pub(super) async fn refuse(
        &self,
        to: &PeerKey,
        task: &Task,
        code: TaskErrorCode,
        message: String,
    ) {
        let Some(to) = self.ctx.mesh.peers.full_key(to) else {
            self.ctx.metrics.table("refusals_unsent").inc();
            tracing::info!(job = %task.job_id, to = %to.short(), code = code.as_str(), "task refused; no answer (the sender's full key is unknown)");
            return;
        };
        self.send_error(&to, task_error(task, code, message), true)
            .await
    }

    pub(super) async fn send_error(&self, to: &PeerKey, err: TaskError, once: bool) {
        tracing::warn!(job = %err.job_id, code = err.code.as_str(), message = %err.message, once, "task refused or failed");
        let msg = Message::TaskError(err);
        let endpoint = &self.ctx.endpoint;
        let _ = if once {
            endpoint.send_once(to, &msg).await
        } else {
            endpoint.send(to, &msg).await
        };
    }

    /// A paid job stopped (cancelled, its deadline passed, the backend failed) after part of
    /// its output was streamed: that part is the job's output. It is sent as the result,
    /// proved and submitted, and charged the whole price; the stake is never declined once
    /// an output byte left (docs/threat-model.md, lines 6-8: the whole price, because the
    /// requester chose the price, the cancel and the deadline, and a pro-rata split would
    /// need the provider to prove what fraction was wanted).
    pub(super) async fn stopped_after_output(
        &self,
        requester: PeerKey,
        task: &Task,
        stopped: crate::stream::Stopped,
        digest: Option<String>,
        inference_ms: u64,
    ) {
        let (error, sent) = (stopped.error, stopped.sent);
        tracing::warn!(job = %task.job_id, bytes = sent.len(), %error,
            "stopped after part of the output was streamed: proving it and charging the price, never declining");
        let usage = Usage {
            prompt_tokens: None,
            completion_tokens: None,
            inference_ms,
            backend: Some(self.backend.name().to_string()),
        };
        let (msg, receipt) = self.signed_result(
            task,
            digest.as_deref(),
            (sent.clone(), Vec::new()),
            usage.clone(),
        );
        // Best effort (the requester may have gone): the watcher sends it again.
        let _ = self.ctx.endpoint.send(&requester, &msg).await;
        let state = match error {
            InferenceError::Cancelled => JobState::Cancelled,
            _ => JobState::Failed,
        };
        let code = (state == JobState::Cancelled).then(|| TaskErrorCode::Cancelled.into());
        self.record_output(
            task,
            state,
            (sent.clone(), usage, receipt),
            Some((
                code,
                format!("{error}, after part of the output was streamed"),
            )),
        );
        self.payments
            .provider()
            .after_delivery(&requester, task, &sent)
            .await;
    }

    /// Record the output that left this node for `task`, its usage and receipt, as the job
    /// ends in `state`, with the error code and message of a job that did not complete.
    pub(super) fn record_output(
        &self,
        task: &Task,
        state: JobState,
        (text, usage, receipt): (String, Usage, Option<Receipt>),
        error: Option<(Option<JobErrorCode>, String)>,
    ) {
        let res = self
            .ctx
            .jobs
            .transition(&task.job_id, Side::Provider, state, |r| {
                r.timings.inference_ms = Some(usage.inference_ms);
                r.output = Some(text);
                r.usage = Some(usage);
                r.receipt = receipt;
                if let Some((code, message)) = error {
                    r.error_code = code;
                    r.error = Some(message);
                }
            });
        if let Err(e) = res {
            tracing::warn!(job = %task.job_id, error = %e, "cannot record the job");
        }
    }

    /// Send the result reliably: again with backoff until the requester acknowledges it
    /// or its deadline passes.
    pub(super) async fn deliver(
        &self,
        to: &PeerKey,
        msg: &Message,
        deadline_ms: u64,
    ) -> Result<(), crate::mesh::reliable::Undelivered> {
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let tries = self
            .ctx
            .endpoint
            .send_acked(to, msg, Instant::now() + left)
            .await?;
        if tries > 1 {
            tracing::info!(to = %to.short(), tries, "result acknowledged after resending");
        }
        Ok(())
    }
}
