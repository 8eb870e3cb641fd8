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

/// Most messages awaiting their ack at once (`MAX_PENDING_ACKS`'s default); beyond that a
/// send gets no ack tracking and is sent once, like an unreliable one.
pub const MAX_PENDING_ACKS: usize = 65_536;

/// Most messages awaiting the ack of one peer at once (`PEER_MAX_PENDING_ACKS`'s default):
/// a peer that never acks holds at most this many entries (threat model line 25).
pub const PEER_MAX_PENDING_ACKS: usize = 256;

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

    /// Forget `(from, id)` (it was dropped unhandled): its next copy is handled.
    pub fn forget(&self, from: &PeerKey, id: Uuid) {
        self.inner.lock().seen.remove(&(from.address(), id));
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

/// Messages sent and not yet acknowledged, by `msg_id`, bounded in all and per peer.
pub struct PendingAcks {
    inner: Mutex<PendingInner>,
    capacity: usize,
    per_peer: usize,
}

#[derive(Default)]
struct PendingInner {
    waiting: HashMap<Uuid, AckWaiter>,
    by_peer: HashMap<[u8; 16], usize>,
    peak: usize,
    peer_peak: usize,
}

impl PendingInner {
    fn take(&mut self, id: &Uuid) -> Option<AckWaiter> {
        let w = self.waiting.remove(id)?;
        if let Some(n) = self.by_peer.get_mut(&w.0) {
            *n -= 1;
            if *n == 0 {
                self.by_peer.remove(&w.0);
            }
        }
        Some(w)
    }

    /// Drop the entries whose sender stopped waiting.
    fn prune(&mut self) {
        self.waiting.retain(|_, (_, tx)| !tx.is_closed());
        self.by_peer.clear();
        for (addr, _) in self.waiting.values() {
            *self.by_peer.entry(*addr).or_default() += 1;
        }
    }

    fn full(&self, addr: &[u8; 16], capacity: usize, per_peer: usize) -> bool {
        self.waiting.len() >= capacity || self.by_peer.get(addr).copied().unwrap_or(0) >= per_peer
    }
}

impl Default for PendingAcks {
    fn default() -> Self {
        PendingAcks::new(MAX_PENDING_ACKS, PEER_MAX_PENDING_ACKS)
    }
}

impl PendingAcks {
    /// At most `capacity` entries in all and `per_peer` for one addressee.
    pub fn new(capacity: usize, per_peer: usize) -> Self {
        PendingAcks {
            inner: Mutex::new(PendingInner::default()),
            capacity: capacity.max(1),
            per_peer: per_peer.max(1),
        }
    }

    /// Expect an ack for `id` from `to`; `None` when too many acks are outstanding, in all
    /// or from `to`.
    pub fn expect(&self, to: &PeerKey, id: Uuid) -> Option<oneshot::Receiver<()>> {
        let addr = to.address();
        let mut m = self.inner.lock();
        if m.full(&addr, self.capacity, self.per_peer) {
            m.prune();
            if m.full(&addr, self.capacity, self.per_peer) {
                tracing::debug!(to = %to.short(), pending = m.waiting.len(), "too many acks outstanding: sent once");
                return None;
            }
        }
        // A repeated id (never for fresh UUIDs) replaces the old entry.
        m.take(&id);
        let (tx, rx) = oneshot::channel();
        m.waiting.insert(id, (addr, tx));
        let n = {
            let n = m.by_peer.entry(addr).or_default();
            *n += 1;
            *n
        };
        m.peak = m.peak.max(m.waiting.len());
        m.peer_peak = m.peer_peak.max(n);
        Some(rx)
    }

    /// An ack arrived; returns whether a sender was waiting for it.
    pub fn on_ack(&self, from: &PeerKey, id: Uuid) -> bool {
        let mut m = self.inner.lock();
        match m.waiting.get(&id) {
            Some((addr, _)) if *addr == from.address() => {
                m.take(&id).is_some_and(|(_, tx)| tx.send(()).is_ok())
            }
            _ => false,
        }
    }

    /// Stop waiting for `id` (the sender gave up or was answered otherwise).
    pub fn forget(&self, id: &Uuid) {
        self.inner.lock().take(id);
    }

    /// Acks outstanding.
    pub fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    /// Whether no ack is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Acks outstanding from `peer`.
    pub fn len_for(&self, peer: &PeerKey) -> usize {
        let addr = peer.address();
        self.inner.lock().by_peer.get(&addr).copied().unwrap_or(0)
    }

    /// The most acks ever outstanding at once: in all, and from one peer.
    pub fn peaks(&self) -> (usize, usize) {
        let m = self.inner.lock();
        (m.peak, m.peer_peak)
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

impl Reliable {
    /// Acks bounded by `capacity` in all and `per_peer` from one peer.
    pub fn new(capacity: usize, per_peer: usize) -> Self {
        Reliable {
            pending: PendingAcks::new(capacity, per_peer),
            seen: Dedupe::default(),
        }
    }
}

/// The guards of a node's mesh traffic, owned by its [`crate::mesh::Endpoint`].
pub struct Delivery {
    /// Acks and de-duplication.
    pub reliable: Reliable,
    /// Per-peer limit on every inbound message.
    pub msg_limits: crate::mesh::limits::PeerLimits,
    /// Per-peer limit on inbound tasks.
    pub task_limits: crate::mesh::limits::PeerLimits,
    /// Bounds the handlers the router spawns, per peer and in all.
    pub handlers: std::sync::Arc<crate::mesh::handlers::HandlerSlots>,
}

impl Delivery {
    /// Guards with the configured limits.
    pub fn new(s: &crate::mesh::DeliverySettings) -> Self {
        Delivery {
            reliable: Reliable::new(s.max_pending_acks, s.peer_max_pending_acks),
            msg_limits: crate::mesh::limits::PeerLimits::new(s.peer_msg_rate, s.peer_msg_burst),
            task_limits: crate::mesh::limits::PeerLimits::new(s.peer_task_rate, s.peer_task_burst),
            handlers: std::sync::Arc::new(crate::mesh::handlers::HandlerSlots::new(
                s.max_handlers,
                s.peer_max_handlers,
            )),
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

    use crate::axl::identity::test_key as key;

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

    #[test]
    fn pending_acks_are_bounded_per_peer_and_in_all() {
        let p = PendingAcks::new(10, 4);
        let held: Vec<_> = (0..100)
            .filter_map(|_| p.expect(&key(1), Uuid::new_v4()))
            .collect();
        assert_eq!(held.len(), 4, "one peer holds at most its quota");
        assert_eq!(p.len_for(&key(1)), 4);
        // Another peer still gets entries; the whole table stops at its capacity.
        let others: Vec<_> = (2..10u8)
            .flat_map(|b| (0..4).map(move |_| (b, Uuid::new_v4())))
            .filter_map(|(b, id)| p.expect(&key(b), id).map(|rx| (id, rx)))
            .collect();
        assert_eq!(others.len(), 6);
        assert_eq!(p.len(), 10);
        assert_eq!(p.peaks(), (10, 4));
        // Forgetting and acking free the quota; a dropped receiver's entry is pruned when full.
        let (id, _rx) = &others[0];
        assert!(p.on_ack(&key(2), *id));
        assert_eq!(p.len_for(&key(2)), 3);
        drop(held);
        assert!(p.expect(&key(1), Uuid::new_v4()).is_some());
        assert_eq!(p.len_for(&key(1)), 1);
        assert_eq!(p.len(), 6);
    }
}
