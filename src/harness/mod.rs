//! TEST AND DEMO HARNESSES: stand-ins for what a test or `edgent demo` cannot have on one
//! machine, kept apart from the daemon's production modules. Nothing here runs in a node
//! of a real mesh.
//!
//! - [`mesh_sim`]: an in-process mesh of AXL nodes speaking AXL's local HTTP API, with
//!   fault injection, a peering tree and the real node's measured behaviours (the engine
//!   of `edgent mesh-sim`).
//! - [`anvil`]: a local chain: anvil from npm, a MockUSDC + EdgentEscrow deployment,
//!   funded accounts, a test ENS, time travel.
//! - [`local_chain_cli`]: `edgent local-chain`, that chain served to another process (the
//!   browser test) and described on one JSON line.
//! - [`keeperhub_emulator`]: an emulator of KeeperHub's Direct Execution API that really
//!   executes each call on the local chain (not KeeperHub).
//! - [`ollama_stub`]: a stub of Ollama's HTTP API that runs no model.
//! - [`evil_node`]: a scriptable hostile peer on the mesh sim: sends any message or bytes
//!   as any of its keys, at any rate, acks only when told, and records what it receives.
//!
//! Behind the cargo feature `harness`, on by default because `edgent demo` and
//! `edgent mesh-sim` need it. `cargo build --no-default-features --features prover` builds
//! a lean daemon without it (and without those two commands). The integration tests and
//! benches always get it: the crate is its own dev-dependency with `features = ["harness"]`.

pub mod anvil;
pub mod evil_node;
pub mod keeperhub_emulator;
pub mod local_chain_cli;
pub mod mesh_sim;
pub mod ollama_stub;
