//! The one back-off schedule of every retry loop: waits that double from a first wait up
//! to a cap. It sits at the bottom of the layers (it imports nothing of the crate), so
//! `axl`, `chain` and `mesh` all use it.

use std::time::Duration;

/// The waits between tries: `first`, doubling up to `cap` (`first` when `cap` is lower).
/// As an [`Iterator`] it never ends.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    last: Option<Duration>,
}

impl Backoff {
    /// Start at `first`, double after each wait, never above `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap: cap.max(first),
            last: None,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        self.next_wait_within(self.cap)
    }

    /// The next wait, never above `cap` instead of the cap given to [`Backoff::new`]: for
    /// a loop whose cap changes from one wait to the next.
    pub fn next_wait_within(&mut self, cap: Duration) -> Duration {
        let wait = match self.last {
            None => self.first,
            Some(last) => last.saturating_mul(2),
        }
        .min(cap);
        self.last = Some(wait);
        wait
    }

    /// Start again from `first` (after a success, or a run long enough to count as one).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let ms: Vec<u128> = Backoff::new(Duration::from_millis(500), Duration::from_secs(4))
            .take(7)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000, 4000]);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let (s, c) = (Duration::from_millis(1), Duration::from_millis(16));
        let mut b = Backoff::new(s, c);
        let mut seen = vec![];
        for _ in 0..7 {
            seen.push(b.next_wait_within(c).as_millis());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn a_reset_starts_again_and_a_lower_cap_holds_at_once() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        assert_eq!(b.next_wait(), Duration::from_millis(1));
        assert_eq!(b.next_wait(), Duration::from_millis(2));
        assert_eq!(b.next_wait(), Duration::from_millis(4));
        assert_eq!(
            b.next_wait_within(Duration::from_millis(2)),
            Duration::from_millis(2)
        );
        assert_eq!(b.next_wait(), Duration::from_millis(4));
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(1));
    }
}
