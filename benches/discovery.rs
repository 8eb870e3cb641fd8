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

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgent::axl::PeerKey;
use edgent::mesh::access::Access;
use edgent::mesh::score::{rank, Want};
use edgent::mesh::AdCache;
use edgent::protocol::{ModelOffer, ResourceAd};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn mesh_sim(n: usize) -> (Proc, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgent"))
        .args(["mesh-sim", "--nodes", &n.to_string(), "--base-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mesh-sim");
    let out = child.stdout.take().expect("stdout");
    let mut nodes = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.expect("read");
        let f = |k: &str| {
            line.split(k)
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map(String::from)
        };
        if let (Some(id), Some(url)) = (f("id="), f("url=")) {
            nodes.push((id, url));
        }
        if nodes.len() == n {
            break;
        }
    }
    (Proc(child), nodes)
}

async fn daemon(dir: &std::path::Path, axl: &str, extra: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    std::fs::create_dir_all(dir).expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgent"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDGENT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("EDGENT_DATA_DIR", dir)
        .env("EDGENT_PAYMENTS", "off")
        .env("AXL_SPAWN", "false")
        .env("AXL_API_URL", axl)
        .env("EDGENT_ENV_FILE", dir.join("no.env"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = Proc(cmd.spawn().expect("spawn edgent run"));
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, url)
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

async fn messages_out(url: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
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
                }],
                slots: Some(4),
                queue: Some(0),
            },
            Duration::from_secs(600),
        );
    }
    let want = Want {
        model: "tinyllama",
        max_price: 1_000_000,
        min_memory_mb: 0,
        paid: false,
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
    let (_mesh, nodes) = mesh_sim(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let off = ("ANNOUNCE_INTERVAL_SECS", "0");
    let (_p, _) = daemon(
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
        let (r, url) = daemon(
            &dir.path().join(format!("r{run}")),
            &nodes[0].1,
            &[("EDGENT_ROLE", "requester"), off],
        )
        .await;
        let (d, t) = delegate(&url, model).await;
        cold_d.push(d as f64);
        cold_t.push(t as f64);
        for _ in 0..10 {
            let (d, t) = delegate(&url, model).await;
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
    let (_mesh, nodes) = mesh_sim(N);
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
    for (_, url) in &daemons {
        before += messages_out(url).await;
    }
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let mut after = 0.0;
    for (_, url) in &daemons {
        after += messages_out(url).await;
    }
    let per_node = (after - before) / N as f64 / window.as_secs_f64();
    println!(
        "mesh traffic at idle ({N} daemons, full mesh, 2 providers): {:.0} messages in {} s, {per_node:.3} per node per second (goal ≤ 1)",
        after - before,
        window.as_secs()
    );
}

fn main() {
    fresh_cache_choice();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(cold_and_fresh());
    rt.block_on(idle_traffic());
}
