//! `POST/GET /mcp` on the daemon: the tools over MCP's streamable HTTP transport.
//!
//! The service is rmcp's tower service, mounted on the daemon's router, so whatever
//! guards that router (Host, Origin, token) guards `/mcp` too. rmcp's own checks stay on
//! as a second line: loopback `Host` values only, and a request that carries an `Origin`
//! is refused (a browser page must not drive the user's wallet through the tools).
//! Sessions are kept in memory for clients of the older protocol versions; the tools
//! call the daemon's routes in-process ([`ApiClient::in_process`]).

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::EdgentMcp;
use crate::client::ApiClient;

/// The `/mcp` service over `api`, the daemon's router without `/mcp`.
pub fn service(api: Router) -> StreamableHttpService<EdgentMcp, LocalSessionManager> {
    let client = Arc::new(ApiClient::in_process(api));
    let config = StreamableHttpServerConfig::default().enforce_origin_validation();
    StreamableHttpService::new(
        move || Ok(EdgentMcp::new(client.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
