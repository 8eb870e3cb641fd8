//! User story: things go wrong (no provider, a failing backend, a slow one, hostile or
//! broken messages, a flood) and the daemon answers with the right error and keeps
//! serving.

use std::time::{Duration, Instant};

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use serde_json::{json, Value};

use crate::support;
use crate::support::{eventually, raw_send, DaemonProc, MeshSimProc, Pair};

/// Read one sample from a Prometheus text exposition.
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A requester on node 0, a provider on node 1, node 2 left free for a hostile sender.
async fn pair() -> Pair<OllamaStub> {
    Pair::with_stub(3, StubBehaviour::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_gives_503_within_the_discovery_window() {
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProc::start(
        dir.path(),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("DISCOVERY_WINDOW_MS", "300"),
        ],
    )
    .await;
    let start = Instant::now();
    let (status, body) = d
        .delegate(json!({"model": "tinyllama", "prompt": "anyone?", "timeout_ms": 60000}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], json!("no_provider"));
    // It gave up at the end of discovery, not at the 60 s deadline.
    assert!(start.elapsed() < Duration::from_secs(30));
    let jobs = d.get("/jobs").await;
    assert_eq!(jobs[0]["state"], json!("failed"));
    assert_eq!(jobs[0]["error_code"], json!("no_provider"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failure_gives_502_with_the_reason_and_deadline_gives_504() {
    let p = pair().await;
    p.backend
        .set(|b| b.fail = Some((500, "CUDA error: out of memory".into())));
    let (status, body) = p
        .requester
        .delegate(json!({"model": "tinyllama", "prompt": "x"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], json!("provider_failed"));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("inference_failed") && detail.contains("out of memory"),
        "{detail}"
    );

    p.backend.set(|b| {
        b.fail = None;
        b.delay = Duration::from_secs(3);
    });
    let (status, body) = p
        .requester
        .delegate(json!({"model": "tinyllama", "prompt": "slow", "timeout_ms": 1000}))
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], json!("deadline"));
    let jobs = p.requester.get("/jobs").await;
    assert_eq!(jobs[0]["state"], json!("timed_out"));

    // The provider stopped at the deadline too, and recorded why.
    let pj = eventually("provider job failed", Duration::from_secs(10), || async {
        let jobs = p.provider.get("/jobs").await;
        jobs.as_array()?
            .iter()
            .find(|j| j["job_id"] == jobs_first_id(&jobs) && j["state"] == json!("failed"))
            .cloned()
    })
    .await;
    assert_eq!(pj["error_code"], json!("inference_failed"));

    // A model nobody serves: no ad, so 503.
    let (status, _) = p
        .requester
        .delegate(json!({"model": "llama3:70b", "prompt": "x"}))
        .await;
    assert_eq!(status, 503);
}

fn jobs_first_id(jobs: &Value) -> Value {
    jobs[0]["job_id"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_messages_are_dropped_and_counted() {
    let p = pair().await;
    let (req_id, prov_id) = (p.mesh.nodes[0].0.clone(), p.mesh.nodes[1].0.clone());
    let evil = p.mesh.nodes[2].1.clone();

    let valid_ad = json!({"v": 1, "type": "resource_ad", "request_id": "8b0e3d4e-6a3e-4f3c-9a62-2d1f2f3e4a5b",
        "node_id": prov_id, "models": ["tinyllama"], "free_memory_mb": 1, "price": 1, "load": 0.0, "version": "x"});
    let spoofed_request = json!({"v": 1, "type": "resource_request", "request_id": "8b0e3d4e-6a3e-4f3c-9a62-2d1f2f3e4a5b",
        "node_id": req_id, "model": "tinyllama"});
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\x01garbage".to_vec(), "bad_json"),
        (br#"{"v":1,"type":"task","job_id":"0x"#.to_vec(), "bad_json"),
        (vec![b'x'; 1024 * 1024], "bad_json"),
        (br#"{"v":1,"type":"mine_bitcoin"}"#.to_vec(), "unknown_type"),
        (br#"{"v":2,"type":"task_result"}"#.to_vec(), "bad_version"),
        (
            br#"{"v":1,"type":"task_result","job_id":"0x12"}"#.to_vec(),
            "invalid",
        ),
        // node 2 claims to be the provider: its address does not match.
        (serde_json::to_vec(&valid_ad).unwrap(), "spoofed"),
    ];
    for (body, _) in &cases {
        assert_eq!(raw_send(&evil, &req_id, body.clone()).await, 200);
    }
    // node 2 claims to be the requester when asking the provider.
    assert_eq!(
        raw_send(
            &evil,
            &prov_id,
            serde_json::to_vec(&spoofed_request).unwrap()
        )
        .await,
        200
    );

    let expect = |reason: &str| cases.iter().filter(|c| c.1 == reason).count() as f64;
    let m = eventually("drops counted", Duration::from_secs(10), || async {
        let m = p.requester.metrics().await;
        let total: f64 = [
            "bad_json",
            "unknown_type",
            "bad_version",
            "invalid",
            "spoofed",
        ]
        .iter()
        .map(|r| {
            metric(
                &m,
                "edgent_messages_dropped_total",
                &format!("reason=\"{r}\""),
            )
        })
        .sum();
        (total >= cases.len() as f64).then_some(m)
    })
    .await;
    for reason in [
        "bad_json",
        "unknown_type",
        "bad_version",
        "invalid",
        "spoofed",
    ] {
        assert_eq!(
            metric(
                &m,
                "edgent_messages_dropped_total",
                &format!("reason=\"{reason}\"")
            ),
            expect(reason),
            "{reason}"
        );
    }
    let pm = eventually(
        "spoof counted at the provider",
        Duration::from_secs(10),
        || async {
            let m = p.provider.metrics().await;
            (metric(&m, "edgent_messages_dropped_total", "reason=\"spoofed\"") >= 1.0).then_some(m)
        },
    )
    .await;
    // The spoofed request got no ad: the provider sent none.
    assert_eq!(
        metric(&pm, "edgent_messages_out_total", "type=\"resource_ad\""),
        0.0
    );

    // Still serving.
    let (status, body) = p
        .requester
        .delegate(json!({"model": "tinyllama", "prompt": "still there?"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "still there?"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_messages_is_drained_without_loss() {
    let p = pair().await;
    let req_id = p.mesh.nodes[0].0.clone();
    let from = p.mesh.nodes[1].1.clone();
    let prov_id = p.mesh.nodes[1].0.clone();
    let http = reqwest::Client::new();
    // AXL gives a sender no backpressure, and a real /send costs milliseconds (a dial
    // through the userspace stack); the harness takes ~16,000/s, faster than any reader
    // of a 100-slot queue. So the burst is paced at 1000 messages/s: far above what one
    // real peer can send, and every one must arrive.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..500u32 {
        tick.tick().await;
        // Well-formed ads for requests nobody made: decoded, counted in, then dropped as
        // unexpected. Sent from the provider's own node so the node_id is genuine.
        let ad = json!({"v": 1, "type": "resource_ad", "request_id": uuid_for(i), "node_id": prov_id,
            "models": ["m"], "free_memory_mb": 1, "price": 1, "load": 0.0, "version": "burst"});
        let r = http
            .post(format!("{from}/send"))
            .header("X-Destination-Peer-Id", &req_id)
            .body(serde_json::to_vec(&ad).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let m = eventually("500 ads received", Duration::from_secs(20), || async {
        let m = p.requester.metrics().await;
        (metric(&m, "edgent_messages_in_total", "type=\"resource_ad\"") >= 500.0).then_some(m)
    })
    .await;
    assert_eq!(
        metric(&m, "edgent_messages_in_total", "type=\"resource_ad\""),
        500.0
    );
    assert_eq!(
        metric(&m, "edgent_messages_dropped_total", "reason=\"unexpected\""),
        500.0
    );
    // Besides the burst, the requester may have received the provider's announcements.
    let st = p.requester.get("/status").await;
    let announces = metric(
        &p.requester.metrics().await,
        "edgent_messages_in_total",
        "type=\"announce\"",
    );
    assert_eq!(st["recv"]["received"].as_f64(), Some(500.0 + announces));
    assert_eq!(st["recv"]["dropped_full"], json!(0));
}

fn uuid_for(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_ollama_advertises_nothing_and_says_so() {
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &closed)],
        &[("DISCOVERY_WINDOW_MS", "300")],
    )
    .await;
    let st = provider.get("/status").await;
    assert_eq!(st["models"], json!([]));
    assert_eq!(st["backend"]["reachable"], json!(false));
    assert!(
        st["backend"]["error"].as_str().unwrap().contains("Ollama"),
        "{st}"
    );
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "x"}))
        .await;
    assert_eq!(status, 503, "{body}");
}

/// Take mesh nodes down through the harness's fault API.
async fn set_down(mesh: &MeshSimProc, down: &[usize]) {
    let r = reqwest::Client::new()
        .post(format!("{}/sim/faults", mesh.nodes[0].1))
        .json(&json!({"drop_rate": 0.0, "delay_ms": 0, "partitions": [], "down": down}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_in_the_mesh_does_not_stop_delegation() {
    let p = pair().await;
    set_down(&p.mesh, &[2]).await;
    let (status, body) = p
        .requester
        .delegate(json!({"model": "tinyllama", "prompt": "around the dead"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"]["node_id"], json!(p.mesh.nodes[1].0));
    // And with every other node down, the answer is 503, not a hang.
    set_down(&p.mesh, &[1, 2]).await;
    let (status, body) = p
        .requester
        .delegate(json!({"model": "tinyllama", "prompt": "anyone?", "timeout_ms": 60000}))
        .await;
    assert_eq!(status, 503, "{body}");
}
