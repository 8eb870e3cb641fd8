//! The one client of the daemon's HTTP API, for the CLI (`edgent delegate`, `status`,
//! `jobs`) and the MCP tools.
//!
//! Every MCP tool is a call to the daemon's own API (`/delegate`, `/jobs`, `/status`), so
//! the MCP server behaves exactly as the API does: the same input checks, error codes,
//! streaming and cancel on disconnect. Two ways to reach it:
//! - [`ApiClient::http`]: over HTTP, for the CLI and `edgent mcp` (stdio), separate
//!   processes;
//! - [`ApiClient::in_process`]: the daemon's axum router called as a tower service, for
//!   `/mcp` on the daemon itself (no socket, no self-address to know; dropping the call
//!   drops the handler, as a disconnect does).

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::request::DelegateRequest;

/// The error code a tool reports when the daemon cannot be reached at all.
pub const DAEMON_UNREACHABLE: &str = "daemon_unreachable";

/// Why an API call failed: the API's own `{error, detail}` (with its HTTP status), or
/// no answer at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiFailure {
    /// The API's error code (`no_provider`, `payment_failed`, `deadline`, ...), or
    /// [`DAEMON_UNREACHABLE`].
    pub code: String,
    /// What went wrong, in words.
    pub detail: String,
    /// The HTTP status, when the daemon answered.
    pub http_status: Option<u16>,
}

impl ApiFailure {
    fn unreachable(detail: impl Into<String>) -> Self {
        ApiFailure {
            code: DAEMON_UNREACHABLE.into(),
            detail: detail.into(),
            http_status: None,
        }
    }

    /// Whether the daemon refused `field` as an unknown field of the request body (an
    /// older daemon that does not have it yet).
    pub fn is_unknown_field(&self, field: &str) -> bool {
        self.http_status == Some(400) && self.detail.contains(&format!("unknown field `{field}`"))
    }
}

enum Target {
    Http {
        base: String,
        token: Option<String>,
        http: reqwest::Client,
    },
    InProcess(Router),
}

/// A client of the daemon's HTTP API.
pub struct ApiClient {
    target: Target,
    /// Whether `/delegate` takes `stream: true` (cleared the first time the daemon
    /// refuses the field).
    streams: AtomicBool,
}

struct Answer {
    status: StatusCode,
    ndjson: bool,
    body: BoxStream<'static, Result<Bytes, String>>,
}

impl Answer {
    /// An answer from its status and headers, and its body as it streams in.
    fn new<E: std::fmt::Display>(
        (status, headers): (StatusCode, axum::http::HeaderMap),
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> Answer {
        Answer {
            status,
            ndjson: is_ndjson(headers.get(header::CONTENT_TYPE)),
            body: body.map(|r| r.map_err(|e| e.to_string())).boxed(),
        }
    }
}

impl ApiClient {
    /// Over HTTP at `base` (e.g. `http://127.0.0.1:8080`), with `token` as a Bearer token.
    pub fn http(base: &str, token: Option<String>) -> ApiClient {
        ApiClient {
            target: Target::Http {
                base: base.trim_end_matches('/').to_string(),
                token: token.filter(|t| !t.is_empty()),
                http: reqwest::Client::new(),
            },
            streams: AtomicBool::new(true),
        }
    }

    /// In the daemon's process: `api` is its router (without `/mcp`).
    pub fn in_process(api: Router) -> ApiClient {
        ApiClient {
            target: Target::InProcess(api),
            streams: AtomicBool::new(true),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ApiFailure> {
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ApiFailure::unreachable(e.to_string()))?,
            None => Vec::new(),
        };
        match &self.target {
            Target::Http { base, token, http } => {
                let mut req = http.request(method, format!("{base}{path}"));
                if body.is_some() {
                    req = req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(bytes);
                }
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.map_err(|e| {
                    ApiFailure::unreachable(format!("is the daemon running at {base}? {e}"))
                })?;
                let head = (resp.status(), resp.headers().clone());
                Ok(Answer::new(head, resp.bytes_stream()))
            }
            Target::InProcess(router) => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::HOST, "127.0.0.1");
                if body.is_some() {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                }
                let req = req
                    .body(Body::from(bytes))
                    .map_err(|e| ApiFailure::unreachable(e.to_string()))?;
                let resp = router
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| ApiFailure::unreachable(e.to_string()))?;
                let head = (resp.status(), resp.headers().clone());
                Ok(Answer::new(head, resp.into_body().into_data_stream()))
            }
        }
    }

    /// GET `path` and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<Value, ApiFailure> {
        let (status, bytes) = self.call(Method::GET, path, None).await?;
        json_answer(status, &bytes)
    }

    /// `method` `path` with the JSON `body`: the HTTP status and the JSON answer as it is,
    /// an error body too (the CLI prints either).
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ApiFailure> {
        let (status, bytes) = self.call(method, path, body).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| not_json(status, e))?;
        Ok((status, value))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), ApiFailure> {
        let answer = self.send(method, path, body).await?;
        let status = answer.status;
        Ok((status, collect(answer.body).await?))
    }

    /// `POST /delegate` with `req`. When the daemon streams (`stream: true`, NDJSON of
    /// deltas and a last line with the whole answer), each text delta goes to `deltas` as
    /// it arrives; a daemon that does not know `stream` is asked again without it, and
    /// answers in one piece. Returns the answer object (`job_id`, `output`, ...).
    pub async fn delegate(
        &self,
        req: &DelegateRequest,
        deltas: mpsc::UnboundedSender<String>,
    ) -> Result<Value, ApiFailure> {
        let mut body = serde_json::to_value(req)
            .map_err(|e| ApiFailure::unreachable(format!("the request: {e}")))?;
        if self.streams.load(Ordering::Relaxed) {
            body["stream"] = Value::Bool(true);
            match self.post_delegate(&body, &deltas).await {
                Err(e) if e.is_unknown_field("stream") => {
                    tracing::info!(
                        "the daemon's /delegate does not stream; asking for whole answers"
                    );
                    self.streams.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        if let Some(o) = body.as_object_mut() {
            o.remove("stream");
        }
        self.post_delegate(&body, &deltas).await
    }

    async fn post_delegate(
        &self,
        body: &Value,
        deltas: &mpsc::UnboundedSender<String>,
    ) -> Result<Value, ApiFailure> {
        let answer = self.send(Method::POST, "/delegate", Some(body)).await?;
        if !answer.ndjson {
            let status = answer.status;
            let bytes = collect(answer.body).await?;
            return json_answer(status, &bytes);
        }
        let mut lines = NdjsonLines::default();
        let mut body = answer.body;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ApiFailure::unreachable(format!("the stream broke: {e}")))?;
            for line in lines.push(&chunk) {
                if let Some(done) = stream_line(&line, deltas)? {
                    return Ok(done);
                }
            }
        }
        if let Some(line) = lines.finish() {
            if let Some(done) = stream_line(&line, deltas)? {
                return Ok(done);
            }
        }
        Err(ApiFailure::unreachable(
            "the stream ended without an answer",
        ))
    }
}

fn is_ndjson(ct: Option<&axum::http::HeaderValue>) -> bool {
    ct.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.starts_with("application/x-ndjson") || v.starts_with("application/ndjson")
    })
}

async fn collect(
    mut body: BoxStream<'static, Result<Bytes, String>>,
) -> Result<Vec<u8>, ApiFailure> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(
            &chunk.map_err(|e| ApiFailure::unreachable(format!("reading the answer: {e}")))?,
        );
    }
    Ok(out)
}

/// A JSON answer: the value on success, the `{error, detail}` as an [`ApiFailure`] otherwise.
fn json_answer(status: StatusCode, bytes: &[u8]) -> Result<Value, ApiFailure> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| not_json(status, e))?;
    if status.is_success() {
        Ok(value)
    } else {
        Err(failure_of(&value, Some(status.as_u16())))
    }
}

fn not_json(status: StatusCode, e: serde_json::Error) -> ApiFailure {
    ApiFailure {
        code: "bad_answer".into(),
        detail: format!("the daemon's answer (HTTP {status}) is not JSON: {e}"),
        http_status: Some(status.as_u16()),
    }
}

fn failure_of(value: &Value, http_status: Option<u16>) -> ApiFailure {
    let code = match &value["error"] {
        Value::String(s) => s.clone(),
        // OpenAI-shaped errors, in case an answer ever carries one.
        Value::Object(o) => o
            .get("code")
            .or_else(|| o.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string(),
        _ => "error".into(),
    };
    let detail = value["detail"]
        .as_str()
        .or_else(|| value["error"]["message"].as_str())
        .unwrap_or_default()
        .to_string();
    ApiFailure {
        code,
        detail,
        http_status,
    }
}

/// One line of a streamed `/delegate`: a delta (sent on), the final answer (returned),
/// or an error line (the failure).
fn stream_line(
    line: &str,
    deltas: &mpsc::UnboundedSender<String>,
) -> Result<Option<Value>, ApiFailure> {
    let value: Value = serde_json::from_str(line).map_err(|e| ApiFailure {
        code: "bad_answer".into(),
        detail: format!("a line of the daemon's stream is not JSON: {e}"),
        http_status: None,
    })?;
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Err(failure_of(&value, None));
    }
    if value.get("job_id").is_some() && value.get("output").is_some() {
        return Ok(Some(value));
    }
    // The delta's field: `delta` (the front door's), or Ollama-style `response`.
    if let Some(text) = ["delta", "response"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
    {
        if !text.is_empty() {
            // The receiver only goes away when the tool call was dropped.
            let _ = deltas.send(text.to_string());
        }
    } else {
        tracing::debug!(line, "unrecognised line in the /delegate stream, skipped");
    }
    Ok(None)
}

/// Splits a byte stream into lines (NDJSON), whatever the chunk boundaries.
#[derive(Default)]
struct NdjsonLines {
    buf: Vec<u8>,
}

impl NdjsonLines {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                out.push(line);
            }
        }
        out
    }

    fn finish(&mut self) -> Option<String> {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf))
            .trim()
            .to_string();
        (!line.is_empty()).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let mut l = NdjsonLines::default();
        assert!(l.push(b"{\"delta\":\"a").is_empty());
        assert_eq!(
            l.push(b"b\"}\n{\"x\":1}\n{\"y\""),
            vec!["{\"delta\":\"ab\"}", "{\"x\":1}"]
        );
        assert_eq!(l.finish().as_deref(), Some("{\"y\""));
    }

    #[test]
    fn stream_lines_give_deltas_then_the_answer_or_the_error() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert_eq!(stream_line(r#"{"delta":"He"}"#, &tx).unwrap(), None);
        assert_eq!(stream_line(r#"{"delta":"llo"}"#, &tx).unwrap(), None);
        let done = stream_line(r#"{"job_id":"0x1","output":"Hello"}"#, &tx).unwrap();
        assert_eq!(done.unwrap()["output"], "Hello");
        assert_eq!(rx.try_recv().unwrap(), "He");
        assert_eq!(rx.try_recv().unwrap(), "llo");
        let err = stream_line(r#"{"error":"deadline","detail":"too slow"}"#, &tx).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.detail.as_str()),
            ("deadline", "too slow")
        );
        assert!(stream_line("not json", &tx).is_err());
    }

    #[test]
    fn error_answers_keep_the_api_code() {
        let e = json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":"no_provider","detail":"nobody answered"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "no_provider");
        assert_eq!(e.http_status, Some(503));
        let e = json_answer(
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad_request","detail":"Failed to deserialize the JSON body into the target type: unknown field `stream`, expected one of `model`"}"#,
        )
        .unwrap_err();
        assert!(e.is_unknown_field("stream"));
        assert!(!e.is_unknown_field("messages"));
    }
}
