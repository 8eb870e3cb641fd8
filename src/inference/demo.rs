//! The built-in demo backend: NOT a language model. It lets `edgent demo` and tests run a
//! whole delegation where no Ollama is installed, and says so in every answer.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{model_matches, Backend, GenerateOutput, GenerateRequest, InferenceError};

/// The model name the demo backend serves.
pub const DEMO_MODEL: &str = "edgent-demo";

/// A deterministic stand-in that answers with a labelled summary of the prompt.
#[derive(Debug, Default, Clone)]
pub struct DemoBackend;

#[async_trait]
impl Backend for DemoBackend {
    fn name(&self) -> &'static str {
        "demo"
    }

    async fn models(&self) -> Result<Vec<String>, InferenceError> {
        Ok(vec![DEMO_MODEL.to_string()])
    }

    async fn run(
        &self,
        req: &GenerateRequest,
        deltas: Option<&mpsc::UnboundedSender<String>>,
    ) -> Result<GenerateOutput, InferenceError> {
        if !model_matches(&req.model, DEMO_MODEL) {
            return Err(InferenceError::ModelUnavailable(req.model.clone()));
        }
        let words = req.prompt.split_whitespace().count();
        let text = format!(
            "[edgent demo backend, not a language model] Received {} characters ({} words). Reversed: {}",
            req.prompt.chars().count(),
            words,
            req.prompt.chars().rev().collect::<String>()
        );
        if let Some(d) = deltas {
            let _ = d.send(text.clone());
        }
        Ok(GenerateOutput {
            completion_tokens: Some(text.split_whitespace().count() as u64),
            prompt_tokens: Some(words as u64),
            text,
            tool_calls: Vec::new(),
        })
    }
}
