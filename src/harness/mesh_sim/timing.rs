//! The sim's clock rules: when a route is ready after peering, when a held `/send` dials
//! again, how long a send to nobody blocks, and how long a departed node lingers.
//!
//! All off by default ([`SimTiming::default`]: every send is ready at once, an unreachable
//! key is a 502 at once, a killed node leaves every tree at once); [`SimTiming::real`] turns
//! on the durations measured on the real node (`axl/README.md`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimError;

/// Measured: a route is usable 2 s after its last node (re)started.
pub const REAL_WARMUP_MS: u64 = 2_000;
/// Measured: gVisor's TCP SYN retries back off 1, 2, 4, … s.
pub const REAL_SYN_BACKOFF_MS: u64 = 1_000;
/// Measured: `/send` to a key nobody has answers 502 after 127 s (1+2+…+64 s of SYNs).
pub const REAL_BLOCK_MS: u64 = 127_000;
/// Measured "for minutes": how long a departed node stays in the others' `tree`.
pub const REAL_LINGER_MS: u64 = 180_000;
/// Largest duration any timing setting takes (an hour), so a typo cannot hold a request
/// or a tree entry for days.
pub const SIM_MAX_TIMING_MS: u64 = 3_600_000;

/// The sim's timing rules, as JSON on `/sim/timing` (milliseconds; `null` turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimTiming {
    /// How long after the last node on a route (re)started the route carries messages;
    /// a `/send` made earlier is held until its first SYN attempt at or after that.
    /// `None`: every route is ready at once.
    pub warmup_ms: Option<u64>,
    /// The SYN retry unit: a held send dials at 0, 1, 3, 7, … units after it was made.
    pub syn_backoff_ms: u64,
    /// How long a `/send` to a node that cannot be reached (unknown key, down, partitioned,
    /// no route) blocks before its 502. `None`: the 502 comes at once.
    pub block_ms: Option<u64>,
    /// How long a killed node stays in the other nodes' `tree` (its peer entry says
    /// `up: false` meanwhile). `None`: it leaves every tree at once.
    pub linger_ms: Option<u64>,
}

impl Default for SimTiming {
    fn default() -> Self {
        SimTiming {
            warmup_ms: None,
            syn_backoff_ms: REAL_SYN_BACKOFF_MS,
            block_ms: None,
            linger_ms: None,
        }
    }
}

impl SimTiming {
    /// Every measured behaviour on, with the measured durations.
    pub fn real() -> SimTiming {
        SimTiming {
            warmup_ms: Some(REAL_WARMUP_MS),
            syn_backoff_ms: REAL_SYN_BACKOFF_MS,
            block_ms: Some(REAL_BLOCK_MS),
            linger_ms: Some(REAL_LINGER_MS),
        }
    }

    /// Every duration multiplied by `factor` (e.g. 0.1: warm-up 0.2 s, block 12.7 s),
    /// the SYN unit kept at 1 ms or more.
    pub fn scaled(self, factor: f64) -> SimTiming {
        let f = |ms: u64| {
            (ms as f64 * factor)
                .round()
                .clamp(0.0, SIM_MAX_TIMING_MS as f64) as u64
        };
        SimTiming {
            warmup_ms: self.warmup_ms.map(f),
            syn_backoff_ms: f(self.syn_backoff_ms).max(1),
            block_ms: self.block_ms.map(f),
            linger_ms: self.linger_ms.map(f),
        }
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
        if self.syn_backoff_ms == 0 {
            return Err(SimError::BadTiming(
                "syn_backoff_ms must be at least 1".into(),
            ));
        }
        let all = [
            ("warmup_ms", self.warmup_ms),
            ("syn_backoff_ms", Some(self.syn_backoff_ms)),
            ("block_ms", self.block_ms),
            ("linger_ms", self.linger_ms),
        ];
        for (name, v) in all {
            if v.is_some_and(|v| v > SIM_MAX_TIMING_MS) {
                return Err(SimError::BadTiming(format!(
                    "{name} must be at most {SIM_MAX_TIMING_MS}"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn warmup(&self) -> Option<Duration> {
        self.warmup_ms.map(Duration::from_millis)
    }

    pub(super) fn unit(&self) -> Duration {
        Duration::from_millis(self.syn_backoff_ms.max(1))
    }

    pub(super) fn block(&self) -> Option<Duration> {
        self.block_ms.map(Duration::from_millis)
    }

    pub(super) fn linger(&self) -> Option<Duration> {
        self.linger_ms.map(Duration::from_millis)
    }
}

/// When SYN attempt `k` of a send goes out, after the send was made: `(2^k - 1)` units
/// (0, 1, 3, 7, … s with the measured 1 s unit).
pub fn attempt_offset(k: u32, unit: Duration) -> Duration {
    let units = (1u64 << k.min(40)) - 1;
    unit.saturating_mul(u32::try_from(units).unwrap_or(u32::MAX))
}

/// How long a send waits for its route when the route is ready `ready_in` after the send
/// was made: until its first SYN attempt at or after that moment. With the measured
/// values (ready 2 s after peering, 1 s unit) a send at +0 s waits 3 s, at +0.3 s 3.0 s,
/// at +1 s 1 s, from +2 s on not at all.
pub fn dial_delay(ready_in: Duration, unit: Duration) -> Duration {
    (0..=40)
        .map(|k| attempt_offset(k, unit))
        .find(|&at| at >= ready_in)
        .unwrap_or(ready_in)
}

/// The first SYN attempt strictly after `elapsed` since the send was made.
pub fn next_attempt_after(elapsed: Duration, unit: Duration) -> Duration {
    (0..=40)
        .map(|k| attempt_offset(k, unit))
        .find(|&at| at > elapsed)
        .unwrap_or(elapsed + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The first send after peering, measured on the real node: 3.0 s at +0 to +0.3 s,
    /// 1.0 s at +1 s, immediate from +2 s. `ready_in` is 2 s minus the send's offset.
    #[test]
    fn the_measured_first_send_schedule() {
        let ready = ms(REAL_WARMUP_MS);
        let wait = |sent_at: Duration| dial_delay(ready.saturating_sub(sent_at), S);
        assert_eq!(wait(ms(0)), ms(3_000));
        assert_eq!(wait(ms(300)), ms(3_000));
        assert_eq!(wait(ms(1_000)), ms(1_000));
        assert_eq!(wait(ms(1_500)), ms(1_000));
        assert_eq!(wait(ms(2_000)), ms(0));
        assert_eq!(wait(ms(5_000)), ms(0));
    }

    #[test]
    fn attempts_back_off_to_the_127_s_give_up() {
        let offsets: Vec<u64> = (0..8).map(|k| attempt_offset(k, S).as_secs()).collect();
        assert_eq!(offsets, [0, 1, 3, 7, 15, 31, 63, 127]);
        assert_eq!(next_attempt_after(ms(0), S), S);
        assert_eq!(next_attempt_after(ms(3_000), S), ms(7_000));
        assert_eq!(attempt_offset(7, S), ms(REAL_BLOCK_MS));
    }

    #[test]
    fn scaling_shortens_every_duration() {
        let t = SimTiming::real().scaled(0.1);
        assert_eq!(t.warmup_ms, Some(200));
        assert_eq!(t.syn_backoff_ms, 100);
        assert_eq!(t.block_ms, Some(12_700));
        assert_eq!(t.linger_ms, Some(18_000));
        assert_eq!(SimTiming::real().scaled(0.0).syn_backoff_ms, 1);
        assert!(SimTiming::real().validate().is_ok());
        let bad = SimTiming {
            syn_backoff_ms: 0,
            ..SimTiming::default()
        };
        assert!(bad.validate().is_err());
    }
}
