//! How a stake is made, as a user runs it (two daemons over `edgent mesh-sim`, anvil):
//! by default the requester signs an EIP-3009 authorization and the provider submits it as
//! the stake before any work, so a requester holding USDC and no ETH can pay (escrow v4: it
//! cannot send its own release, so the provider submits and finalizes after the dispute
//! window); a provider that cannot serve a staked job declines it and the requester has its
//! money back at once.

use std::time::Duration;

use alloy::providers::Provider;
use edgent::chain::FairStatus;
use edgent::harness::ollama_stub::stub_output;
use serde_json::json;

use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_with_usdc_and_no_eth_completes_a_paid_job() {
    let w = PaidWorld::with_gasless_requester().await;
    let chain = w.chain.provider().clone();
    let eth = |a| {
        let chain = chain.clone();
        async move { chain.get_balance(a).await.unwrap() }
    };
    assert!(eth(w.requester_wallet).await.is_zero());
    let (requester, provider) = w.start(&[]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "no gas here"}))
        .await;
    assert_eq!(
        status,
        200,
        "{body}\n{}\n{}",
        requester.log(),
        provider.log()
    );
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "no gas here"))
    );
    assert_eq!(body["proof_verified"], json!(true));
    let id = body["job_id"].as_str().unwrap().to_string();
    // Its own release cannot be sent (no ETH): the provider submits after its grace period
    // and finalizes at the end of the dispute window.
    payment_becomes(&provider, &id, "submitted", WITHIN).await;
    w.advance(edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS + 1)
        .await;
    payment_becomes(&provider, &id, "claimed", WITHIN).await;
    payment_becomes(&requester, &id, "claimed", WITHIN).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Finalized);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    // The requester never sent a transaction and still holds no ETH.
    assert!(eth(w.requester_wallet).await.is_zero());
    let sent = w
        .chain
        .provider()
        .get_transaction_count(w.requester_wallet)
        .await
        .unwrap();
    assert_eq!(sent, 0);
    // The stake transaction is the provider's own.
    let pjob = provider.job(&id).await.expect("provider job");
    let stake_tx: alloy::primitives::TxHash = pjob["payment"]["stake_tx"]
        .as_str()
        .expect("the provider records its stake transaction")
        .parse()
        .unwrap();
    let tx = w
        .chain
        .provider()
        .get_transaction_by_hash(stake_tx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tx.inner.signer(), w.provider_wallet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_cannot_serve_declines_and_the_requester_is_refunded_at_once() {
    let w = PaidWorld::new().await;
    w.ollama
        .set(|b| b.fail = Some((500, "the GPU fell off the bus".into())));
    let (requester, provider) = w.start(&[]).await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "doomed", "timeout_ms": 20000}))
        .await;
    assert!(status >= 500, "{status} {body}");
    let rec = requester.newest_job().await.expect("job");
    let id = rec["job_id"].as_str().unwrap().to_string();
    // No time travel: the decline itself refunded the requester.
    assert_eq!(w.stake_status(&id).await, FairStatus::Declined);
    assert_eq!(w.balances().await, (FUND, 0, 0));
    let pjob = payment_becomes(&provider, &id, "refunded", WITHIN).await;
    let decline_tx = pjob["payment"]["tx_hash"].as_str().expect("decline tx");
    // The refund is a transfer inside the decline transaction itself.
    let receipt = w
        .chain
        .provider()
        .get_transaction_receipt(decline_tx.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert!(receipt
        .inner
        .logs()
        .iter()
        .any(|l| l.address() == w.deployment.usdc));
    // The requester's books follow from the chain.
    payment_becomes(&requester, &id, "refunded", WITHIN).await;
    w.assert_conserved(0).await;
}

/// `STAKE_MODE=permit`: the requester stakes with one transaction of its own,
/// `stakeWithPermit` carrying an EIP-2612 permit for exactly the price, and no `approve`.
/// Concurrent delegations from one wallet each take the token's next permit nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_stakes_in_one_transaction_without_an_approve() {
    use alloy::sol_types::SolCall;
    let w = PaidWorld::new().await;
    let (requester, provider) = w.start_with(&[("STAKE_MODE", "permit")], &[]).await;
    let chain = w.chain.provider().clone();
    assert_eq!(
        chain
            .get_transaction_count(w.requester_wallet)
            .await
            .unwrap(),
        0
    );
    let ask = |i: usize| {
        requester.delegate(
            json!({"model": "tinyllama", "prompt": format!("permit {i}"), "wait": "settled"}),
        )
    };
    let answers = [ask(0), ask(1), ask(2)];
    let answers = futures_util::future::join_all(answers).await;
    let mut ids = Vec::new();
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}\n{}", requester.log());
        assert_eq!(body["payment"]["status"], json!("released"), "{body}");
        ids.push(body["job_id"].as_str().unwrap().to_string());
    }
    // Two transactions per job: its stakeWithPermit and its own release (escrow v4).
    assert_eq!(
        chain
            .get_transaction_count(w.requester_wallet)
            .await
            .unwrap(),
        6
    );
    for id in &ids {
        let rjob = requester.job(id).await.expect("job");
        let stake_tx: alloy::primitives::TxHash = rjob["payment"]["stake_tx"]
            .as_str()
            .expect("stake tx")
            .parse()
            .unwrap();
        let tx = chain
            .get_transaction_by_hash(stake_tx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tx.inner.signer(), w.requester_wallet);
        let input = alloy::consensus::Transaction::input(&tx);
        assert_eq!(
            input[..4],
            edgent::chain::bindings::EdgentEscrowV4::stakeWithPermitCall::SELECTOR
        );
        assert_eq!(w.stake_status(id).await, FairStatus::Released);
        payment_becomes(&provider, id, "released", WITHIN).await;
    }
    assert_eq!(w.balances().await, (FUND - 3 * PRICE, 3 * PRICE, 0));
    // Each permit was for exactly its stake: no allowance is left behind.
    let client = w.requester_client().await;
    assert!(client
        .allowance(w.requester_wallet)
        .await
        .unwrap()
        .is_zero());
}
