//! The AXL node, as the rest of the daemon sees it.
//!
//! - [`identity`]: Yggdrasil address derivation; peer keys and the partial key AXL
//!   reports in `X-From-Peer-Id`.
//! - [`client`]: the HTTP client for AXL's local API (`/topology`, `/send`, `/recv`),
//!   which implements [`Transport`].
//! - [`recv`]: the receive loop that drains `/recv` and hands each message on.
//! - [`supervisor`]: spawns and restarts the AXL Go binary, keeps its key and config.
//!
//! The in-process mesh that speaks AXL's local HTTP API for tests and `edgent demo` is in
//! the test harness, `crate::harness::mesh_sim`.

pub mod client;
pub mod identity;
pub mod recv;
pub mod supervisor;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use client::AxlClient;
pub use identity::PeerKey;

/// Why a call to the AXL node failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AxlError {
    /// AXL refused the destination peer id (HTTP 400).
    #[error("bad peer id: {0}")]
    BadPeerId(String),
    /// The destination peer could not be reached (HTTP 502).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The local AXL node did not answer at all (not running, or restarting).
    #[error("AXL node down: {0}")]
    Down(String),
    /// The message is larger than the mesh carries.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the rejected body.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The node answered 200 but not in AXL's format (e.g. `/recv` without a valid
    /// `X-From-Peer-Id`, or `/topology` that is not the expected JSON).
    #[error("malformed answer from AXL: {0}")]
    BadResponse(String),
    /// The AXL API URL given to the client is not a usable `http://` URL.
    #[error("invalid AXL API URL: {0}")]
    InvalidUrl(String),
    /// Any other unexpected answer from the local node.
    #[error("AXL answered HTTP {status}: {body}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Body text (truncated).
        body: String,
    },
}

/// A message received from the mesh, before decoding.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The sender as AXL reports it in `X-From-Peer-Id`: a *partial* key derived from
    /// the sender's Yggdrasil address. Compare with [`PeerKey::same_node`].
    pub from: PeerKey,
    /// The raw body.
    pub body: Bytes,
}

/// One direct peer in `/topology`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerInfo {
    /// Peering URI, e.g. `tls://1.2.3.4:9001`.
    #[serde(default)]
    pub uri: String,
    /// Whether the link is up.
    #[serde(default)]
    pub up: bool,
    /// Whether the peer dialled us.
    #[serde(default)]
    pub inbound: bool,
    /// The peer's full public key, 64 hex.
    pub public_key: String,
}

/// One spanning-tree entry in `/topology`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TreeEntry {
    /// The node's full public key, 64 hex.
    pub public_key: String,
    /// Its parent's public key, 64 hex.
    #[serde(default)]
    pub parent: String,
    /// Tree sequence number.
    #[serde(default)]
    pub sequence: u64,
}

/// AXL's `GET /topology` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Topology {
    /// Our Yggdrasil IPv6 address.
    pub our_ipv6: String,
    /// Our full public key, 64 hex.
    pub our_public_key: String,
    /// Direct peers (AXL sends `null` when there are none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub peers: Vec<PeerInfo>,
    /// Spanning-tree entries (AXL sends `null` when there are none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tree: Vec<TreeEntry>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Topology {
    /// Every other node this topology knows of: up direct peers and tree entries,
    /// minus ourselves, without duplicates. Entries with malformed keys are skipped.
    pub fn reachable_nodes(&self) -> Vec<PeerKey> {
        let me = PeerKey::from_hex(&self.our_public_key).ok();
        let mut out: Vec<PeerKey> = Vec::new();
        let peers = self.peers.iter().filter(|p| p.up).map(|p| &p.public_key);
        let tree = self.tree.iter().map(|t| &t.public_key);
        for hex in peers.chain(tree) {
            if let Ok(k) = PeerKey::from_hex(hex) {
                if Some(k) != me && !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}

/// The mesh as the daemon sees it. [`AxlClient`] is the real implementation; every
/// other part of the daemon talks to the mesh only through this trait.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Our identity and the nodes we can see.
    async fn topology(&self) -> Result<Topology, AxlError>;
    /// Send one message to one peer (by its full key).
    async fn send(&self, to: &PeerKey, body: Bytes) -> Result<(), AxlError>;
    /// Take the next received message, or `None` when the queue is empty.
    async fn recv(&self) -> Result<Option<Inbound>, AxlError>;
}
