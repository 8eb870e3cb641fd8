//! The demo as an agent meets it (`edgent demo --agent-ollama URL`): the agent calls the
//! requester's Ollama API (`POST /api/generate`), the front door tries the requester's own
//! Ollama first, and when that fails (out of memory, the model missing, not reachable) the
//! daemon offloads the request over the mesh to the provider, paid as any delegation.
//! `scripts/demo-gemma.sh` runs it with the real Gemma 3 270M and the requester's own
//! Ollama under a memory limit it cannot load the model in: a real out-of-memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use super::{LocalNet, Steps};

/// How long the demo waits for the payment to settle after the answer.
const SETTLE_WAIT: Duration = Duration::from_secs(90);

/// Tokens the agent asks for: one or two sentences.
const NUM_PREDICT: u32 = 64;

/// The agent's call; returns whether it got an answer (and, when paid, the payment
/// settled).
pub(super) async fn call(
    net: &LocalNet,
    own: &str,
    prompt: &str,
    steps: &mut Steps,
) -> anyhow::Result<bool> {
    let url = &net.url;
    let model = &net.model;
    steps.say(&format!(
        "agent -> POST {url}/api/generate {{model: {model:?}, prompt: {prompt:?}}}: Ollama's own API on the requester, whose own Ollama is {own}"
    ));
    let http = reqwest::Client::new();
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/api/generate"))
        .json(&json!({
            "model": model,
            "prompt": prompt,
            "stream": false,
            "options": {"temperature": 0, "seed": 42, "num_predict": NUM_PREDICT},
        }))
        .send()
        .await
        .context("calling the requester's /api/generate")?;
    let status = resp.status();
    let header = |name: &axum::http::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (ran_on, job, provider) = (
        header(&crate::front::RAN_ON),
        header(&crate::front::JOB),
        header(&crate::front::PROVIDER),
    );
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let ms = started.elapsed().as_millis();
    if !status.is_success() {
        steps.say(&format!("the agent's call FAILED: HTTP {status}: {body}"));
        return Ok(false);
    }
    match ran_on.as_str() {
        "mesh" => steps.say(&format!(
            "the requester's own Ollama could not serve {model}; the daemon offloaded the request over the mesh (job {job}) to provider {provider}: answered in {ms} ms"
        )),
        _ => steps.say(&format!(
            "the requester's own Ollama served it ({ms} ms): nothing to offload (give it less memory to see the offload)"
        )),
    }
    let text = body["response"].as_str().unwrap_or("").trim().to_string();
    println!("    output: {}", text.replace('\n', "\n            "));
    if text.is_empty() {
        steps.say("the answer is EMPTY");
        return Ok(false);
    }
    let Some(chain) = net.chain.as_ref().filter(|_| ran_on == "mesh") else {
        return Ok(true);
    };
    let settled = wait_settled(&http, url).await;
    match &settled {
        Some((status, tx)) => steps.say(&format!(
            "the payment settled on the local chain: {status}, tx {tx}"
        )),
        None => steps.say(&format!(
            "the payment did not settle within {} s (see {url}/jobs)",
            SETTLE_WAIT.as_secs()
        )),
    }
    steps.say(&chain.balances().await);
    Ok(settled.is_some_and(|(s, _)| s == "released"))
}

/// Polls the requester's `/jobs` until its paid job's payment reached an end: its status
/// and transaction, or `None` when it did not within [`SETTLE_WAIT`].
async fn wait_settled(http: &reqwest::Client, url: &str) -> Option<(String, String)> {
    let deadline = Instant::now() + SETTLE_WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while Instant::now() < deadline {
        tick.tick().await;
        let Ok(resp) = http.get(format!("{url}/jobs?limit=20")).send().await else {
            continue;
        };
        let Ok(jobs) = resp.json::<Vec<Value>>().await else {
            continue;
        };
        let ended = jobs.iter().find_map(|j| {
            let pay = &j["payment"];
            let status = pay["status"].as_str()?;
            let end = ["released", "claimed", "refunded", "rejected", "unwound"];
            (j["side"] == "requester" && end.contains(&status)).then(|| {
                (
                    status.to_string(),
                    pay["tx_hash"].as_str().unwrap_or("?").to_string(),
                )
            })
        });
        if ended.is_some() {
            return ended;
        }
    }
    None
}
