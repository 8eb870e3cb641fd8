//! The front door's figures (issue 13's table), measured side by side in one run on real
//! parts: the real Ollama v0.17.4 (`scripts/install-ollama.sh`) with the tiny test model,
//! `edgent mesh-sim`, and `edgent run` daemons over real HTTP. The bench itself is the agent
//! (a streaming HTTP client reading NDJSON as it arrives).
//!
//! - **Local pass-through**: the same small generation from the real Ollama directly and
//!   through a requester daemon whose `OLLAMA_URL` is that Ollama, alternating; the added
//!   time at p50.
//! - **Streamed over the mesh**: a requester with `EDGENT_OFFLOAD=always` and a provider
//!   whose Ollama sits behind a measuring tap (an HTTP pass-through in this process that
//!   notes when each token line passes from Ollama to the provider). Time to first token
//!   at the agent beyond the provider's own (its Ollama's first token after its request);
//!   the delay of each delta (when the agent read a piece of text minus when its last
//!   token left the provider's Ollama), p99 over every delta; the mesh messages of both
//!   daemons per second of stream.
//! - **Out-of-memory fallback**: a requester whose local Ollama (behind a tap too) answers
//!   the huge model's real out-of-memory error; from that error passing the tap to the
//!   first token at the agent, less the provider's own time to first token and the
//!   discovery the job recorded (the ad cache answers it, so about 0).
//!
//! Run: `cargo bench --bench frontdoor` (prints figures; no assertions). Needs
//! `EDGENT_OLLAMA_BIN` and `EDGENT_TEST_PYTHON` as the tests do.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::ollama::{RealOllama, TestModel, HUGE_CONTEXT, HUGE_MODEL, TINY_MODEL};
use support::{DaemonProc, MeshSimProc};

const PASS_ROUNDS: usize = 200;
const STREAM_ROUNDS: usize = 40;
const WARMUP: usize = 5;

/// One request through a [`Tap`].
#[derive(Clone)]
struct Pass {
    path: String,
    status: u16,
    /// The request came in.
    t_in: Instant,
    /// The answer's head came back from Ollama.
    t_head: Instant,
    /// Each token line: when it passed, and the text's length so far (bytes).
    tokens: Vec<(Instant, usize)>,
}

/// A measuring pass-through in front of a real Ollama.
struct Tap {
    url: String,
    log: Arc<Mutex<Vec<Pass>>>,
}

struct TapState {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Pass>>>,
}

impl Tap {
    async fn start(upstream: &str) -> Tap {
        let log = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::new(TapState {
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            log: log.clone(),
        });
        let app = axum::Router::new().fallback(tap).with_state(st);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Tap { url, log }
    }

    /// The generations that came in after `t`.
    fn generations_since(&self, t: Instant) -> Vec<Pass> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.t_in >= t && (p.path == "/api/generate" || p.path == "/api/chat"))
            .cloned()
            .collect()
    }
}

async fn tap(
    State(st): State<Arc<TapState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t_in = Instant::now();
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let mut req = st
        .http
        .request(m, format!("{}{pq}", st.upstream))
        .body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        req = req.header(header::CONTENT_TYPE, ct.as_bytes());
    }
    let resp = req.send().await.unwrap();
    let t_head = Instant::now();
    let status = resp.status().as_u16();
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    let idx = {
        let mut log = st.log.lock().unwrap();
        log.push(Pass {
            path: uri.path().to_string(),
            status,
            t_in,
            t_head,
            tokens: Vec::new(),
        });
        log.len() - 1
    };
    let log = st.log.clone();
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let stream = resp.bytes_stream().map(move |chunk| {
        let now = Instant::now();
        if let Ok(b) = &chunk {
            buf.extend_from_slice(b);
            while let Some(pos) = buf.iter().position(|c| *c == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                total += text_of(&line).len();
                if !text_of(&line).is_empty() {
                    log.lock().unwrap()[idx].tokens.push((now, total));
                }
            }
        }
        chunk
    });
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
    if let Some(ct) = ct {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

/// The text of one NDJSON line of Ollama's generate or chat stream.
fn text_of(line: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return String::new();
    };
    v["response"]
        .as_str()
        .or(v["message"]["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// One streamed generation as the agent saw it.
struct AgentRun {
    t0: Instant,
    /// Each text delta: when it was read, and the text's length so far.
    deltas: Vec<(Instant, usize)>,
    end: Instant,
    job: Option<String>,
    done: bool,
}

async fn stream_generate(http: &reqwest::Client, url: &str, model: &str, opts: Value) -> AgentRun {
    let t0 = Instant::now();
    let mut r = http
        .post(format!("{url}/api/generate"))
        .json(&json!({"model": model, "prompt": "hello edge mesh", "options": opts}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let job = r
        .headers()
        .get("x-edgent-job")
        .map(|v| v.to_str().unwrap().to_string());
    let mut buf: Vec<u8> = Vec::new();
    let mut deltas = Vec::new();
    let mut total = 0usize;
    let mut done = false;
    while let Some(b) = r.chunk().await.unwrap() {
        let now = Instant::now();
        buf.extend_from_slice(&b);
        while let Some(pos) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            done |= v["done"] == true;
            let t = text_of(&line);
            if !t.is_empty() {
                total += t.len();
                deltas.push((now, total));
            }
        }
    }
    AgentRun {
        t0,
        deltas,
        end: Instant::now(),
        job,
        done,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn since(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        ms(later - earlier)
    } else {
        -ms(earlier - later)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    sorted[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
}

fn row(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "  {name:<44} n={:<5} mean={mean:>8.2}  p50={:>8.2}  p90={:>8.2}  p99={:>8.2}  max={:>8.2} ms",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        v[v.len() - 1],
    );
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// Sum of a daemon's metric lines starting with `prefix`.
async fn metric(d: &DaemonProc, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", d.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn mesh_out(ds: &[&DaemonProc], prefix: &str) -> f64 {
    let mut n = 0.0;
    for d in ds {
        n += metric(d, prefix).await;
    }
    n
}

/// Wait until `d` has the provider's ad cached (an announcement came).
async fn await_provider(d: &DaemonProc) {
    support::eventually("the provider's ad", Duration::from_secs(60), || async {
        let st = d.get("/status").await;
        let n = st["mesh_providers"].as_array().map_or(0, |a| a.len());
        (n > 0).then_some(())
    })
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The agent's machine: its Ollama runs the tiny model and refuses the huge one with
    // the real out-of-memory error. The provider's runs both, the huge one (the very same
    // model: the out-of-memory fallback asks for its digest) at a context that fits.
    let local = RealOllama::start_with_env(
        &[
            (TINY_MODEL, TestModel::Tiny),
            (HUGE_MODEL, TestModel::HugeFile),
        ],
        &[HUGE_CONTEXT],
    )
    .await;
    let remote = RealOllama::start_with_env(
        &[
            (TINY_MODEL, TestModel::Tiny),
            (HUGE_MODEL, TestModel::HugeFile),
        ],
        &[("OLLAMA_CONTEXT_LENGTH", "2048")],
    )
    .await;
    let local_tap = Tap::start(&local.url).await;
    let remote_tap = Tap::start(&remote.url).await;
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().unwrap();
    let node = |i: usize| mesh.nodes[i].1.clone();
    let provider = DaemonProc::start(
        &dir.path().join("provider"),
        &[
            ("AXL_API_URL", &node(0)),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", &remote_tap.url),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let requester = |i: usize, name: &'static str, ollama: String, offload: &'static str| {
        let dir = dir.path().join(name);
        let axl = node(i);
        async move {
            DaemonProc::start(
                &dir,
                &[
                    ("AXL_API_URL", &axl),
                    ("EDGENT_ROLE", "requester"),
                    ("OLLAMA_URL", &ollama),
                    ("EDGENT_OFFLOAD", offload),
                    ("RUST_LOG", "warn"),
                ],
            )
            .await
        }
    };
    let passthrough = requester(1, "passthrough", local.url.clone(), "oom").await;
    let always = requester(2, "always", "http://127.0.0.1:9".into(), "always").await;
    let oom = requester(3, "oom", local_tap.url.clone(), "oom").await;
    await_provider(&always).await;
    await_provider(&oom).await;
    let http = reqwest::Client::new();
    println!(
        "front door bench: real Ollama v0.17.4, tiny model ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // 1. Local pass-through.
    let small = json!({"seed": 7, "temperature": 0, "num_predict": 8});
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + PASS_ROUNDS {
        let order = if i % 2 == 0 {
            [&local.url, &passthrough.url]
        } else {
            [&passthrough.url, &local.url]
        };
        for url in order {
            let r = stream_generate(&http, url, TINY_MODEL, small.clone()).await;
            assert!(r.done);
            if i >= WARMUP {
                let t = since(r.end, r.t0);
                if url == &local.url {
                    direct.push(t);
                } else {
                    through.push(t);
                }
            }
        }
    }
    println!("local pass-through (stream of 8 tokens, to the done line):");
    let (d50, _) = row("Ollama directly", direct);
    let (t50, _) = row("through edgent", through);
    let added_pass = t50 - d50;

    // 2. Streamed over the mesh.
    let (mut ttft_beyond, mut delays, mut per_sec, mut chunks_per_sec) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut provider_ttft = Vec::new();
    let (mut all_msgs, mut all_secs) = (0.0, 0.0);
    for i in 0..WARMUP + STREAM_ROUNDS {
        let opts = json!({"seed": i, "temperature": 1.5, "top_k": 2, "num_predict": 600});
        let before = mesh_out(&[&always, &provider], "edgent_messages_out_total").await;
        let chunks_before =
            metric(&provider, "edgent_messages_out_total{type=\"task_chunk\"}").await;
        let run = stream_generate(&http, &always.url, TINY_MODEL, opts).await;
        assert!(run.done && run.job.is_some());
        // The provider's last messages (the result's ack) may trail the done line a little.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = mesh_out(&[&always, &provider], "edgent_messages_out_total").await;
        let chunks = metric(&provider, "edgent_messages_out_total{type=\"task_chunk\"}").await
            - chunks_before;
        let passes = remote_tap.generations_since(run.t0);
        assert_eq!(passes.len(), 1);
        let p = &passes[0];
        if i < WARMUP || p.tokens.is_empty() || run.deltas.is_empty() {
            continue;
        }
        let own = since(p.tokens[0].0, p.t_in);
        provider_ttft.push(own);
        ttft_beyond.push(since(run.deltas[0].0, run.t0) - own);
        for (t, len) in &run.deltas {
            if let Some((tp, _)) = p.tokens.iter().find(|(_, l)| l >= len) {
                delays.push(since(*t, *tp));
            }
        }
        let secs = (run.end - run.t0).as_secs_f64();
        per_sec.push((after - before) / secs);
        chunks_per_sec.push(chunks / secs);
        all_msgs += after - before;
        all_secs += secs;
    }
    println!("streamed over mesh-sim (600 tokens at most, real Ollama on the provider):");
    row("provider's own time to first token", provider_ttft);
    let (ttft50, ttft99) = row("time to first token beyond the provider's", ttft_beyond);
    let (delay50, delay99) = row("delay of each delta", delays);
    println!("  (messages per second of stream: n, mean, p50, p90, p99, max)");
    let (msgs50, msgs99) = row("mesh messages, both daemons", per_sec);
    let (chunks50, _) = row("of which task_chunk", chunks_per_sec);
    let overall = all_msgs / all_secs;
    println!("  all streams together: {all_msgs} messages in {all_secs:.2} s of stream = {overall:.1} a second");

    // 3. Out-of-memory fallback.
    let mut fallback = Vec::new();
    let mut raw = Vec::new();
    let mut discover = Vec::new();
    for i in 0..WARMUP + STREAM_ROUNDS {
        let opts = json!({"seed": 7, "temperature": 0, "num_predict": 16});
        let run = stream_generate(&http, &oom.url, HUGE_MODEL, opts).await;
        assert!(run.done);
        let errs = local_tap.generations_since(run.t0);
        assert!(errs.len() == 1 && errs[0].status == 500);
        let passes = remote_tap.generations_since(run.t0);
        assert_eq!(passes.len(), 1);
        let p = &passes[0];
        let job = run.job.clone().unwrap();
        let rec = oom.job(&job).await.unwrap();
        if i < WARMUP || p.tokens.is_empty() || run.deltas.is_empty() {
            continue;
        }
        let d = rec["timings"]["discover_ms"].as_f64().unwrap_or(0.0);
        let own = since(p.tokens[0].0, p.t_in);
        let from_err = since(run.deltas[0].0, errs[0].t_head);
        raw.push(from_err);
        discover.push(d);
        fallback.push(from_err - own - d);
    }
    println!("out-of-memory fallback (the real 500 of the local Ollama, then the mesh):");
    row("local error -> first token at the agent", raw);
    row("discovery recorded by the job", discover);
    let (fb50, fb99) = row("the same, less the provider's TTFT and discovery", fallback);

    println!();
    println!("| figure | measured | goal |");
    println!("|---|---|---|");
    println!("| local pass-through: added time, real Ollama directly vs through edgent, tiny model | {added_pass:.2} ms at p50 | ≤ 1 ms at p50 |");
    println!("| streamed over the mesh (mesh-sim, real Ollama on the provider): time to first token, beyond the provider's own | {ttft50:.2} ms at p50 ({ttft99:.2} ms at p99) | ≤ 5 ms |");
    println!("| the same: delay of each delta | {delay99:.2} ms at p99 ({delay50:.2} ms at p50) | ≤ 25 ms at p99 |");
    println!("| the same: AXL messages per stream | {overall:.1} a second over all streams; per stream {msgs50:.1} at p50, {msgs99:.1} at p99 (the short ones: a fixed dozen messages over a fraction of a second); task_chunk {chunks50:.1} at p50 | ≤ 50 a second |");
    println!("| out-of-memory fallback: from the local error to the first token from the mesh, beyond discovery | {fb50:.2} ms at p50 ({fb99:.2} ms at p99) | ≤ 20 ms |");
}
