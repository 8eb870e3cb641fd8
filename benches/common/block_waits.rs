//! What the paid-on-blocks benches share: `edgent demo`'s network, one delegation, and the
//! median wait of delegations back to back and arriving at a random moment of a block.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgent::demo::{DemoOptions, LocalNet, Steps};
use serde_json::{json, Value};

/// One delegation of `model` through the requester at `url`, waiting for `wait`.
pub async fn delegate(
    http: &reqwest::Client,
    url: &str,
    model: &str,
    wait: &str,
    i: usize,
) -> Value {
    let r = http
        .post(format!("{url}/delegate"))
        .json(&json!({"model": model, "prompt": format!("bench prompt {i}"), "wait": wait, "timeout_ms": 60000}))
        .send()
        .await
        .expect("POST /delegate");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status.is_success(), "delegation failed: {status} {body}");
    body
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `edgent demo`'s network, unpaid or paid, serving `model` (the demo's default when None).
pub async fn net(unpaid: bool, model: Option<&str>) -> LocalNet {
    let opts = DemoOptions {
        once: true,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        prompt: String::new(),
        model: model.map(str::to_string),
        unpaid,
        agent_ollama: None,
    };
    LocalNet::start(&opts, &mut Steps::quiet())
        .await
        .expect("local network")
}

/// Median wall time, ms, of `sequential` delegations (`wait: verified`) back to back, then
/// of `random` ones each started after a random pause shorter than a block of `block_secs`.
pub async fn waits(
    http: &reqwest::Client,
    net: &LocalNet,
    sequential: usize,
    random: usize,
    block_secs: u64,
) -> (f64, f64) {
    delegate(http, &net.url, &net.model, "verified", 0).await; // warm-up
    let mut v = Vec::new();
    for i in 0..sequential {
        let t = Instant::now();
        delegate(http, &net.url, &net.model, "verified", 100 + i).await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut r = Vec::new();
    for i in 0..random {
        // Not a synchronisation: the arrival time, sampled uniformly over a block.
        let pause = fastrand::u64(0..block_secs * 1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let t = Instant::now();
        delegate(http, &net.url, &net.model, "verified", 200 + i).await;
        r.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(v), median(r))
}
