//! The HTTP API and the dashboard.
//!
//! `POST /delegate`, `GET /status`, `GET /jobs?limit=` (and `?since=<cursor>`: only the
//! jobs written since, with the next cursor), `GET /metrics`, `GET /healthz`,
//! and `GET /` (the dashboard, `dashboard/index.html`, embedded in the binary). Handlers
//! are thin: they call into the requester and the job store. Every error is JSON
//! `{error, detail}` with a status that says what kind of failure it was.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::axl::recv::RecvStats;
use crate::axl::PeerKey;
use crate::ctx::NodeCtx;
use crate::jobs::JobRecord;
use crate::provider::{free_memory_mb, BackendStatus, Provider};
use crate::request::{error_body, DelegateError, DelegateRequest, ErrorCode};
use crate::requester::Requester;

/// The dashboard page.
pub const DASHBOARD_HTML: &str = include_str!("../dashboard/index.html");

/// The state of the AXL child as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AxlChildStatus {
    /// `spawned` (supervised child) or `attached` (a node someone else runs).
    pub mode: &'static str,
    /// starting / running / backoff / stopped, or `attached`.
    pub state: String,
    /// Restarts of the child since the daemon started.
    pub restarts: u64,
    /// The child's pid, when spawned and running.
    pub pid: Option<u32>,
    /// AXL's local API.
    pub api_url: String,
}

/// Reports the AXL child's state (the supervisor, or a fixed "attached").
pub trait AxlStatusSource: Send + Sync + 'static {
    /// The current state.
    fn axl_status(&self) -> AxlChildStatus;
}

/// Everything the handlers need.
pub struct AppState {
    /// Shared node state.
    pub ctx: Arc<NodeCtx>,
    /// The requester side.
    pub requester: Arc<Requester>,
    /// The provider side.
    pub provider: Arc<Provider>,
    /// Receive-loop counters.
    pub recv_stats: Arc<RecvStats>,
    /// The AXL child's state.
    pub axl: Arc<dyn AxlStatusSource>,
    /// Whether jobs are paid, why not, and the wallet's balances.
    pub payments: Arc<crate::paid::PaymentsStatus>,
}

/// An API failure: a status and the one JSON error body ([`error_body`]).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    detail: String,
    retry_after_secs: Option<u64>,
    /// More fields of the body (`no_provider`'s counts).
    fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// An error with its code from the API's one table ([`ErrorCode`]).
    pub fn coded(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            detail: detail.into(),
            retry_after_secs: None,
            fields: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(self.code.as_str(), &self.detail, self.fields);
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<DelegateError> for ApiError {
    fn from(e: DelegateError) -> Self {
        let mut err = ApiError::coded(e.code(), e.to_string());
        err.status = StatusCode::from_u16(e.http_status()).unwrap_or(err.status);
        err.retry_after_secs = e.retry_after_secs();
        err.fields = e.fields();
        err
    }
}

/// Build the router.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/", get(dashboard))
        .route("/delegate", post(delegate))
        .route("/status", get(status))
        .route("/jobs", get(jobs))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .fallback(|| async { ApiError::coded(ErrorCode::NotFound, "no such endpoint") })
        .with_state(state);
    // MCP over streamable HTTP: its tools call the routes above in-process.
    api.clone()
        .route_service("/mcp", crate::mcp::http::service(api))
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

async fn delegate(
    State(st): State<Arc<AppState>>,
    caller: crate::guard::Caller,
    body: Result<Json<DelegateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut req) = body.map_err(|e| {
        tracing::info!(error = %e.body_text(), "bad /delegate body");
        ApiError::coded(ErrorCode::BadRequest, e.body_text())
    })?;
    req.unpaid_only = !caller.may_spend();
    if req.stream == Some(true) {
        return crate::front::delegate_ndjson(st.requester.clone(), req)
            .await
            .map_err(ApiError::from);
    }
    // Run the delegation in its own task: an agent that hangs up does not cancel a job
    // already given to a provider, and the job is still recorded to its end.
    let requester = st.requester.clone();
    let handle = tokio::spawn(async move { requester.delegate(req).await });
    match handle.await {
        Ok(res) => Ok(Json(res?).into_response()),
        Err(e) => Err(ApiError::coded(ErrorCode::Internal, e.to_string())),
    }
}

/// One peer in `/status`.
#[derive(Debug, Serialize)]
struct PeerView {
    node_id: String,
    ens: Option<String>,
    up: bool,
    direct: bool,
    /// Its parent in the spanning tree (the hub it hangs off), when the tree says.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    models: Vec<String>,
}

async fn status(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let ctx = &st.ctx;
    let (peers, axl_error) = match ctx.endpoint.topology().await {
        Ok(t) => {
            let parent = |k: &PeerKey| {
                t.tree
                    .iter()
                    .find(|e| PeerKey::from_hex(&e.public_key).is_ok_and(|p| p == *k))
                    .and_then(|e| PeerKey::from_hex(&e.parent).ok())
                    .filter(|p| p != k)
                    .map(|p| p.to_hex())
            };
            let view = |k: PeerKey, up: bool, direct: bool| {
                let seen = ctx.mesh.peers.get(&k);
                PeerView {
                    node_id: k.to_hex(),
                    ens: ctx.mesh.names.shown(
                        &k,
                        seen.as_ref().and_then(|s| s.ens.as_deref()),
                        None,
                    ),
                    up,
                    direct,
                    parent: parent(&k),
                    models: seen.map(|s| s.models).unwrap_or_default(),
                }
            };
            let mut out: Vec<PeerView> = Vec::new();
            for p in &t.peers {
                if let Ok(k) = PeerKey::from_hex(&p.public_key) {
                    out.push(view(k, p.up, true));
                }
            }
            for k in t.reachable_nodes() {
                if !out.iter().any(|p| p.node_id == k.to_hex()) {
                    out.push(view(k, true, false));
                }
            }
            (out, None)
        }
        Err(e) => (Vec::new(), Some(crate::redact::urls(&e.to_string()))),
    };
    // The payments' reason and balance error quote transport errors, whose URL may carry
    // the RPC provider's key.
    let mut payments = st.payments.snapshot().await;
    for key in ["reason", "balances_error"] {
        if let Some(serde_json::Value::String(text)) = payments.get_mut(key) {
            *text = crate::redact::urls(text);
        }
    }
    let backend: BackendStatus = st.provider.status();
    Json(json!({
        "node_id": ctx.endpoint.me().to_hex(),
        "ipv6": ctx.endpoint.me().ipv6().to_string(),
        "ens": ctx.config.node.ens_name,
        "role": ctx.config.node.role.as_str(),
        "payments": payments,
        "chain": ctx.config.payments.chain().filter(|_| st.payments.is_active()).map(|c| json!({
            "chain_id": c.chain_id,
            "escrow": format!("{:#x}", c.escrow),
            "wallet": c.wallet_signer().ok().map(|s| format!("{:#x}", s.address())),
        })),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": ctx.uptime().as_secs(),
        "axl": st.axl.axl_status(),
        "axl_error": axl_error,
        "peers": peers,
        "models": backend.models,
        "backend": backend,
        "price_usdc": crate::config::format_usdc(ctx.config.provider.price_units),
        "free_memory_mb": free_memory_mb(),
        "active_jobs": st.provider.active_jobs(),
        "recv": st.recv_stats.snapshot(),
        "mesh_providers": ctx.mesh.ads.providers().into_iter().map(|mut p| {
            if let Ok(k) = PeerKey::from_hex(&p.node_id) {
                p.ens = ctx.mesh.names.shown(&k, p.ens.as_deref(), None);
            }
            p
        }).collect::<Vec<_>>(),
        "mesh_models": ctx.mesh.ads.models(),
        "known_nodes": ctx.mesh.directory.len(),
        "provider_history": ctx.mesh.history.all().into_iter().take(50).collect::<Vec<_>>(),
        "caught_providers": st.requester.caught(),
        "streams_open": st.requester.streams_open(),
        "evidence_unconfirmed": st.requester.evidence_unconfirmed(),
        "evidence_dropped": st.requester.evidence_counts().0,
        "evidence_confirmed": st.requester.evidence_counts().1,
    }))
}

#[derive(Debug, Deserialize)]
struct JobsQuery {
    limit: Option<usize>,
    /// A cursor from an earlier `?since=` answer (0: from the start).
    since: Option<u64>,
}

/// `/jobs?since=`: the jobs written after the cursor, and the cursor to ask from next.
#[derive(Debug, Serialize)]
struct JobsSince {
    jobs: Vec<JobRecord>,
    cursor: u64,
    truncated: bool,
}

/// `GET /jobs?limit=N`: the newest jobs, as an array. With `since=<cursor>`: an object
/// with only the jobs written after the cursor (latest change first), the next cursor,
/// and whether more than `limit` changed (the earliest changes left out).
async fn jobs(
    State(st): State<Arc<AppState>>,
    q: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::coded(ErrorCode::BadRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let internal = |e: crate::jobs::JobError| ApiError::coded(ErrorCode::Internal, e.to_string());
    match q.since {
        None => Ok(Json(st.ctx.jobs.list(limit).map_err(internal)?).into_response()),
        Some(since) => {
            let c = st.ctx.jobs.changed_since(since, limit).map_err(internal)?;
            Ok(Json(JobsSince {
                jobs: c.jobs,
                cursor: c.cursor,
                truncated: c.truncated,
            })
            .into_response())
        }
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    if let Ok(counts) = st.ctx.jobs.counts() {
        st.ctx.metrics.set_jobs(&counts);
    }
    st.ctx.metrics.set_recv(&st.recv_stats.snapshot());
    let pending = &st.ctx.endpoint.delivery().reliable.pending;
    st.ctx
        .metrics
        .set_pending_acks(pending.len(), pending.peaks());
    let h = st.ctx.endpoint.delivery().handlers.counts();
    for (name, v) in [
        ("handlers", h.running as i64),
        ("handlers_peak", h.peak as i64),
        ("handlers_peer_peak", h.peer_peak as i64),
        ("handlers_dropped", h.dropped as i64),
        ("directory", st.ctx.mesh.directory.len() as i64),
        (
            "directory_hearsay",
            st.ctx.mesh.directory.hearsay_len() as i64,
        ),
    ] {
        st.ctx.metrics.table(name).set(v);
    }
    st.ctx
        .metrics
        .axl_restarts
        .set(st.axl.axl_status().restarts as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.ctx.metrics.render(),
    )
        .into_response()
}
