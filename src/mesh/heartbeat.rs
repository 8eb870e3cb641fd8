//! Heartbeats: a provider with a job queued or running tells the requester so every
//! `HEARTBEAT_MS` ([`spawn_beats`]); the requester keeps the time of the last sign of life
//! per job ([`Pulse`]: a beat, the task's ack, or the answer) and declares the provider
//! dead after `HEARTBEAT_MISSES` beats did not come
//! ([`crate::mesh::DeliverySettings::dead_after`]), well before the agent's deadline.
//!
//! A job whose stream began is watched closer: the provider's chunk pump beats whenever
//! [`STREAM_BEAT`] passed without a chunk ([`crate::stream::pump`]), and the requester's
//! pulse, once a chunk came ([`Pulse::chunk`]), counts the provider dead after
//! [`crate::mesh::DeliverySettings::stream_dead_after`] (750 ms) of silence, so a stream
//! cut mid-answer is rescued within about a second.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::endpoint::Endpoint;
use crate::axl::PeerKey;
use crate::protocol::{BeatState, Heartbeat, JobId, Message};

/// Queue position meaning "not queued".
const NOT_QUEUED: u32 = u32::MAX;

/// A streaming provider sends a heartbeat when no chunk left for this long (a protocol
/// constant: the requester's `STREAM_DEAD_MS` counts on it).
pub const STREAM_BEAT: Duration = Duration::from_millis(150);

/// The requester's view of one job's provider: when it last showed life.
#[derive(Debug)]
pub struct Pulse {
    last: Mutex<Instant>,
    position: AtomicU32,
    heard: AtomicBool,
    streaming: AtomicBool,
    began: tokio::sync::Notify,
    dead_after: Duration,
    stream_dead_after: Duration,
}

impl Pulse {
    /// A pulse whose first sign is due within `grace` more than a normal silence; the
    /// provider counts as dead after `dead_after` of silence, or `stream_dead_after` once
    /// its stream began ([`crate::mesh::DeliverySettings`]).
    pub fn new(grace: Duration, dead_after: Duration, stream_dead_after: Duration) -> Self {
        Pulse {
            last: Mutex::new(Instant::now() + grace),
            position: AtomicU32::new(NOT_QUEUED),
            heard: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
            began: tokio::sync::Notify::new(),
            dead_after,
            stream_dead_after,
        }
    }

    /// A sign of life now.
    pub fn touch(&self) {
        self.heard.store(true, Ordering::Relaxed);
        // Replaces the first-sign grace too: from now on silence counts from here.
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// A heartbeat arrived.
    pub fn beat(&self, hb: &Heartbeat) {
        self.touch();
        let pos = match (hb.state, hb.queue_position) {
            (BeatState::Queued, Some(p)) => p.min(NOT_QUEUED - 1),
            _ => NOT_QUEUED,
        };
        self.position.store(pos, Ordering::Relaxed);
    }

    /// A chunk of the job's stream arrived: a sign of life, and from now on the stream's
    /// shorter silence counts ([`Pulse::dead_at`]).
    pub fn chunk(&self) {
        self.touch();
        if !self.streaming.swap(true, Ordering::Relaxed) {
            self.began.notify_one();
        }
    }

    /// Whether a chunk of the job's stream arrived.
    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Relaxed)
    }

    /// Resolves once the job's first chunk arrived (at once if it did), so a wait sized
    /// for the longer silence can shorten.
    pub async fn stream_began(&self) {
        if !self.is_streaming() {
            self.began.notified().await;
        }
    }

    /// When the provider counts as dead if nothing else comes: `dead_after` after the last
    /// sign of life, or `stream_dead_after` once its stream began.
    pub fn dead_at(&self) -> Instant {
        let silence = if self.is_streaming() {
            self.stream_dead_after
        } else {
            self.dead_after
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) + silence
    }

    /// Whether the provider ever showed life (an ack or a beat) for this attempt.
    pub fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// The job's place in the provider's queue, as last told.
    pub fn queue_position(&self) -> Option<u32> {
        match self.position.load(Ordering::Relaxed) {
            NOT_QUEUED => None,
            p => Some(p),
        }
    }
}

/// Stops a job's heartbeats when dropped.
pub struct Beats(JoinHandle<()>);

impl Drop for Beats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Send `to` a heartbeat for `job` every `HEARTBEAT_MS` until the returned guard
/// is dropped. `state` says where the job stands at each beat. Beats are not
/// acknowledged (the next one replaces a lost one) and each send runs in its own task,
/// so a slow send never delays the next beat.
pub fn spawn_beats(
    endpoint: Arc<Endpoint>,
    to: PeerKey,
    job: JobId,
    state: impl Fn() -> (BeatState, Option<u32>) + Send + 'static,
) -> Beats {
    let every = endpoint.settings().heartbeat;
    Beats(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The task's ack already said we are alive: the first beat is due one interval on.
        tick.tick().await;
        loop {
            tick.tick().await;
            let (state, queue_position) = state();
            let msg = Message::Heartbeat(Heartbeat {
                job_id: job,
                state,
                queue_position,
            });
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let _ = endpoint.send(&to, &msg).await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sign_ends_the_grace() {
        let p = Pulse::new(Duration::from_secs(60), Duration::ZERO, Duration::ZERO);
        assert!(p.dead_at() > Instant::now() + Duration::from_secs(50));
        assert!(!p.heard());
        p.touch();
        assert!(p.heard());
        assert!(p.dead_at() <= Instant::now());
    }

    #[tokio::test]
    async fn a_stream_shortens_the_silence_and_wakes_the_wait() {
        let (four, short) = (Duration::from_secs(4), Duration::from_millis(750));
        let p = std::sync::Arc::new(Pulse::new(Duration::ZERO, four, short));
        let long = p.dead_at();
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.stream_began().await }
        });
        assert!(!p.is_streaming());
        p.chunk();
        waiter.await.unwrap();
        assert!(p.is_streaming());
        assert!(p.heard());
        let at = p.dead_at();
        assert!(at < long, "the stream's silence is the shorter one");
        assert!(at + four - short >= long);
        // Once streaming, it resolves at once.
        p.stream_began().await;
    }

    #[test]
    fn a_pulse_keeps_the_last_sign_and_the_queue_position() {
        let p = Pulse::new(
            Duration::ZERO,
            Duration::from_secs(4),
            Duration::from_secs(1),
        );
        let dead = p.dead_at();
        std::thread::sleep(Duration::from_millis(5));
        p.beat(&Heartbeat {
            job_id: JobId::new(),
            state: BeatState::Queued,
            queue_position: Some(3),
        });
        assert!(p.dead_at() > dead);
        assert_eq!(p.queue_position(), Some(3));
        p.beat(&Heartbeat {
            job_id: JobId::new(),
            state: BeatState::Running,
            queue_position: None,
        });
        assert_eq!(p.queue_position(), None);
    }
}
