//! What a node knows about the rest of the mesh, above AXL's transport.
//!
//! - [`peers`]: the peer book: every node heard from, by Yggdrasil address.

pub mod peers;

pub use peers::{PeerBook, PeerSeen};
