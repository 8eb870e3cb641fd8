//! Reading one value: the error that names the setting, and the parsers every group of
//! settings shares (booleans, numbers in a range, lists, URLs, USDC amounts).

use std::path::PathBuf;

/// Where a group of settings reads its values: the value of a key, `None` when unset or
/// empty (see [`super::Sources::get`]).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A setting that could not be used, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse or is out of range.
    #[error("{key}: {problem} (got {value:?})")]
    Invalid {
        /// The setting's name, e.g. `EDGENT_HTTP_ADDR`.
        key: &'static str,
        /// What was given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A chain setting (payments on) is missing or invalid.
    #[error("{0} (or set EDGENT_PAYMENTS=off for unpaid delegation, or auto to run unpaid when the paid setup is incomplete)")]
    Chain(#[from] crate::chain::ChainConfigError),
    /// The `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    EnvFile {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: dotenvy::Error,
    },
}

/// The exit status of `edgent run` when its configuration cannot work (BSD `EX_CONFIG`).
/// The systemd unit does not restart on it: a restart would fail the same way.
pub const EX_CONFIG: u8 = 78;

pub(super) fn invalid(key: &'static str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.chars().take(200).collect(),
        problem: problem.into(),
    }
}

pub(super) fn parse_bool(key: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(key, v, "expected on/off (true/false)")),
    }
}

/// A whole number setting within `min..=max` (in `unit`), or `default` when unset.
pub(super) fn ranged(
    value: Option<String>,
    key: &'static str,
    default: u64,
    (min, max): (u64, u64),
    unit: &str,
) -> Result<u64, ConfigError> {
    let v = match value {
        Some(v) => parse_num::<u64>(key, &v)?,
        None => default,
    };
    if v < min || v > max {
        return Err(invalid(
            key,
            &v.to_string(),
            format!("must be between {min} and {max} {unit}"),
        ));
    }
    Ok(v)
}

pub(super) fn parse_num<T: std::str::FromStr>(
    key: &'static str,
    v: &str,
) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(key, v, "expected a non-negative integer"))
}

pub(super) fn parse_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parse a USDC amount like `0.01` into base units (6 decimals).
pub fn parse_usdc(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("empty amount".into());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a decimal USDC amount such as 0.01".into());
    }
    if frac.len() > 6 {
        return Err("USDC has 6 decimals".into());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "amount too large".to_string())?
    };
    let frac_units: u64 = format!("{frac:0<6}")
        .parse()
        .map_err(|_| "bad fraction".to_string())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| "amount too large".into())
}

/// Render base units as a USDC amount, e.g. `10000` -> `0.01`.
pub fn format_usdc(units: u64) -> String {
    let whole = units / 1_000_000;
    let frac = units % 1_000_000;
    if frac == 0 {
        return format!("{whole}");
    }
    let f = format!("{frac:06}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

pub(super) fn check_url(key: &'static str, v: &str) -> Result<String, ConfigError> {
    let t = v.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or_else(|| invalid(key, v, "expected an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid(key, v, "expected a URL with a host"));
    }
    Ok(t.to_string())
}
