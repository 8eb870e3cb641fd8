//! The wire protocol: every message between edgent nodes, one JSON object per AXL send.
//!
//! Every message is `{"v":1,"type":"...", ...}`. A body that is too large, not JSON, not
//! an object, of another version, of an unknown type, with missing fields, or with a field
//! out of its allowed shape is refused with a [`DecodeError`] whose [`DropReason`] the
//! router counts.
//!
//! # Mixed versions
//!
//! Nodes of different releases share a mesh, so decoding tolerates what a newer peer may
//! add: unknown fields (at any depth) are ignored with a debug log, a message of a type
//! this build does not know is dropped and counted as `unknown_type` at debug level (not
//! as an attack), and a `msg_id` on any type is acknowledged and de-duplicated (a newer
//! peer may deliver more types reliably). An older peer's reliable message without
//! `msg_id` is handled and not acknowledged. The other way round, a peer that never acks
//! (the previous release decoded strictly and refuses a `msg_id`, an `announce`, an
//! `ack` and a `heartbeat` as unknown) only costs the resends bounded by their deadline:
//! [`crate::mesh::Endpoint::send_acked`] stops at its `until`, a background resend after
//! `RELIABLE_WINDOW_MS`, and a provider that never acks its task is given up after the
//! heartbeat window and the job moves to the next provider. So the previous release and
//! this one do not work together (upgrade every node), but neither waits out a deadline
//! on the other, and from this release on, additions degrade as above. A new value of an
//! enum field (an error `code`, a heartbeat `state`) is still refused. No message ever carries a
//! top-level `service` or `a2a` key (AXL would hand it to its MCP router or A2A server).
//!
//! # Layout
//!
//! - [`job_id`]: the job id, the escrow's `bytes32`.
//! - [`messages`]: the messages of discovery, tasks and delivery, and [`Message`] over all.
//! - [`x402`]: the payment messages and the x402 v2 shapes they carry.
//! - [`codec`]: the wire form: encoding, decoding with its delivery id, and why a message
//!   was dropped.
//! - [`check`]: the field-level checks beyond what the types enforce.
//! - [`digest`]: models named by what they are: digests and `name@sha256:<hex>` pins.
//! - [`receipt`]: the provider's signed receipt of what it ran, and the requester's check.

pub mod check;
pub mod codec;
pub mod digest;
pub mod evidence;
pub mod job_id;
pub mod messages;
pub mod receipt;
pub mod x402;

pub use check::check_model;
pub use codec::{DecodeError, DropReason, EncodeError, Envelope};
pub use digest::{check_digest, parse_digest, parse_pin, show_pin, ModelPin};
pub use evidence::Evidence;
pub use job_id::JobId;
pub use messages::*;
pub use receipt::{Receipt, ReceiptMismatch};
pub use x402::*;

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;

/// Largest message we send or accept: AXL's default cap (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Longest model name accepted.
pub const MAX_MODEL_LEN: usize = 256;

/// Longest ENS name accepted.
pub const MAX_ENS_LEN: usize = 255;

/// Longest free-text field (error messages, version strings) accepted.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most entries a `payment_required.accepts` may hold.
pub const MAX_ACCEPTS: usize = 4;

/// The most relay hops a `resource_request` may ask for.
pub const MAX_RELAY_HOPS: u8 = 3;

/// Most models one ad lists.
pub const MAX_AD_MODELS: usize = 1024;

/// Most node ids one announcement carries.
pub const MAX_ANNOUNCE_KNOWN: usize = 64;

#[cfg(test)]
mod tests;
