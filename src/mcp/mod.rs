//! Delegation as MCP tools, for agents on MCP hosts (Claude Desktop, Cursor, VS Code...).
//!
//! Four tools: `delegate` (whose argument is the API's own
//! [`DelegateRequest`](crate::request::DelegateRequest)), `list_models`, `jobs` and
//! `status`, each a call to the daemon's HTTP API through the one [`ApiClient`]
//! ([`crate::client`]), served with `rmcp` over two transports:
//! - `edgent mcp`: stdio ([`serve_stdio`]); the host starts it as a subprocess and it talks
//!   to the local daemon over HTTP (`EDGENT_API_URL`, `EDGENT_API_TOKEN`);
//! - `POST/GET /mcp` on the daemon: streamable HTTP ([`http::service`]), calling the
//!   daemon's own routes in-process.
//!
//! A failure of the API is a tool result with `isError: true` whose text starts with the
//! API's error code (`no_provider`, `payment_failed`, `deadline`, ...) and whose structured
//! content is `{error, detail, http_status}`: the model reads it, it is not a protocol error.
//! While `/delegate` streams, each delta goes to the client as a progress notification on
//! its `progressToken`; cancelling the call drops the request to the daemon, which then
//! ends the job as it does when an agent hangs up.

pub mod http;
pub mod tools;

pub use tools::EdgentMcp;

use crate::client::ApiClient;

use rmcp::ServiceExt;

/// Where `edgent mcp` finds the daemon unless `EDGENT_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// Serve the tools over stdin/stdout until the host closes the pipe.
pub async fn serve_stdio(api: ApiClient) -> anyhow::Result<()> {
    let server = EdgentMcp::new(std::sync::Arc::new(api))
        .serve(rmcp::transport::stdio())
        .await?;
    server.waiting().await?;
    Ok(())
}
