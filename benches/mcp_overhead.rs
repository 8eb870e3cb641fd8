//! The time the MCP path adds over calling the daemon's HTTP API directly, side by side
//! in one run: `tools/call delegate` over stdio to `edgent mcp` (JSON-RPC lines, as a host
//! sends them) against `POST /delegate`, alternating, on one requester daemon with a
//! provider over `mesh-sim` and the Ollama API stub (zero-time inference). The same for
//! `status` against `GET /status`, which has no mesh in it and so shows the overhead alone.
//!
//! Run: `cargo bench --bench mcp_overhead` (prints figures; no assertions).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::{json, Value};
use support::MeshSimProc;

const ROUNDS: usize = 200;
const WARMUP: usize = 10;

/// `edgent mcp` spoken to as a host does: one JSON-RPC message per line.
struct McpStdio {
    child: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl McpStdio {
    fn start(api: &str) -> McpStdio {
        let mut child = Command::new(support::edgent_bin())
            .arg("mcp")
            .env("EDGENT_API_URL", api)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn edgent mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut m = McpStdio {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        m.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}),
        );
        m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).expect("json");
        line.push(b'\n');
        self.stdin.write_all(&line).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).expect("read") > 0,
                "edgent mcp closed"
            );
            let v: Value = serde_json::from_str(&line).expect("a JSON-RPC line");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{v}");
                return v["result"].clone();
            }
        }
    }

    fn call_tool(&mut self, name: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        assert_eq!(r["isError"], json!(false), "{r}");
        r
    }
}

impl Drop for McpStdio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    sorted[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
}

fn row(name: &str, mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{name:<34} n={:<4} mean={mean:>7.2} ms  p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99)
    );
    pct(&v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        ("OLLAMA_URL", ollama.url()),
        ("DISCOVERY_SETTLE_MS", "0".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (requester, _provider) = support::start_pair(&mesh, dir.path(), &extra, &extra).await;
    let api = requester.url.clone();
    let http = reqwest::Client::new();

    let mut mcp = tokio::task::block_in_place(|| McpStdio::start(&api));
    let body = json!({"model": "tinyllama", "prompt": "bench"});

    let mut direct = Vec::new();
    let mut over_mcp = Vec::new();
    let mut status_direct = Vec::new();
    let mut status_mcp = Vec::new();
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let r = http
            .post(format!("{api}/delegate"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let _: Value = r.json().await.unwrap();
        let d = t.elapsed();

        let t = Instant::now();
        tokio::task::block_in_place(|| mcp.call_tool("delegate", body.clone()));
        let m = t.elapsed();

        let t = Instant::now();
        let _: Value = http
            .get(format!("{api}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sd = t.elapsed();

        let t = Instant::now();
        tokio::task::block_in_place(|| mcp.call_tool("status", json!({})));
        let sm = t.elapsed();
        if i >= WARMUP {
            direct.push(ms(d));
            over_mcp.push(ms(m));
            status_direct.push(ms(sd));
            status_mcp.push(ms(sm));
        }
    }
    println!("MCP over stdio vs the HTTP API, {ROUNDS} alternating rounds (after {WARMUP} warm-up) (figures in ms):");
    let a = row("POST /delegate (direct)", direct);
    let b = row("tools/call delegate (edgent mcp)", over_mcp);
    let c = row("GET /status (direct)", status_direct);
    let d = row("tools/call status (edgent mcp)", status_mcp);
    println!(
        "added at p50: delegate {:+.2} ms, status {:+.2} ms (goal <= 2 ms)",
        b - a,
        d - c
    );
}
