//! Version 4 of the escrow, the fair exchange ([`FairEscrow`]): the requester releases its
//! own stake (no operator), a `submit` opens a dispute window after which anyone may
//! `finalize` (the provider is paid), and a dispute within the window goes to the
//! deployment's arbiter, who is never a party. Staking, `submit`, `decline` and `refund` have
//! version 3's ABI and go through the wrapped [`EscrowClient`] (the last three here, so that
//! a refusal names version 4's states).
//!
//! The daemon runs on version 4 (docs/paid-flow.md); version 3's client ([`EscrowClient`]'s
//! `reject` and `claim_timeout`) remains only for the legacy contract's own tests.

use alloy::primitives::{Address, TxHash, B256};
use alloy::providers::DynProvider;
use alloy::sol_types::SolEvent;

use super::bindings::EdgentEscrowV4;
use super::error::{ChainError, EscrowError, EscrowRevert};
use super::escrow::{read, EscrowClient};
use super::stake::{FairStake, FairStatus};

/// The interface version of the fair escrow (`version()` of EdgentEscrowV4).
pub const FAIR_ESCROW_VERSION: u64 = 4;

/// The dispute window `edgent` deploys with, seconds: long enough for a requester that
/// ticks every 2 s to land a dispute through RPC retries or a restart, short enough that a
/// silent requester's provider is paid minutes, not an hour, after delivering.
pub const DEFAULT_DISPUTE_WINDOW_SECS: u64 = 180;

/// Client for one EdgentEscrowV4 deployment, signing with the wrapped client's wallet.
#[derive(Clone, Debug)]
pub struct FairEscrow {
    client: EscrowClient,
    escrow: EdgentEscrowV4::EdgentEscrowV4Instance<DynProvider>,
}

impl FairEscrow {
    /// Speaks version 4 to the escrow `client` is connected to.
    pub fn new(client: EscrowClient) -> Self {
        let escrow = EdgentEscrowV4::new(client.escrow_address(), client.provider().clone());
        Self { client, escrow }
    }

    /// The wrapped client: stakes, balances, chain time.
    pub fn client(&self) -> &EscrowClient {
        &self.client
    }

    /// The escrow's interface version ([`FAIR_ESCROW_VERSION`] for this one).
    pub async fn version(&self) -> Result<u64, EscrowError> {
        self.client.version().await
    }

    /// The account that decides disputes.
    pub async fn arbiter(&self) -> Result<Address, EscrowError> {
        read(self.escrow.arbiter()).await
    }

    /// The deployment's one timing setting, seconds: the dispute window after a submit,
    /// the delay before `finalize`, and the margin a stake's deadline adds to a job's.
    pub async fn dispute_window(&self) -> Result<u64, EscrowError> {
        read(self.escrow.disputeWindow()).await
    }

    /// A provider's check at start: the escrow's arbiter must be one of `trusted`. Returns
    /// the arbiter; an empty list trusts nobody.
    pub async fn check_arbiter(&self, trusted: &[Address]) -> Result<Address, ChainError> {
        let arbiter = self
            .arbiter()
            .await
            .map_err(|e| ChainError::Rpc(format!("escrow.arbiter(): {e}")))?;
        if !trusted.contains(&arbiter) {
            return Err(ChainError::UntrustedArbiter {
                escrow: self.client.escrow_address(),
                arbiter,
                trusted: trusted.to_vec(),
            });
        }
        Ok(arbiter)
    }

    /// Reads the stake for `job_id` with version 4's states (`None` if never staked).
    pub async fn get_stake(&self, job_id: B256) -> Result<FairStake, EscrowError> {
        let info = self.client.get_stake(job_id).await.map_err(fair)?;
        Ok(FairStake::from_shared(info))
    }

    /// Provider: records the proved output hash, which opens the dispute window (the
    /// wrapped client's `submit`, its refusals read with version 4's states).
    pub async fn submit(
        &self,
        job_id: B256,
        output_hash: B256,
        proof: &crate::zk::SnarkjsProof,
    ) -> Result<TxHash, EscrowError> {
        let submitted = self.client.submit(job_id, output_hash, proof).await;
        submitted.map_err(fair)
    }

    /// Provider: cannot serve a staked job; the requester is refunded (only before submit).
    pub async fn decline(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.client.decline(job_id).await.map_err(fair)
    }

    /// Requester: takes the stake back after the deadline when nothing was submitted.
    pub async fn refund(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        self.client.refund(job_id).await.map_err(fair)
    }

    /// Requester: pays the provider after verifying the proof off chain (while Staked, or
    /// after a submit with the submitted `output_hash`, also to concede a dispute).
    pub async fn release(&self, job_id: B256, output_hash: B256) -> Result<TxHash, EscrowError> {
        let call = self.escrow.release(job_id, output_hash);
        let done = "released by the requester";
        self.client
            .send_for_job(job_id, call, done)
            .await
            .map_err(fair)
    }

    /// Requester: contests a submit within the dispute window; `task_hash` and `result_hash`
    /// are the keccak256 of the signed task and of the signed result (zero if none came).
    pub async fn dispute(
        &self,
        job_id: B256,
        task_hash: B256,
        result_hash: B256,
    ) -> Result<TxHash, EscrowError> {
        let call = self.escrow.dispute(job_id, task_hash, result_hash);
        let done = "disputed: the arbiter decides";
        self.client
            .send_for_job(job_id, call, done)
            .await
            .map_err(fair)
    }

    /// Anyone (normally the provider): pays the provider once an undisputed submit's
    /// window has closed.
    pub async fn finalize(&self, job_id: B256) -> Result<TxHash, EscrowError> {
        let call = self.escrow.finalize(job_id);
        let done = "finalized after the dispute window";
        self.client
            .send_for_job(job_id, call, done)
            .await
            .map_err(fair)
    }

    /// Arbiter: decides a dispute, paying the provider or refunding the requester.
    pub async fn resolve(&self, job_id: B256, pay_provider: bool) -> Result<TxHash, EscrowError> {
        let call = self.escrow.resolve(job_id, pay_provider);
        let done = if pay_provider {
            "dispute resolved: the provider is paid"
        } else {
            "dispute resolved: the requester is refunded"
        };
        self.client
            .send_for_job(job_id, call, done)
            .await
            .map_err(fair)
    }
}

/// A stake found in the escrow's `Staked` events ([`FairEscrow::staked_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StakedEvent {
    /// The job.
    pub job_id: B256,
    /// Who staked.
    pub requester: Address,
    /// Who is paid.
    pub provider: Address,
}

/// What a `dispute` recorded (the `Disputed` event): the requester's own transaction, so
/// its wallet's signature, over the evidence hashes, next to the output commitment the
/// provider submitted with its proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputedEvent {
    /// Who disputed: the escrow accepts a dispute only from the stake's requester.
    pub requester: Address,
    /// keccak256 of the task the requester sent (`paid/evidence.rs`).
    pub task_hash: B256,
    /// keccak256 of the provider's signed receipt (or of the result; zero if none came).
    pub result_hash: B256,
    /// The output commitment the provider submitted.
    pub output_hash: B256,
    /// The dispute's transaction.
    pub tx: Option<TxHash>,
}

impl FairEscrow {
    /// The stakes of the last `lookback_blocks` whose requester or provider is `wallet`,
    /// from the escrow's `Staked` events (two indexed queries), oldest first.
    pub async fn staked_with(
        &self,
        wallet: Address,
        lookback_blocks: u64,
    ) -> Result<Vec<StakedEvent>, EscrowError> {
        let base = self
            .client
            .recent(lookback_blocks)
            .await?
            .event_signature(EdgentEscrowV4::Staked::SIGNATURE_HASH);
        let as_requester = base.clone().topic2(wallet.into_word());
        let as_provider = base.topic3(wallet.into_word());
        let (a, b) = tokio::try_join!(
            self.client.logs(&as_requester),
            self.client.logs(&as_provider)
        )?;
        let mut out: Vec<StakedEvent> = Vec::new();
        for log in a.iter().chain(b.iter()) {
            let Ok(ev) = EdgentEscrowV4::Staked::decode_log(&log.inner) else {
                continue;
            };
            let found = StakedEvent {
                job_id: ev.jobId,
                requester: ev.requester,
                provider: ev.provider,
            };
            if !out.contains(&found) {
                out.push(found);
            }
        }
        Ok(out)
    }

    /// The dispute of `job_id` within the last `lookback_blocks`; `None` if none is in range.
    pub async fn dispute_evidence(
        &self,
        job_id: B256,
        lookback_blocks: u64,
    ) -> Result<Option<DisputedEvent>, EscrowError> {
        let filter = self.client.recent(lookback_blocks).await?;
        let filter = filter.event_signature(EdgentEscrowV4::Disputed::SIGNATURE_HASH);
        let logs = self.client.logs(&filter.topic1(job_id)).await?;
        Ok(logs.iter().rev().find_map(|l| {
            let ev = EdgentEscrowV4::Disputed::decode_log(&l.inner).ok()?;
            Some(DisputedEvent {
                requester: ev.requester,
                task_hash: ev.taskHash,
                result_hash: ev.resultHash,
                output_hash: ev.outputHash,
                tx: l.transaction_hash,
            })
        }))
    }

    /// The transaction that ended `job_id`'s stake (Released, Finalized, Resolved, Refunded
    /// or Declined) within the last `lookback_blocks`; `None` if none is in range.
    pub async fn settlement_tx(
        &self,
        job_id: B256,
        lookback_blocks: u64,
    ) -> Result<Option<TxHash>, EscrowError> {
        let ends = vec![
            EdgentEscrowV4::Released::SIGNATURE_HASH,
            EdgentEscrowV4::Finalized::SIGNATURE_HASH,
            EdgentEscrowV4::Resolved::SIGNATURE_HASH,
            EdgentEscrowV4::Refunded::SIGNATURE_HASH,
            EdgentEscrowV4::Declined::SIGNATURE_HASH,
        ];
        self.client.ended_by(job_id, lookback_blocks, ends).await
    }
}

/// Reads a `WrongStatus` refusal with version 4's states (its selector is version 3's, so
/// the shared decoder read the state as version 3's).
fn fair(e: EscrowError) -> EscrowError {
    match e {
        EscrowError::Refused(EscrowRevert::WrongStatus { job_id, status }) => {
            EscrowError::Refused(EscrowRevert::WrongFairStatus {
                job_id,
                status: FairStatus::from_u8(status.as_u8()),
            })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::StakeStatus;

    #[test]
    fn a_wrong_status_refusal_is_read_with_version_4s_states() {
        let job_id = B256::repeat_byte(1);
        for v in 0..=9u8 {
            let shared = EscrowError::Refused(EscrowRevert::WrongStatus {
                job_id,
                status: StakeStatus::from_u8(v),
            });
            match fair(shared) {
                EscrowError::Refused(EscrowRevert::WrongFairStatus { status, .. }) => {
                    assert_eq!(status, FairStatus::from_u8(v));
                }
                other => panic!("not remapped: {other:?}"),
            }
        }
    }
}
