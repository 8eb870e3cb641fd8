//! The real model's figures (issue 23's first rows): Gemma 3 270M Q4_K_M
//! (`scripts/install-gemma.sh`) on the real Ollama v0.17.4, streamed by this bench (a
//! streaming HTTP client, the agent) from that Ollama directly and through a requester daemon
//! with `EDGENT_OFFLOAD=always` whose provider, over `edgent mesh-sim`, runs the same Ollama.
//! The two alternate, greedy (`temperature 0`, seed fixed), [`NUM_PREDICT`] tokens each, so
//! both ask the same and get the same text (checked each round).
//!
//! - **tokens per second** as the agent reads them: (tokens − 1) over the time from the first
//!   text to the done line; p50 per side and the ratio mesh / local.
//! - **time to first token** at the agent, from sending the request to the first text; p50
//!   per side and the time the mesh adds.
//!
//! Run: `cargo bench --bench gemma` (prints figures; no assertions but the equal text). Needs
//! `EDGENT_OLLAMA_BIN`, `EDGENT_TEST_PYTHON` and `EDGENT_GEMMA_MODELS` as the tests do.
//! `GEMMA_ROUNDS` sets the rounds per side (default 5).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gemma::GEMMA_MODEL;
use support::ollama::RealOllama;
use support::{DaemonProc, MeshSimProc};

/// Tokens asked per answer.
const NUM_PREDICT: u64 = 64;

/// One streamed generation as the agent saw it.
struct Run {
    text: String,
    ttft: Duration,
    tokens_per_s: f64,
    ran_on: String,
}

async fn generate(http: &reqwest::Client, url: &str) -> Run {
    let t0 = Instant::now();
    let mut r = http
        .post(format!("{url}/api/generate"))
        .json(&json!({
            "model": GEMMA_MODEL,
            "prompt": "The capital of France is",
            "options": {"seed": 7, "temperature": 0, "num_predict": NUM_PREDICT},
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{url}");
    let ran_on = r
        .headers()
        .get("x-edgent-ran-on")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("ollama")
        .to_string();
    let mut buf: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut first: Option<Instant> = None;
    let mut tokens = 0u64;
    let mut done_at = None;
    while let Some(b) = r.chunk().await.expect("chunk") {
        let now = Instant::now();
        buf.extend_from_slice(&b);
        while let Some(pos) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line).expect("an NDJSON line");
            assert!(v.get("error").is_none(), "{v}");
            let t = v["response"].as_str().unwrap_or("");
            if !t.is_empty() {
                first.get_or_insert(now);
                text.push_str(t);
            }
            if v["done"] == true {
                tokens = v["eval_count"].as_u64().unwrap_or(0);
                done_at = Some(now);
            }
        }
    }
    let first = first.expect("some text");
    let done_at = done_at.expect("a done line");
    Run {
        text,
        ttft: first - t0,
        tokens_per_s: tokens.saturating_sub(1) as f64 / (done_at - first).as_secs_f64(),
        ran_on,
    }
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() - 1) / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("GEMMA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let ollama = RealOllama::with_gemma(&[]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = DaemonProc::start(
        &dir.path().join("provider"),
        &[
            ("AXL_API_URL", &mesh.nodes[1].1),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", &ollama.url),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let requester = DaemonProc::start(
        &dir.path().join("requester"),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_ROLE", "requester"),
            ("OLLAMA_URL", "http://127.0.0.1:9"),
            ("EDGENT_OFFLOAD", "always"),
            // Gemma on a busy 2-core machine may take minutes, well past the default 120 s.
            ("DELEGATE_TIMEOUT_MS", "900000"),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    support::eventually("the provider's ad", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        let n = st["mesh_providers"].as_array().map_or(0, |a| a.len());
        (n > 0).then_some(())
    })
    .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    println!(
        "gemma bench: real Ollama v0.17.4, {GEMMA_MODEL}, {NUM_PREDICT} tokens greedy, {rounds} rounds a side ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    // Warm-up: the model loads on the first request.
    let reference = generate(&http, &ollama.url).await.text;
    let (mut local, mut meshed) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let a = generate(&http, &ollama.url).await;
        let b = generate(&http, &requester.url).await;
        assert_eq!(b.ran_on, "mesh", "round {round}");
        assert_eq!(a.text, reference, "round {round}: local text changed");
        assert_eq!(b.text, reference, "round {round}: the mesh's text differs");
        println!(
            "  round {round}: local {:.2} tok/s, ttft {:.1} ms | mesh {:.2} tok/s, ttft {:.1} ms",
            a.tokens_per_s,
            a.ttft.as_secs_f64() * 1e3,
            b.tokens_per_s,
            b.ttft.as_secs_f64() * 1e3
        );
        local.push(a);
        meshed.push(b);
    }
    let tps = |v: &[Run]| p50(v.iter().map(|r| r.tokens_per_s).collect());
    let ttft = |v: &[Run]| p50(v.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
    let added: Vec<f64> = local
        .iter()
        .zip(&meshed)
        .map(|(a, b)| (b.ttft.as_secs_f64() - a.ttft.as_secs_f64()) * 1e3)
        .collect();
    println!(
        "tokens per second, p50: local {:.2}, through the mesh {:.2} (ratio {:.3}; goal >= 0.97)",
        tps(&local),
        tps(&meshed),
        tps(&meshed) / tps(&local)
    );
    println!("time to first token, p50: local {:.1} ms, through the mesh {:.1} ms; added by the mesh {:.1} ms at p50 of the paired rounds (goal <= 5 ms)", ttft(&local), ttft(&meshed), p50(added));
    drop(provider);
    drop(requester);
}
