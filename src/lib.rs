//! edgent: hand an inference job to a peer on the Gensyn AXL mesh, pay for it through
//! a USDC escrow, and get the answer back with a zero-knowledge proof.
//!
//! # Layout
//!
//! A delegation reads as doors ([`api`], [`front`], [`mcp`]) -> [`request`] ->
//! [`requester`] -> the mesh endpoint ([`mesh::Endpoint`]) -> [`provider`] ->
//! [`inference`]; money is one folder beside it, [`paid`], which the requester calls at
//! three fixed points (`begin`, `end`, `settle`). The modules, from the bottom layer up;
//! a module imports only from the layers listed before it:
//!
//! - [`backoff`]: the one back-off schedule of every retry loop.
//! - [`redact`]: secrets out of text that leaves the daemon (URLs in error messages).
//! - [`files`]: private files: the data directory (0700), the job store and the secrets
//!   (0600).
//! - [`shutdown`]: the one shutdown signal every task obeys.
//! - [`axl`]: the AXL node: supervisor of the Go binary, its local HTTP client, the
//!   receive loop, Yggdrasil peer identity.
//! - [`zk`]: Poseidon commitments, Groth16 prove/verify with committed keys.
//! - [`chain`]: escrow client, settlement (KeeperHub or direct), ENS.
//! - [`protocol`]: the wire messages, one serde enum tagged by `type`, their codec and
//!   checks, model digests and `name@sha256:` pins, the providers' signed receipts and
//!   their check, the evidence of a caught cheater and its check, and the x402 shapes.
//! - [`inference`]: inference backends (Ollama, OpenAI-compatible, and a labelled demo
//!   backend), and embeddings as a task.
//! - [`jobs`]: job records, their state machine and payment states, the attempts, error
//!   codes and spot checks they record, persisted in SQLite with a change cursor
//!   (`/jobs?since=`).
//! - [`metrics`]: Prometheus metrics.
//! - [`mesh`]: above AXL: the endpoint every send goes through ([`mesh::Endpoint`]:
//!   bounded sends, acks and resends, the topology), the peer book, discovery
//!   (announcements, the ad cache, the score, the provider history, the checked ENS
//!   names), and the rest of
//!   reliable delivery (de-duplication, heartbeats, per-peer limits, the provider's job
//!   queue).
//! - [`config`]: every setting, from `.env` < environment < flags, validated at start: a
//!   composition of each part's settings.
//! - [`request`]: the one request type of every front door, its checks, the answer, and
//!   why a delegation failed.
//! - [`stream`]: streaming across the mesh: the provider's `task_chunk`s, the requester's
//!   reordering, cancelling a job whose agent went away.
//! - [`ctx`]: the state every part of a node shares ([`ctx::NodeCtx`]: the settings, the
//!   mesh endpoint, the mesh state, the job store, the metrics).
//! - [`paid`]: money: the seams the requester, provider and router call (off:
//!   [`paid::Unpaid`]), the switch between unpaid and paid, its setup, and the paid flow
//!   ([`paid::prestart`]: a provider's job runs while its stake lands, its output held
//!   until the stake is mined).
//! - [`requester`]: delegation: discover -> choose -> `begin` -> task -> result (its
//!   receipt checked, a sample spot-checked) -> `end` / `settle`, the delegation as a
//!   stream of events, the agent's spend budget, and evidence of caught cheaters sent to
//!   and received from peers (excluded only when this node's own run confirms it);
//!   `requester::rescue`, a stream whose provider died mid-answer continued by the next.
//! - [`provider`]: serving: advertise -> infer -> result (-> prove -> payment_request).
//! - [`node`]: the router: one `match` over incoming messages, to the requester, the
//!   provider or their payments.
//! - [`guard`]: the guard of every HTTP route (loopback `Host`, the daemon's own `Origin`,
//!   JSON bodies and their size, the API token, and what a caller without it may do).
//! - [`client`]: the one client of the HTTP API, for the CLI and the MCP tools.
//! - [`cli`]: the command line's client side: `edgent delegate` (streamed, a chat, JSON),
//!   `status` and `jobs` for a terminal, and their exit codes.
//! - [`front`]: the front door agents already speak (Ollama's and OpenAI's APIs), local
//!   first and the mesh on out-of-memory (pinned to the local model's digest), generation
//!   (with tools, images, JSON mode) and embeddings; what the local Ollama answers is
//!   recorded as a `local` job; `front::rescue`, a local stream whose runner died
//!   mid-answer continued by the mesh.
//! - [`mcp`]: the MCP server (tools over stdio and streamable HTTP) in front of the API.
//! - [`api`]: the HTTP API and the dashboard.
//! - [`init`]: `edgent init`, a first run's wallet key file and `.env`.
//! - [`daemon`]: assembling a node from these parts, and taking it down in order.
//! - `harness` (feature `harness`, on by default): the test and demo harnesses, apart from
//!   the production modules: the mesh sim, the local chain (anvil), the KeeperHub emulator,
//!   the Ollama stub, the hostile peer (`harness::evil_node`).
//! - `demo`: `edgent demo`, one delegation end to end on one machine (feature `harness`);
//!   `demo::agent`, the agent's call through the requester's Ollama API
//!   (`--agent-ollama`, run with a real model by `scripts/demo-gemma.sh`).
//!
//! No import runs back up a layer (a doc link may point up, to say who uses a thing).

pub mod api;
pub mod axl;
pub mod backoff;
pub mod chain;
pub mod cli;
pub mod client;
pub mod config;
pub mod ctx;
pub mod daemon;
#[cfg(feature = "harness")]
pub mod demo;
pub mod files;
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
pub mod redact;
pub mod request;
pub mod requester;
pub mod shutdown;
pub mod stream;
pub mod zk;
