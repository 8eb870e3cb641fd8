//! Settlement: the [`Settler`] trait (release after a verified proof, reject after a
//! failed one), the shared idempotency rules, and the [`DirectSettler`] that signs as the
//! escrow's operator itself. The KeeperHub settler lives in `keeperhub.rs`.
//!
//! Both settlers read `getStake` before acting, so a retry after a crash or a lost
//! response never sends a second transaction: an already released job is a success for
//! `release`, an already rejected or refunded job a success for `reject`, and a final
//! state that contradicts the call is a [`SettleError::Conflict`].

use alloy::primitives::{TxHash, B256};
use async_trait::async_trait;

use super::error::{ChainError, EscrowError, EscrowRevert};
use super::escrow::{EscrowClient, StakeInfo, StakeStatus};
use super::settings::ChainSettings;

/// The outcome of a settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The settling transaction: the one this call sent, or, when the job was settled
    /// before, the one found in the escrow's events (`None` if not found).
    pub tx_hash: Option<TxHash>,
    /// Explorer link for `tx_hash`.
    pub explorer_url: Option<String>,
    /// The stake's final state (Released/Claimed after release, Rejected/Refunded after reject).
    pub status: StakeStatus,
    /// True if this call sent (or had KeeperHub send) the transaction; false if the job
    /// was already settled and nothing was sent.
    pub sent: bool,
}

/// How far back to look for the event of an earlier settlement (about 5.5 h of Base blocks).
const SETTLEMENT_LOOKBACK_BLOCKS: u64 = 10_000;

/// The result for a job that was already settled: nothing sent, the earlier
/// transaction looked up from the escrow's events (best effort).
pub(crate) async fn already_settled(
    client: &EscrowClient,
    job_id: B256,
    status: StakeStatus,
) -> Settlement {
    let tx_hash = match client
        .settlement_tx(job_id, SETTLEMENT_LOOKBACK_BLOCKS)
        .await
    {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(%job_id, error = %e, "could not look up the earlier settlement");
            None
        }
    };
    Settlement {
        tx_hash,
        explorer_url: tx_hash.map(|h| client.tx_url(h)),
        status,
        sent: false,
    }
}

impl Settlement {
    fn sent(tx_hash: TxHash, explorer_url: String, status: StakeStatus) -> Self {
        Self {
            tx_hash: Some(tx_hash),
            explorer_url: Some(explorer_url),
            status,
            sent: true,
        }
    }
}

/// Why a settlement failed.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The escrow has no stake for this job.
    #[error("job {job_id} has no stake in the escrow")]
    NotStaked {
        /// The job.
        job_id: B256,
    },
    /// The stake already ended in a state that contradicts this call (no transaction sent).
    #[error("job {job_id} is already {status}; refusing to {action} it")]
    Conflict {
        /// The job.
        job_id: B256,
        /// Its final state.
        status: StakeStatus,
        /// What was asked.
        action: &'static str,
    },
    /// The escrow refused the call (decoded revert, e.g. not operator, output mismatch).
    #[error("escrow refused: {0}")]
    Refused(EscrowRevert),
    /// The chain could not be reached or the transaction did not confirm.
    #[error(transparent)]
    Chain(EscrowError),
    /// KeeperHub rejected the API key (HTTP 401).
    #[error("KeeperHub rejected the API key (401): check KEEPERHUB_API_KEY")]
    Unauthorized,
    /// KeeperHub's organisation spending cap is reached (HTTP 422).
    #[error("KeeperHub spending cap exceeded (422): {0}")]
    SpendingCap(String),
    /// KeeperHub refused the request (other 4xx).
    #[error("KeeperHub refused the request ({status}): {body}")]
    KeeperHubRejected {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// KeeperHub ran the call and reports it failed.
    #[error("KeeperHub execution {execution_id} failed: {error}")]
    ExecutionFailed {
        /// KeeperHub's execution id.
        execution_id: String,
        /// Its error text.
        error: String,
    },
    /// KeeperHub reported completion but the escrow does not show the expected state.
    #[error("KeeperHub execution {execution_id} completed but job is {status} on chain")]
    NotApplied {
        /// KeeperHub's execution id.
        execution_id: String,
        /// The state read back.
        status: StakeStatus,
    },
    /// No final answer from KeeperHub in time.
    #[error("KeeperHub gave no final status within {0:?}")]
    Timeout(std::time::Duration),
    /// KeeperHub could not be reached or answered nonsense.
    #[error("KeeperHub request failed: {0}")]
    Http(String),
}

impl From<EscrowError> for SettleError {
    fn from(e: EscrowError) -> Self {
        match e {
            EscrowError::Refused(r) => Self::Refused(r),
            other => Self::Chain(other),
        }
    }
}

/// Releases or rejects escrowed payments. Both calls are idempotent.
#[async_trait]
pub trait Settler: Send + Sync {
    /// Pays the provider of `job_id`; `output_hash` is the proof's output commitment.
    async fn release(&self, job_id: B256, output_hash: B256) -> Result<Settlement, SettleError>;
    /// Refunds the requester of `job_id` (the result's proof failed).
    async fn reject(&self, job_id: B256) -> Result<Settlement, SettleError>;
    /// A short name for logs ("direct", "keeperhub").
    fn name(&self) -> &'static str;
}

/// What to do about a release/reject given the stake as read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Send the call.
    Send,
    /// Nothing to send: the job already ended the way the call wants.
    Done(StakeStatus),
}

/// The idempotency rule for `release`.
pub(crate) fn plan_release(
    job_id: B256,
    stake: &StakeInfo,
    output_hash: B256,
) -> Result<Plan, SettleError> {
    match stake.status {
        StakeStatus::Staked => Ok(Plan::Send),
        StakeStatus::Submitted if stake.output_hash == output_hash => Ok(Plan::Send),
        StakeStatus::Submitted => Err(SettleError::Refused(EscrowRevert::OutputMismatch {
            expected: stake.output_hash,
            got: output_hash,
        })),
        StakeStatus::Released if stake.output_hash == output_hash => {
            Ok(Plan::Done(StakeStatus::Released))
        }
        // The provider was paid by claimTimeout: the money went where release sends it.
        StakeStatus::Claimed => Ok(Plan::Done(StakeStatus::Claimed)),
        StakeStatus::None => Err(SettleError::NotStaked { job_id }),
        status => Err(SettleError::Conflict {
            job_id,
            status,
            action: "release",
        }),
    }
}

/// The idempotency rule for `reject`.
pub(crate) fn plan_reject(job_id: B256, stake: &StakeInfo) -> Result<Plan, SettleError> {
    match stake.status {
        StakeStatus::Staked | StakeStatus::Submitted => Ok(Plan::Send),
        // The requester already has its money back (a refund, or the provider's decline).
        s @ (StakeStatus::Rejected | StakeStatus::Refunded | StakeStatus::Declined) => {
            Ok(Plan::Done(s))
        }
        StakeStatus::None => Err(SettleError::NotStaked { job_id }),
        status => Err(SettleError::Conflict {
            job_id,
            status,
            action: "reject",
        }),
    }
}

/// Settles by signing `release`/`reject` with the operator key (local chains and
/// self-hosted operators).
#[derive(Debug, Clone)]
pub struct DirectSettler {
    client: EscrowClient,
}

impl DirectSettler {
    /// Connects with `OPERATOR_PRIVATE_KEY`.
    pub async fn connect(settings: &ChainSettings) -> Result<Self, ChainError> {
        let signer = settings.operator_signer()?;
        Ok(Self::new(
            EscrowClient::connect(settings, Some(signer)).await?,
        ))
    }

    /// Uses a client that signs with the operator key.
    pub fn new(client: EscrowClient) -> Self {
        Self { client }
    }

    /// After a refused call, a racing settlement may explain it: re-read and re-plan.
    async fn recheck(
        &self,
        job_id: B256,
        err: EscrowError,
        plan: impl Fn(&StakeInfo) -> Result<Plan, SettleError>,
    ) -> Result<Settlement, SettleError> {
        if matches!(err.revert(), Some(EscrowRevert::WrongStatus { .. })) {
            let stake = self.client.get_stake(job_id).await?;
            if let Plan::Done(status) = plan(&stake)? {
                return Ok(already_settled(&self.client, job_id, status).await);
            }
        }
        Err(err.into())
    }
}

#[async_trait]
impl Settler for DirectSettler {
    async fn release(&self, job_id: B256, output_hash: B256) -> Result<Settlement, SettleError> {
        let plan = |s: &StakeInfo| plan_release(job_id, s, output_hash);
        let stake = self.client.get_stake(job_id).await?;
        if let Plan::Done(status) = plan(&stake)? {
            tracing::info!(%job_id, %status, "release: already settled, nothing to send");
            return Ok(already_settled(&self.client, job_id, status).await);
        }
        match self.client.release(job_id, output_hash).await {
            Ok(tx) => Ok(Settlement::sent(
                tx,
                self.client.tx_url(tx),
                StakeStatus::Released,
            )),
            Err(e) => self.recheck(job_id, e, plan).await,
        }
    }

    async fn reject(&self, job_id: B256) -> Result<Settlement, SettleError> {
        let plan = |s: &StakeInfo| plan_reject(job_id, s);
        let stake = self.client.get_stake(job_id).await?;
        if let Plan::Done(status) = plan(&stake)? {
            tracing::info!(%job_id, %status, "reject: already settled, nothing to send");
            return Ok(already_settled(&self.client, job_id, status).await);
        }
        match self.client.reject(job_id).await {
            Ok(tx) => Ok(Settlement::sent(
                tx,
                self.client.tx_url(tx),
                StakeStatus::Rejected,
            )),
            Err(e) => self.recheck(job_id, e, plan).await,
        }
    }

    fn name(&self) -> &'static str {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, U256};

    fn stake(status: StakeStatus, hash: B256) -> StakeInfo {
        StakeInfo {
            requester: Address::ZERO,
            provider: Address::ZERO,
            key_commitment: B256::ZERO,
            amount: U256::from(1),
            created_at: 0,
            submitted_at: 0,
            deadline: 0,
            output_hash: hash,
            status,
        }
    }

    #[test]
    fn release_plan_follows_the_stake() {
        let j = B256::repeat_byte(1);
        let h = B256::repeat_byte(2);
        let other = B256::repeat_byte(3);
        let p = |st, hash| plan_release(j, &stake(st, hash), h);
        assert_eq!(p(StakeStatus::Staked, B256::ZERO).unwrap(), Plan::Send);
        assert_eq!(p(StakeStatus::Submitted, h).unwrap(), Plan::Send);
        assert!(matches!(
            p(StakeStatus::Submitted, other),
            Err(SettleError::Refused(EscrowRevert::OutputMismatch { .. }))
        ));
        assert_eq!(
            p(StakeStatus::Released, h).unwrap(),
            Plan::Done(StakeStatus::Released)
        );
        assert!(matches!(
            p(StakeStatus::Released, other),
            Err(SettleError::Conflict { .. })
        ));
        assert!(matches!(
            p(StakeStatus::Refunded, B256::ZERO),
            Err(SettleError::Conflict { .. })
        ));
        assert!(matches!(
            p(StakeStatus::None, B256::ZERO),
            Err(SettleError::NotStaked { .. })
        ));
    }

    #[test]
    fn reject_plan_follows_the_stake() {
        let j = B256::repeat_byte(1);
        let p = |st| plan_reject(j, &stake(st, B256::ZERO));
        assert_eq!(p(StakeStatus::Submitted).unwrap(), Plan::Send);
        assert_eq!(
            p(StakeStatus::Refunded).unwrap(),
            Plan::Done(StakeStatus::Refunded)
        );
        assert!(matches!(
            p(StakeStatus::Released),
            Err(SettleError::Conflict { .. })
        ));
    }
}
