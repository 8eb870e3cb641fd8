//! The requester's money after the result: verify the provider's proof, then release the
//! stake with this node's own wallet (escrow v4: no operator), or dispute the provider's
//! submit within the dispute window when the check fails (the arbiter decides, from the
//! [`Evidence`]); unwind a stake whose job never got an answer. The payment watcher drives
//! these too.

use std::sync::Arc;
use std::time::Instant;

use super::PaidRequester;
use crate::axl::PeerKey;
use crate::chain::FairStatus;
use crate::jobs::{JobRecord, PayStatus, PaymentRecord, Side};
use crate::paid::evidence::Evidence;
use crate::paid::verify::{check_payment_request, PaymentRequestRefusal};
use crate::paid::{final_status, job_b256, parse_b256, BusyGuard, PayProgress};
use crate::protocol::{JobId, Message, PaymentConfirmed};

impl PaidRequester {
    /// `job` held in [`crate::paid::Busy`], with its record and payment; `None` while
    /// another step holds it, or when the job or its payment is not stored.
    fn take_paid(&self, job: JobId) -> Option<(BusyGuard, JobRecord, PaymentRecord)> {
        let guard = self.busy.try_take(job)?;
        let rec = self.ctx.jobs.get(&job, Side::Requester).ok()??;
        let pay = rec.payment.clone()?;
        Some((guard, rec, pay))
    }

    /// Verify the job's proof when both the output and the payment request are stored.
    pub(crate) async fn try_verify(self: Arc<Self>, job: JobId) {
        let _l = self.verify_lock.lock().await;
        let rec = match self.ctx.jobs.get(&job, Side::Requester) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(%job, error = %e, "cannot read the job to verify it");
                return;
            }
        };
        let Some(pay) = rec.payment.clone() else {
            return;
        };
        // A stake the provider submitted from our authorization: believe the chain (which
        // moves the stored payment to staked).
        let staked = pay.status == PayStatus::Staked
            || (pay.status == PayStatus::Staking
                && rec.output.is_some()
                && pay.request.is_some()
                && matches!(
                    self.check_staking(job).await,
                    Some(FairStatus::Staked | FairStatus::Submitted)
                ));
        if !staked {
            return;
        }
        let (Some(output), Some(req), Some(provider)) =
            (rec.output.clone(), pay.request.clone(), rec.peer)
        else {
            return;
        };
        let started = Instant::now();
        let usdc = self.chain.escrow.usdc_address();
        let p = pay.clone();
        // The output is bound to the model's digest the receipt names.
        let bound = crate::protocol::receipt::OutputBinding::of(rec.receipt.as_ref());
        let verdict = tokio::task::spawn_blocking(move || {
            check_payment_request(&req, &output, &bound, &provider, &job, &p, &usdc)
        })
        .await
        .unwrap_or_else(|e| Err(PaymentRequestRefusal::Internal(e.to_string())));
        let verify_ms = started.elapsed().as_millis() as u64;
        let prove_ms = self
            .result_at
            .lock()
            .remove(&job)
            .map(|t| t.elapsed().as_millis() as u64)
            .map(|since_result| since_result.saturating_sub(verify_ms));
        match verdict {
            Ok(commitment) => {
                tracing::info!(%job, verify_ms, "proof verified");
                self.book.advance(&job, PayStatus::Verified, |r, p| {
                    p.proof_verified = Some(true);
                    p.output_commitment = Some(commitment);
                    p.error = None;
                    r.timings.verify_ms = Some(verify_ms);
                    if prove_ms.is_some() {
                        r.timings.prove_ms = prove_ms;
                    }
                });
                self.ctx.metrics.proof_checked(true);
                self.notify(&job, PayProgress::Verified);
                tokio::spawn(self.clone().settle(job));
            }
            Err(refusal) => {
                let reason = refusal.to_string();
                tracing::warn!(%job, provider = %provider.short(), %reason, "payment request refused: nothing is paid; disputing the provider's submit");
                self.book.advance(&job, PayStatus::Disputed, |r, p| {
                    p.proof_verified = Some(false);
                    p.error = Some(reason.clone());
                    r.timings.verify_ms = Some(verify_ms);
                });
                self.ctx.metrics.proof_checked(false);
                self.ctx.mesh.history.record(
                    &provider,
                    crate::mesh::history::ProviderOutcome::Dispute,
                    None,
                );
                self.notify(&job, PayProgress::Invalid(reason));
                tokio::spawn(self.clone().dispute(job));
            }
        }
    }

    /// Release a verified job's stake to the provider with this node's own wallet, and tell
    /// it. The stake is read first, so a retried release never pays twice.
    pub(crate) async fn settle(self: Arc<Self>, job: JobId) {
        let Some((_g, rec, pay)) = self.take_paid(job) else {
            return;
        };
        if pay.status != PayStatus::Verified {
            return;
        }
        let Some(commitment) = pay.output_commitment.as_deref().and_then(parse_b256) else {
            tracing::error!(%job, "verified job has no valid output commitment stored");
            return;
        };
        if self.ended(&job).await {
            return;
        }
        let started = Instant::now();
        let res = self.chain.fair.release(job_b256(&job), commitment).await;
        let settle_ms = started.elapsed().as_millis() as u64;
        match res {
            Ok(h) => {
                let tx = format!("{h:#x}");
                let url = self.chain.escrow.tx_url(h);
                tracing::info!(%job, %tx, settle_ms, "stake released by this requester");
                if self.book.advance(&job, PayStatus::Released, |r, p| {
                    p.tx_hash = Some(tx.clone());
                    p.explorer_url = Some(url.clone());
                    p.error = None;
                    r.timings.settle_ms = Some(settle_ms);
                }) {
                    self.ctx.metrics.settled(PayStatus::Released.as_str());
                }
                self.notify(&job, PayProgress::Settled);
                if let Some(provider) = rec.peer {
                    self.confirm(&provider, job, tx, url).await;
                }
            }
            Err(e) => {
                if self.ended(&job).await {
                    return;
                }
                tracing::warn!(%job, error = %e, "release failed; the payment watcher retries (a provider that submitted is paid by finalize after the window anyway)");
                let msg = e.to_string();
                self.book.edit(&job, |_, p| p.error = Some(msg.clone()));
                self.notify(&job, PayProgress::SettleFailed(msg));
            }
        }
    }

    /// Records the end of `job`'s stake when the chain shows one; true if it has ended.
    async fn ended(&self, job: &JobId) -> bool {
        let Ok(s) = self.chain.fair.get_stake(job_b256(job)).await else {
            return false;
        };
        let Some(st) = final_status(s.status) else {
            return false;
        };
        let tx = self.chain.settlement_tx(job).await;
        tracing::info!(%job, stake = %s.status, "the stake has ended; recording it");
        if self
            .book
            .advance(job, st, |_, p| self.chain.note_settlement(p, tx))
        {
            self.ctx.metrics.settled(st.as_str());
        }
        self.notify(job, PayProgress::Settled);
        true
    }

    /// A job whose result failed the check (its payment `disputed`): once the provider has
    /// submitted, dispute it within the window with the [`Evidence`], and the arbiter decides;
    /// while nothing is submitted, wait (after the deadline the stake is refunded). Called
    /// again by the watcher until the stake ends.
    pub(crate) async fn dispute(self: Arc<Self>, job: JobId) {
        let Some((guard, rec, pay)) = self.take_paid(job) else {
            return;
        };
        if pay.status != PayStatus::Disputed || self.ended(&job).await {
            return;
        }
        let (stake, chain_now) = match tokio::try_join!(
            self.chain.fair.get_stake(job_b256(&job)),
            self.chain.escrow.chain_time()
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot read the stake to dispute it; retrying later");
                return;
            }
        };
        match stake.status {
            FairStatus::Staked if chain_now > pay.stake_deadline => {
                drop(guard);
                self.unwind(job, chain_now).await;
            }
            FairStatus::Submitted => {
                let closes = stake.info.submitted_at + self.chain.dispute_window;
                if chain_now >= closes {
                    tracing::warn!(%job, "the dispute window closed before this requester could dispute; the provider is paid by finalize");
                    return;
                }
                let ev = Evidence::of(&rec);
                match self
                    .chain
                    .fair
                    .dispute(job_b256(&job), ev.task_hash, ev.result_hash)
                    .await
                {
                    Ok(tx) => {
                        tracing::info!(%job, %tx, "disputed the provider's submit: the arbiter decides");
                        let url = self.chain.escrow.tx_url(tx);
                        self.book.edit(&job, |_, p| {
                            let why = p.error.take().unwrap_or_default();
                            p.error = Some(format!(
                                "{why}; disputed on chain ({url}): the escrow's arbiter decides"
                            ));
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%job, error = %e, "dispute failed; retrying while the window is open");
                        tracing::debug!(%job, "the check's reason stays the payment's error");
                    }
                }
            }
            // Staked: the provider has not submitted (nothing can pay it without a submit or
            // this requester's release); Disputed: the arbiter decides.
            _ => {}
        }
    }

    /// Take the stake back after its deadline when nothing verified arrived and the provider
    /// never submitted. A provider that did submit proved on chain that it delivered this
    /// job's output under its key: without a failed check to dispute, it is paid by
    /// `finalize` after the window (recorded once the chain shows it).
    pub(crate) async fn unwind(self: Arc<Self>, job: JobId, chain_now: u64) {
        let Some((_guard, _rec, pay)) = self.take_paid(job) else {
            return;
        };
        if chain_now <= pay.stake_deadline {
            return;
        }
        let stake = match self.chain.fair.get_stake(job_b256(&job)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot read the stake; retrying later");
                return;
            }
        };
        match (pay.status, stake.status) {
            (_, s) if final_status(s).is_some() => {
                let st = final_status(s).unwrap_or(PayStatus::Refunded);
                self.book.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            (PayStatus::Staking, FairStatus::None) => {
                tracing::info!(%job, "the stake never landed; nothing is locked");
                self.book.advance(&job, PayStatus::Unwound, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            (_, FairStatus::Staked) => match self.chain.escrow.refund(job_b256(&job)).await {
                Ok(tx) => {
                    let url = self.chain.escrow.tx_url(tx);
                    tracing::info!(%job, tx = %tx, "no result by the deadline: stake refunded");
                    if self.book.advance(&job, PayStatus::Refunded, |_, p| {
                        p.tx_hash = Some(format!("{tx:#x}"));
                        p.explorer_url = Some(url);
                    }) {
                        self.ctx.metrics.settled("refunded");
                    }
                    self.notify(&job, PayProgress::Settled);
                }
                Err(e) => {
                    tracing::warn!(%job, error = %e, "refund failed; retrying later");
                    self.book.edit(&job, |_, p| p.error = Some(e.to_string()));
                }
            },
            (_, FairStatus::Submitted | FairStatus::Disputed) => {
                tracing::debug!(%job, stake = %stake.status, "submitted by the provider: finalize or the arbiter ends it");
            }
            (st, s) => {
                tracing::warn!(%job, status = st.as_str(), stake = %s, "unexpected stake state after the deadline");
            }
        }
    }

    pub(super) async fn confirm(
        &self,
        provider: &PeerKey,
        job: JobId,
        tx_hash: String,
        explorer_url: String,
    ) {
        let amount = self.stored_payment(&job).map(|p| p.amount_units);
        let settle_response = crate::paid::x402::settle_response(
            &tx_hash,
            self.chain.settings.chain_id,
            self.chain.wallet,
            amount,
        );
        let msg = Message::PaymentConfirmed(PaymentConfirmed {
            job_id: job,
            tx_hash,
            explorer_url,
            settle_response,
        });
        let _ = self.ctx.endpoint.send(provider, &msg).await;
    }
}
