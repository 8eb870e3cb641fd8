//! User story: a paid node stays bounded under attack (issue 25, items 1 and 4;
//! docs/threat-model.md, lines 28 and 32). Real daemons on anvil, paid through the escrow;
//! the attackers are raw mesh nodes and the scriptable evil node. Each flood runs while an
//! honest paid delegation runs, and that delegation must still succeed and be paid.

use std::time::Duration;

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::json;

use crate::support::evil::{evil_on, introduce, node_key};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE, SECOND_PROVIDER};
use crate::support::rpc_count::CountingRpc;
use crate::support::{eventually, until, DaemonProc};

const WITHIN: Duration = Duration::from_secs(60);

/// A counter of `d`'s `/metrics`, summed over the lines named `name` that contain `filter`.
async fn metric(d: &DaemonProc, name: &str, filter: &str) -> u64 {
    d.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `edgent_bounded{table="<table>"}` of `d`'s `/metrics` (0 when absent).
async fn bounded(d: &DaemonProc, table: &str) -> u64 {
    metric(d, "edgent_bounded", &format!("table=\"{table}\"")).await
}

/// `d`'s peak resident memory (`VmHWM`), printed for the report (never asserted).
fn print_rss_peak(d: &DaemonProc, who: &str, flood: &str) {
    let Some(pid) = d.pid() else { return };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?");
    eprintln!("RSS peak of the {who} under {flood}: {hwm}");
}

/// Waits until `requester` lists `id` among the providers it knows.
async fn knows_provider(requester: &DaemonProc, id: &str) {
    eventually("the requester to know the provider", WITHIN, || async {
        let st = requester.get("/status").await;
        st["mesh_providers"]
            .as_array()?
            .iter()
            .any(|p| p["node_id"] == json!(id))
            .then_some(())
    })
    .await
}

/// Payment requests sent in the burst by the paid job's own provider (its mesh node).
const BURST: usize = 80;
/// Payment requests sent by a third peer (another key) for the same job.
const THIRD: usize = 16;
/// How long a send to the unreachable provider blocks in the mesh (as AXL's does, 127 s
/// on the real node; the daemon's own send timeout ends it sooner).
const BLOCK_MS: u64 = 20_000;

/// Threat model line 28: a paid job runs to its release; then its provider, turned hostile,
/// sends 80 `payment_request`s for that released job to the requester and becomes
/// unreachable (a partition), so each answer (`payment_confirmed`) the requester sends it
/// blocks in the mesh; a third peer sends 16 more for the same job. Meanwhile the requester
/// delegates an honest paid job to a second provider, which must succeed and be paid:
/// the router awaits no send (each payment handler runs in a task bounded per peer), the
/// hostile provider's handlers stop at `PEER_MAX_HANDLERS` (64), the third peer's requests
/// are dropped as not from the job's provider, and USDC is conserved.
///
/// With each `payment_request` handled inline (the code before the fix), the router is
/// stuck behind the blocked sends and has not routed the burst a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_payment_requests_for_a_released_job_does_not_hold_up_the_router() {
    let w = PaidWorld::with_nodes(4).await;
    let wide = [("PEER_MSG_RATE", "1000000"), ("PEER_MSG_BURST", "1000000")];
    let (requester, provider) = w.start_with(&wide, &[]).await;
    // The honest provider serves `phi3` only, so the honest delegation goes to it alone.
    let phi = OllamaStub::start(StubBehaviour {
        models: vec!["phi3:latest".into()],
        ..Default::default()
    })
    .await
    .expect("stub");
    let second = DaemonProc::start_owned(
        &w.dir.path().join("second"),
        w.second_provider_env(&phi.url()),
    )
    .await;

    // A paid job runs to its release.
    let (status, a) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "job a", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{a}\n{}", requester.log());
    let a_id = a["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&provider, &a_id, "released", WITHIN).await;
    let mut request = requester.job(&a_id).await.expect("job a")["payment"]["request"].clone();
    assert!(request.is_object(), "no payment request kept for job a");
    request["type"] = json!("payment_request");
    request["v"] = json!(1);
    knows_provider(&requester, &w.mesh.nodes[2].0).await;

    // The third peer says who it is, so the requester knows its full key.
    let evil = evil_on(&w.mesh, &[3]).await;
    let requester_key = node_key(&w.mesh, 0);
    introduce(&evil, 0, &requester_key).await;

    let in_before = metric(&requester, "edgent_messages_in", "type=\"payment_request\"").await;
    let spoofed_before = metric(&requester, "edgent_messages_dropped", "reason=\"spoofed\"").await;
    let dropped_before = bounded(&requester, "handlers_dropped").await;

    // The burst is handed to the mesh now and delivered 2 s later, after the partition
    // between the requester and the hostile provider is in force: every answer to it
    // blocks. (Each copy carries its own msg_id, as distinct messages do.)
    let (status, body) = w
        .mesh
        .sim_post("/sim/faults", Some(json!({"delay_ms": 2000})))
        .await;
    assert_eq!(status, 200, "{body}");
    let bodies = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut m = request.clone();
                m["msg_id"] = json!(uuid::Uuid::new_v4().to_string());
                serde_json::to_vec(&m).expect("json")
            })
            .collect()
    };
    let http = reqwest::Client::new();
    let send_all = |from: String, to: String, all: Vec<Vec<u8>>| {
        let http = http.clone();
        async move {
            let mut ok = 0;
            for b in all {
                let r = http
                    .post(format!("{from}/send"))
                    .header("X-Destination-Peer-Id", to.as_str())
                    .body(b)
                    .send()
                    .await;
                ok += usize::from(r.is_ok_and(|r| r.status().as_u16() == 200));
            }
            ok
        }
    };
    let requester_id = w.mesh.nodes[0].0.clone();
    let (hostile, third) = tokio::join!(
        send_all(
            w.mesh.nodes[1].1.clone(),
            requester_id.clone(),
            bodies(BURST)
        ),
        send_all(
            w.mesh.nodes[3].1.clone(),
            requester_id.clone(),
            bodies(THIRD)
        ),
    );
    assert_eq!((hostile, third), (BURST, THIRD));
    let (status, body) = w
        .mesh
        .sim_post("/sim/faults", Some(json!({"partitions": [[0, 1]]})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w
        .mesh
        .sim_post("/sim/timing", Some(json!({"block_ms": BLOCK_MS})))
        .await;
    assert_eq!(status, 200, "{body}");

    // The honest paid delegation, while the burst is delivered and handled.
    let (status, b) = requester
        .delegate(
            json!({"model": "phi3", "prompt": "job b", "wait": "settled", "timeout_ms": 30000}),
        )
        .await;
    assert_eq!(status, 200, "{b}\n{}", requester.log());
    assert_eq!(b["provider"]["node_id"], json!(w.mesh.nodes[2].0), "{b}");
    assert_eq!(b["payment"]["status"], json!("released"), "{b}");
    let b_id = b["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&second, &b_id, "released", WITHIN).await;

    // Every payment_request of the burst reached the router, and none held it up.
    until("the whole burst routed", WITHIN, || async {
        metric(&requester, "edgent_messages_in", "type=\"payment_request\"").await
            >= in_before + (BURST + THIRD) as u64
    })
    .await;
    // The honest job's own payment_request came in too.
    assert_eq!(
        metric(&requester, "edgent_messages_in", "type=\"payment_request\"").await,
        in_before + (BURST + THIRD) as u64 + 1
    );
    // The third peer's are not from the job's provider: each dropped, nothing sent back.
    until("the third peer's requests dropped", WITHIN, || async {
        metric(&requester, "edgent_messages_dropped", "reason=\"spoofed\"").await
            >= spoofed_before + THIRD as u64
    })
    .await;
    assert_eq!(
        metric(&requester, "edgent_messages_dropped", "reason=\"spoofed\"").await,
        spoofed_before + THIRD as u64
    );
    assert!(evil.received_kind("payment_confirmed").is_empty());
    // The hostile provider held at most its 64 handlers (each blocked on its send); the
    // rest of its burst was dropped at the router.
    assert_eq!(bounded(&requester, "handlers_peer_peak").await, 64);
    let dropped = bounded(&requester, "handlers_dropped").await - dropped_before;
    assert!(
        dropped >= (BURST - 64) as u64,
        "only {dropped} handlers dropped"
    );

    // Money: job a paid once to the first provider, job b once to the second.
    let (r, p, e) = w.balances().await;
    let p2 = w.usdc_of(w.wallet(SECOND_PROVIDER)).await;
    assert_eq!((r, p, p2, e), (FUND - 2 * PRICE, PRICE, PRICE, 0));
    print_rss_peak(
        &requester,
        "requester",
        "96 payment_requests for a released job",
    );
}

/// Identities of the evil node in the chain-read test (mesh nodes 2 to 5).
const IDS: usize = 4;

/// A `task` for `job` from evil identity `id` claiming a stake nobody made, in this
/// provider's escrow, with a stake binding that names the sender (so it passes every
/// offline check and only the chain can refuse it).
fn unstaked_task(w: &PaidWorld, key: &edgent::axl::PeerKey, job: &str) -> bytes::Bytes {
    let task = json!({
        "v": 1, "type": "task", "job_id": job, "model": "tinyllama", "prompt": "free work?",
        "deadline_ms": edgent::jobs::now_ms() + 60_000,
        "stake": {"chain_id": w.chain.chain_id(), "escrow": format!("{:#x}", w.deployment.escrow),
            "amount": PRICE.to_string(), "tx": format!("0x{}", "11".repeat(32)),
            "binding": {"node": key.to_hex(), "signature": format!("0x{}", "00".repeat(65))}},
    });
    serde_json::to_vec(&task).expect("json").into()
}

/// `n` fresh job ids for identity `id` in round `round` (hex with `0x`).
fn job_ids(round: &str, id: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{:#x}",
                alloy::primitives::keccak256(format!("{round} {id} {i}"))
            )
        })
        .collect()
}

/// The provider's stake reads (`eth_call`s) of any of `jobs`, as the proxy counted them.
fn reads_of(rpc: &CountingRpc, jobs: &[Vec<String>]) -> u64 {
    jobs.iter()
        .flatten()
        .map(|j| rpc.eth_calls_containing(&j[2..]))
        .sum()
}

/// Each identity sends the tasks of `jobs[id]`, `times` times over, at 25 a second.
async fn claim(
    w: &PaidWorld,
    evil: &edgent::harness::evil_node::EvilNode,
    jobs: &[Vec<String>],
    times: usize,
) {
    let to = node_key(&w.mesh, 1);
    let floods = (0..IDS).map(|id| {
        let bodies: Vec<bytes::Bytes> = (0..times)
            .flat_map(|_| jobs[id].iter().map(|j| unstaked_task(w, &evil.key(id), j)))
            .collect();
        let n = bodies.len() as u64;
        async move {
            let r = evil
                .flood(id, &to, bodies, Some(25.0), 4)
                .await
                .expect("flood");
            assert_eq!(r.accepted, n, "{r:?}");
        }
    });
    futures_util::future::join_all(floods).await;
}

/// Waits until the evil node got `n` `task_error`s in all (from `provider`).
async fn refusals(evil: &edgent::harness::evil_node::EvilNode, provider: &DaemonProc, n: usize) {
    let deadline = std::time::Instant::now() + WITHIN;
    while evil.received_kind("task_error").len() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = evil.received_kind("task_error").len();
    if got != n {
        let m = provider.metrics().await;
        let lines: Vec<&str> = m
            .lines()
            .filter(|l| l.contains("task") || l.contains("dropped") || l.contains("bounded"))
            .collect();
        panic!(
            "{got} refusals, not {n}; the provider's metrics:\n{}\n{}",
            lines.join("\n"),
            provider.log()
        );
    }
}

/// Threat model line 32: four identities (each within its own budget, opened wide here to
/// 1,000) send tasks claiming stakes nobody made, each bound to its sender so that only the
/// chain can refuse them. Round 1: 50 fresh jobs each, each job's stake read exactly once.
/// Round 2, while an honest paid job runs: each identity claims its 50 jobs twice more;
/// all 400 are refused from the gate's negative cache with no stake read and no unit of
/// the all-peers budget, and the honest job is served and paid. Round 3: 150 fresh jobs
/// each (600): the stake reads of all rounds stay within the all-peers budget
/// (`UNSTAKED_BURST_ALL` plus `UNSTAKED_PER_MIN_ALL` a minute since the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_identities_claiming_stakes_nobody_made_stay_within_the_chain_read_budget() {
    use edgent::paid::gate::{UNSTAKED_BURST_ALL, UNSTAKED_PER_MIN_ALL};
    let w = PaidWorld::with_nodes(2 + IDS).await;
    let rpc = CountingRpc::start(&w.chain.rpc_url()).await;
    let (requester, provider) = w
        .start_with(
            &[],
            &[
                ("CHAIN_RPC_URL", rpc.url()),
                ("PEER_UNSTAKED_BURST", "1000"),
                ("PEER_UNSTAKED_PER_MIN", "1"),
                // Only the stake gate stands between the claims and the chain.
                ("PEER_TASK_RATE", "1000000"),
                ("PEER_TASK_BURST", "1000000"),
                ("PEER_MSG_RATE", "1000000"),
                ("PEER_MSG_BURST", "1000000"),
            ],
        )
        .await;
    let ids: Vec<usize> = (2..2 + IDS).collect();
    let evil = evil_on(&w.mesh, &ids).await;
    let to = node_key(&w.mesh, 1);
    for id in 0..IDS {
        introduce(&evil, id, &to).await;
    }
    let started = std::time::Instant::now();

    // Round 1: every claimed stake read once.
    let first: Vec<Vec<String>> = (0..IDS).map(|id| job_ids("one", id, 50)).collect();
    claim(&w, &evil, &first, 1).await;
    refusals(&evil, &provider, 4 * 50).await;
    assert_eq!(reads_of(&rpc, &first), 4 * 50);

    // Round 2: the same claims again, twice, beside an honest paid job.
    let ((), (status, body)) = tokio::join!(
        claim(&w, &evil, &first, 2),
        requester.delegate(
            json!({"model": "tinyllama", "prompt": "beside the claims", "wait": "settled"})
        ),
    );
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    let id = body["job_id"].as_str().expect("job id").to_string();
    payment_becomes(&provider, &id, "released", WITHIN).await;
    refusals(&evil, &provider, 4 * 150).await;
    assert_eq!(
        reads_of(&rpc, &first),
        4 * 50,
        "a repeated claim read the chain"
    );
    assert_eq!(bounded(&provider, "gate_refusals_cached").await, 4 * 100);

    // Round 3: fresh claims past the all-peers budget.
    let third: Vec<Vec<String>> = (0..IDS).map(|id| job_ids("three", id, 150)).collect();
    claim(&w, &evil, &third, 1).await;
    refusals(&evil, &provider, 4 * 300).await;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let budget =
        u64::from(UNSTAKED_BURST_ALL) + (f64::from(UNSTAKED_PER_MIN_ALL) * minutes).ceil() as u64;
    let reads = reads_of(&rpc, &first) + reads_of(&rpc, &third);
    println!(
        "figures: 1,200 forged claims from {IDS} identities cost {reads} stake reads in {:.1} s \
         (budget {budget}); all calls {:?}",
        minutes * 60.0,
        rpc.by_method()
    );
    assert!(
        reads <= budget,
        "{reads} stake reads, the budget is {budget}"
    );
    assert!(
        4 * 150 > budget - 4 * 50,
        "round 3 must claim more than the budget left"
    );
    let (r, p, e) = w.balances().await;
    assert_eq!((r, p, e), (FUND - PRICE, PRICE, 0), "USDC moved");
    print_rss_peak(
        &provider,
        "provider",
        "1,200 forged claims from 4 identities",
    );
}
