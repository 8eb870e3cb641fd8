//! One provider tried for a delegation, how it ended, and what became of its stake: what
//! a job record keeps in its `attempts` and the answer shows.

use serde::{Deserialize, Serialize};

use super::PayStatus;
use crate::axl::PeerKey;
use crate::protocol::JobId;

/// One provider tried for a delegation.
#[serde_with::skip_serializing_none]
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
    pub job_id: Option<JobId>,
    /// Paid attempts that failed: what became of their stake.
    pub stake: Option<AttemptStake>,
}

/// What became of the stake of a paid attempt that failed.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptStake {
    /// `refunded`: the provider declined and its `decline` transaction (`tx_hash`) refunded
    /// the requester; `pending_refund`: the stake is on chain and the payment watcher
    /// refunds it once the chain passes `refund_after`; `not_staked`: the provider never
    /// submitted the authorization (nothing is locked; it lapses at `refund_after`, and
    /// should it land before, it is refunded after); otherwise the payment status.
    pub status: StakeOutcome,
    /// The transaction that returned the money, when it has.
    pub tx_hash: Option<String>,
    /// The stake's deadline, unix seconds of chain time.
    pub refund_after: Option<u64>,
}

/// How one attempt at a provider ended, as the answer's `attempts` and the provider
/// history ([`crate::mesh::history`]) see it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// It answered with a result whose signed receipt does not match the job: not paid.
    BadReceipt,
    /// A spot check caught it: a second and a third provider of the same model ran the
    /// job otherwise. Not paid; excluded from then on.
    Caught,
    /// It answered with an empty output (anyone can prove one): refused, not paid.
    EmptyOutput,
}

impl AttemptOutcome {
    /// The snake_case name, as in the answer's `attempts`.
    pub fn as_str(&self) -> &'static str {
        self.into()
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
                | Self::BadReceipt
                | Self::Caught
                | Self::EmptyOutput
        )
    }

    /// Whether the requester refused the result it got (a lying receipt, a caught cheat,
    /// an empty output): should the provider submit it on chain all the same, the requester
    /// disputes the submit (docs/threat-model.md, rule 3).
    pub fn refuses_result(&self) -> bool {
        matches!(self, Self::BadReceipt | Self::Caught | Self::EmptyOutput)
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
