//! A requester's delegation: how long discovery waits for ads, the deadline and price
//! limit a delegation gets when the agent does not say, and what an agent may not change:
//! the ceiling on `max_price`, the spend budget, and how providers are ranked.

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
    /// `MAX_PRICE_CEILING_USDC`: the highest `max_price` an agent may ask for (base units;
    /// default 1 USDC, at least `MAX_PRICE_USDC`). A request above it is refused (400).
    pub max_price_ceiling_units: u64,
    /// `SPEND_BUDGET_USDC`: what the agent (the holder of the API token) may spend in one
    /// `SPEND_BUDGET_PERIOD_SECS` (base units; default 10 USDC a day). A paid delegation
    /// that could take it over is refused with 402 `budget_exhausted`.
    pub spend_budget_units: u64,
    /// `SPEND_BUDGET_PERIOD_SECS`: the rolling period of the budget (default 86,400).
    pub spend_budget_period: Duration,
    /// `PRICE_PREMIUM_CAP_PCT`: how much more than the cheapest ad of a provider in good
    /// standing an ad may ask and still be chosen, percent (default 300: four times).
    pub premium_cap_pct: u32,
    /// `PROVEN_AFTER_JOBS`: jobs a provider must have delivered here before it ranks as
    /// proven, above the newcomers (default 3).
    pub proven_after: u32,
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
        let usdc = |key: &'static str, default: u64| match get(key) {
            Some(v) => parse_usdc(&v).map_err(|p| invalid(key, &v, p)),
            None => Ok(default),
        };
        let max_price_ceiling_units = usdc("MAX_PRICE_CEILING_USDC", 1_000_000)?;
        if default_max_price_units > max_price_ceiling_units {
            return Err(invalid(
                "MAX_PRICE_USDC",
                &super::value::format_usdc(default_max_price_units),
                format!(
                    "above MAX_PRICE_CEILING_USDC ({})",
                    super::value::format_usdc(max_price_ceiling_units)
                ),
            ));
        }
        let spend_budget_units = usdc("SPEND_BUDGET_USDC", 10_000_000)?;
        let spend_budget_period = Duration::from_secs(ranged(
            get("SPEND_BUDGET_PERIOD_SECS"),
            "SPEND_BUDGET_PERIOD_SECS",
            86_400,
            (1, 31 * 86_400),
            "s",
        )?);
        let premium_cap_pct = ranged(
            get("PRICE_PREMIUM_CAP_PCT"),
            "PRICE_PREMIUM_CAP_PCT",
            300,
            (0, 100_000),
            "%",
        )? as u32;
        let proven_after = ranged(
            get("PROVEN_AFTER_JOBS"),
            "PROVEN_AFTER_JOBS",
            3,
            (1, 1_000),
            "jobs",
        )? as u32;
        Ok(DelegationSettings {
            discovery_window: ms("DISCOVERY_WINDOW_MS", 2_000, 10, 60_000)?,
            discovery_settle: ms("DISCOVERY_SETTLE_MS", 150, 0, 60_000)?,
            default_timeout: ms("DELEGATE_TIMEOUT_MS", 120_000, 100, 3_600_000)?,
            default_max_price_units,
            verify_rate,
            verify_first: verify_first as u32,
            max_price_ceiling_units,
            spend_budget_units,
            spend_budget_period,
            premium_cap_pct,
            proven_after,
        })
    }
}
