//! The paid flow (issue 5): stake, prove, x402 `payment_request` over AXL, verify, settle,
//! and every stake ending safely, even across crashes.
//!
//! - [`requester`]: [`PaidRequester`] stakes before the task, keeps the output until the
//!   proof arrives, verifies it, and releases the stake with its own wallet (escrow v4), or
//!   disputes the provider's submit, with the [`evidence`], when the check fails.
//! - [`provider`]: [`PaidProvider`] checks the stake before any work, proves the output after
//!   delivering it, and asks to be paid.
//! - [`prestart`]: a provider holding a valid authorization starts the job at once and
//!   lands the stake meanwhile; no output leaves before the stake is mined, and a stake
//!   that never lands cancels the job; [`landing`] the handle its output gate waits on.
//! - [`x402`]: the x402 v2 `PaymentRequired` and `SettleResponse` (scheme `auth-capture`,
//!   payment flow `escrow`), built and checked with typed refusals.
//! - [`watch`]: the timers both sides drive from the persisted job table: refund, dispute,
//!   submit, finalize, and resuming whatever a restart interrupted.
//! - [`busy`]: the jobs with a money step under way, so two steps never act on one job
//!   at once (a step that must act waits its turn).
//! - [`evidence`]: what a dispute carries to the arbiter (the task's and the result's hashes).
//! - [`reconcile`]: at start, the open stakes of this wallet found in the escrow's `Staked`
//!   events that the job table lost, ended properly.
//! - [`job_end`]: how a job whose stake the provider accepted ended, for the watcher:
//!   prove, decline, or leave to the requester's refund.
//! - [`gate`]: the provider's per-peer budget of unpaid tasks and its cache of stake reads,
//!   so a flood of unstaked tasks costs neither RPC calls nor job slots.
//! - [`verify`]: the checks of a provider's `payment_request` before money moves.
//! - [`seams`]: the traits the requester, provider and router call ([`Unpaid`] when
//!   payments are off), [`switch`] the handle that says which side is in use, [`status`]
//!   what `/status` shows, and [`setup`] how the daemon decides and starts the paid flow.
//!
//! The chain is the source of truth: before any money step the stake is read back with
//! `getStake`, so a retried or resumed step never pays twice or pays after a refund.

pub mod busy;
pub mod evidence;
pub mod gate;
mod job_end;
pub mod landing;
pub mod prestart;
pub mod provider;
pub mod reconcile;
pub mod requester;
pub mod seams;
pub mod setup;
pub mod status;
pub mod switch;
pub mod verify;
pub mod watch;
pub mod x402;

use alloy::primitives::{Address, TxHash, B256};
use alloy::providers::Provider;

use crate::chain::escrow_code::{check_escrow, EscrowCodeError};
use crate::chain::{
    ChainConfigError, ChainError, ChainSettings, EscrowClient, FairEscrow, FairStatus,
    StakeAuthorization,
};
use crate::jobs::PayStatus;
use crate::protocol::{self, JobId};

pub use busy::{Busy, BusyGuard};
pub use provider::PaidProvider;
pub use requester::PaidRequester;
pub use seams::{
    Begin, BeginError, Begun, PayProgress, PaymentError, ProviderPayments, RequesterPayments,
    StakeCheck, StakeRefusal, Taken, Unpaid,
};
pub use status::PaymentsStatus;
pub use switch::PaymentSwitch;

/// The chain as this node uses it: the escrow (version 4) signing with its wallet.
pub struct Chain {
    /// Escrow client signing with `WALLET_PRIVATE_KEY`: stakes, reads, submit, decline,
    /// refund (the calls version 4 shares with version 3).
    pub escrow: EscrowClient,
    /// The same escrow through version 4's own calls: release (the requester's), dispute,
    /// finalize, and stakes read with version 4's states.
    pub fair: FairEscrow,
    /// The deployment's one timing setting, seconds (`disputeWindow()`): the dispute window
    /// after a submit, the delay before `finalize`, and the margin a stake's deadline adds
    /// to its job's.
    pub dispute_window: u64,
    /// The account that decides disputes (`arbiter()`).
    pub arbiter: Address,
    /// The settings it was made from.
    pub settings: ChainSettings,
    /// This node's wallet.
    pub wallet: Address,
}

/// Why the paid flow cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsSetupError {
    /// A chain setting or key is missing or malformed.
    #[error(transparent)]
    Settings(#[from] ChainConfigError),
    /// The contract at `ESCROW_ADDRESS` is not this repository's escrow.
    #[error(transparent)]
    EscrowCode(#[from] EscrowCodeError),
    /// A provider does not trust the escrow's arbiter (`TRUSTED_ARBITERS`): it does no paid
    /// work there.
    #[error(
        "no paid work on this escrow: {0}. Set TRUSTED_ARBITERS to the arbiter you trust to \
         decide disputes (the deployment's operator: its KeeperHub wallet or the address of \
         OPERATOR_PRIVATE_KEY)"
    )]
    UntrustedArbiter(ChainError),
    /// The escrow's dispute window leaves a provider no time to submit before a stake's
    /// deadline.
    #[error(
        "the escrow's dispute window ({window_s} s) must exceed PAYMENT_GRACE_SECS + {margin_s} s \
         ({grace_s} s + {margin_s} s): it is also the margin of a stake's deadline, within which \
         a provider submits"
    )]
    WindowTooShort {
        /// `disputeWindow()`.
        window_s: u64,
        /// `PAYMENT_GRACE_SECS`.
        grace_s: u64,
        /// What a provider keeps in hand to submit.
        margin_s: u64,
    },
    /// The chain, the escrow or the settler could not be reached or is wrong.
    #[error("{what}: {source}")]
    Chain {
        /// Which part, named by its settings.
        what: String,
        /// The cause.
        #[source]
        source: ChainError,
    },
    /// The binary cannot prove, so it cannot be a paid provider.
    #[error(
        "this edgent was built without the `prover` feature, so it cannot prove its paid \
         jobs: set EDGENT_ROLE=requester, or EDGENT_PAYMENTS=off, or rebuild with the \
         default features"
    )]
    NoProver,
}

impl PaymentsSetupError {
    /// True when trying again later may succeed (an RPC endpoint failed); false when the
    /// setup itself is wrong and only a change of settings helps.
    pub fn is_transient(&self) -> bool {
        match self {
            PaymentsSetupError::EscrowCode(e) => e.is_transient(),
            PaymentsSetupError::Chain { source, .. } => matches!(source, ChainError::Rpc(_)),
            PaymentsSetupError::Settings(_)
            | PaymentsSetupError::NoProver
            | PaymentsSetupError::UntrustedArbiter(_)
            | PaymentsSetupError::WindowTooShort { .. } => false,
        }
    }

    fn chain(what: impl Into<String>) -> impl FnOnce(ChainError) -> PaymentsSetupError {
        let what = what.into();
        move |source| match source {
            ChainError::Config(c) => PaymentsSetupError::Settings(c),
            source => PaymentsSetupError::Chain { what, source },
        }
    }
}

impl Chain {
    /// Connect with the node's wallet; fails when the RPC, chain id or escrow is wrong,
    /// including an escrow of another ABI (see [`crate::chain::escrow_code`]).
    pub async fn connect(settings: &ChainSettings) -> Result<Chain, PaymentsSetupError> {
        let signer = settings.wallet_signer()?;
        let wallet = signer.address();
        let at = format!("CHAIN_RPC_URL {}", settings.rpc_url);
        let reader = crate::chain::http_provider(&settings.rpc_url, None)
            .map_err(PaymentsSetupError::chain(at.clone()))?;
        let actual = reader
            .get_chain_id()
            .await
            .map_err(|e| PaymentsSetupError::Chain {
                what: at.clone(),
                source: ChainError::Rpc(e.to_string()),
            })?;
        if actual != settings.chain_id {
            return Err(PaymentsSetupError::Chain {
                what: at,
                source: ChainError::WrongChain {
                    expected: settings.chain_id,
                    actual,
                },
            });
        }
        check_escrow(&reader, settings.escrow).await?;
        let escrow = EscrowClient::connect(settings, Some(signer))
            .await
            .map_err(PaymentsSetupError::chain(format!(
                "escrow {} on chain {} at CHAIN_RPC_URL {}",
                settings.escrow, settings.chain_id, settings.rpc_url
            )))?;
        let fair = FairEscrow::new(escrow.clone());
        let what = format!("escrow {} (version 4)", settings.escrow);
        let (arbiter, dispute_window) = tokio::try_join!(fair.arbiter(), fair.dispute_window())
            .map_err(|e| PaymentsSetupError::Chain {
                what,
                source: ChainError::Rpc(e.to_string()),
            })?;
        Ok(Chain {
            escrow,
            fair,
            dispute_window,
            arbiter,
            settings: settings.clone(),
            wallet,
        })
    }

    /// A provider's check at start: the escrow's arbiter must be in `TRUSTED_ARBITERS`, and
    /// its dispute window must leave time to submit after `grace`.
    pub fn check_for_provider(&self, grace_s: u64) -> Result<(), PaymentsSetupError> {
        let trusted = &self.settings.trusted_arbiters;
        if !trusted.contains(&self.arbiter) {
            return Err(PaymentsSetupError::UntrustedArbiter(
                ChainError::UntrustedArbiter {
                    escrow: self.escrow.escrow_address(),
                    arbiter: self.arbiter,
                    trusted: trusted.clone(),
                },
            ));
        }
        let margin_s = provider::SUBMIT_MARGIN_SECS;
        if self.dispute_window <= grace_s + margin_s {
            return Err(PaymentsSetupError::WindowTooShort {
                window_s: self.dispute_window,
                grace_s,
                margin_s,
            });
        }
        Ok(())
    }

    /// The escrow's address as `0x` + 40 lower-case hex.
    pub fn escrow_hex(&self) -> String {
        format!("{:#x}", self.escrow.escrow_address())
    }

    /// The transaction that ended `job`'s stake, from the last 10,000 blocks' events
    /// (`None` when none is in range or the read failed).
    pub async fn settlement_tx(&self, job: &JobId) -> Option<TxHash> {
        let found = self.fair.settlement_tx(job_b256(job), 10_000).await;
        found.ok().flatten()
    }

    /// Records `tx` and its explorer link as `pay`'s settling transaction, unless one is
    /// recorded already.
    pub fn note_settlement(&self, pay: &mut crate::jobs::PaymentRecord, tx: Option<TxHash>) {
        if pay.tx_hash.is_none() {
            pay.tx_hash = tx.map(|h| format!("{h:#x}"));
            pay.explorer_url = tx.map(|h| self.escrow.tx_url(h));
        }
    }
}

/// The escrow's `bytes32` for a job.
pub fn job_b256(job: &JobId) -> B256 {
    B256::from(job.0)
}

/// Parse a `0x` + 64 hex string (a commitment) into a `bytes32`.
pub fn parse_b256(s: &str) -> Option<B256> {
    s.parse().ok()
}

/// The wire form of a signed stake authorization (for a task's `StakeRef`).
pub fn authorization_to_wire(auth: &StakeAuthorization) -> protocol::StakeAuthorization {
    protocol::StakeAuthorization {
        from: format!("{:#x}", auth.requester),
        stake_deadline: auth.deadline,
        valid_after: auth.valid_after,
        valid_before: auth.valid_before,
        nonce: format!("{:#x}", auth.nonce()),
        signature: format!("0x{}", alloy::hex::encode(auth.signature_bytes())),
    }
}

/// Why a task's stake authorization is refused before anything is sent to the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationRefused {
    /// `from` is not an address.
    #[error("authorization.from {0:?} is not an address")]
    BadFrom(String),
    /// The amount is not a decimal number of base units.
    #[error("stake amount {0:?} is not a number of base units")]
    BadAmount(String),
    /// The signature is not 65 bytes of hex with v 27/28.
    #[error("the authorization's signature is malformed")]
    BadSignature,
    /// The nonce sent is not the escrow's `stakeNonce` of these terms.
    #[error(
        "the authorization's nonce does not bind this job, provider, provider key, amount and deadline"
    )]
    NonceMismatch,
    /// The signature does not recover to `from` for these terms.
    #[error("the authorization is not signed by {0:#x} for these terms")]
    WrongSigner(Address),
}

/// The stake a task's authorization asks this provider (`provider`, whose AXL key commits to
/// `key_commitment`) to submit, checked offline: the nonce is recomputed from the terms, and,
/// with the token's `domain`, the signature must recover to `from` (so a forged authorization
/// costs no RPC call).
pub fn authorization_from_wire(
    job: &JobId,
    provider: Address,
    key_commitment: B256,
    amount: &str,
    wire: &protocol::StakeAuthorization,
    escrow: Address,
    domain: Option<&alloy::dyn_abi::Eip712Domain>,
) -> Result<StakeAuthorization, AuthorizationRefused> {
    let requester: Address = wire
        .from
        .parse()
        .map_err(|_| AuthorizationRefused::BadFrom(wire.from.clone()))?;
    let amount: alloy::primitives::U256 = amount
        .parse()
        .map_err(|_| AuthorizationRefused::BadAmount(amount.to_string()))?;
    let bytes = alloy::hex::decode(wire.signature.trim_start_matches("0x"))
        .map_err(|_| AuthorizationRefused::BadSignature)?;
    let signature = alloy::primitives::Signature::from_raw(&bytes)
        .map_err(|_| AuthorizationRefused::BadSignature)?;
    let auth = StakeAuthorization {
        job_id: job_b256(job),
        requester,
        provider,
        key_commitment,
        amount,
        deadline: wire.stake_deadline,
        valid_after: wire.valid_after,
        valid_before: wire.valid_before,
        signature,
    };
    if parse_b256(&wire.nonce) != Some(auth.nonce()) {
        return Err(AuthorizationRefused::NonceMismatch);
    }
    if let Some(domain) = domain {
        if auth.signer(escrow, domain) != Some(requester) {
            return Err(AuthorizationRefused::WrongSigner(requester));
        }
    }
    Ok(auth)
}

/// The payment status a final on-chain stake status (version 4) means: `released` when
/// the requester or the arbiter paid the provider, `claimed` when anyone finalized an
/// undisputed submit after the window, `rejected` when the arbiter refunded the requester,
/// `refunded` after the deadline or the provider's decline.
pub fn final_status(s: FairStatus) -> Option<PayStatus> {
    match s {
        FairStatus::Released | FairStatus::ResolvedPaid => Some(PayStatus::Released),
        FairStatus::Finalized => Some(PayStatus::Claimed),
        FairStatus::ResolvedRefunded => Some(PayStatus::Rejected),
        // The provider's decline refunds the requester, as a refund after the deadline does.
        FairStatus::Refunded | FairStatus::Declined => Some(PayStatus::Refunded),
        _ => None,
    }
}
