//! User story: the mesh loses messages and nodes die, yet every delegation gets one
//! answer well before its deadline. Tasks, results and errors are acknowledged and sent
//! again; a provider that stops sending heartbeats is declared dead and its job moves to
//! the next provider; a busy provider queues; a flooding peer is limited.
//!
//! Real daemons over `edgent mesh-sim`, with the Ollama stub as each provider's backend.

use std::time::{Duration, Instant};

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support;
use crate::support::{eventually, DaemonProc, MeshSimProc};

/// Settings that make heartbeats and resends quick enough for a test.
const FAST: [(&str, &str); 5] = [
    ("HEARTBEAT_MS", "300"),
    ("HEARTBEAT_MISSES", "2"),
    ("ACK_TIMEOUT_MS", "200"),
    ("MESH_SEND_TIMEOUT_MS", "2000"),
    ("DISCOVERY_WINDOW_MS", "1000"),
];

struct Provider {
    daemon: DaemonProc,
    stub: OllamaStub,
    node: usize,
}

/// A provider daemon on mesh node `node` with its own stub and settings.
async fn provider(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
    node: usize,
    stub: StubBehaviour,
    extra: &[(&str, &str)],
) -> Provider {
    let stub = OllamaStub::start(stub).await.unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
        ("EDGENT_ROLE".into(), "provider".into()),
        ("OLLAMA_URL".into(), stub.url()),
    ];
    env.extend(FAST.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let daemon = DaemonProc::start_owned(&dir.join(format!("provider{node}")), env).await;
    Provider { daemon, stub, node }
}

/// A requester daemon on mesh node `node`.
async fn requester(mesh: &MeshSimProc, dir: &std::path::Path, node: usize) -> DaemonProc {
    let mut env: Vec<(String, String)> = vec![
        ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
        ("EDGENT_ROLE".into(), "requester".into()),
    ];
    env.extend(FAST.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonProc::start_owned(&dir.join("requester"), env).await
}

async fn set_faults(mesh: &MeshSimProc, via: usize, faults: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/sim/faults", mesh.nodes[via].1))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{faults}: {}", r.status());
}

fn node_id(mesh: &MeshSimProc, i: usize) -> String {
    mesh.nodes[i].0.to_lowercase()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A cheap provider on node 1 whose backend holds every answer for a minute, and a
/// dearer one on node 2 that answers at once: the requester tries node 1 first.
async fn slow_and_fast(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
) -> (DaemonProc, Provider, Provider) {
    let slow = provider(
        mesh,
        dir,
        1,
        StubBehaviour {
            delay: Duration::from_secs(60),
            ..StubBehaviour::default()
        },
        &[("PRICE_USDC", "0.001")],
    )
    .await;
    let fast = provider(
        mesh,
        dir,
        2,
        StubBehaviour::default(),
        &[("PRICE_USDC", "0.002")],
    )
    .await;
    let req = requester(mesh, dir, 0).await;
    (req, slow, fast)
}

/// Delegate while `kill` takes the first provider away mid-job; check the job moved.
async fn check_failover(
    mesh: &MeshSimProc,
    req: &DaemonProc,
    slow: &Provider,
    fast: &Provider,
    kill: impl std::future::Future<Output = ()>,
) {
    let call =
        req.delegate(json!({"model": "tinyllama", "prompt": "survive", "timeout_ms": 90000}));
    let started = Instant::now();
    let watch = async {
        eventually(
            "the slow provider to start the job",
            Duration::from_secs(30),
            || async { (slow.stub.generate_calls() >= 1).then_some(()) },
        )
        .await;
        kill.await;
        Instant::now()
    };
    let ((status, body), killed_at) = tokio::join!(call, watch);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "survive"))
    );
    assert_eq!(
        body["provider"]["node_id"].as_str().unwrap(),
        node_id(mesh, fast.node)
    );
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(
        attempts[0]["provider"].as_str().unwrap(),
        node_id(mesh, slow.node)
    );
    assert_eq!(attempts[0]["outcome"], json!("dead"));
    assert_eq!(attempts[1]["outcome"], json!("completed"));
    // It moved long before the 90 s deadline (and before the slow backend's 60 s).
    let after_kill = killed_at.elapsed();
    assert!(
        after_kill < Duration::from_secs(30),
        "{after_kill:?} after the kill"
    );
    assert!(started.elapsed() < Duration::from_secs(45));
    assert_eq!(fast.stub.generate_calls(), 1);
    let job = req.newest_job().await.unwrap();
    assert_eq!(job["state"], json!("completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_node_killed_mid_job_loses_the_job_to_the_next_provider() {
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let (req, slow, fast) = slow_and_fast(&mesh, dir.path()).await;
    // The slow provider's AXL node goes down: its queue is lost, nothing it sends arrives.
    let kill = set_faults(&mesh, 0, json!({"down": [1]}));
    check_failover(&mesh, &req, &slow, &fast, kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_daemon_sigkilled_mid_job_loses_the_job_to_the_next_provider() {
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let (req, mut slow, fast) = slow_and_fast(&mesh, dir.path()).await;
    let daemon = &mut slow.daemon;
    let kill_pid = daemon.pid().unwrap();
    let kill = async move {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &kill_pid.to_string()])
            .status();
    };
    check_failover(&mesh, &req, &slow, &fast, kill).await;
    slow.daemon.kill();
}

/// The real node's timings (`mesh-sim --real`, unscaled): a `/send` to the killed node
/// blocks 127 s, longer than the 90 s deadline. The requester still notices the silence
/// by heartbeats, the job completes on the other provider, and the next delegation goes
/// through while sends to the dead node are still blocked: no task, router or inbound
/// handling waits on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_node_killed_under_the_real_nodes_blocking_send_loses_the_job() {
    let mesh = MeshSimProc::start_with(3, &["--real"]);
    let dir = tempfile::tempdir().unwrap();
    let (req, slow, fast) = slow_and_fast(&mesh, dir.path()).await;
    let killed_at = std::sync::Mutex::new(None);
    let kill = async {
        mesh.kill_node(slow.node).await;
        *killed_at.lock().unwrap() = Some(Instant::now());
    };
    check_failover(&mesh, &req, &slow, &fast, kill).await;
    // A send to the dead node blocks now (the sim holds it for 127 s).
    let blocked = tokio::time::timeout(
        Duration::from_secs(3),
        support::raw_send(&mesh.nodes[0].1, &mesh.nodes[slow.node].0, b"{}".to_vec()),
    )
    .await;
    assert!(
        blocked.is_err(),
        "the send to the killed node did not block"
    );
    let (status, body) = req
        .delegate(json!({"model": "tinyllama", "prompt": "next", "timeout_ms": 90000}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["provider"]["node_id"].as_str().unwrap(),
        node_id(&mesh, fast.node)
    );
    let since_kill = killed_at.lock().unwrap().unwrap().elapsed();
    assert!(
        since_kill < Duration::from_secs(127),
        "{since_kill:?}: something waited out the blocking send"
    );
    assert_eq!(fast.stub.generate_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_all_messages_lost_every_delegation_completes_once() {
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut providers = Vec::new();
    for node in 1..=3 {
        providers.push(provider(&mesh, dir.path(), node, StubBehaviour::default(), &[]).await);
    }
    let req = requester(&mesh, dir.path(), 0).await;
    set_faults(&mesh, 0, json!({"drop_rate": 0.2})).await;

    let mut attempts = 0usize;
    for batch in 0..10 {
        let calls = (0..5).map(|i| {
            let prompt = format!("lossy {batch} {i}");
            let req = &req;
            async move {
                let (status, body) = req
                    .delegate(json!({"model": "tinyllama", "prompt": prompt, "timeout_ms": 60000}))
                    .await;
                (prompt, status, body)
            }
        });
        for (prompt, status, body) in join_all(calls).await {
            assert_eq!(status, 200, "{prompt}: {body}");
            assert_eq!(
                body["output"],
                json!(stub_output("tinyllama:latest", &prompt))
            );
            attempts += body["attempts"].as_array().unwrap().len();
        }
    }
    // Every task that was sent again reached its provider's backend only once.
    let calls: u64 = providers.iter().map(|p| p.stub.generate_calls()).sum();
    assert!(calls >= 50, "{calls} inferences for 50 delegations");
    assert!(
        calls as usize <= attempts,
        "{calls} inferences for {attempts} attempts: a resent task ran twice"
    );
    let jobs = req.get("/jobs?limit=100").await;
    let completed = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == json!("completed"))
        .count();
    assert_eq!(completed, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_provider_queues_tasks_beyond_its_slots_and_serves_them_all() {
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = provider(
        &mesh,
        dir.path(),
        1,
        StubBehaviour {
            delay: Duration::from_millis(300),
            ..StubBehaviour::default()
        },
        &[("PROVIDER_MAX_JOBS", "1"), ("PROVIDER_MAX_QUEUE", "32")],
    )
    .await;
    let req = requester(&mesh, dir.path(), 0).await;
    let calls = (0..8).map(|i| {
        let req = &req;
        async move {
            req.delegate(
                json!({"model": "tinyllama", "prompt": format!("queued {i}"), "timeout_ms": 60000}),
            )
            .await
        }
    });
    for (status, body) in join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        // Served where it was sent: it waited in the queue instead of being refused.
        assert_eq!(body["attempts"].as_array().unwrap().len(), 1, "{body}");
    }
    assert_eq!(p.stub.generate_calls(), 8);
    assert!(p.daemon.log().contains("task queued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_delegations_all_succeed() {
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut providers = Vec::new();
    for node in 1..=2 {
        providers.push(
            provider(
                &mesh,
                dir.path(),
                node,
                StubBehaviour::default(),
                &[("PROVIDER_MAX_JOBS", "256")],
            )
            .await,
        );
    }
    let req = requester(&mesh, dir.path(), 0).await;
    let timeout = Duration::from_secs(120);
    let calls = (0..200).map(|i| {
        let req = &req;
        async move {
            let t = Instant::now();
            let r = req
                .delegate(json!({"model": "tinyllama", "prompt": format!("burst {i}"), "timeout_ms": timeout.as_millis() as u64}))
                .await;
            (r, t.elapsed())
        }
    });
    for ((status, body), took) in join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert!(took < timeout, "waited out its deadline: {took:?}");
    }
    let calls: u64 = providers.iter().map(|p| p.stub.generate_calls()).sum();
    assert!(calls >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_limited_and_honest_delegations_go_on() {
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    // A tighter per-peer limit than the default, so this machine's test client can exceed it.
    let p = provider(
        &mesh,
        dir.path(),
        1,
        StubBehaviour::default(),
        &[("PEER_MSG_RATE", "100"), ("PEER_MSG_BURST", "200")],
    )
    .await;
    let req = requester(&mesh, dir.path(), 0).await;
    let (status, body) = req
        .delegate(json!({"model": "tinyllama", "prompt": "warm up"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let pid = p.daemon.pid().unwrap();
    let rss_before = rss_kb(pid);

    // Node 2 is hostile: 10,000 resource_requests in its own name, and garbage.
    let hostile = mesh.nodes[2].1.clone();
    let hostile_id = mesh.nodes[2].0.clone();
    let target = mesh.nodes[1].0.clone();
    let flood = async {
        let bodies: Vec<Vec<u8>> = (0..10_000)
            .map(|i| {
                if i % 10 == 0 {
                    format!("{{garbage {i} \u{0}").into_bytes()
                } else {
                    json!({"v": 1, "type": "resource_request", "request_id": uuid_like(i),
                        "node_id": hostile_id, "model": "tinyllama"})
                    .to_string()
                    .into_bytes()
                }
            })
            .collect();
        let http = reqwest::Client::new();
        for chunk in bodies.chunks(100) {
            join_all(chunk.iter().map(|b| {
                http.post(format!("{hostile}/send"))
                    .header("X-Destination-Peer-Id", &target)
                    .body(b.clone())
                    .send()
            }))
            .await;
        }
    };
    let honest = async {
        let mut ok = 0;
        for i in 0..10 {
            let (status, body) = req
                .delegate(json!({"model": "tinyllama", "prompt": format!("honest {i}"), "timeout_ms": 60000}))
                .await;
            assert_eq!(status, 200, "{body}");
            ok += 1;
        }
        ok
    };
    let ((), ok) = tokio::join!(flood, honest);
    assert_eq!(ok, 10);
    // The flood was limited at the router.
    let metrics = p.daemon.metrics().await;
    let limited = metrics
        .lines()
        .find(|l| l.contains("rate_limited") && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(limited > 0.0, "no message was rate limited:\n{metrics}");
    let rss_after = rss_kb(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} kB to {rss_after} kB"
    );
}

fn uuid_like(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}
