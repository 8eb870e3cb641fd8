//! Per-peer rate limits: a token bucket per sender (by Yggdrasil address) for all inbound
//! messages, and one for tasks. A peer that floods loses its excess messages at the router
//! before they cost any work; others are not affected.
//!
//! Hand-written rather than `governor`'s keyed limiter because the map of buckets must
//! stay bounded under a flood from many keys: when it is full, idle buckets (refilled to
//! their burst, so forgetting them changes nothing) are evicted first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::axl::PeerKey;

/// Most peers tracked per limit.
pub const MAX_TRACKED_PEERS: usize = 4_096;

/// A token bucket: `burst` tokens, refilled at `rate` a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(burst.max(1)),
            last: now,
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
        }
    }

    /// A full bucket refilled at `rate` tokens a second, which may be below one.
    pub fn with_rate(rate: f64, burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(burst.max(1)),
            last: now,
            rate: rate.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
        }
    }

    /// Put back a token taken for something that turned out to cost nothing (never above
    /// the burst).
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full (refilled to its burst) at `now`.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// One token bucket per peer, bounded in number.
pub struct PeerLimits {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<[u8; 16], TokenBucket>>,
}

impl PeerLimits {
    /// `rate` a second per peer, with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        PeerLimits {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `peer` may send one more now (and count it).
    pub fn allow(&self, peer: &PeerKey) -> bool {
        self.allow_at(peer, Instant::now())
    }

    fn allow_at(&self, peer: &PeerKey, now: Instant) -> bool {
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let addr = peer.address();
        if !m.contains_key(&addr) && m.len() >= MAX_TRACKED_PEERS {
            m.retain(|_, b| !b.is_full(now));
            if m.len() >= MAX_TRACKED_PEERS {
                // Every tracked peer is active: a flood from many keys. Refuse newcomers
                // until some bucket refills rather than grow without bound.
                return false;
            }
        }
        m.entry(addr)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .try_take(now)
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// New keys one peer's `known` lists may add to the directory: a burst, then one a
/// second (threat model line 27).
pub const HEARSAY_PEER: (u32, u32) = (1, 64);

/// New keys all peers' `known` lists together may add: a burst, then eight a second.
pub const HEARSAY_ALL: (u32, u32) = (8, 256);

/// How many keys only heard of (named in another node's `known` list) the directory takes
/// in: per peer and in all, each a token bucket.
pub struct HearsayLimits {
    per_peer: PeerLimits,
    all: Mutex<TokenBucket>,
}

impl Default for HearsayLimits {
    fn default() -> Self {
        HearsayLimits {
            per_peer: PeerLimits::new(HEARSAY_PEER.0, HEARSAY_PEER.1),
            all: Mutex::new(TokenBucket::new(
                HEARSAY_ALL.0,
                HEARSAY_ALL.1,
                Instant::now(),
            )),
        }
    }
}

impl HearsayLimits {
    /// Whether one more new key named by `from` may be taken in now (and count it).
    pub fn allow(&self, from: &PeerKey) -> bool {
        self.per_peer.allow(from)
            && self
                .all
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 5);
        // 0.5 s at 10/s gives 5 more, never above the burst.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| b.try_take(t1)).count(), 5);
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(t2)).count(), 5);
    }

    #[test]
    fn peers_are_limited_separately_and_the_map_stays_bounded() {
        let l = PeerLimits::new(1, 3);
        let t0 = Instant::now();
        let a = PeerKey([1; 32]);
        let b = PeerKey([2; 32]);
        assert_eq!((0..10).filter(|_| l.allow_at(&a, t0)).count(), 3);
        assert!(l.allow_at(&b, t0), "another peer is not affected");

        let l = PeerLimits::new(1, 1);
        for i in 0..(MAX_TRACKED_PEERS as u32 + 500) {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            l.allow_at(&PeerKey(k), t0);
        }
        assert!(l.tracked() <= MAX_TRACKED_PEERS);
        // Once the buckets refill, idle peers are evicted and newcomers admitted.
        assert!(l.allow_at(&PeerKey([9; 32]), t0 + Duration::from_secs(5)));
    }
}
