//! The receive loop: drains AXL's `/recv` queue and hands each raw message on.
//!
//! AXL keeps at most 100 received messages and drops the OLDEST when full, so the loop
//! reads until the queue is empty (204) and only then sleeps, briefly: 1 ms, doubling
//! while idle up to a cap, back to zero on any message. The cap depends on traffic: for
//! [`RecvLoopConfig::hot_window`] after the node last sent or received a message (a reply
//! is likely: an ad after a request, a result after a task) it is
//! [`RecvLoopConfig::hot_cap`] (2 ms), so a conversation adds about a millisecond per
//! hop; when the node has been quiet longer it is [`RecvLoopConfig::idle_cap`] (50 ms),
//! which keeps an idle daemon near 20 polls a second (each costs about 0.3 ms of CPU in
//! the HTTP client). A sender would have to push more than 100 messages in 50 ms into a
//! quiet node before AXL drops one; the first
//! message makes the loop hot and it then drains without pause. When AXL does not answer
//! at all it backs off longer (up to [`RecvLoopConfig::down_cap`]) and logs once per
//! outage, not per try.
//!
//! The loop never decodes: it passes raw [`Inbound`] messages into a bounded channel
//! with `try_send`, so a slow router can never stall the drain (which would let AXL
//! drop messages instead). If the channel is full the message is dropped here and
//! counted in [`RecvStats::dropped_full`], which is visible in `/status` and
//! `/metrics`; size the channel ([`RECV_CHANNEL_CAPACITY`]) well above a burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AxlError, Inbound, Transport};
use crate::backoff::Backoff;

/// A channel capacity for [`spawn_recv_loop`] that absorbs many full AXL queues (100
/// messages each) while the router catches up.
pub const RECV_CHANNEL_CAPACITY: usize = 4096;

/// Counters of the receive loop, shared with `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct RecvStats {
    /// Messages taken from AXL's queue (delivered to the channel or dropped there).
    pub received: AtomicU64,
    /// Failed `/recv` calls (AXL down, malformed answers, unexpected statuses).
    pub recv_errors: AtomicU64,
    /// Messages dropped because the channel to the router was full.
    pub dropped_full: AtomicU64,
    /// Outages: runs of consecutive "AXL down" answers.
    pub outages: AtomicU64,
    /// When the node last sent or received a message, ms since [`activity_origin`].
    last_activity_ms: AtomicU64,
}

/// The reference instant of [`RecvStats::touch`].
fn activity_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn since_origin_ms() -> u64 {
    activity_origin().elapsed().as_millis() as u64 + 1
}

/// A plain copy of [`RecvStats`] at one moment, for JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecvCounts {
    /// See [`RecvStats::received`].
    pub received: u64,
    /// See [`RecvStats::recv_errors`].
    pub recv_errors: u64,
    /// See [`RecvStats::dropped_full`].
    pub dropped_full: u64,
    /// See [`RecvStats::outages`].
    pub outages: u64,
}

impl RecvStats {
    /// Note traffic now (a message sent or received): the loop polls quickly for a while.
    pub fn touch(&self) {
        self.last_activity_ms
            .store(since_origin_ms(), Ordering::Relaxed);
    }

    /// Whether there was traffic within `window`.
    pub fn is_hot(&self, window: Duration) -> bool {
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        last != 0 && since_origin_ms().saturating_sub(last) <= window.as_millis() as u64
    }

    /// Read all counters.
    pub fn snapshot(&self) -> RecvCounts {
        RecvCounts {
            received: self.received.load(Ordering::Relaxed),
            recv_errors: self.recv_errors.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
        }
    }
}

/// Back-off settings of the receive loop. [`Default`] is what the daemon uses.
#[derive(Debug, Clone, Copy)]
pub struct RecvLoopConfig {
    /// First sleep after the queue is found empty.
    pub idle_start: Duration,
    /// Longest sleep while quiet (must stay well under "100 messages' worth" of time).
    pub idle_cap: Duration,
    /// Longest sleep within `hot_window` of traffic.
    pub hot_cap: Duration,
    /// How long after traffic the loop stays hot.
    pub hot_window: Duration,
    /// First sleep after AXL did not answer.
    pub down_start: Duration,
    /// Longest sleep while AXL is down.
    pub down_cap: Duration,
}

impl Default for RecvLoopConfig {
    fn default() -> Self {
        RecvLoopConfig {
            idle_start: Duration::from_millis(1),
            idle_cap: Duration::from_millis(50),
            hot_cap: Duration::from_millis(2),
            hot_window: Duration::from_secs(3),
            down_start: Duration::from_millis(50),
            down_cap: Duration::from_secs(1),
        }
    }
}

/// Start the receive loop with the default back-off. It runs until `cancel` fires or
/// the receiving end of `tx` is dropped.
pub fn spawn_recv_loop(
    transport: Arc<dyn Transport>,
    tx: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
    stats: Arc<RecvStats>,
) -> JoinHandle<()> {
    tokio::spawn(recv_loop(
        transport,
        tx,
        cancel,
        stats,
        RecvLoopConfig::default(),
    ))
}

/// What the last failing streak was, so it is logged once rather than per try.
#[derive(PartialEq)]
enum Streak {
    None,
    Down { failures: u64 },
    Failing { failures: u64 },
}

/// The receive loop with explicit back-off settings ([`spawn_recv_loop`] spawns it with
/// the defaults).
pub async fn recv_loop(
    transport: Arc<dyn Transport>,
    tx: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
    stats: Arc<RecvStats>,
    config: RecvLoopConfig,
) {
    tracing::debug!(target: "axl", "receive loop started");
    let mut idle = Backoff::new(config.idle_start, config.idle_cap);
    let mut down = Backoff::new(config.down_start, config.down_cap);
    let mut streak = Streak::None;
    // Full-channel drops are logged once per run of them.
    let mut full_run: u64 = 0;
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = transport.recv() => r,
        };
        let pause = match result {
            Ok(got) => {
                end_streak(&mut streak);
                down.reset();
                match got {
                    Some(msg) => {
                        idle.reset();
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        stats.touch();
                        match tx.try_send(msg) {
                            Ok(()) => {
                                if full_run > 0 {
                                    tracing::info!(target: "axl", dropped = full_run, "router channel has room again");
                                    full_run = 0;
                                }
                            }
                            Err(TrySendError::Full(msg)) => {
                                stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                                if full_run == 0 {
                                    tracing::warn!(target: "axl", from = %msg.from.short(), "router channel full: dropping received messages until it drains");
                                }
                                full_run += 1;
                            }
                            Err(TrySendError::Closed(_)) => {
                                tracing::info!(target: "axl", "router channel closed: receive loop stops");
                                return;
                            }
                        }
                        continue;
                    }
                    None => {
                        let cap = if stats.is_hot(config.hot_window) {
                            config.hot_cap
                        } else {
                            config.idle_cap
                        };
                        idle.next_wait_within(cap)
                    }
                }
            }
            Err(AxlError::Down(why)) => {
                stats.recv_errors.fetch_add(1, Ordering::Relaxed);
                match &mut streak {
                    Streak::Down { failures } => *failures += 1,
                    _ => {
                        end_streak(&mut streak);
                        stats.outages.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "axl", %why, "AXL node not answering /recv; retrying with back-off");
                        streak = Streak::Down { failures: 1 };
                    }
                }
                down.next_wait_within(config.down_cap)
            }
            Err(e) => {
                stats.recv_errors.fetch_add(1, Ordering::Relaxed);
                match &mut streak {
                    Streak::Failing { failures } => *failures += 1,
                    _ => {
                        end_streak(&mut streak);
                        tracing::warn!(target: "axl", error = %e, "AXL /recv failed");
                        streak = Streak::Failing { failures: 1 };
                    }
                }
                // A malformed message is one lost message, not a reason to stop draining;
                // a persistent error status must not become a hot loop either.
                idle.next_wait_within(config.idle_cap)
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::debug!(target: "axl", "receive loop stopped");
}

fn end_streak(streak: &mut Streak) {
    match *streak {
        Streak::None => {}
        Streak::Down { failures } => {
            tracing::info!(target: "axl", failures, "AXL node answering /recv again")
        }
        Streak::Failing { failures } => {
            if failures > 1 {
                tracing::info!(target: "axl", failures, "AXL /recv recovered after repeated failures")
            }
        }
    }
    *streak = Streak::None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_makes_the_loop_hot_for_a_window() {
        let s = RecvStats::default();
        assert!(!s.is_hot(Duration::from_secs(3)));
        s.touch();
        assert!(s.is_hot(Duration::from_secs(3)));
        s.last_activity_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!s.is_hot(Duration::from_millis(1)));
    }
}
