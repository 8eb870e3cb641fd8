//! Typed errors for escrow calls. A revert is decoded into [`EscrowRevert`] (the
//! contract's own custom errors, or a token's `Error(string)`/`Panic`), never shown as
//! a raw hex blob.

use std::time::Duration;

use alloy::primitives::{Address, FixedBytes, TxHash, B256, U256};
use alloy::sol_types::{GenericContractError, SolInterface};

use super::bindings::EdgentEscrow::EdgentEscrowErrors;
use super::bindings::EdgentEscrowV4::EdgentEscrowV4Errors;
use super::bindings::MockUSDC::MockUSDCErrors;
use super::escrow::StakeStatus;
use super::stake::FairStatus;

/// Why the escrow (or the token) refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowRevert {
    /// `stake` with a job id that is already staked.
    #[error("job {job_id} is already staked")]
    JobExists {
        /// The job.
        job_id: B256,
    },
    /// A call for a job the escrow has never seen.
    #[error("job {job_id} is unknown to the escrow")]
    UnknownJob {
        /// The job.
        job_id: B256,
    },
    /// The stake is in a state that does not allow this call.
    #[error("job {job_id} is {status}, which does not allow this call")]
    WrongStatus {
        /// The job.
        job_id: B256,
        /// Its current state.
        status: StakeStatus,
    },
    /// `release`/`reject` from an address that is not the escrow's operator.
    #[error("{caller} is not the escrow's operator")]
    NotOperator {
        /// The sender.
        caller: Address,
    },
    /// `submit`/`claimTimeout` from an address that is not the job's provider.
    #[error("{caller} is not this job's provider")]
    NotProvider {
        /// The sender.
        caller: Address,
    },
    /// `refund` from an address that is not the job's requester.
    #[error("{caller} is not this job's requester")]
    NotRequester {
        /// The sender.
        caller: Address,
    },
    /// A stake of zero.
    #[error("the amount is zero")]
    ZeroAmount,
    /// A zero address where one is required.
    #[error("an address is zero")]
    ZeroAddress,
    /// The job's deadline has passed (or a new stake's deadline is not in the future).
    #[error("the deadline {deadline} has passed")]
    DeadlinePassed {
        /// Deadline, unix seconds.
        deadline: u64,
    },
    /// `refund` before the deadline.
    #[error("the deadline {deadline} has not passed yet")]
    DeadlineNotPassed {
        /// Deadline, unix seconds.
        deadline: u64,
    },
    /// `claimTimeout` before the claim delay has run out.
    #[error("too early to claim: available at {available_at}")]
    ClaimTooEarly {
        /// Earliest claim time, unix seconds.
        available_at: u64,
    },
    /// `release` with an output hash different from the one the provider submitted.
    #[error("output hash mismatch: submitted {expected}, release asked for {got}")]
    OutputMismatch {
        /// What the provider submitted.
        expected: B256,
        /// What the release carried.
        got: B256,
    },
    /// The escrow's USDC allowance is short.
    #[error("USDC allowance {allowance} is less than {needed}")]
    InsufficientAllowance {
        /// Current allowance.
        allowance: U256,
        /// Amount needed.
        needed: U256,
    },
    /// The wallet holds too little USDC.
    #[error("USDC balance {balance} is less than {needed}")]
    InsufficientBalance {
        /// Current balance.
        balance: U256,
        /// Amount needed.
        needed: U256,
    },
    /// The token transfer returned false.
    #[error("the USDC transfer failed")]
    TransferFailed,
    /// A reentrant call was blocked.
    #[error("reentrant call blocked")]
    Reentrancy,
    /// `submit` with a Groth16 proof that does not verify for this job, the stake's provider
    /// key commitment and the submitted output commitment (or a malformed proof).
    #[error("the proof does not verify for job {job_id}, its provider key and this output")]
    InvalidProof {
        /// The job.
        job_id: B256,
    },
    /// A stake whose provider key commitment is not below the BN254 scalar field (no proof
    /// could ever match it).
    #[error("the provider key commitment {key_commitment} is not a BN254 field element")]
    KeyCommitmentOutOfField {
        /// The commitment refused.
        key_commitment: B256,
    },
    /// Version 4: the stake is in a state that does not allow this call (the fair
    /// client's reading of `WrongStatus`, with version 4's states).
    #[error("job {job_id} is {status}, which does not allow this call")]
    WrongFairStatus {
        /// The job.
        job_id: B256,
        /// Its current state.
        status: FairStatus,
    },
    /// Version 4: `resolve` from an address that is not the escrow's arbiter.
    #[error("{caller} is not the escrow's arbiter")]
    NotArbiter {
        /// The sender.
        caller: Address,
    },
    /// Version 4: a stake whose requester or provider is the escrow's arbiter.
    #[error("the arbiter {arbiter} cannot be a party of a stake")]
    ArbiterIsParty {
        /// The escrow's arbiter.
        arbiter: Address,
    },
    /// Version 4: a deployment with a dispute window outside 30 s to one day.
    #[error("a dispute window of {window} s is out of range")]
    BadDisputeWindow {
        /// The window asked for, seconds.
        window: u64,
    },
    /// Version 4: `finalize` while the dispute window is still open.
    #[error("the dispute window is open until {closes_at}")]
    DisputeWindowOpen {
        /// When `finalize` opens, unix seconds.
        closes_at: u64,
    },
    /// Version 4: `dispute` after the dispute window closed.
    #[error("the dispute window closed at {closed_at}")]
    DisputeWindowClosed {
        /// When it closed, unix seconds.
        closed_at: u64,
    },
    /// A plain `require` message (e.g. from a token).
    #[error("reverted: {0}")]
    Message(String),
    /// A Solidity panic (arithmetic overflow, ...), by its panic code.
    #[error("panicked with code {0}")]
    Panic(U256),
    /// A custom error this client does not know (only its 4-byte selector is shown).
    #[error("reverted with an unknown error (selector {0})")]
    Unknown(FixedBytes<4>),
    /// A revert without any data.
    #[error("reverted without a reason")]
    NoReason,
}

impl From<EdgentEscrowErrors> for EscrowRevert {
    fn from(e: EdgentEscrowErrors) -> Self {
        use EdgentEscrowErrors as E;
        match e {
            E::JobExists(e) => Self::JobExists { job_id: e.jobId },
            E::UnknownJob(e) => Self::UnknownJob { job_id: e.jobId },
            E::WrongStatus(e) => Self::WrongStatus {
                job_id: e.jobId,
                status: StakeStatus::from_u8(e.status),
            },
            E::NotOperator(e) => Self::NotOperator { caller: e.caller },
            E::NotProvider(e) => Self::NotProvider { caller: e.caller },
            E::NotRequester(e) => Self::NotRequester { caller: e.caller },
            E::ZeroAmount(_) => Self::ZeroAmount,
            E::ZeroAddress(_) => Self::ZeroAddress,
            E::DeadlinePassed(e) => Self::DeadlinePassed {
                deadline: e.deadline,
            },
            E::DeadlineNotPassed(e) => Self::DeadlineNotPassed {
                deadline: e.deadline,
            },
            E::ClaimTooEarly(e) => Self::ClaimTooEarly {
                available_at: e.availableAt,
            },
            E::OutputMismatch(e) => Self::OutputMismatch {
                expected: e.expected,
                got: e.got,
            },
            E::InsufficientAllowance(e) => Self::InsufficientAllowance {
                allowance: e.allowance,
                needed: e.needed,
            },
            E::InsufficientBalance(e) => Self::InsufficientBalance {
                balance: e.balance,
                needed: e.needed,
            },
            E::TransferFailed(_) => Self::TransferFailed,
            E::Reentrancy(_) => Self::Reentrancy,
            E::InvalidProof(e) => Self::InvalidProof { job_id: e.jobId },
            E::KeyCommitmentOutOfField(e) => Self::KeyCommitmentOutOfField {
                key_commitment: e.keyCommitment,
            },
            #[allow(unreachable_patterns)]
            other => match FixedBytes::<4>::try_from(&other.abi_encode()[..4]) {
                Ok(sel) => Self::Unknown(sel),
                Err(_) => Self::NoReason,
            },
        }
    }
}

impl EscrowRevert {
    /// Decodes revert data: the escrow's custom errors first, then `Error(string)` and
    /// `Panic(uint256)`, else the unknown selector.
    pub fn decode(data: &[u8]) -> Self {
        if data.len() < 4 {
            return Self::NoReason;
        }
        if let Ok(e) = EdgentEscrowErrors::abi_decode(data) {
            return e.into();
        }
        if let Ok(e) = EdgentEscrowV4Errors::abi_decode(data) {
            use EdgentEscrowV4Errors as E;
            // Version 4's other errors share version 3's selectors and decoded above.
            match e {
                E::NotArbiter(e) => return Self::NotArbiter { caller: e.caller },
                E::ArbiterIsParty(e) => return Self::ArbiterIsParty { arbiter: e.arbiter },
                E::BadDisputeWindow(e) => return Self::BadDisputeWindow { window: e.window },
                E::DisputeWindowOpen(e) => {
                    return Self::DisputeWindowOpen {
                        closes_at: e.closesAt,
                    }
                }
                E::DisputeWindowClosed(e) => {
                    return Self::DisputeWindowClosed {
                        closed_at: e.closedAt,
                    }
                }
                _ => {}
            }
        }
        if let Ok(e) = MockUSDCErrors::abi_decode(data) {
            return match e {
                MockUSDCErrors::ERC20InsufficientBalance(e) => Self::InsufficientBalance {
                    balance: e.balance,
                    needed: e.needed,
                },
                MockUSDCErrors::ERC20InsufficientAllowance(e) => Self::InsufficientAllowance {
                    allowance: e.allowance,
                    needed: e.needed,
                },
                other => Self::Message(format!("token refused: {other:?}")),
            };
        }
        match GenericContractError::abi_decode(data) {
            Ok(GenericContractError::Revert(r)) => Self::Message(r.reason),
            Ok(GenericContractError::Panic(p)) => Self::Panic(p.code),
            Err(_) => Self::Unknown(FixedBytes::<4>::from_slice(&data[..4])),
        }
    }
}

/// A failed escrow operation, by cause.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    /// The escrow or token refused the call (decoded revert).
    #[error("escrow refused: {0}")]
    Refused(#[from] EscrowRevert),
    /// The transaction was mined but reverted.
    #[error("transaction {tx_hash} was mined but reverted")]
    Reverted {
        /// The transaction.
        tx_hash: TxHash,
    },
    /// No receipt arrived in time; the transaction may still be mined later.
    #[error("no receipt for transaction {tx_hash} within {timeout:?}")]
    ReceiptTimeout {
        /// The transaction.
        tx_hash: TxHash,
        /// How long we waited.
        timeout: Duration,
    },
    /// The RPC endpoint failed (unreachable, bad response...).
    #[error("chain RPC error: {0}")]
    Rpc(String),
    /// A write was asked of a client without a signing key.
    #[error("no wallet key configured for this call")]
    NoWallet,
}

impl EscrowError {
    /// The decoded revert, if this is a refusal.
    pub fn revert(&self) -> Option<&EscrowRevert> {
        match self {
            Self::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// Classifies an alloy contract error: revert data becomes [`EscrowError::Refused`].
    pub fn from_contract(err: alloy::contract::Error) -> Self {
        if let Some(data) = err.as_revert_data() {
            return Self::Refused(EscrowRevert::decode(&data));
        }
        if is_revert_without_data(&err.to_string()) {
            return Self::Refused(EscrowRevert::NoReason);
        }
        Self::Rpc(err.to_string())
    }
}

fn is_revert_without_data(msg: &str) -> bool {
    msg.contains("execution reverted")
}

/// A failure to reach or recognise the chain when connecting.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {0:?}")]
    BadUrl(String),
    /// The RPC endpoint failed.
    #[error("chain RPC error: {0}")]
    Rpc(String),
    /// The endpoint serves another chain than configured.
    #[error("RPC serves chain {actual}, but CHAIN_ID is {expected}")]
    WrongChain {
        /// Configured chain id.
        expected: u64,
        /// The endpoint's chain id.
        actual: u64,
    },
    /// No contract code at the escrow address.
    #[error(
        "no contract at ESCROW_ADDRESS {0} on this chain (deploy one with `edgent escrow deploy`)"
    )]
    NoEscrow(Address),
    /// The escrow's arbiter (version 4) is not one this daemon trusts to decide disputes.
    #[error("the escrow {escrow}'s arbiter {arbiter} is not in the trusted list {trusted:?}")]
    UntrustedArbiter {
        /// The escrow.
        escrow: Address,
        /// Its arbiter.
        arbiter: Address,
        /// The trusted arbiters.
        trusted: Vec<Address>,
    },
    /// A key is missing or does not parse.
    #[error(transparent)]
    Config(#[from] super::settings::ChainConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;

    #[test]
    fn decodes_custom_errors_and_messages() {
        let data =
            super::super::bindings::EdgentEscrow::ClaimTooEarly { availableAt: 42 }.abi_encode();
        assert_eq!(
            EscrowRevert::decode(&data),
            EscrowRevert::ClaimTooEarly { available_at: 42 }
        );
        let data = alloy::sol_types::Revert {
            reason: "ERC20: nope".into(),
        }
        .abi_encode();
        assert_eq!(
            EscrowRevert::decode(&data),
            EscrowRevert::Message("ERC20: nope".into())
        );
        assert_eq!(
            EscrowRevert::decode(&[1, 2, 3, 4, 5]),
            EscrowRevert::Unknown(FixedBytes::from([1, 2, 3, 4]))
        );
        assert_eq!(EscrowRevert::decode(&[]), EscrowRevert::NoReason);
    }
}
