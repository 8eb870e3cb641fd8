//! Everything that touches a chain: escrow client, settlers, ENS (issue 4).
//!
//! - [`settings`]: `ChainSettings` from the environment (`CHAIN_RPC_URL`, `ESCROW_ADDRESS`...).
//! - [`bindings`]: `sol!` bindings from the committed forge artifacts in `contracts/artifacts/`.
//! - [`escrow`]: [`EscrowClient`]: approve + stake, getStake, submit, claimTimeout, refund.
//! - [`error`]: typed errors; reverts decode into [`EscrowRevert`].
//! - [`settle`]: the [`Settler`] trait and the [`DirectSettler`] (operator key).
//! - [`keeperhub`]: the [`KeeperHubSettler`] (KeeperHub Direct Execution API).
//! - [`keeperhub_emulator`]: a KeeperHub emulator for tests and the demo (not KeeperHub).
//! - [`ens`]: ENS names, reverse lookup, and node text records.
//! - [`anvil`]: local chain harness (anvil from npm, local deployments, time travel).
//! - [`cli`]: `edgent escrow ...` and `edgent ens ...`.

pub mod anvil;
pub mod bindings;
pub mod cli;
pub mod ens;
pub mod error;
pub mod escrow;
pub mod keeperhub;
pub mod keeperhub_emulator;
mod rpc;
pub mod settings;
pub mod settle;

pub use error::{ChainError, EscrowError, EscrowRevert};
pub use escrow::{EscrowClient, StakeInfo, StakeStatus};
pub use keeperhub::KeeperHubSettler;
pub use rpc::http_provider;
pub use settings::{ChainConfigError, ChainSettings, Secret};
pub use settle::{DirectSettler, SettleError, Settlement, Settler};
