//! **KeeperHub emulator — a test and demo harness, not KeeperHub.** KeeperHub's hosted
//! API cannot run here, so this axum server speaks its two Direct Execution endpoints
//! as documented and *really* executes each call on the given chain (anvil) with the
//! operator key, the way KeeperHub's managed wallet would:
//!
//! - `POST /api/execute/contract-call` `{contractAddress, network, functionName,
//!   functionArgs: "<JSON array string>", abi}` -> `{executionId, status: "pending"}`;
//!   401 without the right key (`Authorization: Bearer` or `X-API-Key`), 400 for a
//!   malformed body, 422 `SPENDING_CAP_EXCEEDED` when that fault is on.
//! - `GET /api/execute/{executionId}/status` -> `{executionId, status, transactionHash,
//!   transactionLink, error}` with status `pending`/`running`/`completed`/`failed`.
//! - An `Idempotency-Key` header, as KeeperHub's API handles it: the key is taken once a
//!   call is valid and accepted (a 401, 400, 422, or an injected 429/500 leaves it free);
//!   the same key with the same body, while its execution runs, answers 409
//!   `{code: "idempotency_in_progress", retryable: true}`, and once it ended, replays the
//!   final result (`{executionId, status, transactionHash | error, idempotentReplay:
//!   true}`, 202), a failure too; the same key with another body answers 409
//!   `idempotency_conflict`. A call without the header executes every time.
//!
//! Faults can be injected at start ([`EmulatorFaults`]) or later through the handle:
//! 500s, 429 with `Retry-After`, a slow status, `failed` executions, a spending cap, and
//! answers lost after the execution was queued (504).
//! Used by the chain tests, the lead's integration tests and `edgent demo`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::dyn_abi::{DynSolType, DynSolValue, JsonAbiExt};
use alloy::json_abi::JsonAbi;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, TxHash};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::chain::error::{ChainError, EscrowError, EscrowRevert};
use crate::chain::rpc::{http_provider, wait_receipt};

/// The API key the emulator accepts unless told otherwise.
pub const EMULATOR_API_KEY: &str = "kh_emulator_test_key";

/// Faults to inject. Counters are consumed one per request.
#[derive(Debug, Clone, Default)]
pub struct EmulatorFaults {
    /// The next N contract-call POSTs answer 500.
    pub post_500s: usize,
    /// The next N contract-call POSTs answer 429 with `Retry-After: retry_after_secs`.
    pub post_429s: usize,
    /// Seconds sent in `Retry-After` (fractions allowed, e.g. "0.2").
    pub retry_after_secs: f64,
    /// Status stays `running` this long after the POST, even if the tx is mined.
    pub status_delay: Duration,
    /// The next N accepted executions end `failed` without sending anything.
    pub failed_executions: usize,
    /// Every POST answers 422 SPENDING_CAP_EXCEEDED while set.
    pub spending_cap: bool,
    /// The next N accepted contract-calls queue and run their execution, then answer 504:
    /// the answer is lost on its way back (a gateway timing out after forwarding), so the
    /// caller cannot tell that the call was queued.
    pub lost_answers: usize,
    /// How long an accepted execution waits in KeeperHub's queue before it sends its
    /// transaction.
    pub execution_delay: Duration,
}

/// One contract-call the emulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// Assigned execution id.
    pub execution_id: String,
    /// `functionName`.
    pub function: String,
    /// `functionArgs`, parsed from the string.
    pub args: Vec<String>,
    /// `network`.
    pub network: String,
}

#[derive(Debug, Clone)]
enum ExecState {
    Running,
    Completed(TxHash),
    Failed(String),
}

#[derive(Debug)]
struct Execution {
    started: Instant,
    state: ExecState,
}

/// One `Idempotency-Key` taken: the body it was taken with and its execution.
#[derive(Debug)]
struct KeyEntry {
    body: Value,
    execution_id: String,
}

#[derive(Debug, Default)]
struct Shared {
    faults: EmulatorFaults,
    executions: HashMap<String, Execution>,
    keys: HashMap<String, KeyEntry>,
    calls: Vec<RecordedCall>,
    posts: usize,
    replays: usize,
    in_progress: usize,
    sent: usize,
    next_id: u64,
}

struct Inner {
    provider: DynProvider,
    escrow: Address,
    api_key: String,
    shared: Mutex<Shared>,
    /// One transaction at a time from the operator wallet, so nonces never race.
    send_lock: tokio::sync::Mutex<()>,
}

/// A running emulator; the server stops when this is dropped.
pub struct KeeperHubEmulator {
    url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KeeperHubEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperHubEmulator")
            .field("url", &self.url)
            .finish()
    }
}

impl Drop for KeeperHubEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The chain endpoint is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The listening socket could not be opened.
    #[error("cannot bind the emulator's port: {0}")]
    Bind(#[from] std::io::Error),
}

impl KeeperHubEmulator {
    /// Starts on a free 127.0.0.1 port, executing on `rpc_url` against `escrow` only,
    /// signing with `operator_key`. Accepts [`EMULATOR_API_KEY`].
    pub async fn start(
        rpc_url: &str,
        escrow: Address,
        operator_key: PrivateKeySigner,
        faults: EmulatorFaults,
    ) -> Result<Self, EmulatorError> {
        let provider = http_provider(rpc_url, Some(operator_key))?;
        let inner = Arc::new(Inner {
            provider,
            escrow,
            api_key: EMULATOR_API_KEY.to_string(),
            shared: Mutex::new(Shared {
                faults,
                ..Shared::default()
            }),
            send_lock: tokio::sync::Mutex::new(()),
        });
        let app = Router::new()
            .route("/api/execute/contract-call", post(contract_call))
            .route("/api/execute/{id}/status", get(status))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "KeeperHub emulator stopped");
            }
        });
        tracing::info!(%url, %escrow, "KeeperHub emulator (test harness) listening");
        Ok(Self { url, inner, task })
    }

    /// Base URL, to use as `KEEPERHUB_API_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key it accepts, to use as `KEEPERHUB_API_KEY`.
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: EmulatorFaults) {
        self.inner.shared.lock().faults = faults;
    }

    /// The next `n` POSTs answer 500.
    pub fn fail_next_posts(&self, n: usize) {
        self.inner.shared.lock().faults.post_500s = n;
    }

    /// The next `n` POSTs answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next_posts(&self, n: usize, secs: f64) {
        let mut s = self.inner.shared.lock();
        s.faults.post_429s = n;
        s.faults.retry_after_secs = secs;
    }

    /// Status answers `running` for `d` after each POST.
    pub fn set_status_delay(&self, d: Duration) {
        self.inner.shared.lock().faults.status_delay = d;
    }

    /// Accepted executions wait `d` before sending their transaction.
    pub fn set_execution_delay(&self, d: Duration) {
        self.inner.shared.lock().faults.execution_delay = d;
    }

    /// The next `n` accepted contract-calls run, but their answer is lost (504).
    pub fn lose_next_answers(&self, n: usize) {
        self.inner.shared.lock().faults.lost_answers = n;
    }

    /// The next `n` accepted executions end `failed` without a transaction.
    pub fn fail_next_executions(&self, n: usize) {
        self.inner.shared.lock().faults.failed_executions = n;
    }

    /// Turns the 422 spending-cap answer on or off.
    pub fn set_spending_cap(&self, on: bool) {
        self.inner.shared.lock().faults.spending_cap = on;
    }

    /// Every contract-call accepted so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.shared.lock().calls.clone()
    }

    /// Number of contract-call POSTs received (including refused ones).
    pub fn posts(&self) -> usize {
        self.inner.shared.lock().posts
    }

    /// Number of POSTs answered with an earlier result under their `Idempotency-Key`.
    pub fn replays(&self) -> usize {
        self.inner.shared.lock().replays
    }

    /// Number of POSTs answered 409 `idempotency_in_progress`.
    pub fn in_progress_answers(&self) -> usize {
        self.inner.shared.lock().in_progress
    }

    /// Number of transactions it sent to the chain.
    pub fn transactions_sent(&self) -> usize {
        self.inner.shared.lock().sent
    }
}

fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": code, "detail": detail.into()})),
    )
        .into_response()
}

fn authorised(inner: &Inner, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer == Some(inner.api_key.as_str()) || api_key == Some(inner.api_key.as_str())
}

/// Consumes one of a fault counter's remaining uses: whether one was left.
fn take_one(remaining: &mut usize) -> bool {
    let left = *remaining > 0;
    if left {
        *remaining -= 1;
    }
    left
}

async fn contract_call(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    {
        let mut s = inner.shared.lock();
        s.posts += 1;
        if take_one(&mut s.faults.post_500s) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "injected fault",
            );
        }
        if take_one(&mut s.faults.post_429s) {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "injected fault",
            );
            if let Ok(v) = s.faults.retry_after_secs.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
    }
    if !authorised(&inner, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key");
    }
    if inner.shared.lock().faults.spending_cap {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SPENDING_CAP_EXCEEDED",
            "daily spending cap exceeded",
        );
    }
    let call = match parse_call(&inner, &body) {
        Ok(c) => c,
        Err(detail) => return error(StatusCode::BAD_REQUEST, "invalid_request", detail),
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let (id, fail, delay) = {
        let mut s = inner.shared.lock();
        if let Some(key) = &key {
            if let Some(early) = idempotent_answer(&mut s, key, &call.body) {
                return early;
            }
        }
        s.next_id += 1;
        let id = format!("direct_emu_{}", s.next_id);
        if let Some(key) = key {
            s.keys.insert(
                key,
                KeyEntry {
                    body: call.body.clone(),
                    execution_id: id.clone(),
                },
            );
        }
        let fail = take_one(&mut s.faults.failed_executions);
        s.executions.insert(
            id.clone(),
            Execution {
                started: Instant::now(),
                state: ExecState::Running,
            },
        );
        s.calls.push(RecordedCall {
            execution_id: id.clone(),
            function: call.function.clone(),
            args: call.args.clone(),
            network: call.network.clone(),
        });
        (id, fail, s.faults.execution_delay)
    };
    let task_inner = inner.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let state = if fail {
            ExecState::Failed("injected fault: execution failed".into())
        } else {
            execute(&task_inner, call.input).await
        };
        if let Some(e) = task_inner.shared.lock().executions.get_mut(&task_id) {
            e.state = state;
        }
    });
    {
        let mut s = inner.shared.lock();
        if take_one(&mut s.faults.lost_answers) {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "injected fault: the execution was queued, its answer lost",
            );
        }
    }
    (
        StatusCode::OK,
        Json(json!({"executionId": id, "status": "pending"})),
    )
        .into_response()
}

/// The answer to a POST under a key already taken, if it was: 409 while its execution
/// runs or for another body, else the execution's final result replayed.
fn idempotent_answer(s: &mut Shared, key: &str, body: &Value) -> Option<Response> {
    let entry = s.keys.get(key)?;
    if entry.body != *body {
        return Some(
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "Idempotency-Key was reused with a different request payload.",
                    "code": "idempotency_conflict",
                    "originalExecutionId": entry.execution_id,
                    "retryable": false,
                })),
            )
                .into_response(),
        );
    }
    let id = entry.execution_id.clone();
    let state = s.executions.get(&id).map(|e| e.state.clone());
    let body = match state {
        Some(ExecState::Completed(tx)) => json!({
            "executionId": id,
            "status": "completed",
            "transactionHash": format!("{tx:#x}"),
            "transactionLink": format!("https://sepolia.basescan.org/tx/{tx:#x}"),
            "idempotentReplay": true,
        }),
        Some(ExecState::Failed(e)) => json!({
            "executionId": id,
            "status": "failed",
            "error": e,
            "idempotentReplay": true,
        }),
        Some(ExecState::Running) | None => {
            s.in_progress += 1;
            return Some(
                (
                    StatusCode::CONFLICT,
                    Json(json!({
                        "error": "A request with this Idempotency-Key is already being processed.",
                        "code": "idempotency_in_progress",
                        "retryable": true,
                    })),
                )
                    .into_response(),
            );
        }
    };
    s.replays += 1;
    Some((StatusCode::ACCEPTED, Json(body)).into_response())
}

struct ParsedCall {
    /// The body as JSON, which an `Idempotency-Key` is bound to.
    body: Value,
    function: String,
    args: Vec<String>,
    network: String,
    input: Vec<u8>,
}

/// Validates the body as KeeperHub documents it and ABI-encodes the call.
fn parse_call(inner: &Inner, body: &[u8]) -> Result<ParsedCall, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{k} must be a string"))
    };
    let address: Address = s("contractAddress")?
        .parse()
        .map_err(|_| "contractAddress is not an address".to_string())?;
    if address != inner.escrow {
        return Err(format!(
            "this emulator only executes on {}, not {address}",
            inner.escrow
        ));
    }
    let network = s("network")?;
    let function = s("functionName")?;
    let args_text =
        s("functionArgs").map_err(|_| "functionArgs must be a JSON array string".to_string())?;
    let args: Vec<Value> = serde_json::from_str(&args_text)
        .map_err(|_| "functionArgs must be a JSON array string".to_string())?;
    let abi_value = v.get("abi").ok_or("abi is required")?;
    let abi: JsonAbi = match abi_value {
        Value::String(text) => serde_json::from_str(text),
        other => serde_json::from_value(other.clone()),
    }
    .map_err(|e| format!("abi does not parse: {e}"))?;
    let func = abi
        .function(&function)
        .and_then(|f| f.iter().find(|f| f.inputs.len() == args.len()))
        .ok_or_else(|| format!("abi has no {function} taking {} arguments", args.len()))?;
    let mut values: Vec<DynSolValue> = Vec::with_capacity(args.len());
    let mut arg_strings = Vec::with_capacity(args.len());
    for (param, arg) in func.inputs.iter().zip(&args) {
        let text = match arg {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let ty = DynSolType::parse(&param.ty).map_err(|e| format!("bad abi type: {e}"))?;
        values.push(
            ty.coerce_str(&text)
                .map_err(|e| format!("argument {text:?} is not a {}: {e}", param.ty))?,
        );
        arg_strings.push(text);
    }
    let input = func
        .abi_encode_input(&values)
        .map_err(|e| format!("cannot encode call: {e}"))?;
    Ok(ParsedCall {
        body: v,
        function,
        args: arg_strings,
        network,
        input,
    })
}

async fn execute(inner: &Inner, input: Vec<u8>) -> ExecState {
    let tx = TransactionRequest::default()
        .with_to(inner.escrow)
        .with_input(input);
    let guard = inner.send_lock.lock().await;
    let pending = match inner.provider.send_transaction(tx).await {
        Ok(p) => p,
        Err(e) => {
            let reason = e
                .as_error_resp()
                .and_then(|r| r.as_revert_data())
                .map(|d| EscrowRevert::decode(&d).to_string())
                .unwrap_or_else(|| e.to_string());
            return ExecState::Failed(format!("execution reverted: {reason}"));
        }
    };
    let hash = *pending.tx_hash();
    drop(guard);
    inner.shared.lock().sent += 1;
    match wait_receipt(&inner.provider, hash, Duration::from_secs(60)).await {
        Ok(h) => ExecState::Completed(h),
        Err(EscrowError::Reverted { tx_hash }) => {
            ExecState::Failed(format!("transaction {tx_hash} reverted"))
        }
        Err(e) => ExecState::Failed(e.to_string()),
    }
}

async fn status(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&inner, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key");
    }
    let s = inner.shared.lock();
    let Some(exec) = s.executions.get(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "unknown execution");
    };
    let slow = exec.started.elapsed() < s.faults.status_delay;
    let body = match (&exec.state, slow) {
        (ExecState::Running, _) | (_, true) => json!({"executionId": id, "status": "running"}),
        (ExecState::Completed(tx), false) => json!({
            "executionId": id,
            "status": "completed",
            "transactionHash": format!("{tx:#x}"),
            "transactionLink": format!("https://sepolia.basescan.org/tx/{tx:#x}"),
        }),
        (ExecState::Failed(e), false) => json!({"executionId": id, "status": "failed", "error": e}),
    };
    (StatusCode::OK, Json(body)).into_response()
}
