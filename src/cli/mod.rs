//! The command line's client side: `edgent delegate` (whole, streamed, or a chat), and
//! `edgent status` / `edgent jobs` as a person reads them, all through [`crate::client`].
//!
//! - [`exit`]: the exit codes, one per thing a script can act on.
//! - [`delegate`]: `edgent delegate`: a prompt, a conversation from a file, or a chat on
//!   standard input; streamed or whole; as text or as JSON.
//! - [`view`]: `/status` and `/jobs` as short text for a terminal.

pub mod delegate;
pub mod exit;
pub mod view;

pub use exit::Exit;
