//! The peer book: the nodes this node has heard from, keyed by Yggdrasil address (so the
//! partial key AXL reports in `X-From-Peer-Id` finds the full key a message carried).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::axl::PeerKey;
use crate::jobs::now_ms;

/// What we have learnt about another node from its messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerSeen {
    /// Its full key.
    pub node_id: PeerKey,
    /// Its ENS name, if it told us.
    pub ens: Option<String>,
    /// Models it advertised.
    pub models: Vec<String>,
    /// When we last heard from it, unix ms.
    pub last_seen_ms: u64,
}

/// Nodes we have heard from, keyed by Yggdrasil address (so a partial key from
/// `X-From-Peer-Id` finds the full key a message carried).
#[derive(Default)]
pub struct PeerBook {
    inner: Mutex<HashMap<[u8; 16], PeerSeen>>,
}

impl PeerBook {
    /// Record a node by its full key.
    pub fn saw(&self, node_id: PeerKey, ens: Option<String>, models: Option<Vec<String>>) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(node_id.address()).or_insert_with(|| PeerSeen {
            node_id,
            ens: None,
            models: Vec::new(),
            last_seen_ms: 0,
        });
        e.node_id = node_id;
        if ens.is_some() {
            e.ens = ens;
        }
        if let Some(models) = models {
            e.models = models;
        }
        e.last_seen_ms = now_ms();
    }

    /// The full key for a (possibly partial) key, if we know the node.
    pub fn full_key(&self, key: &PeerKey) -> Option<PeerKey> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key.address()).map(|p| p.node_id)
    }

    /// What we know about a node.
    pub fn get(&self, key: &PeerKey) -> Option<PeerSeen> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key.address()).cloned()
    }

    /// Every model the nodes heard from advertised, each once, sorted.
    pub fn models(&self) -> Vec<String> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<String> = m.values().flat_map(|p| p.models.iter().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }
}
