//! edgent: hand an inference job to a peer on the Gensyn AXL mesh, pay for it through
//! a USDC escrow, and get the answer back with a zero-knowledge proof.
//!
//! # Layout
//!
//! - [`config`]: every setting, from `.env` < environment < flags, validated at start.
//! - [`axl`]: the AXL node: supervisor of the Go binary, its local HTTP client, the
//!   receive loop, Yggdrasil peer identity.
//! - [`protocol`]: the wire messages, one serde enum tagged by `type`.
//! - [`ctx`]: the state every part of a node shares ([`ctx::NodeCtx`]).
//! - [`mesh`]: above AXL: the peer book, discovery (announcements, the ad cache, the score,
//!   the provider history), and reliable delivery (acks, resends, de-duplication,
//!   heartbeats, per-peer limits, the provider's job queue).
//! - [`node`]: the router: one `match` over incoming messages, to the requester, the
//!   provider or their payments.
//! - [`request`]: the one request type of every front door, its checks, the answer, and
//!   the one table of error codes.
//! - [`requester`]: delegation: discover -> choose -> task -> result (-> verify -> settle).
//! - [`provider`]: serving: advertise -> infer -> result (-> prove -> payment_request).
//! - [`jobs`]: job records and their state machine, persisted in SQLite.
//! - [`inference`]: inference backends (Ollama, and a labelled demo backend).
//! - [`zk`]: Poseidon commitments, Groth16 prove/verify with committed keys.
//! - [`chain`]: escrow client, settlement (KeeperHub or direct), ENS.
//! - [`api`]: the HTTP API and the dashboard.
//! - [`front`]: the front door agents already speak (Ollama's and OpenAI's APIs), local
//!   first and the mesh on out-of-memory, and the guard of every route.
//! - [`mcp`]: the MCP server (tools over stdio and streamable HTTP) in front of the API.
//! - [`client`]: the one client of the HTTP API, for the CLI and the MCP tools.
//! - [`daemon`]: assembling a node from these parts, and taking it down in order.
//! - `demo`: `edgent demo`, one delegation end to end on one machine (feature `harness`).
//! - [`init`]: `edgent init`, a first run's wallet key file and `.env`.
//! - [`metrics`]: Prometheus metrics.
//! - [`payment`]: the seams where the paid flow plugs in (off: [`payment::Unpaid`]).
//! - [`shutdown`]: the one shutdown signal every task obeys.
//! - `harness` (feature `harness`, on by default): the test and demo harnesses, apart from
//!   the production modules: the mesh sim, the local chain (anvil), the KeeperHub emulator,
//!   the Ollama stub.

pub mod api;
pub mod axl;
pub mod chain;
pub mod client;
pub mod config;
pub mod ctx;
pub mod daemon;
#[cfg(feature = "harness")]
pub mod demo;
pub mod front;
#[cfg(feature = "harness")]
pub mod harness;
pub mod inference;
pub mod init;
pub mod jobs;
pub mod mcp;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod paid;
pub mod payment;
pub mod payment_switch;
pub mod protocol;
pub mod provider;
pub mod request;
pub mod requester;
pub mod shutdown;
pub mod zk;
