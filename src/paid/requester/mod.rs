//! The requester's money: stake before the task, verify the proof before any money moves,
//! then release the stake with this node's own wallet, or dispute the provider's submit
//! within the escrow's window when the check fails (the arbiter decides).
//!
//! The job table is the source of truth: the output and the `payment_request` are stored
//! as they arrive (in either order, or twice), and verification runs once both are there.
//! [`stake`] locks the money before the task; [`release`] moves it after the result.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::seams::{Begin, BeginError, Begun, PayProgress, PaymentError, RequesterPayments};
use super::{job_b256, Busy, Chain};
use crate::axl::PeerKey;
use crate::chain::FairStatus;
use crate::ctx::NodeCtx;
use crate::jobs::{JobRecord, JobState, PayBook, PayStatus, PaymentRecord, Side};
use crate::protocol::receipt::check_receipt;
use crate::protocol::{
    DropReason, JobId, Message, PaymentRequest, ReceiptMismatch, TaskCancel, TaskResult,
};
use crate::request::AttemptOutcome;
use crate::request::{AttemptStake, DelegateError, JobErrorCode, StakeOutcome, WaitFor};

mod release;
mod stake;

/// How long a paid delegation waits for the proof after its result, at least.
const PROOF_GRACE: Duration = Duration::from_secs(10);

/// The requester side of the paid flow.
pub struct PaidRequester {
    ctx: Arc<NodeCtx>,
    chain: Arc<Chain>,
    me: Weak<PaidRequester>,
    progress: Mutex<HashMap<JobId, watch::Sender<PayProgress>>>,
    result_at: Mutex<HashMap<JobId, Instant>>,
    verify_lock: tokio::sync::Mutex<()>,
    pub(crate) busy: Arc<Busy>,
    book: PayBook,
}

impl PaidRequester {
    /// A paid requester, releasing its stakes with the chain's wallet.
    pub fn new(ctx: Arc<NodeCtx>, chain: Arc<Chain>) -> Arc<Self> {
        let book = PayBook::new(ctx.jobs.clone(), Side::Requester);
        Arc::new_cyclic(|me| PaidRequester {
            book,
            ctx,
            chain,
            me: me.clone(),
            progress: Mutex::new(HashMap::new()),
            result_at: Mutex::new(HashMap::new()),
            verify_lock: tokio::sync::Mutex::new(()),
            busy: Arc::new(Busy::default()),
        })
    }

    /// `job`'s stored payment; `None` when the job or its payment is not stored, or the
    /// store failed.
    fn stored_payment(&self, job: &JobId) -> Option<PaymentRecord> {
        self.ctx
            .jobs
            .get(job, Side::Requester)
            .ok()
            .flatten()?
            .payment
    }

    /// Progress of `job`'s payment, starting from what the store says now (a proof may have
    /// been checked before anyone subscribed).
    fn subscribe(&self, job: JobId) -> watch::Receiver<PayProgress> {
        let (tx, rx) = {
            let mut m = self.progress.lock();
            let tx = m
                .entry(job)
                .or_insert_with(|| watch::channel(PayProgress::Waiting).0)
                .clone();
            let rx = tx.subscribe();
            (tx, rx)
        };
        let stored = self.stored_payment(&job);
        let now = match stored {
            Some(p) => match p.status {
                PayStatus::Verified => Some(PayProgress::Verified),
                PayStatus::Disputed => Some(PayProgress::Invalid(p.error.unwrap_or_default())),
                s if !s.is_open() && p.proof_verified == Some(false) => {
                    Some(PayProgress::Invalid(p.error.unwrap_or_default()))
                }
                s if !s.is_open() => Some(PayProgress::Settled),
                _ => None,
            },
            None => None,
        };
        if let Some(now) = now {
            tx.send_if_modified(|cur| {
                let stale = matches!(cur, PayProgress::Waiting);
                if stale {
                    *cur = now;
                }
                stale
            });
        }
        rx
    }

    fn notify(&self, job: &JobId, p: PayProgress) {
        let done = matches!(p, PayProgress::Settled);
        let mut m = self.progress.lock();
        if let Some(tx) = m.get(job) {
            tx.send_replace(p);
        }
        if done {
            m.remove(job);
        }
    }

    fn spawn_verify(&self, job: JobId) {
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move { me.try_verify(job).await });
        }
    }

    fn drop_msg(&self, reason: DropReason, from: &PeerKey, job: &JobId, why: &str) {
        self.ctx.metrics.dropped(reason);
        tracing::warn!(from = %from.short(), %job, reason = reason.as_str(), "payment_request dropped: {why}");
    }
}

/// The late path's receipt check ([`RequesterPayments::on_late_result`]).
impl PaidRequester {
    /// Check a late result's receipt against what the job's attempt asked (kept on its
    /// record when the task was sent); a job recorded before that was kept has nothing to
    /// check against and is refused.
    fn late_receipt(
        &self,
        rec: &JobRecord,
        from: &PeerKey,
        result: &TaskResult,
    ) -> Result<(), ReceiptMismatch> {
        let Some(asked) = &rec.asked else {
            return Err(ReceiptMismatch::Field {
                field: "job",
                want: "what the attempt asked, kept when the task was sent".into(),
                got: "nothing kept".into(),
            });
        };
        let provider = rec.peer.unwrap_or(*from);
        check_receipt(
            result.receipt.as_ref(),
            &asked.expected(
                &rec.job_id,
                &provider,
                &rec.model,
                &result.output,
                &result.tool_calls,
            ),
        )
    }

    /// Refuse a late result whose receipt does not check, as a live one is: not accepted
    /// (nothing to verify or pay), the receipt kept with why, the provider marked
    /// `Dispute`, and the payment `disputed`, so its submit is disputed within the window.
    fn refuse_late(&self, job: JobId, from: &PeerKey, result: &TaskResult, why: String) {
        tracing::warn!(%job, from = %from.short(), %why, "late result's receipt refused: not accepted, not paid; disputed once submitted");
        let receipt = result.receipt.clone();
        let kept = why.clone();
        let res = self.ctx.jobs.update(&job, Side::Requester, |r| {
            r.receipt = receipt;
            r.receipt_refused = Some(kept);
        });
        if let Err(e) = res {
            tracing::warn!(%job, error = %e, "cannot keep the late receipt with the job");
        }
        self.ctx
            .mesh
            .history
            .record(from, crate::mesh::history::ProviderOutcome::Dispute, None);
        let advanced = self.book.advance(&job, PayStatus::Disputed, |_, p| {
            p.proof_verified = Some(false);
            p.error = Some(format!("the late result was refused (bad_receipt): {why}"));
        });
        if advanced {
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(me.dispute(job));
            }
        }
    }
}

#[async_trait]
impl RequesterPayments for PaidRequester {
    fn paid(&self) -> bool {
        true
    }

    async fn begin(&self, at: &Begin<'_>) -> Result<Begun, BeginError> {
        let mut job_id = at.job_id;
        // A stake names one job and one provider: a failover runs under a fresh job id. The
        // tried attempt's record ends `failed` (it keeps its payment, which the watcher
        // ends) and points to the next, a new record of the same delegation.
        if at.tried {
            let (from, to, req) = (job_id, JobId::new(), at.req);
            let mut rec =
                JobRecord::new(to, Side::Requester, &req.model, &req.prompt, at.deadline_ms);
            rec.timings.discover_ms = Some(at.discover_ms);
            self.ctx.jobs.insert(&rec).map_err(|e| BeginError {
                job_id,
                error: PaymentError::NewJob(e),
            })?;
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
            tracing::info!(job = %from, next = %to, "paid failover: a fresh job id and stake for the next provider");
            job_id = to;
        }
        // No stake is sent with less time left than one takes to land.
        if let Some(wait) = self.own_stake_wait() {
            if Instant::now() + wait >= at.deadline {
                let error = PaymentError::LandsTooLate {
                    wait_ms: wait.as_millis() as u64,
                };
                return Err(BeginError { job_id, error });
            }
        }
        match self.stake(&job_id, at.ad, at.deadline_ms).await {
            Ok(stake) => Ok(Begun {
                job_id,
                stake: Some(stake),
            }),
            Err(error) => Err(BeginError { job_id, error }),
        }
    }

    async fn end(
        &self,
        job_id: &JobId,
        provider: &PeerKey,
        outcome: AttemptOutcome,
    ) -> Option<AttemptStake> {
        if outcome == AttemptOutcome::Deadline {
            return None;
        }
        if matches!(outcome, AttemptOutcome::Dead | AttemptOutcome::Unreachable) {
            // It may only look dead: asked to stop, a live provider declines the stake (the
            // requester is refunded at once) instead of finishing a job nobody will pay for.
            let ctx = self.ctx.clone();
            let provider = *provider;
            let cancel = Message::TaskCancel(TaskCancel { job_id: *job_id });
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    ctx.config.delivery.send_timeout,
                    ctx.endpoint.send(&provider, &cancel),
                )
                .await;
            });
        }
        let job = *job_id;
        // The provider declines before it answers task_error, so a decline is on chain by
        // now; check_staking records a stake that ended (declined: refunded) or landed.
        let on_chain = self.check_staking(job).await;
        let pay = self.stored_payment(&job)?;
        let refund_after = Some(pay.stake_deadline);
        // A result this requester refused: should the provider submit it all the same, the
        // watcher disputes the submit within the window (rule 3), and the arbiter decides.
        if outcome.refuses_result() && pay.status == PayStatus::Staked {
            let why = format!("the result was refused ({outcome}): disputed once submitted");
            tracing::warn!(%job, provider = %provider.short(), %why);
            let advanced = self.book.advance(&job, PayStatus::Disputed, |_, p| {
                p.proof_verified = Some(false);
                p.error = Some(why.clone());
            });
            if advanced {
                return Some(AttemptStake {
                    status: StakeOutcome::Payment(PayStatus::Disputed),
                    tx_hash: None,
                    refund_after,
                });
            }
        }
        let stake = match (pay.status, on_chain) {
            (PayStatus::Refunded, _) => {
                let tx = match pay.tx_hash {
                    Some(tx) => Some(tx),
                    None => {
                        let found = self
                            .chain
                            .fair
                            .settlement_tx(job_b256(&job), 1_000)
                            .await
                            .ok()
                            .flatten();
                        let (tx, url) = match found {
                            Some(h) => (Some(format!("{h:#x}")), Some(self.chain.escrow.tx_url(h))),
                            None => (None, None),
                        };
                        let recorded = tx.clone();
                        self.book.edit(&job, |_, p| {
                            p.tx_hash = recorded;
                            p.explorer_url = url;
                        });
                        tx
                    }
                };
                AttemptStake {
                    status: StakeOutcome::Refunded,
                    tx_hash: tx,
                    refund_after: None,
                }
            }
            (PayStatus::Staked, _) => AttemptStake {
                status: StakeOutcome::PendingRefund,
                tx_hash: None,
                refund_after,
            },
            (PayStatus::Staking, Some(FairStatus::None)) => AttemptStake {
                status: StakeOutcome::NotStaked,
                tx_hash: None,
                refund_after,
            },
            (other, _) => AttemptStake {
                status: StakeOutcome::Payment(other),
                tx_hash: pay.tx_hash,
                refund_after: other.is_open().then_some(pay.stake_deadline),
            },
        };
        tracing::info!(%job, stake = %stake.status, "the attempt failed; its stake");
        Some(stake)
    }

    /// Wait until the paid job's proof checks (or, with `settled`, its stake is released),
    /// then give its record. The proof may come a little after the agent's deadline; it is
    /// waited for at least [`PROOF_GRACE`].
    async fn settle(
        &self,
        job_id: &JobId,
        wait: WaitFor,
        deadline: Instant,
    ) -> Result<Option<JobRecord>, DelegateError> {
        let job_id = *job_id;
        // The result is recorded: verify once the proof is here.
        let mut rx = self.subscribe(job_id);
        self.result_at.lock().insert(job_id, Instant::now());
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move { me.try_verify(job_id).await });
        }
        let proof_until = deadline.max(Instant::now() + PROOF_GRACE);
        let settle_until = proof_until + Duration::from_secs(self.chain.dispute_window);
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
            .map(Some)
    }

    async fn on_late_result(&self, from: &PeerKey, result: TaskResult) -> bool {
        let job = result.job_id;
        let Ok(Some(rec)) = self.ctx.jobs.get(&job, Side::Requester) else {
            return false;
        };
        let Some(pay) = &rec.payment else {
            return false;
        };
        if !rec.peer.is_some_and(|k| k.same_node(from)) {
            return false;
        }
        if let Some(next) = rec.moved_to {
            // The delegation moved on to another provider with its own stake: this one is
            // not paid; its stake is declined (when the provider heard the cancel) or
            // refunded after its deadline.
            tracing::info!(%job, moved_to = %next, from = %from.short(), "result for an attempt the delegation moved away from: not paid");
            return true;
        }
        if rec.output.is_some() || !matches!(pay.status, PayStatus::Staked | PayStatus::Staking) {
            // The provider sends its result again when it has not heard from us.
            tracing::debug!(%job, status = pay.status.as_str(), "repeated task_result ignored");
            return true;
        }
        // The same receipt check as a live result's, against what the attempt asked: a
        // late result whose receipt does not match is refused, and disputed should its
        // provider submit it.
        if let Err(why) = self.late_receipt(&rec, from, &result) {
            self.refuse_late(job, from, &result, why.to_string());
            return true;
        }
        let usage = result.usage.clone();
        let res = self
            .ctx
            .jobs
            .transition(&job, Side::Requester, JobState::Completed, |r| {
                r.output = Some(result.output);
                r.usage = Some(usage);
                r.receipt = result.receipt;
            });
        match res {
            Ok(_) => {
                tracing::info!(%job, from = %from.short(), "late result recorded; verifying its proof before paying");
                self.result_at.lock().insert(job, Instant::now());
                self.spawn_verify(job);
                true
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "late result not recorded");
                false
            }
        }
    }

    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest) {
        let job = req.job_id;
        let rec = match self.ctx.jobs.get(&job, Side::Requester) {
            Ok(Some(r)) => r,
            Ok(None) => return self.drop_msg(DropReason::Unexpected, from, &job, "no such job"),
            Err(e) => {
                tracing::error!(%job, error = %e, "cannot read the job for a payment_request");
                return;
            }
        };
        let Some(pay) = rec.payment.clone() else {
            return self.drop_msg(DropReason::Unexpected, from, &job, "the job is not paid");
        };
        if !rec.peer.is_some_and(|k| k.same_node(from)) {
            return self.drop_msg(
                DropReason::Spoofed,
                from,
                &job,
                "the sender is not this job's provider",
            );
        }
        match pay.status {
            PayStatus::Staked | PayStatus::Staking => {
                if pay.request.is_some() && rec.output.is_some() {
                    tracing::debug!(%job, "duplicate payment_request while verifying");
                    return;
                }
                self.book.edit(&job, |_, p| p.request = Some(req));
                self.spawn_verify(job);
            }
            PayStatus::Released => {
                // The provider asks again (it did not hear us): tell it again.
                if let (Some(tx), Some(provider)) = (pay.tx_hash, rec.peer) {
                    self.confirm(&provider, job, tx, pay.explorer_url.unwrap_or_default())
                        .await;
                }
            }
            other => {
                tracing::info!(%job, status = other.as_str(), "payment_request for a job past verification ignored");
            }
        }
    }
}
