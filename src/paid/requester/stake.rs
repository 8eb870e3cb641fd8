//! The requester's stake: locked before the task is sent (by this node, or as an
//! authorization the provider submits), and read back from the chain.

use std::time::Instant;

use alloy::primitives::{Address, B256, U256};

use super::PaidRequester;
use crate::chain::{EscrowRevert, FairStatus, StakeMode};
use crate::jobs::{now_ms, PayStatus, PaymentRecord, Side};
use crate::paid::{final_status, job_b256, PayProgress, PaymentError};
use crate::protocol::{JobId, ResourceAd, StakeBinding, StakeRef};

impl PaidRequester {
    /// Lock payment for `job_id` with the chosen provider before the task is sent.
    pub(super) async fn stake(
        &self,
        job_id: &JobId,
        ad: &ResourceAd,
        deadline_ms: u64,
    ) -> Result<StakeRef, PaymentError> {
        let job = *job_id;
        let wallet: Address = ad
            .wallet
            .as_deref()
            .and_then(|w| w.parse().ok())
            .ok_or(PaymentError::NoProviderWallet)?;
        if ad.price == 0 {
            return Err(PaymentError::ZeroPrice);
        }
        let escrow = &self.chain.escrow;
        let chain_now = escrow
            .chain_time()
            .await
            .map_err(PaymentError::ChainUnreadable)?;
        let left_s = deadline_ms.saturating_sub(now_ms()).div_ceil(1000);
        // The margin is the escrow's dispute window, its one timing setting: a provider that
        // delivers at the job's deadline still submits, and is paid, before the stake ends.
        let stake_deadline = chain_now + left_s + self.chain.dispute_window;
        let pay = PaymentRecord::new(
            PayStatus::Staking,
            self.chain.settings.chain_id,
            self.chain.escrow_hex(),
            ad.price,
            format!("{wallet:#x}"),
            stake_deadline,
        );
        self.ctx
            .jobs
            .update(&job, Side::Requester, |r| {
                r.peer = Some(ad.node_id);
                r.peer_ens = ad.ens.clone();
                r.peer_wallet = ad.wallet.clone();
                r.price_units = Some(ad.price);
                r.payment = Some(pay);
            })
            .map_err(PaymentError::Record)?;
        let started = Instant::now();
        // The stake names the provider's AXL key (its commitment): the escrow checks the
        // provider's proof against it at `submit`.
        let key_commitment = crate::chain::key_commitment(&ad.node_id.0);
        if self.chain.settings.stake_mode == StakeMode::Authorization {
            return self
                .stake_by_authorization(job, wallet, key_commitment, ad.price, stake_deadline)
                .await;
        }
        let (id, amount) = (job_b256(&job), U256::from(ad.price));
        let staked = match self.chain.settings.stake_mode {
            StakeMode::Permit => {
                escrow
                    .stake_with_permit(id, wallet, key_commitment, amount, stake_deadline)
                    .await
            }
            _ => {
                escrow
                    .stake(id, wallet, key_commitment, amount, stake_deadline)
                    .await
            }
        };
        match staked {
            Ok(tx) => {
                let stake_ms = started.elapsed().as_millis() as u64;
                let tx = format!("{tx:#x}");
                // The details first: the watcher may have seen the stake on chain already.
                self.book.edit(&job, |r, p| {
                    p.stake_tx = Some(tx.clone());
                    r.timings.stake_ms = Some(stake_ms);
                });
                self.book.advance(&job, PayStatus::Staked, |_, _| {});
                // The job id is public from now on (the `Staked` event): the binding lets
                // the provider take this stake from this node only.
                let me = self.ctx.endpoint.me();
                let binding = escrow
                    .sign_stake_binding(id, &ad.node_id.0, &me.0)
                    .inspect_err(|e| tracing::warn!(%job, error = %e, "cannot sign the stake binding; the provider will refuse the stake"))
                    .ok()
                    .map(|signature| StakeBinding { node: me, signature });
                Ok(StakeRef {
                    chain_id: self.chain.settings.chain_id,
                    escrow: self.chain.escrow_hex(),
                    amount: ad.price.to_string(),
                    tx,
                    authorization: None,
                    binding,
                })
            }
            Err(e) => {
                // A refusal (balance, allowance, a revert) locked nothing. Anything else
                // (a lost receipt) may still land: the watcher finds out from getStake.
                let refused =
                    e.revert().is_some() && !matches!(e.revert(), Some(EscrowRevert::NoReason));
                let msg = e.to_string();
                if refused {
                    self.book
                        .advance(&job, PayStatus::Unwound, |_, p| p.error = Some(msg));
                    Err(PaymentError::StakeRefused(e))
                } else {
                    self.book.edit(&job, |_, p| p.error = Some(msg));
                    Err(PaymentError::StakeUncertain(e))
                }
            }
        }
    }

    /// `STAKE_MODE=authorization`: sign the EIP-3009 authorization the provider submits as
    /// the stake before any work. Nothing is sent from here, so the payment stays `Staking`
    /// until the chain shows the stake (when the result arrives, or the watcher looks). The
    /// authorization is valid until the stake's deadline, after which the escrow takes no
    /// stake anyway: past it, a stake that is not on chain never will be, and the watcher
    /// unwinds it. (Not the agent's own deadline: anvil's and a quiet chain's latest block
    /// time lags the wall clock by whole seconds, which would expire it before it lands.)
    async fn stake_by_authorization(
        &self,
        job: JobId,
        provider: Address,
        key_commitment: B256,
        price: u64,
        stake_deadline: u64,
    ) -> Result<StakeRef, PaymentError> {
        let started = Instant::now();
        // Refuse here what the provider's transaction would be refused for: a clear 402
        // now instead of a task_error after a round trip.
        let balance = self
            .chain
            .escrow
            .usdc_balance(self.chain.wallet)
            .await
            .map_err(PaymentError::ChainUnreadable)?;
        let signed = if balance < U256::from(price) {
            Err(EscrowRevert::InsufficientBalance {
                balance,
                needed: U256::from(price),
            }
            .into())
        } else {
            self.chain
                .escrow
                .sign_stake_authorization(
                    job_b256(&job),
                    provider,
                    key_commitment,
                    U256::from(price),
                    stake_deadline,
                    stake_deadline,
                )
                .await
        };
        match signed {
            Ok(auth) => {
                let stake_ms = started.elapsed().as_millis() as u64;
                self.book
                    .edit(&job, |r, _| r.timings.stake_ms = Some(stake_ms));
                Ok(StakeRef {
                    chain_id: self.chain.settings.chain_id,
                    escrow: self.chain.escrow_hex(),
                    amount: price.to_string(),
                    tx: String::new(),
                    authorization: Some(crate::paid::authorization_to_wire(&auth)),
                    binding: None,
                })
            }
            Err(e) => {
                let msg = e.to_string();
                self.book
                    .advance(&job, PayStatus::Unwound, |_, p| p.error = Some(msg));
                Err(PaymentError::StakeRefused(e))
            }
        }
    }

    /// A stake whose transaction may or may not have landed (a crash during `stake`).
    /// Also a stake the provider submits from this node's authorization. Returns the
    /// stake's status on chain when it is this wallet's (None when it cannot be read).
    pub(crate) async fn check_staking(&self, job: JobId) -> Option<FairStatus> {
        let s = match self.chain.fair.get_stake(job_b256(&job)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%job, error = %e, "cannot read the stake yet");
                return None;
            }
        };
        if s.status == FairStatus::None {
            return Some(s.status);
        }
        if s.info.requester != self.chain.wallet {
            tracing::warn!(%job, requester = %s.info.requester, "a stake for this job id is not this wallet's");
            return None;
        }
        match final_status(s.status) {
            Some(st) => {
                tracing::info!(%job, stake = %s.status, "the stake landed and has already ended");
                self.book.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            None => {
                tracing::info!(%job, "the stake is on chain");
                self.book.advance(&job, PayStatus::Staked, |_, _| {});
            }
        }
        Some(s.status)
    }

    /// How long a stake this node sends itself (`STAKE_MODE=approve`) may take to land,
    /// when known; `None` when the provider submits the stake, or nothing is measured yet.
    pub(super) fn own_stake_wait(&self) -> Option<std::time::Duration> {
        match self.chain.settings.stake_mode {
            StakeMode::Approve | StakeMode::Permit => self.chain.escrow.inclusion_estimate(),
            StakeMode::Authorization => None,
        }
    }
}
