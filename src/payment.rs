//! The seams where money enters delegation. With `EDGENT_PAYMENTS=off` (a trusted fleet)
//! both sides use [`Unpaid`]; the paid flow ([`crate::paid`]) implements the same traits, so
//! the router and the delegation flows do not change shape when payments are switched on.

use async_trait::async_trait;
use tokio::sync::watch;

use alloy::primitives::Address;

use crate::axl::PeerKey;
use crate::chain::{EscrowError, StakeStatus};
use crate::jobs::{JobError, PaymentRecord};
use crate::protocol::{
    JobId, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, Task, TaskErrorCode, TaskResult,
};
use crate::request::AttemptStake;

/// Why a requester could not lock payment for a job, by cause.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider's ad names no wallet to pay: another provider may do.
    #[error("the provider advertised no wallet")]
    NoProviderWallet,
    /// The provider's price is zero, which the escrow cannot stake: another provider may do.
    #[error("the provider's price is 0; the escrow cannot stake nothing")]
    ZeroPrice,
    /// The chain could not be read (its time, or this wallet's balance); nothing is locked.
    #[error("cannot read the chain: {0}")]
    ChainUnreadable(#[source] EscrowError),
    /// The job store could not record the stake; nothing is locked.
    #[error("cannot record the stake: {0}")]
    Record(#[source] JobError),
    /// The escrow or the token refused the stake (balance, allowance, a revert), or the
    /// authorization could not be signed: nothing is locked.
    #[error("stake failed: {0}")]
    StakeRefused(#[source] EscrowError),
    /// The stake was sent but its outcome is unknown (no receipt, RPC failure): it may still
    /// land, and the payment watcher finds out from the escrow and unwinds it.
    #[error("stake failed: {0}")]
    StakeUncertain(#[source] EscrowError),
}

impl PaymentError {
    /// True when the cause is the chosen provider's ad, so another provider may be staked.
    pub fn is_provider_fault(&self) -> bool {
        matches!(
            self,
            PaymentError::NoProviderWallet | PaymentError::ZeroPrice
        )
    }

    /// True when money may be locked for the job (the watcher settles it either way).
    pub fn may_have_locked(&self) -> bool {
        matches!(self, PaymentError::StakeUncertain(_))
    }
}

/// What a provider's [`ProviderPayments::check_stake`] found, for
/// [`ProviderPayments::take_stake`] once the task holds a slot.
pub enum StakeCheck {
    /// Jobs are not paid here.
    Unpaid,
    /// The stake is on chain, for this provider, enough and long enough: the record to
    /// store with the job.
    Staked(Box<PaymentRecord>),
    /// The requester's authorization, checked offline and funded: this provider submits it
    /// as the stake once the task has a slot.
    Authorized(Box<crate::paid::provider::Authorized>),
}

/// Why a provider refuses a task's stake before any work, by cause; [`StakeRefusal::code`]
/// is the `task_error` code the requester gets.
#[derive(Debug, thiserror::Error)]
pub enum StakeRefusal {
    /// The task carries no stake, and this provider is paid.
    #[error("this provider is paid through the escrow: the task carries no stake")]
    NoStake,
    /// The stake is in another escrow or on another chain.
    #[error(
        "the stake is on chain {chain_id} escrow {escrow}; this provider is paid on chain {our_chain_id} escrow {our_escrow}"
    )]
    OtherEscrow {
        /// The task's chain.
        chain_id: u64,
        /// The task's escrow.
        escrow: String,
        /// This provider's chain.
        our_chain_id: u64,
        /// This provider's escrow.
        our_escrow: String,
    },
    /// The chain could not be read to check the stake (the requester may retry).
    #[error("the stake could not be read from the escrow: {0}")]
    ChainUnreadable(#[source] EscrowError),
    /// The escrow holds no stake for the job.
    #[error("the escrow holds no stake for this job")]
    NotStaked,
    /// The stake has already ended (or been submitted).
    #[error("the stake is already {0}")]
    NotOpen(StakeStatus),
    /// The stake pays another provider.
    #[error("the stake pays {0:#x}, not this provider")]
    OtherProvider(Address),
    /// The stake names another provider key (its commitment): the escrow would refuse this
    /// node's proof at `submit`.
    #[error("the stake names provider key commitment {0}, not this node's")]
    OtherKey(alloy::primitives::B256),
    /// The task's deadline is nearer than a stake takes to land: no stake is made.
    #[error("the task's deadline is {left_ms} ms away and a stake takes up to {wait_ms} ms to land here: no stake was made")]
    LandsTooLate {
        /// Milliseconds until the task's deadline.
        left_ms: u64,
        /// How long this provider's recent transactions waited for a receipt, at most.
        wait_ms: u64,
    },
    /// The stake is below this provider's price.
    #[error("the stake is {amount} base units; the price is {price}")]
    TooSmall {
        /// Staked, base units.
        amount: u64,
        /// This provider's price, base units.
        price: u64,
    },
    /// The stake ends too soon for the task's time plus the time to be paid.
    #[error(
        "the stake ends in {stake_left} s; this provider needs {needed} s (the task's time, then {grace_secs} s to be paid or submit)"
    )]
    EndsTooSoon {
        /// Seconds until the stake's deadline.
        stake_left: u64,
        /// Seconds this provider needs.
        needed: u64,
        /// `PAYMENT_GRACE_SECS`.
        grace_secs: u64,
    },
    /// The authorization expires or the stake it makes ends too soon.
    #[error(
        "the stake ends in {stake_left} s (authorization valid until {valid_before}); this provider needs {needed} s"
    )]
    AuthorizationEndsTooSoon {
        /// Seconds until the stake's deadline.
        stake_left: u64,
        /// The authorization's `validBefore`, unix seconds.
        valid_before: u64,
        /// Seconds this provider needs.
        needed: u64,
    },
    /// The token's EIP-712 domain cannot be read, so authorizations cannot be checked.
    #[error("this provider cannot take stake authorizations: {0}")]
    NoAuthorizations(#[source] EscrowError),
    /// The authorization is malformed or not signed for these terms (checked offline).
    #[error(transparent)]
    Authorization(#[from] crate::paid::AuthorizationRefused),
    /// Submitting the authorization as the stake failed.
    #[error("the stake could not be made: {0}")]
    StakeFailed(#[source] EscrowError),
    /// The authorization's signer holds less USDC than it authorizes (checked before the
    /// task takes a slot, so an empty wallet's signatures cost no transaction).
    #[error("the authorization's signer holds {balance} USDC base units; the stake is {needed}")]
    Unfunded {
        /// The signer's balance.
        balance: alloy::primitives::U256,
        /// The stake's amount.
        needed: alloy::primitives::U256,
    },
    /// The peer has spent its budget of unpaid tasks: refused without asking the chain.
    #[error(transparent)]
    OverBudget(#[from] crate::paid::gate::OverBudget),
    /// This node takes no stake authorizations.
    #[error("this provider takes no stake authorizations")]
    AuthorizationsUnsupported,
}

impl StakeRefusal {
    /// True when the chain, not the task, failed: the peer's budget is not charged for it.
    pub fn is_ours(&self) -> bool {
        matches!(
            self,
            StakeRefusal::ChainUnreadable(_)
                | StakeRefusal::NoAuthorizations(_)
                | StakeRefusal::AuthorizationsUnsupported
        )
    }

    /// The `task_error` code for this refusal.
    pub fn code(&self) -> TaskErrorCode {
        match self {
            StakeRefusal::OtherProvider(_)
            | StakeRefusal::OtherKey(_)
            | StakeRefusal::TooSmall { .. } => TaskErrorCode::StakeInsufficient,
            StakeRefusal::EndsTooSoon { .. }
            | StakeRefusal::AuthorizationEndsTooSoon { .. }
            | StakeRefusal::LandsTooLate { .. } => TaskErrorCode::DeadlineTooClose,
            StakeRefusal::NoStake
            | StakeRefusal::OtherEscrow { .. }
            | StakeRefusal::ChainUnreadable(_)
            | StakeRefusal::NotStaked
            | StakeRefusal::NotOpen(_)
            | StakeRefusal::NoAuthorizations(_)
            | StakeRefusal::Authorization(_)
            | StakeRefusal::StakeFailed(_)
            | StakeRefusal::Unfunded { .. }
            | StakeRefusal::OverBudget(_)
            | StakeRefusal::AuthorizationsUnsupported => TaskErrorCode::StakeMissing,
        }
    }
}

/// How far a paid job's money has come, as the delegation waiting on it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayProgress {
    /// Waiting for the result and its proof.
    Waiting,
    /// The proof checked; the release is under way.
    Verified,
    /// The proof or the payment request failed the checks; no money moves to the provider.
    Invalid(String),
    /// The stake ended (released, or otherwise when the chain says so).
    Settled,
    /// The release failed for now; the payment watcher retries.
    SettleFailed(String),
}

/// What a requester does about money.
#[async_trait]
pub trait RequesterPayments: Send + Sync + 'static {
    /// Whether jobs are paid (ads without a wallet are then skipped).
    fn paid(&self) -> bool;
    /// Lock payment for `job_id` with the chosen provider before the task is sent;
    /// `None` when jobs are not paid. `deadline_ms` is when the agent stops waiting.
    async fn stake(
        &self,
        job_id: &JobId,
        ad: &ResourceAd,
        deadline_ms: u64,
    ) -> Result<Option<StakeRef>, PaymentError>;
    /// The job's result is recorded: start verifying once its proof is here. Returns the
    /// progress to wait on, or `None` when the job is not paid.
    async fn on_result(&self, job_id: &JobId) -> Option<watch::Receiver<PayProgress>>;
    /// A result that no delegation waits for (after a timeout or a restart). Returns
    /// whether it was taken.
    async fn on_late_result(&self, from: &PeerKey, result: TaskResult) -> bool;
    /// A provider asks to be paid for a job.
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest);
    /// How many times a provider's proof has failed here (it is ranked down).
    fn disputes(&self, provider: &PeerKey) -> u32;
    /// A paid attempt under `job_id` failed (its provider declined, failed, died or never
    /// answered): read what became of its stake from the chain, record it, and say it for
    /// the answer's `attempts`. `None` when jobs are not paid.
    async fn attempt_failed(&self, _job_id: &JobId) -> Option<AttemptStake> {
        None
    }
    /// How long a stake this node sends itself (`STAKE_MODE=approve`) may take to land,
    /// when known: no stake is sent with less time left before the agent's deadline.
    /// `None` when the provider submits the stake, or nothing is measured yet.
    fn own_stake_wait(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What a provider does about money.
#[async_trait]
pub trait ProviderPayments: Send + Sync + 'static {
    /// The wallet advertised in resource ads.
    fn wallet(&self) -> Option<String>;
    /// Check that the task from `from` is paid for, before it takes a job slot or a place
    /// in the queue: everything but moving money, at a bounded cost per peer (a paid
    /// provider's [`crate::paid::gate`]). A refusal is answered with its code.
    async fn check_stake(&self, from: &PeerKey, task: &Task) -> Result<StakeCheck, StakeRefusal>;
    /// Once the task holds a slot: make the stake an authorization asks for (money moves
    /// only here, so a busy provider never moves it), and give the payment record to store
    /// with the job (`None` when jobs are not paid).
    async fn take_stake(
        &self,
        _from: &PeerKey,
        _task: &Task,
        check: StakeCheck,
    ) -> Result<Option<PaymentRecord>, StakeRefusal> {
        match check {
            StakeCheck::Unpaid => Ok(None),
            StakeCheck::Staked(p) => Ok(Some(*p)),
            StakeCheck::Authorized(_) => Err(StakeRefusal::AuthorizationsUnsupported),
        }
    }
    /// The result was delivered: prove it and ask for payment.
    async fn after_delivery(&self, requester: &PeerKey, task: &Task, output: &str);
    /// The task was accepted (its stake checked or made) but cannot be served after all
    /// (inference failed, model gone, busy, cancelled): give the requester its money back
    /// now (the escrow's `decline`) instead of at the deadline. `reason` is for the log.
    async fn decline(&self, _task: &Task, _reason: &str) {}
    /// The requester says it paid.
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed);
}

/// Payments switched off: nothing is staked, checked, proved or paid.
#[derive(Debug, Default, Clone)]
pub struct Unpaid;

#[async_trait]
impl RequesterPayments for Unpaid {
    fn paid(&self) -> bool {
        false
    }
    async fn stake(
        &self,
        _: &JobId,
        _: &ResourceAd,
        _: u64,
    ) -> Result<Option<StakeRef>, PaymentError> {
        Ok(None)
    }
    async fn on_result(&self, _: &JobId) -> Option<watch::Receiver<PayProgress>> {
        None
    }
    async fn on_late_result(&self, _: &PeerKey, _: TaskResult) -> bool {
        false
    }
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest) {
        tracing::warn!(from = %from.short(), job = %req.job_id, "payment_request ignored: payments are off");
    }
    fn disputes(&self, _: &PeerKey) -> u32 {
        0
    }
}

#[async_trait]
impl ProviderPayments for Unpaid {
    fn wallet(&self) -> Option<String> {
        None
    }
    async fn check_stake(&self, _: &PeerKey, _: &Task) -> Result<StakeCheck, StakeRefusal> {
        Ok(StakeCheck::Unpaid)
    }
    async fn after_delivery(&self, _: &PeerKey, _: &Task, _: &str) {}
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        tracing::warn!(from = %from.short(), job = %msg.job_id, "payment_confirmed ignored: payments are off");
    }
}

/// How long `/status` reuses the wallet's balances before reading them again, so polling
/// the dashboard does not turn into RPC calls.
const BALANCES_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether this daemon's jobs are paid, and why not when they are not: what `/status` and
/// the dashboard show as `payments`. Under `EDGENT_PAYMENTS=auto` it can turn active while
/// the daemon runs (see [`crate::payment_switch`]).
pub struct PaymentsStatus {
    /// `EDGENT_PAYMENTS` as set.
    pub mode: crate::config::PaymentsMode,
    state: std::sync::RwLock<StatusState>,
    cache: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
}

#[derive(Clone, Default)]
struct StatusState {
    active: bool,
    reason: Option<String>,
    retrying: bool,
    chain: Option<std::sync::Arc<crate::paid::Chain>>,
}

impl PaymentsStatus {
    /// Payments active through `chain`.
    pub fn active(
        mode: crate::config::PaymentsMode,
        chain: std::sync::Arc<crate::paid::Chain>,
    ) -> PaymentsStatus {
        let s = Self::inactive(mode, None);
        s.activate(chain);
        s
    }

    /// Payments off (`reason` says why when they were wanted).
    pub fn inactive(mode: crate::config::PaymentsMode, reason: Option<String>) -> PaymentsStatus {
        PaymentsStatus {
            mode,
            state: std::sync::RwLock::new(StatusState {
                reason,
                ..Default::default()
            }),
            cache: Default::default(),
        }
    }

    fn state(&self) -> StatusState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut StatusState)) {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Whether jobs are paid now.
    pub fn is_active(&self) -> bool {
        self.state().active
    }

    /// Why payments are off, when they were wanted.
    pub fn reason(&self) -> Option<String> {
        self.state().reason
    }

    /// Payments became active through `chain` (the reason is cleared).
    pub fn activate(&self, chain: std::sync::Arc<crate::paid::Chain>) {
        self.update(|s| {
            *s = StatusState {
                active: true,
                reason: None,
                retrying: false,
                chain: Some(chain),
            }
        });
    }

    /// Still unpaid: `reason` is the latest cause, and `retrying` whether the paid setup is
    /// being tried again.
    pub fn set_unpaid(&self, reason: String, retrying: bool) {
        self.update(|s| {
            s.reason = Some(reason);
            s.retrying = retrying;
        });
    }

    /// `{mode, active, reason, retrying, wallet, balances, balances_error}`; balances are
    /// read at most every ten seconds.
    pub async fn snapshot(&self) -> serde_json::Value {
        let state = self.state();
        let mut out = serde_json::json!({
            "mode": self.mode.as_str(),
            "active": state.active,
            "reason": state.reason,
            "retrying": state.retrying,
        });
        let Some(chain) = &state.chain else {
            return out;
        };
        out["wallet"] = serde_json::json!(format!("{:#x}", chain.wallet));
        out["escrow"] = serde_json::json!(chain.escrow_hex());
        out["chain_id"] = serde_json::json!(chain.settings.chain_id);
        let mut cache = self.cache.lock().await;
        if let Some((at, v)) = cache.as_ref() {
            if at.elapsed() < BALANCES_TTL {
                out["balances"] = v.clone();
                return out;
            }
        }
        match crate::chain::wallet::balances(
            chain.escrow.provider(),
            chain.escrow.usdc_address(),
            chain.wallet,
        )
        .await
        {
            Ok(b) => {
                let v = serde_json::json!(b.view());
                *cache = Some((std::time::Instant::now(), v.clone()));
                out["balances"] = v;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the wallet's balances");
                out["balances_error"] = serde_json::json!(e.to_string());
            }
        }
        out
    }
}
