//! The requester's one check of a result's signed receipt ([`crate::protocol::receipt`]),
//! made on every result, paid or not, before the result is accepted (so before anything
//! is paid): a receipt that is missing, not signed by the job's provider, or that names
//! another job, model, digest, sampling, prompt or output than the job's refuses the
//! result. Accepted or refused, the receipt is kept with the job (`/jobs`), the evidence a
//! dispute attaches.

use super::Requester;
use crate::jobs::{now_ms, Side};
use crate::protocol::receipt::{check_receipt, Expected};
use crate::protocol::{JobId, ReceiptMismatch, ResourceAd, TaskResult};
use crate::request::ValidRequest;

impl Requester {
    /// Check `r`'s receipt against the job as it was asked of `ad`'s provider at `sent_ms`,
    /// and keep the receipt (and, when refused, why) on the job's record.
    pub(super) fn check_result(
        &self,
        job: JobId,
        ad: &ResourceAd,
        req: &ValidRequest,
        r: &TaskResult,
        sent_ms: u64,
    ) -> Result<(), ReceiptMismatch> {
        // The digest the model must have: the pinned one, else what the ad claimed.
        let claimed = ad
            .model_info
            .iter()
            .find(|m| crate::inference::model_matches(&req.model, &m.name))
            .and_then(|m| m.digest.as_deref());
        let want = Expected {
            job_id: &job,
            provider: &ad.node_id,
            model: &req.model,
            model_digest: req.model_digest.as_deref().or(claimed).unwrap_or_default(),
            options: req.options.as_ref(),
            prompt: &req.prompt,
            messages: req.messages.as_deref(),
            output: &r.output,
            tool_calls: &r.tool_calls,
            sent_ms,
            now_ms: now_ms(),
        };
        let verdict = check_receipt(r.receipt.as_ref(), &want);
        let receipt = r.receipt.clone();
        let refused = verdict.as_ref().err().map(|e| e.to_string());
        if let Some(why) = &refused {
            tracing::warn!(%job, provider = %ad.node_id.short(), %why, "receipt refused: the result is not accepted and not paid");
        }
        let res = self.ctx.jobs.update(&job, Side::Requester, |rec| {
            rec.receipt = receipt;
            rec.receipt_refused = refused;
        });
        if let Err(e) = res {
            tracing::warn!(%job, error = %e, "cannot keep the receipt with the job");
        }
        verdict
    }
}
