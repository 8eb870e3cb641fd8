//! The agent's API over the mesh, through the official `ollama` and `openai` clients: a
//! provider's backend refusing the request reaches the agent at once with the status and
//! message that backend gave, and what the mesh path cannot carry is refused naming the
//! field, never dropped.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use crate::support::ollama::{agent, RealOllama, TestModel, TINY_MODEL, TOOLS_MODEL};
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

    // Tools travel: the provider's Ollama refuses them for a model without tool support,
    // and the agent hears that refusal at once, as from its own Ollama.
    let tool = json!([{"type": "function", "function": {"name": "weather",
        "description": "the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    for client in ["ollama", "openai"] {
        let got = call(&requester, client, false, json!({ "tools": tool })).await;
        assert_eq!(got["status"], 400, "{client}: {got}");
        let msg = got["error"].as_str().unwrap_or_default();
        assert!(msg.contains("does not support tools"), "{client}: {got}");
    }
    assert_eq!(
        ollama.requests_to("/api/chat"),
        5,
        "the tools reached the provider"
    );
    // What the mesh cannot carry is refused before anything is sent, naming the field.
    let got = call(
        &requester,
        "openai",
        false,
        json!({"tool_choice": "required", "n": 2}),
    )
    .await;
    assert_eq!(got["status"], 400, "{got}");
    let msg = got["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("the mesh cannot carry tool_choice, n yet"),
        "{got}"
    );
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is in this picture"},
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]}]);
    let got = call_with(&requester, "openai", true, json!({}), Some(image)).await;
    assert_eq!(got["status"], 400, "{got}");
    let msg = got["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("messages[].content[].image_url"),
        "the refusal names the part (an image by URL, not data): {got}"
    );
    assert_eq!(
        ollama.requests_to("/api/chat"),
        5,
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
    assert_eq!(ollama.requests_to("/api/chat"), 7);
}

/// The JSON schema that makes the tiny tools model write one call of `get_weather`.
pub(crate) const TOOL_SCHEMA: &str = r#"{"type":"object","properties":{"name":{"enum":["get_weather"]},"arguments":{"type":"object","properties":{"city":{"enum":["Paris"]}},"required":["city"]}},"required":["name","arguments"]}"#;

/// The tool's answer the agent sends back.
const TOOL_RESULT: &str = "sunny, 21 C";

/// One case of tests/python/agent_api.py through `client` at `url`.
async fn api_case(url: &str, client: &str, stream: bool, case: &str) -> Value {
    let env = [
        ("CLIENT", client),
        ("EDGENT_URL", url),
        ("MODEL", TOOLS_MODEL),
        ("STREAM", if stream { "1" } else { "0" }),
        ("CASE", case),
        ("TOOL_SCHEMA", TOOL_SCHEMA),
        ("TOOL_RESULT", TOOL_RESULT),
    ];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    agent("agent_api.py", env.collect()).await
}

/// The provider's own Ollama's answer to a chat (`stream: false`), under the name it runs
/// the model by.
async fn direct(ollama: &RealOllama, path: &str, mut body: Value) -> Value {
    body["model"] = json!(format!("{TOOLS_MODEL}:latest"));
    body["stream"] = json!(false);
    let r = support::http()
        .post(format!("{}{path}", ollama.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

const OPTIONS: fn(u64) -> Value = |n| json!({"seed": 7, "temperature": 0, "num_predict": n});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_tools_and_images_travel_through_both_official_clients() {
    let ollama = RealOllama::start(&[(TOOLS_MODEL, TestModel::Tools)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, _provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &ollama.url)],
        &[("EDGENT_OFFLOAD", "always")],
    )
    .await;
    let hello = json!([{"role": "user", "content": "hello edge mesh"}]);
    let json_mode = direct(
        &ollama,
        "/api/chat",
        json!({"messages": hello, "format": "json", "options": OPTIONS(300)}),
    )
    .await;
    let json_text = json_mode["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let seen = direct(
        &ollama,
        "/api/chat",
        json!({"options": OPTIONS(8),
        "messages": [{"role": "user", "content": "what is this", "images": [png]}]}),
    )
    .await;
    let unseen = direct(
        &ollama,
        "/api/chat",
        json!({"options": OPTIONS(8),
        "messages": [{"role": "user", "content": "what is this"}]}),
    )
    .await;
    assert_ne!(
        seen["prompt_eval_count"], unseen["prompt_eval_count"],
        "the image is part of the prompt the provider's Ollama evaluates"
    );
    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "the weather in a city", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    let call = json!({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}});
    let round_trip = json!([{"role": "user", "content": "hello edge mesh"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_name": "get_weather", "content": TOOL_RESULT}]);
    let second = direct(
        &ollama,
        "/api/chat",
        json!({"messages": round_trip, "tools": [weather], "options": OPTIONS(300)}),
    )
    .await;
    let mut forgotten = round_trip.clone();
    forgotten[1]["tool_calls"] = json!([]);
    let without = direct(
        &ollama,
        "/api/chat",
        json!({"messages": forgotten, "tools": [weather], "options": OPTIONS(300)}),
    )
    .await;
    assert_ne!(
        second["prompt_eval_count"], without["prompt_eval_count"],
        "the assistant's tool call is part of the prompt"
    );

    for client in ["ollama", "openai"] {
        for stream in [false, true] {
            let at = format!("{client} stream={stream}");
            // JSON mode: valid JSON, the provider's Ollama's own answer.
            let got = api_case(&requester.url, client, stream, "json").await;
            let text = got["text"].as_str().unwrap_or_default();
            assert!(
                serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()),
                "{at}: {got}"
            );
            assert_eq!(text, json_text, "{at}");
            // A JSON schema: the answer follows it.
            let got = api_case(&requester.url, client, stream, "schema").await;
            let text = got["text"].as_str().unwrap_or_default();
            let v: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{at}: {e}: {got}"));
            assert_eq!(v, json!({"answer": "yes"}), "{at}");
            // Tools: the model's call comes back as a tool call, and the round trip (the
            // call and the tool's answer sent back) reaches the provider whole.
            let got = api_case(&requester.url, client, stream, "tools").await;
            let calls = got["tool_calls"]
                .as_array()
                .unwrap_or_else(|| panic!("{at}: {got}"));
            assert_eq!(calls.len(), 1, "{at}: {got}");
            assert_eq!(calls[0]["name"], "get_weather", "{at}: {got}");
            assert_eq!(
                calls[0]["arguments"],
                json!({"city": "Paris"}),
                "{at}: {got}"
            );
            assert_eq!(got["text"], "", "{at}: {got}");
            if client == "openai" {
                assert_eq!(got["finish_reason"], "tool_calls", "{at}: {got}");
                assert!(
                    calls[0]["id"].as_str().is_some_and(|i| !i.is_empty()),
                    "{at}"
                );
            }
            let back = &got["second"];
            assert_eq!(
                back["prompt_tokens"], second["prompt_eval_count"],
                "{at}: {back}"
            );
            assert_eq!(back["text"], second["message"]["content"], "{at}");
            // An image reaches the provider's Ollama: the answer is the one it gives with
            // the image, over the prompt with the image in it.
            let got = api_case(&requester.url, client, stream, "image").await;
            assert_eq!(got["text"], seen["message"]["content"], "{at}: {got}");
            assert_eq!(
                got["prompt_tokens"], seen["prompt_eval_count"],
                "{at}: {got}"
            );
        }
    }
    // Every call went over the mesh: 4 clients x streams, 5 chats each (json, schema, the
    // two of the round trip, the image), plus the 5 direct ones.
    assert_eq!(ollama.requests_to("/api/chat"), 4 * 5 + 5);
    let jobs = requester.get("/jobs?limit=100").await;
    let done = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["side"] == "requester" && j["state"] == "completed")
        .count();
    assert_eq!(done, 20, "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_offload_and_are_the_providers_backends_own() {
    let ollama = RealOllama::start(&[(TOOLS_MODEL, TestModel::Tools)]).await;
    // The requester's own Ollama lacks the model: the embeddings go to the mesh.
    let local = RealOllama::start(&[]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, _provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &ollama.url)],
        &[("OLLAMA_URL", &local.url)],
    )
    .await;
    let inputs = json!(["hello edge mesh", "peer"]);
    let embed = direct(&ollama, "/api/embed", json!({"input": inputs})).await;
    let legacy = direct(
        &ollama,
        "/api/embeddings",
        json!({"prompt": "hello edge mesh"}),
    )
    .await;
    let want: Vec<Value> = vec![
        embed["embeddings"][0].clone(),
        embed["embeddings"][1].clone(),
        legacy["embedding"].clone(),
    ];
    assert_eq!(want[0].as_array().map(Vec::len), Some(64), "{embed}");

    let got = api_case(&requester.url, "ollama", false, "embed").await;
    assert_eq!(
        got["vectors"],
        json!(want),
        "Ollama's /api/embed and /api/embeddings, as the provider's Ollama answers them"
    );
    let got = api_case(&requester.url, "openai", false, "embed").await;
    let vectors = got["vectors"].as_array().unwrap_or_else(|| panic!("{got}"));
    assert_eq!(vectors.len(), 2, "{got}");
    for (v, w) in vectors.iter().zip(&want) {
        let (v, w) = (v.as_array().unwrap(), w.as_array().unwrap());
        assert_eq!(v.len(), 64);
        for (x, y) in v.iter().zip(w) {
            // OpenAI's client asks for base64: 32-bit floats.
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-3), "{x} vs {y}");
        }
    }
    assert_eq!(local.requests_to("/api/embed"), 1, "asked locally first");
    assert_eq!(
        ollama.requests_to("/api/embed"),
        1 + 2,
        "one direct, two over the mesh"
    );
    let jobs = requester.get("/jobs").await;
    let done: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["side"] == "requester" && j["state"] == "completed")
        .collect();
    assert_eq!(done.len(), 3, "{jobs}");
}
