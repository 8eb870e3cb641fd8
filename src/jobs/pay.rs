//! The money side of a paid job: where the money is ([`PayStatus`], whose
//! [`PayStatus::can_move_to`] is the table of moves) and what is known of it
//! ([`PaymentRecord`]).

use serde::{Deserialize, Serialize};

/// Where the money of a paid job is. Requester: `staking -> staked -> verified ->
/// released`, or `disputed -> rejected`, or `refunded` after the deadline, or `unwound`
/// when the stake never landed. Provider: `accepted -> delivered -> (submitted ->)
/// released | claimed`, or `rejected` / `refunded` when the requester took it back, or
/// `abandoned` when the job died before delivery. [`PayStatus::can_move_to`] is the
/// table, and [`super::JobStore::advance`] the one way a stored payment moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PayStatus {
    /// Requester: the stake transaction is being sent.
    Staking,
    /// Requester: the stake is locked; waiting for the result and its proof.
    Staked,
    /// Requester: the proof checked; the release is under way.
    Verified,
    /// Requester: the proof failed; the operator is asked to reject.
    Disputed,
    /// Provider: the stake checked out; the work is under way.
    Accepted,
    /// Provider: result and payment request sent; waiting to be paid.
    Delivered,
    /// Provider: the output hash is on chain; claimable after the claim delay.
    Submitted,
    /// The provider was paid by the operator's release.
    Released,
    /// The provider took the stake after the claim delay.
    Claimed,
    /// The operator refunded the requester (failed proof).
    Rejected,
    /// The requester took the stake back after the deadline.
    Refunded,
    /// Requester: the stake never landed; nothing is locked.
    Unwound,
    /// Provider: the job died before delivery; the requester's refund ends it.
    Abandoned,
}

impl PayStatus {
    /// Every status.
    pub const ALL: [PayStatus; 13] = [
        PayStatus::Staking,
        PayStatus::Staked,
        PayStatus::Verified,
        PayStatus::Disputed,
        PayStatus::Accepted,
        PayStatus::Delivered,
        PayStatus::Submitted,
        PayStatus::Released,
        PayStatus::Claimed,
        PayStatus::Rejected,
        PayStatus::Refunded,
        PayStatus::Unwound,
        PayStatus::Abandoned,
    ];

    /// Lower-case name, as stored and shown.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// Whether `self -> next` is a move the payment machine allows. A status belongs to
    /// one side (requester: staking, staked, verified, disputed, unwound; provider:
    /// accepted, delivered, submitted, abandoned), and moves never cross sides or go back.
    /// The chain is the source of truth, so an open status may always record how the
    /// escrow says the stake ended (released, claimed, rejected, refunded), except where
    /// the escrow itself cannot get there (a submitted stake is never refunded). A
    /// settled status never moves again.
    pub fn can_move_to(&self, next: PayStatus) -> bool {
        use PayStatus::*;
        let ended_on_chain = matches!(next, Released | Claimed | Rejected | Refunded);
        match self {
            Staking => matches!(next, Staked | Unwound) || ended_on_chain,
            Staked => matches!(next, Verified | Disputed) || ended_on_chain,
            Verified | Disputed => ended_on_chain,
            Accepted => matches!(next, Delivered | Abandoned) || ended_on_chain,
            Delivered => matches!(next, Submitted | Abandoned) || ended_on_chain,
            Submitted => matches!(next, Released | Claimed | Rejected),
            Released | Claimed | Rejected | Refunded | Unwound | Abandoned => false,
        }
    }

    /// Whether the daemon still has something to do (or wait for) about this money.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            PayStatus::Staking
                | PayStatus::Staked
                | PayStatus::Verified
                | PayStatus::Disputed
                | PayStatus::Accepted
                | PayStatus::Delivered
                | PayStatus::Submitted
        )
    }
}

/// The money side of a paid job, persisted with it so every stake ends even across
/// restarts.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// Where the money is.
    pub status: PayStatus,
    /// EIP-155 chain id of the escrow.
    pub chain_id: u64,
    /// Escrow address.
    pub escrow: String,
    /// Staked amount, USDC base units.
    pub amount_units: u64,
    /// The provider's wallet (the stake's payee).
    pub pay_to: String,
    /// The stake transaction.
    pub stake_tx: Option<String>,
    /// The stake's deadline, unix seconds of chain time.
    pub stake_deadline: u64,
    /// The output commitment (the escrow's `outputHash`), `0x` + 64 hex.
    pub output_commitment: Option<String>,
    /// Requester: whether the provider's proof checked.
    pub proof_verified: Option<bool>,
    /// The transaction that settled the stake (release, reject, refund or claim).
    pub tx_hash: Option<String>,
    /// Explorer link for `tx_hash`.
    pub explorer_url: Option<String>,
    /// Provider: the `submit` transaction.
    pub submit_tx: Option<String>,
    /// Provider: chain time of the `submit`, unix seconds.
    pub submitted_at: Option<u64>,
    /// Provider: when the result was delivered, unix ms.
    pub delivered_ms: Option<u64>,
    /// Provider: when the stake it landed from an authorization was mined (its receipt
    /// seen), unix ms; the job's output left only after it.
    #[serde(default)]
    pub staked_ms: Option<u64>,
    /// Provider: the payment request sent (kept to send again). Requester: one received
    /// before the result it proves.
    pub request: Option<crate::protocol::PaymentRequest>,
    /// Why the last money step failed or the proof was refused.
    pub error: Option<String>,
}

impl PaymentRecord {
    /// A payment in `status` for a stake of `amount_units` to `pay_to`, nothing else known yet.
    pub fn new(
        status: PayStatus,
        chain_id: u64,
        escrow: String,
        amount_units: u64,
        pay_to: String,
        stake_deadline: u64,
    ) -> Self {
        PaymentRecord {
            status,
            chain_id,
            escrow,
            amount_units,
            pay_to,
            stake_tx: None,
            stake_deadline,
            output_commitment: None,
            proof_verified: None,
            tx_hash: None,
            explorer_url: None,
            submit_tx: None,
            submitted_at: None,
            delivered_ms: None,
            staked_ms: None,
            request: None,
            error: None,
        }
    }
}
