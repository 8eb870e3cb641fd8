//! The provider's backends against the real Ollama: its native API (prompt and chat, with
//! the generation options) and its OpenAI-compatible `/v1`, which stands for llama-server,
//! vLLM and LM Studio (`INFERENCE_BACKEND=openai`). Streamed deltas add up to the output.

use std::time::Duration;

use edgent::inference::openai::OpenAiBackend;
use edgent::inference::{Backend, GenerateRequest, OllamaBackend};
use edgent::protocol::ChatMessage;
use serde_json::json;

use crate::support;
use crate::support::ollama::{RealOllama, TestModel, TINY_MODEL};
use crate::support::MeshSimProc;

fn request(chat: bool) -> GenerateRequest {
    GenerateRequest {
        model: TINY_MODEL.into(),
        prompt: if chat {
            String::new()
        } else {
            "hello edge mesh".into()
        },
        options: json!({"seed": 7, "temperature": 0, "num_predict": 16})
            .as_object()
            .cloned(),
        messages: chat.then(|| {
            vec![ChatMessage {
                role: "user".into(),
                content: "hello edge mesh".into(),
                ..Default::default()
            }]
        }),
    }
}

async fn streamed(b: &dyn Backend, req: &GenerateRequest) -> (String, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = b.generate_stream(req, tx).await.expect("generate_stream");
    let mut deltas = Vec::new();
    while let Ok(d) = rx.try_recv() {
        deltas.push(d);
    }
    (out.text, deltas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_and_openai_backends_generate_and_stream_from_the_real_ollama() {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let native = OllamaBackend::new(&ollama.url).unwrap();
    let openai = OpenAiBackend::new(
        &format!("{}/v1", ollama.url),
        Some(edgent::chain::Secret::new("unused")),
    )
    .unwrap();
    assert_eq!(
        native.models().await.unwrap(),
        vec![format!("{TINY_MODEL}:latest")]
    );
    assert_eq!(
        openai.models().await.unwrap(),
        vec![format!("{TINY_MODEL}:latest")]
    );
    for chat in [false, true] {
        let req = request(chat);
        let whole = native.generate(&req).await.unwrap();
        assert!(!whole.text.is_empty());
        assert_eq!(whole.completion_tokens, Some(16), "num_predict is applied");
        let (text, deltas) = streamed(&native, &req).await;
        assert_eq!(text, whole.text, "same options, same output (chat={chat})");
        assert!(deltas.len() > 1);
        assert_eq!(deltas.concat(), text);

        let o = openai.generate(&req).await.unwrap();
        assert!(!o.text.is_empty());
        assert_eq!(o.completion_tokens, Some(16), "max_tokens from num_predict");
        let (text, deltas) = streamed(&openai, &req).await;
        assert_eq!(text, o.text);
        assert!(deltas.len() > 1);
        assert_eq!(deltas.concat(), text);
    }
    // A model Ollama does not have.
    let mut missing = request(true);
    missing.model = "nope".into();
    assert!(matches!(
        openai.generate(&missing).await,
        Err(edgent::inference::InferenceError::ModelUnavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serves_the_mesh_through_an_openai_compatible_backend() {
    let ollama = RealOllama::start(&[(TINY_MODEL, TestModel::Tiny)]).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/v1", ollama.url);
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[
            ("INFERENCE_BACKEND", "openai"),
            ("OPENAI_BASE_URL", &base),
            // Nothing listens here: the provider must not use its Ollama setting.
            ("OLLAMA_URL", "http://127.0.0.1:9"),
        ],
        &[],
    )
    .await;
    let (status, body) = requester
        .delegate(json!({
            "model": TINY_MODEL,
            "prompt": "hello edge mesh",
            "options": {"seed": 7, "temperature": 0, "num_predict": 8},
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["backend"], "openai");
    assert_eq!(body["usage"]["completion_tokens"], 8);
    let job = body["job_id"].as_str().unwrap();
    let pjob = provider
        .job_in_state(job, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(pjob["output"], body["output"]);
    let st = provider.get("/status").await;
    assert_eq!(st["backend"]["backend"], "openai");
}
