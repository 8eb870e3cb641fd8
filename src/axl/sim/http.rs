//! One sim node's HTTP server: AXL's local API plus the `/sim/` control routes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use super::{unreachable_from, Faults, SendOutcome, Shared, SimNodeStats};
use crate::axl::client::DESTINATION_HEADER;
use crate::axl::PeerKey;

/// `X-Sent-Bytes` and `X-From-Peer-Id` (header names are case-insensitive).
const SENT_BYTES: header::HeaderName = header::HeaderName::from_static("x-sent-bytes");
const FROM_PEER: header::HeaderName = header::HeaderName::from_static("x-from-peer-id");

/// Bodies up to this size are read, so the 16 MiB rule is the sim's, not axum's 2 MB
/// default (AXL itself reads any size before deciding).
const BODY_READ_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct NodeCtx {
    shared: Arc<Shared>,
    me: usize,
}

pub(super) fn router(shared: Arc<Shared>, me: usize) -> Router {
    Router::new()
        .route("/topology", get(topology))
        .route("/send", post(send))
        .route("/recv", get(recv))
        .route("/sim/faults", get(get_faults).post(post_faults))
        .route("/sim/stats", get(get_stats))
        .layer(DefaultBodyLimit::max(BODY_READ_LIMIT))
        .with_state(NodeCtx { shared, me })
}

/// Go's `http.Error`: plain text with a trailing newline.
fn go_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

/// A request that slipped in while this node was being taken down (the listener closes
/// a moment later). Not an AXL answer: AXL would not be running at all.
fn node_is_down() -> Response {
    go_error(StatusCode::SERVICE_UNAVAILABLE, "sim: node is down")
}

#[derive(Serialize)]
struct PeerJson {
    uri: String,
    up: bool,
    inbound: bool,
    public_key: String,
    root: String,
    port: u64,
    coords: Vec<u64>,
}

#[derive(Serialize)]
struct TreeJson {
    public_key: String,
    parent: String,
    sequence: u64,
}

/// AXL's `TopologyInfo`; Go encodes empty slices as `null`, so these are `Option`s.
#[derive(Serialize)]
struct TopologyJson {
    our_ipv6: String,
    our_public_key: String,
    peers: Option<Vec<PeerJson>>,
    tree: Option<Vec<TreeJson>>,
}

async fn topology(State(ctx): State<NodeCtx>) -> Response {
    let faults = ctx.shared.faults();
    if faults.is_down(ctx.me) {
        return node_is_down();
    }
    let nodes = &ctx.shared.nodes;
    let away = unreachable_from(&faults, ctx.me, nodes.len());
    let visible: Vec<usize> = (0..nodes.len()).filter(|j| !away.contains(j)).collect();
    // A star rooted at the lowest-numbered node we can see (possibly ourselves).
    let root = visible.first().copied().unwrap_or(ctx.me);
    let root_hex = nodes[root].key.to_hex();
    let peers: Vec<PeerJson> = (0..nodes.len())
        .filter(|&j| j != ctx.me)
        .map(|j| PeerJson {
            uri: format!("sim://127.0.0.1:{}", nodes[j].port),
            up: !away.contains(&j),
            inbound: j < ctx.me,
            public_key: nodes[j].key.to_hex(),
            root: root_hex.clone(),
            port: j as u64 + 1,
            coords: Vec::new(),
        })
        .collect();
    let tree: Vec<TreeJson> = visible
        .iter()
        .map(|&j| TreeJson {
            public_key: nodes[j].key.to_hex(),
            parent: root_hex.clone(),
            sequence: 1,
        })
        .collect();
    let me = &nodes[ctx.me];
    Json(TopologyJson {
        our_ipv6: me.key.ipv6().to_string(),
        our_public_key: me.key.to_hex(),
        peers: (!peers.is_empty()).then_some(peers),
        tree: (!tree.is_empty()).then_some(tree),
    })
    .into_response()
}

async fn send(State(ctx): State<NodeCtx>, headers: HeaderMap, body: Bytes) -> Response {
    if ctx.shared.is_down(ctx.me) {
        return node_is_down();
    }
    let dest = headers
        .get(DESTINATION_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if dest.is_empty() {
        return go_error(
            StatusCode::BAD_REQUEST,
            "Missing X-Destination-Peer-Id header",
        );
    }
    // AXL: hex.DecodeString, then exactly 32 bytes (no "0x", no spaces).
    let mut key = [0u8; 32];
    if dest.len() != 64 || hex::decode_to_slice(dest, &mut key).is_err() {
        return go_error(StatusCode::BAD_REQUEST, "Invalid destination peer ID");
    }
    let size = body.len();
    match ctx.shared.send(ctx.me, &PeerKey(key), body) {
        SendOutcome::Sent => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (
                    SENT_BYTES,
                    HeaderValue::from(size),
                ),
            ],
        )
            .into_response(),
        SendOutcome::Unreachable(why) => go_error(
            StatusCode::BAD_GATEWAY,
            &format!("Failed to reach peer: failed to reach peer: {why}"),
        ),
        SendOutcome::TooLarge => go_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "Write data failed: connection reset by peer (sim: {size} bytes exceed max_message_size {})",
                super::SIM_MAX_MESSAGE_BYTES
            ),
        ),
    }
}

async fn recv(State(ctx): State<NodeCtx>) -> Response {
    if ctx.shared.is_down(ctx.me) {
        return node_is_down();
    }
    match ctx.shared.pop(ctx.me) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(msg) => {
            let from = HeaderValue::from_str(&msg.from_partial.to_hex())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (FROM_PEER, from),
                ],
                msg.body,
            )
                .into_response()
        }
    }
}

async fn get_faults(State(ctx): State<NodeCtx>) -> Json<Faults> {
    Json(ctx.shared.faults())
}

async fn post_faults(State(ctx): State<NodeCtx>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(target: "axl::sim", error = %e, "bad /sim/faults body");
            return go_error(StatusCode::BAD_REQUEST, &format!("bad faults JSON: {e}"));
        }
    };
    match ctx.shared.set_faults(faults).await {
        Ok(()) => Json(ctx.shared.faults()).into_response(),
        Err(e @ super::SimError::BadFaults(_)) => {
            tracing::warn!(target: "axl::sim", error = %e, "rejected /sim/faults");
            go_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => {
            tracing::warn!(target: "axl::sim", error = %e, "could not apply /sim/faults");
            go_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn get_stats(State(ctx): State<NodeCtx>) -> Json<Vec<SimNodeStats>> {
    Json(
        (0..ctx.shared.nodes.len())
            .map(|i| ctx.shared.stats(i))
            .collect(),
    )
}
