//! Building alloy providers and sending transactions with a receipt deadline.

use std::time::Duration;

use alloy::contract::SolCallBuilder;
use alloy::network::EthereumWallet;
use alloy::primitives::TxHash;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;

use super::error::{ChainError, EscrowError};

/// Longest a single JSON-RPC request may take before it fails (a hung endpoint must not
/// hang the daemon).
const RPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP provider for `url`, signing with `signer` when given. It runs on the crate's
/// own `reqwest` client, so https endpoints work once reqwest has a TLS feature; anvil
/// and other plain-HTTP endpoints need none.
pub fn http_provider(
    url: &str,
    signer: Option<PrivateKeySigner>,
) -> Result<DynProvider, ChainError> {
    let parsed: reqwest::Url = url
        .parse()
        .map_err(|_| ChainError::BadUrl(url.to_string()))?;
    let http = reqwest::Client::builder()
        .timeout(RPC_REQUEST_TIMEOUT)
        .build()
        .map_err(|e| ChainError::Rpc(format!("HTTP client: {e}")))?;
    // Simple nonce management (ask the node for the pending count each time): alloy's
    // default cache hands out a nonce even when gas estimation then fails (a revert),
    // which leaves a gap and strands every later transaction.
    Ok(match signer {
        Some(signer) => ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_reqwest(http, parsed)
            .erased(),
        None => ProviderBuilder::new()
            .connect_reqwest(http, parsed)
            .erased(),
    })
}

/// Sends `call`, then polls for its receipt until `timeout`. A refusal at gas estimation
/// comes back as a decoded [`EscrowError::Refused`]; a mined revert as `Reverted`.
pub(crate) async fn send_and_confirm<P: Provider, C: SolCall>(
    provider: &DynProvider,
    call: SolCallBuilder<P, C>,
    timeout: Duration,
) -> Result<TxHash, EscrowError> {
    let pending = call.send().await.map_err(EscrowError::from_contract)?;
    let tx_hash = *pending.tx_hash();
    wait_receipt(provider, tx_hash, timeout).await
}

/// Polls `eth_getTransactionReceipt` until the transaction is mined or `timeout` passes: at
/// once, then after 4 ms, the pause doubling up to 1 s. A local chain (anvil mines at once)
/// answers within a few milliseconds; a first pause of 20 ms cost the stake (two
/// transactions) 40 ms. On a public chain this is two more polls in the first second.
pub(crate) async fn wait_receipt(
    provider: &DynProvider,
    tx_hash: TxHash,
    timeout: Duration,
) -> Result<TxHash, EscrowError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(4);
    loop {
        match provider.get_transaction_receipt(tx_hash).await {
            Ok(Some(receipt)) => {
                return if receipt.status() {
                    Ok(tx_hash)
                } else {
                    tracing::warn!(%tx_hash, "transaction reverted on chain");
                    Err(EscrowError::Reverted { tx_hash })
                };
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(%tx_hash, error = %e, "receipt poll failed; retrying"),
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(EscrowError::ReceiptTimeout { tx_hash, timeout });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
