//! Whether this daemon's jobs are paid, for `/status` and the dashboard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::Chain;
use crate::config::PaymentsMode;

/// How long `/status` reuses the wallet's balances before reading them again, so polling
/// the dashboard does not turn into RPC calls.
const BALANCES_TTL: Duration = Duration::from_secs(10);

/// Whether this daemon's jobs are paid, and why not when they are not: what `/status` and
/// the dashboard show as `payments`. Under `EDGENT_PAYMENTS=auto` it can turn active while
/// the daemon runs (see [`super::switch`]).
pub struct PaymentsStatus {
    /// `EDGENT_PAYMENTS` as set.
    pub mode: PaymentsMode,
    state: RwLock<StatusState>,
    cache: tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>,
}

#[derive(Clone, Default)]
struct StatusState {
    active: bool,
    reason: Option<String>,
    retrying: bool,
    chain: Option<Arc<Chain>>,
}

impl PaymentsStatus {
    /// Payments active through `chain`.
    pub fn active(mode: PaymentsMode, chain: Arc<Chain>) -> PaymentsStatus {
        let s = Self::inactive(mode, None);
        s.activate(chain);
        s
    }

    /// Payments off (`reason` says why when they were wanted).
    pub fn inactive(mode: PaymentsMode, reason: Option<String>) -> PaymentsStatus {
        PaymentsStatus {
            mode,
            state: RwLock::new(StatusState {
                reason,
                ..Default::default()
            }),
            cache: Default::default(),
        }
    }

    fn state(&self) -> StatusState {
        self.state.read().clone()
    }

    fn update(&self, f: impl FnOnce(&mut StatusState)) {
        f(&mut self.state.write());
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
    pub fn activate(&self, chain: Arc<Chain>) {
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
                *cache = Some((Instant::now(), v.clone()));
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
