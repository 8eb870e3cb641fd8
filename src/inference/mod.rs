//! Inference backends: the [`Backend`] trait, the Ollama HTTP backend (and what its models
//! are, [`weights`]), an OpenAI-compatible HTTP backend, and the labelled built-in demo
//! backend, and the [`options`] a remote task may set. (A stub of
//! Ollama's API for tests is in the test harness, `crate::harness::ollama_stub`.)

pub mod demo;
pub mod embed;
pub mod ollama;
pub mod openai;
pub mod options;
pub mod weights;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::protocol::ChatMessage;

pub use crate::protocol::ModelOffer;

pub use demo::DemoBackend;
pub use ollama::OllamaBackend;

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Model name as the backend knows it.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Backend options, passed through (Ollama's `options`; the `format`, `think`, `tools`
    /// and `keep_alive` keys are sent as Ollama's top-level fields, and `embed` makes it an
    /// embedding, [`embed`]).
    pub options: Option<Map<String, Value>>,
    /// A chat instead of a prompt: the conversation, through the backend's chat API.
    pub messages: Option<Vec<ChatMessage>>,
}

/// One generation result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateOutput {
    /// The generated text.
    pub text: String,
    /// The tool calls the model made (Ollama's shape), at most
    /// [`crate::protocol::MAX_TOOL_CALLS`].
    pub tool_calls: Vec<Value>,
    /// Tokens in the prompt, when the backend says.
    pub prompt_tokens: Option<u64>,
    /// Tokens generated, when the backend says.
    pub completion_tokens: Option<u64>,
}

/// Why inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The backend could not be reached.
    #[error("backend unreachable: {0}")]
    Unreachable(String),
    /// The backend does not have the model.
    #[error("model not available: {0}")]
    ModelUnavailable(String),
    /// The backend answered with an error.
    #[error("backend error: {0}")]
    Backend(String),
    /// The backend refused the request itself (an HTTP 4xx other than 404, e.g. Ollama's
    /// 400 for a model that does not support tools): the same request fails anywhere, so
    /// the agent gets this status and message at once.
    #[error("the backend refused the request: HTTP {status}: {message}")]
    Rejected {
        /// The backend's HTTP status (400-499).
        status: u16,
        /// The backend's error message.
        message: String,
    },
    /// The backend's answer could not be understood.
    #[error("bad backend response: {0}")]
    BadResponse(String),
    /// The requester cancelled the job; the backend request was dropped.
    #[error("cancelled by the requester")]
    Cancelled,
}

impl InferenceError {
    /// The error for a backend's non-success HTTP answer to a generation: 404 is a
    /// missing model, another 4xx the request's fault ([`InferenceError::Rejected`]),
    /// anything else the backend's.
    pub fn from_status(status: reqwest::StatusCode, message: String) -> Self {
        match status.as_u16() {
            404 => InferenceError::ModelUnavailable(message),
            s @ 400..=499 => InferenceError::Rejected { status: s, message },
            _ => InferenceError::Backend(format!("HTTP {status}: {message}")),
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn a_4xx_is_the_requests_fault_a_404_a_missing_model_a_5xx_the_backends() {
        let e = InferenceError::from_status(StatusCode::BAD_REQUEST, "no tools".into());
        assert!(
            matches!(e, InferenceError::Rejected { status: 400, ref message } if message == "no tools")
        );
        assert!(matches!(
            InferenceError::from_status(StatusCode::NOT_FOUND, "x".into()),
            InferenceError::ModelUnavailable(_)
        ));
        assert!(matches!(
            InferenceError::from_status(StatusCode::INTERNAL_SERVER_ERROR, "oom".into()),
            InferenceError::Backend(_)
        ));
    }
}

/// Something that runs a model.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name, e.g. `ollama` or `demo`.
    fn name(&self) -> &'static str;
    /// Models the backend can run now.
    async fn models(&self) -> Result<Vec<String>, InferenceError>;
    /// Run one prompt to completion, sending each piece of text to `deltas`, when given, as
    /// it is generated (a backend that cannot stream sends the whole text once). Dropping
    /// the future stops the generation.
    async fn run(
        &self,
        req: &GenerateRequest,
        deltas: Option<&mpsc::UnboundedSender<String>>,
    ) -> Result<GenerateOutput, InferenceError>;

    /// Run one prompt to completion.
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateOutput, InferenceError> {
        self.run(req, None).await
    }

    /// Run one prompt to completion, streaming its text to `deltas` ([`Backend::run`]).
    async fn generate_stream(
        &self,
        req: &GenerateRequest,
        deltas: mpsc::UnboundedSender<String>,
    ) -> Result<GenerateOutput, InferenceError> {
        self.run(req, Some(&deltas)).await
    }

    /// The models with their size and whether each is loaded now, for ads. By default the
    /// names from [`Backend::models`] with nothing more known.
    async fn model_details(&self) -> Result<Vec<ModelOffer>, InferenceError> {
        Ok(self
            .models()
            .await?
            .into_iter()
            .map(|name| ModelOffer {
                name,
                ..ModelOffer::default()
            })
            .collect())
    }
}

/// Read a line-delimited answer stream (Ollama's NDJSON, OpenAI's SSE) into one output:
/// `apply` folds each line in and returns true once the backend said it is done. The
/// output is bounded by [`ollama::MAX_OUTPUT_BYTES`].
///
/// A stream that breaks (the connection drops, Ollama dies) is an error. A stream that
/// the backend *closes* cleanly without its last line, after some text, is the answer so
/// far: Ollama v0.17.4 does exactly that when its runner aborts a generation that repeats
/// one token more than 30 times in a row (`llm/server.go`, "token repeat limit reached":
/// it returns without an error and without the `done` line, on `/api/*` and `/v1/*`
/// alike), and its own `stream: false` answer is then the text with HTTP 200. So the
/// text is kept, as Ollama keeps it, and a warning is logged. A clean end with no text
/// at all is the error `unfinished`.
pub(crate) async fn fold_lines(
    resp: reqwest::Response,
    unfinished: &str,
    mut apply: impl FnMut(&[u8], &mut GenerateOutput) -> Result<bool, InferenceError>,
) -> Result<GenerateOutput, InferenceError> {
    use futures_util::StreamExt;
    let mut out = GenerateOutput::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut done = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| InferenceError::Backend(format!("stream broke: {e}")))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            done |= apply(&line, &mut out)?;
        }
        if out.text.len() > ollama::MAX_OUTPUT_BYTES {
            return Err(InferenceError::BadResponse(format!(
                "output exceeds {} bytes",
                ollama::MAX_OUTPUT_BYTES
            )));
        }
    }
    if !buf.is_empty() {
        done |= apply(&buf, &mut out)?;
    }
    if !done && out.text.is_empty() && out.tool_calls.is_empty() {
        return Err(InferenceError::BadResponse(unfinished.into()));
    }
    if !done {
        tracing::warn!(
            bytes = out.text.len(),
            "{unfinished}: the backend closed the stream without its last line (Ollama does so when it stops a generation that repeats one token); keeping the text generated"
        );
    }
    Ok(out)
}

/// The HTTP client of a backend's API (a 3 s connect timeout; generations take as long as
/// they take), and the base URL without its trailing `/`.
pub(crate) fn backend_client(base_url: &str) -> Result<(reqwest::Client, String), InferenceError> {
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| InferenceError::Unreachable(e.to_string()))?;
    Ok((http, base_url.trim_end_matches('/').to_string()))
}

/// Whether a requested model name matches a served one: exact, or equal once Ollama's
/// implicit `:latest` tag is added to either.
pub fn model_matches(requested: &str, served: &str) -> bool {
    fn norm(s: &str) -> String {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    }
    requested == served || norm(requested) == norm(served)
}

/// The text of an error body in Ollama's (`{"error": "..."}`) or OpenAI's
/// (`{"error": {"message": "..."}}`) shape, or the raw text.
pub fn error_text(body: &[u8]) -> String {
    let trimmed = body.trim_ascii();
    let json = trimmed
        .strip_prefix(b"data:")
        .unwrap_or(trimmed)
        .trim_ascii();
    if let Ok(v) = serde_json::from_slice::<Value>(json) {
        match v.get("error") {
            Some(Value::String(s)) => return s.clone(),
            Some(e) => {
                if let Some(m) = e.get("message").and_then(Value::as_str) {
                    return m.to_string();
                }
            }
            None => {}
        }
    }
    String::from_utf8_lossy(&trimmed[..trimmed.len().min(300)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::model_matches;

    #[test]
    fn latest_tag_is_implicit() {
        assert!(model_matches("tinyllama", "tinyllama:latest"));
        assert!(model_matches("tinyllama:latest", "tinyllama"));
        assert!(model_matches("llama3:8b", "llama3:8b"));
        assert!(!model_matches("llama3", "llama3:8b"));
        assert!(!model_matches("tiny", "tinyllama:latest"));
    }
}
