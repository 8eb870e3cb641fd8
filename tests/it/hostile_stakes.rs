//! User story: a third peer on the mesh cannot move anybody's stake (issue 21, item 2;
//! docs/threat-model.md). The attacker is the scriptable evil node (mesh node 2, no
//! daemon, no wallet); the requester and the provider are real daemons paid through the
//! escrow on anvil. Each test ends with USDC conserved and an honest delegation paid.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use crate::support::evil::{evil_on, forged_task, introduce, node_key};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};

const WITHIN: Duration = Duration::from_secs(60);

/// A counter of the daemon's Prometheus text, summed over the lines that match `filter`.
async fn metric(url: &str, name: &str, filter: &str) -> u64 {
    let text = support::http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The first job of `d`'s `/jobs` for which `pick` holds.
async fn job_where(d: &support::DaemonProc, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    support::eventually(what, WITHIN, || async {
        let jobs = d.get("/jobs").await;
        jobs.as_array()?.iter().find(|j| pick(j)).cloned()
    })
    .await
}

/// The attack of issue 21: while an honest paid job runs, a node with no stake sends the
/// provider a `task` with that job's id and a made-up `stake.tx` (the id is public: the
/// escrow's `Staked` event names it). Before the fix the provider checked the stake (the
/// honest one exists), took a slot, met the duplicate at `jobs.insert` and declined: the
/// honest requester was refunded on chain while the provider still delivered. Now the task
/// is dropped as a known job before any stake check or chain call, and the honest job is
/// paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_peer_cannot_refund_a_running_job() {
    let w = PaidWorld::with_nodes(3).await;
    // The honest job runs for a while, so the forged task arrives while it holds its slot.
    w.ollama.set(|b| b.delay = Duration::from_secs(3));
    // A free slot beside the honest job: the forged task is not held up in the queue.
    let (requester, provider) = w.start(&[("PROVIDER_MAX_JOBS", "2")]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let escrow = format!("{:#x}", w.deployment.escrow);

    let honest = tokio::spawn({
        let url = requester.url.clone();
        async move {
            let r = support::http()
                .post(format!("{url}/delegate"))
                .json(&json!({"model": "tinyllama", "prompt": "honest work", "wait": "settled"}))
                .send()
                .await
                .expect("delegate");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let running = job_where(&provider, "the honest job running on the provider", |j| {
        j["state"] == json!("running")
    })
    .await;
    let id = running["job_id"].as_str().expect("job id").to_string();
    let known_before = metric(&provider.url, "edgent_messages_dropped", "known_job").await;
    let forged = forged_task(&id, "attacker's prompt", w.chain.chain_id(), &escrow, PRICE);
    evil.send_json(0, &node_key(&w.mesh, 1), &forged)
        .await
        .expect("send");

    let (status, body) = honest.await.expect("honest delegation");
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["job_id"], json!(id));
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    payment_becomes(&provider, &id, "released", WITHIN).await;
    // The forged task was refused as a known job, once, and answered nothing.
    support::until("the forged task dropped as a known job", WITHIN, || async {
        metric(&provider.url, "edgent_messages_dropped", "known_job").await == known_before + 1
    })
    .await;
    assert!(
        evil.received_kind("task_result").is_empty(),
        "{:?}",
        evil.received()
    );
    let pjob = provider.job(&id).await.expect("provider job");
    assert_eq!(pjob["prompt"], json!("honest work"));
    assert_eq!(pjob["state"], json!("completed"));
    // The requester paid the price, the provider got it, nothing is left in the escrow.
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}

/// Under `STAKE_MODE=approve` the requester stakes with its own transaction and then sends
/// the task, so a watcher of the chain knows the job id before the provider hears of it.
/// A forged task that arrives first (here: the honest task is held up by a partition) must
/// not run the attacker's prompt on the victim's stake: the stake is bound to the sender by
/// the requester's signature, and the attacker holds neither the wallet nor the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_task_arriving_first_cannot_spend_a_stake_the_requester_sent() {
    let w = PaidWorld::with_nodes(3).await;
    let (requester, provider) = w.start_with(&[("STAKE_MODE", "approve")], &[]).await;
    let evil = evil_on(&w.mesh, &[2]).await;
    let escrow = format!("{:#x}", w.deployment.escrow);

    // An honest delegation first: served and paid (and the provider's ad is now cached, so
    // the next delegation sends no resource_request).
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "first", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");

    // The requester and the provider cannot reach each other: the next task waits.
    let (code, out) = w
        .mesh
        .sim_post("/sim/faults", Some(json!({"partitions": [[0, 1]]})))
        .await;
    assert_eq!(code, 200, "{out}");
    let honest = tokio::spawn({
        let url = requester.url.clone();
        async move {
            let r = support::http()
                .post(format!("{url}/delegate"))
                .json(
                    &json!({"model": "tinyllama", "prompt": "victim's prompt", "wait": "settled"}),
                )
                .send()
                .await
                .expect("delegate");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let staked = job_where(&requester, "the second job staked on chain", |j| {
        j["prompt"] == json!("victim's prompt") && j["payment"]["status"] == json!("staked")
    })
    .await;
    let id = staked["job_id"].as_str().expect("job id").to_string();
    let forged = forged_task(&id, "attacker's prompt", w.chain.chain_id(), &escrow, PRICE);
    // The attacker introduces itself first, so the provider may answer it (a refusal goes
    // only to a full key it knows).
    introduce(&evil, 0, &node_key(&w.mesh, 1)).await;
    evil.send_json(0, &node_key(&w.mesh, 1), &forged)
        .await
        .expect("send");
    let answer = evil
        .wait_for(WITHIN, |r| {
            matches!(r.kind(), Some("task_result" | "task_error"))
        })
        .await
        .expect("the provider answers the forged task");
    assert_eq!(
        answer.kind(),
        Some("task_error"),
        "the attacker's prompt ran on the victim's stake: {:?}",
        answer.msg
    );

    // The partition heals; the honest task gets through and is served and paid.
    let (code, out) = w
        .mesh
        .sim_post("/sim/faults", Some(json!({"partitions": []})))
        .await;
    assert_eq!(code, 200, "{out}");
    let (status, body) = honest.await.expect("honest delegation");
    assert_eq!(status, 200, "{body}\n{}", requester.log());
    assert_eq!(body["job_id"], json!(id));
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    payment_becomes(&provider, &id, "released", WITHIN).await;
    let pjob = provider.job(&id).await.expect("provider job");
    assert_eq!(pjob["prompt"], json!("victim's prompt"));
    assert!(evil.received_kind("task_result").is_empty());
    assert_eq!(w.balances().await, (FUND - 2 * PRICE, 2 * PRICE, 0));
    w.assert_conserved(0).await;
}
