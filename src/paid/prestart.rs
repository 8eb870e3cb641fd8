//! Paid at the speed of unpaid (issue 23, item 5): a provider holding a requester's valid
//! EIP-3009 authorization starts the job at once and lands the stake while it runs.
//!
//! Everything that can be known without the stake is checked first, by reads, before any
//! compute ([`super::PaidProvider`]'s `check_stake`): the authorization's signature over
//! the job's terms, its validity window, its nonce still unused (`authorizationState`), and
//! the signer's balance. Once the task holds a slot, [`Prestart`] sends
//! `stakeWithAuthorization` from this node's wallet and the inference starts in the same
//! moment. The job's output waits behind an [`OutputGate`]: no `task_chunk` and no
//! `task_result` leaves before the stake is mined and its receipt checked
//! ([`Landing::landed`]). While the lane waits for the receipt (polled up to a second
//! late), the stake is read every 40 ms (at most 256 reads per job):
//! seen with the signed terms, it is mined, and the output leaves. A stake that never lands (the nonce spent meanwhile, the balance
//! moved, a revert, the lane's deadline) cancels the job: the backend request is dropped,
//! the slot freed, the requester told `stake_missing` ("the stake never landed"), a stake
//! that landed after all is declined, and the peer's budget of unpaid tasks is charged one
//! unit ([`super::gate`]), so a peer whose authorizations fail to land is limited like one
//! that sends unstaked tasks. Its compute is the provider's bounded risk
//! (docs/threat-model.md).
//!
//! With `STAKE_MODE=approve` or `permit` the requester stakes itself before it sends the
//! task, so the provider reads a mined stake and there is nothing to start early.

use std::time::Instant;

use super::landing::{NotLanded, Outcome, Prestart};
use super::provider::{PaidProvider, SUBMIT_MARGIN_SECS};
use super::seams::Authorized;
use super::{job_b256, ProviderPayments, StakeRefusal};
use crate::axl::PeerKey;
use crate::chain::{EscrowRevert, StakeStatus};
use crate::jobs::{now_ms, PayStatus, PaymentRecord};
use crate::protocol::Task;

/// How often the stake is read while it lands, so the output leaves within this of the
/// block that carried it (the lane's own receipt poll is up to a second late).
const SEEN_POLL: std::time::Duration = std::time::Duration::from_millis(40);
/// Most such reads per stake (about five 2-second blocks); then the lane's receipt decides.
const MAX_SEEN_READS: u32 = 256;

impl PaidProvider {
    /// The task holds a slot: check that its authorization still leaves time, and give the
    /// job's payment record with the stake to land while the job runs.
    pub(super) async fn prestart(
        &self,
        from: &PeerKey,
        task: &Task,
        a: Authorized,
    ) -> Result<(PaymentRecord, Prestart), StakeRefusal> {
        let auth = &a.auth;
        let chain_now = self
            .chain_now()
            .await
            .map_err(StakeRefusal::ChainUnreadable)?;
        let task_left = task.deadline_ms.saturating_sub(now_ms()).div_ceil(1000);
        let needed = task_left + self.ctx.config.paid.payment_grace.as_secs() + SUBMIT_MARGIN_SECS;
        let stake_left = auth.deadline.saturating_sub(chain_now);
        if stake_left < needed || auth.valid_before <= chain_now + 1 {
            return Err(StakeRefusal::AuthorizationEndsTooSoon {
                stake_left,
                valid_before: auth.valid_before,
                needed,
            });
        }
        // No stake for a job whose deadline passes before the stake could land: the money
        // would only be locked for a job that cannot be done in time.
        if let Some(wait) = self.chain.escrow.inclusion_estimate() {
            let left_ms = task.deadline_ms.saturating_sub(now_ms());
            if u128::from(left_ms) <= wait.as_millis() {
                return Err(StakeRefusal::LandsTooLate {
                    left_ms,
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        let me = self
            .me
            .upgrade()
            .ok_or(StakeRefusal::AuthorizationsUnsupported)?;
        let pay = PaymentRecord::new(
            PayStatus::Accepted,
            self.chain.settings.chain_id,
            self.chain.escrow_hex(),
            a.units,
            format!("{:#x}", self.chain.wallet),
            auth.deadline,
        );
        let (from, task) = (*from, task.clone());
        let landing = Prestart::new(|tx| Box::pin(async move { me.land(from, task, a, tx).await }));
        Ok((pay, landing))
    }

    /// Send the authorization as the stake and wait for it to be mined; record it, or on
    /// failure charge the peer, decline a stake that landed after all, and say why.
    async fn land(
        &self,
        from: PeerKey,
        task: Task,
        a: Authorized,
        out: std::sync::Arc<Outcome>,
    ) -> Result<(), NotLanded> {
        let job = task.job_id;
        let started = Instant::now();
        let landed = |tx: Option<String>| {
            let (stake_ms, at) = (started.elapsed().as_millis() as u64, now_ms());
            tracing::info!(%job, stake_ms, "stake landed from the requester's authorization: the job's output may leave");
            self.book.edit(&job, |r, p| {
                p.stake_tx = tx.or(p.stake_tx.take());
                p.staked_ms = p.staked_ms.or(Some(at));
                r.timings.stake_ms = r.timings.stake_ms.or(Some(stake_ms));
            });
        };
        let send = self.send_stake(&task, &a);
        tokio::pin!(send);
        // Read the stake while the lane waits for its receipt: seen on chain with the
        // signed terms, it is mined and the output may leave now.
        let seen = async {
            for _ in 0..MAX_SEEN_READS {
                tokio::time::sleep(SEEN_POLL).await;
                if self.stake_on_chain(&job, &a).await {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        let (sent, early) = tokio::select! {
            r = &mut send => (r, false),
            () = seen => {
                landed(None);
                out.send_replace(Some(Ok(())));
                (send.await, true)
            }
        };
        match sent {
            Ok(tx) => {
                landed(tx);
                Ok(())
            }
            Err(e) if early => {
                // The stake is on chain (read above): the job goes on and is paid.
                tracing::warn!(%job, error = %e, "the stake transaction's wait failed, but the stake was seen on chain");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%job, from = %from.short(), error = %e, "the stake never landed: cancelling the job, nothing of its output leaves");
                if !e.is_ours() {
                    self.gate.charge(&from);
                }
                // A receipt that never came may hide a stake that landed: the escrow says.
                self.decline(&task, "the stake never landed").await;
                Err(format!("the stake never landed: {e}"))
            }
        }
    }

    /// Whether the escrow holds `job`'s stake with the authorization's terms, for this
    /// provider.
    async fn stake_on_chain(&self, job: &crate::protocol::JobId, a: &Authorized) -> bool {
        let auth = &a.auth;
        self.chain
            .escrow
            .get_stake(job_b256(job))
            .await
            .is_ok_and(|s| {
                s.status == StakeStatus::Staked
                    && s.requester == auth.requester
                    && s.provider == self.chain.wallet
                    && s.key_commitment == auth.key_commitment
                    && s.amount == auth.amount
                    && s.deadline == auth.deadline
            })
    }

    /// `stakeWithAuthorization` from this wallet, mined; the transaction, or `None` when
    /// someone else landed the same authorization first (checked on chain).
    async fn send_stake(
        &self,
        task: &Task,
        a: &Authorized,
    ) -> Result<Option<String>, StakeRefusal> {
        let (job, auth, esc) = (task.job_id, &a.auth, &self.chain.escrow);
        match esc.stake_with_authorization(auth).await {
            Ok(tx) => Ok(Some(format!("{tx:#x}"))),
            Err(e) if matches!(e.revert(), Some(EscrowRevert::JobExists { .. })) => {
                // Someone submitted the same authorization first (e.g. from the mempool): the
                // terms are the signed ones, so it is the same stake. Check it anyway.
                if self.stake_on_chain(&job, a).await {
                    Ok(None)
                } else {
                    Err(StakeRefusal::StakeFailed(e))
                }
            }
            Err(e) => Err(StakeRefusal::StakeFailed(e)),
        }
    }
}
