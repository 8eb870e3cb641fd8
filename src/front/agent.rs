//! An agent's generation request in any of the four shapes (Ollama's generate and chat,
//! OpenAI's chat and completions), read into one [`AgentRequest`]: the
//! [`DelegateRequest`] it asks for, and how the agent wants the answer.

use serde_json::{Map, Value};

use crate::protocol::ChatMessage;
use crate::request::DelegateRequest;

/// The four generation routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Ollama `POST /api/generate`.
    OllamaGenerate,
    /// Ollama `POST /api/chat`.
    OllamaChat,
    /// OpenAI `POST /v1/chat/completions`.
    OpenAiChat,
    /// OpenAI `POST /v1/completions`.
    OpenAiCompletion,
}

impl Api {
    /// The route's path.
    pub fn path(&self) -> &'static str {
        match self {
            Api::OllamaGenerate => "/api/generate",
            Api::OllamaChat => "/api/chat",
            Api::OpenAiChat => "/v1/chat/completions",
            Api::OpenAiCompletion => "/v1/completions",
        }
    }

    /// Whether it is one of OpenAI's.
    pub fn openai(&self) -> bool {
        matches!(self, Api::OpenAiChat | Api::OpenAiCompletion)
    }
}

/// An agent's generation request: the delegation it asks for, and how it wants the answer.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The delegation: the model, the prompt (generate, completions) or the conversation
    /// (chat), and Ollama's generation options.
    pub request: DelegateRequest,
    /// Whether the agent wants a stream (Ollama's default true, OpenAI's false).
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
}

fn bad(msg: impl Into<String>) -> String {
    msg.into()
}

/// Read an agent's request body for `api`; the error says what is wrong with it.
pub fn parse(api: Api, body: &[u8]) -> Result<AgentRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object"))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("model is required"))?
        .to_string();
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => !api.openai(),
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream must be true or false")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|s| s.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut options = match obj.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("options must be an object")),
    };
    if api.openai() {
        openai_options(obj, &mut options);
    } else if let Some(f) = obj.get("format").filter(|f| !f.is_null()) {
        // Ollama's `format` travels with the options; the provider's backend applies it.
        options.insert("format".into(), f.clone());
    }
    let (prompt, messages) = match api {
        Api::OllamaGenerate | Api::OpenAiCompletion => {
            let p = match obj.get("prompt") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(_) => return Err(bad("prompt must be a string")),
            };
            let p = match obj.get("system").and_then(Value::as_str) {
                Some(sys) if !sys.is_empty() && api == Api::OllamaGenerate => {
                    format!("{sys}\n\n{p}")
                }
                _ => p,
            };
            (p, None)
        }
        Api::OllamaChat | Api::OpenAiChat => {
            let raw = obj
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("messages must be a list"))?;
            let mut msgs = Vec::with_capacity(raw.len());
            for m in raw {
                msgs.push(chat_message(m)?);
            }
            (String::new(), Some(msgs))
        }
    };
    // edgent's own field, which Ollama and OpenAI ignore: `{"edgent": {"model_digest": ...}}`.
    let model_digest = match obj.get("edgent").and_then(|e| e.get("model_digest")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("edgent.model_digest must be a string")),
    };
    Ok(AgentRequest {
        request: DelegateRequest {
            model,
            model_digest,
            prompt,
            messages,
            options: (!options.is_empty()).then_some(options),
            ..DelegateRequest::default()
        },
        stream,
        include_usage,
    })
}

/// One chat message; OpenAI's content may be a list of parts, of which the text is kept.
fn chat_message(m: &Value) -> Result<ChatMessage, String> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("every message needs a role"))?
        .to_string();
    let content = match m.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(_) => return Err(bad("message content must be a string")),
    };
    Ok(ChatMessage { role, content })
}

/// OpenAI's sampling fields as Ollama's options, as Ollama's own OpenAI layer maps them.
fn openai_options(obj: &Map<String, Value>, options: &mut Map<String, Value>) {
    match obj.get("stop") {
        Some(Value::String(s)) => {
            options.insert("stop".into(), Value::from(vec![s.clone()]));
        }
        Some(Value::Array(a)) => {
            options.insert("stop".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    let pairs = [
        ("max_tokens", "num_predict"),
        ("max_completion_tokens", "num_predict"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ];
    for (from, to) in pairs {
        if let Some(v) = obj.get(from).filter(|v| v.is_number()) {
            options.insert(to.into(), v.clone());
        }
    }
    for (key, default) in [("temperature", 1.0), ("top_p", 1.0)] {
        let v = obj
            .get(key)
            .filter(|v| v.is_number())
            .cloned()
            .unwrap_or_else(|| Value::from(default));
        options.insert(key.into(), v);
    }
    if let Some(rf) = obj.get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                options.insert("format".into(), Value::from("json"));
            }
            Some("json_schema") => {
                if let Some(s) = rf.get("json_schema").and_then(|j| j.get("schema")) {
                    options.insert("format".into(), s.clone());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_each_api() {
        let g = parse(Api::OllamaGenerate, br#"{"model":"m","prompt":"hi"}"#).unwrap();
        assert!(g.stream);
        assert_eq!(g.request.prompt, "hi");
        let c = parse(
            Api::OpenAiChat,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":"x"}"#,
        )
        .unwrap();
        assert!(!c.stream);
        let options = c.request.options.as_ref().unwrap();
        assert_eq!(options["num_predict"], Value::from(5));
        assert_eq!(options["stop"], serde_json::json!(["x"]));
        assert_eq!(options["temperature"], Value::from(1.0));
        assert_eq!(c.request.messages.unwrap()[0].content, "hi");
        assert!(parse(Api::OllamaChat, br#"{"model":"m"}"#).is_err());
        assert!(parse(Api::OllamaGenerate, br#"{"prompt":"x"}"#).is_err());
        assert!(parse(Api::OllamaGenerate, b"nope").is_err());
    }
}
