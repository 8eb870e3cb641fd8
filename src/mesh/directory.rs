//! The directory: every node this one knows of, from AXL's `/topology`, from the `known`
//! lists other nodes announce, and from their own messages, with what happened when we
//! last sent to each.
//!
//! A spoke's `/topology` lists only itself, its direct peers and their ancestors, so spokes
//! learn of each other from the lists their hub announces. AXL keeps departed nodes in
//! its tree for minutes and a `/send` to one blocks: a node whose send failed is skipped
//! for a back-off that doubles with each failure (5 s up to 5 min), and a node nobody
//! confirmed for [`LEARNED_TTL`] is forgotten. The directory holds at most
//! [`MAX_KNOWN_NODES`] nodes and evicts the one with the oldest news; a node only heard of
//! (named in another node's `known` list, [`Directory::hearsay`]) evicts only another such
//! node, never a direct peer or a node we heard from (threat model line 27).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::axl::PeerKey;

/// Most nodes the directory holds.
pub const MAX_KNOWN_NODES: usize = 512;

/// A node only learnt of (never heard from, no longer in our topology) is forgotten after this.
pub const LEARNED_TTL: Duration = Duration::from_secs(600);

/// A node we heard from is passed on in our announcements for this long.
pub const HEARD_TTL: Duration = Duration::from_secs(300);

/// First back-off after a failed send; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Known {
    key: PeerKey,
    /// Last message from it.
    heard: Option<Instant>,
    /// Last time topology or gossip named it.
    learned: Instant,
    /// Whether it is a direct peer (in our `/topology`'s `peers`, up).
    direct: bool,
    failures: u32,
    retry_after: Option<Instant>,
}

impl Known {
    /// Only heard of: never heard from, not a direct peer.
    fn is_hearsay(&self) -> bool {
        self.heard.is_none() && !self.direct
    }

    fn news(&self) -> Instant {
        self.heard.map_or(self.learned, |h| h.max(self.learned))
    }
}

/// The nodes we know of, by Yggdrasil address.
pub struct Directory {
    inner: Mutex<HashMap<[u8; 16], Known>>,
    capacity: usize,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(MAX_KNOWN_NODES)
    }
}

impl Directory {
    /// An empty directory of at most `capacity` nodes.
    pub fn new(capacity: usize) -> Self {
        Directory {
            inner: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Known>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn upsert(&self, key: PeerKey, now: Instant, f: impl FnOnce(&mut Known)) -> bool {
        self.upsert_as(key, now, false, f)
    }

    fn upsert_as(
        &self,
        key: PeerKey,
        now: Instant,
        hearsay: bool,
        f: impl FnOnce(&mut Known),
    ) -> bool {
        let mut m = self.lock();
        let addr = key.address();
        let new = !m.contains_key(&addr);
        if new && m.len() >= self.capacity {
            let oldest = m
                .iter()
                .filter(|(_, k)| !hearsay || k.is_hearsay())
                .min_by_key(|(_, k)| k.news())
                .map(|(a, _)| *a);
            match oldest {
                Some(a) => {
                    m.remove(&a);
                }
                None => return false,
            }
        }
        let e = m.entry(addr).or_insert_with(|| Known {
            key,
            heard: None,
            learned: now,
            direct: false,
            failures: 0,
            retry_after: None,
        });
        f(e);
        new
    }

    /// A message came from `key` (its full key): it is alive. True if it was new to us.
    pub fn heard(&self, key: PeerKey) -> bool {
        self.heard_at(key, Instant::now())
    }

    /// [`Directory::heard`] at a given time (tests).
    pub fn heard_at(&self, key: PeerKey, now: Instant) -> bool {
        self.upsert(key, now, |k| {
            k.key = key;
            k.heard = Some(now);
            k.failures = 0;
            k.retry_after = None;
        })
    }

    /// Topology or another node named `key` (`direct`: it is our direct peer). True if it
    /// was new to us.
    pub fn learned(&self, key: PeerKey, direct: bool) -> bool {
        self.learned_at(key, direct, Instant::now())
    }

    /// [`Directory::learned`] at a given time (tests).
    pub fn learned_at(&self, key: PeerKey, direct: bool, now: Instant) -> bool {
        self.upsert(key, now, |k| {
            k.learned = now;
            if direct {
                k.direct = true;
            }
        })
    }

    /// Another node's `known` list named `key`. True if it was new to us and taken in: when
    /// the directory is full, only a node itself only heard of makes room for it.
    pub fn hearsay(&self, key: PeerKey) -> bool {
        self.hearsay_at(key, Instant::now())
    }

    /// [`Directory::hearsay`] at a given time (tests).
    pub fn hearsay_at(&self, key: PeerKey, now: Instant) -> bool {
        self.upsert_as(key, now, true, |k| k.learned = now)
    }

    /// Whether `key`'s node is in the directory.
    pub fn knows(&self, key: &PeerKey) -> bool {
        self.lock().contains_key(&key.address())
    }

    /// Nodes held that are only heard of.
    pub fn hearsay_len(&self) -> usize {
        self.lock().values().filter(|k| k.is_hearsay()).count()
    }

    /// The direct peers (as the last `/topology` read found them).
    pub fn direct(&self) -> Vec<PeerKey> {
        self.lock()
            .values()
            .filter(|k| k.direct)
            .map(|k| k.key)
            .collect()
    }

    /// Mark every node not in `direct` as not a direct peer (after a `/topology` read).
    pub fn set_direct(&self, direct: &[PeerKey]) {
        let addrs: Vec<[u8; 16]> = direct.iter().map(|k| k.address()).collect();
        for (a, k) in self.lock().iter_mut() {
            k.direct = addrs.contains(a);
        }
    }

    /// A send to `key` failed: skip it for a back-off that doubles with each failure.
    pub fn send_failed(&self, key: &PeerKey) {
        self.send_failed_at(key, Instant::now());
    }

    /// [`Directory::send_failed`] at a given time (tests).
    pub fn send_failed_at(&self, key: &PeerKey, now: Instant) {
        if let Some(k) = self.lock().get_mut(&key.address()) {
            k.failures = k.failures.saturating_add(1);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1u32 << (k.failures - 1).min(16))
                .min(MAX_BACKOFF);
            k.retry_after = Some(now + backoff);
        }
    }

    /// A send to `key` was accepted.
    pub fn send_ok(&self, key: &PeerKey) {
        if let Some(k) = self.lock().get_mut(&key.address()) {
            k.failures = 0;
            k.retry_after = None;
        }
    }

    /// Whether a send to `key` should be tried now (unknown nodes: yes).
    pub fn sendable(&self, key: &PeerKey) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&key.address())
            .is_none_or(|k| k.retry_after.is_none_or(|t| t <= now))
    }

    /// The nodes to send to now (not backing off), newest news first.
    pub fn targets(&self) -> Vec<PeerKey> {
        self.targets_at(Instant::now())
    }

    /// [`Directory::targets`] at a given time (tests).
    pub fn targets_at(&self, now: Instant) -> Vec<PeerKey> {
        let m = self.lock();
        let mut v: Vec<&Known> = m
            .values()
            .filter(|k| k.retry_after.is_none_or(|t| t <= now))
            .collect();
        v.sort_by_key(|k| std::cmp::Reverse(k.news()));
        v.into_iter().map(|k| k.key).collect()
    }

    /// Direct peers to send to now.
    pub fn direct_targets(&self) -> Vec<PeerKey> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|k| k.direct && k.retry_after.is_none_or(|t| t <= now))
            .map(|k| k.key)
            .collect()
    }

    /// The nodes worth passing on to others: heard from within [`HEARD_TTL`] or direct
    /// peers, not failing, newest first, at most `max`, `except` left out.
    pub fn gossip(&self, max: usize, except: &PeerKey) -> Vec<PeerKey> {
        self.gossip_at(max, except, Instant::now())
    }

    /// [`Directory::gossip`] at a given time (tests).
    pub fn gossip_at(&self, max: usize, except: &PeerKey, now: Instant) -> Vec<PeerKey> {
        let m = self.lock();
        let mut v: Vec<&Known> = m
            .values()
            .filter(|k| {
                k.failures == 0
                    && !k.key.same_node(except)
                    && (k.direct || k.heard.is_some_and(|h| now.duration_since(h) < HEARD_TTL))
            })
            .collect();
        v.sort_by_key(|k| std::cmp::Reverse(k.news()));
        v.into_iter().take(max).map(|k| k.key).collect()
    }

    /// Forget nodes with no news for [`LEARNED_TTL`].
    pub fn expire(&self) {
        self.expire_at(Instant::now());
    }

    /// [`Directory::expire`] at a given time (tests).
    pub fn expire_at(&self, now: Instant) {
        self.lock()
            .retain(|_, k| now.saturating_duration_since(k.news()) < LEARNED_TTL);
    }

    /// Nodes held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::axl::identity::test_key as k;

    #[test]
    fn bounded_and_evicts_the_oldest_news() {
        let d = Directory::new(3);
        let t0 = Instant::now();
        for i in 1..=3u8 {
            d.learned_at(k(i), false, t0 + Duration::from_secs(u64::from(i)));
        }
        // Node 1 speaks up: its news is now the newest.
        d.heard_at(k(1), t0 + Duration::from_secs(10));
        assert!(d.learned_at(k(4), false, t0 + Duration::from_secs(11)));
        assert_eq!(d.len(), 3);
        let t = d.targets_at(t0 + Duration::from_secs(12));
        assert_eq!(t, vec![k(4), k(1), k(3)]);
    }

    #[test]
    fn hearsay_never_evicts_a_node_heard_from_or_a_direct_peer() {
        let d = Directory::new(3);
        let t0 = Instant::now();
        d.heard_at(k(1), t0);
        d.learned_at(k(2), true, t0);
        assert!(d.hearsay_at(k(3), t0));
        // Full: a new hearsay key evicts only the older hearsay key.
        assert!(d.hearsay_at(k(4), t0 + Duration::from_secs(1)));
        assert!(d.knows(&k(1)) && d.knows(&k(2)) && !d.knows(&k(3)));
        assert_eq!(d.hearsay_len(), 1);
        // With no hearsay entry left to evict, hearsay is not taken in.
        d.heard_at(k(4), t0 + Duration::from_secs(2));
        assert!(!d.hearsay_at(k(5), t0 + Duration::from_secs(3)));
        assert_eq!(d.len(), 3);
        assert!(!d.knows(&k(5)));
    }

    #[test]
    fn failed_nodes_back_off_and_come_back() {
        let d = Directory::new(8);
        let t0 = Instant::now();
        d.learned_at(k(1), false, t0);
        d.learned_at(k(2), false, t0);
        d.send_failed_at(&k(2), t0);
        assert_eq!(d.targets_at(t0 + Duration::from_secs(1)), vec![k(1)]);
        assert_eq!(d.targets_at(t0 + FIRST_BACKOFF).len(), 2);
        // A second failure doubles the wait; many more cap it.
        d.send_failed_at(&k(2), t0);
        assert_eq!(d.targets_at(t0 + FIRST_BACKOFF).len(), 1);
        for _ in 0..40 {
            d.send_failed_at(&k(2), t0);
        }
        assert_eq!(
            d.targets_at(t0 + MAX_BACKOFF - Duration::from_secs(1))
                .len(),
            1
        );
        assert_eq!(d.targets_at(t0 + MAX_BACKOFF).len(), 2);
        // Hearing from it clears the failures.
        d.heard_at(k(2), t0);
        assert_eq!(d.targets_at(t0).len(), 2);
    }

    #[test]
    fn gossip_passes_on_live_nodes_only_and_is_bounded() {
        let d = Directory::new(100);
        let t0 = Instant::now();
        for i in 1..=50u8 {
            d.heard_at(k(i), t0);
        }
        d.learned_at(k(60), false, t0); // never heard from: not passed on
        d.learned_at(k(61), true, t0); // a direct peer: passed on
        d.send_failed_at(&k(1), t0); // failing: not passed on
        let g = d.gossip_at(1000, &k(2), t0);
        assert_eq!(
            g.len(),
            49,
            "50 heard - 1 failing - the receiver + 1 direct"
        );
        assert!(!g.contains(&k(60)) && g.contains(&k(61)) && !g.contains(&k(2)));
        assert_eq!(d.gossip_at(10, &k(2), t0).len(), 10);
        // Heard too long ago: no longer passed on.
        assert_eq!(d.gossip_at(1000, &k(2), t0 + HEARD_TTL).len(), 1);
    }

    #[test]
    fn nodes_without_news_expire() {
        let d = Directory::new(8);
        let t0 = Instant::now();
        d.learned_at(k(1), false, t0);
        d.heard_at(k(2), t0 + Duration::from_secs(100));
        d.expire_at(t0 + LEARNED_TTL);
        assert_eq!(d.targets_at(t0 + LEARNED_TTL), vec![k(2)]);
    }
}
