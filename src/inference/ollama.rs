//! The Ollama backend: `GET /api/tags` for the models it advertises (with their weights'
//! digests, [`super::weights`]), `POST /api/generate`
//! for a prompt and `POST /api/chat` for a conversation, read as a stream of NDJSON chunks
//! (Ollama's default). Dropping the future drops the HTTP request, which stops Ollama
//! generating.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Backend, GenerateOutput, GenerateRequest, InferenceError, ModelOffer};

/// Largest output accepted from the backend: it must fit in one mesh message.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Ollama at a base URL such as `http://127.0.0.1:11434`.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    base: String,
    http: reqwest::Client,
    weights: std::sync::Arc<super::weights::WeightsCache>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<TagModel>,
}

#[derive(Deserialize)]
struct TagModel {
    name: String,
    #[serde(default)]
    size: Option<u64>,
    /// The sha256 of the model's manifest, 64 hex digits (`/api/tags` and `/api/ps`): it
    /// changes when the model does, so it keys [`super::weights::WeightsCache`].
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    details: TagDetails,
}

/// `details` of a `/api/tags` entry: what the model is.
#[derive(Deserialize, Default)]
struct TagDetails {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    parameter_size: Option<String>,
    #[serde(default)]
    quantization_level: Option<String>,
}

/// A detail Ollama gave, when it is one the protocol carries (a short printable text).
fn detail(s: Option<String>) -> Option<String> {
    s.filter(|s| crate::protocol::check_model(s).is_ok())
}

#[derive(Deserialize, Default)]
struct ChatDelta {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<Value>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    response: String,
    #[serde(default)]
    message: Option<ChatDelta>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

impl OllamaBackend {
    /// A client for the Ollama API at `base_url`.
    pub fn new(base_url: &str) -> Result<Self, InferenceError> {
        let (http, base) = super::backend_client(base_url)?;
        Ok(OllamaBackend {
            base,
            http,
            weights: Default::default(),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> InferenceError {
        InferenceError::Unreachable(format!("Ollama at {}: {e}", self.base))
    }
}

fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Keys of a request's options that Ollama takes as top-level fields of the generation
/// request, not in `options` (`tools` only on `/api/chat`).
const TOP_LEVEL_OPTIONS: [&str; 4] = ["format", "think", "tools", "keep_alive"];

impl OllamaBackend {
    async fn tags(&self) -> Result<Vec<TagModel>, InferenceError> {
        self.get_tags("/api/tags").await
    }

    /// GET `/api/tags` or `/api/ps` (the same `{"models": [{name, size}]}` shape).
    async fn get_tags(&self, path: &str) -> Result<Vec<TagModel>, InferenceError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(InferenceError::Backend(format!(
                "{path}: HTTP {status}: {}",
                error_text(&body)
            )));
        }
        let tags: Tags = resp
            .json()
            .await
            .map_err(|e| InferenceError::BadResponse(format!("{path}: {e}")))?;
        Ok(tags.models)
    }
}

#[async_trait]
impl Backend for OllamaBackend {
    fn name(&self) -> &'static str {
        "ollama"
    }

    async fn models(&self) -> Result<Vec<String>, InferenceError> {
        Ok(self.tags().await?.into_iter().map(|m| m.name).collect())
    }

    async fn model_details(&self) -> Result<Vec<ModelOffer>, InferenceError> {
        let tags = self.tags().await?;
        // `/api/ps` lists the loaded models; an Ollama without it (or failing) loads nothing.
        let loaded: Vec<String> = match self.get_tags("/api/ps").await {
            Ok(ps) => ps.into_iter().map(|m| m.name).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "/api/ps unavailable: no model counts as loaded");
                Vec::new()
            }
        };
        let mut offers = Vec::with_capacity(tags.len());
        for m in tags {
            // What the model is: its weights' digest (`/api/show`, once per manifest).
            let digest = match &m.digest {
                Some(manifest) => {
                    self.weights
                        .get(&self.http, &self.base, &m.name, manifest)
                        .await
                }
                None => None,
            };
            offers.push(ModelOffer {
                loaded: loaded.iter().any(|l| l == &m.name),
                name: m.name,
                size_bytes: m.size,
                digest,
                family: detail(m.details.family),
                parameter_size: detail(m.details.parameter_size),
                quantization: detail(m.details.quantization_level),
            });
        }
        Ok(offers)
    }

    async fn run(
        &self,
        req: &GenerateRequest,
        deltas: Option<&mpsc::UnboundedSender<String>>,
    ) -> Result<GenerateOutput, InferenceError> {
        if let Some(kind) = super::embed::kind(req) {
            let ollama = super::embed::Ollama {
                http: &self.http,
                base: &self.base,
                limit: MAX_OUTPUT_BYTES,
            };
            return ollama.embed(req, kind).await;
        }
        let (path, mut body) = match &req.messages {
            Some(msgs) => (
                "/api/chat",
                json!({"model": req.model, "messages": msgs, "stream": true}),
            ),
            None => (
                "/api/generate",
                json!({"model": req.model, "prompt": req.prompt, "stream": true}),
            ),
        };
        if let Some(opts) = &req.options {
            let mut opts = opts.clone();
            for key in TOP_LEVEL_OPTIONS {
                if let Some(v) = opts.remove(key) {
                    if key != "tools" || req.messages.is_some() {
                        body[key] = v;
                    }
                }
            }
            body["options"] = Value::Object(opts);
        }
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = error_text(&text);
            return Err(InferenceError::from_status(status, msg));
        }
        super::fold_lines(resp, "stream ended before Ollama said done", |line, out| {
            apply_line(line, out, deltas)
        })
        .await
    }
}

/// Fold one NDJSON line into the output; true when it is the final chunk.
fn apply_line(
    line: &[u8],
    out: &mut GenerateOutput,
    deltas: Option<&mpsc::UnboundedSender<String>>,
) -> Result<bool, InferenceError> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(false);
    }
    let chunk: Chunk = serde_json::from_slice(trimmed)
        .map_err(|e| InferenceError::BadResponse(format!("bad stream chunk: {e}")))?;
    if let Some(err) = chunk.error {
        return Err(InferenceError::Backend(err));
    }
    let text = match &chunk.message {
        Some(m) => &m.content,
        None => &chunk.response,
    };
    if let Some(m) = &chunk.message {
        if out.tool_calls.len() + m.tool_calls.len() > crate::protocol::MAX_TOOL_CALLS {
            return Err(InferenceError::BadResponse(format!(
                "more than {} tool calls",
                crate::protocol::MAX_TOOL_CALLS
            )));
        }
        out.tool_calls.extend(m.tool_calls.iter().cloned());
    }
    if !text.is_empty() {
        out.text.push_str(text);
        if let Some(tx) = deltas {
            let _ = tx.send(text.clone());
        }
    }
    if chunk.done {
        out.prompt_tokens = chunk.prompt_eval_count;
        out.completion_tokens = chunk.eval_count;
    }
    Ok(chunk.done)
}
