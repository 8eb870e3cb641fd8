//! An OpenAI-compatible backend (`INFERENCE_BACKEND=openai`): llama.cpp's llama-server,
//! vLLM, LM Studio, or Ollama's own `/v1`. `GET {OPENAI_BASE_URL}/models` for the models it
//! advertises, `POST /completions` for a prompt and `POST /chat/completions` for a
//! conversation, streamed (SSE) so deltas can go on as they come; `OPENAI_API_KEY`, when
//! set, is sent as a Bearer token. Ollama's options are mapped to OpenAI's fields
//! (`num_predict` -> `max_tokens`, `temperature`, `top_p`, `seed`, `stop`, penalties,
//! `format: json` -> `response_format`).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{Backend, GenerateOutput, GenerateRequest, InferenceError};

/// An OpenAI-compatible API at a base URL such as `http://127.0.0.1:8080/v1`.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    base: String,
    key: Option<crate::chain::Secret>,
    http: reqwest::Client,
}

impl OpenAiBackend {
    /// A client for the API at `base_url` (ending in `/v1`), with an optional key.
    pub fn new(base_url: &str, key: Option<crate::chain::Secret>) -> Result<Self, InferenceError> {
        let (http, base) = super::backend_client(base_url)?;
        Ok(OpenAiBackend {
            base,
            key: key.filter(|k| !k.expose().is_empty()),
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k.expose()),
            None => r,
        }
    }
}

/// Ollama's options as OpenAI request fields.
fn map_options(opts: &Map<String, Value>, body: &mut Value) {
    let pairs = [
        ("num_predict", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("stop", "stop"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ];
    for (from, to) in pairs {
        if let Some(v) = opts.get(from) {
            body[to] = v.clone();
        }
    }
    match opts.get("format") {
        Some(Value::String(s)) if s == "json" => {
            body["response_format"] = json!({"type": "json_object"});
        }
        Some(schema @ Value::Object(_)) => {
            body["response_format"] =
                json!({"type": "json_schema", "json_schema": {"name": "format", "schema": schema}});
        }
        _ => {}
    }
}

/// Fold one SSE line into the output; true at `data: [DONE]`.
fn apply_event(
    line: &[u8],
    chat: bool,
    out: &mut GenerateOutput,
    deltas: Option<&mpsc::UnboundedSender<String>>,
) -> Result<bool, InferenceError> {
    let t = line.trim_ascii();
    let Some(data) = t.strip_prefix(b"data:") else {
        return Ok(false); // blank lines, comments, event names
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" {
        return Ok(true);
    }
    let v: Value = serde_json::from_slice(data)
        .map_err(|e| InferenceError::BadResponse(format!("bad SSE chunk: {e}")))?;
    if let Some(e) = v.get("error") {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| e.to_string());
        return Err(InferenceError::Backend(msg));
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
        out.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
    }
    let text = v
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| {
            if chat {
                c.get("delta").and_then(|d| d.get("content"))
            } else {
                c.get("text")
            }
        })
        .and_then(Value::as_str)
        .unwrap_or("");
    if !text.is_empty() {
        out.text.push_str(text);
        if let Some(tx) = deltas {
            let _ = tx.send(text.to_string());
        }
    }
    Ok(false)
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn models(&self) -> Result<Vec<String>, InferenceError> {
        let resp = self
            .request(reqwest::Method::GET, "/models")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| InferenceError::Unreachable(format!("{}: {e}", self.base)))?;
        if !resp.status().is_success() {
            return Err(InferenceError::Backend(format!(
                "/models: HTTP {}",
                resp.status()
            )));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| InferenceError::BadResponse(format!("/models: {e}")))?;
        Ok(v.get("data")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn run(
        &self,
        req: &GenerateRequest,
        deltas: Option<&mpsc::UnboundedSender<String>>,
    ) -> Result<GenerateOutput, InferenceError> {
        // What this backend does not carry yet fails the task (another provider may take
        // it), never silently drops a part of it.
        let opts = req.options.as_ref();
        let msgs = req.messages.iter().flatten();
        let tools = opts.is_some_and(|o| o.contains_key("tools"));
        if super::embed::kind(req).is_some()
            || tools
            || msgs
                .clone()
                .any(|m| !m.images.is_empty() || !m.tool_calls.is_empty())
        {
            return Err(InferenceError::Backend(
                "this provider's OpenAI-compatible backend does not carry embeddings, tools or images"
                    .into(),
            ));
        }
        let chat = req.messages.is_some();
        let (path, mut body) = match &req.messages {
            Some(msgs) => (
                "/chat/completions",
                json!({"model": req.model, "messages": msgs}),
            ),
            None => (
                "/completions",
                json!({"model": req.model, "prompt": req.prompt}),
            ),
        };
        body["stream"] = Value::Bool(true);
        body["stream_options"] = json!({"include_usage": true});
        if let Some(opts) = &req.options {
            map_options(opts, &mut body);
        }
        let resp = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .map_err(|e| InferenceError::Unreachable(format!("{}: {e}", self.base)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = super::error_text(text.as_bytes());
            return Err(InferenceError::from_status(status, msg));
        }
        super::fold_lines(resp, "stream ended before data: [DONE]", |line, out| {
            apply_event(line, chat, out, deltas)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_fold_into_the_output() {
        let mut out = GenerateOutput::default();
        let chunk =
            br#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#;
        assert!(!apply_event(chunk, true, &mut out, None).unwrap());
        let usage = br#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        assert!(!apply_event(usage, true, &mut out, None).unwrap());
        assert!(apply_event(b"data: [DONE]", true, &mut out, None).unwrap());
        assert_eq!(out.text, "hi");
        assert_eq!(out.completion_tokens, Some(1));
        assert!(apply_event(
            br#"data: {"error":{"message":"boom"}}"#,
            true,
            &mut out,
            None
        )
        .is_err());
    }

    #[test]
    fn options_map_to_openai_fields() {
        let mut body = json!({});
        let opts = json!({"num_predict": 5, "seed": 1, "format": "json"});
        map_options(opts.as_object().unwrap(), &mut body);
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["seed"], 1);
        assert_eq!(body["response_format"]["type"], "json_object");
    }
}
