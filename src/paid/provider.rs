//! The provider's money: check the stake before any work, prove the output after
//! delivering it (also when the requester never acknowledged the result: an output that
//! left this node is always proved and submitted, never declined), ask to be paid with an
//! x402-shaped `payment_request`, and, when no confirmation comes, submit the output hash on
//! chain and `finalize` at the end of the escrow's dispute window.

use std::sync::{Arc, Weak};
use std::time::Instant;

use async_trait::async_trait;

use super::gate::{Payee, StakeGate};
use super::job_end;
use super::seams::Authorized;
use super::{authorization_from_wire, final_status, job_b256, parse_b256, Busy, Chain};
use crate::axl::PeerKey;
use crate::chain::{FairStatus, StakeAuthorization, StakeStatus};
use crate::ctx::NodeCtx;
use crate::jobs::{now_ms, JobRecord, PayBook, PayStatus, PaymentRecord, Side};
use crate::paid::{ProviderPayments, StakeCheck, StakeRefusal, Taken};
use crate::protocol::{JobId, Message, PaymentConfirmed, PaymentRequest, Task, TaskResult};

/// Longest a task waits for its peer's other stake checks at the gate.
const GATE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds a provider keeps in hand before the stake's deadline to submit its output hash.
pub(crate) const SUBMIT_MARGIN_SECS: u64 = 10;

/// The provider side of the paid flow.
pub struct PaidProvider {
    pub(super) ctx: Arc<NodeCtx>,
    pub(super) chain: Arc<Chain>,
    pub(super) me: Weak<PaidProvider>,
    pub(crate) busy: Arc<Busy>,
    pub(super) gate: Arc<StakeGate>,
    pub(super) book: PayBook,
}

impl PaidProvider {
    /// A paid provider, paid into the chain's wallet.
    pub fn new(ctx: Arc<NodeCtx>, chain: Arc<Chain>) -> Arc<Self> {
        let key = crate::chain::key_commitment(&ctx.endpoint.me().0);
        let (paid, wallet) = (&ctx.config.paid, chain.wallet);
        let payee = Payee { wallet, key };
        let gate = StakeGate::new(paid.unstaked_burst, paid.unstaked_per_min, payee);
        let book = PayBook::new(ctx.jobs.clone(), Side::Provider);
        Arc::new_cyclic(|me| PaidProvider {
            book,
            ctx,
            chain,
            me: me.clone(),
            busy: Arc::new(Busy::default()),
            gate,
        })
    }

    /// The stake as the escrow has it now, while it is still open. A stake that has ended
    /// is recorded as such, and one that cannot be read is logged; both give `None`.
    async fn open_stake(&self, job: &JobId) -> Option<crate::chain::FairStake> {
        match self.chain.fair.get_stake(job_b256(job)).await {
            Ok(s) => match final_status(s.status) {
                Some(st) => {
                    self.record_final(job, st).await;
                    None
                }
                None => Some(s),
            },
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot read the stake; retrying later");
                None
            }
        }
    }

    /// Prove the delivered output, store the payment request, and send it.
    pub(crate) async fn prove_and_request(&self, job: JobId) {
        let Ok(Some(rec)) = self.ctx.jobs.get(&job, Side::Provider) else {
            return;
        };
        let (Some(pay), Some(output), Some(requester)) =
            (rec.payment.clone(), rec.output.clone(), rec.peer)
        else {
            return;
        };
        let key = self.ctx.endpoint.me().0;
        let started = Instant::now();
        // The proof commits to the output bound to the model's digest and the tool calls
        // (the receipt's).
        let bound = crate::protocol::receipt::OutputBinding::of(rec.receipt.as_ref());
        let output = crate::protocol::receipt::committed_output(&output, &bound);
        let proved = tokio::task::spawn_blocking(move || {
            crate::zk::prove(&output, &key, &job.0).map(|(proof, public)| {
                let c = crate::zk::commitments(&output, &key, &job.0);
                (proof, public, c)
            })
        })
        .await;
        let prove_ms = started.elapsed().as_millis() as u64;
        let (proof, public, c) = match proved {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!(%job, error = %e, "proving failed; retrying later");
                self.book
                    .edit(&job, |_, p| p.error = Some(format!("proving failed: {e}")));
                return;
            }
            Err(e) => {
                tracing::error!(%job, error = %e, "proving task failed; retrying later");
                return;
            }
        };
        let chain_left = pay.stake_deadline.saturating_sub(now_ms() / 1000);
        let terms = super::x402::Terms {
            job,
            provider: self.ctx.endpoint.me(),
            chain_id: pay.chain_id,
            asset: self.chain.escrow.usdc_address(),
            amount: pay.amount_units,
            pay_to: pay.pay_to.clone(),
            escrow: pay.escrow.clone(),
            capture_deadline: pay.stake_deadline,
        };
        let req = PaymentRequest {
            job_id: job,
            payment_required: super::x402::payment_required(&terms, chain_left),
            output_commitment: c.output_hash_hex(),
            wallet_commitment: c.wallet_commitment_hex(),
            proof,
            public_signals: public,
        };
        tracing::info!(%job, prove_ms, "proved the output; asking to be paid");
        self.ctx.metrics.proof_generated();
        let commitment = c.output_hash_hex();
        let stored = req.clone();
        self.book.edit(&job, |r, p| {
            p.request = Some(stored);
            p.output_commitment = Some(commitment);
            p.error = None;
            r.timings.prove_ms = Some(prove_ms);
        });
        let _ = self
            .ctx
            .endpoint
            .send(&requester, &Message::PaymentRequest(Box::new(req)))
            .await;
    }

    /// Send the result and the payment request again (the requester may have restarted).
    async fn resend(&self, rec: &JobRecord) {
        let (Some(requester), Some(output), Some(pay)) = (rec.peer, &rec.output, &rec.payment)
        else {
            return;
        };
        let result = Message::TaskResult(TaskResult {
            job_id: rec.job_id,
            output: output.clone(),
            tool_calls: Vec::new(),
            usage: rec.usage.clone().unwrap_or_default(),
            receipt: rec.receipt.clone(),
        });
        let _ = self.ctx.endpoint.send(&requester, &result).await;
        if let Some(req) = &pay.request {
            let _ = self
                .ctx
                .endpoint
                .send(&requester, &Message::PaymentRequest(Box::new(req.clone())))
                .await;
        }
    }

    /// Decline `job`'s stake, held in [`Busy`](super::Busy) by the caller, when the escrow
    /// holds it staked to this node: the requester is refunded in the same transaction.
    /// Whether it was declined.
    pub(super) async fn decline_held(&self, job: crate::protocol::JobId, reason: &str) -> bool {
        let esc = &self.chain.escrow;
        match esc.get_stake(job_b256(&job)).await {
            Ok(s) if s.status == StakeStatus::Staked && s.provider == self.chain.wallet => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot read the stake to decline it; the requester's refund after the deadline ends it");
                return false;
            }
        }
        match esc.decline(job_b256(&job)).await {
            Ok(tx) => {
                let url = esc.tx_url(tx);
                tracing::info!(%job, %tx, %reason, "declined the staked job: the requester is refunded");
                if self.book.advance(&job, PayStatus::Refunded, |_, p| {
                    p.tx_hash = Some(format!("{tx:#x}"));
                    p.explorer_url = Some(url);
                    p.error = Some(format!("declined: {reason}"));
                }) {
                    self.ctx.metrics.settled("declined");
                }
                true
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "decline failed; the requester's refund after the deadline ends the stake");
                self.book
                    .edit(&job, |_, p| p.error = Some(format!("decline failed: {e}")));
                false
            }
        }
    }

    /// The watcher's step for one open job of ours.
    pub(crate) async fn step(self: Arc<Self>, rec: JobRecord, chain_now: u64) {
        let job = rec.job_id;
        let Some(_g) = self.busy.try_take(job) else {
            return;
        };
        let Some(pay) = rec.payment.clone() else {
            return;
        };
        match pay.status {
            PayStatus::Accepted => match job_end::ended_unpaid(&rec) {
                None => {}
                Some(job_end::EndedUnpaid::OutputLeft) => {
                    // Delivered, then the daemon stopped (or the step came first) before it
                    // could prove: the output left, so it is proved.
                    let delivered = self.book.advance(&job, PayStatus::Delivered, |_, p| {
                        p.delivered_ms = Some(now_ms());
                    });
                    if delivered {
                        self.prove_and_request(job).await;
                    }
                }
                Some(job_end::EndedUnpaid::NoOutput) => {
                    // Failed before any output (the decline that follows the failure may have
                    // been skipped): decline now, so the requester is not kept waiting.
                    let declined = self
                        .decline_held(job, "the job ended before any output")
                        .await;
                    if !declined {
                        self.book.advance(&job, PayStatus::Abandoned, |_, _| {});
                    }
                }
                Some(job_end::EndedUnpaid::Unknown) => {
                    tracing::info!(%job, "job ended before delivery; the requester's refund ends its stake");
                    self.book.advance(&job, PayStatus::Abandoned, |_, _| {});
                }
            },
            PayStatus::Delivered => {
                if pay.request.is_none() {
                    self.prove_and_request(job).await;
                    return;
                }
                let grace = self.ctx.config.paid.payment_grace.as_millis() as u64;
                let due = pay.delivered_ms.unwrap_or(0) + grace;
                let past_deadline = chain_now > pay.stake_deadline;
                if now_ms() < due && !past_deadline {
                    return;
                }
                let Some(stake) = self.open_stake(&job).await else {
                    return;
                };
                if stake.status != FairStatus::Staked {
                    return;
                }
                if chain_now + SUBMIT_MARGIN_SECS >= pay.stake_deadline {
                    if past_deadline {
                        // Too late to submit; only the requester's refund can end the stake.
                        tracing::warn!(%job, "the stake's deadline passed unpaid and too late to submit: giving up on this job's payment");
                        self.book.advance(&job, PayStatus::Abandoned, |_, p| {
                            p.error =
                                Some("the stake's deadline passed before payment or submit".into());
                        });
                    }
                    return;
                }
                tracing::info!(%job, "no payment_confirmed within the grace period: sending the result again and submitting the output hash");
                self.resend(&rec).await;
                let Some(commitment) = pay.output_commitment.as_deref().and_then(parse_b256) else {
                    return;
                };
                let Some(proof) = pay.request.as_ref().map(|r| &r.proof) else {
                    return;
                };
                match self
                    .chain
                    .escrow
                    .submit(job_b256(&job), commitment, proof)
                    .await
                {
                    Ok(tx) => {
                        let at = self
                            .chain
                            .escrow
                            .get_stake(job_b256(&job))
                            .await
                            .map(|s| s.submitted_at)
                            .unwrap_or(chain_now);
                        self.book.advance(&job, PayStatus::Submitted, |_, p| {
                            p.submit_tx = Some(format!("{tx:#x}"));
                            p.submitted_at = Some(at);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%job, error = %e, "submit failed; retrying later");
                        self.book.edit(&job, |_, p| p.error = Some(e.to_string()));
                    }
                }
            }
            PayStatus::Submitted => {
                let at = pay.submitted_at.unwrap_or(0);
                if chain_now < at + self.chain.dispute_window {
                    return;
                }
                let Some(stake) = self.open_stake(&job).await else {
                    return;
                };
                if stake.status == FairStatus::Disputed {
                    tracing::debug!(%job, "disputed: the escrow's arbiter decides");
                    return;
                }
                match self.chain.fair.finalize(job_b256(&job)).await {
                    Ok(tx) => {
                        let url = self.chain.escrow.tx_url(tx);
                        tracing::info!(%job, %tx, "undisputed at the end of the dispute window: finalized, paid");
                        if self.book.advance(&job, PayStatus::Claimed, |_, p| {
                            p.tx_hash = Some(format!("{tx:#x}"));
                            p.explorer_url = Some(url);
                            p.error = None;
                        }) {
                            self.ctx.metrics.settled("claimed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%job, error = %e, "finalize failed; retrying later");
                        self.book.edit(&job, |_, p| p.error = Some(e.to_string()));
                    }
                }
            }
            _ => {}
        }
    }

    /// The chain's time, read at most once a second (the gate keeps it).
    pub(super) async fn chain_now(&self) -> Result<u64, crate::chain::EscrowError> {
        if let Some(t) = self.gate.cached_chain_time() {
            return Ok(t);
        }
        let t = self.chain.escrow.chain_time().await?;
        self.gate.cache_chain_time(t);
        Ok(t)
    }

    /// The stake of `job` as the escrow has it, read once: an open stake is kept for the
    /// job's next look ([`StakeGate::cached_stake`]).
    async fn read_stake(
        &self,
        job: &JobId,
    ) -> Result<crate::chain::StakeInfo, crate::chain::EscrowError> {
        if let Some(s) = self.gate.cached_stake(job) {
            return Ok(s);
        }
        let s = self.chain.escrow.get_stake(job_b256(job)).await?;
        if s.status == StakeStatus::Staked {
            self.gate.cache_stake(*job, s.clone());
        }
        Ok(s)
    }

    /// The stake a task names, checked as far as it can be without the chain: present, in
    /// this escrow, at least the price, and (for an authorization) signed for these terms.
    /// Returns the claimed amount and the checked authorization, if any.
    async fn check_offline(
        &self,
        from: &PeerKey,
        task: &Task,
    ) -> Result<(u64, Option<StakeAuthorization>), StakeRefusal> {
        let Some(stake) = &task.stake else {
            return Err(StakeRefusal::NoStake);
        };
        let chain_id = self.chain.settings.chain_id;
        let escrow = self.chain.escrow_hex();
        if stake.chain_id != chain_id || !stake.escrow.eq_ignore_ascii_case(&escrow) {
            return Err(StakeRefusal::OtherEscrow {
                chain_id: stake.chain_id,
                escrow: stake.escrow.clone(),
                our_chain_id: chain_id,
                our_escrow: escrow,
            });
        }
        let price = self.ctx.config.provider.price_units;
        let units = stake.amount.parse::<u64>().unwrap_or(0);
        if units < price {
            return Err(StakeRefusal::TooSmall {
                amount: units,
                price,
            });
        }
        let Some(wire) = &stake.authorization else {
            // Staked by the requester itself: bound to the sender (signer checked on chain).
            return match &stake.binding {
                Some(b) if b.node.same_node(from) => Ok((units, None)),
                _ => Err(StakeRefusal::Unbound("no stake binding names the sender")),
            };
        };
        let job = task.job_id;
        let esc = &self.chain.escrow;
        // Read once per process, then kept by the escrow client.
        let domain = esc.token_domain().await.map_err(|e| {
            tracing::warn!(%job, error = %e, "the token's EIP-712 domain is unavailable");
            StakeRefusal::NoAuthorizations(e)
        })?;
        let auth = authorization_from_wire(
            &job,
            self.chain.wallet,
            crate::chain::key_commitment(&self.ctx.endpoint.me().0),
            &stake.amount,
            wire,
            esc.escrow_address(),
            Some(&domain),
        )
        .map_err(|e| {
            tracing::warn!(%job, error = %e, "stake authorization refused");
            StakeRefusal::Authorization(e)
        })?;
        Ok((units, Some(auth)))
    }

    /// The part of the check that asks the chain, under a unit of the peer's budget.
    async fn check_on_chain(
        &self,
        from: &PeerKey,
        task: &Task,
        units: u64,
        auth: Option<StakeAuthorization>,
    ) -> Result<StakeCheck, StakeRefusal> {
        let esc = &self.chain.escrow;
        if let Some(auth) = auth {
            // Funded, and the nonce unused? Read before any work, so an empty wallet's or a
            // spent authorization never reaches a transaction or the backend.
            let (balance, used) = tokio::try_join!(
                esc.usdc_balance(auth.requester),
                esc.authorization_used(auth.requester, auth.nonce())
            )
            .map_err(StakeRefusal::ChainUnreadable)?;
            if used {
                return Err(StakeRefusal::AuthorizationUsed);
            }
            if balance < auth.amount {
                self.gate.remember_unfunded(auth.requester, balance);
                return Err(StakeRefusal::Unfunded {
                    balance,
                    needed: auth.amount,
                });
            }
            return Ok(StakeCheck::Authorized(Box::new(Authorized { auth, units })));
        }
        let (info, chain_now) = tokio::try_join!(self.read_stake(&task.job_id), self.chain_now())
            .map_err(|e| {
            tracing::warn!(job = %task.job_id, error = %e, "cannot read the stake");
            StakeRefusal::ChainUnreadable(e)
        })?;
        // Not there, ended, or for another provider or key: remembered (the negative cache).
        if let Some(refusal) = self.gate.refusal_of_read(from, &task.job_id, &info) {
            return Err(refusal);
        }
        // Public since its `Staked` event: the sender's only if its requester signed it over.
        let (id, me) = (self.chain.settings.chain_id, self.ctx.endpoint.me());
        let bound = task.stake.as_ref().and_then(|s| s.binding.as_ref());
        if bound.and_then(|b| b.signer(id, esc.escrow_address(), &task.job_id, &me))
            != Some(info.requester)
        {
            return Err(StakeRefusal::Unbound("not signed by the stake's requester"));
        }
        let price = self.ctx.config.provider.price_units;
        let amount = u64::try_from(info.amount).unwrap_or(u64::MAX);
        if amount < price {
            return Err(StakeRefusal::TooSmall { amount, price });
        }
        let task_left = task.deadline_ms.saturating_sub(now_ms()).div_ceil(1000);
        let grace_secs = self.ctx.config.paid.payment_grace.as_secs();
        let needed = task_left + grace_secs + SUBMIT_MARGIN_SECS;
        let stake_left = info.deadline.saturating_sub(chain_now);
        if stake_left < needed {
            return Err(StakeRefusal::EndsTooSoon {
                stake_left,
                needed,
                grace_secs,
            });
        }
        let mut pay = PaymentRecord::new(
            PayStatus::Accepted,
            self.chain.settings.chain_id,
            self.chain.escrow_hex(),
            amount,
            format!("{:#x}", self.chain.wallet),
            info.deadline,
        );
        pay.stake_tx = task.stake.as_ref().map(|s| s.tx.clone());
        Ok(StakeCheck::Staked(Box::new(pay)))
    }

    async fn record_final(&self, job: &JobId, st: PayStatus) {
        let tx = self.chain.settlement_tx(job).await;
        tracing::info!(%job, status = st.as_str(), "stake ended");
        self.book
            .advance(job, st, |_, p| self.chain.note_settlement(p, tx));
    }
}

#[async_trait]
impl ProviderPayments for PaidProvider {
    fn wallet(&self) -> Option<String> {
        Some(format!("{:#x}", self.chain.wallet))
    }

    async fn check_stake(&self, from: &PeerKey, task: &Task) -> Result<StakeCheck, StakeRefusal> {
        // Offline first: a refusal here costs no RPC call, only a unit of the peer's budget.
        let (units, auth) = match self.check_offline(from, task).await {
            Ok(v) => v,
            Err(e) => {
                if !e.is_ours() {
                    self.gate.charge(from);
                }
                return Err(e);
            }
        };
        // Refused by an earlier read still remembered (the gate's negative cache): no RPC
        // call, no unit of the all-peers budget, a unit of the peer's (threat model line 32).
        if let Some(e) = self.gate.known_refusal(from, task, auth.as_ref()) {
            self.ctx.metrics.table("gate_refusals_cached").inc();
            return Err(e);
        }
        // Wait for the peer's other checks at most until the task's deadline (bounded: the
        // deadline comes from the mesh).
        let left = std::time::Duration::from_millis(task.deadline_ms.saturating_sub(now_ms()));
        let until = Instant::now() + left.min(GATE_WAIT_MAX);
        let pass = self.gate.enter(from, until).await.inspect_err(|e| {
            tracing::debug!(job = %task.job_id, from = %from.short(), error = %e, "task refused without asking the chain");
        })?;
        let checked = self.check_on_chain(from, task, units, auth).await;
        // A paid task gives its unit back; so does a failure of the chain, not the peer.
        match &checked {
            Ok(_) => pass.paid(),
            Err(e) if e.is_ours() => pass.paid(),
            Err(_) => drop(pass),
        }
        checked
    }

    async fn take_stake(
        &self,
        from: &PeerKey,
        task: &Task,
        check: StakeCheck,
    ) -> Result<Taken, StakeRefusal> {
        match check {
            StakeCheck::Unpaid => Err(StakeRefusal::NoStake),
            StakeCheck::Staked(p) => Ok(Taken::staked(Some(*p))),
            StakeCheck::Authorized(a) => match self.prestart(from, task, *a).await {
                Ok((p, landing)) => Ok(Taken {
                    payment: Some(p),
                    landing: Some(landing),
                }),
                Err(e) => {
                    if !e.is_ours() {
                        self.gate.charge(from);
                    }
                    Err(e)
                }
            },
        }
    }

    async fn decline(&self, task: &Task, reason: &str) {
        // Waits for a watcher step on the same job: a decline skipped here would leave the
        // requester's money locked until its deadline.
        let _g = self.busy.take(task.job_id).await;
        self.decline_held(task.job_id, reason).await;
    }
    async fn after_delivery(&self, _requester: &PeerKey, task: &Task, _output: &str) {
        let job = task.job_id;
        let Some(me) = self.me.upgrade() else {
            return;
        };
        // Waits for a watcher step on the same job: the output left, so it is always proved.
        let _g = self.busy.take(job).await;
        if self.book.advance(&job, PayStatus::Delivered, |_, p| {
            p.delivered_ms = Some(now_ms());
        }) {
            me.prove_and_request(job).await;
        }
    }

    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        let job = msg.job_id;
        let rec = match self.ctx.jobs.get(&job, Side::Provider) {
            Ok(Some(r)) => r,
            _ => {
                self.ctx
                    .metrics
                    .dropped(crate::protocol::DropReason::Unexpected);
                tracing::warn!(from = %from.short(), %job, "payment_confirmed for no job of ours");
                return;
            }
        };
        if !rec.peer.is_some_and(|k| k.same_node(from)) {
            self.ctx
                .metrics
                .dropped(crate::protocol::DropReason::Spoofed);
            tracing::warn!(from = %from.short(), %job, "payment_confirmed from a node that is not this job's requester");
            return;
        }
        if !rec.payment.as_ref().is_some_and(|p| p.status.is_open()) {
            return;
        }
        // Trust the chain, not the message.
        match self.chain.fair.get_stake(job_b256(&job)).await {
            Ok(s) if s.status == FairStatus::Released => {
                let url = msg
                    .tx_hash
                    .parse()
                    .map(|h| self.chain.escrow.tx_url(h))
                    .unwrap_or(msg.explorer_url);
                tracing::info!(%job, tx = %msg.tx_hash, "paid: the escrow released the stake");
                if self.book.advance(&job, PayStatus::Released, |_, p| {
                    p.tx_hash = Some(msg.tx_hash);
                    p.explorer_url = Some(url);
                    p.error = None;
                }) {
                    self.ctx.metrics.settled("released");
                }
            }
            Ok(s) => {
                tracing::warn!(%job, stake = %s.status, "payment_confirmed, but the escrow does not show a release; still waiting");
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot check payment_confirmed against the escrow; the watcher checks later");
            }
        }
    }
}
