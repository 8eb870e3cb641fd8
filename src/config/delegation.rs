//! A requester's delegation: how long discovery waits for ads, and the deadline and price
//! limit a delegation gets when the agent does not say.

use std::time::Duration;

use super::value::{invalid, parse_usdc, ranged, ConfigError, Lookup};

/// How a requester delegates.
#[derive(Debug, Clone)]
pub struct DelegationSettings {
    /// `DISCOVERY_WINDOW_MS`: the longest wait for resource ads.
    pub discovery_window: Duration,
    /// `DISCOVERY_SETTLE_MS`: after the first ad, how long to wait for better ones.
    pub discovery_settle: Duration,
    /// `DELEGATE_TIMEOUT_MS`: default deadline of a delegation.
    pub default_timeout: Duration,
    /// `MAX_PRICE_USDC`: default highest price the agent pays (base units).
    pub default_max_price_units: u64,
    /// `VERIFY_RATE`: the share of jobs spot-checked by a second provider of the same
    /// digest, 0.0 ..= 1.0 (default 0.05); a provider's first [`Self::verify_first`] jobs
    /// are always checked.
    pub verify_rate: f64,
    /// `VERIFY_FIRST`: how many of a provider's first jobs are always checked (default 3).
    pub verify_first: u32,
}

impl DelegationSettings {
    /// Read and check the delegation settings.
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        let default_max_price_units = match get("MAX_PRICE_USDC") {
            Some(v) => parse_usdc(&v).map_err(|p| invalid("MAX_PRICE_USDC", &v, p))?,
            None => 1_000_000,
        };
        let verify_rate = match get("VERIFY_RATE") {
            Some(v) => match v.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => return Err(invalid("VERIFY_RATE", &v, "a number from 0 to 1")),
            },
            None => 0.05,
        };
        let verify_first = ranged(get("VERIFY_FIRST"), "VERIFY_FIRST", 3, (0, 1_000), "jobs")?;
        let ms = |key: &'static str, default: u64, min: u64, max: u64| {
            ranged(get(key), key, default, (min, max), "ms").map(Duration::from_millis)
        };
        Ok(DelegationSettings {
            discovery_window: ms("DISCOVERY_WINDOW_MS", 2_000, 10, 60_000)?,
            discovery_settle: ms("DISCOVERY_SETTLE_MS", 150, 0, 60_000)?,
            default_timeout: ms("DELEGATE_TIMEOUT_MS", 120_000, 100, 3_600_000)?,
            default_max_price_units,
            verify_rate,
            verify_first: verify_first as u32,
        })
    }
}
