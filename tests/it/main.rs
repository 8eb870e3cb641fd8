//! The integration tests of edgent, one binary with a module per story (one binary links
//! alloy, arkworks and the rest once instead of once per story). Run one story with
//! `cargo test --test it delivery::`, one test with its full path.
//!
//! `support` is the shared harness (real `edgent` processes, the real Ollama and the test
//! venv's Python, anvil, the paid world); the benches include it too. The tests of this
//! binary run in parallel threads of one process: a test never changes the process's
//! environment or working directory, and every process it starts ends with it.

mod support;

mod axl_client;
mod axl_mesh_sim_cli;
mod axl_recv;
mod axl_sim;
mod axl_supervisor;
mod bounded;
mod bounded_paid;
mod chain_concurrency;
mod chain_ens;
mod chain_escrow;
mod chain_escrow_cli;
mod chain_fair_escrow;
mod chain_settlers;
mod cli;
mod delegate_unpaid;
mod delivery;
mod discovery;
mod evidence;
mod fair_exchange;
mod faults;
mod first_run;
mod frontdoor;
mod frontdoor_backends;
mod frontdoor_paid;
mod gemma;
mod hostile_names;
mod hostile_ranking;
mod hostile_stakes;
mod hub_and_spoke;
mod layers;
mod local_side;
mod mcp;
mod mesh_api;
mod metrics;
mod offload_predict;
mod paid_failover;
mod paid_flood;
mod paid_flow;
mod paid_recovery;
mod paid_stake_ways;
mod prestart;
mod receipts;
mod rescue;
mod spot_checks;
mod supervisor;
mod x402;
mod zk_cli;
mod zk_proofs;
mod zk_snarkjs;
