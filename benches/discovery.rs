//! Discovery figures (`cargo bench --bench discovery`); prints figures, asserts nothing.
//!
//! 1. Choosing from a fresh ad cache, in process: 100 providers cached, the fresh ads for
//!    a model ranked ([`edgent::mesh::score::rank`]). Goal: ≤ 1 ms, no mesh round trip.
//! 2. Over `edgent mesh-sim` with real daemons (demo backend): `discover_ms` and `total_ms`
//!    of a delegation whose requester has just started with announcements off (cold: it
//!    broadcasts) and of delegations that follow (fresh cache).
//! 3. Mesh traffic at idle: 12 daemons (2 providers) on a 12-node full mesh (every node a
//!    direct peer of every other: the most announcements), messages sent per node per
//!    second over 60 s after a 15 s settle. Goal: ≤ 1.
//! 4. A hub-and-spoke mesh of 50 nodes (`mesh-sim --topology hubs:4 --real --time-scale
//!    0.1`: a hub, 4 sub-hubs, 45 spokes, the real node's timings scaled down), a daemon
//!    on each, 4 providers on spokes under different sub-hubs (demo backend); right after
//!    start, every other spoke delegates 3 times in a row, all spokes at once. Prints the
//!    success rate (goal 100%) and the p50 and p99 of a delegation, first ones apart.
//!
//! `cargo bench --bench discovery -- hub` runs only the sections named (`choice`, `cold`,
//! `idle`, `hub`); no name runs them all.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use edgent::axl::PeerKey;
use edgent::mesh::access::Access;
use edgent::mesh::score::{rank, Want};
use edgent::mesh::AdCache;
use edgent::protocol::{ModelOffer, ResourceAd};
use support::{DaemonProc, MeshSimProc};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A daemon attached to the mesh node whose API is `axl`, with `extra` settings; logs at
/// `warn` and the daemon's default discovery window (the tests' harness shortens it).
async fn daemon(dir: &Path, axl: &str, extra: &[(&str, &str)]) -> DaemonProc {
    let mut env = vec![
        ("AXL_API_URL", axl),
        ("RUST_LOG", "warn"),
        ("DISCOVERY_WINDOW_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    DaemonProc::start(dir, &env).await
}

async fn delegate(url: &str, model: &str) -> (u64, u64) {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/delegate"))
        .json(&serde_json::json!({"model": model, "prompt": "bench"}))
        .send()
        .await
        .expect("POST /delegate")
        .json()
        .await
        .expect("JSON");
    let t = &v["timings"];
    match (t["discover_ms"].as_u64(), t["total_ms"].as_u64()) {
        (Some(d), Some(total)) => (d, total),
        _ => panic!("delegation failed: {v}"),
    }
}

async fn messages_out(d: &DaemonProc) -> f64 {
    d.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("edgent_messages_out_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn fresh_cache_choice() {
    let cache = AdCache::default();
    for i in 0..100u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        key[4] = 0x80;
        let model = if i % 2 == 0 {
            "tinyllama:latest"
        } else {
            "llama3:8b"
        };
        cache.insert(
            ResourceAd {
                request_id: uuid::Uuid::nil(),
                node_id: PeerKey(key),
                ens: None,
                wallet: None,
                models: vec![model.into()],
                free_memory_mb: 8000 + u64::from(i),
                price: 10_000 + u64::from(i % 7),
                load: f64::from(i % 4) / 4.0,
                version: "bench".into(),
                model_info: vec![ModelOffer {
                    name: model.into(),
                    size_bytes: Some(637_700_138),
                    loaded: i % 3 == 0,
                    ..ModelOffer::default()
                }],
                slots: Some(4),
                queue: Some(0),
            },
            Duration::from_secs(600),
        );
    }
    let want = Want {
        model: "tinyllama",
        digest: None,
        max_price: 1_000_000,
        min_memory_mb: 0,
        paid: false,
        premium_cap_pct: 300,
        proven_after: 3,
        names: None,
    };
    let access = Access::default();
    let mut us = Vec::new();
    for _ in 0..10_000 {
        let t = Instant::now();
        let r = rank(cache.fresh_for("tinyllama"), &want, &access, |_| None);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.len(), 50);
    }
    println!(
        "choice from a fresh ad cache (100 providers, 50 serve the model): p50 {:.1} µs, p99 {:.1} µs (goal ≤ 1000 µs)",
        percentile(&mut us, 0.5),
        percentile(&mut us, 0.99)
    );
}

async fn cold_and_fresh() {
    let mesh = MeshSimProc::start(2, 0);
    let nodes = &mesh.nodes;
    let dir = tempfile::tempdir().expect("tempdir");
    let off = ("ANNOUNCE_INTERVAL_SECS", "0");
    let _provider = daemon(
        &dir.path().join("p"),
        &nodes[1].1,
        &[
            ("EDGENT_ROLE", "provider"),
            ("INFERENCE_BACKEND", "demo"),
            off,
        ],
    )
    .await;
    let model = edgent::inference::demo::DEMO_MODEL;
    let (mut cold_d, mut cold_t, mut fresh_d, mut fresh_t) = (vec![], vec![], vec![], vec![]);
    for run in 0..5 {
        let r = daemon(
            &dir.path().join(format!("r{run}")),
            &nodes[0].1,
            &[("EDGENT_ROLE", "requester"), off],
        )
        .await;
        let (d, t) = delegate(&r.url, model).await;
        cold_d.push(d as f64);
        cold_t.push(t as f64);
        for _ in 0..10 {
            let (d, t) = delegate(&r.url, model).await;
            fresh_d.push(d as f64);
            fresh_t.push(t as f64);
        }
        drop(r);
    }
    println!(
        "discovery cold (broadcast, 2-node mesh-sim): discover_ms p50 {} max {}; total_ms p50 {}",
        percentile(&mut cold_d, 0.5),
        percentile(&mut cold_d, 1.0),
        percentile(&mut cold_t, 0.5)
    );
    println!(
        "discovery from the fresh cache (same daemons): discover_ms p50 {} max {}; total_ms p50 {}",
        percentile(&mut fresh_d, 0.5),
        percentile(&mut fresh_d, 1.0),
        percentile(&mut fresh_t, 0.5)
    );
}

async fn idle_traffic() {
    const N: usize = 12;
    let mesh = MeshSimProc::start(N, 0);
    let nodes = &mesh.nodes;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemons = Vec::new();
    for (i, (_, axl)) in nodes.iter().enumerate() {
        let role = if i < 2 { "provider" } else { "requester" };
        daemons.push(
            daemon(
                &dir.path().join(format!("n{i}")),
                axl,
                &[("EDGENT_ROLE", role), ("INFERENCE_BACKEND", "demo")],
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut before = 0.0;
    for d in &daemons {
        before += messages_out(d).await;
    }
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let mut after = 0.0;
    for d in &daemons {
        after += messages_out(d).await;
    }
    let per_node = (after - before) / N as f64 / window.as_secs_f64();
    println!(
        "mesh traffic at idle ({N} daemons, full mesh, 2 providers): {:.0} messages in {} s, {per_node:.3} per node per second (goal ≤ 1)",
        after - before,
        window.as_secs()
    );
}

/// One delegation from `url`: whether it succeeded, and how long it took (ms).
async fn timed_delegation(http: &reqwest::Client, url: &str, model: &str) -> (bool, f64) {
    let t = Instant::now();
    let ok = match http
        .post(format!("{url}/delegate"))
        .json(&serde_json::json!({"model": model, "prompt": "spoke", "timeout_ms": 60000}))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    };
    (ok, t.elapsed().as_secs_f64() * 1e3)
}

async fn hub_and_spoke_50() {
    const N: usize = 50;
    const SUB_HUBS: usize = 4;
    const ROUNDS: usize = 3;
    let topology = format!("hubs:{SUB_HUBS}");
    let mesh = MeshSimProc::start_with(
        N,
        &["--topology", &topology, "--real", "--time-scale", "0.1"],
    );
    let nodes = &mesh.nodes;
    let dir = tempfile::tempdir().expect("tempdir");
    let spokes: Vec<usize> = (SUB_HUBS + 1..N).collect();
    let providers: Vec<usize> = spokes[..SUB_HUBS].to_vec();
    let mut daemons = Vec::new();
    for (i, (_, axl)) in nodes.iter().enumerate() {
        let role = if providers.contains(&i) {
            "provider"
        } else {
            "requester"
        };
        daemons.push(
            daemon(
                &dir.path().join(format!("n{i}")),
                axl,
                &[("EDGENT_ROLE", role), ("INFERENCE_BACKEND", "demo")],
            )
            .await,
        );
    }
    let model = edgent::inference::demo::DEMO_MODEL;
    let http = reqwest::Client::new();
    let runs = spokes.iter().filter(|i| !providers.contains(i)).map(|&i| {
        let (http, url) = (&http, daemons[i].url.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..ROUNDS {
                out.push(timed_delegation(http, &url, model).await);
            }
            out
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let requesters = results.len();
    let total = requesters * ROUNDS;
    let ok = results.iter().flatten().filter(|(ok, _)| *ok).count();
    let mut first: Vec<f64> = results.iter().map(|r| r[0].1).collect();
    let mut all: Vec<f64> = results.iter().flatten().map(|r| r.1).collect();
    let mut later: Vec<f64> = results
        .iter()
        .flat_map(|r| r[1..].iter().map(|x| x.1))
        .collect();
    println!(
        "hub-and-spoke, {N} nodes (hub, {SUB_HUBS} sub-hubs, {} spokes, {} providers; --real timings x0.1): {requesters} spokes x {ROUNDS} delegations, all spokes at once: {ok}/{total} succeeded ({:.1}%, goal 100%)",
        spokes.len(),
        providers.len(),
        100.0 * ok as f64 / total as f64
    );
    println!(
        "  every delegation: p50 {:.0} ms, p99 {:.0} ms; first of each spoke (right after start): p50 {:.0} ms, p99 {:.0} ms; later ones: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99),
        percentile(&mut first, 0.5),
        percentile(&mut first, 0.99),
        percentile(&mut later, 0.5),
        percentile(&mut later, 0.99)
    );
}

fn main() {
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |s: &str| names.is_empty() || names.iter().any(|n| n == s);
    if run("choice") {
        fresh_cache_choice();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if run("cold") {
        rt.block_on(cold_and_fresh());
    }
    if run("idle") {
        rt.block_on(idle_traffic());
    }
    if run("hub") {
        rt.block_on(hub_and_spoke_50());
    }
}
