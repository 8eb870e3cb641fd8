//! Local chain harness for tests and `edgent demo`: start anvil (the npm build of
//! Foundry's, from `node_modules`) on a free port, deploy MockUSDC + the escrow (version 4,
//! the daemon's; or the legacy version 3 for its client's own tests), fund
//! accounts, deploy a test ENS, and move time forward. Anvil is killed on drop.

use std::path::PathBuf;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{keccak256, Address, TxHash, B256, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;

use crate::chain::bindings::{ENSRegistry, MockUSDC, PublicResolver};
use crate::chain::deploy::{deploy_escrow, deploy_fair_escrow};
use crate::chain::error::{ChainError, EscrowError};
use crate::chain::rpc::{http_provider, send_and_confirm};
use crate::chain::settings::{ChainSettings, Secret};

/// What can go wrong standing up a local chain.
#[derive(Debug, thiserror::Error)]
pub enum LocalChainError {
    /// No anvil binary where we look.
    #[error("anvil not found (looked at {0}); run `npm ci` in the repository, or set ANVIL_BIN")]
    AnvilMissing(String),
    /// Anvil did not start.
    #[error("anvil did not start: {0}")]
    AnvilStart(String),
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A deployment or funding transaction failed.
    #[error("local deployment failed: {0}")]
    Deploy(String),
    /// A transaction failed.
    #[error(transparent)]
    Tx(#[from] EscrowError),
}

/// The anvil package for this machine's architecture.
fn npm_anvil_relative() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "node_modules/@foundry-rs/anvil-linux-arm64/bin/anvil",
        _ => "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
    }
}

/// Finds anvil: `ANVIL_BIN`, else `node_modules` under the current directory, else under
/// this crate's source directory, else `anvil` on `PATH`.
pub fn anvil_path() -> Result<PathBuf, LocalChainError> {
    anvil_path_from(std::env::var_os("ANVIL_BIN").map(PathBuf::from))
}

fn anvil_path_from(override_path: Option<PathBuf>) -> Result<PathBuf, LocalChainError> {
    if let Some(p) = override_path {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LocalChainError::AnvilMissing(format!(
                "ANVIL_BIN={}",
                p.display()
            )))
        };
    }
    let rel = npm_anvil_relative();
    let candidates = [
        PathBuf::from(rel),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("anvil"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .or(on_path)
        .ok_or_else(|| {
            LocalChainError::AnvilMissing(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// A running anvil (killed on drop) with its funded dev accounts.
pub struct LocalChain {
    anvil: AnvilInstance,
    provider: DynProvider,
}

impl std::fmt::Debug for LocalChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChain")
            .field("rpc_url", &self.anvil.endpoint())
            .finish()
    }
}

impl LocalChain {
    /// Starts anvil on a free port and waits until it listens. Every transaction is
    /// mined at once, in its own block, unless `ANVIL_BLOCK_TIME` (seconds) is set: then a
    /// block is mined every that many seconds (benches use it to measure on Base-like
    /// 2-second blocks through `edgent demo`'s network).
    pub async fn start() -> Result<Self, LocalChainError> {
        let block_time = std::env::var("ANVIL_BLOCK_TIME")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0);
        Self::spawn(block_time).await
    }

    /// Starts anvil mining a block every `secs` seconds (like Base's 2-second blocks), so
    /// transactions wait for the next block as on a public chain.
    pub async fn start_with_block_time(secs: u64) -> Result<Self, LocalChainError> {
        Self::spawn(Some(secs)).await
    }

    /// Starts anvil on `port` (127.0.0.1), mining each transaction at once: for tests that
    /// point a daemon at the URL before the chain is up.
    pub async fn start_on_port(port: u16) -> Result<Self, LocalChainError> {
        Self::spawn_at(None, port).await
    }

    async fn spawn(block_time: Option<u64>) -> Result<Self, LocalChainError> {
        Self::spawn_at(block_time, 0).await
    }

    async fn spawn_at(block_time: Option<u64>, port: u16) -> Result<Self, LocalChainError> {
        let path = anvil_path()?;
        let anvil = tokio::task::spawn_blocking(move || {
            let mut anvil = Anvil::at(path).port(port);
            if let Some(secs) = block_time {
                anvil = anvil.block_time(secs);
            }
            anvil.try_spawn()
        })
        .await
        .map_err(|e| LocalChainError::AnvilStart(e.to_string()))?
        .map_err(|e| LocalChainError::AnvilStart(e.to_string()))?;
        let provider = http_provider(&anvil.endpoint(), None)?;
        Ok(Self { anvil, provider })
    }

    /// The HTTP JSON-RPC URL.
    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// Anvil's chain id (31337).
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// A read-only provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The signer of dev account `i` (0..10), each funded with 10000 ETH.
    pub fn signer(&self, i: usize) -> PrivateKeySigner {
        let key = &self.anvil.keys()[i % self.anvil.keys().len()];
        PrivateKeySigner::from_slice(&key.to_bytes()).unwrap_or_else(|_| PrivateKeySigner::random())
    }

    /// Dev account `i`'s key as a [`Secret`] (for settings).
    pub fn key(&self, i: usize) -> Secret {
        Secret::new(format!("{:#x}", self.signer(i).to_bytes()))
    }

    /// Moves the chain clock forward by `secs` and mines a block.
    pub async fn advance_time(&self, secs: u64) -> Result<(), LocalChainError> {
        self.provider
            .anvil_increase_time(secs)
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        self.provider
            .anvil_mine(Some(1), None)
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        Ok(())
    }

    /// Sets `who`'s ETH balance (wei): a wallet that cannot pay gas, or can again.
    pub async fn set_eth(&self, who: Address, wei: U256) -> Result<(), LocalChainError> {
        self.provider
            .anvil_set_balance(who, wei)
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        Ok(())
    }

    /// Chain settings pointing at this anvil and `deployment`, with no keys set.
    pub fn settings(&self, deployment: &LocalDeployment) -> ChainSettings {
        ChainSettings {
            rpc_url: self.rpc_url(),
            chain_id: self.chain_id(),
            escrow: deployment.escrow,
            usdc: deployment.usdc,
            ens_rpc_url: self.rpc_url(),
            ..ChainSettings::base_sepolia()
        }
    }
}

/// Addresses of a local MockUSDC + escrow deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDeployment {
    /// The MockUSDC token.
    pub usdc: Address,
    /// The escrow.
    pub escrow: Address,
    /// The escrow's arbiter (version 4) or operator (the legacy version 3).
    pub operator: Address,
}

/// The dispute window of a local deployment, seconds: the contract's minimum, so tests and
/// the demo see a silent requester's provider paid half a minute after its submit.
pub const LOCAL_DISPUTE_WINDOW_SECS: u64 = 30;

/// Which escrow a local deployment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// EdgentEscrowV4 with this dispute window (what the daemon runs on).
    Fair(u64),
    /// The legacy EdgentEscrow v3 (only its client's tests use it).
    Legacy,
}

/// Deploys MockUSDC and the escrow the daemon runs on (version 4, the fair exchange) with
/// `arbiter` deciding disputes and a [`LOCAL_DISPUTE_WINDOW_SECS`] window, signed by
/// `deployer`, then mints each `(account, amount)` in `fund` (USDC base units).
pub async fn deploy_local(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    arbiter: Address,
    fund: &[(Address, U256)],
) -> Result<LocalDeployment, LocalChainError> {
    deploy(
        rpc_url,
        deployer,
        arbiter,
        fund,
        Version::Fair(LOCAL_DISPUTE_WINDOW_SECS),
    )
    .await
}

/// As [`deploy_local`] with a dispute window of `window` seconds (30 to 86,400).
pub async fn deploy_local_with_window(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    arbiter: Address,
    fund: &[(Address, U256)],
    window: u64,
) -> Result<LocalDeployment, LocalChainError> {
    deploy(rpc_url, deployer, arbiter, fund, Version::Fair(window)).await
}

/// As [`deploy_local`] with the legacy version 3 escrow and `operator` (for the tests of
/// the v3 client and settlers, which the daemon no longer uses).
pub async fn deploy_local_v3(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    operator: Address,
    fund: &[(Address, U256)],
) -> Result<LocalDeployment, LocalChainError> {
    deploy(rpc_url, deployer, operator, fund, Version::Legacy).await
}

async fn deploy(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    operator: Address,
    fund: &[(Address, U256)],
    version: Version,
) -> Result<LocalDeployment, LocalChainError> {
    let provider = http_provider(rpc_url, Some(deployer))?;
    let usdc = MockUSDC::deploy(&provider)
        .await
        .map_err(|e| LocalChainError::Deploy(format!("MockUSDC: {e}")))?;
    let escrow = match version {
        Version::Fair(window) => {
            deploy_fair_escrow(&provider, *usdc.address(), operator, window).await
        }
        Version::Legacy => deploy_escrow(&provider, *usdc.address(), operator).await,
    }
    .map_err(|e| LocalChainError::Deploy(format!("escrow: {e}")))?;
    for (account, amount) in fund {
        send_and_confirm(
            &provider,
            usdc.mint(*account, *amount),
            std::time::Duration::from_secs(30),
        )
        .await?;
    }
    tracing::info!(usdc = %usdc.address(), %escrow, %operator, ?version, "deployed local escrow");
    Ok(LocalDeployment {
        usdc: *usdc.address(),
        escrow,
        operator,
    })
}

/// A test ENS: registry (root owned by the deployer) and one public resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEns {
    /// The ENS registry.
    pub registry: Address,
    /// The resolver every registered name points at.
    pub resolver: Address,
}

/// Deploys the test ENS registry and resolver, signed by `owner` (who owns the root).
pub async fn deploy_ens(
    rpc_url: &str,
    owner: PrivateKeySigner,
) -> Result<LocalEns, LocalChainError> {
    let provider = http_provider(rpc_url, Some(owner))?;
    let registry = ENSRegistry::deploy(&provider)
        .await
        .map_err(|e| LocalChainError::Deploy(format!("ENSRegistry: {e}")))?;
    let resolver = PublicResolver::deploy(&provider, *registry.address())
        .await
        .map_err(|e| LocalChainError::Deploy(format!("PublicResolver: {e}")))?;
    Ok(LocalEns {
        registry: *registry.address(),
        resolver: *resolver.address(),
    })
}

/// How long the local ENS set-up waits for each receipt.
const ENS_TX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes every label of `name` from the root down for `owner` (the caller must own the
/// root) and points the final node at the local resolver. Returns the node.
async fn claim_name(
    provider: &DynProvider,
    ens: &LocalEns,
    name: &str,
    owner: Address,
) -> Result<B256, LocalChainError> {
    let registry = ENSRegistry::new(ens.registry, provider);
    let mut node = B256::ZERO;
    for label in name.rsplit('.') {
        let label_hash = keccak256(label.as_bytes());
        send_and_confirm(
            provider,
            registry.setSubnodeOwner(node, label_hash, owner),
            ENS_TX_TIMEOUT,
        )
        .await?;
        node = keccak256([node.as_slice(), label_hash.as_slice()].concat());
    }
    send_and_confirm(
        provider,
        registry.setResolver(node, ens.resolver),
        ENS_TX_TIMEOUT,
    )
    .await?;
    Ok(node)
}

/// Creates every label of `name` from the root down (signed by the root owner), points
/// it at the resolver, sets its address record to `addr`, and hands it to `new_owner`.
/// Returns the last transaction.
pub async fn register_name(
    rpc_url: &str,
    root_owner: PrivateKeySigner,
    ens: &LocalEns,
    name: &str,
    addr: Address,
    new_owner: Address,
) -> Result<TxHash, LocalChainError> {
    let me = root_owner.address();
    let provider = http_provider(rpc_url, Some(root_owner))?;
    let node = claim_name(&provider, ens, name, me).await?;
    let registry = ENSRegistry::new(ens.registry, &provider);
    let resolver = PublicResolver::new(ens.resolver, &provider);
    let timeout = ENS_TX_TIMEOUT;
    send_and_confirm(&provider, resolver.setAddr_1(node, addr), timeout).await?;
    Ok(send_and_confirm(&provider, registry.setOwner(node, new_owner), timeout).await?)
}

/// Sets the reverse record `<addr>.addr.reverse` -> `name` (signed by the root owner),
/// as the reverse registrar would for `addr`.
pub async fn register_reverse(
    rpc_url: &str,
    root_owner: PrivateKeySigner,
    ens: &LocalEns,
    addr: Address,
    name: &str,
) -> Result<TxHash, LocalChainError> {
    let me = root_owner.address();
    let provider = http_provider(rpc_url, Some(root_owner))?;
    let reverse = alloy_ens::reverse_address(&addr);
    let node = claim_name(&provider, ens, &reverse, me).await?;
    let resolver = PublicResolver::new(ens.resolver, &provider);
    Ok(send_and_confirm(
        &provider,
        resolver.setName(node, name.to_string()),
        ENS_TX_TIMEOUT,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_anvil_says_to_run_npm_ci() {
        let err = anvil_path_from(Some(PathBuf::from("/nonexistent/anvil"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("npm ci"), "{msg}");
        assert!(msg.contains("/nonexistent/anvil"), "{msg}");
    }
}
