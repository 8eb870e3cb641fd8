//! User story: an agent that speaks Ollama's or OpenAI's API (the official Python clients)
//! points at edgent instead of Ollama and changes nothing else. When the local Ollama (a
//! real one, built by scripts/install-ollama.sh) runs the model, edgent is a transparent
//! proxy and nothing goes over the mesh; when it answers out-of-memory, the same request is
//! served by a provider over the mesh and comes back in the same format. And only the user
//! opens the door: foreign Host or Origin values get 403, a missing token 401 on the owner's
//! routes (tests/it/local_side.rs has the rest of the local side).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use crate::support::ollama::{
    agent, gguf_sha256, RealOllama, TestModel, HUGE_CONTEXT, HUGE_MODEL, TINY_MODEL,
};
use crate::support::{DaemonProc, MeshSimProc};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn joined(parts: &Value) -> String {
    parts
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p.as_str().unwrap_or(""))
        .collect()
}

/// The sum of the daemon's metric lines that start with `prefix`.
async fn metric(d: &DaemonProc, prefix: &str) -> f64 {
    let text = d.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Messages the daemon sent to the mesh, all types together.
async fn messages_out(d: &DaemonProc) -> f64 {
    metric(d, "edgent_messages_out_total").await
}

/// Options under which the tiny model streams for about two seconds (3,204 tokens until
/// its context is full, measured on the real Ollama): sampling from the two likeliest
/// tokens never repeats one long enough for Ollama's repeat limit, and seldom ends it.
const LONG_STREAM: &str = r#"{"seed": 3, "temperature": 1.5, "top_k": 2, "num_predict": 5000}"#;

/// A requester whose Ollama holds [`HUGE_MODEL`] but cannot run it (the real out-of-memory
/// error, under [`HUGE_CONTEXT`]), and a provider whose Ollama runs that very model (the
/// same digest) at a context that fits (2048, as the tiny model's).
struct OomPair {
    requester: DaemonProc,
    provider: DaemonProc,
    mesh: MeshSimProc,
    local: RealOllama,
    remote: RealOllama,
    _dir: tempfile::TempDir,
}

async fn oom_pair() -> OomPair {
    let local =
        RealOllama::start_with_env(&[(HUGE_MODEL, TestModel::HugeFile)], &[HUGE_CONTEXT]).await;
    let remote = RealOllama::start_with_env(
        &[(HUGE_MODEL, TestModel::HugeFile)],
        &[("OLLAMA_CONTEXT_LENGTH", "2048")],
    )
    .await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[
            ("OLLAMA_URL", &remote.url),
            ("EDGENT_ENS_NAME", "dell-g15.edgent.eth"),
        ],
        &[("OLLAMA_URL", &local.url)],
    )
    .await;
    OomPair {
        requester,
        provider,
        mesh,
        local,
        remote,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_served_over_the_mesh_in_each_apis_format() {
    // The agent's machine: its Ollama has only the model that does not fit. The provider's
    // Ollama serves a model of that name that does.
    let OomPair {
        requester,
        provider,
        mesh,
        local,
        remote,
        _dir,
    } = oom_pair().await;

    let cases = [
        ("agent_ollama.py", "generate", "1"),
        ("agent_ollama.py", "chat", "0"),
        ("agent_openai.py", "chat", "1"),
        ("agent_openai.py", "completions", "0"),
    ];
    for (script, api, stream) in cases {
        let got = agent(
            script,
            env(&[
                ("EDGENT_URL", &requester.url),
                ("MODEL", HUGE_MODEL),
                ("API", api),
                ("STREAM", stream),
            ]),
        )
        .await;
        let what = format!("{script} {api} stream={stream}: {got}");
        let h = &got["headers"];
        assert_eq!(h["x-edgent-ran-on"], "mesh", "{what}");
        let provider_header = h["x-edgent-provider"].as_str().expect("provider header");
        assert_eq!(
            provider_header,
            format!("{} dell-g15.edgent.eth (unverified)", mesh.nodes[1].0),
            "{what}"
        );
        let job = h["x-edgent-job"].as_str().expect("job header");
        let pjob = provider
            .job_in_state(job, "completed", Duration::from_secs(20))
            .await;
        let text = joined(&got["parts"]);
        assert!(!text.is_empty(), "{what}");
        assert_eq!(json!(text), pjob["output"], "{what}");
        if script == "agent_ollama.py" {
            assert_eq!(got["last"]["done"], true, "{what}");
        } else {
            assert_eq!(got["finish"], "stop", "{what}");
        }
        let rjob = requester.job(job).await.expect("requester job");
        assert_eq!(rjob["state"], "completed", "{what}");
        // Both sides record what was asked; a chat as its role-prefixed messages.
        let asked = if api == "chat" {
            "user: hello edge mesh"
        } else {
            "hello edge mesh"
        };
        assert_eq!(rjob["prompt"], asked, "{what}");
        assert_eq!(pjob["prompt"], asked, "{what}");
    }
    // The local Ollama really refused each request (500), and the provider's really ran them.
    let refused = local
        .log()
        .lines()
        .filter(|l| l.contains("[GIN]") && l.contains("| 500 |"))
        .count();
    assert_eq!(refused, 4, "{}", local.log());
    assert_eq!(
        remote.requests_to("/api/generate") + remote.requests_to("/api/chat"),
        4
    );

    // The mesh's model is listed once, by both APIs.
    let tags = requester.get("/api/tags").await;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with(HUGE_MODEL)).count(),
        1,
        "{tags}"
    );
    let models = requester.get("/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids.iter().filter(|n| n.starts_with(HUGE_MODEL)).count(),
        1,
        "{models}"
    );
}

/// The substitution of issue 22: the provider serves the tiny model under the name of the
/// model the agent's Ollama holds and cannot run. The front door pins the request to the
/// local model's digest, so the provider (whose model of that name has another digest) is
/// never tasked and the agent gets its Ollama's own out-of-memory answer; a delegation
/// pinned by name gets 503 saying why; a pin to the provider's own digest is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_under_anothers_name_is_never_chosen_when_pinned() {
    let local =
        RealOllama::start_with_env(&[(HUGE_MODEL, TestModel::HugeFile)], &[HUGE_CONTEXT]).await;
    let remote = RealOllama::start(&[(HUGE_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &remote.url)],
        &[("OLLAMA_URL", &local.url)],
    )
    .await;
    let full = format!("{HUGE_MODEL}:latest");
    // What each model is: the sha256 of the GGUF it was made from.
    let (held, served) = (gguf_sha256("huge.gguf"), gguf_sha256("tiny.gguf"));
    assert_ne!(held, served);

    // The provider's ad says what its model is.
    let offer = support::eventually("the provider's ad", Duration::from_secs(30), || async {
        let st = requester.get("/status").await;
        st["mesh_providers"][0]["models"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == json!(full))
            .cloned()
    })
    .await;
    // (As the provider's Ollama describes the generated model: 137K parameters, and a
    // quantization it names `unknown`.)
    assert_eq!(offer["digest"], json!(served), "{offer}");
    assert_eq!(offer["family"], "llama", "{offer}");
    assert_eq!(offer["parameter_size"], "137K", "{offer}");
    assert_eq!(offer["quantization"], "unknown", "{offer}");

    // The agent's Ollama holds the model and is out of memory: not served by the impostor.
    let http = support::http();
    let r = http
        .post(format!("{}/api/generate", requester.url))
        .json(
            &json!({"model": HUGE_MODEL, "prompt": "hello edge mesh", "stream": false,
            "options": {"seed": 7, "temperature": 0, "num_predict": 8}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-edgent-ran-on"], "local");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("model requires more system memory"),
        "{body}"
    );

    // Pinned by name: 503, and the answer names the digest and why nobody served it.
    let pinned = format!("{HUGE_MODEL}@sha256:{held}");
    let r = http
        .post(format!("{}/delegate", requester.url))
        .json(&json!({"model": pinned, "prompt": "hello edge mesh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let detail = body.to_string();
    assert!(detail.contains(&pinned), "{detail}");
    assert!(detail.contains("other_digest 1"), "{detail}");

    // Neither ever reached the provider.
    assert_eq!(remote.requests_to("/api/generate"), 0, "{}", remote.log());
    assert_eq!(provider.get("/jobs").await, json!([]));

    // Pinned (edgent's own field) to the digest the provider really serves: served.
    let r = http
        .post(format!("{}/api/generate", requester.url))
        .json(
            &json!({"model": HUGE_MODEL, "prompt": "hello edge mesh", "stream": false,
            "options": {"seed": 7, "temperature": 0, "num_predict": 8},
            "edgent": {"model_digest": format!("sha256:{served}")}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-edgent-ran-on"], "mesh");
    assert_eq!(remote.requests_to("/api/generate"), 1, "{}", remote.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_answer_streams_in_order_as_the_provider_generates() {
    let p = oom_pair().await;
    let got = agent(
        "agent_ollama.py",
        env(&[
            ("EDGENT_URL", &p.requester.url),
            ("MODEL", HUGE_MODEL),
            ("NUM_PREDICT", "400"),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().unwrap();
    let pjob = p
        .provider
        .job_in_state(job, "completed", Duration::from_secs(20))
        .await;
    // The deltas came as task_chunks, more than one, in order: together they are exactly
    // the provider's output, and the last line is Ollama's done line.
    let parts = got["parts"].as_array().unwrap();
    let chunks_in = metric(
        &p.requester,
        "edgent_messages_in_total{type=\"task_chunk\"}",
    )
    .await;
    let chunks_out = metric(
        &p.provider,
        "edgent_messages_out_total{type=\"task_chunk\"}",
    )
    .await;
    assert!(chunks_in >= 2.0, "{chunks_in} task_chunks for {parts:?}");
    assert_eq!(chunks_in, chunks_out);
    assert!(parts.len() >= 3, "{got}");
    assert_eq!(json!(joined(&got["parts"])), pjob["output"]);
    assert_eq!(got["last"]["done"], true);
    assert_eq!(
        got["last"]["eval_count"],
        pjob["usage"]["completion_tokens"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegate_streams_ndjson_deltas_then_the_whole_answer() {
    let p = oom_pair().await;
    let r = reqwest::Client::new()
        .post(format!("{}/delegate", p.requester.url))
        .json(&json!({
            "model": HUGE_MODEL, "prompt": "hello edge mesh", "stream": true,
            "options": {"seed": 7, "temperature": 0, "num_predict": 300},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let job = r.headers()["x-edgent-job"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, deltas) = lines.split_last().unwrap();
    assert!(deltas.len() >= 2, "{text}");
    let joined: String = deltas
        .iter()
        .map(|d| d["delta"].as_str().expect("a delta line"))
        .collect();
    assert_eq!(last["job_id"], json!(job));
    assert_eq!(last["output"], json!(joined));
    let pjob = p
        .provider
        .job_in_state(&job, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(pjob["output"], last["output"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_hangs_up_cancels_the_providers_job() {
    let p = oom_pair().await;
    let got = agent(
        "agent_hangup.py",
        env(&[
            ("EDGENT_URL", &p.requester.url),
            ("MODEL", HUGE_MODEL),
            ("LINES", "3"),
            ("OPTIONS", LONG_STREAM),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    assert_eq!(got["lines"].as_array().unwrap().len(), 3, "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().unwrap();
    // The provider stops: its job ends cancelled, and so does the requester's.
    let pjob = p
        .provider
        .job_in_state(job, "cancelled", Duration::from_secs(30))
        .await;
    assert_eq!(pjob["error_code"], "cancelled", "{pjob}");
    assert!(pjob["output"].is_null(), "{pjob}");
    let rjob = p
        .requester
        .job_in_state(job, "cancelled", Duration::from_secs(30))
        .await;
    assert_eq!(rjob["error_code"], "cancelled", "{rjob}");
    // Its Ollama's request ended (Gin logs a request when its handler returns), long
    // before the million tokens asked for.
    support::eventually(
        "the provider's Ollama request to end",
        Duration::from_secs(30),
        || async { (p.remote.requests_to("/api/generate") == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        metric(
            &p.requester,
            "edgent_messages_out_total{type=\"task_cancel\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fits_is_served_locally_without_mesh_traffic() {
    let local = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let ollama_port = support::free_port();
    let ollama_addr = format!("127.0.0.1:{ollama_port}");
    let daemon = DaemonProc::start(
        dir.path(),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_ROLE", "requester"),
            ("OLLAMA_URL", &local.url),
            ("EDGENT_OLLAMA_ADDR", &ollama_addr),
        ],
    )
    .await;

    // What the real Ollama answers directly, for the same request.
    let direct = agent(
        "agent_ollama.py",
        env(&[("EDGENT_URL", &local.url), ("MODEL", TINY_MODEL)]),
    )
    .await;
    assert!(!joined(&direct["parts"]).is_empty(), "{direct}");

    for url in [daemon.url.clone(), format!("http://{ollama_addr}")] {
        let got = agent(
            "agent_ollama.py",
            env(&[("EDGENT_URL", &url), ("MODEL", TINY_MODEL)]),
        )
        .await;
        assert_eq!(got["headers"]["x-edgent-ran-on"], "local", "{got}");
        assert!(got["headers"].get("x-edgent-job").is_none(), "{got}");
        assert_eq!(got["parts"], direct["parts"], "{got}");
        assert_eq!(got["last"]["done"], true);
        assert_eq!(got["last"]["eval_count"], direct["last"]["eval_count"]);

        let got = agent(
            "agent_openai.py",
            env(&[("EDGENT_URL", &url), ("MODEL", TINY_MODEL), ("STREAM", "1")]),
        )
        .await;
        assert_eq!(got["headers"]["x-edgent-ran-on"], "local", "{got}");
        assert!(!joined(&got["parts"]).is_empty(), "{got}");
    }
    assert_eq!(
        messages_out(&daemon).await,
        0.0,
        "nothing may go to the mesh"
    );
    // Each of the four answers is a `local` job, completed, with its time to first token;
    // `/jobs?since=` gives them once, then nothing.
    let all = daemon.get("/jobs?since=0").await;
    let jobs = all["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 4, "{all}");
    for j in jobs {
        assert_eq!(j["side"], "local", "{j}");
        assert_eq!(j["state"], "completed", "{j}");
        assert_eq!(j["model"], TINY_MODEL, "{j}");
        let (first, total) = (&j["timings"]["first_token_ms"], &j["timings"]["total_ms"]);
        assert!(first.as_u64().unwrap() <= total.as_u64().unwrap(), "{j}");
    }
    assert_eq!(all["truncated"], false);
    let next = daemon.get(&format!("/jobs?since={}", all["cursor"])).await;
    assert_eq!(next["jobs"], json!([]), "{next}");
    assert_eq!(next["cursor"], all["cursor"]);
    assert_eq!(daemon.get("/jobs").await.as_array().map(Vec::len), Some(4));

    // The Ollama-only address answers like Ollama at / and serves nothing of edgent's own.
    let http = reqwest::Client::new();
    let root = http
        .get(format!("http://{ollama_addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");
    let head = http
        .head(format!("http://{ollama_addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let delegate = http
        .post(format!("http://{ollama_addr}/delegate"))
        .json(&json!({"model": TINY_MODEL, "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(delegate.status(), 404);
    // The daemon's own / is still the dashboard.
    let dash = http.get(&daemon.url).send().await.unwrap();
    assert!(dash.text().await.unwrap().contains("<html"));
    let tags = daemon.get("/api/tags").await;
    assert_eq!(tags["models"][0]["name"], format!("{TINY_MODEL}:latest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProc::start(
        &dir.path().join("a"),
        &[
            ("AXL_API_URL", &mesh.nodes[0].1),
            ("EDGENT_API_TOKEN", "s3cret-token"),
            ("EDGENT_ORIGINS", "https://app.example"),
            // Nothing listens here: no request may get as far as the local Ollama.
            ("OLLAMA_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let auth = "Bearer s3cret-token";
    let body = json!({"model": "m", "prompt": "spend my USDC"});

    // DNS rebinding: a foreign Host, even with the token.
    for path in ["/delegate", "/api/generate", "/v1/chat/completions"] {
        let r = http
            .post(format!("{}{path}", daemon.url))
            .header("Host", "evil.example:8080")
            .header("Authorization", auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // A cross-origin page, even with the token.
    let r = http
        .post(format!("{}/delegate", daemon.url))
        .header("Origin", "https://evil.example")
        .header("Authorization", auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "forbidden");
    // No token (or a wrong one, as OpenAI's clients send their api_key): the model routes
    // serve unpaid work (docs/front-door.md), the owner's routes are 401.
    let r = http
        .get(format!("{}/api/tags", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/v1/models", daemon.url))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/jobs", daemon.url))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized", "{v}");
    let r = http
        .get(format!("{}/status", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // With the token, from an allowed origin: in.
    let r = http
        .get(format!("{}/status", daemon.url))
        .header("Authorization", auth)
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/api/tags", daemon.url))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The liveness probe stays open.
    let r = http
        .get(format!("{}/healthz", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A daemon on a non-loopback address without a token refuses to start.
    let out = std::process::Command::new(support::edgent_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDGENT_HTTP_ADDR", "0.0.0.0:0")
        .env("EDGENT_DATA_DIR", dir.path().join("b"))
        .env("EDGENT_PAYMENTS", "off")
        .env("AXL_SPAWN", "false")
        .env("AXL_API_URL", &mesh.nodes[0].1)
        .env("EDGENT_ENV_FILE", dir.path().join("no.env"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EDGENT_API_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_ollama_stops_early_is_answered_as_ollama_answers_it() {
    // Asked for a million tokens, the tiny model soon repeats one token; Ollama's runner
    // stops it after 30 repeats and closes the stream without its done line (v0.17.4,
    // llm/server.go). Its own stream:false answer is then the text so far, done: false.
    let p = oom_pair().await;
    let direct: Value = reqwest::Client::new()
        .post(format!("{}/api/generate", p.remote.url))
        .json(&json!({
            "model": HUGE_MODEL, "prompt": "hello edge mesh", "stream": false,
            "options": {"seed": 7, "temperature": 0, "num_predict": 1_000_000},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["done"], false, "Ollama stopped it early: {direct}");
    let want = direct["response"].as_str().unwrap().to_string();
    assert!(want.len() > 100, "{direct}");

    // Over the mesh the agent gets that same text, then a done line.
    let got = agent(
        "agent_ollama.py",
        env(&[
            ("EDGENT_URL", &p.requester.url),
            ("MODEL", HUGE_MODEL),
            ("NUM_PREDICT", "1000000"),
        ]),
    )
    .await;
    assert_eq!(got["headers"]["x-edgent-ran-on"], "mesh", "{got}");
    assert_eq!(joined(&got["parts"]), want);
    assert_eq!(got["last"]["done"], true, "{got}");
    let job = got["headers"]["x-edgent-job"].as_str().unwrap();
    let pjob = p
        .provider
        .job_in_state(job, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(pjob["output"], json!(want));
}
