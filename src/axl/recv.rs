//! The receive loop: drains AXL's `/recv` queue and hands each raw message on.
//!
//! AXL keeps at most 100 received messages and drops the OLDEST when full, so the loop
//! reads until the queue is empty (204) and only then sleeps: 1 ms, doubling while the
//! queue stays empty up to a cap, back to 1 ms on any message. AXL's `/recv` does not
//! wait for a message (no long poll), so the cap is what an idle daemon costs and what a
//! message to a quiet node waits. It is a pure function of the time since the node's last
//! conversation ([`RecvLoopConfig::poll_cap`]): a message sent or received other than
//! gossip's `announce` ([`RecvStats::touch`], called by the endpoint and the router).
//!
//! | quiet for | cap | why |
//! |---|---|---|
//! | up to [`RecvLoopConfig::hot_window`] (3 s) | [`RecvLoopConfig::hot_cap`] (2 ms) | a reply is likely (an ad after a request, a result after a task): about a millisecond per hop |
//! | up to [`RecvLoopConfig::brisk_window`] (10 s) | [`RecvLoopConfig::brisk_cap`] (5 ms) | an agent's next request in a conversation: its first token waits about 2.5 ms for the poll, not 25 |
//! | up to [`RecvLoopConfig::warm_window`] (30 s) | [`RecvLoopConfig::idle_cap`] (50 ms) | the next job of a busy agent |
//! | up to [`RecvLoopConfig::deep_rest_after`] (5 min) | [`RecvLoopConfig::rest_cap`] (80 ms) | at rest: about 12 polls a second |
//! | longer | [`RecvLoopConfig::deep_rest_cap`] (500 ms) | asleep: about 2.4 polls a second |
//!
//! A node that never conversed is at rest from the loop's start, asleep 5 minutes later.
//! An idle daemon's CPU follows its polls, most of it the kernel's wake-ups: in the 2-core
//! VM the benchmarks ran in, 0.5% of a core at 12.9 polls a second, 0.23% at 3.1 (a 400 ms
//! cap) and 0.15% at 2.4 (`benches/idle_cpu.rs`); a loop on a thread of its own, tried,
//! cost the same. The price of sleeping: the first message to a node quiet for 5 minutes
//! waits up to 500 ms for its poll (Ollama unloads a model after the same 5 minutes by
//! default, and reloading it takes seconds), so its ack may come after `ACK_TIMEOUT_MS`
//! and the message be sent twice (de-duplicated: a task runs once); a burst of over 200
//! messages a second into such a node overflows AXL's queue of 100 before the first poll;
//! and its answer to a resource request may come after `DISCOVERY_SETTLE_MS` (gossip keeps
//! the ad cache warm, so discovery seldom asks).
//!
//! A touch also wakes a sleeping loop at once ([`RecvStats::wait_for_traffic`]), so a
//! local send is never followed by a long sleep before its answer is read. Gossip does
//! not count as conversation: when it did, announcements every 20 s from every peer put
//! the loop at its 2 ms cap for 3 s each, and an idle daemon of a hub and spoke polled
//! 41 to 48 times a second instead of 11 (`benches/idle_cpu.rs`). The
//! rest cap stays under 100 ms so that a sender of 1 000 messages a second into a node at
//! rest (far more than one mesh peer sends) does not overflow AXL's queue of 100 before
//! the first poll; from the first message on the loop drains without pause. When AXL does
//! not answer at all it backs off longer (up to [`RecvLoopConfig::down_cap`]) and logs
//! once per outage, not per try.
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
use tokio::sync::Notify;
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
    /// When the node last had a conversation ([`RecvStats::touch`]), ms since
    /// [`activity_origin`].
    last_activity_ms: AtomicU64,
    /// Wakes a sleeping loop on traffic.
    traffic: Notify,
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
    /// Note a conversation now (a message sent or received, gossip aside): the loop wakes
    /// at once and polls quickly for a while.
    pub fn touch(&self) {
        self.last_activity_ms
            .store(since_origin_ms(), Ordering::Relaxed);
        self.traffic.notify_one();
    }

    /// How long since the last [`RecvStats::touch`] (`None`: never).
    pub fn quiet_for(&self) -> Option<Duration> {
        match self.last_activity_ms.load(Ordering::Relaxed) {
            0 => None,
            last => Some(Duration::from_millis(
                since_origin_ms().saturating_sub(last),
            )),
        }
    }

    /// Returns at the next [`RecvStats::touch`] (at once if one came since the last call).
    pub async fn wait_for_traffic(&self) {
        self.traffic.notified().await
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
    /// Longest sleep within `warm_window` of traffic.
    pub idle_cap: Duration,
    /// Longest sleep within `hot_window` of traffic.
    pub hot_cap: Duration,
    /// How long after traffic the loop stays hot.
    pub hot_window: Duration,
    /// Longest sleep within `brisk_window` of traffic (after `hot_window`).
    pub brisk_cap: Duration,
    /// How long after traffic the loop sleeps at most `brisk_cap`.
    pub brisk_window: Duration,
    /// How long after traffic the loop sleeps at most `idle_cap`.
    pub warm_window: Duration,
    /// Longest sleep after `warm_window` without traffic (must stay well under "100
    /// messages' worth" of time).
    pub rest_cap: Duration,
    /// How long after traffic (or the loop's start) the loop sleeps up to `deep_rest_cap`.
    pub deep_rest_after: Duration,
    /// Longest sleep after `deep_rest_after` without traffic.
    pub deep_rest_cap: Duration,
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
            brisk_cap: Duration::from_millis(5),
            brisk_window: Duration::from_secs(10),
            warm_window: Duration::from_secs(30),
            rest_cap: Duration::from_millis(80),
            deep_rest_after: Duration::from_secs(300),
            deep_rest_cap: Duration::from_millis(500),
            down_start: Duration::from_millis(50),
            down_cap: Duration::from_secs(1),
        }
    }
}

impl RecvLoopConfig {
    /// The longest sleep between two empty polls after `quiet` without conversation
    /// (`None`: none since the loop started, `up` ago), per the table of the module's doc.
    pub fn poll_cap(&self, quiet: Option<Duration>, up: Duration) -> Duration {
        match quiet {
            Some(q) if q <= self.hot_window => self.hot_cap,
            Some(q) if q <= self.brisk_window => self.brisk_cap,
            Some(q) if q <= self.warm_window => self.idle_cap,
            Some(q) if q <= self.deep_rest_after => self.rest_cap,
            Some(_) => self.deep_rest_cap,
            // Never conversed: at rest from the start, asleep after `deep_rest_after`.
            None if up <= self.deep_rest_after => self.rest_cap,
            None => self.deep_rest_cap,
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
    let started = Instant::now();
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
                        idle.next_wait_within(config.poll_cap(stats.quiet_for(), started.elapsed()))
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
            // A conversation began (a local send, or the router saw a message): poll now.
            _ = stats.wait_for_traffic(), if streak == Streak::None => idle.reset(),
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
    fn the_poll_cap_grows_with_the_quiet_time() {
        let c = RecvLoopConfig::default();
        let up = Duration::from_secs(86_400);
        let ms = |q: u64| c.poll_cap(Some(Duration::from_millis(q)), up).as_millis();
        assert_eq!(ms(0), 2);
        assert_eq!(ms(3_000), 2);
        assert_eq!(ms(3_001), 5);
        assert_eq!(ms(10_000), 5);
        assert_eq!(ms(10_001), 50);
        assert_eq!(ms(30_000), 50);
        assert_eq!(ms(30_001), 80);
        assert_eq!(ms(300_000), 80);
        assert_eq!(ms(300_001), 500);
        assert_eq!(ms(86_400_000), 500);
        // Never conversed: at rest from the start, asleep after five minutes.
        let never = |up: u64| c.poll_cap(None, Duration::from_secs(up)).as_millis();
        assert_eq!(never(0), 80);
        assert_eq!(never(300), 80);
        assert_eq!(never(301), 500);
        // A burst of 1 000 messages a second into a node at rest fits AXL's 100 slots; one
        // of 200 a second into a node asleep for 5 minutes does.
        assert!(c.rest_cap < Duration::from_millis(100));
        assert!(c.deep_rest_cap <= Duration::from_millis(500));
    }

    #[test]
    fn traffic_ends_the_quiet() {
        let s = RecvStats::default();
        assert_eq!(s.quiet_for(), None);
        s.touch();
        assert!(s.quiet_for().unwrap() < Duration::from_secs(3));
        s.last_activity_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.quiet_for().unwrap() >= Duration::from_millis(4));
    }

    #[tokio::test]
    async fn a_touch_wakes_the_waiting_loop() {
        let s = Arc::new(RecvStats::default());
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.wait_for_traffic().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        s.touch();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("joined");
    }
}
