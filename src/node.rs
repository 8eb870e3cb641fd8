//! The router: takes raw messages from the receive loop, decodes them, checks that a
//! claimed `node_id` belongs to the sender's address, and hands each to the part of the
//! node that handles it (requester, provider, or their payments) in one `match`. Slow work
//! (inference) is spawned, so the router never holds up the receive loop.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::axl::Inbound;
use crate::ctx::NodeCtx;
use crate::payment::{ProviderPayments, RequesterPayments};
use crate::protocol::{DropReason, Message};
use crate::provider::Provider;
use crate::requester::Requester;

/// Where the router hands each kind of message.
#[derive(Clone)]
pub struct Handlers {
    /// Ads, results and errors of our delegations.
    pub requester: Arc<Requester>,
    /// Discovery requests and tasks from others.
    pub provider: Arc<Provider>,
    /// Payment requests for our delegations.
    pub requester_payments: Arc<dyn RequesterPayments>,
    /// Payment confirmations for the jobs we served.
    pub provider_payments: Arc<dyn ProviderPayments>,
}

/// Decode and dispatch incoming messages until cancelled or the channel closes.
pub async fn run_router(
    ctx: Arc<NodeCtx>,
    handlers: Handlers,
    mut rx: mpsc::Receiver<Inbound>,
    cancel: CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        route(&ctx, &handlers, inbound).await;
    }
    tracing::debug!("router stopped");
}

/// Handle one raw message.
pub async fn route(ctx: &Arc<NodeCtx>, h: &Handlers, inbound: Inbound) {
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
    if ctx.config.access.denied_sender(&from) {
        ctx.metrics.dropped(DropReason::Unexpected);
        tracing::debug!(from = %from.short(), kind = msg.kind(), "dropped message: sender is in EDGENT_DENY");
        return;
    }
    ctx.metrics.msg_in(msg.kind());
    match msg {
        Message::ResourceRequest(m) => h.provider.on_resource_request(&from, m).await,
        Message::ResourceAd(m) => h.requester.on_resource_ad(&from, m),
        Message::Task(m) => h.provider.clone().on_task(from, m),
        Message::TaskResult(m) => h.requester.on_task_result(&from, m).await,
        Message::TaskError(m) => h.requester.on_task_error(&from, m),
        Message::PaymentRequest(m) => h.requester_payments.on_payment_request(&from, *m).await,
        Message::PaymentConfirmed(m) => h.provider_payments.on_payment_confirmed(&from, m).await,
        Message::Announce(m) => crate::mesh::gossip::on_announce(ctx, &from, m),
    }
}
