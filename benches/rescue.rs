//! A rescued stream's gap: the silence the agent hears at the break, from the last text
//! line before it to the first line of the continuation (goal: at most 1 s).
//!
//! Two breaks, each over real daemons on `edgent mesh-sim`:
//! - the local runner: the requester's own real Ollama runs Gemma 3 270M, its `ollama
//!   runner` is killed (SIGKILL) after 8 tokens reached the agent, and a provider whose
//!   Ollama holds the same model (loaded) continues;
//! - a provider: two providers serve the tiny model through one real Ollama, the one
//!   streaming is killed after 3 lines, the other continues; default settings (a
//!   streaming provider beats every 150 ms of silence, and is dead after
//!   `STREAM_DEAD_MS=750` without a chunk or a beat).
//!
//! Run: `cargo bench --bench rescue` (prints figures and their table rows; no assertions). Needs the `edgent`
//! binary, the real Ollama (`EDGENT_OLLAMA_BIN`), the test venv (`EDGENT_TEST_PYTHON`)
//! and Gemma (`EDGENT_GEMMA_MODELS`).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gemma::GEMMA_MODEL;
use support::ollama::{RealOllama, TestModel, TINY_MODEL};
use support::{DaemonProc, MeshSimProc};

const ROUNDS: usize = 5;

/// Read an NDJSON stream to its end, calling `at` once `n` lines carried text; returns
/// the silence at the break (the longest wait between two text lines after `at`) and the
/// number of lines.
async fn silence(
    resp: &mut reqwest::Response,
    n: usize,
    mut at: impl FnMut(),
) -> (Duration, usize) {
    let (mut buf, mut lines, mut with_text) = (Vec::new(), 0, 0);
    let mut last: Option<Instant> = None;
    let mut worst = Duration::ZERO;
    while let Ok(Some(bytes)) = resp.chunk().await {
        buf.extend_from_slice(&bytes);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            lines += 1;
            let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
            assert!(v.get("error").is_none(), "the stream broke: {v}");
            if v["response"].as_str().is_some_and(|t| !t.is_empty()) {
                with_text += 1;
                let now = Instant::now();
                if let Some(t) = last {
                    worst = worst.max(now - t);
                }
                if with_text == n {
                    at();
                    last = Some(now);
                } else if with_text > n {
                    last = Some(now);
                }
            }
        }
    }
    (worst, lines)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("RUST_LOG".to_string(), "warn".to_string())])
        .collect()
}

async fn local_runner_round() -> Duration {
    let local = RealOllama::with_gemma(&[]).await;
    let remote = RealOllama::with_gemma(&[]).await;
    let http = reqwest::Client::new();
    // The provider's model is loaded, as on a provider that serves it.
    let warm = json!({"model": GEMMA_MODEL, "prompt": "hi", "stream": false, "options": {"num_predict": 1}});
    for o in [&local, &remote] {
        let r = http
            .post(format!("{}/api/generate", o.url))
            .json(&warm)
            .send()
            .await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "warm-up");
    }
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let _p = DaemonProc::start_owned(
        &dir.path().join("p"),
        env(&[
            ("AXL_API_URL", &mesh.nodes[1].1),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", &remote.url),
        ]),
    )
    .await;
    let r = DaemonProc::start_owned(
        &dir.path().join("r"),
        env(&[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_ROLE", "requester"),
            ("OLLAMA_URL", &local.url),
            ("DELEGATE_TIMEOUT_MS", "600000"),
        ]),
    )
    .await;
    r.knows_providers(&[&mesh.nodes[1].0], Duration::from_secs(60))
        .await;
    let mut resp = http
        .post(format!("{}/api/generate", r.url))
        .json(
            &json!({"model": GEMMA_MODEL, "prompt": "Write a long story about a lighthouse keeper.",
            "options": {"temperature": 0, "num_predict": 24}}),
        )
        .send()
        .await
        .expect("generate");
    let (gap, _) = silence(&mut resp, 8, || {
        local.kill_runners();
    })
    .await;
    gap
}

async fn provider_round() -> Duration {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut providers = Vec::new();
    for i in 1..=2 {
        let e = [
            ("AXL_API_URL", mesh.nodes[i].1.as_str()),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", ollama.url.as_str()),
        ];
        providers.push(DaemonProc::start_owned(&dir.path().join(format!("p{i}")), env(&e)).await);
    }
    let e = [
        ("AXL_API_URL", mesh.nodes[0].1.as_str()),
        ("EDGENT_ROLE", "requester"),
        ("EDGENT_OFFLOAD", "always"),
        ("OLLAMA_URL", "http://127.0.0.1:9"),
    ];
    let r = DaemonProc::start_owned(&dir.path().join("r"), env(&e)).await;
    r.knows_providers(
        &[&mesh.nodes[1].0, &mesh.nodes[2].0],
        Duration::from_secs(60),
    )
    .await;
    let mut resp = reqwest::Client::new()
        .post(format!("{}/api/generate", r.url))
        .json(&json!({"model": TINY_MODEL, "prompt": "hello edge mesh",
            "options": {"seed": 3, "temperature": 1.5, "top_k": 2, "num_predict": 5000}}))
        .send()
        .await
        .expect("generate");
    let chosen = resp.headers()["x-edgent-provider"]
        .to_str()
        .unwrap_or("")
        .to_string();
    let dead = if chosen.starts_with(&mesh.nodes[1].0) {
        0
    } else {
        1
    };
    let (gap, _) = silence(&mut resp, 3, || providers[dead].kill()).await;
    gap
}

/// Prints the figure, and its row of the side-by-side table (`scripts/bench-gemma.sh`).
fn report(what: &str, mut all: Vec<Duration>) {
    all.sort();
    let (p50, max, n) = (
        all[all.len() / 2].as_millis(),
        all[all.len() - 1].as_millis(),
        all.len(),
    );
    println!("{what}: silence at the break p50 {p50} ms, max {max} ms over {n} runs");
    println!(
        "| rescue: silence at the break, {what} | p50 {p50} ms, max {max} ms ({n} runs) | ≤ 1 s |"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `-- local`: only the local runner's break.
    let only_local = std::env::args().any(|a| a == "local");
    if !only_local {
        let what = "provider killed mid-stream (default settings)";
        let mut all = Vec::new();
        for i in 0..ROUNDS {
            let gap = provider_round().await;
            println!("{what}, round {}: {} ms", i + 1, gap.as_millis());
            all.push(gap);
        }
        report(what, all);
    }
    let mut all = Vec::new();
    for i in 0..ROUNDS {
        let gap = local_runner_round().await;
        println!(
            "local runner killed, round {}: {} ms",
            i + 1,
            gap.as_millis()
        );
        all.push(gap);
    }
    report("local runner killed (Gemma 3 270M)", all);
}
