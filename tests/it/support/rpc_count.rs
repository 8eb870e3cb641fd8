//! A counting JSON-RPC proxy: it forwards every request to the real endpoint (anvil) and
//! counts the calls by method, so a test can put a number on the RPC calls a daemon makes
//! (a batch counts each call in it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    calls: Mutex<HashMap<String, u64>>,
    /// The `data` of every `eth_call`, in order (at most [`MAX_KEPT_CALLS`]).
    call_data: Mutex<Vec<String>>,
}

/// Most `eth_call` data kept.
const MAX_KEPT_CALLS: usize = 200_000;

/// The proxy, listening on 127.0.0.1 until dropped.
pub struct CountingRpc {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRpc {
    /// Listen on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> CountingRpc {
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            http: reqwest::Client::new(),
            calls: Mutex::new(HashMap::new()),
            call_data: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/", post(forward))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CountingRpc { url, shared, task }
    }

    /// The URL to give the daemon as `CHAIN_RPC_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls so far, all methods.
    pub fn total(&self) -> u64 {
        self.by_method().values().sum()
    }

    /// The `eth_call`s so far whose call data contains `needle` (lowercase hex, no `0x`):
    /// e.g. the reads of one job's stake.
    pub fn eth_calls_containing(&self, needle: &str) -> u64 {
        let data = self.shared.call_data.lock().expect("lock");
        data.iter().filter(|d| d.contains(needle)).count() as u64
    }

    /// Calls so far, by method.
    pub fn by_method(&self) -> HashMap<String, u64> {
        self.shared.calls.lock().expect("lock").clone()
    }
}

impl Drop for CountingRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<Arc<Shared>>, body: Bytes) -> impl IntoResponse {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        let calls: Vec<&Value> = match &v {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut m = s.calls.lock().expect("lock");
        let mut data = s.call_data.lock().expect("lock");
        for c in calls {
            let method = c["method"].as_str().unwrap_or("?").to_string();
            if method == "eth_call" && data.len() < MAX_KEPT_CALLS {
                let d = &c["params"][0];
                let d = d["data"].as_str().or(d["input"].as_str()).unwrap_or("");
                data.push(d.to_ascii_lowercase());
            }
            *m.entry(method).or_default() += 1;
        }
    }
    let resp = s
        .http
        .post(&s.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = r.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
