//! The front door agents already speak: Ollama's and OpenAI's HTTP APIs on the daemon.
//!
//! An agent points `OLLAMA_HOST` (or an OpenAI `base_url`) at edgent and changes nothing
//! else. Routes: Ollama `POST /api/generate`, `POST /api/chat`, `POST /api/embed`,
//! `POST /api/embeddings` ([`embed`]), `GET /api/tags`, `GET /api/ps`, `POST /api/show`,
//! `GET /api/version`; OpenAI `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`. They are served on the daemon's address and,
//! with `EDGENT_OLLAMA_ADDR`, on a second address that serves only them (plus Ollama's
//! `GET /` and `HEAD /` "Ollama is running"), so `OLLAMA_HOST` can point there.
//!
//! Local first ([`local`]): a request goes to the local Ollama (`OLLAMA_URL`) and its
//! answer streams back unchanged. It goes to the mesh instead ([`offload`]) when Ollama
//! answers out-of-memory, does not have the model, or cannot be reached
//! (`EDGENT_OFFLOAD=oom`, the default); before Ollama runs out of memory, when the model
//! is predicted not to fit ([`predict`], `predict`); always (`always`); or never (`never`). A mesh
//! answer comes back in the API's own format ([`ollama`], [`openai`]). Every answer says
//! where it ran: `X-Edgent-Ran-On: local|mesh`, and for the mesh `X-Edgent-Job` and
//! `X-Edgent-Provider` (node id, then the ENS name when it has one). A request that goes
//! to the mesh because the local Ollama is out of memory is pinned to the local model's
//! digest ([`pin`]). A request the local Ollama answers is recorded as a `local` job
//! ([`record`]), so `/jobs` lists every request. A local stream that breaks after text
//! reached the agent is continued by the mesh in the same stream ([`rescue`]).
//!
//! Which requests get in at all is [`crate::guard`]'s job, for every route of the daemon;
//! its settings are read with the front door's ([`crate::config::FrontSettings`]).

pub mod agent;
pub mod embed;
pub mod headers;

pub mod local;
pub mod offload;
pub mod ollama;
pub mod openai;
pub mod pin;
pub mod predict;
pub mod record;
pub mod rescue;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};

pub use crate::config::{FrontSettings, OffloadMode};
use crate::ctx::NodeCtx;
use crate::guard::Caller;
use crate::requester::Requester;

use self::agent::{AgentRequest, Api};
use self::local::{Local, Offload};
use crate::requester::events::{MeshAnswer, MeshEvent};

pub use self::headers::{JOB, PROVIDER, RAN_ON};

/// The Ollama API version the front door speaks, answered by `/api/version` when the
/// local Ollama cannot be asked.
pub const OLLAMA_API_VERSION: &str = "0.17.4";

impl FrontSettings {
    /// The guard for a listener on `addr`.
    pub fn guard_for(&self, addr: SocketAddr) -> crate::guard::GuardSettings {
        crate::guard::GuardSettings {
            token: self.token.clone(),
            origins: self.origins.clone(),
            check_host: addr.ip().is_loopback(),
        }
    }
}

/// What the front door's handlers share.
pub struct FrontDoor {
    /// Shared node state.
    pub ctx: Arc<NodeCtx>,
    /// Delegation over the mesh.
    pub requester: Arc<Requester>,
    http: reqwest::Client,
    /// The local models' weights digests, kept ([`pin`]).
    weights: Arc<crate::inference::weights::WeightsCache>,
}

impl FrontDoor {
    /// The front door of a node.
    pub fn new(ctx: Arc<NodeCtx>, requester: Arc<Requester>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(FrontDoor {
            ctx,
            requester,
            http,
            weights: Arc::default(),
        })
    }

    /// The weights' digest of the local `model` ([`pin::local_digest`]).
    async fn local_digest(&self, model: &str) -> Option<String> {
        pin::local_digest(&self.http, self.ollama_url(), &self.weights, model).await
    }

    /// Learn the local `model`'s digest ahead of need ([`pin::learn`]).
    fn learn_digest(&self, model: &str) {
        pin::learn(
            self.http.clone(),
            self.ollama_url().to_string(),
            self.weights.clone(),
            model.to_string(),
        );
    }

    fn settings(&self) -> &FrontSettings {
        &self.ctx.config.front
    }

    fn ollama_url(&self) -> &str {
        &self.ctx.config.inference.ollama_url
    }
}

/// The Ollama and OpenAI routes, for the daemon's router.
pub fn router(front: Arc<FrontDoor>) -> Router {
    Router::new()
        .route("/api/generate", generation_route(Api::OllamaGenerate))
        .route("/api/chat", generation_route(Api::OllamaChat))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(passthrough))
        .route("/api/show", post(passthrough))
        .route("/api/version", get(version))
        .route("/v1/chat/completions", generation_route(Api::OpenAiChat))
        .route("/v1/completions", generation_route(Api::OpenAiCompletion))
        .route("/v1/models", get(models))
        .route("/api/embed", embed::route(embed::EmbedApi::Embed))
        .route("/api/embeddings", embed::route(embed::EmbedApi::Embeddings))
        .route("/v1/embeddings", embed::route(embed::EmbedApi::OpenAi))
        .with_state(front)
}

/// The second address (`EDGENT_OLLAMA_ADDR`): only the Ollama and OpenAI routes, plus
/// Ollama's `GET /` and `HEAD /`; everything else is 404 in Ollama's shape.
pub fn ollama_only_router(front: Arc<FrontDoor>) -> Router {
    router(front)
        .route(
            "/",
            get(|| async { "Ollama is running" }).head(|| async { StatusCode::OK }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
}

/// The route of one generation API: the body goes to [`generation`] as `api`.
fn generation_route(api: Api) -> MethodRouter<Arc<FrontDoor>> {
    post(
        move |State(f): State<Arc<FrontDoor>>,
              caller: Caller,
              uri: Uri,
              h: HeaderMap,
              body: Bytes| { generation(f, api, caller, uri, h, body) },
    )
}

/// An error in the API's own shape (URLs in it cut, [`crate::redact`]).
fn api_error(api: Api, status: StatusCode, message: &str) -> Response {
    let body = if api.openai() {
        openai::error(status.as_u16(), message)
    } else {
        ollama::error(message)
    };
    (status, Json(body)).into_response()
}

/// A delegation's failure in the API's own shape: a provider's backend refusal with its
/// own status and message, as the agent's own Ollama would have answered it.
fn mesh_error(api: Api, e: &crate::request::DelegateError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    match e {
        crate::request::DelegateError::Rejected { message, .. } => api_error(api, status, message),
        other => api_error(api, status, &other.to_string()),
    }
}

/// One generation request: local first, the mesh when it must (and, for a caller without
/// the API token, only while it is unpaid).
async fn generation(
    front: Arc<FrontDoor>,
    api: Api,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = match agent::parse(api, &body) {
        Ok(r) => r,
        Err(msg) => return api_error(api, StatusCode::BAD_REQUEST, &msg),
    };
    req.request.unpaid_only = !caller.may_spend();
    let started = std::time::Instant::now();
    let mode = front.settings().offload;
    let path = uri.path_and_query().map_or(api.path(), |p| p.as_str());
    // The generation as the agent sent it, to the local Ollama.
    let send_local = |body: Bytes| {
        local::forward(
            &front.http,
            front.ollama_url(),
            reqwest::Method::POST,
            path,
            headers.get(header::CONTENT_TYPE),
            body,
            true,
        )
    };
    let predicted = match mode {
        OffloadMode::Predict => predict_offload(&front, &req.request).await,
        _ => None,
    };
    let why = if mode == OffloadMode::Always {
        None
    } else if let Some(verdict) = &predicted {
        tracing::info!(model = %req.request.model, %verdict, "not sent to the local Ollama");
        Some((
            Offload::OutOfMemory(verdict.to_string()),
            None,
            Bytes::new(),
        ))
    } else {
        match send_local(body.clone()).await {
            Local::Answer(resp) => {
                let resp =
                    record::local_answer(front.ctx.jobs.clone(), &req.request, started, resp);
                return rescue::guard(front.clone(), api, &req, resp);
            }
            Local::Offload { why, status, body } if mode == OffloadMode::Never => {
                return local_failure(api, &why, status, body, None)
            }
            Local::Offload { why, status, body } => Some((why, status, body)),
        }
    };
    if !req.uncarried.is_empty() {
        let fields = req.uncarried.join(", ");
        let local = why
            .as_ref()
            .map(|(w, _, _)| format!(" (the local Ollama: {})", w.message()))
            .unwrap_or_default();
        tracing::warn!(model = %req.request.model, %fields, "refused: the mesh cannot carry these fields");
        let msg =
            format!("the mesh cannot carry {fields} yet; send the request without them{local}");
        return api_error(api, StatusCode::BAD_REQUEST, &msg);
    }
    if let Some((why, _, _)) = &why {
        tracing::info!(model = %req.request.model, reason = why.as_str(), local = %why.message(), "sending the request to the mesh");
    }
    // Out of memory: the local Ollama holds the very model; ask the mesh for it by digest.
    let unpinned = req.request.model_digest.is_none() && !req.request.model.contains('@');
    if matches!(&why, Some((Offload::OutOfMemory(_), _, _))) && unpinned {
        let model = &req.request.model;
        if let Some(d) = front.local_digest(model).await {
            tracing::info!(%model, digest = %d, "the local Ollama holds the model: the mesh must serve this digest");
            req.request.model_digest = Some(d);
        }
    }
    let delegation =
        crate::requester::events::start(front.requester.clone(), req.request.clone(), req.stream);
    match delegation.await {
        Ok(ans) => mesh_response(api, &req, ans).await,
        // The prediction may be wrong: the local Ollama gets its chance.
        Err(e) if predicted.is_some() => {
            tracing::info!(model = %req.request.model, mesh = %e, "the mesh did not answer a predicted offload: trying the local Ollama");
            let forwarded = send_local(body).await;
            match forwarded {
                Local::Answer(resp) => {
                    let resp =
                        record::local_answer(front.ctx.jobs.clone(), &req.request, started, resp);
                    rescue::guard(front.clone(), api, &req, resp)
                }
                Local::Offload { why, status, body } => {
                    local_failure(api, &why, status, body, Some(&e))
                }
            }
        }
        Err(e) => match why {
            Some((why, status, body)) => local_failure(api, &why, status, body, Some(&e)),
            None => mesh_error(api, &e),
        },
    }
}

/// `EDGENT_OFFLOAD=predict`: whether the request should skip the local Ollama ([`predict`]).
async fn predict_offload(
    front: &FrontDoor,
    req: &crate::request::DelegateRequest,
) -> Option<predict::Verdict> {
    let num_ctx = req
        .options
        .as_ref()
        .and_then(|o| o.get("num_ctx"))
        .and_then(serde_json::Value::as_u64);
    predict::predict(
        &front.http,
        front.ollama_url(),
        &req.model,
        num_ctx,
        front.settings().local_memory,
    )
    .await
}

/// Neither the local Ollama nor the mesh could answer: Ollama's own answer when it gave
/// one (a missing model stays Ollama's 404), else a 502 saying both.
fn local_failure(
    api: Api,
    why: &Offload,
    status: Option<StatusCode>,
    body: Bytes,
    mesh: Option<&crate::request::DelegateError>,
) -> Response {
    if let Some(e) = mesh {
        tracing::warn!(local = %why.message(), mesh = %e, "neither the local Ollama nor the mesh answered");
    }
    match status {
        Some(status) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(RAN_ON, HeaderValue::from_static("local"));
            resp
        }
        None => {
            let msg = match mesh {
                Some(e) => format!("{}; the mesh: {e}", why.message()),
                None => why.message().to_string(),
            };
            api_error(api, StatusCode::BAD_GATEWAY, &msg)
        }
    }
}

/// The mesh's answer in the API's format, streamed or whole.
async fn mesh_response(api: Api, req: &AgentRequest, ans: MeshAnswer) -> Response {
    let MeshAnswer {
        job_id,
        provider,
        mut events,
    } = ans;
    let job_hex = job_id.to_hex();
    let provider_header = provider_header(&provider);
    let model = req.request.model.clone();
    let id = openai::answer_id(api, &job_hex);
    let (ct, body) = if req.stream {
        // Headers wait for the first event, as Ollama's do: a failure before any text (a
        // provider's backend refusing the request) is answered with its own status.
        let first = match events.next().await {
            Some(MeshEvent::Failed(e)) => return mesh_error(api, &e),
            Some(ev) => Some(ev),
            None => None,
        };
        let events = futures_util::stream::iter(first).chain(events);
        let include_usage = req.include_usage;
        let stream = events.map(move |ev| -> Result<Bytes, std::convert::Infallible> {
            let bytes: Vec<u8> = match (api.openai(), ev) {
                (false, MeshEvent::Delta(t)) => ollama::line(&ollama::delta(api, &model, &t)),
                (false, MeshEvent::Done(r)) => {
                    let mut b = ollama::tool_line(api, &model, &r)
                        .map(|v| ollama::line(&v))
                        .unwrap_or_default();
                    b.extend(ollama::line(&ollama::done(api, &model, &r, false)));
                    b
                }
                (false, MeshEvent::Failed(e)) => ollama::line(&ollama::error(&e.to_string())),
                (true, MeshEvent::Delta(t)) => {
                    openai::event(&openai::chunk(api, &id, &model, &t, None))
                }
                (true, MeshEvent::Done(r)) => {
                    let mut b = Vec::new();
                    if !r.tool_calls.is_empty() {
                        b.extend(openai::event(&openai::tool_chunk(api, &id, &model, &r)));
                    }
                    b.extend(openai::event(&openai::last_chunk(api, &id, &model, &r)));
                    if include_usage {
                        b.extend(openai::event(&openai::usage_chunk(api, &id, &model, &r)));
                    }
                    b.extend_from_slice(openai::DONE);
                    b
                }
                (true, MeshEvent::Failed(e)) => {
                    let mut b = openai::event(&openai::error(502, &e.to_string()));
                    b.extend_from_slice(openai::DONE);
                    b
                }
            };
            Ok(Bytes::from(bytes))
        });
        let ct = if api.openai() {
            openai::SSE
        } else {
            ollama::NDJSON
        };
        (ct, Body::from_stream(stream))
    } else {
        let mut last = None;
        while let Some(ev) = events.next().await {
            match ev {
                MeshEvent::Delta(_) => {}
                MeshEvent::Done(r) => {
                    last = Some(Ok(r));
                    break;
                }
                MeshEvent::Failed(e) => {
                    last = Some(Err(e));
                    break;
                }
            }
        }
        let r = match last {
            Some(Ok(r)) => r,
            Some(Err(e)) => return mesh_error(api, &e),
            None => {
                return api_error(
                    api,
                    StatusCode::BAD_GATEWAY,
                    "the mesh answer ended without a result",
                )
            }
        };
        let v = if api.openai() {
            openai::whole(api, &id, &model, &r)
        } else {
            ollama::done(api, &model, &r, true)
        };
        (
            "application/json; charset=utf-8",
            Body::from(serde_json::to_vec(&v).unwrap_or_default()),
        )
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(RAN_ON, HeaderValue::from_static("mesh"));
    if let Ok(v) = HeaderValue::from_str(&job_hex) {
        h.insert(JOB, v);
    }
    if let Ok(v) = HeaderValue::from_str(&provider_header) {
        h.insert(PROVIDER, v);
    }
    resp
}

/// `POST /delegate` with `stream: true`: NDJSON, `{"delta": "..."}` per piece of output as
/// the provider generates it, then the whole answer (or `{error, detail}`) as the last
/// line; `X-Edgent-Job` and `X-Edgent-Provider` say which job and provider. An agent that
/// hangs up cancels the job.
pub async fn delegate_ndjson(
    requester: Arc<Requester>,
    req: crate::request::DelegateRequest,
) -> Result<Response, crate::request::DelegateError> {
    let MeshAnswer {
        job_id,
        provider,
        events,
    } = crate::requester::events::start(requester, req, true).await?;
    let body = events.map(|ev| -> Result<Bytes, std::convert::Infallible> {
        let v = match ev {
            MeshEvent::Delta(d) => json!({"delta": d}),
            MeshEvent::Done(r) => serde_json::to_value(&*r).unwrap_or(Value::Null),
            MeshEvent::Failed(e) => Value::Object(e.body()),
        };
        Ok(Bytes::from(ollama::line(&v)))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ollama::NDJSON),
    );
    h.insert(RAN_ON, HeaderValue::from_static("mesh"));
    if let Ok(v) = HeaderValue::from_str(&job_id.to_hex()) {
        h.insert(JOB, v);
    }
    if let Ok(v) = HeaderValue::from_str(&provider_header(&provider)) {
        h.insert(PROVIDER, v);
    }
    Ok(resp)
}

fn provider_header(p: &crate::request::ProviderInfo) -> String {
    match &p.ens {
        Some(ens) => format!("{} {ens}", p.node_id.to_hex()),
        None => p.node_id.to_hex(),
    }
}

/// `/api/ps`, `/api/show`: the local Ollama's answer, as it is.
async fn passthrough(
    State(f): State<Arc<FrontDoor>>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    match local::forward(
        &f.http,
        f.ollama_url(),
        m,
        path,
        h.get(header::CONTENT_TYPE),
        body,
        false,
    )
    .await
    {
        Local::Answer(r) => r,
        Local::Offload { why, .. } => {
            api_error(Api::OllamaGenerate, StatusCode::BAD_GATEWAY, why.message())
        }
    }
}

/// `/api/version`: the local Ollama's, or the version of the API spoken here.
async fn version(State(f): State<Arc<FrontDoor>>) -> Response {
    match local::forward(
        &f.http,
        f.ollama_url(),
        reqwest::Method::GET,
        "/api/version",
        None,
        Bytes::new(),
        false,
    )
    .await
    {
        Local::Answer(r) if r.status().is_success() => r,
        _ => Json(json!({"version": OLLAMA_API_VERSION})).into_response(),
    }
}

/// The local Ollama's JSON at `path`, or None when it cannot be had.
async fn local_json(f: &FrontDoor, path: &str) -> Option<Value> {
    let r = f
        .http
        .get(format!("{}{path}", f.ollama_url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Models the mesh advertises (the peer book's last ads), sorted, once each.
fn mesh_models(f: &FrontDoor) -> BTreeSet<String> {
    f.ctx.mesh.peers.models().into_iter().collect()
}

/// The local backend's model list at `path` (the array under `key`, named by `name`), then
/// an entry made by `entry` for each mesh model that is not local, once each.
async fn local_then_mesh(
    f: &FrontDoor,
    (path, key, name): (&str, &str, &str),
    entry: impl Fn(&str) -> Value,
) -> Vec<Value> {
    let mut list: Vec<Value> = local_json(f, path)
        .await
        .and_then(|v| v.get(key).and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let local: Vec<String> = list
        .iter()
        .filter_map(|m| m.get(name).and_then(Value::as_str).map(String::from))
        .collect();
    for m in mesh_models(f) {
        if !local.iter().any(|l| crate::inference::model_matches(&m, l)) {
            list.push(entry(&m));
        }
    }
    list
}

/// `/api/tags`: the local models, then the mesh's that are not local, once each.
async fn tags(State(f): State<Arc<FrontDoor>>) -> Response {
    let now = offload::rfc3339_now();
    let list = local_then_mesh(&f, ("/api/tags", "models", "name"), |m| {
        json!({
            "name": m, "model": m, "modified_at": now, "size": 0, "digest": "",
            "remote_host": "edgent-mesh",
            "details": {"parent_model": "", "format": "", "family": "", "families": null,
                        "parameter_size": "", "quantization_level": ""},
        })
    })
    .await;
    Json(json!({"models": list})).into_response()
}

/// `/v1/models`: the local models, then the mesh's that are not local, once each.
async fn models(State(f): State<Arc<FrontDoor>>) -> Response {
    let now = offload::unix_now();
    let data = local_then_mesh(
        &f,
        ("/v1/models", "data", "id"),
        |m| json!({"id": m, "object": "model", "created": now, "owned_by": "edgent-mesh"}),
    )
    .await;
    Json(json!({"object": "list", "data": data})).into_response()
}
