//! What a node knows about the rest of the mesh, above AXL's transport, and how it talks
//! to it reliably.
//!
//! - [`peers`]: the peer book: every node heard from, by Yggdrasil address.
//! - [`reliable`]: acks, sending again with backoff, de-duplication on receipt.
//! - [`heartbeat`]: a provider's beats for a job, and the requester's watch on them.
//! - [`limits`]: per-peer token buckets on inbound messages and tasks.
//! - [`queue`]: the provider's job slots and the bounded queue behind them.
//! - [`attempts`]: the attempts of one delegation and the hook for provider history.
//! - [`settings`]: the settings of all the above.

pub mod attempts;
pub mod heartbeat;
pub mod limits;
pub mod peers;
pub mod queue;
pub mod reliable;
pub mod settings;

pub use peers::{PeerBook, PeerSeen};
pub use settings::DeliverySettings;
