//! Reliable delivery over AXL, which acknowledges nothing: a message AXL accepted is still
//! lost when the far node dies before reading it, or when its 100-message queue overflows.
//!
//! The reliable types ([`crate::protocol::RELIABLE_TYPES`]: task, task_result, task_error,
//! payment_request, payment_confirmed) carry a fresh `msg_id`. The receiver answers each
//! with an `ack` (even a duplicate: the first ack may be the one that was lost) and
//! handles it only the first time it sees `(sender, msg_id)` ([`Dedupe`]). The sender
//! sends again on the [`crate::backoff::Backoff`] schedule until the ack comes or its deadline passes
//! ([`PendingAcks`] wakes it).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::axl::PeerKey;

/// Most `(sender, msg_id)` pairs remembered for de-duplication.
pub const DEDUPE_CAPACITY: usize = 65_536;

/// How long a `(sender, msg_id)` pair is remembered: longer than any sender retries.
pub const DEDUPE_TTL: Duration = Duration::from_secs(3_600);

/// Most messages awaiting their ack at once; beyond that a send gets no ack tracking and
/// is sent once, like an unreliable one.
pub const MAX_PENDING_ACKS: usize = 65_536;

/// A bounded, time-limited memory of the reliable messages already handled.
pub struct Dedupe {
    inner: Mutex<DedupeInner>,
    capacity: usize,
    ttl: Duration,
}

struct DedupeInner {
    seen: HashMap<([u8; 16], Uuid), Instant>,
    order: VecDeque<(([u8; 16], Uuid), Instant)>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe::new(DEDUPE_CAPACITY, DEDUPE_TTL)
    }
}

impl Dedupe {
    /// Remember at most `capacity` pairs, each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Dedupe {
            inner: Mutex::new(DedupeInner {
                seen: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Whether this is the first time `(from, id)` is seen (it is then remembered).
    pub fn first_time(&self, from: &PeerKey, id: Uuid) -> bool {
        self.first_time_at(from, id, Instant::now())
    }

    fn first_time_at(&self, from: &PeerKey, id: Uuid, now: Instant) -> bool {
        let key = (from.address(), id);
        let mut g = self.inner.lock();
        while let Some((k, at)) = g.order.front().copied() {
            if now.saturating_duration_since(at) < self.ttl && g.order.len() < self.capacity {
                break;
            }
            g.order.pop_front();
            if g.seen.get(&k) == Some(&at) {
                g.seen.remove(&k);
            }
        }
        if g.seen.contains_key(&key) {
            return false;
        }
        g.seen.insert(key, now);
        g.order.push_back((key, now));
        true
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who must acknowledge a message (by address), and the sender to wake when they do.
type AckWaiter = ([u8; 16], oneshot::Sender<()>);

/// Messages sent and not yet acknowledged, by `msg_id`.
#[derive(Default)]
pub struct PendingAcks {
    waiting: Mutex<HashMap<Uuid, AckWaiter>>,
}

impl PendingAcks {
    /// Expect an ack for `id` from `to`; `None` when too many acks are outstanding.
    pub fn expect(&self, to: &PeerKey, id: Uuid) -> Option<oneshot::Receiver<()>> {
        let mut m = self.waiting.lock();
        if m.len() >= MAX_PENDING_ACKS {
            m.retain(|_, (_, tx)| !tx.is_closed());
            if m.len() >= MAX_PENDING_ACKS {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        m.insert(id, (to.address(), tx));
        Some(rx)
    }

    /// An ack arrived; returns whether a sender was waiting for it.
    pub fn on_ack(&self, from: &PeerKey, id: Uuid) -> bool {
        let mut m = self.waiting.lock();
        match m.get(&id) {
            Some((addr, _)) if *addr == from.address() => {
                m.remove(&id).is_some_and(|(_, tx)| tx.send(()).is_ok())
            }
            _ => false,
        }
    }

    /// Stop waiting for `id` (the sender gave up or was answered otherwise).
    pub fn forget(&self, id: &Uuid) {
        self.waiting.lock().remove(id);
    }

    /// Acks outstanding.
    pub fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// Whether no ack is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The reliable-delivery state of a node: acks it waits for and messages it has handled.
#[derive(Default)]
pub struct Reliable {
    /// Sent messages waiting for their ack.
    pub pending: PendingAcks,
    /// Received messages already handled.
    pub seen: Dedupe,
}

/// Most inbound handlers running at once in their own tasks (those that send or call
/// the chain); beyond that the router drops the message rather than wait.
pub const MAX_SPAWNED_HANDLERS: usize = 1_024;

/// The guards of a node's mesh traffic, owned by its [`crate::mesh::Endpoint`].
pub struct Delivery {
    /// Acks and de-duplication.
    pub reliable: Reliable,
    /// Per-peer limit on every inbound message.
    pub msg_limits: crate::mesh::limits::PeerLimits,
    /// Per-peer limit on inbound tasks.
    pub task_limits: crate::mesh::limits::PeerLimits,
    /// Bounds the handlers the router spawns.
    pub handler_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Delivery {
    /// Guards with the configured limits.
    pub fn new(s: &crate::mesh::DeliverySettings) -> Self {
        Delivery {
            reliable: Reliable::default(),
            msg_limits: crate::mesh::limits::PeerLimits::new(s.peer_msg_rate, s.peer_msg_burst),
            task_limits: crate::mesh::limits::PeerLimits::new(s.peer_task_rate, s.peer_task_burst),
            handler_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SPAWNED_HANDLERS)),
        }
    }
}

/// Why a reliable message was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Undelivered {
    /// No ack before the deadline; the last send's error, if it failed.
    #[error("not acknowledged after {tries} sends{}", last.as_ref().map(|e| format!(" (last: {e})")).unwrap_or_default())]
    NoAck {
        /// How many times it was sent.
        tries: u32,
        /// The last send error.
        last: Option<String>,
    },
    /// The message cannot be encoded.
    #[error("{0}")]
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PeerKey {
        PeerKey([b; 32])
    }

    #[test]
    fn dedupe_sees_each_pair_once_per_sender() {
        let d = Dedupe::default();
        let id = Uuid::new_v4();
        assert!(d.first_time(&key(1), id));
        assert!(!d.first_time(&key(1), id));
        // The same id from another sender is another message.
        assert!(d.first_time(&key(2), id));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn dedupe_is_bounded_and_forgets_after_its_ttl() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        let first = Uuid::new_v4();
        assert!(d.first_time_at(&key(1), first, t0));
        for _ in 0..10_000 {
            d.first_time_at(&key(1), Uuid::new_v4(), t0);
        }
        assert!(d.len() <= 100, "{}", d.len());
        // The oldest was evicted to make room.
        assert!(d.first_time_at(&key(1), first, t0));

        let d = Dedupe::new(100, Duration::from_secs(60));
        let id = Uuid::new_v4();
        assert!(d.first_time_at(&key(1), id, t0));
        assert!(!d.first_time_at(&key(1), id, t0 + Duration::from_secs(59)));
        assert!(d.first_time_at(&key(1), id, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn an_ack_wakes_only_its_sender_and_only_from_the_addressee() {
        let p = PendingAcks::default();
        let id = Uuid::new_v4();
        let mut rx = p.expect(&key(1), id).unwrap();
        assert!(!p.on_ack(&key(2), id), "an ack from another node");
        assert!(rx.try_recv().is_err());
        assert!(p.on_ack(&key(1), id));
        assert!(rx.try_recv().is_ok());
        assert!(!p.on_ack(&key(1), id), "a second ack finds nobody");
        assert!(p.is_empty());
    }
}
