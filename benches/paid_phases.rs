//! Benchmark (not a test): the phases of a paid delegation on one machine.
//!
//! `cargo bench --bench paid_phases` (needs `npm ci` for anvil). Starts what `edgent demo`
//! starts (anvil with MockUSDC and EdgentEscrow, an in-process mesh, a provider and a
//! requester daemon, the direct settler) with the built-in zero-time demo backend, runs
//! paid delegations over real HTTP, and prints the median and 90th percentile of each
//! phase: discover, stake, inference, prove, verify, settle, and the one the goal is about,
//! "after inference": from the end of the provider's inference to the agent's answer,
//! proof included (total - discover - stake - inference, with `wait: verified`).

use std::net::SocketAddr;
use std::time::Instant;

use edgent::demo::{DemoOptions, LocalNet, Steps};
use serde_json::{json, Value};

const RUNS: usize = 30;
const WARMUP: usize = 3;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn field(body: &Value, name: &str) -> f64 {
    body["timings"][name].as_f64().unwrap_or(f64::NAN)
}

async fn delegate(http: &reqwest::Client, url: &str, model: &str, wait: &str, i: usize) -> Value {
    let r = http
        .post(format!("{url}/delegate"))
        .json(&json!({"model": model, "prompt": format!("bench prompt {i}"), "wait": wait}))
        .send()
        .await
        .expect("POST /delegate");
    assert!(r.status().is_success(), "delegation failed: {}", r.status());
    r.json().await.expect("JSON")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The zero-time demo backend, whatever Ollama this machine has.
    std::env::set_var("OLLAMA_URL", "http://127.0.0.1:9");
    std::env::set_var("EDGENT_ENV_FILE", "/nonexistent/.env");
    let opts = DemoOptions {
        once: true,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        prompt: String::new(),
        model: None,
        unpaid: false,
        agent_ollama: None,
    };
    let net = LocalNet::start(&opts, &mut Steps::quiet())
        .await
        .expect("local network");
    assert!(net.paid(), "anvil is needed: run `npm ci` first");
    let http = reqwest::Client::new();
    for i in 0..WARMUP {
        delegate(&http, &net.url, &net.model, "settled", i).await;
    }
    println!(
        "paid delegation phases, {RUNS} runs each, anvil instant mining, zero-time backend (ms):"
    );
    println!(
        "{:<10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "wait", "", "discover", "stake", "infer", "prove", "verify", "settle", "total", "after-inf"
    );
    for wait in ["verified", "settled"] {
        let mut rows: Vec<[f64; 8]> = Vec::new();
        let t = Instant::now();
        for i in 0..RUNS {
            let b = delegate(&http, &net.url, &net.model, wait, i).await;
            let (d, s, inf, tot) = (
                field(&b, "discover_ms"),
                field(&b, "stake_ms"),
                field(&b, "inference_ms"),
                field(&b, "total_ms"),
            );
            rows.push([
                d,
                s,
                inf,
                field(&b, "prove_ms"),
                field(&b, "verify_ms"),
                field(&b, "settle_ms"),
                tot,
                tot - d - s - inf,
            ]);
        }
        let wall = t.elapsed().as_secs_f64();
        for (label, p) in [("median", 0.5), ("p90", 0.9)] {
            let cols: Vec<f64> = (0..8)
                .map(|c| {
                    let mut v: Vec<f64> =
                        rows.iter().map(|r| r[c]).filter(|x| !x.is_nan()).collect();
                    if v.is_empty() {
                        f64::NAN
                    } else {
                        pct(&mut v, p)
                    }
                })
                .collect();
            println!(
                "{:<10} {:>10} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>8.0}",
                wait, label, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
            );
        }
        println!(
            "{:<10} {:>10} {:.1} delegations/s",
            wait,
            "rate",
            RUNS as f64 / wall
        );
    }
    println!("goal: after-inf (wait=verified) <= 150 ms");
    net.shutdown().await;
}
