//! Calibrating the spot-check rule on honest providers (issue 22): a requester with
//! `VERIFY_RATE=1` delegates [`CHECKS`] jobs for the real Gemma 3 270M
//! (`scripts/install-gemma.sh`) to two honest providers over `edgent mesh-sim`, each with
//! its own real Ollama. Every job is spot-checked by the other provider, half of them
//! re-run as they were (fixed sampling: `temperature` 0, a seed), half probed greedy (the
//! job's sampling is `temperature` 0.8, not reproducible). Reported:
//!
//! - **false alarms**: checks whose verdict is not `passed` (goal 0), from the requester's
//!   `edgent_spot_checks_total`, and the checks whose outputs were not byte-identical (the
//!   prefix rule's margin);
//! - **cost of a check**: the extra runs it takes (1 for a re-run, 2 for a probe) and the
//!   wall time the check added to its delegation, p50 per mode;
//! - **expected jobs a cheater serves before it is caught** at the default rate, from the
//!   rule (a cheater that cheats on every job: its first job, always checked; one that
//!   behaves for its first `VERIFY_FIRST` jobs: 1 / `VERIFY_RATE` cheated jobs on average).
//!
//! Run: `cargo bench --profile dev --bench spot_checks` (the dev profile: the figures are
//! Ollama's and the mesh's, not the daemon's code). Needs `EDGENT_OLLAMA_BIN`,
//! `EDGENT_TEST_PYTHON` and `EDGENT_GEMMA_MODELS` as the tests do. `SPOT_CHECKS` sets the
//! number of checks (default [`CHECKS`]), `SPOT_TOKENS` the tokens per job (default 8).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::gemma::GEMMA_MODEL;
use support::ollama::RealOllama;
use support::{DaemonProc, MeshSimProc};

/// Checks by default.
const CHECKS: usize = 200;

const SUBJECTS: [&str; 20] = [
    "the moon",
    "a river",
    "bread",
    "the ocean",
    "a library",
    "winter",
    "a bicycle",
    "the heart",
    "coffee",
    "a mountain",
    "the internet",
    "a violin",
    "rain",
    "a forest",
    "the sun",
    "an engine",
    "a city",
    "honey",
    "a clock",
    "the desert",
];
const FRAMES: [&str; 10] = [
    "Write one sentence about {}.",
    "Describe {} to a child.",
    "What is {} made of?",
    "Give a fact about {}.",
    "Why does {} matter?",
    "Complete: {} is",
    "A poem line about {}:",
    "Explain {} in simple words.",
    "Name something similar to {}.",
    "What color is {}?",
];

fn p50(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn metric(d: &DaemonProc, line: &str) -> u64 {
    let m = d.metrics().await;
    m.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SPOT_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CHECKS);
    let tokens: u64 = std::env::var("SPOT_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (oa, ob) = (
        RealOllama::with_gemma(&[]).await,
        RealOllama::with_gemma(&[]).await,
    );
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = |node: usize, url: String| {
        let mesh = &mesh;
        let dir = dir.path().join(format!("provider{node}"));
        async move {
            DaemonProc::start_owned(
                &dir,
                vec![
                    ("AXL_API_URL".into(), mesh.nodes[node].1.clone()),
                    ("EDGENT_ROLE".into(), "provider".into()),
                    ("OLLAMA_URL".into(), url),
                    ("RUST_LOG".into(), "warn".into()),
                ],
            )
            .await
        }
    };
    let pa = provider(1, oa.url.clone()).await;
    let pb = provider(2, ob.url.clone()).await;
    let requester = DaemonProc::start(
        &dir.path().join("requester"),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_ROLE", "requester"),
            ("VERIFY_RATE", "1"),
            ("DELEGATE_TIMEOUT_MS", "900000"),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    support::eventually("both providers' ads", Duration::from_secs(60), || async {
        let st = requester.get("/status").await;
        let n = st["mesh_providers"].as_array().map_or(0, |a| a.len());
        (n >= 2).then_some(())
    })
    .await;

    let mut cost: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut not_identical = 0usize;
    let mut verdicts: Vec<String> = Vec::new();
    // Two delegations at a time, so both providers' Ollamas work.
    let one = |i: usize| {
        let requester = &requester;
        async move {
            let prompt = FRAMES[i % FRAMES.len()]
                .replace("{}", SUBJECTS[(i / FRAMES.len()) % SUBJECTS.len()]);
            let fixed = i.is_multiple_of(2);
            let options = if fixed {
                json!({"temperature": 0, "seed": i, "num_predict": tokens})
            } else {
                json!({"temperature": 0.8, "num_predict": tokens})
            };
            let (status, body) = requester
                .delegate(json!({"model": GEMMA_MODEL, "prompt": prompt, "options": options}))
                .await;
            if status != 200 {
                // A loaded machine can miss a deadline: counted, not a verdict.
                eprintln!("delegation {i} failed: {status} {body}");
                return None;
            }
            let job: Value = requester
                .job(body["job_id"].as_str().expect("job id"))
                .await
                .expect("job");
            Some((i, fixed, job["spot_checks"][0].clone()))
        }
    };
    let mut i = 0;
    let mut failed = 0usize;
    while i < n {
        let (x, y) = tokio::join!(one(i), one(i + 1));
        failed += [&x, &y]
            .into_iter()
            .take(n - i)
            .filter(|r| r.is_none())
            .count();
        for (i, fixed, check) in [x, y].into_iter().take(n - i).flatten() {
            let verdict = check["verdict"].as_str().unwrap_or("none").to_string();
            let hashes = check["output_hashes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if hashes.len() >= 2 && hashes[0] != hashes[1] {
                not_identical += 1;
            }
            cost[usize::from(!fixed)].push(check["ms"].as_f64().unwrap_or(f64::NAN));
            if verdict != "passed" {
                eprintln!("check {i}: {verdict}: {check}");
            }
            verdicts.push(verdict);
        }
        i += 2;
        if i.is_multiple_of(10) {
            let accused = verdicts
                .iter()
                .filter(|v| *v == "caught" || *v == "checker_caught")
                .count();
            eprintln!(
                "after {} checks: {accused} accusations, {} passed, {failed} delegations failed",
                verdicts.len(),
                verdicts.iter().filter(|v| *v == "passed").count()
            );
        }
    }
    let n = verdicts.len();
    let passed = verdicts.iter().filter(|v| *v == "passed").count();
    let caught = metric(&requester, "edgent_spot_checks_total{outcome=\"caught\"}").await;
    let checker_caught = metric(
        &requester,
        "edgent_spot_checks_total{outcome=\"checker_caught\"}",
    )
    .await;
    let unsettled = metric(
        &requester,
        "edgent_spot_checks_total{outcome=\"unsettled\"}",
    )
    .await;
    println!("honest spot checks: {n} ({} re-runs, {} probes), Gemma 3 270M, two providers with their own Ollama, {tokens} tokens per job", cost[0].len(), cost[1].len());
    println!(
        "false alarms (an honest provider or checker accused): {} of {n} (caught {caught}, checker caught {checker_caught}); not passed: {} (unsettled {unsettled}: a run missed its deadline, nobody accused); delegations failed: {failed}; outputs not byte-identical: {not_identical}",
        caught + checker_caught,
        n - passed
    );
    println!(
        "cost of a check: a re-run takes 1 extra run, p50 {:.0} ms added; a probe takes 2 extra runs, p50 {:.0} ms added",
        p50(cost[0].clone()),
        p50(cost[1].clone())
    );
    let rate = 0.05f64;
    println!(
        "at the default VERIFY_RATE {rate} and VERIFY_FIRST 3: a provider that cheats on every job is caught on its first; one that behaves for its first 3 jobs then cheats on every job serves 1/{rate} = {:.0} cheated jobs on average before it is caught (one that cheats on a share f of its jobs: 1/({rate} f))",
        1.0 / rate
    );
    drop((pa, pb, requester));
}
