//! What a node knows about the rest of the mesh, above AXL's transport, and how it talks
//! to it reliably.
//!
//! - [`endpoint`]: the node's end of the mesh: sending (bounded, reliable with acks) and
//!   the topology.
//! - [`peers`]: the peer book: every node heard from, by Yggdrasil address (bounded).
//! - [`directory`]: the nodes we can send to, from `/topology`, gossip and their messages,
//!   with failed sends remembered and backed off.
//! - [`gossip`]: the `announce` message: the id exchange with direct peers, providers'
//!   ads to every node they know (how discovery crosses hops; requests are not relayed).
//! - [`ads`]: the ad cache the requester chooses from without a round trip.
//! - [`score`]: which ads qualify and in what order they are tried.
//! - [`history`]: providers' successes, failures, disputes and latency, in SQLite.
//! - [`access`]: `EDGENT_ALLOW` / `EDGENT_DENY`.
//! - [`reliable`]: acks, sending again with backoff, de-duplication on receipt.
//! - [`heartbeat`]: a provider's beats for a job, and the requester's watch on them.
//! - [`limits`]: per-peer token buckets on inbound messages and tasks.
//! - [`handlers`]: the work the router starts for inbound messages, bounded per peer and
//!   in all.
//! - [`queue`]: the provider's job slots and the bounded queue behind them.
//! - [`claims`]: the job ids a provider is taking in: a second task for one is refused
//!   before any stake check.
//! - [`settings`]: the settings of all the above.
//! - [`evict`]: room in a bounded map, the oldest entry giving way to a new key.

pub mod access;
pub mod ads;
pub mod claims;
pub mod directory;
pub mod endpoint;
pub mod evict;
pub mod gossip;
pub mod handlers;
pub mod heartbeat;
pub mod history;
pub mod limits;
pub mod names;
pub mod peers;
pub mod queue;
pub mod reliable;
pub mod score;
pub mod settings;

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

pub use ads::AdCache;
pub use directory::Directory;
pub use endpoint::Endpoint;
pub use history::{ProviderHistory, ProviderOutcome};
pub use peers::{PeerBook, PeerSeen};
pub use settings::DeliverySettings;

/// Most request ids remembered for de-duplication.
pub const MAX_RECENT_IDS: usize = 4096;

/// A bounded set of recently seen ids: the oldest is forgotten first.
#[derive(Default)]
pub struct RecentIds {
    inner: Mutex<(VecDeque<Uuid>, HashSet<Uuid>)>,
}

impl RecentIds {
    /// Remember `id`; true if it was not already remembered.
    pub fn insert(&self, id: Uuid) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (order, set) = &mut *g;
        if !set.insert(id) {
            return false;
        }
        order.push_back(id);
        while order.len() > MAX_RECENT_IDS {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .contains(id)
    }
}

/// What a node knows of the mesh, shared between its router, requester, provider and API:
/// the nodes heard from, those we can send to, providers' ads and history, and whom we
/// listen to.
pub struct MeshState {
    /// Nodes heard from.
    pub peers: PeerBook,
    /// `EDGENT_ALLOW` / `EDGENT_DENY`: whom we learn of, take messages from and choose.
    pub access: access::Access,
    /// Providers' ads.
    pub ads: AdCache,
    /// Nodes we can send to.
    pub directory: Directory,
    /// What we remember of providers.
    pub history: ProviderHistory,
    /// Request ids seen (answered once only).
    pub seen_requests: RecentIds,
    /// Our own recent request ids (their answers are taken even after discovery ended).
    pub my_requests: RecentIds,
    /// How many keys other nodes' `known` lists may add to the directory.
    pub hearsay: limits::HearsayLimits,
    /// The ENS names peers announce, checked against their records.
    pub names: std::sync::Arc<names::NameChecks>,
    /// Nodes new to us, to be greeted with an announcement.
    pub(crate) greet: Mutex<Vec<crate::axl::PeerKey>>,
    /// Wakes the announcer (new nodes to greet).
    pub(crate) wake: tokio::sync::Notify,
}

impl MeshState {
    /// Fresh state over a provider history, with the access lists `access` and the name
    /// checks `names`.
    pub fn new(
        history: ProviderHistory,
        access: access::Access,
        names: std::sync::Arc<names::NameChecks>,
    ) -> Self {
        MeshState {
            names,
            peers: PeerBook::default(),
            access,
            ads: AdCache::default(),
            directory: Directory::default(),
            history,
            seen_requests: RecentIds::default(),
            my_requests: RecentIds::default(),
            hearsay: limits::HearsayLimits::default(),
            greet: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Queue `key` to be greeted (bounded; the announcer sends the greetings).
    pub fn greet(&self, key: crate::axl::PeerKey) {
        {
            let mut g = self.greet.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() >= directory::MAX_KNOWN_NODES || g.contains(&key) {
                return;
            }
            g.push(key);
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded() {
        let r = RecentIds::default();
        let first = Uuid::new_v4();
        assert!(r.insert(first));
        assert!(!r.insert(first));
        for _ in 0..MAX_RECENT_IDS {
            r.insert(Uuid::new_v4());
        }
        assert!(!r.contains(&first));
        assert_eq!(r.inner.lock().unwrap().0.len(), MAX_RECENT_IDS);
    }
}
