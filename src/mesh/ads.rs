//! The ad cache: what each provider last said it serves (from its announcements and from
//! its answers to our `resource_request`s), each entry kept until its age limit.
//!
//! The requester chooses from the fresh entries at once, with no mesh round trip, and
//! broadcasts only when nothing fresh serves the model. The cache holds at most
//! [`AdCache::capacity`] providers; when full, the entry heard from longest ago goes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::evict::evict_oldest;
use crate::axl::PeerKey;
use crate::inference::model_matches;
use crate::protocol::ResourceAd;

/// Most providers the cache holds.
pub const MAX_CACHED_ADS: usize = 1024;

/// Longest an ad is kept, whatever its sender asks.
pub const MAX_AD_TTL: Duration = Duration::from_secs(600);

/// Age limit of an ad that came as the answer to a `resource_request`.
pub const ANSWER_AD_TTL: Duration = Duration::from_secs(60);

struct Entry {
    ad: ResourceAd,
    received: Instant,
    expires: Instant,
}

/// Ads by provider, each with its age limit.
pub struct AdCache {
    inner: Mutex<HashMap<[u8; 16], Entry>>,
    capacity: usize,
    version: watch::Sender<u64>,
}

/// A cached provider as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CachedProvider {
    /// Its full key.
    pub node_id: String,
    /// Its ENS name.
    pub ens: Option<String>,
    /// What it serves, with sizes and whether loaded.
    pub models: Vec<crate::protocol::ModelOffer>,
    /// Price per job, USDC base units.
    pub price: u64,
    /// In-flight load, 0..=1.
    pub load: f64,
    /// Free memory, MiB.
    pub free_memory_mb: u64,
    /// Its edgent version.
    pub version: String,
    /// Age of the ad, ms.
    pub age_ms: u64,
}

/// A model served somewhere on the mesh, for `/api/tags`-style lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeshModel {
    /// The model name.
    pub name: String,
    /// Its size in bytes, when a provider said.
    pub size_bytes: Option<u64>,
    /// How many fresh providers serve it.
    pub providers: usize,
}

impl Default for AdCache {
    fn default() -> Self {
        AdCache::new(MAX_CACHED_ADS)
    }
}

impl AdCache {
    /// An empty cache holding at most `capacity` providers.
    pub fn new(capacity: usize) -> Self {
        AdCache {
            inner: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            version: watch::channel(0).0,
        }
    }

    /// Most providers it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `ad` (replacing the provider's previous one) for `ttl`, capped at [`MAX_AD_TTL`].
    pub fn insert(&self, ad: ResourceAd, ttl: Duration) {
        self.insert_at(ad, ttl, Instant::now());
    }

    /// [`AdCache::insert`] at a given time (tests).
    pub fn insert_at(&self, mut ad: ResourceAd, ttl: Duration, now: Instant) {
        ad.request_id = Uuid::nil();
        let addr = ad.node_id.address();
        {
            let mut m = self.lock();
            m.retain(|_, e| e.expires > now);
            evict_oldest(&mut m, &addr, self.capacity, |e| e.received);
            m.insert(
                addr,
                Entry {
                    ad,
                    received: now,
                    expires: now + ttl.min(MAX_AD_TTL),
                },
            );
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Forget a provider's ad (it stopped serving, or it is denied).
    pub fn remove(&self, node: &PeerKey) {
        let removed = self.lock().remove(&node.address()).is_some();
        if removed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// Watch for changes: the value moves on at every insert or removal.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The fresh ads that list `model`.
    pub fn fresh_for(&self, model: &str) -> Vec<ResourceAd> {
        self.fresh_for_at(model, Instant::now())
    }

    /// [`AdCache::fresh_for`] at a given time (tests).
    pub fn fresh_for_at(&self, model: &str, now: Instant) -> Vec<ResourceAd> {
        self.lock()
            .values()
            .filter(|e| e.expires > now && e.ad.models.iter().any(|m| model_matches(model, m)))
            .map(|e| e.ad.clone())
            .collect()
    }

    /// Every fresh ad.
    pub fn fresh(&self) -> Vec<ResourceAd> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|e| e.expires > now)
            .map(|e| e.ad.clone())
            .collect()
    }

    /// Providers with a fresh ad, for `/status`, newest first.
    pub fn providers(&self) -> Vec<CachedProvider> {
        let now = Instant::now();
        let m = self.lock();
        let mut out: Vec<(Instant, CachedProvider)> = m
            .values()
            .filter(|e| e.expires > now)
            .map(|e| {
                (
                    e.received,
                    CachedProvider {
                        node_id: e.ad.node_id.to_hex(),
                        ens: e.ad.ens.clone(),
                        models: offers(&e.ad),
                        price: e.ad.price,
                        load: e.ad.load,
                        free_memory_mb: e.ad.free_memory_mb,
                        version: e.ad.version.clone(),
                        age_ms: now.duration_since(e.received).as_millis() as u64,
                    },
                )
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// The models fresh providers serve, once each, by name (what a front door's
    /// `/api/tags` adds to the local models).
    pub fn models(&self) -> Vec<MeshModel> {
        let mut out: Vec<MeshModel> = Vec::new();
        for ad in self.fresh() {
            for o in offers(&ad) {
                match out.iter_mut().find(|m| model_matches(&m.name, &o.name)) {
                    Some(m) => {
                        m.providers += 1;
                        m.size_bytes = m.size_bytes.or(o.size_bytes);
                    }
                    None => out.push(MeshModel {
                        name: o.name,
                        size_bytes: o.size_bytes,
                        providers: 1,
                    }),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Entries held (fresh or not yet purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ad's models with their details: `model_info` where the provider sent it, else the
/// bare names.
pub fn offers(ad: &ResourceAd) -> Vec<crate::protocol::ModelOffer> {
    ad.models
        .iter()
        .map(|name| {
            ad.model_info
                .iter()
                .find(|o| &o.name == name)
                .cloned()
                .unwrap_or(crate::protocol::ModelOffer {
                    name: name.clone(),
                    ..Default::default()
                })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ad from node `id` for `models`.
    pub(crate) fn ad(id: u8, models: &[&str]) -> ResourceAd {
        ResourceAd {
            request_id: Uuid::new_v4(),
            node_id: PeerKey([id; 32]),
            ens: None,
            wallet: None,
            models: models.iter().map(|s| s.to_string()).collect(),
            free_memory_mb: 8000,
            price: 10,
            load: 0.0,
            version: "t".into(),
            model_info: Vec::new(),
            slots: None,
            queue: None,
        }
    }

    #[test]
    fn ads_age_out() {
        let c = AdCache::new(8);
        let t0 = Instant::now();
        c.insert_at(ad(1, &["m"]), Duration::from_secs(10), t0);
        c.insert_at(ad(2, &["m:latest"]), Duration::from_secs(30), t0);
        assert_eq!(c.fresh_for_at("m", t0 + Duration::from_secs(5)).len(), 2);
        let later = c.fresh_for_at("m", t0 + Duration::from_secs(11));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].node_id, PeerKey([2; 32]));
        assert!(c.fresh_for_at("m", t0 + Duration::from_secs(31)).is_empty());
        assert!(c.fresh_for_at("other", t0).is_empty());
    }

    #[test]
    fn ttl_is_capped() {
        let c = AdCache::new(8);
        let t0 = Instant::now();
        c.insert_at(ad(1, &["m"]), Duration::from_secs(86_400), t0);
        assert_eq!(
            c.fresh_for_at("m", t0 + MAX_AD_TTL - Duration::from_secs(1))
                .len(),
            1
        );
        assert!(c.fresh_for_at("m", t0 + MAX_AD_TTL).is_empty());
    }

    #[test]
    fn a_newer_ad_replaces_and_the_oldest_is_evicted_when_full() {
        let c = AdCache::new(3);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        for i in 1..=3u8 {
            c.insert_at(ad(i, &["m"]), ttl, t0 + Duration::from_millis(u64::from(i)));
        }
        // Node 1 again: replaced, not added; the cache still holds three.
        let mut newer = ad(1, &["m", "n"]);
        newer.price = 5;
        c.insert_at(newer, ttl, t0 + Duration::from_millis(10));
        assert_eq!(c.len(), 3);
        assert_eq!(c.fresh_for_at("n", t0).len(), 1);
        // A fourth provider evicts the oldest heard from: node 2.
        c.insert_at(ad(4, &["m"]), ttl, t0 + Duration::from_millis(11));
        assert_eq!(c.len(), 3);
        let ids: Vec<u8> = c
            .fresh_for_at("m", t0)
            .iter()
            .map(|a| a.node_id.0[0])
            .collect();
        assert!(!ids.contains(&2), "{ids:?}");
        assert!(ids.contains(&1) && ids.contains(&3) && ids.contains(&4));
    }

    #[test]
    fn models_lists_each_once_and_subscribers_see_changes() {
        let c = AdCache::new(8);
        let mut rx = c.subscribe();
        let mut a = ad(1, &["tinyllama:latest"]);
        a.model_info = vec![crate::protocol::ModelOffer {
            name: "tinyllama:latest".into(),
            size_bytes: Some(42),
            loaded: true,
            ..Default::default()
        }];
        c.insert(a, Duration::from_secs(60));
        c.insert(ad(2, &["tinyllama", "llama3:8b"]), Duration::from_secs(60));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        let models = c.models();
        assert_eq!(models.len(), 2, "{models:?}");
        assert_eq!(models[0].name, "llama3:8b");
        assert_eq!(models[1].providers, 2);
        assert_eq!(models[1].size_bytes, Some(42));
        c.remove(&PeerKey([2; 32]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(c.providers().len(), 1);
    }
}
