//! The peer book: the nodes this node has heard from, keyed by Yggdrasil address (so the
//! partial key AXL reports in `X-From-Peer-Id` finds the full key a message carried).
//! It holds at most [`MAX_PEERS`] nodes; when full, the one heard from longest ago goes.

use std::collections::HashMap;
use std::sync::Mutex;

use super::evict::evict_oldest;
use crate::axl::PeerKey;
use crate::jobs::now_ms;

/// Most nodes the peer book holds.
pub const MAX_PEERS: usize = 1024;

/// Most model names kept per node.
const MAX_MODELS_PER_PEER: usize = 64;

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
        let addr = node_id.address();
        evict_oldest(&mut m, &addr, MAX_PEERS, |p| p.last_seen_ms);
        let e = m.entry(addr).or_insert_with(|| PeerSeen {
            node_id,
            ens: None,
            models: Vec::new(),
            last_seen_ms: 0,
        });
        e.node_id = node_id;
        if ens.is_some() {
            e.ens = ens;
        }
        if let Some(mut models) = models {
            models.truncate(MAX_MODELS_PER_PEER);
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

    /// Nodes held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_book_is_bounded() {
        let b = PeerBook::default();
        for i in 0..(MAX_PEERS as u32 + 10) {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[4] = 0x80;
            b.saw(PeerKey(k), None, Some(vec!["m".into(); 100]));
        }
        assert_eq!(b.len(), MAX_PEERS);
        let mut last = [0u8; 32];
        last[..4].copy_from_slice(&(MAX_PEERS as u32 + 9).to_be_bytes());
        last[4] = 0x80;
        assert_eq!(
            b.get(&PeerKey(last)).unwrap().models.len(),
            MAX_MODELS_PER_PEER
        );
    }
}
