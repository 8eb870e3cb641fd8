//! One sim node's HTTP server: AXL's local API plus the `/sim/` control routes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use super::{Faults, SendOutcome, Shared, SimError, SimNodeStats, SimTiming};
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
        .route("/sim/key", get(get_key))
        .route("/sim/timing", get(get_timing).post(post_timing))
        .route("/sim/kill/{node}", post(kill))
        .route("/sim/restart/{node}", post(restart))
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
    if ctx.shared.is_down(ctx.me) {
        return node_is_down();
    }
    let nodes = &ctx.shared.nodes;
    let view = ctx.shared.view(ctx.me);
    let root = view
        .tree
        .iter()
        .find(|&&(j, p)| j == p)
        .map_or(ctx.me, |&(j, _)| j);
    let root_hex = nodes[root].key.to_hex();
    let peers: Vec<PeerJson> = view
        .peers
        .iter()
        .map(|&(j, up, inbound)| PeerJson {
            uri: format!("sim://127.0.0.1:{}", nodes[j].port),
            up,
            inbound,
            public_key: nodes[j].key.to_hex(),
            root: root_hex.clone(),
            port: j as u64 + 1,
            coords: Vec::new(),
        })
        .collect();
    let tree: Vec<TreeJson> = view
        .tree
        .iter()
        .map(|&(j, parent)| TreeJson {
            public_key: nodes[j].key.to_hex(),
            parent: nodes[parent].key.to_hex(),
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
    match ctx.shared.send(ctx.me, &PeerKey(key), body).await {
        SendOutcome::SenderDown => node_is_down(),
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

/// A control call's failure: 400 for bad input, 500 when the sim could not apply it.
fn sim_error(what: &str, e: SimError) -> Response {
    tracing::warn!(target: "axl::sim", error = %e, "{what} failed");
    let status = match e {
        SimError::BadFaults(_) | SimError::BadTiming(_) | SimError::BadTopology(_) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    go_error(status, &e.to_string())
}

async fn post_faults(State(ctx): State<NodeCtx>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_body("/sim/faults", "faults", e),
    };
    let set = ctx.shared.set_faults(faults).await;
    faults_after(&ctx, "/sim/faults", set)
}

/// The 400 of a control call whose JSON body (`what`) does not parse.
fn bad_body(route: &str, what: &str, e: serde_json::Error) -> Response {
    tracing::warn!(target: "axl::sim", error = %e, "bad {route} body");
    go_error(StatusCode::BAD_REQUEST, &format!("bad {what} JSON: {e}"))
}

/// The answer of a control call that changes the faults: the faults then in force.
fn faults_after(ctx: &NodeCtx, route: &str, done: Result<(), SimError>) -> Response {
    match done {
        Ok(()) => Json(ctx.shared.faults()).into_response(),
        Err(e) => sim_error(route, e),
    }
}

/// `POST /sim/kill/{node}`: the faults after the kill.
async fn kill(State(ctx): State<NodeCtx>, Path(node): Path<usize>) -> Response {
    let mut faults = ctx.shared.faults();
    if !faults.is_down(node) {
        faults.down.push(node);
    }
    let set = ctx.shared.set_faults(faults).await;
    faults_after(&ctx, "/sim/kill", set)
}

/// `POST /sim/restart/{node}`: the faults after the restart.
async fn restart(State(ctx): State<NodeCtx>, Path(node): Path<usize>) -> Response {
    let restarted = ctx.shared.restart(node).await;
    faults_after(&ctx, "/sim/restart", restarted)
}

async fn get_timing(State(ctx): State<NodeCtx>) -> Json<SimTiming> {
    Json(ctx.shared.timing())
}

async fn post_timing(State(ctx): State<NodeCtx>, body: Bytes) -> Response {
    let timing: SimTiming = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return bad_body("/sim/timing", "timing", e),
    };
    match ctx.shared.set_timing(timing) {
        Ok(()) => Json(ctx.shared.timing()).into_response(),
        Err(e) => sim_error("/sim/timing", e),
    }
}

/// This node's private key, the PEM of AXL's key file: a daemon attached to the sim signs
/// its receipts with it, as one attached to a real node uses the node's key file.
async fn get_key(State(ctx): State<NodeCtx>) -> String {
    ctx.shared.key_pem(ctx.me)
}

async fn get_stats(State(ctx): State<NodeCtx>) -> Json<Vec<SimNodeStats>> {
    Json(
        (0..ctx.shared.nodes.len())
            .map(|i| ctx.shared.stats(i))
            .collect(),
    )
}
