//! Many transactions from one wallet on a chain with 2-second blocks (like Base): nonces
//! are assigned locally, so concurrent stakes go out together and land within two blocks
//! instead of one receipt after another; a transaction the node drops is sent again.

use std::time::Duration;

use alloy::primitives::{keccak256, Address, TxHash, B256, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use edgent::chain::{ChainSettings, EscrowClient, StakeStatus};
use edgent::harness::anvil::{LocalChain, LocalDeployment};

use crate::support::chain::{approve_escrow, escrow_chain_v3, mint_usdc, USDC};

const N: usize = 20;
/// The provider key commitment these stakes name (any field element: nothing here submits).
const KEY_C: B256 = B256::repeat_byte(0x07);

/// The escrow chain of these tests: account 2 holds 1000 USDC.
async fn chain(block_time: Option<u64>) -> (LocalChain, LocalDeployment, ChainSettings) {
    escrow_chain_v3(block_time, &[(2, 1000 * USDC)]).await
}

fn job(tag: &str, i: usize) -> B256 {
    keccak256(format!("{tag}-{i}"))
}

async fn blocks_of(chain: &LocalChain, txs: &[TxHash]) -> Vec<u64> {
    let mut blocks = Vec::new();
    for tx in txs {
        let r = chain
            .provider()
            .get_transaction_receipt(*tx)
            .await
            .unwrap()
            .unwrap();
        assert!(r.status(), "transaction {tx} reverted");
        blocks.push(r.block_number.unwrap());
    }
    blocks
}

fn span(blocks: &[u64]) -> u64 {
    blocks.iter().max().unwrap() - blocks.iter().min().unwrap()
}

#[tokio::test]
async fn twenty_concurrent_stakes_from_one_wallet_land_within_two_blocks() {
    let (chain, d, settings) = chain(Some(2)).await;
    let requester = EscrowClient::connect(&settings, Some(chain.signer(2)))
        .await
        .unwrap();
    let provider = chain.signer(3).address();
    // The allowance is set once, beforehand (the first stake would do it otherwise).
    approve_escrow(&chain, &d, 2, U256::MAX).await;
    let deadline = requester.chain_time().await.unwrap() + 600;
    let stakes = (0..N).map(|i| {
        let r = requester.clone();
        async move {
            r.stake(
                job("approve", i),
                provider,
                KEY_C,
                U256::from(USDC),
                deadline,
            )
            .await
        }
    });
    let txs: Vec<TxHash> = futures_util::future::join_all(stakes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let blocks = blocks_of(&chain, &txs).await;
    assert!(span(&blocks) <= 1, "stakes spread over blocks {blocks:?}");
    for i in 0..N {
        let s = requester.get_stake(job("approve", i)).await.unwrap();
        assert_eq!(s.status, StakeStatus::Staked);
    }
    assert_eq!(
        requester.usdc_balance(d.escrow).await.unwrap(),
        U256::from(N as u64 * USDC)
    );
    assert_eq!(
        requester
            .usdc_balance(chain.signer(2).address())
            .await
            .unwrap(),
        U256::from((1000 - N as u64) * USDC)
    );
}

#[tokio::test]
async fn twenty_authorized_stakes_submitted_by_one_provider_land_within_two_blocks() {
    let (chain, d, settings) = chain(Some(2)).await;
    // The requester holds USDC and no ETH.
    let payer = PrivateKeySigner::random();
    let payer_addr = payer.address();
    mint_usdc(&chain, &d, payer_addr, U256::from(100 * USDC)).await;
    let requester = EscrowClient::connect(&settings, Some(payer)).await.unwrap();
    let provider = EscrowClient::connect(&settings, Some(chain.signer(3)))
        .await
        .unwrap();
    let me: Address = provider.wallet_address().unwrap();
    let deadline = provider.chain_time().await.unwrap() + 600;
    let mut auths = Vec::new();
    for i in 0..N {
        auths.push(
            requester
                .sign_stake_authorization(
                    job("auth", i),
                    me,
                    KEY_C,
                    U256::from(USDC),
                    deadline,
                    deadline,
                )
                .await
                .unwrap(),
        );
    }
    let submits = auths.iter().map(|a| {
        let p = provider.clone();
        async move { p.stake_with_authorization(a).await }
    });
    let txs: Vec<TxHash> = futures_util::future::join_all(submits)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let blocks = blocks_of(&chain, &txs).await;
    assert!(span(&blocks) <= 1, "stakes spread over blocks {blocks:?}");
    assert_eq!(
        requester.usdc_balance(d.escrow).await.unwrap(),
        U256::from(N as u64 * USDC)
    );
    assert_eq!(
        requester.usdc_balance(payer_addr).await.unwrap(),
        U256::from((100 - N as u64) * USDC)
    );
    let eth = chain.provider().get_balance(payer_addr).await.unwrap();
    assert_eq!(eth, U256::ZERO);
}

/// The node forgets a pending transaction (evicted from its pool): the client broadcasts
/// the same signed bytes again while it waits for the receipt, and the stake lands.
#[tokio::test]
async fn a_dropped_transaction_is_broadcast_again() {
    let (chain, d, settings) = chain(None).await;
    let requester = EscrowClient::connect(&settings, Some(chain.signer(2)))
        .await
        .unwrap();
    let who = chain.signer(2).address();
    let provider = chain.signer(3).address();
    // Approve first (mined at once), then stop mining.
    let deadline = requester.chain_time().await.unwrap() + 600;
    requester
        .stake(job("drop", 0), provider, KEY_C, U256::from(USDC), deadline)
        .await
        .unwrap();
    let anvil = chain.provider();
    anvil.anvil_set_auto_mine(false).await.unwrap();
    let mined = anvil.get_transaction_count(who).await.unwrap();

    let r = requester.clone();
    let pending = tokio::spawn(async move {
        r.stake(job("drop", 1), provider, KEY_C, U256::from(USDC), deadline)
            .await
    });
    let pending_count = || async { anvil.get_transaction_count(who).pending().await.unwrap() };
    wait_until(|| async { pending_count().await == mined + 1 }).await;
    anvil.anvil_drop_all_transactions().await.unwrap();
    assert_eq!(pending_count().await, mined, "dropped from the pool");
    // Within a few seconds the client notices and sends it again.
    wait_until(|| async { pending_count().await == mined + 1 }).await;
    anvil.anvil_mine(Some(1), None).await.unwrap();
    let tx = pending.await.unwrap().unwrap();
    let r = anvil.get_transaction_receipt(tx).await.unwrap().unwrap();
    assert!(r.status());
    assert_eq!(
        requester.get_stake(job("drop", 1)).await.unwrap().status,
        StakeStatus::Staked
    );
    assert_eq!(
        requester.usdc_balance(d.escrow).await.unwrap(),
        U256::from(2 * USDC)
    );
}

async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
