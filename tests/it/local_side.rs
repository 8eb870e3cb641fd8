//! User story: only the node's owner spends its wallet. A page on another localhost port, a
//! `text/plain` "simple request", an oversized body and a caller without the API token are
//! each refused, in the error shape of the API they called; the official clients without
//! the token still do unpaid work, and with it (OpenAI's `api_key`) paid work; the
//! dashboard gets in with the token's cookie; error text, the AXL child's environment, the
//! data directory and the log keep the owner's secrets. (docs/front-door.md, "The local
//! side", lists each attack and the test here that holds it.)

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::ollama::{agent, RealOllama, TestModel, TINY_MODEL};
use crate::support::paid::{PaidWorld, FUND};
use crate::support::{edgent_bin, DaemonProc, MeshSimProc};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An unpaid daemon with an API token, whose local Ollama is `ollama_url`.
async fn tokened(dir: &std::path::Path, mesh: &MeshSimProc, ollama_url: &str) -> DaemonProc {
    DaemonProc::start(
        dir,
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_API_TOKEN", TOKEN),
            ("OLLAMA_URL", ollama_url),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_simple_requests_big_bodies_and_missing_tokens_are_refused() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens at the local Ollama: no request may get as far as it.
    let d = tokened(&dir.path().join("a"), &mesh, "http://127.0.0.1:9").await;
    let http = reqwest::Client::new();
    let body = json!({"model": "m", "prompt": "spend my USDC"});

    // A page on another localhost port (an Origin that is not the daemon's own), even with
    // the token: 403.
    for origin in ["http://127.0.0.1:5173", "http://localhost:3000"] {
        for path in ["/api/generate", "/v1/chat/completions", "/delegate"] {
            let r = d
                .request(reqwest::Method::POST, path)
                .header("Origin", origin)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{origin} {path}");
        }
    }
    // The daemon's own origin (the dashboard) gets in.
    let r = d
        .request(reqwest::Method::GET, "/status")
        .header("Origin", &d.url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A CORS simple request (text/plain, or a form) needs no preflight: 415, in each API's
    // own error shape.
    for (path, ct) in [
        ("/api/generate", "text/plain"),
        ("/api/chat", "application/x-www-form-urlencoded"),
        ("/v1/chat/completions", "text/plain;charset=UTF-8"),
        ("/delegate", "text/plain"),
    ] {
        let r = http
            .post(format!("{}{path}", d.url))
            .header("Content-Type", ct)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{path} {ct}");
        let v: Value = r.json().await.unwrap();
        match path {
            "/delegate" => assert_eq!(v["error"], "unsupported_media_type", "{v}"),
            p if p.starts_with("/v1/") => assert!(v["error"]["message"].is_string(), "{v}"),
            _ => assert!(v["error"].is_string(), "{v}"),
        }
    }

    // A body over the limit: 413, in each API's shape. Announced by its Content-Length (the
    // daemon answers before reading it, so the test sends only the header: a client still
    // sending would race the closing connection), and chunked (found while it is read; the
    // limit is passed by the last bytes, so all was sent by then).
    let limit = edgent::guard::MAX_BODY_BYTES;
    let big = format!(r#"{{"model":"m","prompt":"{}"}}"#, "x".repeat(limit));
    for path in ["/api/generate", "/v1/chat/completions"] {
        let (status, v) = announced_body(&d.url, path, limit + 1).await;
        assert_eq!(status, 413, "{path} Content-Length");
        assert_shape_413(path, &v);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
            .as_bytes()
            .chunks(1 << 20)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let r = http
            .post(format!("{}{path}", d.url))
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path} chunked");
        assert_shape_413(path, &r.json().await.unwrap());
    }

    // Without the token: the owner's routes are 401 (a wrong token too).
    for path in ["/status", "/jobs", "/metrics"] {
        let r = http.get(format!("{}{path}", d.url)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = http
            .get(format!("{}{path}", d.url))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = d.request(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The model routes are open to a loopback caller without it (unpaid work).
    let r = http
        .get(format!("{}/api/tags", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/v1/models", d.url))
        .bearer_auth("sk-an-openai-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A 413 body in the shape of the API `path` belongs to.
fn assert_shape_413(path: &str, v: &Value) {
    if path.starts_with("/v1/") {
        assert_eq!(v["error"]["type"], "payload_too_large", "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    } else {
        let text = v["error"].as_str().unwrap_or("");
        assert!(text.contains("larger than"), "{v}");
    }
}

/// POST `path` with a JSON Content-Length of `len` but no body; the answer's status and
/// JSON body (over a raw socket: an HTTP client would want to send the body).
async fn announced_body(base: &str, path: &str, len: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the daemon answers without waiting for the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_gets_in_with_the_tokens_cookie() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = tokened(&dir.path().join("a"), &mesh, "http://127.0.0.1:9").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/?token=wrong", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .get(format!("{}/?token={TOKEN}", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("edgent_token={TOKEN};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    for path in ["/status", "/jobs?limit=50"] {
        let r = http
            .get(format!("{}{path}", d.url))
            .header("Cookie", pair)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A write with the cookie from another origin is refused; without an Origin the cookie
    // is not the token (so a form cannot ride on it).
    let r = http
        .post(format!("{}/delegate", d.url))
        .header("Cookie", pair)
        .header("Origin", "http://127.0.0.1:5173")
        .json(&json!({"model": "m", "prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_clients_without_the_token_do_unpaid_work() {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = tokened(&dir.path().join("a"), &mesh, &ollama.url).await;
    // Ollama's client sends no token; OpenAI's sends its api_key ("unused" here).
    let got = agent(
        "agent_ollama.py",
        env(&[
            ("EDGENT_URL", &d.url),
            ("MODEL", TINY_MODEL),
            ("NUM_PREDICT", "8"),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "local", "{got}");
    let got = agent(
        "agent_openai.py",
        env(&[
            ("EDGENT_URL", &d.url),
            ("MODEL", TINY_MODEL),
            ("NUM_PREDICT", "8"),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "local", "{got}");
    assert!(!got["parts"].as_array().unwrap().is_empty(), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spending_needs_the_token_and_the_openai_client_sends_it() {
    let w = PaidWorld::new().await;
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let (requester, _provider) = w
        .start_with(
            &[
                ("EDGENT_OFFLOAD", "always"),
                ("OLLAMA_URL", "http://127.0.0.1:9"),
                ("EDGENT_API_TOKEN", TOKEN),
            ],
            &[("OLLAMA_URL", &ollama.url)],
        )
        .await;
    let http = reqwest::Client::new();
    let body = json!({"model": TINY_MODEL, "prompt": "spend", "stream": false});
    // No token, or OpenAI's placeholder key: refused before anything is staked, 401 in each
    // API's shape.
    for (path, auth) in [
        ("/api/generate", None),
        ("/delegate", None),
        ("/v1/completions", Some("unused")),
    ] {
        let mut req = http.post(format!("{}{path}", requester.url)).json(&body);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        let text = match path {
            "/delegate" => v["detail"].as_str(),
            p if p.starts_with("/v1/") => v["error"]["message"].as_str(),
            _ => v["error"].as_str(),
        };
        assert!(text.unwrap_or("").contains("API token"), "{path}: {v}");
    }
    assert_eq!(
        requester.get("/jobs").await,
        json!([]),
        "no job was started"
    );
    assert_eq!(w.balances().await, (FUND, 0, 0), "nothing was staked");
    // With the token as OpenAI's api_key: a paid answer over the mesh.
    let got = agent(
        "agent_openai.py",
        env(&[
            ("EDGENT_URL", &requester.url),
            ("MODEL", TINY_MODEL),
            ("NUM_PREDICT", "8"),
            ("EDGENT_API_TOKEN", TOKEN),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().expect("job header");
    let rec = requester.job(job).await.expect("the paid job");
    assert!(
        rec["payment"]["amount_units"].as_u64().unwrap() > 0,
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_key_in_a_url_does_not_leak_into_status() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProc::start(
        &dir.path().join("a"),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_PAYMENTS", "auto"),
            (
                "WALLET_PRIVATE_KEY",
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
            ),
            // Nothing listens: every chain call is a transport error quoting this URL.
            ("CHAIN_RPC_URL", "http://127.0.0.1:9/v2/SECRETRPCKEY"),
        ],
    )
    .await;
    let status = d.get("/status").await;
    let reason = status["payments"]["reason"].as_str().unwrap_or("");
    assert!(
        !reason.is_empty(),
        "payments are off for a reason: {status}"
    );
    let text = status.to_string();
    assert!(!text.contains("SECRETRPCKEY"), "{text}");
    // The log is the owner's: it may name the endpoint, but never in colour codes.
    assert!(
        !d.log().contains('\u{1b}'),
        "no ANSI escape in a log written to a file"
    );
}

#[test]
fn the_axl_child_gets_no_secret_and_the_data_dir_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh/data");
    let dump = dir.path().join("axl-env");
    let standin = dir.path().join("axl-standin");
    std::fs::write(
        &standin,
        format!(
            "#!/bin/sh\nenv > {}.tmp\nmv {0}.tmp {0}\nexec sleep 30\n",
            dump.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(
        &key_file,
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d\n",
    )
    .unwrap();
    let mut child = Command::new(edgent_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDGENT_ENV_FILE", dir.path().join("no.env"))
        .env("EDGENT_DATA_DIR", &data)
        .env("EDGENT_HTTP_ADDR", "127.0.0.1:0")
        .env("EDGENT_PAYMENTS", "off")
        .env("AXL_BIN", &standin)
        .env(
            "AXL_API_URL",
            format!("http://127.0.0.1:{}", crate::support::free_port()),
        )
        .env(
            "WALLET_PRIVATE_KEY",
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        )
        .env("OPERATOR_PRIVATE_KEY_PATH", &key_file)
        .env("KEEPERHUB_API_KEY", "kh_secret")
        .env("OPENAI_API_KEY", "sk-secret")
        .env("EDGENT_API_TOKEN", TOKEN)
        .env("EDGENT_HARMLESS_MARK", "kept")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dump.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the AXL stand-in never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("EDGENT_HARMLESS_MARK=kept"), "{seen}");
    for secret in [
        "WALLET_PRIVATE_KEY",
        "OPERATOR_PRIVATE_KEY_PATH",
        "KEEPERHUB_API_KEY",
        "OPENAI_API_KEY",
        "EDGENT_API_TOKEN",
        "ac0974bec",
        "kh_secret",
        "sk-secret",
        TOKEN,
    ] {
        assert!(
            !seen.contains(secret),
            "{secret} reached the AXL child:\n{seen}"
        );
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("jobs.sqlite")), 0o600, "the job store");
}
