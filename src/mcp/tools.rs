//! The four MCP tools, their argument schemas, and how their answers read.
//!
//! `delegate` takes the API's own [`DelegateRequest`]: its schema is the request's.
//!
//! Each tool calls the daemon's API and answers with text a model can read (the
//! delegated output itself, or a short summary) plus the API's JSON as structured content.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::client::{ApiClient, ApiFailure};
use crate::request::{error_body, DelegateRequest, ErrorCode};

/// Arguments of `jobs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct JobsArgs {
    /// How many of the latest jobs (1 to 100, default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The MCP server: the four tools over an [`ApiClient`].
#[derive(Clone)]
pub struct EdgentMcp {
    api: Arc<ApiClient>,
    tool_router: ToolRouter<EdgentMcp>,
}

/// A tool result for an API failure: `isError`, the code first in the text, and
/// `{error, detail, http_status}` as structured content.
pub fn failure_result(f: &ApiFailure) -> CallToolResult {
    let mut body = error_body(&f.code, &f.detail, None);
    body.insert("http_status".into(), json!(f.http_status));
    let mut r = CallToolResult::structured_error(Value::Object(body));
    r.content = vec![ContentBlock::text(format!("{}: {}", f.code, f.detail))];
    r
}

fn bad_input(detail: impl Into<String>) -> CallToolResult {
    failure_result(&ApiFailure {
        code: ErrorCode::BadRequest.as_str().into(),
        detail: detail.into(),
        http_status: None,
    })
}

/// The tool asks for one of `prompt` and `messages` (the API would take both, the
/// conversation first).
fn prompt_or_messages(req: &DelegateRequest) -> Result<(), &'static str> {
    match (req.prompt.is_empty(), &req.messages) {
        (false, None) => Ok(()),
        (true, Some(m)) if !m.is_empty() => Ok(()),
        (false, Some(_)) => Err("give either `prompt` or `messages`, not both"),
        _ => Err("give a `prompt` or a non-empty `messages` list"),
    }
}

fn with_text(structured: Value, text: String) -> CallToolResult {
    let mut r = CallToolResult::structured(structured);
    r.content = vec![ContentBlock::text(text)];
    r
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

impl EdgentMcp {
    /// The API's answer at `path` made into the tool's result by `render`; a failed call is
    /// the tool's failure result.
    async fn answer(
        &self,
        path: &str,
        render: impl FnOnce(Value) -> CallToolResult,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.api.get_json(path).await {
            Ok(v) => render(v),
            Err(f) => failure_result(&f),
        })
    }
}

#[tool_router]
impl EdgentMcp {
    /// The server over `api`.
    pub fn new(api: Arc<ApiClient>) -> EdgentMcp {
        EdgentMcp {
            api,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Run a prompt (or a chat) on a peer of the edgent mesh that has the memory for the model: use it when the model does not fit on this machine. The job is paid in USDC from this node's wallet when payments are on (at most `max_price`), and the answer comes with a zero-knowledge proof that binds it to the job and the provider (it does not show which model ran: the provider signs a receipt naming the model, and a sample of jobs is re-run by other providers to catch a substitute). Returns the model's output as text, and as structured content the job id, the provider (node id, ENS name), timings, whether the proof checked and the payment (status, transaction, explorer link). On failure the result is an error whose text starts with a code: no_provider (nobody on the mesh serves the model within the price: try another model or a higher max_price), payment_failed, provider_failed, proof_invalid, receipt_invalid, provider_caught (the provider lied about the model: try again), deadline, bad_request, daemon_unreachable."
    )]
    async fn delegate(
        &self,
        Parameters(req): Parameters<DelegateRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if let Err(e) = prompt_or_messages(&req) {
            return Ok(bad_input(e));
        }
        let progress = ctx.meta.get_progress_token();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let call = self.api.delegate(&req, tx);
        tokio::pin!(call);
        let mut seq: u64 = 0;
        let mut notify = |delta: String| {
            seq += 1;
            let param = progress
                .clone()
                .map(|t| ProgressNotificationParam::new(t, seq as f64).with_message(delta));
            let peer = ctx.peer.clone();
            async move {
                if let Some(p) = param {
                    if let Err(e) = peer.notify_progress(p).await {
                        tracing::debug!(error = %e, "progress notification not sent");
                    }
                }
            }
        };
        let outcome = loop {
            tokio::select! {
                biased;
                _ = ctx.ct.cancelled() => {
                    // Dropping `call` drops the request to the daemon: the job is cancelled
                    // as when an agent hangs up.
                    tracing::info!("delegate cancelled by the MCP client");
                    return Ok(failure_result(&ApiFailure {
                        code: ErrorCode::Cancelled.as_str().into(),
                        detail: "the tool call was cancelled".into(),
                        http_status: None,
                    }));
                }
                Some(delta) = rx.recv() => notify(delta).await,
                res = &mut call => break res,
            }
        };
        while let Ok(delta) = rx.try_recv() {
            notify(delta).await;
        }
        Ok(match outcome {
            Ok(answer) => {
                let output = answer["output"].as_str().unwrap_or_default().to_string();
                with_text(answer, output)
            }
            Err(f) => failure_result(&f),
        })
    }

    #[tool(
        description = "List the models this node can run itself and those its peers on the mesh advertise, with the node serving each (node id, ENS name), its price in USDC when known, and whether it is loaded when known. Use it to pick a `model` for `delegate`."
    )]
    async fn list_models(&self) -> Result<CallToolResult, McpError> {
        self.answer("/status", models_result).await
    }

    #[tool(
        description = "The latest jobs of this node, newest first (those it delegated and those it served), each with its state (running, completed, failed, cancelled...), model, peer, error code if any, and payment (status, amount, transactions with explorer links)."
    )]
    async fn jobs(
        &self,
        Parameters(args): Parameters<JobsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let limit = args.limit.unwrap_or(10).clamp(1, 100);
        let path = format!("/jobs?limit={limit}");
        self.answer(&path, jobs_result).await
    }

    #[tool(
        description = "This edgent node's status: its node id and ENS name, role, whether payments are on (chain, escrow, wallet address), the AXL mesh node's state, its peers (with ENS names and models), the models it serves, its price and free memory."
    )]
    async fn status(&self) -> Result<CallToolResult, McpError> {
        self.answer("/status", status_result).await
    }
}

/// `list_models`'s answer from `/status`.
fn models_result(status: Value) -> CallToolResult {
    let models = models_of(&status);
    let text = if models.is_empty() {
        "No models known yet: this node serves none, and no peer has advertised any (peers advertise when a delegation asks the mesh).".to_string()
    } else {
        models
            .iter()
            .map(|m| {
                format!(
                    "{} on {} ({}) price {} USDC{}",
                    s(&m["model"]),
                    m["ens"].as_str().unwrap_or("no ENS name"),
                    short(s(&m["node_id"])),
                    m["price_usdc"].as_str().unwrap_or("unknown"),
                    if m["local"] == json!(true) {
                        ", this node"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    with_text(json!({ "models": models }), text)
}

/// `jobs`'s answer from `/jobs`.
fn jobs_result(jobs: Value) -> CallToolResult {
    let list = jobs.as_array().cloned().unwrap_or_default();
    let text = if list.is_empty() {
        "No jobs yet.".to_string()
    } else {
        list.iter()
            .map(|j| {
                let mut line = format!(
                    "{} {} {} model {}",
                    s(&j["job_id"]),
                    s(&j["side"]),
                    s(&j["state"]),
                    s(&j["model"])
                );
                if let Some(code) = j["error_code"].as_str() {
                    line.push_str(&format!(" error {code}"));
                }
                if let Some(p) = j["payment"]["status"].as_str() {
                    line.push_str(&format!(" payment {p}"));
                }
                if let Some(u) = j["payment"]["explorer_url"].as_str() {
                    line.push_str(&format!(" {u}"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    with_text(json!({ "jobs": list }), text)
}

/// `status`'s answer from `/status`.
fn status_result(st: Value) -> CallToolResult {
    let peers = st["peers"].as_array().map(Vec::len).unwrap_or(0);
    let up = st["peers"]
        .as_array()
        .map(|p| p.iter().filter(|p| p["up"] == json!(true)).count())
        .unwrap_or(0);
    let mut text = format!(
        "node {} ({}), role {}, payments {}, AXL {}, {peers} peers ({up} up)",
        short(s(&st["node_id"])),
        st["ens"].as_str().unwrap_or("no ENS name"),
        s(&st["role"]),
        s(&st["payments"]),
        s(&st["axl"]["state"]),
    );
    if let Some(w) = st["chain"]["wallet"].as_str() {
        text.push_str(&format!(
            ", wallet {w} on chain {}",
            st["chain"]["chain_id"]
        ));
    }
    if let Some(m) = st["models"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!(", serves {}", names.join(", ")));
    }
    with_text(st, text)
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// The models `/status` shows: this node's, then each peer's, one entry per (model, node).
pub fn models_of(status: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let me = &status["node_id"];
    for m in status["models"].as_array().into_iter().flatten() {
        out.push(json!({
            "model": m,
            "node_id": me,
            "ens": status["ens"],
            "price_usdc": status["price_usdc"],
            "loaded": Value::Null,
            "local": true,
        }));
    }
    for p in status["peers"].as_array().into_iter().flatten() {
        for m in p["models"].as_array().into_iter().flatten() {
            out.push(json!({
                "model": m,
                "node_id": p["node_id"],
                "ens": p["ens"],
                "price_usdc": Value::Null,
                "loaded": Value::Null,
                "local": false,
            }));
        }
    }
    out
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EdgentMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("edgent", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "edgent runs inference jobs on peers of a peer-to-peer mesh when a model does not fit on this machine. Call `list_models` to see what the mesh serves, `delegate` to run a prompt there, `jobs` and `status` to look at this node.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> DelegateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn delegate_args_are_the_api_body() {
        let body = json!({"model": "m", "prompt": "p", "max_price": "0.05", "wait": "settled", "timeout_ms": 5});
        let b = args(body.clone());
        assert!(prompt_or_messages(&b).is_ok());
        assert_eq!(serde_json::to_value(&b).unwrap(), body);
        let b = args(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_price": 0.5}),
        );
        assert!(prompt_or_messages(&b).is_ok());
        let b = serde_json::to_value(&b).unwrap();
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["max_price"], json!("0.5"));
        assert!(prompt_or_messages(&args(json!({"model": "m"}))).is_err());
        assert!(prompt_or_messages(&args(
            json!({"model": "m", "prompt": "p", "messages": [{"role": "user", "content": "x"}]})
        ))
        .is_err());
    }

    #[test]
    fn failures_are_error_results_with_the_code_first() {
        let r = failure_result(&ApiFailure {
            code: "no_provider".into(),
            detail: "nobody".into(),
            http_status: Some(503),
        });
        assert_eq!(r.is_error, Some(true));
        assert_eq!(r.structured_content.unwrap()["error"], "no_provider");
    }

    #[test]
    fn models_list_local_then_peers() {
        let st = json!({"node_id": "aa", "ens": "me.eth", "price_usdc": "0.01", "models": ["a"],
            "peers": [{"node_id": "bb", "ens": null, "models": ["b", "c"]}]});
        let m = models_of(&st);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0]["local"], true);
        assert_eq!(m[2]["model"], "c");
        assert_eq!(m[2]["node_id"], "bb");
    }
}
