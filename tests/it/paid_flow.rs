//! User story: an agent delegates a paid job. Two daemon processes over `edgent mesh-sim`,
//! anvil as the chain (escrow v4), the Ollama stub. The requester stakes, the provider checks
//! the stake, runs, proves, asks to be paid over AXL; the requester verifies the proof and
//! releases with its own wallet (no operator). Every scenario ends with the money conserved.

use std::time::Duration;

use edgent::chain::FairStatus;
use edgent::harness::ollama_stub::stub_output;
use serde_json::{json, Value};

use crate::support;
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};

const WITHIN: Duration = Duration::from_secs(30);

fn job_id(body: &Value) -> String {
    body["job_id"].as_str().expect("job_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_job_is_released_by_the_requesters_own_wallet_with_exact_amounts() {
    let w = PaidWorld::new().await;
    let (requester, provider) = w.start(&[]).await;
    w.assert_conserved(0).await;
    let st = requester.get("/status").await;
    assert_eq!(st["payments"]["active"], json!(true));
    assert_eq!(
        st["chain"]["wallet"],
        json!(format!("{:#x}", w.requester_wallet))
    );
    assert_eq!(
        st["chain"]["escrow"],
        json!(format!("{:#x}", w.deployment.escrow))
    );

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "hello paid mesh", "wait": "settled", "max_price": "0.05"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "hello paid mesh"))
    );
    assert_eq!(body["proof_verified"], json!(true));
    assert_eq!(body["payment"]["status"], json!("released"));
    assert_eq!(body["payment"]["amount_units"], json!(PRICE));
    let tx = body["payment"]["tx_hash"].as_str().expect("release tx");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    assert!(body["payment"]["explorer_url"]
        .as_str()
        .is_some_and(|u| u.ends_with(tx)));
    for phase in [
        "discover_ms",
        "stake_ms",
        "verify_ms",
        "settle_ms",
        "total_ms",
    ] {
        assert!(body["timings"][phase].as_u64().is_some(), "{phase}: {body}");
    }
    let id = job_id(&body);

    // Exact amounts: requester -> escrow -> provider.
    let (r, p, e) = w.balances().await;
    assert_eq!((r, p, e), (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
    assert_eq!(w.stake_status(&id).await, FairStatus::Released);
    // No operator on the happy path: KeeperHub (the arbiter's tool) was never called.
    assert_eq!(w.keeperhub.posts(), 0);

    // Both sides' /jobs show the release transaction.
    let rjob = requester.job(&id).await.expect("requester job");
    assert_eq!(rjob["payment"]["tx_hash"], json!(tx));
    assert_eq!(rjob["payment"]["proof_verified"], json!(true));
    let pjob = payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(pjob["payment"]["tx_hash"], json!(tx));
    assert!(pjob["timings"]["prove_ms"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_job_settles_directly_and_the_provider_hears_of_it() {
    let w = PaidWorld::new().await;
    let (requester, provider) = w.start(&[]).await;

    // Default wait: answer as soon as the proof checks; settlement follows.
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "direct"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["proof_verified"], json!(true));
    let id = job_id(&body);
    let rjob = payment_becomes(&requester, &id, "released", WITHIN).await;
    let tx = rjob["payment"]["tx_hash"].as_str().expect("tx").to_string();
    let pjob = payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(pjob["payment"]["tx_hash"], json!(tx));
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    assert_eq!(
        w.keeperhub.posts(),
        0,
        "the direct settler never calls KeeperHub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_provider_is_not_paid_and_the_requester_is_made_whole() {
    let w = PaidWorld::with_nodes(3).await;
    let (requester, _provider) = w.start(&[("EDGENT_TEST_TAMPER_OUTPUT", "on")]).await;

    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "tell the truth"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], json!("proof_invalid"));
    let rjob = requester.newest_job().await.expect("job");
    let id = rjob["job_id"].as_str().unwrap().to_string();
    // Escrow v4: the requester cannot take the stake back alone. The provider submits after
    // its grace period; the requester disputes within the window; the arbiter decides.
    payment_becomes(&requester, &id, "disputed", WITHIN).await;
    w.arbiter_refunds(&id).await;
    let rjob = payment_becomes(&requester, &id, "rejected", WITHIN).await;
    assert_eq!(rjob["payment"]["proof_verified"], json!(false));
    assert!(rjob["payment"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("outputCommitment")));
    assert_eq!(w.stake_status(&id).await, FairStatus::ResolvedRefunded);
    assert_eq!(w.balances().await, (FUND, 0, 0));
    let metrics = requester.metrics().await;
    assert!(
        metrics.contains("edgent_proofs_verified_total{outcome=\"invalid\"} 1"),
        "{metrics}"
    );
    assert_eq!(w.keeperhub.posts(), 0, "the requester needs no operator");

    // An honest provider joins (mesh node 2): the next delegation goes to it (the liar ranks
    // last), is served and paid; USDC conserved across the four wallets and the escrow.
    let good = edgent::harness::ollama_stub::OllamaStub::start(Default::default())
        .await
        .expect("stub");
    let env = w.second_provider_env(&good.url());
    let _honest = support::DaemonProc::start_owned(&w.dir.path().join("honest"), env).await;
    let honest_id = w.mesh.nodes[2].0.clone();
    support::eventually(
        "the requester to know the honest provider",
        WITHIN,
        || async {
            let st = requester.get("/status").await;
            let listed = st["mesh_providers"].as_array()?.clone();
            listed
                .iter()
                .any(|p| p["node_id"] == json!(honest_id))
                .then_some(())
        },
    )
    .await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "honest work", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(honest_id), "{body}");
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    let second = w
        .usdc_of(w.wallet(crate::support::paid::SECOND_PROVIDER))
        .await;
    assert_eq!(w.balances().await, (FUND - PRICE, 0, 0));
    assert_eq!(second, PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_payment_requests_pay_nothing() {
    let w = PaidWorld::new().await;
    let (requester, provider) = w.start(&[]).await;

    // Job A is paid normally.
    let (status, a) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "job a", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{a}");
    let a_id = job_id(&a);
    let a_rec = requester.job(&a_id).await.expect("job a");
    let a_request = a_rec["payment"]["request"].clone();
    assert!(a_request.is_object(), "{a_rec}");

    // A's payment_request sent again: already released, nothing more is paid.
    let mut replay = a_request.clone();
    replay["type"] = json!("payment_request");
    replay["v"] = json!(1);
    let requester_id = w.mesh.nodes[0].0.clone();
    let provider_url = w.mesh.nodes[1].1.clone();
    let code = support::raw_send(
        &provider_url,
        &requester_id,
        serde_json::to_vec(&replay).unwrap(),
    )
    .await;
    assert_eq!(code, 200);

    // Job B runs slowly; while it runs, the provider sends A's proof as B's.
    w.ollama.set(|b| b.delay = Duration::from_secs(3));
    let r2 = std::sync::Arc::new(requester);
    let rq = r2.clone();
    let b_call = tokio::spawn(async move {
        rq.delegate(json!({"model": "tinyllama", "prompt": "job b", "timeout_ms": 20000}))
            .await
    });
    let b_id = support::eventually("job b tasked", WITHIN, || async {
        let j = r2.newest_job().await?;
        (j["job_id"] != json!(a_id) && j["state"] == json!("tasked"))
            .then(|| j["job_id"].as_str().unwrap().to_string())
    })
    .await;
    let mut forged = a_request.clone();
    forged["type"] = json!("payment_request");
    forged["v"] = json!(1);
    forged["job_id"] = json!(b_id);
    forged["payment_required"]["accepts"][0]["extra"]["jobId"] = json!(b_id);
    let url = forged["payment_required"]["resource"]["url"]
        .as_str()
        .unwrap()
        .replace(&a_id, &b_id);
    forged["payment_required"]["resource"]["url"] = json!(url);
    let code = support::raw_send(
        &provider_url,
        &requester_id,
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let (status, b) = b_call.await.unwrap();
    assert_eq!(status, 502, "{b}");
    assert_eq!(b["error"], json!("proof_invalid"));
    w.arbiter_refunds(&b_id).await;
    let b_rec = payment_becomes(&r2, &b_id, "rejected", WITHIN).await;
    assert!(
        b_rec["payment"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("proof refused")),
        "{b_rec}"
    );

    // A paid once, B not at all.
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    assert_eq!(w.stake_status(&a_id).await, FairStatus::Released);
    assert_eq!(w.stake_status(&b_id).await, FairStatus::ResolvedRefunded);
    drop(provider);
}

/// The next message node `url` received, as JSON (polls its `/recv`).
async fn next_message(url: &str) -> Value {
    support::eventually("a message on the raw node", WITHIN, || async {
        let r = reqwest::get(format!("{url}/recv")).await.ok()?;
        if r.status().as_u16() != 200 {
            return None;
        }
        let m: Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
        // The provider greets the nodes it learns of (discovery): not part of this exchange.
        (m["type"] != json!("announce")).then_some(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_checks_the_stake_before_any_work() {
    use alloy::primitives::{keccak256, Address, U256};
    let w = PaidWorld::new().await;
    let provider =
        support::DaemonProc::start_owned(&w.dir.path().join("provider"), w.provider_env()).await;
    // The test itself is the requester, on mesh node 0, with the funded wallet.
    let (me_url, provider_id) = (w.mesh.nodes[0].1.clone(), w.mesh.nodes[1].0.clone());
    // The raw node introduces itself, so the provider may answer its tasks.
    support::raw_introduce(&me_url, &w.mesh.nodes[0].0, &provider_id).await;
    let payer = w.requester_client().await;
    let escrow = format!("{:#x}", w.deployment.escrow);
    let chain_id = w.chain.chain_id();
    let mut n = 0u8;
    let mut live = 0u64;
    let mut refused = Vec::new();
    let mut cases: Vec<(&str, Value)> = Vec::new();

    // No stake at all.
    cases.push(("stake_missing", Value::Null));
    // A stake in another escrow.
    cases.push((
        "stake_missing",
        json!({"chain_id": chain_id, "escrow": format!("0x{}", "ab".repeat(20)), "amount": "10000", "tx": format!("0x{}", "11".repeat(32))}),
    ));
    // Our escrow, but nothing staked for the job.
    cases.push((
        "stake_missing",
        json!({"chain_id": chain_id, "escrow": escrow, "amount": "10000", "tx": format!("0x{}", "11".repeat(32))}),
    ));
    for (code, stake) in cases {
        n += 1;
        refused.push((code, keccak256([n]), stake));
    }
    // Staked on chain, but for another provider, another provider key (the escrow would
    // refuse this provider's proof at submit), too little, or ending too soon.
    let now = payer.chain_time().await.unwrap();
    let other = Address::repeat_byte(0x44);
    let key: [u8; 32] = alloy::hex::decode(&provider_id)
        .unwrap()
        .try_into()
        .unwrap();
    let key_c = edgent::chain::key_commitment(&key);
    let provider_key = key;
    let me_key: [u8; 32] = alloy::hex::decode(&w.mesh.nodes[0].0)
        .unwrap()
        .try_into()
        .unwrap();
    let other_key = edgent::chain::key_commitment(&[0x44; 32]);
    for (code, to, key, amount, deadline) in [
        ("stake_insufficient", other, key_c, PRICE, now + 600),
        (
            "stake_insufficient",
            w.provider_wallet,
            other_key,
            PRICE,
            now + 600,
        ),
        (
            "stake_insufficient",
            w.provider_wallet,
            key_c,
            PRICE - 1,
            now + 600,
        ),
        (
            "deadline_too_close",
            w.provider_wallet,
            key_c,
            PRICE,
            now + 5,
        ),
    ] {
        n += 1;
        let job = keccak256([n]);
        let tx = payer
            .stake(job, to, key, U256::from(amount), deadline)
            .await
            .unwrap();
        live += amount;
        // Bound to this sender (mesh node 0) by the staking wallet, as a requester that
        // stakes itself does: the refusal is for the stake's terms alone.
        let binding = json!({"node": w.mesh.nodes[0].0,
            "signature": payer.sign_stake_binding(job, &provider_key, &me_key).unwrap()});
        let stake = json!({"chain_id": chain_id, "escrow": escrow, "amount": amount.to_string(),
            "tx": format!("{tx:#x}"), "binding": binding});
        refused.push((code, job, stake));
    }

    for (code, job, stake) in refused {
        let mut task = json!({
            "v": 1, "type": "task", "job_id": format!("{job:#x}"), "model": "tinyllama",
            "prompt": "unpaid work?", "deadline_ms": edgent::jobs::now_ms() + 20_000,
        });
        if !stake.is_null() {
            task["stake"] = stake;
        }
        let sent =
            support::raw_send(&me_url, &provider_id, serde_json::to_vec(&task).unwrap()).await;
        assert_eq!(sent, 200);
        // task_error is delivered reliably: this raw sender never acks, so earlier
        // answers come again; skip those.
        let reply = loop {
            let m = next_message(&me_url).await;
            if m["job_id"] == json!(format!("{job:#x}")) {
                break m;
            }
        };
        assert_eq!(reply["type"], json!("task_error"), "{reply}");
        assert_eq!(reply["code"], json!(code), "{reply}");
        assert_eq!(reply["job_id"], json!(format!("{job:#x}")));
    }
    assert_eq!(
        w.ollama.generate_calls(),
        0,
        "no inference for an unpaid task"
    );
    w.assert_conserved(live).await;
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_without_funds_gets_a_clear_402_and_nothing_moves() {
    let w = PaidWorld::new().await;
    let broke = w.chain.key(5);
    let (requester, _provider) = w
        .start_with(&[("WALLET_PRIVATE_KEY", broke.expose())], &[])
        .await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "on credit?"}))
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"], json!("payment_failed"));
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("balance")),
        "{body}"
    );
    let rec = requester.newest_job().await.expect("job");
    assert_eq!(rec["state"], json!("failed"));
    assert_eq!(rec["error_code"], json!("payment_failed"));
    assert_eq!(rec["payment"]["status"], json!("unwound"));
    assert_eq!(w.ollama.generate_calls(), 0);
    assert_eq!(w.balances().await, (FUND, 0, 0));
}
