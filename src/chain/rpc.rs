//! Building alloy providers and sending transactions: [`TxLane`] assigns each wallet's
//! nonces locally, so its transactions go out back to back without waiting for each
//! other's receipts, with a gas limit margin and recovery from failed or dropped sends.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use alloy::contract::SolCallBuilder;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};
use tokio::sync::Mutex;

use super::error::{ChainError, EscrowError, EscrowRevert};
use crate::backoff::Backoff;

/// Longest a single JSON-RPC request may take before it fails (a hung endpoint must not
/// hang the daemon).
const RPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Gas limit = estimate × 5/4. Measured: a concurrent release can empty the escrow's
/// token balance between estimate and mining, and writing to an empty balance costs about
/// 17k more gas; stakes estimated with no margin reverted out of gas (171,403 of 171,510).
pub const GAS_MARGIN_NUM: u64 = 5;
/// Denominator of the gas margin (see [`GAS_MARGIN_NUM`]).
pub const GAS_MARGIN_DEN: u64 = 4;

/// A receipt still missing after this long, with the transaction unknown to the node, is
/// taken as dropped and its signed bytes are broadcast again.
const REBROADCAST_AFTER: Duration = Duration::from_secs(4);

/// The first pause between receipt polls (see [`poll_receipt`]).
const RECEIPT_FIRST_POLL: Duration = Duration::from_millis(4);
/// The longest pause between receipt polls.
const RECEIPT_MAX_POLL: Duration = Duration::from_secs(1);

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
    // Simple nonce management (ask the node for the pending count each time) for callers
    // that send through the provider itself; the escrow client sends through a [`TxLane`].
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

/// The next nonce of one wallet on one endpoint, shared by every [`TxLane`] of that wallet
/// in the process (the daemon's escrow client and a direct settler may sign with one key).
/// `None` until read from the node, and again after a failed send.
type NextNonce = Arc<Mutex<Option<u64>>>;

static NONCES: LazyLock<parking_lot::Mutex<HashMap<(String, Address), NextNonce>>> =
    LazyLock::new(Default::default);

fn next_nonce_for(rpc_url: &str, wallet: Address) -> NextNonce {
    let mut m = NONCES.lock();
    m.entry((rpc_url.to_string(), wallet)).or_default().clone()
}

/// One wallet's transactions. Gas and fees are estimated concurrently; only the nonce
/// assignment and the `eth_sendRawTransaction` are serialised, so twenty concurrent
/// transactions leave within a few milliseconds of each other and are mined together.
///
/// Recovery: a send the node refuses releases its nonce (the next send re-reads the
/// pending count, which is right because sends are serialised: nothing later went out);
/// a "nonce too low" from another sender of the same key is retried once with the
/// node's count; a transaction the node forgot (dropped from the pool) is broadcast
/// again from its signed bytes while its receipt is awaited.
#[derive(Clone)]
pub(crate) struct TxLane {
    provider: DynProvider,
    wallet: EthereumWallet,
    from: Address,
    chain_id: u64,
    next: NextNonce,
    timeout: Duration,
    waits: Arc<parking_lot::Mutex<InclusionWaits>>,
}

/// How many of a lane's latest receipt waits [`InclusionWaits`] keeps.
const INCLUSION_SAMPLES: usize = 16;

/// The lane's latest waits from broadcast to receipt. Their maximum is how long a new
/// transaction may take to land: on a chain with a block every `b` seconds the waits spread
/// over `0..b` plus a poll, so the maximum of a few converges on one block time.
#[derive(Default)]
pub(crate) struct InclusionWaits(std::collections::VecDeque<Duration>);

impl InclusionWaits {
    fn record(&mut self, wait: Duration) {
        if self.0.len() == INCLUSION_SAMPLES {
            self.0.pop_front();
        }
        self.0.push_back(wait);
    }

    fn estimate(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

impl TxLane {
    /// A lane for `signer` on `provider` (whose endpoint is `rpc_url`).
    pub(crate) fn new(
        provider: DynProvider,
        rpc_url: &str,
        signer: PrivateKeySigner,
        chain_id: u64,
        timeout: Duration,
    ) -> Self {
        let from = signer.address();
        Self {
            provider,
            wallet: EthereumWallet::from(signer),
            from,
            chain_id,
            next: next_nonce_for(rpc_url, from),
            timeout,
            waits: Default::default(),
        }
    }

    /// How long a transaction of this lane may take from broadcast to receipt: the longest
    /// of the last [`INCLUSION_SAMPLES`] mined ones; `None` before the first.
    pub(crate) fn inclusion_estimate(&self) -> Option<Duration> {
        self.waits.lock().estimate()
    }

    /// Sends `tx` and waits for its receipt (bounded by the lane's timeout). A refusal at
    /// gas estimation comes back as a decoded [`EscrowError::Refused`] and costs nothing;
    /// a mined revert as `Reverted`.
    pub(crate) async fn send(&self, tx: TransactionRequest) -> Result<TxHash, EscrowError> {
        let (hash, raw) = self.broadcast(tx).await?;
        let sent = tokio::time::Instant::now();
        let mined = poll_receipt(&self.provider, hash, Some(&raw), self.timeout).await;
        if matches!(mined, Ok(_) | Err(EscrowError::Reverted { .. })) {
            self.waits.lock().record(sent.elapsed());
        }
        mined
    }

    /// Estimates, signs with the next nonce and broadcasts `tx`; returns its hash and
    /// signed bytes without waiting for it to be mined.
    pub(crate) async fn broadcast(
        &self,
        mut tx: TransactionRequest,
    ) -> Result<(TxHash, Bytes), EscrowError> {
        tx.from = Some(self.from);
        tx.chain_id = Some(self.chain_id);
        let (gas, fees) = tokio::try_join!(
            async {
                self.provider
                    .estimate_gas(tx.clone())
                    .await
                    .map_err(from_rpc_error)
            },
            async {
                self.provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(|e| EscrowError::Rpc(format!("fee estimate: {e}")))
            }
        )?;
        tx.gas = Some(with_gas_margin(gas));
        tx.max_fee_per_gas = Some(fees.max_fee_per_gas);
        tx.max_priority_fee_per_gas = Some(fees.max_priority_fee_per_gas);

        let mut retried = false;
        loop {
            let mut next = self.next.lock().await;
            let nonce = match *next {
                Some(n) => n,
                None => self
                    .provider
                    .get_transaction_count(self.from)
                    .pending()
                    .await
                    .map_err(|e| EscrowError::Rpc(format!("nonce: {e}")))?,
            };
            let mut signed = tx.clone();
            signed.nonce = Some(nonce);
            let envelope = signed
                .build(&self.wallet)
                .await
                .map_err(|e| EscrowError::Rpc(format!("signing: {e}")))?;
            let raw: Bytes = envelope.encoded_2718().into();
            match self.provider.send_raw_transaction(&raw).await {
                Ok(pending) => {
                    *next = Some(nonce + 1);
                    return Ok((*pending.tx_hash(), raw));
                }
                Err(e) => {
                    // Nothing went out with this nonce: the next send asks the node again.
                    *next = None;
                    let msg = e.to_string();
                    if !retried && is_nonce_conflict(&msg) {
                        tracing::info!(from = %self.from, nonce, error = %msg, "nonce taken elsewhere; re-reading it from the node");
                        retried = true;
                        continue;
                    }
                    tracing::warn!(from = %self.from, nonce, error = %msg, "transaction not accepted by the node");
                    return Err(from_rpc_error(e));
                }
            }
        }
    }
}

/// `gas` plus the margin ([`GAS_MARGIN_NUM`]/[`GAS_MARGIN_DEN`]).
pub fn with_gas_margin(gas: u64) -> u64 {
    gas.saturating_mul(GAS_MARGIN_NUM) / GAS_MARGIN_DEN
}

fn is_nonce_conflict(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("nonce too low") || m.contains("already known") || m.contains("replacement")
}

/// Revert data in an RPC error becomes [`EscrowError::Refused`]; anything else is `Rpc`.
fn from_rpc_error(err: RpcError<TransportErrorKind>) -> EscrowError {
    if let Some(data) = err.as_error_resp().and_then(|r| r.as_revert_data()) {
        return EscrowError::Refused(EscrowRevert::decode(&data));
    }
    if err.to_string().contains("execution reverted") {
        return EscrowError::Refused(EscrowRevert::NoReason);
    }
    EscrowError::Rpc(err.to_string())
}

/// Sends `call` through the provider's own fillers, then polls for its receipt until
/// `timeout` (deployments and test set-up; the escrow client sends through a [`TxLane`]).
pub(crate) async fn send_and_confirm<P: Provider, C: SolCall>(
    provider: &DynProvider,
    call: SolCallBuilder<P, C>,
    timeout: Duration,
) -> Result<TxHash, EscrowError> {
    let pending = call.send().await.map_err(EscrowError::from_contract)?;
    let tx_hash = *pending.tx_hash();
    wait_receipt(provider, tx_hash, timeout).await
}

/// [`poll_receipt`] without rebroadcasting.
pub(crate) async fn wait_receipt(
    provider: &DynProvider,
    tx_hash: TxHash,
    timeout: Duration,
) -> Result<TxHash, EscrowError> {
    poll_receipt(provider, tx_hash, None, timeout).await
}

/// Polls `eth_getTransactionReceipt` until the transaction is mined or `timeout` passes: at
/// once, then after 4 ms, the pause doubling up to 1 s. A local chain (anvil mines at once)
/// answers within a few milliseconds; a first pause of 20 ms cost the stake (two
/// transactions) 40 ms. On a public chain this is two more polls in the first second.
/// With `raw` (the signed bytes), a transaction the node no longer knows after
/// [`REBROADCAST_AFTER`] is broadcast again.
async fn poll_receipt(
    provider: &DynProvider,
    tx_hash: TxHash,
    raw: Option<&Bytes>,
    timeout: Duration,
) -> Result<TxHash, EscrowError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut pauses = Backoff::new(RECEIPT_FIRST_POLL, RECEIPT_MAX_POLL);
    let mut next_check = started + REBROADCAST_AFTER;
    loop {
        match provider.get_transaction_receipt(tx_hash).await {
            Ok(Some(receipt)) => {
                return if receipt.status() {
                    Ok(tx_hash)
                } else {
                    tracing::warn!(%tx_hash, gas_used = receipt.gas_used, "transaction reverted on chain");
                    Err(EscrowError::Reverted { tx_hash })
                };
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(%tx_hash, error = %e, "receipt poll failed; retrying"),
        }
        let now = tokio::time::Instant::now();
        if let Some(raw) = raw.filter(|_| now >= next_check) {
            next_check = now + REBROADCAST_AFTER;
            if let Ok(None) = provider.get_transaction_by_hash(tx_hash).await {
                tracing::warn!(%tx_hash, "transaction dropped by the node; broadcasting it again");
                if let Err(e) = provider.send_raw_transaction(raw).await {
                    tracing::warn!(%tx_hash, error = %e, "rebroadcast refused");
                }
            }
        }
        let pause = pauses.next_wait();
        if now + pause > deadline {
            return Err(EscrowError::ReceiptTimeout { tx_hash, timeout });
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_margin_is_a_quarter() {
        assert_eq!(with_gas_margin(171_403), 214_253);
        assert_eq!(with_gas_margin(100_000), 125_000);
        assert_eq!(with_gas_margin(u64::MAX), u64::MAX / 4);
    }

    #[test]
    fn the_inclusion_estimate_is_the_longest_recent_wait() {
        let mut w = InclusionWaits::default();
        assert_eq!(w.estimate(), None);
        w.record(Duration::from_millis(1900));
        for ms in 0..INCLUSION_SAMPLES as u64 - 1 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.estimate(), Some(Duration::from_millis(1900)));
        // The long wait ages out after INCLUSION_SAMPLES newer ones.
        w.record(Duration::from_millis(5));
        assert_eq!(w.estimate(), Some(Duration::from_millis(14)));
    }

    #[test]
    fn nonce_conflicts_are_recognised() {
        assert!(is_nonce_conflict(
            "server returned an error response: error code -32003: nonce too low"
        ));
        assert!(is_nonce_conflict("already known"));
        assert!(!is_nonce_conflict(
            "insufficient funds for gas * price + value"
        ));
    }
}
