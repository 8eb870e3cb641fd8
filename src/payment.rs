//! The seams where money enters delegation. With `EDGENT_PAYMENTS=off` (a trusted fleet)
//! both sides use [`Unpaid`]; the paid flow ([`crate::paid`]) implements the same traits, so
//! the router and the delegation flows do not change shape when payments are switched on.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::axl::PeerKey;
use crate::jobs::PaymentRecord;
use crate::protocol::{
    JobId, PaymentConfirmed, PaymentRequest, ResourceAd, StakeRef, Task, TaskErrorCode, TaskResult,
};

/// A payment step that did not work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PaymentError(pub String);

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
}

/// What a provider does about money.
#[async_trait]
pub trait ProviderPayments: Send + Sync + 'static {
    /// The wallet advertised in resource ads.
    fn wallet(&self) -> Option<String>;
    /// Check the task is paid for before any work; an error code refuses it. The
    /// returned record is stored with the job.
    async fn check_stake(
        &self,
        task: &Task,
    ) -> Result<Option<PaymentRecord>, (TaskErrorCode, String)>;
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
    async fn check_stake(
        &self,
        _: &Task,
    ) -> Result<Option<PaymentRecord>, (TaskErrorCode, String)> {
        Ok(None)
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
