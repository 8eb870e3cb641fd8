//! Ollama's native API as the front door answers it from the mesh: `/api/generate` and
//! `/api/chat` as NDJSON (one object per delta, then the `done: true` line with its stats)
//! or one object when `stream` is false, and errors as `{"error": "..."}`.

use serde_json::{json, Value};

use crate::request::DelegateResponse;

use super::agent::Api;
use super::offload::{receipt, rfc3339_now};

/// The NDJSON content type Ollama streams with.
pub const NDJSON: &str = "application/x-ndjson";

/// One delta as Ollama streams it.
pub fn delta(api: Api, model: &str, text: &str) -> Value {
    let mut v = json!({"model": model, "created_at": rfc3339_now()});
    match api {
        Api::OllamaChat => v["message"] = json!({"role": "assistant", "content": text}),
        _ => v["response"] = Value::from(text),
    }
    v["done"] = Value::Bool(false);
    v
}

/// The streamed line carrying the answer's tool calls, as Ollama streams them (before its
/// `done` line), when it made any.
pub fn tool_line(api: Api, model: &str, r: &DelegateResponse) -> Option<Value> {
    if api != Api::OllamaChat || r.tool_calls.is_empty() {
        return None;
    }
    let mut v = delta(api, model, "");
    v["message"]["tool_calls"] = Value::from(r.tool_calls.clone());
    Some(v)
}

/// The last object: `done: true`, the stats, and (`whole`) the full text when it is the
/// only object (`stream: false`).
pub fn done(api: Api, model: &str, r: &DelegateResponse, whole: bool) -> Value {
    let text = if whole { r.output.as_str() } else { "" };
    let mut v = json!({"model": model, "created_at": rfc3339_now()});
    match api {
        Api::OllamaChat => {
            v["message"] = json!({"role": "assistant", "content": text});
            if whole && !r.tool_calls.is_empty() {
                v["message"]["tool_calls"] = Value::from(r.tool_calls.clone());
            }
        }
        _ => v["response"] = Value::from(text),
    }
    v["done"] = Value::Bool(true);
    v["done_reason"] = Value::from("stop");
    let ms_to_ns = |ms: u64| ms.saturating_mul(1_000_000);
    let total = r.timings.total_ms.unwrap_or(r.usage.inference_ms);
    v["total_duration"] = Value::from(ms_to_ns(total));
    if let Some(n) = r.usage.prompt_tokens {
        v["prompt_eval_count"] = Value::from(n);
    }
    if let Some(n) = r.usage.completion_tokens {
        v["eval_count"] = Value::from(n);
    }
    v["eval_duration"] = Value::from(ms_to_ns(r.usage.inference_ms));
    if let Some(x) = receipt(r) {
        v["edgent"] = x;
    }
    v
}

/// An error object in Ollama's shape.
pub fn error(message: &str) -> Value {
    json!({"error": crate::redact::urls(message)})
}

/// One NDJSON line.
pub fn line(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axl::PeerKey;
    use crate::jobs::Timings;
    use crate::protocol::{JobId, Usage};
    use crate::request::ProviderInfo;

    fn resp() -> DelegateResponse {
        DelegateResponse {
            job_id: JobId::new(),
            provider: ProviderInfo {
                node_id: PeerKey([1; 32]),
                ens: None,
                wallet: None,
            },
            output: "hello".into(),
            tool_calls: Vec::new(),
            usage: Usage {
                prompt_tokens: Some(3),
                completion_tokens: Some(2),
                inference_ms: 7,
                backend: None,
            },
            timings: Timings::default(),
            proof_verified: None,
            payment: None,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn tool_calls_come_back_in_each_apis_shape() {
        let mut r = resp();
        r.output.clear();
        r.tool_calls = vec![json!({"id": "call_1", "function": {"index": 0,
            "name": "get_weather", "arguments": {"city": "Paris"}}})];
        let whole = done(Api::OllamaChat, "m", &r, true);
        assert_eq!(whole["message"]["tool_calls"], json!(r.tool_calls));
        let line = tool_line(Api::OllamaChat, "m", &r).unwrap();
        assert_eq!(line["message"]["tool_calls"], json!(r.tool_calls));
        assert_eq!(line["done"], false);
        assert!(done(Api::OllamaChat, "m", &r, false)["message"]
            .get("tool_calls")
            .is_none());
        use crate::front::openai;
        let o = openai::whole(Api::OpenAiChat, "chatcmpl-1", "m", &r);
        let c = &o["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls");
        let call = &c["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
        let chunk = openai::tool_chunk(Api::OpenAiChat, "chatcmpl-1", "m", &r);
        assert_eq!(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let last = openai::last_chunk(Api::OpenAiChat, "chatcmpl-1", "m", &r);
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn shapes_match_ollamas() {
        let d = delta(Api::OllamaChat, "m", "hi");
        assert_eq!(d["message"]["content"], "hi");
        assert_eq!(d["done"], false);
        let last = done(Api::OllamaGenerate, "m", &resp(), true);
        assert_eq!(last["response"], "hello");
        assert_eq!(last["done"], true);
        assert_eq!(last["eval_count"], 2);
        assert_eq!(last["eval_duration"], 7_000_000);
        assert!(line(&last).ends_with(b"}\n"));
        assert!(
            last.get("edgent").is_none(),
            "an unpaid answer stays Ollama's shape"
        );
        let mut paid = resp();
        paid.proof_verified = Some(true);
        paid.payment = Some(crate::request::PaymentSummary {
            status: "verified".into(),
            amount_units: 10_000,
            stake_tx: None,
            tx_hash: None,
            explorer_url: None,
        });
        let last = done(Api::OllamaChat, "m", &paid, false);
        assert_eq!(last["edgent"]["proof_verified"], true);
        assert_eq!(last["edgent"]["payment"]["amount_units"], 10_000);
        assert_eq!(last["edgent"]["job_id"], json!(paid.job_id));
    }
}
