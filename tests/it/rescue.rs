//! User story: an answer whose runner dies mid-stream goes on. The local Ollama's runner
//! killed after some tokens reached the agent (as the kernel's out-of-memory killer kills
//! it), or a provider's daemon killed mid-answer: the agent reads one stream in its API's
//! format, the text before the break and then a provider's continuation, nothing twice and
//! nothing missing, and one last line. Paid, the provider that finished is paid its price
//! and the dead one's stake goes back to the requester after its deadline, every unit of
//! USDC accounted for.
//!
//! Real daemons over `edgent mesh-sim`, the real Ollama (Gemma 3 270M where the
//! continuation of a language model matters, the tiny generated model where speed does),
//! real kills of real processes, anvil for the paid story.

use std::time::Duration;

use edgent::chain::FairStatus;
use serde_json::{json, Value};

use crate::support::gemma::GEMMA_MODEL;
use crate::support::ollama::{RealOllama, TestModel, TINY_MODEL};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE};
use crate::support::{eventually, DaemonProc, MeshSimProc, Pair};
use edgent::harness::ollama_stub::{stub_output, StubBehaviour};

const WITHIN: Duration = Duration::from_secs(120);

/// Options under which the tiny model streams for seconds.
const LONG_STREAM: &str = r#"{"seed": 3, "temperature": 1.5, "top_k": 2, "num_predict": 5000}"#;

/// Heartbeats a minute apart (dead after two minutes, past every wait here): a provider
/// that dies mid-stream is noticed only by its stream's silence (`STREAM_DEAD_MS`, the
/// provider beating every 150 ms of a stream with no chunk), never by the job's beats.
const BEATS: [(&str, &str); 2] = [("HEARTBEAT_MS", "60000"), ("HEARTBEAT_MISSES", "2")];

/// An Ollama NDJSON stream read to its end.
struct Read {
    lines: Vec<Value>,
    /// The text the agent had when `at` ran.
    before: String,
}

/// Read `resp` to its end, handing each whole line (newline included) to `on_line`; the
/// stream must end with a whole line.
async fn each_line(resp: &mut reqwest::Response, mut on_line: impl FnMut(Vec<u8>)) {
    let mut buf = Vec::new();
    while let Some(bytes) = tokio::time::timeout(WITHIN, resp.chunk())
        .await
        .expect("the stream goes on or ends within two minutes")
        .expect("the stream does not break")
    {
        buf.extend_from_slice(&bytes);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            on_line(buf.drain(..=i).collect());
        }
    }
    assert!(buf.is_empty(), "the stream ends with a whole line");
}

/// Read `resp` to its end; `at` runs once, as soon as `n` lines carrying text arrived.
async fn read_ndjson(
    resp: &mut reqwest::Response,
    text_of: fn(&Value) -> &str,
    n: usize,
    mut at: impl FnMut(),
) -> Read {
    let (mut lines, mut before) = (Vec::new(), None);
    let mut with_text = 0;
    each_line(resp, |line| {
        let v: Value = serde_json::from_slice(&line).expect("each line is JSON");
        with_text += usize::from(!text_of(&v).is_empty());
        lines.push(v);
        if before.is_none() && with_text == n {
            before = Some(lines.iter().map(text_of).collect::<String>());
            at();
        }
    })
    .await;
    Read {
        lines,
        before: before.expect("the stream carried enough text"),
    }
}

fn generated(v: &Value) -> &str {
    v["response"].as_str().unwrap_or("")
}

/// The lines' text, and checks of the stream's shape: no error line, exactly one `done`
/// line, the last.
fn one_answer(lines: &[Value]) -> String {
    assert!(
        lines.iter().all(|l| l.get("error").is_none()),
        "no error line: {lines:?}"
    );
    let done: Vec<&Value> = lines.iter().filter(|l| l["done"] == true).collect();
    assert_eq!(done.len(), 1, "exactly one done line: {lines:?}");
    assert_eq!(lines.last().map(|l| &l["done"]), Some(&json!(true)));
    lines.iter().map(generated).collect()
}

/// The text before the break: `text` (what the agent read) must end with `continuation`
/// (the finisher's output) and what comes before it must start with `had` (what the agent
/// had when the runner was killed): nothing twice, nothing missing.
fn before_the_break<'a>(text: &'a str, continuation: &str, had: &str) -> &'a str {
    let before = text.strip_suffix(continuation).unwrap_or_else(|| {
        panic!("the text ends with the continuation: {text:?} / {continuation:?}")
    });
    assert!(before.starts_with(had), "{before:?} / {had:?}");
    before
}

/// The one job `provider` ran, once it ended `completed`.
async fn only_job(provider: &DaemonProc) -> Value {
    eventually("the provider's job completed", WITHIN, || async {
        let jobs = provider.get("/jobs").await;
        let jobs = jobs.as_array()?;
        assert!(jobs.len() <= 1, "one job at most: {jobs:?}");
        jobs.first().filter(|j| j["state"] == "completed").cloned()
    })
    .await
}

/// A requester whose own Ollama (mesh node 0) and a provider's (node 1) both serve Gemma 3
/// 270M (one digest): the local Ollama, the provider's, the mesh, their directory, the
/// provider and the requester, which knows the provider.
async fn local_and_provider() -> (
    RealOllama,
    RealOllama,
    MeshSimProc,
    tempfile::TempDir,
    DaemonProc,
    DaemonProc,
) {
    let local = RealOllama::with_gemma(&[]).await;
    let remote = RealOllama::with_gemma(&[]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let provider = DaemonProc::start(
        &dir.path().join("p"),
        &[
            ("AXL_API_URL", mesh.nodes[1].1.as_str()),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", remote.url.as_str()),
        ],
    )
    .await;
    let requester = DaemonProc::start(
        &dir.path().join("r"),
        &[
            ("AXL_API_URL", mesh.nodes[0].1.as_str()),
            ("EDGENT_ROLE", "requester"),
            ("OLLAMA_URL", local.url.as_str()),
            // Gemma on a busy machine of two cores may take a minute.
            ("DELEGATE_TIMEOUT_MS", "600000"),
        ],
    )
    .await;
    requester.knows_providers(&[&mesh.nodes[1].0], WITHIN).await;
    (local, remote, mesh, dir, provider, requester)
}

/// `body` posted to the requester's `path`: a stream its local Ollama answers.
async fn local_stream(requester: &DaemonProc, path: &str, body: &Value) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", requester.url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-edgent-ran-on"], "local");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_runner_killed_mid_stream_is_continued_by_a_provider() {
    let (local, remote, _mesh, _dir, provider, requester) = local_and_provider().await;

    let body = json!({
        "model": GEMMA_MODEL,
        "prompt": "Tell me a story about a lighthouse keeper and a storm.",
        "options": {"temperature": 0, "seed": 1, "num_predict": 40},
    });
    let mut resp = local_stream(&requester, "/api/generate", &body).await;
    // After 8 tokens reached the agent, the local runner is killed.
    let mut killed = Vec::new();
    let read = read_ndjson(&mut resp, generated, 8, || killed = local.kill_runners()).await;
    assert_eq!(killed.len(), 1, "one runner killed");
    assert!(
        local.runner_pids().iter().all(|p| !killed.contains(p)),
        "the runner is dead"
    );
    let text = one_answer(&read.lines);

    // The provider continued from the text the agent had: the whole text is the local
    // part, then the provider's output, nothing twice, nothing missing.
    let pjob = only_job(&provider).await;
    let continuation = pjob["output"].as_str().expect("output");
    assert!(!continuation.is_empty(), "{pjob}");
    let local_part = before_the_break(&text, continuation, &read.before);
    assert_eq!(
        remote.requests_to("/api/chat"),
        1,
        "the continuation is a chat"
    );
    // The last line counts the whole answer: the local tokens (one a line) and the
    // provider's.
    let local_lines = read
        .lines
        .iter()
        .scan(String::new(), |acc, l| {
            (acc.len() < local_part.len()).then(|| {
                acc.push_str(generated(l));
                !generated(l).is_empty()
            })
        })
        .filter(|t| *t)
        .count() as u64;
    assert!(local_lines >= 8, "{local_lines}");
    let provider_tokens = pjob["usage"]["completion_tokens"].as_u64().expect("tokens");
    let done = read.lines.last().unwrap();
    assert_eq!(
        done["eval_count"],
        json!(local_lines + provider_tokens),
        "{done}"
    );
    assert!(
        done["prompt_eval_count"].as_u64().is_some_and(|n| n > 0),
        "{done}"
    );
}

/// Two providers serving the tiny model through one real Ollama (mesh nodes 1 and 2) and a
/// requester that sends every request to the mesh (node 0), all on slow heartbeats
/// ([`BEATS`]); the requester knows both providers.
async fn two_providers() -> (
    RealOllama,
    MeshSimProc,
    tempfile::TempDir,
    Vec<DaemonProc>,
    DaemonProc,
) {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut providers = Vec::new();
    for i in 1..=2 {
        let mut env = vec![
            ("AXL_API_URL", mesh.nodes[i].1.as_str()),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", ollama.url.as_str()),
        ];
        env.extend(BEATS);
        providers.push(DaemonProc::start(&dir.path().join(format!("p{i}")), &env).await);
    }
    let mut env = vec![
        ("AXL_API_URL", mesh.nodes[0].1.as_str()),
        ("EDGENT_ROLE", "requester"),
        ("EDGENT_OFFLOAD", "always"),
        ("OLLAMA_URL", "http://127.0.0.1:9"),
        // A long answer on a loaded machine of two cores: the default 120 s deadline
        // passed once during .ci/run while the second provider was still writing.
        ("DELEGATE_TIMEOUT_MS", "600000"),
    ];
    env.extend(BEATS);
    let requester = DaemonProc::start(&dir.path().join("r"), &env).await;
    requester
        .knows_providers(&[&mesh.nodes[1].0, &mesh.nodes[2].0], WITHIN)
        .await;
    (ollama, mesh, dir, providers, requester)
}

/// Which of [`two_providers`]' providers streams `resp` (its `X-Edgent-Provider`), and
/// the other, as indexes into their list.
fn streaming_and_other(resp: &reqwest::Response, mesh: &MeshSimProc) -> (usize, usize) {
    let chosen = resp.headers()["x-edgent-provider"]
        .to_str()
        .unwrap()
        .to_string();
    let first = (1..=2)
        .find(|i| chosen.starts_with(&mesh.nodes[*i].0))
        .expect("the provider header names a provider");
    (first - 1, 2 - first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_stream_is_continued_by_the_next() {
    // Two providers serve the model through one real Ollama; the requester sends every
    // request to the mesh.
    let (ollama, mesh, _dir, mut providers, requester) = two_providers().await;

    let options: Value = serde_json::from_str(LONG_STREAM).unwrap();
    let mut resp = reqwest::Client::new()
        .post(format!("{}/api/generate", requester.url))
        .json(&json!({"model": TINY_MODEL, "prompt": "hello edge mesh", "options": options}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job = resp.headers()["x-edgent-job"].to_str().unwrap().to_string();
    let (dead, other) = streaming_and_other(&resp, &mesh);

    // After 3 lines of text reached the agent, the provider's daemon is killed.
    let read = read_ndjson(&mut resp, generated, 3, || providers[dead].kill()).await;
    let text = one_answer(&read.lines);

    // The other provider continued from the text the agent had.
    let ojob = only_job(&providers[other]).await;
    let continuation = ojob["output"].as_str().expect("output");
    assert!(!continuation.is_empty(), "{ojob}");
    before_the_break(&text, continuation, &read.before);
    assert_eq!(
        ollama.requests_to("/api/chat"),
        1,
        "the continuation is a chat"
    );
    let rjob = requester
        .job_in_state(&job, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(
        rjob["output"],
        json!(continuation),
        "the job's record is its attempt's output"
    );
    let attempts = rjob["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{rjob}");
    assert_eq!(attempts[0]["outcome"], "dead", "{rjob}");
    assert_eq!(attempts[1]["outcome"], "completed", "{rjob}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_stream_rescued_mid_way_pays_the_finisher_and_refunds_the_dead_stake() {
    let w = PaidWorld::of_nodes(3).await;
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    // Node 1 (the cheaper, tried first) and node 2 serve the tiny model; the requester
    // sends every generation to the mesh.
    let (requester, mut first) = w
        .start_with(
            &[
                ("EDGENT_OFFLOAD", "always"),
                ("OLLAMA_URL", "http://127.0.0.1:9"),
                BEATS[0],
                BEATS[1],
            ],
            &[("OLLAMA_URL", &ollama.url), BEATS[0], BEATS[1]],
        )
        .await;
    let mut env = w.second_provider_env(&ollama.url);
    env.push(("PRICE_USDC".into(), "0.02".into()));
    env.extend(BEATS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let second = DaemonProc::start_owned(&w.dir.path().join("second"), env).await;
    requester
        .knows_providers(&[&w.mesh.nodes[1].0, &w.mesh.nodes[2].0], WITHIN)
        .await;
    let second_wallet = w.wallet(crate::support::paid::SECOND_PROVIDER);
    let second_price = 2 * PRICE;

    let options: Value = serde_json::from_str(LONG_STREAM).unwrap();
    let mut resp = requester
        .request(reqwest::Method::POST, "/api/generate")
        .json(&json!({"model": TINY_MODEL, "prompt": "hello edge mesh", "options": options}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let dead_job = resp.headers()["x-edgent-job"].to_str().unwrap().to_string();
    assert!(resp.headers()["x-edgent-provider"]
        .to_str()
        .unwrap()
        .starts_with(&w.mesh.nodes[1].0));
    let read = read_ndjson(&mut resp, generated, 3, || first.kill()).await;
    let text = one_answer(&read.lines);

    // The second provider's part is a paid job of its own, proved and paid its price.
    let done = read.lines.last().unwrap();
    let served = done["edgent"]["job_id"]
        .as_str()
        .expect("a paid receipt")
        .to_string();
    assert_ne!(served, dead_job, "the continuation is a fresh job");
    assert_eq!(done["edgent"]["proof_verified"], true, "{done}");
    assert_eq!(
        done["edgent"]["payment"]["amount_units"], second_price,
        "{done}"
    );
    let pjob = payment_becomes(&second, &served, "released", WITHIN).await;
    let continuation = pjob["output"].as_str().expect("output");
    before_the_break(&text, continuation, &read.before);
    let rjob = payment_becomes(&requester, &served, "released", WITHIN).await;
    let stake = &rjob["attempts"][0]["stake"];
    assert_eq!(rjob["attempts"][0]["outcome"], "dead", "{rjob}");
    assert_eq!(stake["status"], "pending_refund", "{rjob}");
    let refund_after = stake["refund_after"].as_u64().expect("refund_after");

    // The dead provider submitted no result: it gets nothing, its stake is still locked.
    assert_eq!(w.stake_status(&dead_job).await, FairStatus::Staked);
    assert_eq!(w.stake_status(&served).await, FairStatus::Released);
    let (r, p1, e) = w.balances().await;
    let p2 = w.usdc_of(second_wallet).await;
    assert_eq!(
        (r, p1, p2, e),
        (FUND - PRICE - second_price, 0, second_price, PRICE)
    );
    // Past the stake's deadline, the requester's watcher takes it back.
    let now = w.requester_client().await.chain_time().await.unwrap();
    w.advance(refund_after.saturating_sub(now) + 5).await;
    payment_becomes(&requester, &dead_job, "refunded", WITHIN).await;
    assert_eq!(w.stake_status(&dead_job).await, FairStatus::Refunded);
    let (r, p1, e) = w.balances().await;
    let p2 = w.usdc_of(second_wallet).await;
    assert_eq!((r, p1, p2, e), (FUND - second_price, 0, second_price, 0));
    assert_eq!(r + p1 + p2 + e, FUND, "USDC conserved to the unit");
    w.assert_conserved_with(&[second_wallet], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_between_tokens_than_the_streams_silence_is_not_taken_for_dead() {
    // The provider's model waits 1.5 s before each piece, twice `STREAM_DEAD_MS` (750 ms):
    // only its stream heartbeats tell the requester it is alive.
    let p = Pair::with_stub(
        2,
        StubBehaviour {
            piece_delay: Duration::from_millis(1_500),
            ..StubBehaviour::default()
        },
    )
    .await;
    let body = p
        .requester
        .delegate_stream(json!({"model": "tinyllama", "prompt": "slow but alive", "stream": true}))
        .await;
    let jobs = p.requester.get("/jobs").await;
    let job = &jobs[0];
    assert_eq!(job["state"], "completed", "{body}\n{job}");
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts.len(),
        1,
        "one provider, never declared dead: {job}"
    );
    assert_eq!(attempts[0]["outcome"], "completed", "{job}");
    let want = stub_output("tinyllama:latest", "slow but alive");
    assert_eq!(job["output"], json!(want), "{job}");
    assert_eq!(p.backend.generate_calls(), 1, "the job ran once");
}

/// An OpenAI SSE stream read to its end: its chunks, whether `data: [DONE]` ended it, and
/// the text the agent had when `at` ran (after `n` chunks carrying text).
async fn read_sse(
    resp: &mut reqwest::Response,
    n: usize,
    mut at: impl FnMut(),
) -> (Vec<Value>, bool, String) {
    let (mut chunks, mut before, mut ended) = (Vec::new(), None, false);
    let text_of = |v: &Value| {
        v["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    each_line(resp, |line| {
        let line = String::from_utf8(line).unwrap();
        let Some(data) = line.trim().strip_prefix("data: ") else {
            assert!(line.trim().is_empty(), "{line:?}");
            return;
        };
        assert!(!ended, "nothing after data: [DONE]");
        if data == "[DONE]" {
            ended = true;
            return;
        }
        let v: Value = serde_json::from_str(data).expect("each event is JSON");
        chunks.push(v);
        let with_text = chunks.iter().filter(|c| !text_of(c).is_empty()).count();
        if before.is_none() && with_text == n {
            before = Some(chunks.iter().map(text_of).collect::<String>());
            at();
        }
    })
    .await;
    (
        chunks,
        ended,
        before.expect("the stream carried enough text"),
    )
}

/// The text of an OpenAI stream that is one answer: it ended with `data: [DONE]`, its chunks
/// carry no error and one `id`, and one of them a `finish_reason`.
fn one_openai_answer(chunks: &[Value], ended: bool) -> String {
    assert!(
        ended,
        "the stream ends with data: [DONE]: {:?}",
        &chunks[chunks.len().saturating_sub(3)..]
    );
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "{chunks:?}"
    );
    let ids: std::collections::BTreeSet<&str> =
        chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1, "{chunks:?}");
    chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_stream_is_continued_in_openais_stream_format() {
    let (_ollama, mesh, _dir, mut providers, requester) = two_providers().await;

    let mut resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", requester.url))
        .json(&json!({"model": TINY_MODEL, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello edge mesh"}],
            "seed": 3, "temperature": 1.5, "max_tokens": 5000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (dead, other) = streaming_and_other(&resp, &mesh);
    let (chunks, ended, at_kill) = read_sse(&mut resp, 3, || providers[dead].kill()).await;

    // One answer: chunks of one id, no error, one finish_reason, the usage, `[DONE]`.
    let text = one_openai_answer(&chunks, ended);
    let usage = &chunks.last().unwrap()["usage"];
    let ojob = only_job(&providers[other]).await;
    let continuation = ojob["output"].as_str().expect("output");
    before_the_break(&text, continuation, &at_kill);
    assert_eq!(
        usage["completion_tokens"], ojob["usage"]["completion_tokens"],
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_runner_killed_mid_openai_stream_is_continued_in_its_format() {
    let (local, remote, _mesh, _dir, provider, requester) = local_and_provider().await;
    let body = json!({"model": GEMMA_MODEL, "stream": true,
        "messages": [{"role": "user", "content": "Tell me a story about a lighthouse keeper and a storm."}],
        "seed": 1, "temperature": 0, "max_tokens": 40});
    let mut resp = local_stream(&requester, "/v1/chat/completions", &body).await;
    // After 8 chunks of text reached the agent, the local runner is killed.
    let mut killed = Vec::new();
    let (chunks, ended, at_kill) = read_sse(&mut resp, 8, || killed = local.kill_runners()).await;
    assert_eq!(killed.len(), 1, "one runner killed");

    // One answer in OpenAI's format: chunks of the local id, no error, one finish_reason,
    // `[DONE]`; the provider continued from the text the agent had.
    let text = one_openai_answer(&chunks, ended);
    let pjob = only_job(&provider).await;
    let continuation = pjob["output"].as_str().expect("output");
    assert!(!continuation.is_empty(), "{pjob}");
    before_the_break(&text, continuation, &at_kill);
    assert_eq!(
        remote.requests_to("/api/chat"),
        1,
        "the continuation is a chat"
    );
}
