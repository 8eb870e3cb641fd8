//! The requester's one check of a result's signed receipt ([`crate::protocol::receipt`]),
//! made on every result, paid or not, before the result is accepted (so before anything
//! is paid): a receipt that is missing, not signed by the job's provider, or that names
//! another job, model, digest, sampling, prompt or output than the job's refuses the
//! result. Accepted or refused, the receipt is kept with the job (`/jobs`), the evidence a
//! dispute attaches. What was asked is kept with the job when the task is sent
//! ([`asked_of`]), so a paid result that comes after the delegation gave up is checked
//! against the same ([`crate::paid`]'s late path).

use super::Requester;
use crate::axl::PeerKey;
use crate::jobs::{now_ms, Asked, Side};
use crate::protocol::receipt::check_receipt;
use crate::protocol::{JobId, ReceiptMismatch, ResourceAd, TaskResult};
use crate::request::ValidRequest;

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

impl Requester {
    /// Check `r`'s receipt against what `asked` of `provider` for `job` (of `model`), and
    /// keep the receipt (and, when refused, why) on the job's record.
    pub(super) fn check_result(
        &self,
        job: JobId,
        provider: &PeerKey,
        model: &str,
        asked: &Asked,
        r: &TaskResult,
    ) -> Result<(), ReceiptMismatch> {
        let verdict = check_receipt(
            r.receipt.as_ref(),
            &asked.expected(&job, provider, model, &r.output, &r.tool_calls),
        );
        let receipt = r.receipt.clone();
        let refused = verdict.as_ref().err().map(|e| e.to_string());
        if let Some(why) = &refused {
            tracing::warn!(%job, provider = %provider.short(), %why, "receipt refused: the result is not accepted and not paid");
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
