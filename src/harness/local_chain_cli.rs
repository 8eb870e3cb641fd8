//! `edgent local-chain`: a local chain for processes that cannot link the harness (the
//! browser test): anvil from npm ([`LocalChain`]) with MockUSDC and the escrow the daemon
//! runs on (version 4, [`deploy_local`]), chosen dev accounts funded with USDC, described
//! on one JSON line on standard output, served until stopped (anvil dies with it).

use std::io::Write as _;

use alloy::primitives::U256;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::anvil::{deploy_local, LocalChain, LocalChainError, LOCAL_DISPUTE_WINDOW_SECS};

/// Anvil's dev account that deploys.
const DEPLOYER: usize = 0;
/// Anvil's dev account that is the escrow's arbiter.
const ARBITER: usize = 1;
/// How many dev accounts the JSON line lists (anvil makes ten).
const ACCOUNTS: usize = 10;

/// The `edgent local-chain` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalChainArgs {
    /// Dev accounts (0-9; 0 deploys, 1 is the arbiter) whose wallets get USDC,
    /// comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    pub fund: Vec<usize>,
    /// USDC each funded wallet gets, in base units (6 decimals).
    #[arg(long, default_value_t = 100_000_000)]
    pub usdc_units: u64,
}

/// Start anvil, deploy, fund, print the line (rpc_url, chain_id, usdc, escrow, arbiter,
/// dispute_window_secs and the dev accounts' index, address and key), then serve until
/// `cancel`.
pub async fn run_local_chain_cli(
    args: LocalChainArgs,
    cancel: CancellationToken,
) -> Result<(), LocalChainError> {
    if let Some(bad) = args.fund.iter().find(|i| **i >= ACCOUNTS) {
        return Err(LocalChainError::Deploy(format!(
            "--fund {bad}: anvil has dev accounts 0 to {}",
            ACCOUNTS - 1
        )));
    }
    let chain = LocalChain::start().await?;
    let fund: Vec<_> = args
        .fund
        .iter()
        .map(|i| (chain.signer(*i).address(), U256::from(args.usdc_units)))
        .collect();
    let deployment = deploy_local(
        &chain.rpc_url(),
        chain.signer(DEPLOYER),
        chain.signer(ARBITER).address(),
        &fund,
    )
    .await?;
    let accounts: Vec<_> = (0..ACCOUNTS)
        .map(|i| {
            json!({
                "index": i,
                "address": format!("{:#x}", chain.signer(i).address()),
                "key": chain.key(i).expose(),
                "usdc_units": if args.fund.contains(&i) { args.usdc_units } else { 0 },
            })
        })
        .collect();
    let line = json!({
        "rpc_url": chain.rpc_url(),
        "chain_id": chain.chain_id(),
        "usdc": format!("{:#x}", deployment.usdc),
        "escrow": format!("{:#x}", deployment.escrow),
        "arbiter": format!("{:#x}", deployment.operator),
        "dispute_window_secs": LOCAL_DISPUTE_WINDOW_SECS,
        "accounts": accounts,
    });
    let mut out = std::io::stdout().lock();
    // A reader that went away is no reason to take the chain down before the signal.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    drop(out);
    cancel.cancelled().await;
    drop(chain);
    Ok(())
}
