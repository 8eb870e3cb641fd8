//! User story: paid at the speed of unpaid (issue 23, item 5; docs/threat-model.md, lines
//! 45 and 46). A provider holding a valid EIP-3009 authorization starts the inference at
//! once and lands the stake meanwhile, on anvil mining a block every 2 s like Base; no
//! output byte leaves it before the stake is mined, and an authorization that fails to land
//! cancels the job and costs its sender a unit of its budget of unpaid tasks. The requester
//! is the scriptable evil node (mesh node 2, no daemon) holding the requester's funded
//! wallet; the provider is a real daemon with the real prover.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::ProviderBuilder;
use edgent::chain::FairStatus;
use edgent::harness::evil_node::EvilNode;
use serde_json::{json, Value};

use crate::support::evil::{evil_on, introduce, node_key};
use crate::support::paid::{hostile_task, PaidWorld, WorldOptions, FUND, PRICE};
use crate::support::{until, DaemonProc};

const WITHIN: Duration = Duration::from_secs(60);
/// The requester's anvil account (the paid world's `REQUESTER`).
const REQUESTER: usize = 2;
/// Where the hostile requester moves its USDC meanwhile.
const STASH: usize = 5;

alloy::sol! {
    #[sol(rpc)]
    interface IUsdcTransfer {
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

async fn provider_only(w: &PaidWorld, extra: &[(&str, &str)]) -> DaemonProc {
    let mut env = w.provider_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonProc::start_owned(&w.dir.path().join("provider"), env).await
}

/// Moves `amount` USDC from anvil account `from` to `to` with a tip far above the
/// provider's, so it goes first in the block it shares with the provider's stake; returns
/// once sent (mining may be paused).
async fn send_usdc(
    w: &PaidWorld,
    from: usize,
    to: Address,
    amount: u64,
) -> alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(w.chain.signer(from)))
        .connect_http(w.chain.rpc_url().parse().expect("url"));
    IUsdcTransfer::new(w.deployment.usdc, provider)
        .transfer(to, U256::from(amount))
        // No estimate: anvil estimates on the pending block, where the stake may be already.
        .gas(100_000)
        .max_priority_fee_per_gas(50_000_000_000)
        .max_fee_per_gas(200_000_000_000)
        .send()
        .await
        .expect("transfer sent")
}

/// The messages of `kind` the evil node received for `job`.
fn of_job(evil: &EvilNode, kind: &str, job: &str) -> Vec<edgent::harness::evil_node::Received> {
    evil.received_kind(kind)
        .into_iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|v| v["job_id"].as_str() == Some(job))
        })
        .collect()
}

/// Line 46, and the goal of item 5. The stub model answers at once, so the whole output
/// exists while the stake is still on its way to the next 2-second block: the provider's
/// job starts before its stake is mined (its record, created as the inference starts, is
/// older than the stake's receipt), every chunk and the result reach the requester after
/// the stake was mined, and the stake is on chain by the time the first chunk arrives.
/// Run against main's daemon (before item 5), it fails: no chunk came within the minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_starts_before_the_stake_is_mined_and_no_output_leaves_before_it() {
    let w = PaidWorld::with(WorldOptions {
        nodes: 3,
        block_time: Some(2),
        ..WorldOptions::default()
    })
    .await;
    let provider = provider_only(&w, &[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let job = keccak256(b"prestart honest");
    let id = format!("{job:#x}");
    let task = hostile_task(&w, job, "an honest paid question", 30, true).await;
    evil.send_json(0, &node_key(&w.mesh, 1), &task)
        .await
        .expect("send");
    let first = evil
        .wait_for(WITHIN, |r| r.kind() == Some("task_chunk"))
        .await
        .expect("a chunk");
    // Read at once: the first chunk never arrives ahead of the stake.
    assert_eq!(w.stake_status(&id).await, FairStatus::Staked);
    evil.wait_for(WITHIN, |r| r.kind() == Some("task_result"))
        .await
        .expect("the result");

    let rec = provider.job(&id).await.expect("the provider's job");
    let started = rec["created_ms"].as_u64().expect("created_ms");
    let staked = rec["payment"]["staked_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no staked_ms: {rec}"));
    assert!(
        started < staked,
        "the inference started at {started}, the stake was mined at {staked}: {rec}"
    );
    let chunks = of_job(&evil, "task_chunk", &id);
    let results = of_job(&evil, "task_result", &id);
    // The result, and the same again once the grace period passes unpaid.
    assert!(!results.is_empty(), "a result");
    assert!(first.at_ms >= staked);
    for m in chunks.iter().chain(&results) {
        assert!(
            m.at_ms >= staked,
            "a {:?} reached the requester at {} before the stake was mined at {staked}",
            m.kind(),
            m.at_ms
        );
    }
    eprintln!(
        "inference started {} ms before the stake was mined; first chunk {} ms after it",
        staked - started,
        first.at_ms - staked
    );
    assert_eq!(w.ollama.generate_calls(), 1);
    w.assert_conserved(PRICE).await;
}

/// Line 45. A hostile requester signs valid authorizations (funded, nonce unused, in their
/// window) and moves its USDC away in the same block as the provider's stake, ahead of it.
/// Each time: the inference starts, the stake reverts, the job is cancelled with
/// `stake_missing` "the stake never landed", not one chunk nor a result reaches the
/// requester, and no USDC moves. With `PEER_UNSTAKED_BURST=2`, the third authorization,
/// valid and funded, is refused over budget before any compute: the backend ran exactly
/// twice. Run against main's daemon (the stake mined before any work), it fails: the
/// inference never starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_that_never_lands_cancels_the_job_leaks_nothing_and_spends_the_budget() {
    let w = PaidWorld::with(WorldOptions {
        nodes: 3,
        block_time: Some(2),
        ..WorldOptions::default()
    })
    .await;
    let budget = [("PEER_UNSTAKED_BURST", "2"), ("PEER_UNSTAKED_PER_MIN", "1")];
    let provider = provider_only(&w, &budget).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    introduce(&evil, 0, &node_key(&w.mesh, 1)).await;
    let anvil = w.chain.provider();
    let stash = w.wallet(STASH);

    for round in 0..2u64 {
        let job = keccak256(format!("never lands {round}").as_bytes());
        let id = format!("{job:#x}");
        let task = hostile_task(&w, job, "work I will not pay for", 30, true).await;
        // Hold the next block while the provider starts, so the move lands ahead of the stake.
        anvil
            .anvil_set_interval_mining(0)
            .await
            .expect("pause mining");
        evil.send_json(0, &node_key(&w.mesh, 1), &task)
            .await
            .expect("send");
        until("the inference to start", WITHIN, || async {
            w.ollama.generate_calls() == round + 1
        })
        .await;
        let moved = send_usdc(&w, REQUESTER, stash, FUND).await;
        anvil.anvil_mine(Some(1), None).await.expect("mine");
        anvil
            .anvil_set_interval_mining(2)
            .await
            .expect("resume mining");
        moved.get_receipt().await.expect("moved");

        let err = evil
            .wait_for(WITHIN, |r| {
                r.kind() == Some("task_error")
                    && r.body.windows(id.len()).any(|x| x == id.as_bytes())
            })
            .await
            .expect("the job is cancelled");
        let body: Value = serde_json::from_slice(&err.body).expect("json");
        assert_eq!(body["code"], json!("stake_missing"), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("never landed"),
            "{body}"
        );
        let rec = provider.job(&id).await.expect("the provider's job");
        assert_eq!(rec["state"], json!("failed"), "{rec}");
        assert!(of_job(&evil, "task_chunk", &id).is_empty(), "chunks leaked");
        assert!(
            of_job(&evil, "task_result", &id).is_empty(),
            "a result leaked"
        );
        assert_ne!(w.stake_status(&id).await, FairStatus::Staked);

        // The money comes back for the next round: nothing was ever staked.
        let back = send_usdc(&w, STASH, w.requester_wallet, FUND).await;
        back.get_receipt().await.expect("moved back");
        w.assert_conserved(0).await;
    }

    // Budget spent: a third valid, funded authorization is refused before any compute.
    let job = keccak256(b"never lands 2");
    let id = format!("{job:#x}");
    let task = hostile_task(&w, job, "one more", 30, true).await;
    evil.send_json(0, &node_key(&w.mesh, 1), &task)
        .await
        .expect("send");
    let err = evil
        .wait_for(WITHIN, |r| {
            r.kind() == Some("task_error") && r.body.windows(id.len()).any(|x| x == id.as_bytes())
        })
        .await
        .expect("refused");
    let body: Value = serde_json::from_slice(&err.body).expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("too many unpaid tasks"),
        "{body}"
    );
    assert_eq!(
        w.ollama.generate_calls(),
        2,
        "the backend ran once per landed attempt"
    );
    assert_eq!(evil.received_kind("task_chunk").len(), 0);
    assert_eq!(evil.received_kind("task_result").len(), 0);
    assert!(
        provider.job(&id).await.is_none(),
        "no job for a refused task"
    );
    assert_eq!(w.balances().await, (FUND, 0, 0));
    w.assert_conserved(0).await;
}
