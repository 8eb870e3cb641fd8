//! A local chain for the tests: anvil (from npm) with MockUSDC and an EdgentEscrow
//! deployed, through `edgent::harness::anvil`.

use alloy::primitives::{Address, U256};
use edgent::chain::bindings::{MockUSDC, IERC20};
use edgent::chain::ChainSettings;
use edgent::harness::anvil::{deploy_local, deploy_local_v3, LocalChain, LocalDeployment};

/// One USDC in base units (6 decimals).
pub const USDC: u64 = 1_000_000;

/// The anvil account that deploys the contracts and mints USDC.
pub const DEPLOYER: usize = 0;

/// The anvil account that operates the escrow (releases and rejects).
pub const OPERATOR: usize = 1;

/// Anvil, mining each transaction at once or a block every `block_time` seconds, with
/// MockUSDC and the escrow the daemon runs on (version 4) deployed by [`DEPLOYER`], with
/// [`OPERATOR`] its arbiter; each `(account, amount)` of `fund` gets `amount` USDC base
/// units. Returns the chain, the deployment and the settings that point at it.
pub async fn escrow_chain(
    block_time: Option<u64>,
    fund: &[(usize, u64)],
) -> (LocalChain, LocalDeployment, ChainSettings) {
    chain_with(block_time, fund, false).await
}

/// As [`escrow_chain`] with the legacy version 3 escrow, operated by [`OPERATOR`] (the tests
/// of its client and settlers).
pub async fn escrow_chain_v3(
    block_time: Option<u64>,
    fund: &[(usize, u64)],
) -> (LocalChain, LocalDeployment, ChainSettings) {
    chain_with(block_time, fund, true).await
}

async fn chain_with(
    block_time: Option<u64>,
    fund: &[(usize, u64)],
    legacy: bool,
) -> (LocalChain, LocalDeployment, ChainSettings) {
    let chain = match block_time {
        Some(s) => LocalChain::start_with_block_time(s).await,
        None => LocalChain::start().await,
    }
    .expect("anvil (npm ci installs it)");
    let fund: Vec<(Address, U256)> = fund
        .iter()
        .map(|&(i, amount)| (chain.signer(i).address(), U256::from(amount)))
        .collect();
    let deploy = if legacy {
        deploy_local_v3(
            &chain.rpc_url(),
            chain.signer(DEPLOYER),
            chain.signer(OPERATOR).address(),
            &fund,
        )
        .await
    } else {
        deploy_local(
            &chain.rpc_url(),
            chain.signer(DEPLOYER),
            chain.signer(OPERATOR).address(),
            &fund,
        )
        .await
    };
    let deployment = deploy.expect("deploy MockUSDC and the escrow");
    let settings = chain.settings(&deployment);
    (chain, deployment, settings)
}

/// Mints `amount` USDC base units of the deployment's MockUSDC to `to`, and waits for it.
pub async fn mint_usdc(
    chain: &LocalChain,
    deployment: &LocalDeployment,
    to: Address,
    amount: U256,
) {
    let minter =
        edgent::chain::http_provider(&chain.rpc_url(), Some(chain.signer(DEPLOYER))).unwrap();
    MockUSDC::new(deployment.usdc, &minter)
        .mint(to, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

/// Account `owner` approves the deployment's escrow for `amount` USDC base units with a
/// transaction of its own (outside any `EscrowClient`), and waits for it.
pub async fn approve_escrow(
    chain: &LocalChain,
    deployment: &LocalDeployment,
    owner: usize,
    amount: U256,
) {
    let provider =
        edgent::chain::http_provider(&chain.rpc_url(), Some(chain.signer(owner))).unwrap();
    IERC20::new(deployment.usdc, &provider)
        .approve(deployment.escrow, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

/// The decoded refusal in `e`; panics on any other failure.
pub fn refusal(e: edgent::chain::EscrowError) -> edgent::chain::EscrowRevert {
    match e {
        edgent::chain::EscrowError::Refused(r) => r,
        other => panic!("expected a decoded refusal, got {other:?}"),
    }
}
