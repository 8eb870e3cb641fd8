//! The seams where money enters delegation. With `EDGENT_PAYMENTS=off` (a trusted fleet)
//! both sides use [`Unpaid`]; the paid flow ([`super::PaidRequester`],
//! [`super::PaidProvider`]) implements the same traits, so the router and the delegation
//! flows do not change shape when payments are switched on.
//!
//! The requester calls its side at three fixed points of each attempt: [`RequesterPayments::begin`]
//! before the task is sent, [`RequesterPayments::end`] when the attempt failed, and
//! [`RequesterPayments::settle`] once a provider answered.

use std::time::Instant;

use async_trait::async_trait;

use alloy::primitives::Address;

use crate::axl::PeerKey;
use crate::chain::{EscrowError, FairStatus, StakeAuthorization};
use crate::jobs::{JobError, JobRecord, PaymentRecord};
use crate::protocol::{
    JobId, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, Task, TaskErrorCode, TaskResult,
};
use crate::request::AttemptOutcome;
use crate::request::{AttemptStake, DelegateError, ValidRequest, WaitFor};

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
    /// The agent's deadline is nearer than a stake this node sends takes to land: no stake
    /// is made.
    #[error("the deadline is closer than a stake takes to land ({wait_ms} ms): no stake was made")]
    LandsTooLate {
        /// How long this node's recent stakes took to land, at most.
        wait_ms: u64,
    },
    /// The failed-over attempt's fresh job could not be recorded; nothing is locked.
    #[error("{0}")]
    NewJob(#[source] JobError),
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

impl From<PaymentError> for DelegateError {
    /// What the agent is told when a delegation ends on a payment error: a stake that would
    /// land too late is the deadline's fault, a job that could not be recorded ours, and
    /// the rest a failed payment (402).
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::LandsTooLate { .. } => DelegateError::Deadline(e.to_string()),
            PaymentError::NewJob(e) => DelegateError::Internal(e.to_string()),
            e => DelegateError::Payment(e.to_string()),
        }
    }
}

/// Where one attempt of a delegation starts, for [`RequesterPayments::begin`].
pub struct Begin<'a> {
    /// The job id the delegation runs under now.
    pub job_id: JobId,
    /// Whether an attempt already ran under `job_id` (a paid attempt then needs a fresh
    /// job id: a stake names one job and one provider).
    pub tried: bool,
    /// The chosen provider's ad.
    pub ad: &'a ResourceAd,
    /// The agent's request.
    pub req: &'a ValidRequest,
    /// When the agent stops waiting.
    pub deadline: Instant,
    /// The same, unix milliseconds.
    pub deadline_ms: u64,
    /// How long discovery took, for a fresh job's record.
    pub discover_ms: u64,
}

/// What [`RequesterPayments::begin`] made of an attempt.
#[derive(Debug)]
pub struct Begun {
    /// The job id the attempt runs under.
    pub job_id: JobId,
    /// The stake the task carries; `None` when jobs are not paid.
    pub stake: Option<StakeRef>,
}

/// Why [`RequesterPayments::begin`] failed, and the job id the delegation runs under since.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BeginError {
    /// The job id the delegation runs under (a fresh one when the failover was recorded).
    pub job_id: JobId,
    /// The cause.
    #[source]
    pub error: PaymentError,
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
    Authorized(Box<Authorized>),
}

/// A task's stake authorization, checked offline, funded and its nonce unused, that this
/// provider submits as the stake once the task holds a slot ([`super::prestart`]).
pub struct Authorized {
    pub(crate) auth: StakeAuthorization,
    pub(crate) units: u64,
}

/// Why a task is refused at the gate ([`super::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many unpaid tasks from this node: its budget of {burst} refills at {per_min} a minute"
)]
pub struct OverBudget {
    /// `PEER_UNSTAKED_BURST`.
    pub burst: u32,
    /// `PEER_UNSTAKED_PER_MIN`.
    pub per_min: u32,
}

/// What [`ProviderPayments::take_stake`] gives the job once it holds a slot.
pub struct Taken {
    /// The payment record to store with the job; `None` when jobs are not paid.
    pub payment: Option<PaymentRecord>,
    /// A stake still to land ([`super::prestart`]): the job may run meanwhile, its output
    /// may not leave before the stake is mined.
    pub landing: Option<super::landing::Prestart>,
}

impl Taken {
    /// A job whose stake, if any, is on chain already.
    pub fn staked(payment: Option<PaymentRecord>) -> Self {
        Taken {
            payment,
            landing: None,
        }
    }
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
    NotOpen(FairStatus),
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
    Authorization(#[from] super::AuthorizationRefused),
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
    /// The authorization's nonce is used or cancelled already (read before any work): it
    /// can never land.
    #[error("the stake authorization's nonce is already used or cancelled")]
    AuthorizationUsed,
    /// The peer has spent its budget of unpaid tasks: refused without asking the chain.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// This node takes no stake authorizations.
    #[error("this provider takes no stake authorizations")]
    AuthorizationsUnsupported,
    /// A stake the requester sent itself (`tx`) is not bound to the task's sender by the
    /// stake's requester (docs/threat-model.md, rule 2): anyone who read the job id on
    /// chain could have sent this task.
    #[error("the stake is not bound to the node that sent this task: {0}")]
    Unbound(&'static str),
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
            | StakeRefusal::AuthorizationUsed
            | StakeRefusal::OverBudget(_)
            | StakeRefusal::AuthorizationsUnsupported
            | StakeRefusal::Unbound(_) => TaskErrorCode::StakeMissing,
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

/// What a requester does about money: three fixed points of each attempt, and the
/// messages about money the router hands it.
#[async_trait]
pub trait RequesterPayments: Send + Sync + 'static {
    /// Whether jobs are paid (ads without a wallet are then skipped).
    fn paid(&self) -> bool;
    /// Before the task is sent to the chosen provider: the job id the attempt runs under
    /// (a fresh one for a paid failover, the failed attempt's record pointing to it) and
    /// the stake locked for it. A [`PaymentError::is_provider_fault`] error means the next
    /// provider may be tried.
    async fn begin(&self, attempt: &Begin<'_>) -> Result<Begun, BeginError>;
    /// The attempt under `job_id` at `provider` failed with `outcome`: tell a provider that
    /// may only look dead to stop, read what became of the stake from the chain, record it,
    /// and say it for the answer's `attempts`. `None` when jobs are not paid.
    async fn end(
        &self,
        job_id: &JobId,
        provider: &PeerKey,
        outcome: AttemptOutcome,
    ) -> Option<AttemptStake>;
    /// The job's result is recorded: wait until its proof checks (or, with
    /// [`WaitFor::Settled`], the stake is released), then give the job's record. `None`
    /// when jobs are not paid.
    async fn settle(
        &self,
        job_id: &JobId,
        wait: WaitFor,
        deadline: Instant,
    ) -> Result<Option<JobRecord>, DelegateError>;
    /// A result that no delegation waits for (after a timeout or a restart). Returns
    /// whether it was taken.
    async fn on_late_result(&self, from: &PeerKey, result: TaskResult) -> bool;
    /// A provider asks to be paid for a job.
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest);
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
    /// Once the task holds a slot: give the payment record to store with the job and, for
    /// an authorization, the stake to land while the job runs (money moves only then, so a
    /// busy provider never moves it).
    async fn take_stake(
        &self,
        from: &PeerKey,
        task: &Task,
        check: StakeCheck,
    ) -> Result<Taken, StakeRefusal>;
    /// The result was delivered: prove it and ask for payment.
    async fn after_delivery(&self, requester: &PeerKey, task: &Task, output: &str);
    /// The task was accepted (its stake checked or made) but cannot be served after all
    /// (inference failed, model gone, busy, cancelled): give the requester its money back
    /// now (the escrow's `decline`) instead of at the deadline. `reason` is for the log.
    async fn decline(&self, task: &Task, reason: &str);
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
    async fn begin(&self, attempt: &Begin<'_>) -> Result<Begun, BeginError> {
        Ok(Begun {
            job_id: attempt.job_id,
            stake: None,
        })
    }
    async fn end(&self, _: &JobId, _: &PeerKey, _: AttemptOutcome) -> Option<AttemptStake> {
        None
    }
    async fn settle(
        &self,
        _: &JobId,
        _: WaitFor,
        _: Instant,
    ) -> Result<Option<JobRecord>, DelegateError> {
        Ok(None)
    }
    async fn on_late_result(&self, _: &PeerKey, _: TaskResult) -> bool {
        false
    }
    async fn on_payment_request(&self, from: &PeerKey, req: PaymentRequest) {
        tracing::warn!(from = %from.short(), job = %req.job_id, "payment_request ignored: payments are off");
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
    async fn take_stake(
        &self,
        _: &PeerKey,
        _: &Task,
        check: StakeCheck,
    ) -> Result<Taken, StakeRefusal> {
        match check {
            StakeCheck::Unpaid => Ok(Taken::staked(None)),
            StakeCheck::Staked(p) => Ok(Taken::staked(Some(*p))),
            StakeCheck::Authorized(_) => Err(StakeRefusal::AuthorizationsUnsupported),
        }
    }
    async fn after_delivery(&self, _: &PeerKey, _: &Task, _: &str) {}
    async fn decline(&self, _: &Task, _: &str) {}
    async fn on_payment_confirmed(&self, from: &PeerKey, msg: PaymentConfirmed) {
        tracing::warn!(from = %from.short(), job = %msg.job_id, "payment_confirmed ignored: payments are off");
    }
}
