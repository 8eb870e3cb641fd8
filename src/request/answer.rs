//! What an agent gets back from a delegation: the answer ([`DelegateResponse`]), who served
//! it, the money, and every provider tried ([`Attempt`]) with how it ended.

use serde::{Deserialize, Serialize};

use crate::axl::PeerKey;
use crate::jobs::{PayStatus, Timings};
use crate::protocol::{JobId, Usage};

/// The money of a paid job, as `/delegate` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentSummary {
    /// Where the money is (`verified`, `released`, `disputed`, ...).
    pub status: String,
    /// Staked amount, USDC base units.
    pub amount_units: u64,
    /// The stake transaction.
    pub stake_tx: Option<String>,
    /// The settling transaction (the release), once there is one.
    pub tx_hash: Option<String>,
    /// Explorer link for `tx_hash`.
    pub explorer_url: Option<String>,
}

/// The provider that served a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderInfo {
    /// Its full AXL key.
    pub node_id: PeerKey,
    /// Its ENS name.
    pub ens: Option<String>,
    /// Its wallet.
    pub wallet: Option<String>,
}

/// What a streamed delegation tells whoever asked for the stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// The task went to this provider (first, once per provider tried).
    Started {
        /// The job.
        job_id: JobId,
        /// Who runs it.
        provider: ProviderInfo,
    },
    /// More output, in order.
    Delta(String),
}

/// Where a streamed delegation sends its [`StreamEvent`]s (see [`crate::stream`]).
#[derive(Debug, Clone)]
pub struct StreamSink {
    /// The events.
    pub events: tokio::sync::mpsc::UnboundedSender<StreamEvent>,
}

/// The answer to `POST /delegate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelegateResponse {
    /// The job id.
    pub job_id: JobId,
    /// Who ran it.
    pub provider: ProviderInfo,
    /// The model's output.
    pub output: String,
    /// What it cost in tokens and time on the provider.
    pub usage: Usage,
    /// Phase timings, milliseconds.
    pub timings: Timings,
    /// Paid jobs: whether the provider's proof checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_verified: Option<bool>,
    /// Paid jobs: the money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentSummary>,
    /// Every provider tried, in order; the last one answered.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// One provider tried for a delegation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// Its full AXL key.
    pub provider: PeerKey,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// How long it took, milliseconds.
    pub ms: u64,
    /// The job id this attempt ran under. Unpaid attempts share the delegation's; a paid
    /// attempt has its own (the escrow's job id names one provider), so each has a record
    /// in `/jobs` with its payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// Paid attempts that failed: what became of their stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<AttemptStake>,
}

/// What became of the stake of a paid attempt that failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptStake {
    /// `refunded`: the provider declined and its `decline` transaction (`tx_hash`) refunded
    /// the requester; `pending_refund`: the stake is on chain and the payment watcher
    /// refunds it once the chain passes `refund_after`; `not_staked`: the provider never
    /// submitted the authorization (nothing is locked; it lapses at `refund_after`, and
    /// should it land before, it is refunded after); otherwise the payment status.
    pub status: StakeOutcome,
    /// The transaction that returned the money, when it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// The stake's deadline, unix seconds of chain time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_after: Option<u64>,
}

/// How one attempt at a provider ended, as the answer's `attempts` and the provider
/// history ([`crate::mesh::history`]) see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It answered with the result.
    Completed,
    /// Its queue was full.
    Busy,
    /// It does not serve the model (any more).
    ModelUnavailable,
    /// Its backend failed.
    InferenceFailed,
    /// It refused the task for another reason (stake, deadline, bad request).
    Refused,
    /// It acknowledged the task, then stopped sending heartbeats.
    Dead,
    /// The task was never acknowledged.
    Unreachable,
    /// The agent's deadline passed while it worked.
    Deadline,
    /// The agent went away and the job was cancelled (says nothing about the provider).
    Cancelled,
}

impl AttemptOutcome {
    /// The snake_case name, as in the answer's `attempts`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::ModelUnavailable => "model_unavailable",
            Self::InferenceFailed => "inference_failed",
            Self::Refused => "refused",
            Self::Dead => "dead",
            Self::Unreachable => "unreachable",
            Self::Deadline => "deadline",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job may move on to the next candidate after this.
    pub fn fails_over(&self) -> bool {
        matches!(
            self,
            Self::Busy
                | Self::ModelUnavailable
                | Self::InferenceFailed
                | Self::Dead
                | Self::Unreachable
        )
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of the stake of a paid attempt that failed ([`AttemptStake::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StakeOutcome {
    /// The provider declined and its `decline` transaction refunded the requester.
    Refunded,
    /// The stake is on chain; the payment watcher refunds it after its deadline.
    PendingRefund,
    /// The provider never submitted the authorization: nothing is locked.
    NotStaked,
    /// Otherwise: the payment's status, as it is.
    #[serde(untagged)]
    Payment(PayStatus),
}

impl StakeOutcome {
    /// The snake_case name, as in the answer's `attempts`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Refunded => "refunded",
            Self::PendingRefund => "pending_refund",
            Self::NotStaked => "not_staked",
            Self::Payment(p) => p.as_str(),
        }
    }
}

impl std::fmt::Display for StakeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_keep_their_names_on_the_wire() {
        for o in [AttemptOutcome::ModelUnavailable, AttemptOutcome::Dead] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for (s, name) in [
            (StakeOutcome::PendingRefund, "pending_refund"),
            (StakeOutcome::Refunded, "refunded"),
            (StakeOutcome::NotStaked, "not_staked"),
            (StakeOutcome::Payment(PayStatus::Verified), "verified"),
            (StakeOutcome::Payment(PayStatus::Unwound), "unwound"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(s.as_str(), name);
            assert_eq!(
                serde_json::from_value::<StakeOutcome>(name.into()).unwrap(),
                s
            );
        }
    }
}
