//! The mesh side of the front door: an agent's generation request, in any of the four
//! shapes, as one [`AgentRequest`]; its delegation through the requester, whose answer is
//! a stream of [`MeshEvent`](events::MeshEvent)s ([`crate::requester::events`]) that each API renders in its
//! own format.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::protocol::ChatMessage;
use crate::request::{DelegateError, DelegateRequest, DelegateResponse};
use crate::requester::events::{self, MeshAnswer};

use super::FrontDoor;

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

/// What the mesh needs of an agent's request.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    /// The model asked for.
    pub model: String,
    /// The prompt (generate, completions).
    pub prompt: Option<String>,
    /// The conversation (chat).
    pub messages: Option<Vec<ChatMessage>>,
    /// Ollama's generation options.
    pub options: Map<String, Value>,
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
            (Some(p), None)
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
            (None, Some(msgs))
        }
    };
    Ok(AgentRequest {
        model,
        prompt,
        messages,
        options,
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

/// Delegate the agent's request over the mesh. A streamed request answers as soon as the
/// task is with a provider, and its events follow as the provider generates; if the agent
/// goes away first (the events are dropped), the job is cancelled (`task_cancel`).
pub async fn delegate(
    front: &Arc<FrontDoor>,
    req: &AgentRequest,
) -> Result<MeshAnswer, DelegateError> {
    let dreq = DelegateRequest {
        model: req.model.clone(),
        prompt: req.prompt.clone().unwrap_or_default(),
        messages: req.messages.clone(),
        options: (!req.options.is_empty()).then(|| req.options.clone()),
        ..DelegateRequest::default()
    };
    events::start(front.requester.clone(), dreq, req.stream).await
}

/// A paid answer's receipt, added as `edgent` to the last object of a mesh answer (Ollama's
/// `done` line, OpenAI's last chunk or whole object): the job, whether the provider's
/// proof checked, and the payment. The last object goes out only once the proof checked
/// (or the release is confirmed, with `wait: settled`). Unpaid answers carry none, so they
/// stay exactly in Ollama's and OpenAI's shapes; clients ignore the extra field.
pub fn receipt(r: &DelegateResponse) -> Option<Value> {
    if r.proof_verified.is_none() && r.payment.is_none() {
        return None;
    }
    Some(serde_json::json!({
        "job_id": r.job_id,
        "proof_verified": r.proof_verified,
        "payment": r.payment,
    }))
}

/// Now as RFC 3339 with nanoseconds, UTC, as Ollama writes `created_at`.
pub fn rfc3339_now() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// Now as unix seconds (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_each_api() {
        let g = parse(Api::OllamaGenerate, br#"{"model":"m","prompt":"hi"}"#).unwrap();
        assert!(g.stream);
        assert_eq!(g.prompt.as_deref(), Some("hi"));
        let c = parse(
            Api::OpenAiChat,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":"x"}"#,
        )
        .unwrap();
        assert!(!c.stream);
        assert_eq!(c.options["num_predict"], Value::from(5));
        assert_eq!(c.options["stop"], serde_json::json!(["x"]));
        assert_eq!(c.options["temperature"], Value::from(1.0));
        assert_eq!(c.messages.unwrap()[0].content, "hi");
        assert!(parse(Api::OllamaChat, br#"{"model":"m"}"#).is_err());
        assert!(parse(Api::OllamaGenerate, br#"{"prompt":"x"}"#).is_err());
        assert!(parse(Api::OllamaGenerate, b"nope").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-11-30T14:39:38.003478439Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
