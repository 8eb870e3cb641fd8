//! The requester's money: stake before the task, verify the proof before any money moves,
//! then release through the settler (or reject through the operator when the proof fails).
//!
//! The job table is the source of truth: the output and the `payment_request` are stored
//! as they arrive (in either order, or twice), and verification runs once both are there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use alloy::primitives::{Address, B256, U256};
use async_trait::async_trait;
use tokio::sync::watch;

use super::{advance_pay, final_status, job_b256, parse_b256, update_pay, Busy, Chain};
use crate::axl::PeerKey;
use crate::chain::{EscrowRevert, SettleError, Settler, StakeMode, StakeStatus};
use crate::ctx::NodeCtx;
use crate::jobs::{now_ms, JobRecord, JobState, PayStatus, PaymentRecord, Side};
use crate::payment::{PayProgress, PaymentError, RequesterPayments};
use crate::protocol::{
    DropReason, JobId, Message, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, TaskResult,
};
use crate::request::{AttemptStake, StakeOutcome};

/// The requester side of the paid flow.
pub struct PaidRequester {
    ctx: Arc<NodeCtx>,
    chain: Arc<Chain>,
    settler: Arc<dyn Settler>,
    me: Weak<PaidRequester>,
    progress: Mutex<HashMap<JobId, watch::Sender<PayProgress>>>,
    result_at: Mutex<HashMap<JobId, Instant>>,
    verify_lock: tokio::sync::Mutex<()>,
    pub(crate) busy: Arc<Busy>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a `payment_request` is refused (nothing is paid; the operator is asked to reject).
#[derive(Debug, thiserror::Error)]
pub enum PaymentRequestRefusal {
    /// The public signals are not this job's, or the Groth16 proof does not verify.
    #[error("proof refused: {0}")]
    Proof(#[from] crate::zk::ZkError),
    /// `output_commitment` is not the commitment to the output received.
    #[error("output_commitment differs from the commitment to the output received")]
    OutputCommitment,
    /// `wallet_commitment` is not the commitment to the provider's key.
    #[error("wallet_commitment differs from the commitment to the provider's key")]
    WalletCommitment,
    /// The x402 `PaymentRequired` does not match the stake.
    #[error(transparent)]
    X402(#[from] super::x402::X402Refusal),
    /// The check itself could not run.
    #[error("verification task failed: {0}")]
    Internal(String),
}

/// Every check a payment request must pass before money moves, in order. Returns the
/// output commitment (the escrow's `outputHash`) when all pass.
pub fn check_payment_request(
    req: &PaymentRequest,
    output: &str,
    provider: &PeerKey,
    job: &JobId,
    pay: &PaymentRecord,
    usdc: &Address,
) -> Result<String, PaymentRequestRefusal> {
    // 1-4: the output commitment, the wallet commitment, the job id (public signals, in
    // this order), then the Groth16 proof against the committed key.
    let expected = crate::zk::verify_job(
        &req.proof,
        &req.public_signals,
        output.as_bytes(),
        &provider.0,
        &job.0,
    )?;
    if !req
        .output_commitment
        .eq_ignore_ascii_case(&expected.output_hash_hex())
    {
        return Err(PaymentRequestRefusal::OutputCommitment);
    }
    if !req
        .wallet_commitment
        .eq_ignore_ascii_case(&expected.wallet_commitment_hex())
    {
        return Err(PaymentRequestRefusal::WalletCommitment);
    }
    // 5: the x402 PaymentRequired matches the stake.
    let terms = super::x402::Terms {
        job: *job,
        provider: *provider,
        chain_id: pay.chain_id,
        asset: *usdc,
        amount: pay.amount_units,
        pay_to: pay.pay_to.clone(),
        escrow: pay.escrow.clone(),
        capture_deadline: pay.stake_deadline,
    };
    super::x402::check_payment_required(&req.payment_required, &terms)?;
    Ok(expected.output_hash_hex())
}

impl PaidRequester {
    /// A paid requester settling through `settler`.
    pub fn new(ctx: Arc<NodeCtx>, chain: Arc<Chain>, settler: Arc<dyn Settler>) -> Arc<Self> {
        Arc::new_cyclic(|me| PaidRequester {
            ctx,
            chain,
            settler,
            me: me.clone(),
            progress: Mutex::new(HashMap::new()),
            result_at: Mutex::new(HashMap::new()),
            verify_lock: tokio::sync::Mutex::new(()),
            busy: Arc::new(Busy::default()),
        })
    }

    /// The settler in use.
    pub fn settler_name(&self) -> &'static str {
        self.settler.name()
    }

    /// Progress of `job`'s payment, starting from what the store says now (a proof may have
    /// been checked before anyone subscribed).
    fn subscribe(&self, job: JobId) -> watch::Receiver<PayProgress> {
        let (tx, rx) = {
            let mut m = lock(&self.progress);
            let tx = m
                .entry(job)
                .or_insert_with(|| watch::channel(PayProgress::Waiting).0)
                .clone();
            let rx = tx.subscribe();
            (tx, rx)
        };
        let stored = self
            .ctx
            .jobs
            .get(&job, Side::Requester)
            .ok()
            .flatten()
            .and_then(|r| r.payment);
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
        let mut m = lock(&self.progress);
        if let Some(tx) = m.get(job) {
            tx.send_replace(p);
        }
        if done {
            m.remove(job);
        }
    }

    fn update_pay(&self, job: &JobId, edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord)) {
        update_pay(&self.ctx.jobs, job, Side::Requester, edit);
    }

    fn advance(
        &self,
        job: &JobId,
        to: PayStatus,
        edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord),
    ) -> bool {
        advance_pay(&self.ctx.jobs, job, Side::Requester, to, edit)
    }

    fn spawn_verify(&self, job: JobId) {
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move { me.try_verify(job).await });
        }
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
        let verdict = tokio::task::spawn_blocking(move || {
            check_payment_request(&req, &output, &provider, &job, &p, &usdc)
        })
        .await
        .unwrap_or_else(|e| Err(PaymentRequestRefusal::Internal(e.to_string())));
        let verify_ms = started.elapsed().as_millis() as u64;
        let prove_ms = lock(&self.result_at)
            .remove(&job)
            .map(|t| t.elapsed().as_millis() as u64)
            .map(|since_result| since_result.saturating_sub(verify_ms));
        match verdict {
            Ok(commitment) => {
                tracing::info!(%job, verify_ms, "proof verified");
                self.advance(&job, PayStatus::Verified, |r, p| {
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
                self.advance(&job, PayStatus::Disputed, |r, p| {
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
                if self.advance(&job, status, |r, p| {
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
                self.advance(&job, st, |_, p| {
                    p.error = Some(format!("the stake was already {status}"));
                });
                self.notify(&job, PayProgress::Settled);
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "release failed; the payment watcher retries");
                let msg = e.to_string();
                self.update_pay(&job, |_, p| p.error = Some(msg.clone()));
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
                if self.advance(&job, status, |_, p| {
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
                self.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "reject failed; the payment watcher retries");
                let msg = e.to_string();
                self.update_pay(&job, |_, p| p.error = Some(msg));
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
                self.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            (PayStatus::Staking, StakeStatus::None) => {
                tracing::info!(%job, "the stake never landed; nothing is locked");
                self.advance(&job, PayStatus::Unwound, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            (_, StakeStatus::Staked) => match self.chain.escrow.refund(job_b256(&job)).await {
                Ok(tx) => {
                    let url = self.chain.escrow.tx_url(tx);
                    tracing::info!(%job, tx = %tx, "no result by the deadline: stake refunded");
                    if self.advance(&job, PayStatus::Refunded, |_, p| {
                        p.tx_hash = Some(format!("{tx:#x}"));
                        p.explorer_url = Some(url);
                    }) {
                        self.ctx.metrics.settled("refunded");
                    }
                    self.notify(&job, PayProgress::Settled);
                }
                Err(e) => {
                    tracing::warn!(%job, error = %e, "refund failed; retrying later");
                    self.update_pay(&job, |_, p| p.error = Some(e.to_string()));
                }
            },
            (_, StakeStatus::Submitted) => {
                let reason =
                    "the provider submitted an output hash but no verified result arrived by the deadline";
                tracing::warn!(%job, "{reason}; asking the operator to reject");
                self.advance(&job, PayStatus::Disputed, |_, p| {
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

    /// A stake whose transaction may or may not have landed (a crash during `stake`).
    /// Also a stake the provider submits from this node's authorization. Returns the
    /// stake's status on chain when it is this wallet's (None when it cannot be read).
    pub(crate) async fn check_staking(&self, job: JobId) -> Option<StakeStatus> {
        let s = match self.chain.escrow.get_stake(job_b256(&job)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%job, error = %e, "cannot read the stake yet");
                return None;
            }
        };
        if s.status == StakeStatus::None {
            return Some(s.status);
        }
        if s.requester != self.chain.wallet {
            tracing::warn!(%job, requester = %s.requester, "a stake for this job id is not this wallet's");
            return None;
        }
        match final_status(s.status) {
            Some(st) => {
                tracing::info!(%job, stake = %s.status, "the stake landed and has already ended");
                self.advance(&job, st, |_, _| {});
                self.notify(&job, PayProgress::Settled);
            }
            None => {
                tracing::info!(%job, "the stake is on chain");
                self.advance(&job, PayStatus::Staked, |_, _| {});
            }
        }
        Some(s.status)
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
    ) -> Result<Option<StakeRef>, PaymentError> {
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
                self.update_pay(&job, |r, _| r.timings.stake_ms = Some(stake_ms));
                Ok(Some(StakeRef {
                    chain_id: self.chain.settings.chain_id,
                    escrow: self.chain.escrow_hex(),
                    amount: price.to_string(),
                    tx: String::new(),
                    authorization: Some(super::authorization_to_wire(&auth)),
                }))
            }
            Err(e) => {
                let msg = e.to_string();
                self.advance(&job, PayStatus::Unwound, |_, p| p.error = Some(msg));
                Err(PaymentError::StakeRefused(e))
            }
        }
    }

    async fn confirm(&self, provider: &PeerKey, job: JobId, tx_hash: String, explorer_url: String) {
        let amount = self
            .ctx
            .jobs
            .get(&job, Side::Requester)
            .ok()
            .flatten()
            .and_then(|r| r.payment.map(|p| p.amount_units));
        let settle_response = super::x402::settle_response(
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
        let _ = self.ctx.send(provider, &msg).await;
    }

    fn drop_msg(&self, reason: DropReason, from: &PeerKey, job: &JobId, why: &str) {
        self.ctx.metrics.dropped(reason);
        tracing::warn!(from = %from.short(), %job, reason = reason.as_str(), "payment_request dropped: {why}");
    }
}

#[async_trait]
impl RequesterPayments for PaidRequester {
    fn paid(&self) -> bool {
        true
    }

    async fn stake(
        &self,
        job_id: &JobId,
        ad: &ResourceAd,
        deadline_ms: u64,
    ) -> Result<Option<StakeRef>, PaymentError> {
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
        let stake_deadline = chain_now + left_s + self.ctx.config.stake_margin.as_secs();
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
                self.update_pay(&job, |r, p| {
                    p.stake_tx = Some(tx.clone());
                    r.timings.stake_ms = Some(stake_ms);
                });
                self.advance(&job, PayStatus::Staked, |_, _| {});
                Ok(Some(StakeRef {
                    chain_id: self.chain.settings.chain_id,
                    escrow: self.chain.escrow_hex(),
                    amount: ad.price.to_string(),
                    tx,
                    authorization: None,
                }))
            }
            Err(e) => {
                // A refusal (balance, allowance, a revert) locked nothing. Anything else
                // (a lost receipt) may still land: the watcher finds out from getStake.
                let refused =
                    e.revert().is_some() && !matches!(e.revert(), Some(EscrowRevert::NoReason));
                let msg = e.to_string();
                if refused {
                    self.advance(&job, PayStatus::Unwound, |_, p| p.error = Some(msg));
                    Err(PaymentError::StakeRefused(e))
                } else {
                    self.update_pay(&job, |_, p| p.error = Some(msg));
                    Err(PaymentError::StakeUncertain(e))
                }
            }
        }
    }

    async fn on_result(&self, job_id: &JobId) -> Option<watch::Receiver<PayProgress>> {
        let rx = self.subscribe(*job_id);
        lock(&self.result_at).insert(*job_id, Instant::now());
        self.spawn_verify(*job_id);
        Some(rx)
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
        let usage = result.usage.clone();
        let res = self
            .ctx
            .jobs
            .transition(&job, Side::Requester, JobState::Completed, |r| {
                r.output = Some(result.output);
                r.usage = Some(usage);
            });
        match res {
            Ok(_) => {
                tracing::info!(%job, from = %from.short(), "late result recorded; verifying its proof before paying");
                lock(&self.result_at).insert(job, Instant::now());
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
                self.update_pay(&job, |_, p| p.request = Some(req));
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

    fn disputes(&self, provider: &PeerKey) -> u32 {
        self.ctx.mesh.history.disputes(provider)
    }

    async fn attempt_failed(&self, job_id: &JobId) -> Option<AttemptStake> {
        let job = *job_id;
        // The provider declines before it answers task_error, so a decline is on chain by
        // now; check_staking records a stake that ended (declined: refunded) or landed.
        let on_chain = self.check_staking(job).await;
        let pay = self
            .ctx
            .jobs
            .get(&job, Side::Requester)
            .ok()
            .flatten()?
            .payment?;
        let refund_after = Some(pay.stake_deadline);
        let stake = match (pay.status, on_chain) {
            (PayStatus::Refunded, _) => {
                let tx = match pay.tx_hash {
                    Some(tx) => Some(tx),
                    None => {
                        let found = self
                            .chain
                            .escrow
                            .settlement_tx(job_b256(&job), 1_000)
                            .await
                            .ok()
                            .flatten();
                        let (tx, url) = match found {
                            Some(h) => (Some(format!("{h:#x}")), Some(self.chain.escrow.tx_url(h))),
                            None => (None, None),
                        };
                        let recorded = tx.clone();
                        self.update_pay(&job, |_, p| {
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
            (PayStatus::Staking, Some(StakeStatus::None)) => AttemptStake {
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

    fn own_stake_wait(&self) -> Option<std::time::Duration> {
        match self.chain.settings.stake_mode {
            StakeMode::Approve | StakeMode::Permit => self.chain.escrow.inclusion_estimate(),
            StakeMode::Authorization => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const OUTPUT: &str = "Paris is the capital of France.";
    const KEY: PeerKey = PeerKey([5; 32]);
    const JOB: JobId = JobId([9; 32]);

    fn usdc() -> Address {
        Address::repeat_byte(0xcc)
    }

    fn pay() -> PaymentRecord {
        PaymentRecord::new(
            PayStatus::Staked,
            31337,
            format!("0x{}", "aa".repeat(20)),
            10_000,
            format!("0x{}", "bb".repeat(20)),
            0,
        )
    }

    /// An honest provider's request for (OUTPUT, KEY, JOB).
    fn request() -> PaymentRequest {
        static P: std::sync::OnceLock<PaymentRequest> = std::sync::OnceLock::new();
        P.get_or_init(|| {
            let (proof, public) = crate::zk::prove(OUTPUT.as_bytes(), &KEY.0, &JOB.0).unwrap();
            let c = crate::zk::commitments(OUTPUT.as_bytes(), &KEY.0, &JOB.0);
            let p = pay();
            let terms = crate::paid::x402::Terms {
                job: JOB,
                provider: KEY,
                chain_id: p.chain_id,
                asset: usdc(),
                amount: p.amount_units,
                pay_to: p.pay_to.clone(),
                escrow: p.escrow.clone(),
                capture_deadline: p.stake_deadline,
            };
            PaymentRequest {
                job_id: JOB,
                payment_required: crate::paid::x402::payment_required(&terms, 600),
                output_commitment: c.output_hash_hex(),
                wallet_commitment: c.wallet_commitment_hex(),
                proof,
                public_signals: public,
            }
        })
        .clone()
    }

    fn check(
        req: &PaymentRequest,
        output: &str,
        key: &PeerKey,
        job: &JobId,
    ) -> Result<String, String> {
        check_payment_request(req, output, key, job, &pay(), &usdc()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_honest_request_passes_and_yields_the_escrow_output_hash() {
        let got = check(&request(), OUTPUT, &KEY, &JOB).unwrap();
        let want = crate::zk::commitments(OUTPUT.as_bytes(), &KEY.0, &JOB.0).output_hash_hex();
        assert_eq!(got, want);
    }

    #[test]
    fn a_proof_for_another_output_key_or_job_is_refused() {
        let r = request();
        let e = check(&r, "Lyon is the capital of France.", &KEY, &JOB).unwrap_err();
        assert!(e.contains("outputCommitment"), "{e}");
        let e = check(&r, OUTPUT, &PeerKey([6; 32]), &JOB).unwrap_err();
        assert!(e.contains("walletCommitment"), "{e}");
        // Replayed for another job (its id in extra too): the job id signals differ.
        let other = JobId([8; 32]);
        let mut replay = r.clone();
        replay.job_id = other;
        replay.payment_required.resource.url = crate::paid::x402::resource_url(&KEY, &other);
        replay.payment_required.accepts[0]
            .extra
            .insert("jobId".into(), Value::from(other.to_hex()));
        let e = check(&replay, OUTPUT, &KEY, &other).unwrap_err();
        assert!(e.contains("jobIdHi"), "{e}");
    }

    #[test]
    fn requirements_that_differ_from_the_stake_are_refused() {
        type Edit = fn(&mut PaymentRequest);
        let cases: [(&str, Edit); 7] = [
            ("output_commitment", |r| {
                r.output_commitment = format!("0x{}", "0".repeat(64))
            }),
            ("network", |r| {
                r.payment_required.accepts[0].network = "eip155:1".into()
            }),
            ("asset", |r| {
                r.payment_required.accepts[0].asset = format!("0x{}", "dd".repeat(20))
            }),
            ("amount", |r| {
                r.payment_required.accepts[0].amount = "9999".into()
            }),
            ("payTo", |r| {
                r.payment_required.accepts[0].pay_to = format!("0x{}", "ee".repeat(20))
            }),
            ("extra.escrow", |r| {
                r.payment_required.accepts[0].extra.remove("escrow");
            }),
            ("extra.jobId", |r| {
                r.payment_required.accepts[0]
                    .extra
                    .insert("jobId".into(), Value::from(JobId([1; 32]).to_hex()));
            }),
        ];
        for (field, edit) in cases {
            let mut r = request();
            edit(&mut r);
            let e = check(&r, OUTPUT, &KEY, &JOB).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
