//! User story: paid delegations that do not go as planned. A provider that cannot serve a
//! staked job declines it (the requester is refunded in that transaction) and the job moves
//! to the next provider under a fresh job id and stake; a busy provider queues paid tasks
//! and makes no stake before it takes one; a deadline no stake can meet makes no stake and
//! answers 504; and hundreds of paid delegations at once never revert a stake.
//!
//! Real daemons over `edgent mesh-sim`, anvil (instant or timed blocks), the Ollama stub.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use edgent::chain::bindings::EdgentEscrowV4;
use edgent::chain::FairStatus;
use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::paid::{
    payment_becomes, PaidWorld, WorldOptions, FUND, PRICE, SECOND_PROVIDER,
};
use crate::support::{eventually, DaemonProc};

const WITHIN: Duration = Duration::from_secs(30);

alloy::sol! {
    /// ERC-20's transfer event.
    event Transfer(address indexed from, address indexed to, uint256 value);
}

fn job_of(v: &Value) -> String {
    v["job_id"].as_str().expect("job_id").to_string()
}

/// The USDC transfers (from, to, amount) in transaction `tx`.
async fn transfers_in(w: &PaidWorld, tx: &str) -> (u64, Vec<(Address, Address, U256)>) {
    let receipt = w
        .chain
        .provider()
        .get_transaction_receipt(tx.parse().unwrap())
        .await
        .unwrap()
        .expect("receipt");
    assert!(receipt.status(), "{tx} reverted");
    let moves = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == w.deployment.usdc)
        .filter_map(|l| Transfer::decode_log(&l.inner).ok())
        .map(|t| (t.from, t.to, t.value))
        .collect();
    (receipt.block_number.unwrap(), moves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declining_provider_refunds_at_once_and_the_job_completes_on_the_next() {
    let w = PaidWorld::with(WorldOptions {
        nodes: 3,
        block_time: None,
        ..WorldOptions::default()
    })
    .await;
    // Node 1 (the cheaper, tried first) fails every inference; node 2 serves.
    w.ollama
        .set(|b| b.fail = Some((500, "the GPU fell off the bus".into())));
    let good = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let (requester, first) = w.start(&[]).await;
    let mut env = w.second_provider_env(&good.url());
    env.push(("PRICE_USDC".into(), "0.02".into()));
    let second = DaemonProc::start_owned(&w.dir.path().join("second"), env).await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0, &w.mesh.nodes[2].0], WITHIN)
        .await;
    let second_wallet = w.wallet(SECOND_PROVIDER);
    let second_price = 2 * PRICE;

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "second time lucky", "wait": "settled", "max_price": "0.05", "timeout_ms": 30000}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "second time lucky"))
    );
    assert_eq!(body["provider"]["node_id"], json!(w.mesh.nodes[2].0));
    assert_eq!(body["payment"]["status"], json!("released"));
    assert_eq!(body["payment"]["amount_units"], json!(second_price));
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{body}");
    let (declined, served) = (job_of(&attempts[0]), job_of(&body));
    assert_ne!(declined, served, "a fresh job id for the next provider");
    assert_eq!(attempts[0]["provider"], json!(w.mesh.nodes[1].0));
    assert_eq!(attempts[0]["outcome"], json!("inference_failed"));
    assert_eq!(attempts[0]["stake"]["status"], json!("refunded"), "{body}");
    assert_eq!(attempts[1]["outcome"], json!("completed"));
    assert_eq!(attempts[1]["job_id"], json!(served));

    // The first stake was declined, and the decline transaction itself paid the requester
    // back: the refund is in the decline's block, not after any deadline.
    assert_eq!(w.stake_status(&declined).await, FairStatus::Declined);
    assert_eq!(w.stake_status(&served).await, FairStatus::Released);
    let decline_tx = attempts[0]["stake"]["tx_hash"]
        .as_str()
        .expect("decline tx");
    let (decline_block, moves) = transfers_in(&w, decline_tx).await;
    assert_eq!(
        moves,
        vec![(w.deployment.escrow, w.requester_wallet, U256::from(PRICE))],
        "the decline refunds the requester"
    );
    let declined_ev = w
        .chain
        .provider()
        .get_transaction_receipt(decline_tx.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .inner
        .logs()
        .iter()
        .filter_map(|l| EdgentEscrowV4::Declined::decode_log(&l.inner).ok())
        .map(|e| e.jobId)
        .collect::<Vec<B256>>();
    assert_eq!(declined_ev, vec![declined.parse::<B256>().unwrap()]);
    let pjob = payment_becomes(&first, &declined, "refunded", WITHIN).await;
    assert_eq!(pjob["payment"]["tx_hash"], json!(decline_tx));
    assert!(decline_block > 0);

    // USDC conserved to the unit: the requester paid the second provider only.
    let (r, p1, e) = w.balances().await;
    let p2 = w.usdc_of(second_wallet).await;
    assert_eq!((r, p1, p2, e), (FUND - second_price, 0, second_price, 0));
    assert_eq!(r + p1 + p2 + e, FUND);

    // The requester's books: the first attempt failed over, its money came back.
    let rec = payment_becomes(&requester, &declined, "refunded", WITHIN).await;
    assert_eq!(rec["state"], json!("failed"));
    assert_eq!(rec["moved_to"], json!(served));
    let done = requester.job(&served).await.expect("served job");
    assert_eq!(done["state"], json!("completed"));
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(good.generate_calls(), 1);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_staked_provider_loses_the_job_and_its_stake_is_refunded_after_the_deadline() {
    let w = PaidWorld::with(WorldOptions {
        nodes: 3,
        block_time: None,
        ..WorldOptions::default()
    })
    .await;
    // Node 1 (the cheaper, tried first) takes a minute per answer; node 2 answers at once.
    w.ollama.set(|b| b.delay = Duration::from_secs(60));
    let good = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let (requester, mut first) = w.start(&[]).await;
    let mut env = w.second_provider_env(&good.url());
    env.push(("PRICE_USDC".into(), "0.02".into()));
    let second = DaemonProc::start_owned(&w.dir.path().join("second"), env).await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0, &w.mesh.nodes[2].0], WITHIN)
        .await;
    let second_price = 2 * PRICE;

    let url = format!("{}/delegate", requester.url);
    let call = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"model": "tinyllama", "prompt": "outlive me", "wait": "settled", "timeout_ms": 60000}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    });
    // Killed once its stake is mined: the provider starts the job while its stake lands
    // (prestart), and a kill before the stake is sent leaves nothing to refund.
    let dead_job = eventually(
        "the first provider running the job, staked",
        WITHIN,
        || async {
            let j = first.newest_job().await?;
            if j["state"] != json!("running") {
                return None;
            }
            let job = job_of(&j);
            (w.stake_status(&job).await == FairStatus::Staked).then_some(job)
        },
    )
    .await;
    first.kill();
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["provider"]["node_id"], json!(w.mesh.nodes[2].0));
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(job_of(&attempts[0]), dead_job);
    assert_ne!(job_of(&body), dead_job);
    assert_eq!(attempts[0]["outcome"], json!("dead"));
    let stake = &attempts[0]["stake"];
    assert_eq!(stake["status"], json!("pending_refund"), "{body}");
    let refund_after = stake["refund_after"].as_u64().expect("refund_after");

    // The dead provider's stake is still locked, and the books say so.
    assert_eq!(w.stake_status(&dead_job).await, FairStatus::Staked);
    let (r, p1, e) = w.balances().await;
    let p2 = w.usdc_of(w.wallet(SECOND_PROVIDER)).await;
    assert_eq!(
        (r, p1, p2, e),
        (FUND - PRICE - second_price, 0, second_price, PRICE)
    );
    let rec = requester.job(&dead_job).await.unwrap();
    assert_eq!(rec["state"], json!("failed"));
    assert_eq!(rec["moved_to"], json!(job_of(&body)));
    assert_eq!(rec["payment"]["status"], json!("staked"));

    // Once the chain passes the stake's deadline, the requester's watcher refunds it.
    let now = w.requester_client().await.chain_time().await.unwrap();
    w.advance(refund_after.saturating_sub(now) + 5).await;
    payment_becomes(&requester, &dead_job, "refunded", WITHIN).await;
    assert_eq!(w.stake_status(&dead_job).await, FairStatus::Refunded);
    let (r, p1, e) = w.balances().await;
    let p2 = w.usdc_of(w.wallet(SECOND_PROVIDER)).await;
    assert_eq!((r, p1, p2, e), (FUND - second_price, 0, second_price, 0));
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_paid_provider_queues_and_stakes_only_for_the_jobs_it_takes() {
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_millis(300));
    let (requester, provider) = w
        .start(&[("PROVIDER_MAX_JOBS", "1"), ("PROVIDER_MAX_QUEUE", "32")])
        .await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0], WITHIN)
        .await;

    // Six at once with one slot: they wait in the queue and all succeed; each stake is
    // made when its job gets the slot, so the escrow never holds the six at once.
    let n = 6u64;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, stop) = (peak.clone(), stop.clone());
        let reader = w.requester_client().await;
        let escrow = w.deployment.escrow;
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(b) = reader.usdc_balance(escrow).await {
                    let b = u64::try_from(b).unwrap();
                    peak.fetch_max(b, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let calls = (0..n).map(|i| {
        let requester = &requester;
        async move {
            requester
                .delegate(json!({"model": "tinyllama", "prompt": format!("queued {i}"), "wait": "settled", "timeout_ms": 60000}))
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["attempts"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["payment"]["status"], json!("released"));
    }
    assert!(provider.log().contains("task queued"));
    assert_eq!(w.ollama.generate_calls(), n);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        peak < n * PRICE,
        "the escrow held {peak}: stakes were made for queued jobs"
    );
    assert_eq!(w.balances().await, (FUND - n * PRICE, n * PRICE, 0));

    // A full queue: the provider answers busy before any money moves.
    drop((requester, provider, w));
    let w = PaidWorld::new().await;
    w.ollama.set(|b| b.delay = Duration::from_secs(3));
    let (requester, _provider) = w
        .start(&[("PROVIDER_MAX_JOBS", "1"), ("PROVIDER_MAX_QUEUE", "1")])
        .await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0], WITHIN)
        .await;
    let calls = (0..4).map(|i| {
        let requester = &requester;
        async move {
            requester
                .delegate(json!({"model": "tinyllama", "prompt": format!("full {i}"), "wait": "settled", "timeout_ms": 60000}))
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((ok, busy.len()), (2, 2), "{answers:?}");
    for b in &busy {
        assert!(
            b["detail"].as_str().is_some_and(|d| d.contains("busy")),
            "{b}"
        );
    }
    let jobs = requester.get("/jobs").await;
    let refused: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == json!("failed"))
        .map(job_of)
        .collect();
    assert_eq!(refused.len(), 2, "{jobs}");
    for id in refused {
        assert_eq!(w.stake_status(&id).await, FairStatus::None, "{id} staked");
    }
    let sent = w
        .chain
        .provider()
        .get_transaction_count(w.requester_wallet)
        .await
        .unwrap();
    // The requester only signs its stakes (the provider sends them); its two transactions
    // are its own releases of the two jobs served (escrow v4).
    assert_eq!(sent, 2, "the requester's releases only");
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 2 * PRICE, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_no_stake_can_meet_makes_no_stake_and_answers_504() {
    let w = PaidWorld::with(WorldOptions {
        nodes: 2,
        block_time: Some(2),
        ..WorldOptions::default()
    })
    .await;
    // Room for the provider's PAYMENT_GRACE_SECS behind the stake's deadline.
    let (requester, provider) = w.start_with(&[], &[("PAYMENT_GRACE_SECS", "10")]).await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0], WITHIN)
        .await;
    // A few paid jobs teach the provider how long its stakes take to land (up to a block).
    let mut warm = Vec::new();
    for i in 0..4 {
        let (status, body) = requester
            .delegate(
                json!({"model": "tinyllama", "prompt": format!("warm {i}"), "timeout_ms": 30000}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        warm.push(job_of(&body));
    }
    for id in &warm {
        payment_becomes(&provider, id, "released", WITHIN).await;
    }
    let chain = w.chain.provider().clone();
    let provider_txs = || {
        let chain = chain.clone();
        let who = w.provider_wallet;
        async move { chain.get_transaction_count(who).await.unwrap() }
    };
    let before = provider_txs().await;
    let (r_before, p_before, _) = w.balances().await;

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "in a hurry", "timeout_ms": 300}))
        .await;
    assert_eq!(status, 504, "{body}\n{}", provider.log());
    assert_eq!(body["error"], json!("deadline"), "{body}");
    let rec = requester.newest_job().await.unwrap();
    let id = job_of(&rec);
    assert!(!warm.contains(&id));
    assert_eq!(rec["error_code"], json!("deadline"), "{rec}");
    // No stake, and no transaction at all, for it.
    assert_eq!(w.stake_status(&id).await, FairStatus::None);
    assert_eq!(provider_txs().await, before);
    assert!(provider.job(&id).await.is_none(), "the provider took it");
    assert_eq!(w.ollama.generate_calls(), 4);
    let (r, p, e) = w.balances().await;
    assert_eq!((r, p, e), (r_before, p_before, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_paid_delegations_at_thirty_concurrent_never_revert_a_stake() {
    const N: usize = 600;
    const AT_ONCE: usize = 30;
    let w = PaidWorld::with(WorldOptions {
        nodes: 2,
        block_time: Some(1),
        // Room for the provider's 30 s grace (so it does not submit while the requester's
        // release is on its way under load) and the stake's margin of a 120 s delegation.
        dispute_window: Some(120),
    })
    .await;
    let (requester, provider) = w
        .start_with(
            &[("PAYMENT_TICK_MS", "500"), ("RUST_LOG", "info")],
            &[
                ("PROVIDER_MAX_JOBS", "64"),
                ("PAYMENT_TICK_MS", "500"),
                ("PAYMENT_GRACE_SECS", "30"),
                ("RUST_LOG", "info"),
            ],
        )
        .await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0], WITHIN)
        .await;
    let first_block = w.chain.provider().get_block_number().await.unwrap();
    let started = Instant::now();
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(0..N)
        .map(|i| {
            let requester = &requester;
            async move {
                requester
                    .delegate(json!({"model": "tinyllama", "prompt": format!("load {i}"), "timeout_ms": 120000}))
                    .await
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let took = started.elapsed();
    let mut ids = Vec::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["attempts"].as_array().unwrap().len(), 1, "{body}");
        ids.push(job_of(body));
    }
    // Releases ran alongside: wait for the last of them.
    eventually("every stake released", Duration::from_secs(120), || async {
        let jobs = requester.get(&format!("/jobs?limit={N}")).await;
        let released = jobs
            .as_array()?
            .iter()
            .filter(|j| j["payment"]["status"] == json!("released"))
            .count();
        (released == N).then_some(())
    })
    .await;
    let last_block = w.chain.provider().get_block_number().await.unwrap();

    // Every transaction mined meanwhile succeeded: no stake (and no release) reverted.
    let (mut stakes, mut releases, mut mined) = (0usize, 0usize, 0usize);
    for n in first_block..=last_block {
        let receipts = w
            .chain
            .provider()
            .get_block_receipts(n.into())
            .await
            .unwrap()
            .unwrap_or_default();
        for r in receipts {
            mined += 1;
            assert!(
                r.status(),
                "transaction {} reverted in block {n}",
                r.transaction_hash
            );
            for l in r.inner.logs() {
                if l.address() != w.deployment.escrow {
                    continue;
                }
                match l.topics().first() {
                    Some(t) if *t == EdgentEscrowV4::Staked::SIGNATURE_HASH => stakes += 1,
                    Some(t) if *t == EdgentEscrowV4::Released::SIGNATURE_HASH => releases += 1,
                    _ => {}
                }
            }
        }
    }
    assert_eq!((stakes, releases), (N, N), "{mined} transactions mined");
    for id in ids.iter().step_by(37) {
        assert_eq!(w.stake_status(id).await, FairStatus::Released);
    }
    let total = N as u64 * PRICE;
    assert_eq!(w.balances().await, (FUND - total, total, 0));
    println!(
        "{N} paid delegations at {AT_ONCE} concurrent on 1 s blocks: {:.1} s, {} blocks, {mined} transactions",
        took.as_secs_f64(),
        last_block - first_block
    );
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_paid_delegation_that_fails_over_twice_keeps_no_stream_behind() {
    let w = PaidWorld::of_nodes(4).await;
    // Nodes 1 and 2 (the cheapest, tried first) fail every inference at once; node 3
    // serves. Each paid attempt after the first runs under a fresh job id.
    w.ollama
        .set(|b| b.fail = Some((500, "the GPU fell off the bus".into())));
    let bad = OllamaStub::start(StubBehaviour {
        fail: Some((500, "out of memory".into())),
        ..StubBehaviour::default()
    })
    .await
    .unwrap();
    let good = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let (requester, _first) = w.start(&[]).await;
    let second = w.provider_env_at(2, SECOND_PROVIDER, &bad.url(), "0.02");
    let _second = DaemonProc::start_owned(&w.dir.path().join("second"), second).await;
    let third = w.provider_env_at(3, SECOND_PROVIDER + 1, &good.url(), "0.03");
    let _third = DaemonProc::start_owned(&w.dir.path().join("third"), third).await;
    let ids: Vec<&str> = (1..=3).map(|i| w.mesh.nodes[i].0.as_str()).collect();
    requester.knows_providers(&ids, WITHIN).await;

    let text = requester
        .delegate_stream(json!({"model": "tinyllama", "prompt": "third time lucky",
            "stream": true, "max_price": "0.05", "timeout_ms": 60000}))
        .await;
    let last: Value = serde_json::from_str(text.lines().last().expect("a last line"))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    let outcomes: Vec<&str> = last["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("attempts: {text}"))
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        ["inference_failed", "inference_failed", "completed"],
        "{text}"
    );
    assert_eq!(
        last["output"],
        json!(stub_output("tinyllama:latest", "third time lucky"))
    );
    // Every attempt's stream entry is gone once the delegation ended: the middle one
    // (neither the delegation's own id nor its last attempt's) was left before.
    let st = requester.get("/status").await;
    assert_eq!(st["streams_open"], 0, "{st}");
}
