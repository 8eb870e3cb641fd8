//! An agent's generation request in any of the four shapes (Ollama's generate and chat,
//! OpenAI's chat and completions), read into one [`AgentRequest`]: the
//! [`DelegateRequest`] it asks for, and how the agent wants the answer.

use serde_json::{Map, Value};

use crate::protocol::{ChatMessage, MAX_IMAGES, MAX_TOOL_CALLS};
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
    /// The fields of the request the mesh path cannot carry (`tools`, `images`, ...), by
    /// name: the local Ollama gets them, the mesh refuses the request naming them
    /// ([`uncarried`]), never drops them silently.
    pub uncarried: Vec<String>,
}

/// Top-level fields the mesh path does not carry, with the values that are the same as
/// leaving them out (a `false` `raw`, `tool_choice: "none"` or `"auto"`, `n: 1`).
/// (`tools`, a message's `images`, `tool_calls`, `tool_name` and `tool_call_id`, and
/// OpenAI's `image_url` parts holding a `data:` URL do travel.)
const UNCARRIED: [&str; 12] = [
    "tool_choice",
    "functions",
    "function_call",
    "images",
    "suffix",
    "raw",
    "template",
    "context",
    "n",
    "logprobs",
    "top_logprobs",
    "echo",
];

/// The fields of `obj` (and of its chat messages) that the mesh path cannot carry and
/// that say something (see [`UNCARRIED`]).
pub fn uncarried(obj: &Map<String, Value>) -> Vec<String> {
    let neutral = |key: &str, v: &Value| match (key, v) {
        (_, Value::Null) | (_, Value::Bool(false)) => true,
        (_, Value::Array(a)) if a.is_empty() => true,
        (_, Value::String(s)) if s.is_empty() => true,
        ("tool_choice", Value::String(s)) => s == "none" || s == "auto",
        ("n", n) => n.as_u64() == Some(1),
        _ => false,
    };
    let mut out: Vec<String> = UNCARRIED
        .iter()
        .filter(|k| obj.get(**k).is_some_and(|v| !neutral(k, v)))
        .map(|k| k.to_string())
        .collect();
    for m in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let parts = m
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for p in parts {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or("text");
            let field = format!("messages[].content[].{kind}");
            let carried = kind == "text" || (kind == "image_url" && data_url(p).is_some());
            if !carried && !out.contains(&field) {
                out.push(field);
            }
        }
    }
    out
}

/// The base64 of an OpenAI `image_url` part holding a `data:image/...;base64,` URL (the
/// only images Ollama's own OpenAI layer takes).
fn data_url(part: &Value) -> Option<&str> {
    let url = part.get("image_url")?;
    let url = url.get("url").unwrap_or(url).as_str()?;
    let rest = url.strip_prefix("data:image/")?;
    let (_, b64) = rest.split_once(";base64,")?;
    Some(b64)
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
    let uncarried = uncarried(obj);
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
    // Tools and `keep_alive` travel with the options too (bounded there, and here so
    // the agent hears of a bound rather than losing its tools).
    if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
        let (most, bytes) = crate::inference::options::MAX_TOOLS;
        let list = tools
            .as_array()
            .ok_or_else(|| bad("tools must be a list"))?;
        if list.len() > most || serde_json::to_vec(tools).map_or(0, |b| b.len()) > bytes {
            return Err(bad(format!(
                "the mesh carries at most {most} tools in {bytes} bytes"
            )));
        }
        if !list.is_empty() {
            options.insert("tools".into(), tools.clone());
        }
    }
    if let Some(v) = obj.get("keep_alive").filter(|v| !v.is_null()) {
        options.insert("keep_alive".into(), v.clone());
    }
    if api.openai() {
        openai_options(obj, &mut options);
    } else {
        // Ollama's `format` and `think` travel with the options; the provider's backend
        // sends them as Ollama's top-level fields.
        for key in ["format", "think"] {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                options.insert(key.into(), v.clone());
            }
        }
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
            let mut msgs: Vec<ChatMessage> = Vec::with_capacity(raw.len());
            for m in raw {
                let mut msg = chat_message(m)?;
                // OpenAI's tool answer names only the call: the tool is the one that call
                // named, as Ollama's own OpenAI layer finds it.
                if let (Some(id), None) = (&msg.tool_call_id, &msg.tool_name) {
                    msg.tool_name = msgs
                        .iter()
                        .flat_map(|m| &m.tool_calls)
                        .find(|c| c.get("id").and_then(Value::as_str) == Some(id.as_str()))
                        .and_then(|c| c["function"]["name"].as_str())
                        .map(String::from);
                }
                msgs.push(msg);
            }
            let images: usize = msgs.iter().map(|m| m.images.len()).sum();
            let calls = msgs.iter().map(|m| m.tool_calls.len()).max().unwrap_or(0);
            if images > MAX_IMAGES || calls > MAX_TOOL_CALLS {
                return Err(bad(format!(
                    "the mesh carries at most {MAX_IMAGES} images and {MAX_TOOL_CALLS} tool calls a message"
                )));
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
        uncarried,
    })
}

/// One chat message, in either API's shape, as Ollama's chat takes it: OpenAI's content may
/// be a list of parts (the text kept, `data:` image URLs as images), its tool calls carry
/// their arguments as JSON text (Ollama's as an object).
fn chat_message(m: &Value) -> Result<ChatMessage, String> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("every message needs a role"))?
        .to_string();
    let mut images: Vec<String> = match m.get("images") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|i| i.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("images must be base64 strings"))?,
        Some(_) => return Err(bad("images must be a list")),
    };
    let content = match m.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            images.extend(parts.iter().filter_map(data_url).map(String::from));
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        }
        Some(_) => return Err(bad("message content must be a string")),
    };
    let tool_calls = match m.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls.iter().map(tool_call).collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("tool_calls must be a list")),
    };
    let text = |key: &str| m.get(key).and_then(Value::as_str).map(String::from);
    Ok(ChatMessage {
        role,
        content,
        images,
        tool_calls,
        tool_name: text("tool_name")
            .or_else(|| text("name").filter(|_| m.get("tool_call_id").is_some())),
        tool_call_id: text("tool_call_id"),
    })
}

/// A tool call in Ollama's shape (`{id?, function: {name, arguments: {...}}}`), from
/// either API's: OpenAI's `arguments` is JSON text.
fn tool_call(c: &Value) -> Result<Value, String> {
    let f = c
        .get("function")
        .ok_or_else(|| bad("a tool call needs a function"))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a tool call needs a function name"))?;
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| bad(format!("a tool call's arguments must be JSON: {e}")))?,
        Some(v) => v.clone(),
    };
    let mut out = serde_json::json!({"function": {"name": name, "arguments": arguments}});
    if let Some(id) = c.get("id").filter(|i| i.is_string()) {
        out["id"] = id.clone();
    }
    Ok(out)
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

    #[test]
    fn what_the_mesh_cannot_carry_is_named_and_neutral_values_are_not() {
        // Tools, images and tool calls travel.
        let tools = parse(
            Api::OllamaChat,
            br#"{"model":"m","tools":[{"type":"function"}],"keep_alive":"5m","messages":[
                {"role":"user","content":"hi","images":["aGk="]},
                {"role":"assistant","content":"","tool_calls":[{"function":{"name":"f"}}]},
                {"role":"tool","content":"1","tool_name":"f"}]}"#,
        )
        .unwrap();
        assert!(tools.uncarried.is_empty(), "{:?}", tools.uncarried);
        let options = tools.request.options.unwrap();
        assert_eq!(options["tools"], serde_json::json!([{"type": "function"}]));
        assert_eq!(options["keep_alive"], "5m");
        let msgs = tools.request.messages.unwrap();
        assert_eq!(msgs[0].images, ["aGk="]);
        assert_eq!(
            msgs[1].tool_calls,
            [serde_json::json!({"function": {"name": "f", "arguments": {}}})]
        );
        assert_eq!(msgs[2].tool_name.as_deref(), Some("f"));
        // OpenAI's: a data URL is an image, its tool calls' arguments JSON text, and a
        // tool's answer names the call, whose tool is found.
        let parts = parse(
            Api::OpenAiChat,
            br#"{"model":"m","n":2,"messages":[{"role":"user","content":[
                {"type":"text","text":"what is this"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                 "function":{"name":"f","arguments":"{\"x\":1}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"2"}]}"#,
        )
        .unwrap();
        assert_eq!(parts.uncarried, ["n"]);
        let msgs = parts.request.messages.unwrap();
        assert_eq!(msgs[0].content, "what is this");
        assert_eq!(msgs[0].images, ["aGk="]);
        assert_eq!(
            msgs[1].tool_calls,
            [serde_json::json!({"id": "c1", "function": {"name": "f", "arguments": {"x": 1}}})]
        );
        assert_eq!(msgs[2].tool_name.as_deref(), Some("f"));
        assert_eq!(msgs[2].tool_call_id.as_deref(), Some("c1"));
        // An image by URL, `tool_choice: required`, and Ollama generate's `images` do not.
        let url = parse(
            Api::OpenAiChat,
            br#"{"model":"m","tool_choice":"required","messages":[{"role":"user","content":[
                {"type":"image_url","image_url":{"url":"https://example.org/a.png"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            url.uncarried,
            ["tool_choice", "messages[].content[].image_url"]
        );
        let gen = parse(
            Api::OllamaGenerate,
            br#"{"model":"m","prompt":"x","images":["aGk="]}"#,
        );
        assert_eq!(gen.unwrap().uncarried, ["images"]);
        let many = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x","images":{}}}]}}"#,
            serde_json::json!(vec!["aGk="; MAX_IMAGES + 1])
        );
        assert!(
            parse(Api::OllamaChat, many.as_bytes()).is_err(),
            "over the bound"
        );
        let neutral = parse(
            Api::OpenAiChat,
            br#"{"model":"m","n":1,"tools":[],"tool_choice":"none","logprobs":false,
                "messages":[{"role":"user","content":"hi","images":null}]}"#,
        )
        .unwrap();
        assert!(neutral.uncarried.is_empty(), "{:?}", neutral.uncarried);
        // `format` and `think` travel, in the options, to the provider's backend.
        let think = parse(
            Api::OllamaGenerate,
            br#"{"model":"m","prompt":"hi","think":true,"format":"json","keep_alive":"5m"}"#,
        )
        .unwrap();
        assert!(think.uncarried.is_empty());
        let options = think.request.options.unwrap();
        assert_eq!(options["think"], Value::Bool(true));
        assert_eq!(options["format"], Value::from("json"));
    }
}
