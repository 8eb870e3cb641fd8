//! User story: a provider cannot buy its rank, be paid for nothing, or be paid more than
//! the agent's node allows (issue 21, item 4; docs/threat-model.md, lines 9-11). The
//! attacker is the scriptable evil node (mesh node 2, no daemon); the requester (node 0)
//! and the honest provider (node 1, the Ollama stub as its backend) are real daemons. Each
//! test ends with an honest delegation served; the paid one with USDC conserved.

use std::time::Duration;

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use edgent::protocol::{Announce, Message, ModelOffer, ResourceAd, TaskResult, Usage};
use serde_json::{json, Value};

use crate::support::evil::{evil_on, node_key};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};
use crate::support::{eventually, start_pair, DaemonProc, MeshSimProc};

const WITHIN: Duration = Duration::from_secs(60);

/// An announcement of `evil`'s identity 0 carrying an ad for every model, the model loaded,
/// no load, huge memory, at `price`, kept the longest a receiver allows (600 s).
fn bought_ad(evil: &edgent::harness::evil_node::EvilNode, price: u64) -> Message {
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
            wallet: Some(format!("0x{}", "ee".repeat(20))),
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
/// 600 s. On main's ranking (fit and load before price) it came first and every delegation
/// sent it the task; now price ranks before the ad's own claims and the premium cap keeps
/// it out: it never gets a task, and the honest provider serves every delegation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ad_claiming_everything_at_the_highest_price_never_gets_a_task() {
    let stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().expect("dir");
    let (requester, _provider) =
        start_pair(&mesh, dir.path(), &[("OLLAMA_URL", &stub.url())], &[]).await;
    let evil = evil_on(&mesh, &[2]).await;
    evil.set_acks(true);
    evil.send(0, &node_key(&mesh, 0), &bought_ad(&evil, 1_000_000))
        .await
        .expect("send the ad");
    wait_for_ad(&requester, &evil.key(0).to_hex()).await;
    wait_for_ad(&requester, &mesh.nodes[1].0).await;

    for i in 0..3 {
        let prompt = format!("honest work {i}");
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": prompt}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["provider"]["node_id"],
            json!(mesh.nodes[1].0),
            "{body}"
        );
        assert_eq!(
            body["output"],
            json!(stub_output("tinyllama:latest", &prompt))
        );
        assert_eq!(body["attempts"].as_array().map(Vec::len), Some(1), "{body}");
    }
    assert_eq!(stub.generate_calls(), 3);
    assert_eq!(
        evil.received_kind("task").len(),
        0,
        "the bought ad got a task"
    );
}

/// Line 10 (the part a requester can defend alone): a provider that answers with an empty
/// output is refused, scored as a failure, and the job goes to the next provider. Its ad is
/// the cheapest (both are newcomers), so it is tried first. On main the empty output was
/// the answer (200, `output: ""`, from the evil node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_output_is_refused_and_the_job_goes_to_an_honest_provider() {
    let stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().expect("dir");
    let (requester, _provider) =
        start_pair(&mesh, dir.path(), &[("OLLAMA_URL", &stub.url())], &[]).await;
    let evil = evil_on(&mesh, &[2]).await;
    evil.set_acks(true);
    let to = node_key(&mesh, 0);
    evil.send(0, &to, &bought_ad(&evil, 1)).await.expect("ad");
    wait_for_ad(&requester, &evil.key(0).to_hex()).await;
    wait_for_ad(&requester, &mesh.nodes[1].0).await;

    let answer = async {
        let task = evil
            .wait_for(WITHIN, |r| r.kind() == Some("task"))
            .await
            .expect("the cheap ad gets the task");
        let Some(Message::Task(t)) = task.msg else {
            panic!("not a task")
        };
        let empty = Message::TaskResult(TaskResult {
            job_id: t.job_id,
            output: " \n".into(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            receipt: None,
        });
        evil.send(0, &to, &empty).await.expect("result");
    };
    let (_, (status, body)) = tokio::join!(
        answer,
        requester.delegate(json!({"model": "tinyllama", "prompt": "say something"}))
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["provider"]["node_id"],
        json!(mesh.nodes[1].0),
        "{body}"
    );
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "say something"))
    );
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(attempts[0]["outcome"], json!("empty_output"), "{body}");
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
}

/// Line 11, the ceiling: an agent's `max_price` above `MAX_PRICE_CEILING_USDC` is refused
/// (400, in the API's error shape) before any job; on main it was taken as given (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_price_above_the_ceiling_is_refused() {
    let stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().expect("dir");
    let (requester, _provider) = start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &stub.url())],
        &[("MAX_PRICE_CEILING_USDC", "0.5"), ("MAX_PRICE_USDC", "0.1")],
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
    // At the ceiling: served.
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "fair", "max_price": "0.5"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stub.generate_calls(), 1);
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
