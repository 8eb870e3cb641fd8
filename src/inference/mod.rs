//! Inference backends: the [`Backend`] trait, the Ollama HTTP backend, the labelled
//! built-in demo backend, and a stub of Ollama's API for tests.

pub mod demo;
pub mod ollama;
pub mod ollama_stub;

use async_trait::async_trait;
use serde_json::{Map, Value};

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
    /// Backend options, passed through.
    pub options: Option<Map<String, Value>>,
}

/// One generation result.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// The generated text.
    pub text: String,
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
    /// The backend's answer could not be understood.
    #[error("bad backend response: {0}")]
    BadResponse(String),
}

/// Something that runs a model.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name, e.g. `ollama` or `demo`.
    fn name(&self) -> &'static str;
    /// Models the backend can run now.
    async fn models(&self) -> Result<Vec<String>, InferenceError>;
    /// Run one prompt to completion.
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateOutput, InferenceError>;
    /// The models with their size and whether each is loaded now, for ads. By default the
    /// names from [`Backend::models`] with nothing more known.
    async fn model_details(&self) -> Result<Vec<ModelOffer>, InferenceError> {
        Ok(self
            .models()
            .await?
            .into_iter()
            .map(|name| ModelOffer {
                name,
                size_bytes: None,
                loaded: false,
            })
            .collect())
    }
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
