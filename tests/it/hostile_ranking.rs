//! User story: a provider cannot buy its rank, be paid for nothing, or be paid more than
//! the agent's node allows (issue 21, item 4; docs/threat-model.md, lines 9-11). The
//! attacker is the scriptable evil node (mesh node 2, no daemon); the requester (node 0)
//! and the honest provider (node 1, the Ollama stub as its backend) are real daemons, paid
//! through escrow v4 on anvil. Each test ends with an honest delegation served and paid,
//! the attacker paid nothing, and USDC conserved.

use std::time::Duration;

use edgent::chain::{EscrowClient, FairStatus};
use edgent::harness::ollama_stub::stub_output;
use edgent::protocol::{Announce, Message, ModelOffer, ResourceAd, TaskResult, Usage};
use serde_json::{json, Value};

use crate::support::evil::{evil_on, node_key};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE, SECOND_PROVIDER};
use crate::support::{eventually, DaemonProc};

const WITHIN: Duration = Duration::from_secs(60);

/// An announcement of `evil`'s identity 0 carrying an ad for every model, the model loaded,
/// no load, huge memory, at `price`, paid into `wallet`, kept the longest a receiver allows (600 s).
fn bought_ad(
    evil: &edgent::harness::evil_node::EvilNode,
    price: u64,
    wallet: alloy::primitives::Address,
) -> Message {
    let me = evil.key(0);
    let models: Vec<String> = ["tinyllama", "tinyllama:latest", "llama3:8b", "qwen2.5:72b"]
        .map(String::from)
        .to_vec();
    Message::Announce(Announce {
        node_id: me,
        ens: None,
        known: Vec::new(),
        ad: Some(ResourceAd {
            request_id: uuid::Uuid::nil(),
            node_id: me,
            ens: None,
            wallet: Some(format!("{wallet:#x}")),
            model_info: models
                .iter()
                .map(|m| ModelOffer {
                    name: m.clone(),
                    size_bytes: Some(1),
                    loaded: true,
                    ..ModelOffer::default()
                })
                .collect(),
            models,
            free_memory_mb: 1 << 40,
            price,
            load: 0.0,
            version: "0.1.0".into(),
            slots: Some(64),
            queue: Some(0),
        }),
        ttl_ms: 600_000,
    })
}

/// Wait until `requester` caches an ad of node `id`.
async fn wait_for_ad(requester: &DaemonProc, id: &str) {
    eventually("the ad in the requester's cache", WITHIN, || async {
        let st = requester.get("/status").await;
        st["mesh_providers"]
            .as_array()?
            .iter()
            .any(|p| p["node_id"] == json!(id))
            .then_some(())
    })
    .await;
}

/// Line 9: an ad that claims every model, loaded, idle, at the agent's highest price
/// (the default `MAX_PRICE_USDC`, 100 times the honest price), sent unsolicited and cached
/// 600 s, its wallet a real one (anvil account 4). On main's ranking (fit and load before
/// price) it came first and every delegation sent it the task; now price ranks before the
/// ad's own claims and the premium cap keeps it out: it never gets a task, the honest
/// provider serves every delegation and is paid each one, the bought ad's wallet nothing,
/// and USDC is conserved with no stake left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ad_claiming_everything_at_the_highest_price_never_gets_a_task() {
    let w = PaidWorld::with_nodes(3).await;
    let (requester, provider) = w.start(&[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    evil.set_acks(true);
    let evil_wallet = w.wallet(SECOND_PROVIDER);
    evil.send(
        0,
        &node_key(&w.mesh, 0),
        &bought_ad(&evil, 1_000_000, evil_wallet),
    )
    .await
    .expect("send the ad");
    wait_for_ad(&requester, &evil.key(0).to_hex()).await;
    wait_for_ad(&requester, &w.mesh.nodes[1].0).await;

    for i in 0..3u64 {
        let prompt = format!("honest work {i}");
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": prompt, "wait": "settled"}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["provider"]["node_id"],
            json!(w.mesh.nodes[1].0),
            "{body}"
        );
        assert_eq!(
            body["output"],
            json!(stub_output("tinyllama:latest", &prompt))
        );
        assert_eq!(body["attempts"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(body["payment"]["status"], json!("released"), "{body}");
        let id = body["job_id"].as_str().expect("job id").to_string();
        payment_becomes(&provider, &id, "released", WITHIN).await;
        assert_eq!(
            w.balances().await,
            (FUND - (i + 1) * PRICE, (i + 1) * PRICE, 0)
        );
    }
    assert_eq!(w.ollama.generate_calls(), 3);
    assert_eq!(
        evil.received_kind("task").len(),
        0,
        "the bought ad got a task"
    );
    assert_eq!(w.usdc_of(evil_wallet).await, 0, "the bought ad was paid");
    w.assert_conserved(0).await;
}

/// Line 10 (the part a requester can defend alone): a provider that answers with an empty
/// output is refused, scored as a failure, never paid, and the job goes to the next
/// provider. Its ad is the cheapest (both are newcomers), so it is tried first; it even
/// takes the stake (submits the requester's authorization on chain from its own wallet,
/// anvil account 4) before answering empty. On main the empty output was the answer (200,
/// `output: ""`, from the evil node). Now the refused attempt's stake is `disputed` (a
/// submit of it would be disputed within the window), it stays in the escrow, never paid
/// to the evil wallet, and the requester takes it back after its deadline; the honest
/// provider is paid; USDC is conserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_output_is_refused_and_the_job_goes_to_an_honest_provider() {
    const CHEAP: u64 = 1;
    let w = PaidWorld::with_nodes(3).await;
    let (requester, provider) = w.start(&[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    evil.set_acks(true);
    let evil_wallet = w.wallet(SECOND_PROVIDER);
    let evil_chain = EscrowClient::connect(
        &w.chain.settings(&w.deployment),
        Some(w.chain.signer(SECOND_PROVIDER)),
    )
    .await
    .expect("the evil wallet's escrow client");
    let to = node_key(&w.mesh, 0);
    evil.send(0, &to, &bought_ad(&evil, CHEAP, evil_wallet))
        .await
        .expect("ad");
    wait_for_ad(&requester, &evil.key(0).to_hex()).await;
    wait_for_ad(&requester, &w.mesh.nodes[1].0).await;

    let answer = async {
        let task = evil
            .wait_for(WITHIN, |r| r.kind() == Some("task"))
            .await
            .expect("the cheap ad gets the task");
        let Some(Message::Task(t)) = task.msg else {
            panic!("not a task")
        };
        // Take the stake the way a provider does, then answer nothing.
        let stake = t.stake.as_ref().expect("a paid task");
        let auth = edgent::paid::authorization_from_wire(
            &t.job_id,
            evil_wallet,
            edgent::chain::key_commitment(&evil.key(0).0),
            &stake.amount,
            stake.authorization.as_ref().expect("an authorization"),
            w.deployment.escrow,
            None,
        )
        .expect("a valid authorization");
        evil_chain
            .stake_with_authorization(&auth)
            .await
            .expect("the evil node stakes");
        let empty = Message::TaskResult(TaskResult {
            job_id: t.job_id,
            output: " \n".into(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            receipt: None,
        });
        evil.send(0, &to, &empty).await.expect("result");
        t.job_id.to_string()
    };
    let (evil_job, (status, body)) = tokio::join!(
        answer,
        requester
            .delegate(json!({"model": "tinyllama", "prompt": "say something", "wait": "settled"}))
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["provider"]["node_id"],
        json!(w.mesh.nodes[1].0),
        "{body}"
    );
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "say something"))
    );
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(attempts[0]["outcome"], json!("empty_output"), "{body}");
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    // Scored as a failure: it ranks below the honest provider from now on.
    let st = requester.get("/status").await;
    let rec = st["provider_history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|r| r["node_id"] == json!(evil.key(0).to_hex()))
        .cloned()
        .expect("the evil node's record");
    assert_eq!(
        (rec["successes"].clone(), rec["failures"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(evil.received_kind("task").len(), 1);

    // The money: the honest provider paid, the refused stake disputed and still in the
    // escrow (the only live stake), the evil wallet paid nothing.
    let honest = body["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&provider, &honest, "released", WITHIN).await;
    let refused = payment_becomes(&requester, &evil_job, "disputed", WITHIN).await;
    assert_eq!(refused["state"], json!("failed"), "{refused}");
    assert_eq!(w.stake_status(&evil_job).await, FairStatus::Staked);
    assert_eq!(
        w.balances().await,
        (FUND - PRICE - CHEAP, PRICE, CHEAP),
        "{refused}"
    );
    assert_eq!(w.usdc_of(evil_wallet).await, 0, "the empty output was paid");
    w.assert_conserved(CHEAP).await;
    // Never submitted: after its deadline the requester takes the stake back.
    let deadline = refused["payment"]["stake_deadline"]
        .as_u64()
        .expect("stake deadline");
    let now = w.requester_client().await.chain_time().await.expect("time");
    w.advance(deadline.saturating_sub(now) + 1).await;
    payment_becomes(&requester, &evil_job, "refunded", WITHIN).await;
    assert_eq!(w.stake_status(&evil_job).await, FairStatus::Refunded);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    assert_eq!(w.usdc_of(evil_wallet).await, 0);
    w.assert_conserved(0).await;
}

/// Line 11, the ceiling: an agent's `max_price` above `MAX_PRICE_CEILING_USDC` is refused
/// (400, in the API's error shape) before any job or stake; on main it was taken as given
/// (200). At the ceiling the delegation is served and paid (the provider's price, not the
/// agent's most); USDC is conserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_price_above_the_ceiling_is_refused() {
    let w = PaidWorld::new().await;
    let (requester, provider) = w
        .start_with(
            &[("MAX_PRICE_CEILING_USDC", "0.5"), ("MAX_PRICE_USDC", "0.1")],
            &[],
        )
        .await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "dear", "max_price": "100"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], json!("bad_request"));
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("MAX_PRICE_CEILING_USDC") && detail.contains("0.5 USDC"),
        "{detail}"
    );
    assert_eq!(requester.get("/jobs").await, json!([]));
    assert_eq!(w.balances().await, (FUND, 0, 0), "a stake was taken");
    // At the ceiling: served and paid the provider's price.
    let (status, body) = requester
        .delegate(
            json!({"model": "tinyllama", "prompt": "fair", "max_price": "0.5", "wait": "settled"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    let id = body["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(w.ollama.generate_calls(), 1);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}

/// Line 11, the budget: with `SPEND_BUDGET_USDC` of one and a half prices, the first paid
/// delegation is served and paid, the second is refused with 402 `budget_exhausted` before
/// any stake (its job is recorded failed); USDC is conserved. On main the second was served
/// and paid too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_refuses_the_next_paid_delegation_with_402() {
    let w = PaidWorld::new().await;
    let price = edgent::config::format_usdc(PRICE);
    let budget = edgent::config::format_usdc(PRICE + PRICE / 2);
    let (requester, _provider) = w.start_with(&[("SPEND_BUDGET_USDC", &budget)], &[]).await;
    let delegate = |prompt: &str| {
        requester.delegate(
            json!({"model": "tinyllama", "prompt": prompt, "wait": "settled", "max_price": price}),
        )
    };
    let (status, body) = delegate("paid once").await;
    assert_eq!(status, 200, "{body}");
    let id = body["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&requester, &id, "released", WITHIN).await;

    let (status, body) = delegate("paid twice").await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"], json!("budget_exhausted"), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("SPEND_BUDGET_USDC")),
        "{body}"
    );
    let jobs: Value = requester.get("/jobs").await;
    let jobs = jobs.as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let refused = jobs
        .iter()
        .find(|j| j["job_id"] != json!(id))
        .expect("the refused job");
    assert_eq!(refused["state"], json!("failed"), "{refused}");
    assert_eq!(
        refused["error_code"],
        json!("budget_exhausted"),
        "{refused}"
    );
    assert_eq!(refused["payment"], Value::Null, "no stake: {refused}");
    // The provider was paid once; nothing else moved, nothing is staked.
    let (r, p, e) = w.balances().await;
    assert_eq!((r, p, e), (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}
