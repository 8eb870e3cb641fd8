//! Benchmark (not a test): what money adds to a delegation whose inference takes a block.
//!
//! `cargo bench --bench paid_wait` (needs `npm ci` for anvil). Runs `edgent demo`'s network
//! (in-process mesh, provider and requester daemons) with the provider's model an Ollama
//! stub that answers after one block (2,000 ms), first unpaid, then paid on anvil mining a
//! block every 2 s (`ANVIL_BLOCK_TIME=2`, `STAKE_MODE=authorization`), and prints the
//! agent's wait for one delegation (`wait: verified`), unpaid and paid, medians, and the
//! difference: what money adds when the provider starts the inference as soon as the
//! authorization checks out and lands the stake meanwhile (issue 23, item 5; goal <= 50 ms).
//! Measured back to back and arriving at a random moment of a block.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgent::demo::{DemoOptions, LocalNet, Steps};
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::{json, Value};

const BLOCK_SECS: u64 = 2;
/// How long the stub model takes to answer: one block.
const INFERENCE: Duration = Duration::from_millis(BLOCK_SECS * 1000);
const SEQUENTIAL: usize = 5;
const RANDOM_ARRIVALS: usize = 11;

async fn delegate(http: &reqwest::Client, url: &str, model: &str, i: usize) -> Value {
    let r = http
        .post(format!("{url}/delegate"))
        .json(&json!({"model": model, "prompt": format!("bench prompt {i}"), "wait": "verified", "timeout_ms": 60000}))
        .send()
        .await
        .expect("POST /delegate");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status.is_success(), "delegation failed: {status} {body}");
    body
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn net(unpaid: bool) -> LocalNet {
    let opts = DemoOptions {
        once: true,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        prompt: String::new(),
        model: Some("tinyllama".into()),
        unpaid,
        agent_ollama: None,
    };
    LocalNet::start(&opts, &mut Steps::quiet())
        .await
        .expect("local network")
}

/// Median wall time, ms, of `SEQUENTIAL` delegations back to back, then of
/// `RANDOM_ARRIVALS` each started after a random pause shorter than a block.
async fn waits(http: &reqwest::Client, net: &LocalNet) -> (f64, f64) {
    delegate(http, &net.url, &net.model, 0).await; // warm-up
    let mut v = Vec::new();
    for i in 0..SEQUENTIAL {
        let t = Instant::now();
        delegate(http, &net.url, &net.model, 100 + i).await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut r = Vec::new();
    for i in 0..RANDOM_ARRIVALS {
        // Not a synchronisation: the arrival time, sampled uniformly over a block.
        let pause = fastrand::u64(0..BLOCK_SECS * 1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let t = Instant::now();
        delegate(http, &net.url, &net.model, 200 + i).await;
        r.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(v), median(r))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stub = OllamaStub::start(StubBehaviour {
        delay: INFERENCE,
        ..StubBehaviour::default()
    })
    .await
    .expect("ollama stub");
    std::env::set_var("OLLAMA_URL", stub.url());
    std::env::set_var("EDGENT_ENV_FILE", "/nonexistent/.env");
    std::env::set_var("ANVIL_BLOCK_TIME", BLOCK_SECS.to_string());
    let http = reqwest::Client::new();

    let unpaid = net(true).await;
    let (unpaid_ms, unpaid_rand_ms) = waits(&http, &unpaid).await;
    unpaid.shutdown().await;

    let paid = net(false).await;
    assert!(paid.paid(), "anvil is needed: run `npm ci` first");
    let (paid_ms, paid_rand_ms) = waits(&http, &paid).await;
    paid.shutdown().await;

    println!(
        "paid delegation on anvil with {BLOCK_SECS} s blocks, inference {} ms (a stub model), wait: verified:",
        INFERENCE.as_millis()
    );
    println!("  back to back, median of {SEQUENTIAL}: unpaid {unpaid_ms:.0} ms, paid {paid_ms:.0} ms, added {:.0} ms (goal <= 50 ms)", paid_ms - unpaid_ms);
    println!("  random arrival in the block, median of {RANDOM_ARRIVALS}: unpaid {unpaid_rand_ms:.0} ms, paid {paid_rand_ms:.0} ms, added {:.0} ms (goal <= 50 ms)", paid_rand_ms - unpaid_rand_ms);
}
