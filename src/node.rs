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
    ctx.endpoint.note_traffic(msg.kind());
    if let Some(id) = msg_id {
        if !ctx.endpoint.delivery().reliable.seen.first_time(&from, id) {
            // Acknowledged again (the first ack may be the one lost), only to a full key.
            if let Some(to) = ctx.mesh.peers.full_key(&from) {
                let endpoint = ctx.endpoint.clone();
                spawn_bounded(ctx, &from, async move {
                    let _ = endpoint.send(&to, &Message::Ack(Ack { acked: id })).await;
                });
            }
            ctx.metrics.dropped(DropReason::Duplicate);
            tracing::debug!(from = %from.short(), kind = msg.kind(), "duplicate dropped (acknowledged again)");
            return;
        }
    }
    // A handler that sends, waits or calls the chain runs in its own task, with the ack
    // of its message, bounded per peer and in all (threat model line 26); the others run
    // here, and only their ack is sent from a (bounded) task: the router itself never
    // awaits a send (line 28).
    let slow = matches!(
        msg,
        Message::ResourceRequest(_)
            | Message::Task(_)
            | Message::TaskResult(_)
            | Message::PaymentRequest(_)
            | Message::PaymentConfirmed(_)
            | Message::Evidence(_)
    );
    let ack = msg_id.map(|id| {
        let to = ctx.mesh.peers.full_key(&from).unwrap_or(from);
        let endpoint = ctx.endpoint.clone();
        async move {
            let _ = endpoint.send(&to, &Message::Ack(Ack { acked: id })).await;
        }
    });
    if !slow {
        if let Some(ack) = ack {
            spawn_bounded(ctx, &from, ack);
        }
        return handle(ctx, h, from, msg).await;
    }
    let (ctx2, h) = (ctx.clone(), h.clone());
    let handled = spawn_bounded(ctx, &from, async move {
        if let Some(ack) = ack {
            ack.await;
        }
        handle(&ctx2, &h, from, msg).await
    });
    if let (false, Some(id)) = (handled, msg_id) {
        // Not handled: forget it, so the sender's resend is handled once there is room.
        ctx.endpoint.delivery().reliable.seen.forget(&from, id);
    }
}

/// Handle one decoded message from `from`, in its own (bounded) task.
async fn handle(ctx: &Arc<NodeCtx>, h: &Handlers, from: crate::axl::PeerKey, msg: Message) {
    match msg {
        Message::ResourceRequest(m) => h.provider.on_resource_request(&from, m).await,
        Message::ResourceAd(m) => h.requester.on_resource_ad(&from, m),
        Message::Task(m) => {
            if ctx.endpoint.delivery().task_limits.allow(&from) {
                h.provider.serve(from, m).await
            } else {
                h.provider.refuse_rate_limited(from, m).await
            }
        }
        Message::TaskResult(m) => h.requester.on_task_result(&from, m).await,
        Message::TaskError(m) => h.requester.on_task_error(&from, m),
        Message::TaskChunk(m) => h.requester.on_task_chunk(&from, m),
        Message::TaskCancel(m) => h.provider.on_task_cancel(&from, m),
        Message::PaymentRequest(m) => h.payments.requester().on_payment_request(&from, *m).await,
        Message::PaymentConfirmed(m) => h.payments.provider().on_payment_confirmed(&from, m).await,
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
        Message::Evidence(m) => h.requester.on_evidence(&from, *m).await,
        Message::Announce(m) => {
            crate::mesh::gossip::on_announce(&ctx.endpoint, &ctx.mesh, &from, m)
        }
    }
}

/// Run a handler in its own task if its sender and the node are under their bounds
/// ([`crate::mesh::handlers`]); else drop it, with a log line and a count. Returns whether
/// it runs.
fn spawn_bounded(
    ctx: &Arc<NodeCtx>,
    from: &crate::axl::PeerKey,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) -> bool {
    let ran = ctx.endpoint.delivery().handlers.spawn(from, fut);
    if !ran {
        ctx.metrics.dropped(DropReason::RateLimited);
        tracing::debug!(from = %from.short(), "dropped message: too many handlers running for this peer or in all");
    }
    ran
}
