//! User story: an agent on an MCP host delegates through edgent's MCP tools, with the
//! official MCP Python SDK as the host's client (`tests/python/mcp_client.py`):
//! over stdio against `edgent mcp`, and over streamable HTTP against the daemon's `/mcp`.
//!
//! The Python is the test venv ([`support::python::test_python`]: `EDGENT_TEST_PYTHON`,
//! else the venv `scripts/python-venv.sh` makes from tests/python/requirements.txt, as
//! scripts/test.sh does); without it, or without `mcp` in it, these tests fail: they never
//! skip.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use serde_json::{json, Value};

use crate::support;
use crate::support::ollama::{RealOllama, TestModel, TINY_MODEL};
use crate::support::Pair;

const MODEL: &str = "tinyllama";

/// The Python with the MCP SDK; panics (the test fails) when there is none.
fn python() -> PathBuf {
    let py = support::python::test_python();
    let ok = Command::new(&py)
        .args(["-c", "import mcp"])
        .status()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", py.display()));
    assert!(
        ok.success(),
        "{} has no `mcp` package: `pip install -r tests/python/requirements.txt`",
        py.display()
    );
    py
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_client.py")
}

/// Run one scenario of the Python client and parse what it printed.
async fn run_client(args: Vec<String>) -> Value {
    let py = python();
    tokio::task::spawn_blocking(move || {
        // In a process group of its own, so that a timeout ends what it started too.
        let mut child = support::group::own_group(&mut Command::new(&py))
            .arg(client_script())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the MCP client");
        let start = Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                support::group::kill_group(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("client output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "MCP client {args:?} failed ({}):\n{stderr}\n{stdout}",
            out.status
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("client output is not JSON ({e}):\n{stdout}\n{stderr}"))
    })
    .await
    .expect("client task")
}

/// A requester and a provider over `mesh-sim`, the provider's backend the Ollama stub.
async fn mesh(behaviour: StubBehaviour) -> Pair<OllamaStub> {
    Pair::with_stub(2, behaviour).await
}

/// The Python client's arguments for a stdio scenario: it spawns `edgent mcp` against the
/// daemon's API at `api` and delegates `prompt` to `model`; `extra` follows.
fn stdio_args(scenario: &str, api: &str, model: &str, prompt: &str, extra: &[&str]) -> Vec<String> {
    let edgent = support::edgent_bin().display().to_string();
    let common = [
        scenario, "--edgent", &edgent, "--api", api, "--model", model, "--prompt", prompt,
    ];
    common.iter().chain(extra).map(|a| a.to_string()).collect()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_lists_the_tools_delegates_and_reports_no_provider_as_a_tool_error() {
    let m = mesh(StubBehaviour::default()).await;
    let prompt = "what fits in eight gigabytes?";
    let out = run_client(stdio_args(
        "stdio",
        &m.requester.url,
        MODEL,
        prompt,
        &["--missing-model", "no-such-model:70b"],
    ))
    .await;

    // The four tools, each with an object schema and a description.
    let tools = out["tools"].as_object().expect("tools");
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["delegate", "jobs", "list_models", "status"]);
    for (name, t) in tools {
        assert_eq!(t["input_schema"]["type"], "object", "{name}: {t}");
        assert!(
            t["description"].as_str().is_some_and(|d| d.len() > 40),
            "{name} has no real description"
        );
    }
    let d = &tools["delegate"]["input_schema"];
    assert_eq!(d["required"], json!(["model"]), "{d}");
    for field in [
        "model",
        "prompt",
        "messages",
        "options",
        "max_price",
        "wait",
        "timeout_ms",
    ] {
        assert!(
            d["properties"][field].is_object(),
            "delegate lacks {field}: {d}"
        );
    }
    assert_eq!(
        tools["jobs"]["input_schema"]["properties"]["limit"]["type"],
        json!(["integer", "null"])
    );

    // delegate: the provider's output as text, the job and provider as structured content.
    let del = &out["delegate"];
    assert_eq!(del["is_error"], false, "{del}");
    let want = stub_output("tinyllama:latest", prompt);
    assert_eq!(del["text"], want.as_str());
    let st = &del["structured"];
    assert_eq!(st["output"], want.as_str());
    assert_eq!(st["provider"]["node_id"], m.mesh.nodes[1].0.as_str());
    let job_id = st["job_id"].as_str().expect("job id").to_string();
    assert!(st["timings"]["total_ms"].is_u64(), "{st}");
    let job = m.requester.job(&job_id).await.expect("the job in /jobs");
    assert_eq!(job["state"], "completed");
    assert_eq!(job["output"], want.as_str());
    assert!(
        m.provider.job(&job_id).await.is_some(),
        "the provider served it"
    );

    // Nobody serves the model: a tool result with isError and the API's code, not a
    // protocol error.
    let miss = &out["missing"];
    assert_eq!(miss["is_error"], true, "{miss}");
    assert!(
        miss["text"].as_str().unwrap().starts_with("no_provider: "),
        "{miss}"
    );
    assert_eq!(miss["structured"]["error"], "no_provider");
    assert_eq!(miss["structured"]["http_status"], 503);

    // jobs, status, list_models read the daemon.
    let jobs = out["jobs"]["structured"]["jobs"].as_array().expect("jobs");
    let listed = jobs
        .iter()
        .find(|j| j["job_id"] == job_id.as_str())
        .expect("the delegated job is listed");
    assert_eq!(listed["state"], "completed");
    assert!(out["jobs"]["text"].as_str().unwrap().contains(&job_id));
    assert_eq!(jobs[0]["error_code"], "no_provider", "newest first");
    assert_eq!(out["status"]["is_error"], false);
    assert_eq!(
        out["status"]["structured"]["node_id"],
        m.mesh.nodes[0].0.as_str()
    );
    assert_eq!(out["status"]["structured"]["role"], "requester");
    let models = out["list_models"]["structured"]["models"]
        .as_array()
        .expect("models");
    assert!(
        models.iter().any(|x| x["model"] == "tinyllama:latest"
            && x["node_id"] == m.mesh.nodes[1].0.as_str()
            && x["local"] == false),
        "the provider's model, seen on the mesh: {models:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_delegates_and_refuses_a_foreign_origin() {
    let m = mesh(StubBehaviour::default()).await;
    let url = format!("{}/mcp", m.requester.url);
    let prompt = "over http";
    let out = run_client(args(&[
        "http", "--url", &url, "--model", MODEL, "--prompt", prompt,
    ]))
    .await;
    assert_eq!(
        out["tools"],
        json!(["delegate", "jobs", "list_models", "status"])
    );
    let del = &out["delegate"];
    assert_eq!(del["is_error"], false, "{del}");
    assert_eq!(
        del["text"],
        stub_output("tinyllama:latest", prompt).as_str()
    );
    assert_eq!(
        del["structured"]["provider"]["node_id"],
        m.mesh.nodes[1].0.as_str()
    );
    let job_id = del["structured"]["job_id"].as_str().unwrap();
    assert_eq!(m.requester.job(job_id).await.unwrap()["state"], "completed");

    let out = run_client(args(&[
        "http-origin",
        "--url",
        &url,
        "--origin",
        "http://evil.example",
    ]))
    .await;
    assert_eq!(out["status"]["foreign"], 403, "{out}");
    assert_eq!(
        out["status"]["none"], 200,
        "the same request without the Origin: {out}"
    );
}

/// A requester and a provider over `mesh-sim`, the provider's backend the real Ollama
/// with the tiny model, which streams its answer token by token.
async fn ollama_mesh() -> Pair<RealOllama> {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let url = ollama.url.clone();
    Pair::start(2, ollama, &url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_progress_notifications_carry_the_answer_in_order_while_it_streams() {
    let m = ollama_mesh().await;
    let out = run_client(stdio_args(
        "stdio-stream",
        &m.requester.url,
        TINY_MODEL,
        "hello edge mesh",
        &["--num-predict", "300"],
    ))
    .await;
    let del = &out;
    assert_eq!(del["is_error"], false, "{del}");
    let progress = del["progress"].as_array().expect("progress");
    assert!(
        progress.len() >= 2,
        "{} progress notifications: {del}",
        progress.len()
    );
    // Numbered in the order they were sent, each carrying the next delta of the answer.
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().expect("a progress value"))
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress values do not increase: {values:?}"
    );
    let joined: String = progress
        .iter()
        .map(|p| p["message"].as_str().expect("a delta as the message"))
        .collect();
    assert_eq!(json!(joined), del["text"], "{del}");
    let job_id = del["structured"]["job_id"].as_str().expect("job id");
    let pjob = m
        .provider
        .job_in_state(job_id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(pjob["output"], json!(joined));
    assert_eq!(
        del["structured"]["provider"]["node_id"],
        m.mesh.nodes[1].0.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_a_cancelled_delegate_ends_the_providers_job_cancelled() {
    // A provider whose backend takes five minutes to answer (as a real Ollama loading a
    // big model does before its first token): the job is running when the call is
    // cancelled, and would still be running at the end of the client's 30 s watch had
    // the cancel not reached it.
    let m = mesh(StubBehaviour {
        delay: Duration::from_secs(300),
        ..StubBehaviour::default()
    })
    .await;
    let out = run_client(stdio_args(
        "stdio-cancel",
        &m.requester.url,
        MODEL,
        "take your time",
        &["--provider-api", &m.provider.url],
    ))
    .await;
    // The call was cancelled while the provider ran the job, not answered.
    assert_eq!(out["provider_job_running"], true, "{out}");
    assert_eq!(out["cancelled"], true, "{out}");
    assert!(out["result_before_cancel"].is_null(), "{out}");
    // With the MCP session still open, the provider's job ended cancelled.
    let pjob = &out["provider_job"];
    assert_eq!(pjob["state"], "cancelled", "{out}");
    assert_eq!(pjob["error_code"], "cancelled", "{out}");
    assert_eq!(out["status_after"]["is_error"], false, "{out}");
    // And so it stays, and the requester's job too.
    let job_id = pjob["job_id"].as_str().expect("job id");
    let pjob = m
        .provider
        .job_in_state(job_id, "cancelled", Duration::from_secs(30))
        .await;
    assert_eq!(pjob["error_code"], "cancelled", "{pjob}");
    let rjob = m
        .requester
        .job_in_state(job_id, "cancelled", Duration::from_secs(30))
        .await;
    assert_eq!(rjob["error_code"], "cancelled", "{rjob}");
}
