//! edgent: hand an inference job to a peer on the Gensyn AXL mesh, pay for it through
//! a USDC escrow, and get the answer back with a zero-knowledge proof.
//!
//! # Layout
//!
//! - [`config`]: every setting, from `.env` < environment < flags, validated at start.
//! - [`axl`]: the AXL node: supervisor of the Go binary, its local HTTP client, the
//!   receive loop, Yggdrasil peer identity.
//! - [`protocol`]: the wire messages, one serde enum tagged by `type`.
//! - [`mesh`]: above AXL: the endpoint every send goes through ([`mesh::Endpoint`]:
//!   bounded sends, acks and resends, the topology), the peer book, discovery
//!   (announcements, the ad cache, the score, the provider history), and the rest of
//!   reliable delivery (de-duplication, heartbeats, per-peer limits, the provider's job
//!   queue).
//! - [`ctx`]: the state every part of a node shares ([`ctx::NodeCtx`]: the settings, the
//!   mesh endpoint, the mesh state, the job store, the metrics).
//! - [`stream`]: streaming across the mesh: the provider's `task_chunk`s, the requester's
//!   reordering, cancelling a job whose agent went away.
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
//! - [`guard`]: the guard of every HTTP route (loopback `Host` and `Origin`, the Bearer
//!   token), and the refusal to listen beyond loopback without a token.
//! - [`front`]: the front door agents already speak (Ollama's and OpenAI's APIs), local
//!   first and the mesh on out-of-memory.
//! - [`mcp`]: the MCP server (tools over stdio and streamable HTTP) in front of the API.
//! - [`client`]: the one client of the HTTP API, for the CLI and the MCP tools.
//! - [`daemon`]: assembling a node from these parts, and taking it down in order.
//! - `demo`: `edgent demo`, one delegation end to end on one machine (feature `harness`).
//! - [`init`]: `edgent init`, a first run's wallet key file and `.env`.
//! - [`metrics`]: Prometheus metrics.
//! - [`paid`]: money: the seams the requester, provider and router call (off:
//!   [`paid::Unpaid`]), the switch between unpaid and paid, its setup, and the paid flow.
//! - [`shutdown`]: the one shutdown signal every task obeys.
//! - [`backoff`]: the one back-off schedule of every retry loop (below every other module).
//! - `harness` (feature `harness`, on by default): the test and demo harnesses, apart from
//!   the production modules: the mesh sim, the local chain (anvil), the KeeperHub emulator,
//!   the Ollama stub.

pub mod api;
pub mod axl;
pub mod backoff;
pub mod chain;
pub mod client;
pub mod config;
pub mod ctx;
pub mod daemon;
#[cfg(feature = "harness")]
pub mod demo;
pub mod front;
pub mod guard;
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
pub mod protocol;
pub mod provider;
pub mod request;
pub mod requester;
pub mod shutdown;
pub mod stream;
pub mod zk;
