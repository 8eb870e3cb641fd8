//! A STUB of Ollama's HTTP API (`GET /api/tags`, `POST /api/generate`, streaming and not)
//! for tests and demos on machines without Ollama. It runs no model: it answers with a
//! fixed transformation of the prompt, and it can be told to fail or to be slow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::inference::model_matches;

/// How the stub behaves; change it at any time through [`OllamaStub::set`].
#[derive(Debug, Clone)]
pub struct StubBehaviour {
    /// Models `/api/tags` lists.
    pub models: Vec<String>,
    /// When set, `/api/generate` answers this HTTP status with `{"error": message}`.
    pub fail: Option<(u16, String)>,
    /// Delay before answering `/api/generate`.
    pub delay: Duration,
    /// Models `/api/ps` lists as loaded in memory.
    pub loaded: Vec<String>,
    /// A streamed answer waits this long before each piece (a model generating slowly).
    pub piece_delay: Duration,
}

impl Default for StubBehaviour {
    fn default() -> Self {
        StubBehaviour {
            models: vec!["tinyllama:latest".into()],
            fail: None,
            delay: Duration::ZERO,
            loaded: Vec::new(),
            piece_delay: Duration::ZERO,
        }
    }
}

struct Shared {
    behaviour: Mutex<StubBehaviour>,
    generate_calls: AtomicU64,
    /// The `options` of every `/api/generate` call, in order (at most 10,000 kept).
    options: Mutex<Vec<Option<Value>>>,
}

/// A running Ollama API stub on 127.0.0.1.
pub struct OllamaStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

/// The stub's answer for a prompt: what tests compare against.
pub fn stub_output(model: &str, prompt: &str) -> String {
    format!("stub-ollama({model}) says: {}", prompt.to_uppercase())
}

impl OllamaStub {
    /// Start on an ephemeral port.
    pub async fn start(behaviour: StubBehaviour) -> std::io::Result<OllamaStub> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await
    }

    /// Start on a given address.
    pub async fn start_on(
        addr: SocketAddr,
        behaviour: StubBehaviour,
    ) -> std::io::Result<OllamaStub> {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            generate_calls: AtomicU64::new(0),
            options: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/tags", get(tags))
            .route("/api/generate", post(generate))
            .route("/api/ps", get(ps))
            .route("/", get(|| async { "Ollama is running (edgent stub)" }))
            .with_state(shared.clone());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "ollama stub server stopped");
            }
        });
        Ok(OllamaStub {
            addr,
            shared,
            cancel,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Change the behaviour.
    pub fn set(&self, f: impl FnOnce(&mut StubBehaviour)) {
        f(&mut self.shared.behaviour.lock());
    }

    /// How many `/api/generate` calls it has answered.
    pub fn generate_calls(&self) -> u64 {
        self.shared.generate_calls.load(Ordering::SeqCst)
    }

    /// The `options` of each `/api/generate` call so far, in order (the first 10,000).
    pub fn options_seen(&self) -> Vec<Option<Value>> {
        self.shared.options.lock().clone()
    }
}

impl Drop for OllamaStub {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn behaviour(s: &Shared) -> StubBehaviour {
    s.behaviour.lock().clone()
}

async fn tags(State(s): State<Arc<Shared>>) -> Json<Value> {
    let models: Vec<Value> = behaviour(&s)
        .models
        .iter()
        .map(|m| json!({"name": m, "model": m, "size": 637_700_138u64, "details": {"family": "llama"}}))
        .collect();
    Json(json!({ "models": models }))
}

/// `/api/ps`: the loaded models, in Ollama's shape.
async fn ps(State(s): State<Arc<Shared>>) -> Json<Value> {
    let models: Vec<Value> = behaviour(&s)
        .loaded
        .iter()
        .map(|m| json!({"name": m, "model": m, "size": 637_700_138u64, "size_vram": 0}))
        .collect();
    Json(json!({ "models": models }))
}

async fn generate(State(s): State<Arc<Shared>>, Json(req): Json<Value>) -> Response {
    s.generate_calls.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = s.options.lock();
        if seen.len() < 10_000 {
            seen.push(req.get("options").cloned());
        }
    }
    let b = behaviour(&s);
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    if let Some((status, msg)) = b.fail {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, Json(json!({ "error": msg }))).into_response();
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let prompt = req
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let known = b.models.iter().any(|m| model_matches(&model, m));
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("model '{model}' not found, try pulling it first") })),
        )
            .into_response();
    }
    let text = stub_output(&model, &prompt);
    let prompt_tokens = prompt.split_whitespace().count();
    let eval_count = text.split_whitespace().count();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(true);
    if !stream {
        return Json(json!({"model": model, "response": text, "done": true,
            "prompt_eval_count": prompt_tokens, "eval_count": eval_count}))
        .into_response();
    }
    let mut lines: Vec<String> = text
        .split_inclusive(' ')
        .map(|piece| {
            format!(
                "{}\n",
                json!({"model": model, "response": piece, "done": false})
            )
        })
        .collect();
    lines.push(format!(
        "{}\n",
        json!({"model": model, "response": "", "done": true, "done_reason": "stop",
            "prompt_eval_count": prompt_tokens, "eval_count": eval_count})
    ));
    let body = if b.piece_delay.is_zero() {
        Body::from(lines.concat())
    } else {
        use futures_util::StreamExt;
        let delay = b.piece_delay;
        Body::from_stream(futures_util::stream::iter(lines).then(move |l| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(l)
        }))
    };
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
