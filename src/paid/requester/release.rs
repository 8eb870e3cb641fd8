//! The requester's money after the result: verify the provider's proof, then release the
//! stake through the settler, or reject it through the operator when the proof fails;
//! unwind a stake whose job never got an answer. The payment watcher drives these too.

use std::sync::Arc;
use std::time::Instant;

use super::PaidRequester;
use crate::axl::PeerKey;
use crate::chain::{SettleError, StakeStatus};
use crate::jobs::{PayStatus, Side};
use crate::paid::verify::{check_payment_request, PaymentRequestRefusal};
use crate::paid::{final_status, job_b256, parse_b256, PayProgress};
use crate::protocol::{JobId, Message, PaymentConfirmed};

impl PaidRequester {
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
                && self.check_staking(job).await == Some(StakeStatus::Staked));
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
        let digest = crate::protocol::receipt::receipt_digest(rec.receipt.as_ref()).to_string();
        let verdict = tokio::task::spawn_blocking(move || {
            check_payment_request(&req, &output, &digest, &provider, &job, &p, &usdc)
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
                tracing::warn!(%job, provider = %provider.short(), %reason, "payment request refused: nothing is paid; asking the operator to reject");
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
                tokio::spawn(self.clone().reject(job));
            }
        }
    }

    /// Release a verified job's stake to the provider and tell it.
    pub(crate) async fn settle(self: Arc<Self>, job: JobId) {
        let Some(_g) = self.busy.try_take(job) else {
            return;
        };
        let Ok(Some(rec)) = self.ctx.jobs.get(&job, Side::Requester) else {
            return;
        };
        let Some(pay) = rec.payment.clone() else {
            return;
        };
        if pay.status != PayStatus::Verified {
            return;
        }
        let Some(commitment) = pay.output_commitment.as_deref().and_then(parse_b256) else {
            tracing::error!(%job, "verified job has no valid output commitment stored");
            return;
        };
        let started = Instant::now();
        let res = self.settler.release(job_b256(&job), commitment).await;
        let settle_ms = started.elapsed().as_millis() as u64;
        match res {
            Ok(s) => {
                let status = final_status(s.status).unwrap_or(PayStatus::Released);
                let tx = s.tx_hash.map(|h| format!("{h:#x}"));
                let url = s.explorer_url.clone();
                tracing::info!(%job, settler = self.settler.name(), tx = ?tx, settle_ms, status = status.as_str(), "stake settled");
                if self.book.advance(&job, status, |r, p| {
                    p.tx_hash = tx.clone();
                    p.explorer_url = url.clone();
                    p.error = None;
                    r.timings.settle_ms = Some(settle_ms);
                }) {
                    self.ctx.metrics.settled(status.as_str());
                }
                self.notify(&job, PayProgress::Settled);
                if let (PayStatus::Released, Some(tx), Some(provider)) = (status, tx, rec.peer) {
                    self.confirm(&provider, job, tx, url.unwrap_or_default())
                        .await;
                }
            }
            Err(SettleError::Conflict { status, .. }) => {
                let st = final_status(status).unwrap_or(PayStatus::Refunded);
                tracing::warn!(%job, status = %status, "stake already ended otherwise; recording it");
                self.book.advance(&job, st, |_, p| {
                    p.error = Some(format!("the stake was already {status}"));
                });
                self.notify(&job, PayProgress::Settled);
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "release failed; the payment watcher retries");
                let msg = e.to_string();
                self.book.edit(&job, |_, p| p.error = Some(msg.clone()));
                self.notify(&job, PayProgress::SettleFailed(msg));
            }
        }
    }

    /// Ask the operator to reject a disputed job (the requester is refunded).
    pub(crate) async fn reject(self: Arc<Self>, job: JobId) {
        let Some(_g) = self.busy.try_take(job) else {
            return;
        };
        let Ok(Some(rec)) = self.ctx.jobs.get(&job, Side::Requester) else {
            return;
        };
        if rec.payment.as_ref().map(|p| p.status) != Some(PayStatus::Disputed) {
            return;
        }
        match self.settler.reject(job_b256(&job)).await {
            Ok(s) => {
                let status = final_status(s.status).unwrap_or(PayStatus::Rejected);
                let tx = s.tx_hash.map(|h| format!("{h:#x}"));
                tracing::info!(%job, tx = ?tx, status = status.as_str(), "disputed stake returned to the requester");
                if self.book.advance(&job, status, |_, p| {
                    p.tx_hash = tx;
                    p.explorer_url = s.explorer_url;
                }) {
                    self.ctx.metrics.settled(status.as_str());
                }
                self.notify(&job, PayProgress::Settled);
            }
            Err(SettleError::Conflict { status, .. }) => {
                let st = final_status(status).unwrap_or(PayStatus::Released);
                tracing::warn!(%job, status = %status, "disputed stake had already ended; recording it");
                self.book.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "reject failed; the payment watcher retries");
                let msg = e.to_string();
                self.book.edit(&job, |_, p| p.error = Some(msg));
            }
        }
    }

    /// Take the stake back after its deadline when nothing verified arrived: refund when the
    /// provider never submitted, reject through the operator when it did.
    pub(crate) async fn unwind(self: Arc<Self>, job: JobId, chain_now: u64) {
        let Some(guard) = self.busy.try_take(job) else {
            return;
        };
        let Ok(Some(rec)) = self.ctx.jobs.get(&job, Side::Requester) else {
            return;
        };
        let Some(pay) = rec.payment.clone() else {
            return;
        };
        if chain_now <= pay.stake_deadline {
            return;
        }
        let stake = match self.chain.escrow.get_stake(job_b256(&job)).await {
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
            (PayStatus::Staking, StakeStatus::None) => {
                tracing::info!(%job, "the stake never landed; nothing is locked");
                self.book.advance(&job, PayStatus::Unwound, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            (_, StakeStatus::Staked) => match self.chain.escrow.refund(job_b256(&job)).await {
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
            (_, StakeStatus::Submitted) => {
                let reason =
                    "the provider submitted an output hash but no verified result arrived by the deadline";
                tracing::warn!(%job, "{reason}; asking the operator to reject");
                self.book.advance(&job, PayStatus::Disputed, |_, p| {
                    p.error = Some(reason.into());
                });
                drop(guard);
                self.clone().reject(job).await;
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
        let amount = self
            .ctx
            .jobs
            .get(&job, Side::Requester)
            .ok()
            .flatten()
            .and_then(|r| r.payment.map(|p| p.amount_units));
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
