//! Lean at rest and in flight (issue 23 item 6), two sections:
//!
//! - **idle**: `edgent mesh-sim --topology star` (node 0 the hub, 1 and 2 spokes) with a
//!   daemon on each (the hub and spoke 2 requesters, spoke 1 a provider on the demo
//!   backend), left alone for [`IDLE_WINDOW`] (`IDLE_SECS` to change) at rest, and again
//!   once asleep (quiet for the receive loop's `deep_rest_after`, 5 minutes: the whole
//!   section takes about 6.5 minutes). Per daemon: CPU
//!   time (utime + stime from `/proc/<pid>/stat`) as a share of one core, its `/recv`
//!   polls and its mesh sends per second (from `/sim/stats`). The daemon's own work while
//!   idle is the receive loop polling AXL's `/recv`, gossip and the provider's model
//!   refresh. Goal: at most 0.2% of one core.
//!   `IDLE_AXL_URLS` (three API URLs, comma-separated: a real AXL hub and two spokes
//!   peered to it) attaches the daemons to real AXL nodes instead (no poll and send
//!   counts then: those come from the sim).
//! - **stream**: one streamed `/api/generate` through a requester daemon
//!   (`EDGENT_OFFLOAD=always`) to a provider whose Ollama (the stub) streams a word every
//!   [`PIECE_DELAY`], far faster than the provider may send: the `task_chunk`s per second
//!   (goal at most 30), every mesh message of the job per second of stream, and the time to
//!   first token at the agent against the stub's own (the first chunk leaves at once);
//!   then the provider's CPU and `/recv` polls while its receive loop stays brisk (3 to
//!   10 s after the job) and warm (10 to 30 s after).
//!
//! Prints figures only (`cargo bench --bench idle_cpu [-- idle|stream]`); it asserts nothing.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use edgent::axl::recv::RecvLoopConfig;
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::{json, Value};
use support::{DaemonProc, MeshSimProc};

/// How long the daemons are left to settle after they answer `/healthz`.
const SETTLE: Duration = Duration::from_secs(5);
/// The measured idle window (`IDLE_SECS` overrides).
const IDLE_WINDOW: Duration = Duration::from_secs(60);
/// The stub's pace in the stream section: 200 words a second.
const PIECE_DELAY: Duration = Duration::from_millis(5);
/// Words in the streamed answer.
const WORDS: usize = 400;

/// Clock ticks per second, from `getconf CLK_TCK`.
fn clock_ticks() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("run getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK printed a number")
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = stat.rsplit_once(") ").expect("stat has a ')'").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Per-node counter `field` of `/sim/stats` (none without the sim).
async fn sim_counts(mesh: Option<&MeshSimProc>, field: &str) -> Vec<u64> {
    match mesh {
        Some(m) => m
            .stats()
            .await
            .iter()
            .map(|s| s[field].as_u64().unwrap_or(0))
            .collect(),
        None => Vec::new(),
    }
}

async fn idle(rt_label: &str) {
    let hz = clock_ticks();
    let window = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(IDLE_WINDOW, Duration::from_secs);
    let real: Option<Vec<String>> = std::env::var("IDLE_AXL_URLS")
        .ok()
        .map(|v| v.split(',').map(|u| u.trim().to_string()).collect());
    if let Some(urls) = &real {
        assert_eq!(urls.len(), 3, "IDLE_AXL_URLS: three URLs, hub first");
    }
    let mesh = real
        .is_none()
        .then(|| MeshSimProc::start_with(3, &["--topology", "star"]));
    let url = |i: usize| match (&real, &mesh) {
        (Some(urls), _) => urls[i].clone(),
        (None, Some(m)) => m.nodes[i].1.clone(),
        (None, None) => unreachable!("a mesh or URLs"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let roles = [
        ("hub", "requester"),
        ("spoke 1", "provider"),
        ("spoke 2", "requester"),
    ];
    let mut daemons = Vec::new();
    for (i, (_, role)) in roles.iter().enumerate() {
        daemons.push(
            DaemonProc::start(
                &dir.path().join(format!("n{i}")),
                &[
                    ("EDGENT_ROLE", role),
                    ("INFERENCE_BACKEND", "demo"),
                    ("AXL_API_URL", &url(i)),
                    ("RUST_LOG", "info"),
                ],
            )
            .await,
        );
    }
    let up = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let pids: Vec<u32> = daemons.iter().map(|d| d.pid().expect("runs")).collect();
    let on = if real.is_some() {
        "real AXL nodes"
    } else {
        "mesh-sim"
    };
    // At rest (the first minutes), then asleep (once the daemons were quiet for
    // `deep_rest_after`: no daemon here ever converses).
    let deep_after = RecvLoopConfig::default().deep_rest_after;
    for phase in ["at rest", "asleep"] {
        if phase == "asleep" {
            let until = up + deep_after + SETTLE;
            println!(
                "  (waiting {:.0} s more, for the receive loops' deep rest after {} s of quiet)",
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64(),
                deep_after.as_secs()
            );
            tokio::time::sleep_until(until.into()).await;
        }
        let d0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        let m0 = mesh.as_ref().map(|m| cpu_ticks(m.pid()));
        let (polls0, sent0) = (
            sim_counts(mesh.as_ref(), "recv_polls").await,
            sim_counts(mesh.as_ref(), "sent").await,
        );
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let elapsed = t0.elapsed().as_secs_f64();
        let d1: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        let m1 = mesh.as_ref().map(|m| cpu_ticks(m.pid()));
        let (polls1, sent1) = (
            sim_counts(mesh.as_ref(), "recv_polls").await,
            sim_counts(mesh.as_ref(), "sent").await,
        );

        let pct = |ticks: u64| (ticks as f64 / hz) / elapsed * 100.0;
        println!(
            "idle {phase}, hub and spoke ({on}, 3 daemons), {elapsed:.0} s, {rt_label} build, clock {hz} Hz:"
        );
        for (i, (name, role)) in roles.iter().enumerate() {
            let counts = if mesh.is_some() {
                format!(
                    ", /recv polls {:.1}/s, mesh sends {:.2}/s",
                    (polls1[i] - polls0[i]) as f64 / elapsed,
                    (sent1[i] - sent0[i]) as f64 / elapsed
                )
            } else {
                String::new()
            };
            println!(
                "  {name} ({role}): CPU {:.2}% of one core ({} ticks){counts}",
                pct(d1[i] - d0[i]),
                d1[i] - d0[i],
            );
        }
        let all: u64 = d1.iter().zip(&d0).map(|(a, b)| a - b).sum();
        println!(
            "  daemon idle CPU {phase}, mean of the three: {:.2}% of one core (goal <= 0.2%)",
            pct(all) / 3.0
        );
        if let (Some(m0), Some(m1)) = (m0, m1) {
            println!(
                "  harness (edgent mesh-sim, serving the polls): {:.2}% of one core",
                pct(m1 - m0)
            );
        }
        let per: Vec<String> = (0..3)
            .map(|i| format!("{:.2}%", pct(d1[i] - d0[i])))
            .collect();
        println!(
            "| daemon idle CPU {phase}, hub and spoke on {on}, {elapsed:.0} s: hub / provider spoke / requester spoke | {} of one core ({rt_label}) | <= 0.2% |",
            per.join(" / ")
        );
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

/// One streamed `/api/generate` at `url`: (time to first text, first text to done line,
/// text).
async fn stream_once(
    http: &reqwest::Client,
    url: &str,
    prompt: &str,
) -> (Duration, Duration, String) {
    let t0 = Instant::now();
    let mut r = http
        .post(format!("{url}/api/generate"))
        .json(&json!({"model": "tinyllama:latest", "prompt": prompt}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{url}");
    let (mut buf, mut text) = (Vec::new(), String::new());
    let (mut first, mut done) = (None, None);
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
                done = Some(now);
            }
        }
    }
    let first = first.expect("some text");
    (first - t0, done.expect("a done line") - first, text)
}

async fn stream(rt_label: &str) {
    let ollama = OllamaStub::start(StubBehaviour {
        piece_delay: PIECE_DELAY,
        ..StubBehaviour::default()
    })
    .await
    .expect("ollama stub");
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = DaemonProc::start(
        &dir.path().join("provider"),
        &[
            ("AXL_API_URL", &mesh.nodes[1].1),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", &ollama.url()),
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
    let prompt = (0..WORDS)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let direct = stream_once(&http, &ollama.url(), &prompt).await;
    // The first job finds the provider at rest (its loop polls every 80 ms at most).
    let cold = stream_once(&http, &requester.url, &prompt).await;
    assert_eq!(cold.2, direct.2, "the mesh's text differs");
    let direct = stream_once(&http, &ollama.url(), &prompt).await;
    let sent0 = sim_counts(Some(&mesh), "sent").await;
    let chunks0 = metric(
        &provider.metrics().await,
        "edgent_messages_out_total",
        "type=\"task_chunk\"",
    );
    let meshed = stream_once(&http, &requester.url, &prompt).await;
    assert_eq!(meshed.2, direct.2, "the mesh's text differs");
    // The job's last messages (the result's ack) may trail the done line a little.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent1 = sim_counts(Some(&mesh), "sent").await;
    let chunks = metric(
        &provider.metrics().await,
        "edgent_messages_out_total",
        "type=\"task_chunk\"",
    ) - chunks0;
    let all: u64 = sent1.iter().zip(&sent0).map(|(a, b)| a - b).sum();
    let secs = meshed.1.as_secs_f64();
    let added = (meshed.0.as_secs_f64() - direct.0.as_secs_f64()) * 1e3;
    println!(
        "stream: {WORDS} words, the stub's Ollama {:.0} words/s, {rt_label} build:",
        1.0 / PIECE_DELAY.as_secs_f64()
    );
    println!(
        "  task_chunk messages: {chunks:.0} over {:.2} s of stream at the agent = {:.1}/s (goal <= 30)",
        secs,
        chunks / secs
    );
    println!(
        "  every mesh message of the job (both nodes, task, acks, heartbeats, result): {all} = {:.1}/s of stream",
        all as f64 / secs
    );
    println!(
        "  time to first token: the stub directly {:.1} ms, through the mesh {:.1} ms (added {added:.1} ms); the first job, to a provider at rest, {:.1} ms",
        direct.0.as_secs_f64() * 1e3,
        meshed.0.as_secs_f64() * 1e3,
        cold.0.as_secs_f64() * 1e3,
    );
    println!(
        "| task_chunk per second of a stream the provider's Ollama makes at {:.0} words/s; first token added by the mesh (one stream) | {:.1}/s ({:.1} mesh messages/s in all); {added:.1} ms | <= 30/s; at once |",
        1.0 / PIECE_DELAY.as_secs_f64(),
        chunks / secs,
        all as f64 / secs,
    );
    // After the job, the provider's receive loop stays brisk (5 ms cap) up to 10 s after its
    // last conversation, then warm (50 ms) up to 30 s: what each costs while it lasts.
    let hz = clock_ticks();
    let last = Instant::now();
    let pid = provider.pid().expect("the provider runs");
    for (name, from, to) in [
        (
            "brisk (5 ms cap)",
            Duration::from_millis(3_500),
            Duration::from_millis(9_500),
        ),
        (
            "warm (50 ms cap)",
            Duration::from_millis(10_500),
            Duration::from_millis(29_500),
        ),
    ] {
        // The provider's CPU ticks and its node's `/recv` polls so far.
        let sample = || async {
            (
                cpu_ticks(pid),
                sim_counts(Some(&mesh), "recv_polls").await[1],
            )
        };
        tokio::time::sleep_until((last + from).into()).await;
        let (c0, p0) = sample().await;
        let t0 = Instant::now();
        tokio::time::sleep_until((last + to).into()).await;
        let secs = t0.elapsed().as_secs_f64();
        let (c1, p1) = sample().await;
        println!(
            "  the provider after the job, {name}, {:.1} s: {:.2}% of a core, {:.1} polls/s",
            secs,
            (c1 - c0) as f64 / hz / secs * 100.0,
            (p1 - p0) as f64 / secs
        );
    }
    drop(provider);
    drop(requester);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::args()
        .skip(1)
        .find(|a| a == "idle" || a == "stream");
    let label = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if only.as_deref() != Some("stream") {
        idle(label).await;
    }
    if only.as_deref() != Some("idle") {
        stream(label).await;
    }
}
