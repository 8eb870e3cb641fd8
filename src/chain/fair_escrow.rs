//! Version 4 of the escrow, the fair exchange ([`FairEscrow`]): the requester releases its
//! own stake (no operator), a `submit` opens a dispute window after which anyone may
//! `finalize` (the provider is paid), and a dispute within the window goes to the
//! deployment's arbiter, who is never a party. Staking, `submit`, `decline` and `refund` have
//! version 3's ABI and go through the wrapped [`EscrowClient`] (the last three here, so that
//! a refusal names version 4's states).
//!
//! The daemon still runs on version 3; this client is what it switches to
//! (docs/paid-flow.md, "Escrow v4").

use alloy::primitives::{Address, TxHash, B256};
use alloy::providers::DynProvider;

use super::bindings::EdgentEscrowV4;
use super::error::{ChainError, EscrowError, EscrowRevert};
use super::escrow::EscrowClient;
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
        self.escrow
            .arbiter()
            .call()
            .await
            .map_err(EscrowError::from_contract)
    }

    /// The deployment's one timing setting, seconds: the dispute window after a submit,
    /// the delay before `finalize`, and the margin a stake's deadline adds to a job's.
    pub async fn dispute_window(&self) -> Result<u64, EscrowError> {
        self.escrow
            .disputeWindow()
            .call()
            .await
            .map_err(EscrowError::from_contract)
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
    fn fair_statuses_map_the_contracts_enum() {
        let names: Vec<String> = (0..=10)
            .map(|v| FairStatus::from_u8(v).to_string())
            .collect();
        assert_eq!(
            names,
            [
                "none",
                "staked",
                "submitted",
                "disputed",
                "released",
                "finalized",
                "resolved_paid",
                "resolved_refunded",
                "refunded",
                "declined",
                "unknown(10)"
            ]
        );
        let finals = (0..=10)
            .filter(|&v| FairStatus::from_u8(v).is_final())
            .count();
        assert_eq!(finals, 6);
    }

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
