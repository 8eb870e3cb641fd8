//! The agent's API over the mesh, through the official `ollama` and `openai` clients: a
//! provider's backend refusing the request reaches the agent at once with the status and
//! message that backend gave, and what the mesh path cannot carry is refused naming the
//! field, never dropped.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use crate::support::ollama::{agent, RealOllama, TestModel, TINY_MODEL};
use crate::support::{DaemonProc, MeshSimProc};

/// A chat through `client` (`ollama` or `openai`) at the requester, with `kwargs` added.
async fn call(requester: &DaemonProc, client: &str, stream: bool, kwargs: Value) -> Value {
    call_with(requester, client, stream, kwargs, None).await
}

async fn call_with(
    requester: &DaemonProc,
    client: &str,
    stream: bool,
    kwargs: Value,
    messages: Option<Value>,
) -> Value {
    let mut env = vec![
        ("CLIENT".to_string(), client.to_string()),
        ("EDGENT_URL".into(), requester.url.clone()),
        ("MODEL".into(), TINY_MODEL.into()),
        ("STREAM".into(), if stream { "1" } else { "0" }.into()),
        ("KWARGS".into(), kwargs.to_string()),
    ];
    if let Some(m) = messages {
        env.push(("MESSAGES".into(), m.to_string()));
    }
    agent("agent_call.py", env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_backend_refusal_reaches_the_agent_at_once_and_uncarried_fields_are_named() {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &ollama.url)],
        &[("EDGENT_OFFLOAD", "always")],
    )
    .await;

    // What the provider's Ollama itself answers a chat that asks a model without
    // thinking to think (under the full name the provider runs the model by).
    let direct = support::http()
        .post(format!("{}/api/chat", ollama.url))
        .json(
            &json!({"model": format!("{TINY_MODEL}:latest"), "think": true, "stream": false,
            "messages": [{"role": "user", "content": "hello edge mesh"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 400);
    let direct: Value = direct.json().await.unwrap();
    let refusal = direct["error"]
        .as_str()
        .expect("Ollama's error")
        .to_string();
    assert!(refusal.contains("does not support thinking"), "{refusal}");

    // Through the mesh the agent gets the same status and message, streamed or not, at
    // once: the provider failed the job and the requester tried nobody else.
    for stream in [false, true] {
        let got = call(&requester, "ollama", stream, json!({"think": true})).await;
        assert_eq!(got["status"], 400, "stream={stream}: {got}");
        assert_eq!(got["error"], refusal, "stream={stream}: {got}");
    }
    let jobs = requester.get("/jobs").await;
    let failed: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["side"] == "requester")
        .collect();
    assert_eq!(failed.len(), 2, "{jobs}");
    for j in &failed {
        assert_eq!(j["state"], "failed", "{j}");
        assert_eq!(j["error_code"], "bad_request", "{j}");
        assert_eq!(j["attempts"].as_array().map(Vec::len), Some(1), "{j}");
    }
    let job = failed[0]["job_id"].as_str().unwrap();
    let pjob = provider
        .job_in_state(job, "failed", Duration::from_secs(10))
        .await;
    assert_eq!(pjob["error_code"], "bad_request", "{pjob}");
    assert_eq!(
        ollama.requests_to("/api/chat"),
        3,
        "one direct, two through the mesh"
    );

    // What the mesh cannot carry is refused before anything is sent, naming the field.
    let tool = json!([{"type": "function", "function": {"name": "weather",
        "description": "the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    for client in ["ollama", "openai"] {
        let got = call(&requester, client, false, json!({ "tools": tool })).await;
        assert_eq!(got["status"], 400, "{client}: {got}");
        let msg = got["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("the mesh cannot carry tools"),
            "{client}: {got}"
        );
    }
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is in this picture"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]}]);
    let got = call_with(&requester, "openai", true, json!({}), Some(image)).await;
    assert_eq!(got["status"], 400, "{got}");
    let msg = got["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("messages[].content[].image_url"),
        "the refusal names the part: {got}"
    );
    assert_eq!(
        ollama.requests_to("/api/chat"),
        3,
        "nothing uncarried reached the provider"
    );

    // A request the mesh carries whole still runs there, through both clients.
    for client in ["ollama", "openai"] {
        let got = call(&requester, client, false, json!({})).await;
        assert!(
            got["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{client}: {got}"
        );
    }
    assert_eq!(ollama.requests_to("/api/chat"), 5);
}
