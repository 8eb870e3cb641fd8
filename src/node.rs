//! The router: takes raw messages from the receive loop, decodes them, checks that a
//! claimed `node_id` belongs to the sender's address, and hands each to the part of the
//! node that handles it (requester, provider, or their payments) in one `match`. Slow work
//! (inference) is spawned, so the router never holds up the receive loop.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::axl::Inbound;
use crate::ctx::NodeCtx;
use crate::paid::PaymentSwitch;
use crate::protocol::{Ack, DropReason, Envelope, Message};
use crate::provider::Provider;
use crate::requester::Requester;

/// Where the router hands each kind of message.
#[derive(Clone)]
pub struct Handlers {
    /// Ads, results and errors of our delegations.
    pub requester: Arc<Requester>,
    /// Discovery requests and tasks from others.
    pub provider: Arc<Provider>,
    /// Payment requests for our delegations, and payment confirmations for the jobs we
    /// served: to the side in use now.
    pub payments: Arc<PaymentSwitch>,
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
///
/// Before decoding, the sender's per-peer rate is checked. A reliable message with a
/// `msg_id` is acknowledged (every copy: the ack of the first may be the one lost) and
/// handled only the first time. The router never awaits a send: handlers that send or
/// call the chain run in their own tasks, bounded in number
/// ([`crate::mesh::reliable::MAX_SPAWNED_HANDLERS`]).
pub async fn route(ctx: &Arc<NodeCtx>, h: &Handlers, inbound: Inbound) {
    let from = inbound.from;
    if !ctx.endpoint.delivery().msg_limits.allow(&from) {
        ctx.metrics.dropped(DropReason::RateLimited);
        tracing::debug!(from = %from.short(), "dropped message: sender over its rate limit");
        return;
    }
    let Envelope { msg_id, msg } = match Message::decode_envelope(&inbound.body) {
        Ok(m) => m,
        Err(e) if matches!(e.reason, DropReason::UnknownType | DropReason::BadVersion) => {
            // Most likely a newer peer (see `protocol`'s "Mixed versions").
            ctx.metrics.dropped(e.reason);
            tracing::debug!(from = %from.short(), reason = e.reason.as_str(), detail = %e.detail, "dropped message this build does not know");
            return;
        }
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
    if ctx.mesh.access.denied_sender(&from) {
        ctx.metrics.dropped(DropReason::Unexpected);
        tracing::debug!(from = %from.short(), kind = msg.kind(), "dropped message: sender is in EDGENT_DENY");
        return;
    }
    ctx.metrics.msg_in(msg.kind());
    if let Some(id) = msg_id {
        let to = ctx.mesh.peers.full_key(&from).unwrap_or(from);
        let endpoint = ctx.endpoint.clone();
        tokio::spawn(async move {
            let _ = endpoint.send(&to, &Message::Ack(Ack { acked: id })).await;
        });
        if !ctx.endpoint.delivery().reliable.seen.first_time(&from, id) {
            ctx.metrics.dropped(DropReason::Duplicate);
            tracing::debug!(from = %from.short(), kind = msg.kind(), "duplicate dropped (acknowledged again)");
            return;
        }
    }
    match msg {
        Message::ResourceRequest(m) => {
            let p = h.provider.clone();
            spawn_bounded(
                ctx,
                &from,
                async move { p.on_resource_request(&from, m).await },
            );
        }
        Message::ResourceAd(m) => h.requester.on_resource_ad(&from, m),
        Message::Task(m) => {
            if ctx.endpoint.delivery().task_limits.allow(&from) {
                h.provider.clone().on_task(from, m)
            } else {
                h.provider.clone().refuse_rate_limited(from, m)
            }
        }
        Message::TaskResult(m) => h.requester.on_task_result(&from, m).await,
        Message::TaskError(m) => h.requester.on_task_error(&from, m),
        Message::TaskChunk(m) => h.requester.on_task_chunk(&from, m),
        Message::TaskCancel(m) => h.provider.on_task_cancel(&from, m),
        Message::PaymentRequest(m) => {
            let p = h.payments.requester();
            p.on_payment_request(&from, *m).await
        }
        Message::PaymentConfirmed(m) => {
            let p = h.payments.provider();
            spawn_bounded(
                ctx,
                &from,
                async move { p.on_payment_confirmed(&from, m).await },
            );
        }
        Message::Ack(a) => {
            if !ctx
                .endpoint
                .delivery()
                .reliable
                .pending
                .on_ack(&from, a.acked)
            {
                tracing::debug!(from = %from.short(), "ack for nothing pending (late or repeated)");
            }
        }
        Message::Heartbeat(b) => h.requester.on_heartbeat(&from, b),
        Message::Announce(m) => {
            crate::mesh::gossip::on_announce(&ctx.endpoint, &ctx.mesh, &from, m)
        }
    }
}

/// Run a handler in its own task if fewer than the bound are running; else drop it.
fn spawn_bounded(
    ctx: &Arc<NodeCtx>,
    from: &crate::axl::PeerKey,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match ctx
        .endpoint
        .delivery()
        .handler_slots
        .clone()
        .try_acquire_owned()
    {
        Ok(permit) => {
            tokio::spawn(async move {
                fut.await;
                drop(permit);
            });
        }
        Err(_) => {
            ctx.metrics.dropped(DropReason::RateLimited);
            tracing::debug!(from = %from.short(), "dropped message: too many handlers running");
        }
    }
}
