//! The faults in force on the sim ([`Faults`]): lost messages, delays, partitions and
//! nodes that are down, as set from Rust or as JSON on `/sim/faults`.

use serde::{Deserialize, Serialize};

use super::{SimError, SIM_MAX_DELAY_MS};

/// The faults in force, as JSON on `/sim/faults`. Missing fields mean "no fault".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability in `0.0..=1.0` that a sent message is silently lost.
    pub drop_rate: f64,
    /// Delivery delay in milliseconds.
    pub delay_ms: u64,
    /// Node index pairs that cannot reach each other.
    pub partitions: Vec<[usize; 2]>,
    /// Node indices that are down.
    pub down: Vec<usize>,
}

impl Faults {
    pub(super) fn validate(&self, n: usize) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(SimError::BadFaults(format!(
                "drop_rate must be within 0..=1, got {}",
                self.drop_rate
            )));
        }
        if self.delay_ms > SIM_MAX_DELAY_MS {
            return Err(SimError::BadFaults(format!(
                "delay_ms must be at most {SIM_MAX_DELAY_MS}, got {}",
                self.delay_ms
            )));
        }
        for &[i, j] in &self.partitions {
            if i >= n || j >= n || i == j {
                return Err(SimError::BadFaults(format!(
                    "partition [{i}, {j}] must name two different nodes below {n}"
                )));
            }
        }
        if let Some(i) = self.down.iter().find(|&&i| i >= n) {
            return Err(SimError::BadFaults(format!(
                "down node {i} does not exist (there are {n})"
            )));
        }
        Ok(())
    }

    pub(super) fn is_down(&self, i: usize) -> bool {
        self.down.contains(&i)
    }

    pub(super) fn partitioned(&self, i: usize, j: usize) -> bool {
        self.partitions
            .iter()
            .any(|&[a, b]| (a == i && b == j) || (a == j && b == i))
    }

    /// Whether `from` can reach `to` (both up, not partitioned).
    pub(super) fn reachable(&self, from: usize, to: usize) -> bool {
        !self.is_down(from) && !self.is_down(to) && !self.partitioned(from, to)
    }
}
