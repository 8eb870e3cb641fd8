//! The local Ollama, as a transparent streaming proxy: the agent's request goes to
//! `OLLAMA_URL` unchanged, and Ollama's answer comes back unchanged (status, content type,
//! body streamed as it arrives), unless the answer says the request should go to the mesh:
//!
//! - out of memory: an error whose text has one of [`OOM_MARKERS`] (the substrings
//!   Ollama's own `llm/status.go` looks for), as an error status or as the first line of a
//!   200 stream (nothing has reached the agent yet then: the line is held back until it is
//!   known not to be such an error);
//! - the model is not here: 404 on a generation route;
//! - Ollama is not reachable.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;

/// The substrings that mark an out-of-memory error, as Ollama's `llm/status.go` lists them.
pub const OOM_MARKERS: &[&str] = &[
    "model requires more system memory",
    "llama runner process has terminated",
    "llama-server process has terminated",
    "out of memory",
    "cudaMalloc failed",
    "failed to allocate",
    "not enough memory",
    "insufficient memory",
];

/// Largest error body read from Ollama.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest first line held back from a 200 stream while it is checked.
const MAX_HEAD: usize = 256 * 1024;

/// Whether an error text says the model does not fit.
pub fn is_oom(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    OOM_MARKERS
        .iter()
        .any(|m| t.contains(&m.to_ascii_lowercase()))
}

/// Why a request goes to the mesh instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offload {
    /// Ollama answered out-of-memory (its message).
    OutOfMemory(String),
    /// Ollama does not have the model (its message).
    ModelMissing(String),
    /// Ollama could not be reached.
    Unreachable(String),
}

impl Offload {
    /// Short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Offload::OutOfMemory(_) => "out_of_memory",
            Offload::ModelMissing(_) => "model_missing",
            Offload::Unreachable(_) => "ollama_unreachable",
        }
    }

    /// The local error in words.
    pub fn message(&self) -> &str {
        match self {
            Offload::OutOfMemory(m) | Offload::ModelMissing(m) | Offload::Unreachable(m) => m,
        }
    }
}

/// What the local Ollama made of a request.
pub enum Local {
    /// Its answer, to pass on as it is.
    Answer(Response),
    /// Go to the mesh; `status` and `body` are Ollama's own answer, for when the mesh
    /// cannot help either (`None` when Ollama was unreachable).
    Offload {
        /// Why.
        why: Offload,
        /// Ollama's status.
        status: Option<StatusCode>,
        /// Ollama's body.
        body: Bytes,
    },
}

pub use crate::inference::error_text;

/// The first line of a stream that is an error line, when it is one.
fn stream_error(head: &[u8]) -> Option<String> {
    let line = head
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty())?;
    let t = line.trim_ascii();
    let json = t.strip_prefix(b"data:").unwrap_or(t).trim_ascii();
    let v: Value = serde_json::from_slice(json).ok()?;
    v.get("error")?;
    Some(error_text(json))
}

/// Send the agent's request to the local Ollama at `base` + `path`; `generation` says
/// whether a 404 means "this model is not here" (generate, chat, completions).
pub async fn forward(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
    generation: bool,
) -> Local {
    let mut req = http.request(method, format!("{base}{path_and_query}"));
    if let Some(ct) = content_type.and_then(|c| c.to_str().ok()) {
        req = req.header(header::CONTENT_TYPE.as_str(), ct);
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Local::Offload {
                why: Offload::Unreachable(format!("the local Ollama at {base}: {e}")),
                status: None,
                body: Bytes::new(),
            }
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    if !status.is_success() {
        let mut buf = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_ERROR_BODY {
                break;
            }
        }
        let body = buf.freeze();
        let text = error_text(&body);
        if generation && is_oom(&text) {
            return Local::Offload {
                why: Offload::OutOfMemory(text),
                status: Some(status),
                body,
            };
        }
        if generation && status == StatusCode::NOT_FOUND {
            return Local::Offload {
                why: Offload::ModelMissing(text),
                status: Some(status),
                body,
            };
        }
        return Local::Answer(respond(status, ct, Body::from(body)));
    }
    let streaming = ct.as_ref().and_then(|c| c.to_str().ok()).is_some_and(|c| {
        c.starts_with("application/x-ndjson") || c.starts_with("text/event-stream")
    });
    let mut stream = resp.bytes_stream();
    if !(generation && streaming) {
        return Local::Answer(respond(status, ct, Body::from_stream(stream)));
    }
    // Hold the first line back until it is known not to be an out-of-memory error.
    let mut head = BytesMut::new();
    let mut broke = None;
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                broke = Some(e);
                break;
            }
            None => break,
        }
    }
    let head = head.freeze();
    if let Some(text) = stream_error(&head).filter(|t| is_oom(t)) {
        return Local::Offload {
            why: Offload::OutOfMemory(text),
            status: Some(StatusCode::INTERNAL_SERVER_ERROR),
            body: head,
        };
    }
    if let Some(e) = broke {
        return Local::Offload {
            why: Offload::Unreachable(format!("the local Ollama's stream broke: {e}")),
            status: None,
            body: Bytes::new(),
        };
    }
    let rest =
        futures_util::stream::once(async move { Ok::<Bytes, reqwest::Error>(head) }).chain(stream);
    Local::Answer(respond(status, ct, Body::from_stream(rest)))
}

fn respond(status: StatusCode, ct: Option<HeaderValue>, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Some(ct) = ct {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(super::headers::RAN_ON, HeaderValue::from_static("local"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_markers_match_ollamas_errors() {
        assert!(is_oom(
            "model requires more system memory (128.0 GiB) than is available (20.1 GiB)"
        ));
        assert!(is_oom(
            "llama runner process has terminated: signal: killed"
        ));
        assert!(is_oom("CUDA error: out of memory"));
        assert!(!is_oom("model 'x' not found"));
    }

    #[test]
    fn error_lines_in_both_shapes() {
        assert_eq!(error_text(br#"{"error":"boom"}"#), "boom");
        assert_eq!(
            error_text(br#"{"error":{"message":"boom","type":"api_error"}}"#),
            "boom"
        );
        assert_eq!(
            stream_error(b"{\"error\":\"out of memory\"}\n").as_deref(),
            Some("out of memory")
        );
        assert_eq!(
            stream_error(b"data: {\"error\":{\"message\":\"out of memory\"}}\n\n").as_deref(),
            Some("out of memory")
        );
        assert_eq!(
            stream_error(b"{\"response\":\"hi\",\"done\":false}\n"),
            None
        );
    }
}
