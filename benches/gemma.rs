//! The real model side by side (issue 23's "Done when"): Gemma 3 270M Q4_K_M
//! (`scripts/install-gemma.sh`) on the real Ollama v0.17.4, streamed by this bench (a
//! streaming HTTP client, the agent) in interleaved rounds:
//!
//! - **local**: from that Ollama directly;
//! - **mesh, unpaid**: through a requester daemon with `EDGENT_OFFLOAD=always` whose
//!   provider, over `edgent mesh-sim`, runs the same Ollama;
//! - **mesh, paid**: the same through a paid pair (anvil with instant mining, the escrow,
//!   the provider's `stakeWithAuthorization`; [`support::paid::PaidWorld`]);
//! - **offload by prediction vs after the failure**: the requester's own Ollama (a second
//!   one with the model) runs in a memory cgroup of [`OWN_MEMORY_MB`] MiB, too small for
//!   the model's 253 MB of weights: with `EDGENT_OFFLOAD=oom` (the default) it tries, its
//!   runner is killed by the kernel, Ollama answers 500 and the daemon offloads; with
//!   `EDGENT_OFFLOAD=predict` (`EDGENT_LOCAL_MEMORY_MB` the same limit) the daemon offloads
//!   before asking it. The agent's time to first token of each. Needs root (cgroup v1's
//!   memory controller, or v2's); the cgroup is removed at the end.
//!
//! All greedy (`temperature 0`, seed fixed), [`NUM_PREDICT`] tokens, the same text every
//! time (checked). Figures: tokens per second as the agent reads them ((tokens − 1) over
//! the time from the first text to the done line), p50 per side and the ratio to local;
//! time to first token, p50 of the time the mesh adds in paired rounds; the `task_chunk`s
//! and all mesh messages per second of the unpaid streams (from `/sim/stats` and the
//! provider's metrics). Each round also prints, per side, the wait from the last text to
//! the done line, and the paid job's prove and verify times from the requester's record.
//!
//! Run: `cargo bench --bench gemma` (prints figures and a table; no assertions but the
//! equal text), or `bash scripts/bench-gemma.sh` for every figure of the issue in one
//! table. Needs `EDGENT_OLLAMA_BIN`, `EDGENT_TEST_PYTHON` and `EDGENT_GEMMA_MODELS` as the
//! tests do. `GEMMA_ROUNDS` sets the rounds (default 5), `GEMMA_OFFLOAD_ROUNDS` those of
//! the offload comparison (default 3; 0 skips it), `GEMMA_TOKENS` the tokens (default 64).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gemma::GEMMA_MODEL;
use support::ollama::RealOllama;
use support::paid::PaidWorld;
use support::{DaemonProc, MeshSimProc};

/// Tokens asked per answer (`GEMMA_TOKENS` overrides, for a quick check that the bench runs).
const NUM_PREDICT: u64 = 64;
/// The memory of the requester's own Ollama in the offload comparison, MiB.
const OWN_MEMORY_MB: u64 = 200;
/// Gemma on a busy 2-core machine may take minutes, well past the default 120 s.
const DELEGATE_TIMEOUT_MS: &str = "900000";

/// One streamed generation as the agent saw it.
struct Run {
    text: String,
    ttft: Duration,
    stream: Duration,
    /// From the last text to the done line (a paid answer's done line waits for its proof).
    tail: Duration,
    tokens_per_s: f64,
    ran_on: String,
    /// The delegation's job id (`x-edgent-job`), when it went through the mesh.
    job: Option<String>,
}

fn num_predict() -> u64 {
    std::env::var("GEMMA_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NUM_PREDICT)
}

async fn generate(http: &reqwest::Client, url: &str) -> Run {
    let t0 = Instant::now();
    let mut r = http
        .post(format!("{url}/api/generate"))
        .json(&json!({
            "model": GEMMA_MODEL,
            "prompt": "The capital of France is",
            "options": {"seed": 7, "temperature": 0, "num_predict": num_predict()},
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
    let job = r
        .headers()
        .get("x-edgent-job")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut buf: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut tokens = 0u64;
    let mut done_at = None;
    while let Some(b) = r.chunk().await.expect("chunk") {
        let now = Instant::now();
        buf.extend_from_slice(&b);
        while let Some(pos) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line).expect("an NDJSON line");
            assert!(v.get("error").is_none(), "{url}: {v}");
            let t = v["response"].as_str().unwrap_or("");
            if !t.is_empty() {
                first.get_or_insert(now);
                last = Some(now);
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
        stream: done_at - first,
        tail: done_at - last.unwrap_or(first),
        tokens_per_s: tokens.saturating_sub(1) as f64 / (done_at - first).as_secs_f64(),
        ran_on,
        job,
    }
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() - 1) / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A memory cgroup of its own (v1's memory controller, else v2), without swap; removed on
/// drop with whatever still runs in it.
struct MemoryCgroup {
    dir: PathBuf,
    procs: PathBuf,
}

impl MemoryCgroup {
    fn new(limit_mb: u64) -> Option<MemoryCgroup> {
        let bytes = (limit_mb << 20).to_string();
        let name = format!("edgent-bench-gemma-{}", std::process::id());
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").is_file() {
            let dir = v1.join(&name);
            std::fs::create_dir(&dir).ok()?;
            let cg = MemoryCgroup {
                procs: dir.join("cgroup.procs"),
                dir,
            };
            std::fs::write(cg.dir.join("memory.limit_in_bytes"), &bytes).ok()?;
            // Absent without swap accounting; there may be no swap at all.
            let _ = std::fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), &bytes);
            return Some(cg);
        }
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return None;
        }
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+memory");
        let dir = v2.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let cg = MemoryCgroup {
            procs: dir.join("cgroup.procs"),
            dir,
        };
        std::fs::write(cg.dir.join("memory.max"), &bytes).ok()?;
        let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        Some(cg)
    }

    /// Move `pid` in: what it allocates from now on, and its children, count.
    fn add(&self, pid: u32) {
        std::fs::write(&self.procs, pid.to_string()).expect("move a process into the cgroup");
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = std::fs::read_to_string(&self.procs).unwrap_or_default();
            if pids.trim().is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("could not remove the cgroup {}: {e}", self.dir.display());
        }
    }
}

/// A metric's value from an OpenMetrics text (0 when absent).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Messages nodes 0 and 1 of `mesh` sent so far (`/sim/stats`).
async fn sent_by_pair(mesh: &MeshSimProc) -> u64 {
    mesh.stats().await[..2]
        .iter()
        .map(|s| s["sent"].as_u64().unwrap_or(0))
        .sum()
}

async fn wait_for_ad(requester: &DaemonProc) {
    support::eventually("the provider's ad", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        let n = st["mesh_providers"].as_array().map_or(0, |a| a.len());
        (n > 0).then_some(())
    })
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env_n = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rounds, offload_rounds) = (env_n("GEMMA_ROUNDS", 5), env_n("GEMMA_OFFLOAD_ROUNDS", 3));
    // Declared first, dropped last: after the Ollama in it stopped.
    let cgroup = if offload_rounds > 0 {
        let cg = MemoryCgroup::new(OWN_MEMORY_MB);
        assert!(
            cg.is_some(),
            "no memory cgroup of our own (needs root); GEMMA_OFFLOAD_ROUNDS=0 skips the offload comparison"
        );
        cg
    } else {
        None
    };
    let ollama = RealOllama::with_gemma(&[]).await;
    let own = match &cgroup {
        Some(cg) => {
            let own = RealOllama::with_gemma(&[]).await;
            cg.add(own.pid().expect("the requester's Ollama runs"));
            Some(own)
        }
        None => None,
    };
    let mesh = MeshSimProc::start(4, 0);
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
            ("DELEGATE_TIMEOUT_MS", DELEGATE_TIMEOUT_MS),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let own_memory = OWN_MEMORY_MB.to_string();
    let mut offloaders = Vec::new();
    if let Some(own) = &own {
        for (i, mode) in [(2, "oom"), (3, "predict")] {
            offloaders.push(
                DaemonProc::start(
                    &dir.path().join(mode),
                    &[
                        ("AXL_API_URL", &mesh.nodes[i].1),
                        ("EDGENT_ROLE", "requester"),
                        ("OLLAMA_URL", &own.url),
                        ("EDGENT_OFFLOAD", mode),
                        ("EDGENT_LOCAL_MEMORY_MB", &own_memory),
                        ("DELEGATE_TIMEOUT_MS", DELEGATE_TIMEOUT_MS),
                        ("RUST_LOG", "warn"),
                    ],
                )
                .await,
            );
        }
    }
    let world = PaidWorld::new().await;
    let paid_extra = [
        ("OLLAMA_URL", "http://127.0.0.1:9"),
        ("EDGENT_OFFLOAD", "always"),
        ("DELEGATE_TIMEOUT_MS", DELEGATE_TIMEOUT_MS),
        ("RUST_LOG", "warn"),
    ];
    let (paid_requester, paid_provider) = world
        .start_with(
            &paid_extra,
            &[("OLLAMA_URL", &ollama.url), ("RUST_LOG", "warn")],
        )
        .await;
    wait_for_ad(&requester).await;
    wait_for_ad(&paid_requester).await;
    for d in &offloaders {
        wait_for_ad(d).await;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    println!(
        "gemma bench: real Ollama v0.17.4, {GEMMA_MODEL}, {} tokens greedy, {rounds} rounds a side ({} build)",
        num_predict(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    // Warm-up: the model loads on the first request; the paid pair's first job pays its
    // one-time costs (allowance, first stake).
    let reference = generate(&http, &ollama.url).await.text;
    let warm = generate(&http, &paid_requester.url).await;
    assert_eq!(warm.ran_on, "mesh", "paid warm-up");
    let (mut local, mut unpaid, mut paid) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sent, mut chunks) = (0u64, 0f64);
    for round in 0..rounds {
        let a = generate(&http, &ollama.url).await;
        let (s0, c0) = (
            sent_by_pair(&mesh).await,
            metric(
                &provider.metrics().await,
                "edgent_messages_out_total",
                "type=\"task_chunk\"",
            ),
        );
        let b = generate(&http, &requester.url).await;
        // The job's last messages (the result's ack) may trail the done line a little.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sent += sent_by_pair(&mesh).await - s0;
        chunks += metric(
            &provider.metrics().await,
            "edgent_messages_out_total",
            "type=\"task_chunk\"",
        ) - c0;
        let c = generate(&http, &paid_requester.url).await;
        for (name, r) in [("local", &a), ("unpaid", &b), ("paid", &c)] {
            assert_eq!(r.text, reference, "round {round}: the {name} text differs");
        }
        assert_eq!(b.ran_on, "mesh", "round {round}");
        assert_eq!(c.ran_on, "mesh", "round {round}");
        println!(
            "  round {round}: local {:.2} tok/s, ttft {:.1} ms, done line {:.1} ms after the last text | unpaid {:.2} tok/s, ttft {:.1} ms, done line {:.1} ms after the last text | paid {:.2} tok/s, ttft {:.1} ms, done line {:.1} ms after the last text",
            a.tokens_per_s,
            ms(a.ttft),
            ms(a.tail),
            b.tokens_per_s,
            ms(b.ttft),
            ms(b.tail),
            c.tokens_per_s,
            ms(c.ttft),
            ms(c.tail)
        );
        // Where the paid done line's wait after the last text goes: the requester's record.
        if let Some(id) = &c.job {
            if let Some(rec) = paid_requester.job(id).await {
                println!(
                    "    paid job's timings (ms): inference {}, prove (result to proof) {}, verify {}",
                    rec["timings"]["inference_ms"], rec["timings"]["prove_ms"], rec["timings"]["verify_ms"]
                );
            }
        }
        local.push(a);
        unpaid.push(b);
        paid.push(c);
    }
    let tps = |v: &[Run]| p50(v.iter().map(|r| r.tokens_per_s).collect());
    let ttft = |v: &[Run]| p50(v.iter().map(|r| ms(r.ttft)).collect());
    let added = |v: &[Run]| {
        p50(local
            .iter()
            .zip(v)
            .map(|(a, b)| ms(b.ttft) - ms(a.ttft))
            .collect())
    };
    let stream_secs: f64 = unpaid.iter().map(|r| r.stream.as_secs_f64()).sum();
    println!(
        "tokens per second, p50: local {:.2}, mesh unpaid {:.2} ({:.3} of local), mesh paid {:.2} ({:.3}); goal >= 0.97",
        tps(&local),
        tps(&unpaid),
        tps(&unpaid) / tps(&local),
        tps(&paid),
        tps(&paid) / tps(&local)
    );
    println!(
        "time to first token, p50: local {:.1} ms, unpaid {:.1} ms, paid {:.1} ms; added by the mesh at p50 of the paired rounds: unpaid {:.1} ms (goal <= 5 ms), paid {:.1} ms",
        ttft(&local),
        ttft(&unpaid),
        ttft(&paid),
        added(&unpaid),
        added(&paid)
    );
    println!(
        "mesh messages of the unpaid streams: {chunks:.0} task_chunk and {sent} in all over {stream_secs:.2} s of stream = {:.1} task_chunk/s, {:.1} messages/s (goal <= 30)",
        chunks / stream_secs,
        sent as f64 / stream_secs
    );

    // Offload by prediction vs after the failure, interleaved.
    let mut offload_rows = None;
    if let [oom, predict] = &offloaders[..] {
        let (mut after, mut before) = (Vec::new(), Vec::new());
        for round in 0..offload_rounds {
            let a = generate(&http, &oom.url).await;
            let b = generate(&http, &predict.url).await;
            for (name, r) in [("oom", &a), ("predict", &b)] {
                assert_eq!(r.ran_on, "mesh", "round {round}: {name} served locally");
                assert_eq!(r.text, reference, "round {round}: the {name} text differs");
            }
            println!(
                "  offload round {round}: after the failure (oom) ttft {:.1} ms | by prediction ttft {:.1} ms",
                ms(a.ttft),
                ms(b.ttft)
            );
            after.push(a);
            before.push(b);
        }
        let own_log = own.as_ref().map(|o| o.log()).unwrap_or_default();
        let killed = own_log
            .matches("llama runner process has terminated")
            .count();
        println!(
            "agent's time to first token, p50: offload after the failure {:.1} ms, by prediction {:.1} ms ({:.1} ms sooner); the requester's own Ollama ({OWN_MEMORY_MB} MiB cgroup) logged {killed} killed runner(s)",
            ttft(&after),
            ttft(&before),
            ttft(&after) - ttft(&before)
        );
        offload_rows = Some((ttft(&before), ttft(&after)));
    }

    println!();
    println!(
        "| tokens per second, p50: local / mesh unpaid / mesh paid | {:.1} / {:.1} ({:.3}) / {:.1} ({:.3}) | mesh >= 0.97 of local |",
        tps(&local),
        tps(&unpaid),
        tps(&unpaid) / tps(&local),
        tps(&paid),
        tps(&paid) / tps(&local)
    );
    println!(
        "| time to first token added by the mesh, p50: unpaid / paid | {:.1} ms / {:.1} ms (local {:.1} ms) | <= 5 ms |",
        added(&unpaid),
        added(&paid),
        ttft(&local)
    );
    if let Some((before, after)) = offload_rows {
        println!(
            "| agent's time to first token, offload by prediction vs after the failure, p50 | {before:.0} ms vs {after:.0} ms | prediction sooner |"
        );
    }
    println!(
        "| mesh messages per second of a Gemma stream: task_chunk / all | {:.1} / {:.1} | <= 30 |",
        chunks / stream_secs,
        sent as f64 / stream_secs
    );
    drop((
        paid_requester,
        paid_provider,
        provider,
        requester,
        offloaders,
    ));
    drop(own);
}
