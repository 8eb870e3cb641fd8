//! Embeddings at the front door: Ollama's `POST /api/embed` and `POST /api/embeddings`, and
//! OpenAI's `POST /v1/embeddings`. Local first, as for generation: the local Ollama
//! answers unless it is out of memory, lacks the model or cannot be reached; then the
//! request goes to the mesh as an embedding task ([`crate::inference::embed`]) and the
//! vectors come back in the route's own shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::agent::Api;
use super::local::{Local, Offload};
use super::{api_error, local_failure, mesh_error, FrontDoor, OffloadMode};
use crate::guard::Caller;
use crate::inference::embed::{self, EMBED, MAX_INPUTS};
use crate::request::{DelegateRequest, DelegateResponse};
use crate::requester::events::{MeshAnswer, MeshEvent};

/// The three embedding routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedApi {
    /// Ollama `POST /api/embed`: `input` (a text or a list), normalised vectors.
    Embed,
    /// Ollama `POST /api/embeddings`: one `prompt`, one vector (not normalised).
    Embeddings,
    /// OpenAI `POST /v1/embeddings`: `input`, vectors as floats or base64.
    OpenAi,
}

impl EmbedApi {
    /// The route's path.
    pub fn path(&self) -> &'static str {
        match self {
            EmbedApi::Embed => "/api/embed",
            EmbedApi::Embeddings => "/api/embeddings",
            EmbedApi::OpenAi => "/v1/embeddings",
        }
    }

    /// The generation API whose error shape it answers in.
    fn errors(&self) -> Api {
        match self {
            EmbedApi::OpenAi => Api::OpenAiCompletion,
            _ => Api::OllamaGenerate,
        }
    }
}

/// An embedding request, read: the delegation it asks for, its inputs, and whether the
/// agent wants base64 (OpenAI's `encoding_format`).
struct EmbedRequest {
    request: DelegateRequest,
    inputs: usize,
    base64: bool,
}

/// Read an embedding request's body for `api`.
fn parse(api: EmbedApi, body: &[u8]) -> Result<EmbedRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or("model is required")?
        .to_string();
    let key = if api == EmbedApi::Embeddings {
        "prompt"
    } else {
        "input"
    };
    let inputs: Vec<String> = match obj.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{key} must be a text or a list of texts"))?,
        _ => return Err(format!("{key} must be a text or a list of texts")),
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(format!("{key} must hold 1 to {MAX_INPUTS} texts"));
    }
    let kind = match api {
        EmbedApi::Embeddings => "embeddings",
        _ => "embed",
    };
    let mut options = Map::new();
    options.insert(EMBED.into(), Value::from(kind));
    for k in ["truncate", "dimensions", "keep_alive"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            options.insert(k.into(), v.clone());
        }
    }
    let base64 = match obj.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("encoding_format {other:?} is not float or base64")),
    };
    let model_digest = obj
        .get("edgent")
        .and_then(|e| e.get("model_digest"))
        .and_then(Value::as_str)
        .map(String::from);
    Ok(EmbedRequest {
        request: DelegateRequest {
            model,
            model_digest,
            prompt: serde_json::to_string(&inputs).unwrap_or_default(),
            options: Some(options),
            ..DelegateRequest::default()
        },
        inputs: inputs.len(),
        base64,
    })
}

/// The route of one embedding API.
pub fn route(api: EmbedApi) -> axum::routing::MethodRouter<Arc<FrontDoor>> {
    axum::routing::post(
        move |State(f): State<Arc<FrontDoor>>,
              caller: Caller,
              uri: Uri,
              h: HeaderMap,
              body: Bytes| { embedding(f, api, caller, uri, h, body) },
    )
}

/// One embedding request: local first, the mesh when it must.
async fn embedding(
    front: Arc<FrontDoor>,
    api: EmbedApi,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let errors = api.errors();
    let mut req = match parse(api, &body) {
        Ok(r) => r,
        Err(msg) => return api_error(errors, StatusCode::BAD_REQUEST, &msg),
    };
    req.request.unpaid_only = !caller.may_spend();
    let started = std::time::Instant::now();
    let mode = front.settings().offload;
    let why = if mode == OffloadMode::Always {
        None
    } else {
        let path = uri.path_and_query().map_or(api.path(), |p| p.as_str());
        let ct = headers.get(header::CONTENT_TYPE);
        let post = reqwest::Method::POST;
        match super::local::forward(&front.http, front.ollama_url(), post, path, ct, body, true)
            .await
        {
            Local::Answer(resp) => {
                let jobs = front.ctx.jobs.clone();
                return super::record::local_answer(jobs, &req.request, started, resp);
            }
            Local::Offload { why, status, body } if mode == OffloadMode::Never => {
                return local_failure(errors, &why, status, body, None)
            }
            Local::Offload { why, status, body } => Some((why, status, body)),
        }
    };
    if let Some((why, _, _)) = &why {
        tracing::info!(model = %req.request.model, reason = why.as_str(), "sending the embedding to the mesh");
    }
    let unpinned = req.request.model_digest.is_none() && !req.request.model.contains('@');
    if matches!(&why, Some((Offload::OutOfMemory(_), _, _))) && unpinned {
        let model = &req.request.model;
        if let Some(d) = front.local_digest(model).await {
            req.request.model_digest = Some(d);
        }
    }
    let delegation =
        crate::requester::events::start(front.requester.clone(), req.request.clone(), false);
    let result = match delegation.await {
        Ok(ans) => whole(ans).await,
        Err(e) => Err(e),
    };
    let (r, job, provider) = match result {
        Ok(x) => x,
        Err(e) => {
            return match why {
                Some((why, status, body)) => local_failure(errors, &why, status, body, Some(&e)),
                None => mesh_error(errors, &e),
            }
        }
    };
    let vectors = match embed::vectors(&r.output, req.inputs) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("the provider's embeddings: {e}");
            return api_error(errors, StatusCode::BAD_GATEWAY, &msg);
        }
    };
    let v = answer(api, &req, &r, vectors);
    let mut resp = Json(v).into_response();
    let h = resp.headers_mut();
    h.insert(super::RAN_ON, HeaderValue::from_static("mesh"));
    if let Ok(v) = HeaderValue::from_str(&job) {
        h.insert(super::JOB, v);
    }
    if let Ok(v) = HeaderValue::from_str(&provider) {
        h.insert(super::PROVIDER, v);
    }
    resp
}

/// The mesh's whole answer, its job id and provider header.
async fn whole(
    ans: MeshAnswer,
) -> Result<(Box<DelegateResponse>, String, String), crate::request::DelegateError> {
    let MeshAnswer {
        job_id,
        provider,
        mut events,
    } = ans;
    while let Some(ev) = events.next().await {
        match ev {
            MeshEvent::Delta(_) => {}
            MeshEvent::Done(r) => {
                return Ok((r, job_id.to_hex(), super::provider_header(&provider)))
            }
            MeshEvent::Failed(e) => return Err(e),
        }
    }
    Err(crate::request::DelegateError::Internal(
        "the mesh answer ended without a result".into(),
    ))
}

/// The vectors in the route's shape, as Ollama writes them.
fn answer(
    api: EmbedApi,
    req: &EmbedRequest,
    r: &DelegateResponse,
    vectors: Vec<Vec<Value>>,
) -> Value {
    let model = &req.request.model;
    let prompt_tokens = r.usage.prompt_tokens.unwrap_or(0);
    match api {
        EmbedApi::Embed => json!({
            "model": model,
            "embeddings": vectors,
            "total_duration": r.usage.inference_ms.saturating_mul(1_000_000),
            "load_duration": 0,
            "prompt_eval_count": prompt_tokens,
        }),
        EmbedApi::Embeddings => {
            json!({"embedding": vectors.into_iter().next().unwrap_or_default()})
        }
        EmbedApi::OpenAi => {
            let data: Vec<Value> = vectors
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = if req.base64 {
                        Value::from(base64_f32(&v))
                    } else {
                        Value::from(v)
                    };
                    json!({"object": "embedding", "embedding": embedding, "index": i})
                })
                .collect();
            json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
        }
    }
}

/// A vector as OpenAI's base64: its numbers as little-endian 32-bit floats.
fn base64_f32(v: &[Value]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_each_route_are_read() {
        let e = parse(
            EmbedApi::Embed,
            br#"{"model":"m","input":"hi","dimensions":8}"#,
        )
        .unwrap();
        assert_eq!(e.request.prompt, r#"["hi"]"#);
        let o = e.request.options.unwrap();
        assert_eq!(o["embed"], "embed");
        assert_eq!(o["dimensions"], 8);
        let l = parse(EmbedApi::Embeddings, br#"{"model":"m","prompt":"hi"}"#).unwrap();
        assert_eq!(l.request.options.unwrap()["embed"], "embeddings");
        let b = parse(
            EmbedApi::OpenAi,
            br#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#,
        )
        .unwrap();
        assert!(b.base64);
        assert_eq!(b.inputs, 2);
        assert!(parse(EmbedApi::OpenAi, br#"{"model":"m","input":[[1,2]]}"#).is_err());
        assert!(parse(EmbedApi::Embed, br#"{"model":"m","input":[]}"#).is_err());
        assert_eq!(base64_f32(&[Value::from(1.0)]), "AACAPw==");
    }
}
