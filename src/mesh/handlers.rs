//! The work the router starts for inbound messages, bounded per peer and in all (threat
//! model line 26): every handler that sends, waits or calls the chain (a task, an ack, a
//! result, a payment message, a discovery request) runs in its own task only while its
//! sender holds fewer than `PEER_MAX_HANDLERS` and the node fewer than
//! `MAX_HANDLERS`; beyond that the message is dropped, with a log line and a count
//! (`edgent_bounded{table="handlers_dropped"}`). A dropped reliable message is not
//! acknowledged, so an honest sender sends it again.

use std::collections::HashMap;
use std::future::Future;

use parking_lot::Mutex;

use crate::axl::PeerKey;

/// Most handlers running at once (`MAX_HANDLERS`'s default).
pub const MAX_HANDLERS: usize = 1_024;

/// Most handlers running at once for one peer (`PEER_MAX_HANDLERS`'s default).
pub const PEER_MAX_HANDLERS: usize = 64;

/// The handlers running now, by sender address, with their peaks and the drops.
pub struct HandlerSlots {
    inner: Mutex<Inner>,
    capacity: usize,
    per_peer: usize,
}

#[derive(Default)]
struct Inner {
    by_peer: HashMap<[u8; 16], usize>,
    running: usize,
    peak: usize,
    peer_peak: usize,
    dropped: u64,
}

/// What [`HandlerSlots`] held and refused, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerCounts {
    /// Handlers running now.
    pub running: usize,
    /// The most ever running at once.
    pub peak: usize,
    /// The most ever running at once for one peer.
    pub peer_peak: usize,
    /// Messages dropped because their sender or the node was at its bound.
    pub dropped: u64,
}

/// A place taken in [`HandlerSlots`], given back when dropped.
pub struct HandlerPermit<'a> {
    slots: &'a HandlerSlots,
    addr: [u8; 16],
}

impl Drop for HandlerPermit<'_> {
    fn drop(&mut self) {
        let mut g = self.slots.inner.lock();
        g.running = g.running.saturating_sub(1);
        if let Some(n) = g.by_peer.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                g.by_peer.remove(&self.addr);
            }
        }
    }
}

impl Default for HandlerSlots {
    fn default() -> Self {
        HandlerSlots::new(MAX_HANDLERS, PEER_MAX_HANDLERS)
    }
}

impl HandlerSlots {
    /// At most `capacity` handlers in all and `per_peer` for one sender.
    pub fn new(capacity: usize, per_peer: usize) -> Self {
        HandlerSlots {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            per_peer: per_peer.max(1),
        }
    }

    /// Take a place for a handler of `from`'s message, or `None` (counted as dropped)
    /// when `from` or the node is at its bound.
    pub fn try_take(&self, from: &PeerKey) -> Option<HandlerPermit<'_>> {
        let addr = from.address();
        let mut g = self.inner.lock();
        let mine = g.by_peer.get(&addr).copied().unwrap_or(0);
        if g.running >= self.capacity || mine >= self.per_peer {
            g.dropped += 1;
            return None;
        }
        g.running += 1;
        g.by_peer.insert(addr, mine + 1);
        g.peak = g.peak.max(g.running);
        g.peer_peak = g.peer_peak.max(mine + 1);
        Some(HandlerPermit { slots: self, addr })
    }

    /// Run `fut` in its own task holding a place for `from`; returns false (and runs
    /// nothing) when there is none.
    pub fn spawn(
        self: &std::sync::Arc<Self>,
        from: &PeerKey,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        if self.try_take(from).map(std::mem::forget).is_none() {
            return false;
        }
        let (slots, addr) = (self.clone(), from.address());
        tokio::spawn(async move {
            let _permit = HandlerPermit {
                slots: &slots,
                addr,
            };
            fut.await;
        });
        true
    }

    /// What is held and was refused.
    pub fn counts(&self) -> HandlerCounts {
        let g = self.inner.lock();
        HandlerCounts {
            running: g.running,
            peak: g.peak,
            peer_peak: g.peer_peak,
            dropped: g.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::axl::identity::test_key as key;

    #[test]
    fn handlers_are_bounded_per_peer_and_in_all() {
        let s = HandlerSlots::new(10, 4);
        let mine: Vec<_> = (0..100).filter_map(|_| s.try_take(&key(1))).collect();
        assert_eq!(mine.len(), 4);
        let others: Vec<_> = (2..10u8)
            .flat_map(|b| (0..4).map(move |_| b))
            .filter_map(|b| s.try_take(&key(b)))
            .collect();
        assert_eq!(others.len(), 6);
        assert_eq!(
            s.counts(),
            HandlerCounts {
                running: 10,
                peak: 10,
                peer_peak: 4,
                dropped: 96 + 26
            }
        );
        drop(mine);
        assert_eq!(s.counts().running, 6);
        assert!(s.try_take(&key(1)).is_some());
    }

    #[tokio::test]
    async fn a_spawned_handler_gives_its_place_back() {
        let s = std::sync::Arc::new(HandlerSlots::new(1, 1));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(s.spawn(&key(1), async move {
            let _ = rx.await;
        }));
        assert!(!s.spawn(&key(2), async {}), "the node is at its bound");
        tx.send(()).unwrap();
        for _ in 0..100 {
            if s.counts().running == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(s.counts().running, 0);
        assert_eq!(s.counts().dropped, 1);
    }
}
