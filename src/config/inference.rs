//! The inference backend a provider runs jobs on, and where the local Ollama is (the
//! front door proxies to it too).

use super::value::{check_url, invalid, ConfigError, Lookup};

/// Which inference backend a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Ollama's HTTP API at `OLLAMA_URL`.
    Ollama,
    /// The built-in demo backend (not a language model; for demos and tests).
    Demo,
    /// An OpenAI-compatible API at `OPENAI_BASE_URL` (llama-server, vLLM, LM Studio).
    OpenAi,
}

/// The backend and how to reach it.
#[derive(Debug, Clone)]
pub struct InferenceSettings {
    /// `INFERENCE_BACKEND`: `ollama`, `openai` or `demo`.
    pub backend: BackendKind,
    /// `OPENAI_BASE_URL`: the OpenAI-compatible API of `INFERENCE_BACKEND=openai`
    /// (default `http://127.0.0.1:8080/v1`, llama-server's).
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`: its Bearer key, when it needs one.
    pub openai_api_key: Option<crate::chain::Secret>,
    /// `OLLAMA_URL`.
    pub ollama_url: String,
}

impl InferenceSettings {
    /// Read and check the backend's settings.
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        let backend = match get("INFERENCE_BACKEND").as_deref().map(str::trim) {
            None | Some("ollama") => BackendKind::Ollama,
            Some("demo") => BackendKind::Demo,
            Some("openai") => BackendKind::OpenAi,
            Some(other) => {
                return Err(invalid(
                    "INFERENCE_BACKEND",
                    other,
                    "expected ollama, openai or demo",
                ))
            }
        };
        let openai_base_url = check_url(
            "OPENAI_BASE_URL",
            &get("OPENAI_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:8080/v1".into()),
        )?;
        let openai_api_key = get("OPENAI_API_KEY")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(crate::chain::Secret::new);
        let ollama_url = check_url(
            "OLLAMA_URL",
            &get("OLLAMA_URL").unwrap_or_else(|| "http://127.0.0.1:11434".into()),
        )?;
        Ok(InferenceSettings {
            backend,
            openai_base_url,
            openai_api_key,
            ollama_url,
        })
    }
}
