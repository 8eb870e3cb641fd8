//! Dead provider: from its death to the job done on another provider.
//!
//! Real daemons over `edgent mesh-sim` with the default heartbeat settings
//! (`HEARTBEAT_MS=2000`, `HEARTBEAT_MISSES=2`): a cheap provider whose backend holds its
//! answer takes the job, its AXL node is taken down mid-job (its queue is lost), and the
//! requester must notice from the missing heartbeats and finish on the second provider.
//! The job itself is instant on the second provider, so the figure is the failover time.
//!
//! Run: `cargo bench --bench failover` (prints figures; no assertions). Needs the
//! `edgent` binary (`cargo build` first, which `cargo bench` does).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::json;
use support::{eventually, DaemonProc, MeshSimProc};

const ROUNDS: usize = 3;

async fn provider(
    mesh: &MeshSimProc,
    dir: &std::path::Path,
    node: usize,
    stub: &OllamaStub,
    price: &str,
) -> DaemonProc {
    let env = vec![
        ("AXL_API_URL".to_string(), mesh.nodes[node].1.clone()),
        ("EDGENT_ROLE".into(), "provider".into()),
        ("OLLAMA_URL".into(), stub.url()),
        ("PRICE_USDC".into(), price.into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    DaemonProc::start_owned(&dir.join(format!("p{node}")), env).await
}

async fn round() -> (Duration, Duration) {
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let slow_stub = OllamaStub::start(StubBehaviour {
        delay: Duration::from_secs(120),
        ..StubBehaviour::default()
    })
    .await
    .expect("stub");
    let fast_stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let _slow = provider(&mesh, dir.path(), 1, &slow_stub, "0.001").await;
    let _fast = provider(&mesh, dir.path(), 2, &fast_stub, "0.002").await;
    let req = DaemonProc::start_owned(
        &dir.path().join("r"),
        vec![
            ("AXL_API_URL".into(), mesh.nodes[0].1.clone()),
            ("EDGENT_ROLE".into(), "requester".into()),
            ("RUST_LOG".into(), "warn".into()),
        ],
    )
    .await;
    let call = req.delegate(json!({"model": "tinyllama", "prompt": "bench", "timeout_ms": 120000}));
    let kill = async {
        eventually(
            "the job on the slow provider",
            Duration::from_secs(60),
            || async { (slow_stub.generate_calls() >= 1).then_some(()) },
        )
        .await;
        let t = Instant::now();
        reqwest::Client::new()
            .post(format!("{}/sim/faults", mesh.nodes[0].1))
            .json(&json!({"down": [1]}))
            .send()
            .await
            .expect("faults");
        t
    };
    let ((status, body), killed) = tokio::join!(call, kill);
    let done = killed.elapsed();
    assert_eq!(status, 200, "{body}");
    let ms = body["attempts"][1]["ms"].as_u64().unwrap_or(0);
    (done, Duration::from_millis(ms))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("dead provider -> job done on another (HEARTBEAT_MS=2000, HEARTBEAT_MISSES=2)");
    let mut all = Vec::new();
    for i in 0..ROUNDS {
        let (done, second) = round().await;
        println!(
            "round {}: death -> answer {:>6} ms (second attempt {} ms)",
            i + 1,
            done.as_millis(),
            second.as_millis()
        );
        all.push(done);
    }
    all.sort();
    println!(
        "median {} ms, max {} ms over {ROUNDS} rounds",
        all[ROUNDS / 2].as_millis(),
        all[ROUNDS - 1].as_millis()
    );
}
