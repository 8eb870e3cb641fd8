//! The router and the state every part of a node shares.
//!
//! [`run_router`] takes raw messages from the receive loop, decodes them, checks that a
//! claimed `node_id` belongs to the sender's address, and hands each to the requester or
//! the provider in one `match`. Slow work (inference) is spawned, so the router never
//! holds up the receive loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::axl::recv::RecvStats;
use crate::axl::{AxlError, Inbound, PeerKey, Transport};
use crate::config::Config;
use crate::jobs::{now_ms, JobStore};
use crate::metrics::Metrics;
use crate::protocol::{DropReason, Message};
use crate::provider::Provider;
use crate::requester::Requester;

/// What we have learnt about another node from its messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerSeen {
    /// Its full key.
    pub node_id: PeerKey,
    /// Its ENS name, if it told us.
    pub ens: Option<String>,
    /// Models it advertised.
    pub models: Vec<String>,
    /// When we last heard from it, unix ms.
    pub last_seen_ms: u64,
}

/// Nodes we have heard from, keyed by Yggdrasil address (so a partial key from
/// `X-From-Peer-Id` finds the full key a message carried).
#[derive(Default)]
pub struct PeerBook {
    inner: Mutex<HashMap<[u8; 16], PeerSeen>>,
}

impl PeerBook {
    /// Record a node by its full key.
    pub fn saw(&self, node_id: PeerKey, ens: Option<String>, models: Option<Vec<String>>) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(node_id.address()).or_insert_with(|| PeerSeen {
            node_id,
            ens: None,
            models: Vec::new(),
            last_seen_ms: 0,
        });
        e.node_id = node_id;
        if ens.is_some() {
            e.ens = ens;
        }
        if let Some(models) = models {
            e.models = models;
        }
        e.last_seen_ms = now_ms();
    }

    /// The full key for a (possibly partial) key, if we know the node.
    pub fn full_key(&self, key: &PeerKey) -> Option<PeerKey> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key.address()).map(|p| p.node_id)
    }

    /// What we know about a node.
    pub fn get(&self, key: &PeerKey) -> Option<PeerSeen> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&key.address()).cloned()
    }
}

/// State shared by the router, the requester, the provider and the HTTP API.
pub struct NodeCtx {
    /// The mesh.
    pub transport: Arc<dyn Transport>,
    /// Settings.
    pub config: Config,
    /// The job table.
    pub jobs: Arc<JobStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Our own full AXL key.
    pub me: PeerKey,
    /// Nodes heard from.
    pub peers: PeerBook,
    /// Receive-loop counters; sending marks traffic so the loop polls fast for the reply.
    pub recv_stats: Arc<RecvStats>,
    /// When the daemon started.
    pub started: Instant,
}

impl NodeCtx {
    /// Encode and send one message, counting it.
    pub async fn send(&self, to: &PeerKey, msg: &Message) -> Result<(), AxlError> {
        let kind = msg.kind();
        let body = msg.encode().map_err(|e| AxlError::Http {
            status: 0,
            body: e.to_string(),
        })?;
        self.recv_stats.touch();
        match self.transport.send(to, body).await {
            Ok(()) => {
                self.metrics.msg_out(kind);
                tracing::debug!(to = %to.short(), kind, "sent");
                Ok(())
            }
            Err(e) => {
                self.metrics.send_failed(kind);
                tracing::warn!(to = %to.short(), kind, error = %e, "send failed");
                Err(e)
            }
        }
    }
}

/// Decode and dispatch incoming messages until cancelled or the channel closes.
pub async fn run_router(
    ctx: Arc<NodeCtx>,
    requester: Arc<Requester>,
    provider: Arc<Provider>,
    mut rx: mpsc::Receiver<Inbound>,
    cancel: CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        route(&ctx, &requester, &provider, inbound).await;
    }
    tracing::debug!("router stopped");
}

/// Handle one raw message.
pub async fn route(
    ctx: &Arc<NodeCtx>,
    requester: &Arc<Requester>,
    provider: &Arc<Provider>,
    inbound: Inbound,
) {
    let from = inbound.from;
    let msg = match Message::decode(&inbound.body) {
        Ok(m) => m,
        Err(e) => {
            ctx.metrics.dropped(e.reason);
            tracing::warn!(from = %from.short(), reason = e.reason.as_str(), detail = %e.detail, "dropped message");
            return;
        }
    };
    if let Some(claimed) = msg.claimed_node() {
        if !claimed.same_node(&from) {
            ctx.metrics.dropped(DropReason::Spoofed);
            tracing::warn!(from = %from.short(), claimed = %claimed.short(), kind = msg.kind(),
                "dropped message: claimed node_id does not belong to the sender");
            return;
        }
    }
    ctx.metrics.msg_in(msg.kind());
    match msg {
        Message::ResourceRequest(m) => provider.on_resource_request(&from, m).await,
        Message::ResourceAd(m) => requester.on_resource_ad(&from, m),
        Message::Task(m) => provider.clone().on_task(from, m),
        Message::TaskResult(m) => requester.on_task_result(&from, m).await,
        Message::TaskError(m) => requester.on_task_error(&from, m),
        Message::PaymentRequest(m) => requester.on_payment_request(&from, *m).await,
        Message::PaymentConfirmed(m) => provider.on_payment_confirmed(&from, m).await,
    }
}
