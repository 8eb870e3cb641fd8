//! The paid flow's settings: whether jobs are paid (`EDGENT_PAYMENTS` and the chain
//! settings it needs), who settles, and the timers and budgets of open payments.

use std::time::Duration;

use super::value::{invalid, parse_bool, ranged, ConfigError, Lookup};
use crate::chain::{ChainConfigError, ChainSettings};

/// `EDGENT_PAYMENTS`: whether jobs are paid through the escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentsMode {
    /// Paid when the wallet, escrow and settler are usable; otherwise the daemon runs
    /// unpaid and says why (log, `/status`, dashboard). The default.
    Auto,
    /// Always paid: a setup that cannot pay stops the daemon with [`super::EX_CONFIG`].
    On,
    /// Never paid (a trusted fleet).
    Off,
}

impl PaymentsMode {
    /// Lower-case name, as in `.env`.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// Parse `auto`, or a boolean (`on`/`off`, `true`/`false`...).
    pub fn parse(v: &str) -> Result<PaymentsMode, ConfigError> {
        if v.trim().eq_ignore_ascii_case("auto") {
            return Ok(PaymentsMode::Auto);
        }
        match parse_bool("EDGENT_PAYMENTS", v) {
            Ok(true) => Ok(PaymentsMode::On),
            Ok(false) => Ok(PaymentsMode::Off),
            Err(_) => Err(invalid("EDGENT_PAYMENTS", v, "expected auto, on or off")),
        }
    }
}

/// Who settles a verified job on chain (`SETTLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlerKind {
    /// KeeperHub when `KEEPERHUB_API_KEY` is set, else direct with `OPERATOR_PRIVATE_KEY`.
    Auto,
    /// KeeperHub's Direct Execution API (production: its managed wallet is the operator).
    KeeperHub,
    /// This daemon signs `release`/`reject` with `OPERATOR_PRIVATE_KEY` (local chains).
    Direct,
}

/// Whether jobs are paid, as the settings say. Read once and never changed: what the
/// daemon found usable at start, and later, is [`crate::paid::PaymentsStatus`].
#[derive(Debug, Clone)]
pub enum Payments {
    /// Unpaid: `EDGENT_PAYMENTS=off` (no reason), or `auto` without a wallet (the reason).
    Off(Option<String>),
    /// Paid through the escrow on this chain, with this wallet and settler.
    On(Box<ChainSettings>),
}

impl Payments {
    /// Read `EDGENT_PAYMENTS` and, unless it is off, the chain settings. A malformed chain
    /// value is an error even under `auto` (someone typed it); a missing wallet is an error
    /// under `on` and the reason to run unpaid under `auto`.
    pub fn from_lookup(get: Lookup) -> Result<(PaymentsMode, Payments), ConfigError> {
        let mode = match get("EDGENT_PAYMENTS") {
            Some(v) => PaymentsMode::parse(&v)?,
            None => PaymentsMode::Auto,
        };
        if mode == PaymentsMode::Off {
            return Ok((mode, Payments::Off(None)));
        }
        let c = ChainSettings::from_lookup(get)?;
        let payments = match (&c.wallet_key, mode) {
            (Some(_), _) => Payments::On(Box::new(c)),
            (None, PaymentsMode::On) => {
                return Err(ChainConfigError::Missing(
                    "WALLET_PRIVATE_KEY (or WALLET_KEY_PATH; `edgent init` makes one): paid delegation needs a wallet",
                )
                .into());
            }
            (None, _) => Payments::Off(Some(
                "no wallet: WALLET_PRIVATE_KEY and WALLET_KEY_PATH are unset (`edgent init` makes one)".to_string(),
            )),
        };
        Ok((mode, payments))
    }

    /// The chain settings, when payments are on.
    pub fn chain(&self) -> Option<&ChainSettings> {
        match self {
            Payments::On(c) => Some(c),
            Payments::Off(_) => None,
        }
    }

    /// Why payments are off although they were wanted (`auto` without a wallet).
    pub fn off_reason(&self) -> Option<&str> {
        match self {
            Payments::Off(reason) => reason.as_deref(),
            Payments::On(_) => None,
        }
    }
}

/// How open payments are settled and watched.
#[derive(Debug, Clone)]
pub struct PaidSettings {
    /// `SETTLER`: keeperhub, direct, or auto (default).
    pub settler: SettlerKind,
    /// `PAYMENT_GRACE_SECS`: how long a provider waits for `payment_confirmed` after
    /// delivering before it submits the output hash on chain (default 60).
    pub payment_grace: Duration,
    /// `PAYMENT_TICK_MS`: how often open payments are checked against their timers
    /// (default 2000).
    pub payment_tick: Duration,
    /// `PEER_UNSTAKED_BURST`: a paid provider's budget, per peer, of tasks whose stake does
    /// not check out; a spent budget refuses that peer's tasks without any RPC call (default
    /// 8). A task whose stake checks out costs nothing.
    pub unstaked_burst: u32,
    /// `PEER_UNSTAKED_PER_MIN`: how fast that budget refills, a minute (default 12).
    pub unstaked_per_min: u32,
}

impl PaidSettings {
    /// Read and check the settlement settings (read whether or not payments are on).
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        let settler = match get("SETTLER").as_deref().map(str::trim) {
            None | Some("") | Some("auto") => SettlerKind::Auto,
            Some("keeperhub") => SettlerKind::KeeperHub,
            Some("direct") => SettlerKind::Direct,
            Some(other) => {
                return Err(invalid(
                    "SETTLER",
                    other,
                    "expected keeperhub, direct or auto",
                ))
            }
        };
        let secs = |key: &'static str, default: u64, min: u64, max: u64| {
            ranged(get(key), key, default, (min, max), "seconds").map(Duration::from_secs)
        };
        let payment_grace = secs("PAYMENT_GRACE_SECS", 60, 1, 86_400)?;
        let unstaked_burst = ranged(
            get("PEER_UNSTAKED_BURST"),
            "PEER_UNSTAKED_BURST",
            8,
            (1, 100_000),
            "",
        )? as u32;
        let unstaked_per_min = ranged(
            get("PEER_UNSTAKED_PER_MIN"),
            "PEER_UNSTAKED_PER_MIN",
            12,
            (1, 1_000_000),
            "",
        )? as u32;
        let payment_tick = ranged(
            get("PAYMENT_TICK_MS"),
            "PAYMENT_TICK_MS",
            2_000,
            (10, 600_000),
            "ms",
        )
        .map(Duration::from_millis)?;
        Ok(PaidSettings {
            settler,
            payment_grace,
            payment_tick,
            unstaked_burst,
            unstaked_per_min,
        })
    }
}
