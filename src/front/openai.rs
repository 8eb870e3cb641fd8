//! The OpenAI API as the front door answers it from the mesh, in the shapes Ollama's own
//! OpenAI layer writes: `chat.completion` / `text_completion` objects, or SSE chunks
//! (`chat.completion.chunk`, then one with `finish_reason`, then `data: [DONE]`), and
//! errors as `{"error": {"message", "type", "param", "code"}}`.

use serde_json::{json, Value};

use crate::request::DelegateResponse;

use super::agent::Api;
use super::offload::{receipt, unix_now};

/// The SSE content type.
pub const SSE: &str = "text/event-stream";

fn usage(r: &DelegateResponse) -> Value {
    let p = r.usage.prompt_tokens.unwrap_or(0);
    let c = r.usage.completion_tokens.unwrap_or(0);
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn object(api: Api, stream: bool) -> &'static str {
    match (api, stream) {
        (Api::OpenAiChat, false) => "chat.completion",
        (Api::OpenAiChat, true) => "chat.completion.chunk",
        _ => "text_completion",
    }
}

fn base(api: Api, id: &str, model: &str, stream: bool) -> Value {
    json!({
        "id": id,
        "object": object(api, stream),
        "created": unix_now(),
        "model": model,
        "system_fingerprint": "fp_ollama",
    })
}

/// The id of one answer: `chatcmpl-…` or `cmpl-…`, from the job id.
pub fn answer_id(api: Api, job_hex: &str) -> String {
    let tail = &job_hex[job_hex.len().saturating_sub(12)..];
    match api {
        Api::OpenAiChat => format!("chatcmpl-{tail}"),
        _ => format!("cmpl-{tail}"),
    }
}

/// One streamed chunk carrying `text`, or the last one with `finish` set.
pub fn chunk(api: Api, id: &str, model: &str, text: &str, finish: Option<&str>) -> Value {
    let mut v = base(api, id, model, true);
    v["choices"] = match api {
        Api::OpenAiChat => json!([{
            "index": 0,
            "delta": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }]),
        _ => json!([{"text": text, "index": 0, "finish_reason": finish}]),
    };
    v
}

/// The usage chunk sent last when the agent asked `stream_options.include_usage`.
pub fn usage_chunk(api: Api, id: &str, model: &str, r: &DelegateResponse) -> Value {
    let mut v = base(api, id, model, true);
    v["choices"] = json!([]);
    v["usage"] = usage(r);
    v
}

/// The answer's tool calls in OpenAI's shape (`{id, index, type: "function", function:
/// {name, arguments}}`, the arguments as JSON text), as Ollama's OpenAI layer writes them.
pub fn tool_calls(id: &str, r: &DelegateResponse) -> Vec<Value> {
    r.tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = &c["function"];
            let args = match &f["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => "{}".to_string(),
                other => other.to_string(),
            };
            let call_id = c["id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("call_{id}_{i}"));
            json!({"id": call_id, "index": i, "type": "function",
                "function": {"name": f["name"], "arguments": args}})
        })
        .collect()
}

/// Why the answer ended: `tool_calls` when it called tools, else `stop`.
fn finish(r: &DelegateResponse) -> &'static str {
    if r.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

/// The streamed chunk carrying the answer's tool calls (sent before the last one).
pub fn tool_chunk(api: Api, id: &str, model: &str, r: &DelegateResponse) -> Value {
    let mut v = chunk(api, id, model, "", None);
    v["choices"][0]["delta"]["tool_calls"] = Value::from(tool_calls(id, r));
    v
}

/// The whole answer as one object (`stream: false`).
pub fn whole(api: Api, id: &str, model: &str, r: &DelegateResponse) -> Value {
    let mut v = base(api, id, model, false);
    v["choices"] = match api {
        Api::OpenAiChat => {
            let mut message = json!({"role": "assistant", "content": r.output});
            if !r.tool_calls.is_empty() {
                message["tool_calls"] = Value::from(tool_calls(id, r));
            }
            json!([{"index": 0, "message": message, "finish_reason": finish(r)}])
        }
        _ => json!([{"text": r.output, "index": 0, "finish_reason": "stop"}]),
    };
    v["usage"] = usage(r);
    if let Some(x) = receipt(r) {
        v["edgent"] = x;
    }
    v
}

/// The last streamed chunk (`finish_reason: stop`, or `tool_calls`), with the paid
/// answer's receipt.
pub fn last_chunk(api: Api, id: &str, model: &str, r: &DelegateResponse) -> Value {
    let mut v = chunk(api, id, model, "", Some(finish(r)));
    if let Some(x) = receipt(r) {
        v["edgent"] = x;
    }
    v
}

/// An error in OpenAI's shape; the type follows the status as Ollama's `NewError` does.
pub fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    let message = crate::redact::urls(message);
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// One SSE event.
pub fn event(v: &Value) -> Vec<u8> {
    let mut b = b"data: ".to_vec();
    b.extend(serde_json::to_vec(v).unwrap_or_default());
    b.extend_from_slice(b"\n\n");
    b
}

/// The SSE end marker.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_errors() {
        let c = chunk(Api::OpenAiChat, "chatcmpl-1", "m", "hi", None);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["delta"]["content"], "hi");
        assert!(c["choices"][0]["finish_reason"].is_null());
        let t = chunk(Api::OpenAiCompletion, "cmpl-1", "m", "", Some("stop"));
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["choices"][0]["finish_reason"], "stop");
        assert_eq!(error(404, "x")["error"]["type"], "not_found_error");
        assert!(event(&c).starts_with(b"data: {"));
        assert_eq!(answer_id(Api::OpenAiChat, "0xabc"), "chatcmpl-0xabc");
    }
}
