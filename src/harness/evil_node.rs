//! TEST HARNESS: a scriptable hostile peer on a mesh of AXL nodes (the mesh sim, in process
//! or `edgent mesh-sim`).
//!
//! An [`EvilNode`] runs no daemon. It drives one or more mesh nodes' local APIs, one
//! identity (AXL key) each, and from a test:
//! - sends any protocol [`Message`] ([`EvilNode::send`]: a reliable type gets a fresh
//!   `msg_id` and is sent once, never again) or any bytes ([`EvilNode::send_raw`]), to any
//!   key, as any of its identities;
//! - sends many at a chosen rate ([`EvilNode::flood`]);
//! - never acknowledges a reliable message unless told to ([`EvilNode::set_acks`]), so the
//!   peer's resends and pending-ack table work against it;
//! - records every message it receives, bounded ([`EVIL_INBOX_CAPACITY`], the oldest
//!   dropped), decoded when it decodes ([`EvilNode::received`], [`EvilNode::wait_for`]).
//!
//! Nothing here checks what it sends: a message that fails [`Message::encode`]'s checks is
//! sent with [`EvilNode::send_json`] or [`EvilNode::send_raw`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::axl::{AxlClient, AxlError, PeerKey, Transport};
use crate::protocol::{Ack, EncodeError, Message};

/// Most received messages an [`EvilNode`] keeps (the oldest are dropped and counted).
pub const EVIL_INBOX_CAPACITY: usize = 100_000;

/// How long a receive loop waits after finding its queue empty.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// Why the evil node could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum EvilError {
    /// The mesh node refused or failed the call.
    #[error(transparent)]
    Axl(#[from] AxlError),
    /// The message does not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// No such identity.
    #[error("the evil node has {have} identities, not {asked}")]
    NoIdentity {
        /// The identity asked for.
        asked: usize,
        /// How many there are.
        have: usize,
    },
    /// The node's key in its `/topology` is not 64 hex.
    #[error("node at {0} reports a malformed key")]
    BadKey(String),
}

/// One message the evil node received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which identity received it.
    pub identity: usize,
    /// The sender, as AXL names it (its partial key).
    pub from: PeerKey,
    /// The bytes as they arrived.
    pub body: Bytes,
    /// Its `msg_id`, when it decodes and carries one.
    pub msg_id: Option<Uuid>,
    /// The message, when it decodes.
    pub msg: Option<Message>,
    /// When the evil node took it from its mesh node, unix ms.
    pub at_ms: u64,
}

impl Received {
    /// The message's `type`, when it decodes.
    pub fn kind(&self) -> Option<&'static str> {
        self.msg.as_ref().map(Message::kind)
    }
}

/// What a [`EvilNode::flood`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Messages the mesh node accepted (AXL's 200).
    pub accepted: u64,
    /// Messages it refused (any error).
    pub refused: u64,
}

struct Identity {
    key: PeerKey,
    axl: AxlClient,
}

struct Inbox {
    kept: Mutex<VecDeque<Received>>,
    dropped: AtomicU64,
    acks_sent: AtomicU64,
}

/// A scriptable hostile peer: see the module docs. Dropping it stops its receive loops.
pub struct EvilNode {
    ids: Vec<Identity>,
    inbox: Arc<Inbox>,
    ack: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl EvilNode {
    /// Take over the mesh nodes whose local APIs are at `api_urls` (one identity each, in
    /// that order: identity `i` is `api_urls[i]`), and start receiving on each.
    pub async fn connect(api_urls: &[String]) -> Result<EvilNode, EvilError> {
        let mut ids = Vec::with_capacity(api_urls.len());
        for url in api_urls {
            let axl = AxlClient::new(url)?;
            let topo = axl.topology().await?;
            let key = PeerKey::from_hex(&topo.our_public_key)
                .map_err(|_| EvilError::BadKey(url.clone()))?;
            ids.push(Identity { key, axl });
        }
        let node = EvilNode {
            ids,
            inbox: Arc::new(Inbox {
                kept: Mutex::new(VecDeque::new()),
                dropped: AtomicU64::new(0),
                acks_sent: AtomicU64::new(0),
            }),
            ack: Arc::new(AtomicBool::new(false)),
            stop: CancellationToken::new(),
        };
        for (i, id) in node.ids.iter().enumerate() {
            tokio::spawn(receive_loop(
                i,
                id.axl.clone(),
                Arc::clone(&node.inbox),
                Arc::clone(&node.ack),
                node.stop.clone(),
            ));
        }
        Ok(node)
    }

    /// How many identities (keys) it holds.
    pub fn identities(&self) -> usize {
        self.ids.len()
    }

    /// The full key of identity `i`. Panics if there is no such identity.
    pub fn key(&self, i: usize) -> PeerKey {
        self.ids[i].key
    }

    fn id(&self, i: usize) -> Result<&Identity, EvilError> {
        self.ids.get(i).ok_or(EvilError::NoIdentity {
            asked: i,
            have: self.ids.len(),
        })
    }

    /// Acknowledge reliable messages from now on (`true`), or stop (`false`, the start).
    pub fn set_acks(&self, on: bool) {
        self.ack.store(on, Ordering::SeqCst);
    }

    /// Send `msg` to `to` as identity `as_id`, once. A reliable type carries a fresh
    /// `msg_id` (returned), as an honest sender's would; it is never sent again.
    pub async fn send(
        &self,
        as_id: usize,
        to: &PeerKey,
        msg: &Message,
    ) -> Result<Option<Uuid>, EvilError> {
        let msg_id = msg.is_reliable().then(Uuid::new_v4);
        let body = msg.encode_with_id(msg_id)?;
        self.send_raw(as_id, to, body).await?;
        Ok(msg_id)
    }

    /// Send any JSON value as the message body (no checks: a forged or malformed message).
    pub async fn send_json(
        &self,
        as_id: usize,
        to: &PeerKey,
        value: &serde_json::Value,
    ) -> Result<(), EvilError> {
        let body = serde_json::to_vec(value).map_err(|e| EncodeError::Json(e.to_string()))?;
        self.send_raw(as_id, to, body).await
    }

    /// Send these exact bytes to `to` as identity `as_id`.
    pub async fn send_raw(
        &self,
        as_id: usize,
        to: &PeerKey,
        body: impl Into<Bytes>,
    ) -> Result<(), EvilError> {
        self.id(as_id)?.axl.send(to, body.into()).await?;
        Ok(())
    }

    /// Send every body of `bodies` to `to` as identity `as_id`, at most `per_second` a
    /// second (`None`: as fast as the mesh node takes them, up to `concurrency` sends in
    /// flight). Returns once all were handed over or refused.
    pub async fn flood(
        &self,
        as_id: usize,
        to: &PeerKey,
        bodies: impl IntoIterator<Item = Bytes>,
        per_second: Option<f64>,
        concurrency: usize,
    ) -> Result<FloodReport, EvilError> {
        use futures_util::stream::{self, StreamExt};
        let axl = self.id(as_id)?.axl.clone();
        let gap = per_second
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        let start = Instant::now();
        let sends = stream::iter(bodies.into_iter().enumerate()).map(|(n, body)| {
            let axl = axl.clone();
            async move {
                if let Some(gap) = gap {
                    tokio::time::sleep_until(start + gap * u32::try_from(n).unwrap_or(u32::MAX))
                        .await;
                }
                axl.send(to, body).await.is_ok()
            }
        });
        let report = sends
            .buffered(concurrency.max(1))
            .fold(FloodReport::default(), |mut r, ok| async move {
                if ok {
                    r.accepted += 1;
                } else {
                    r.refused += 1;
                }
                r
            })
            .await;
        Ok(report)
    }

    /// Every message received so far (the newest [`EVIL_INBOX_CAPACITY`]), in order.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.kept.lock().iter().cloned().collect()
    }

    /// The received messages of `type` `kind` (e.g. `"task_result"`).
    pub fn received_kind(&self, kind: &str) -> Vec<Received> {
        self.inbox
            .kept
            .lock()
            .iter()
            .filter(|r| r.kind() == Some(kind))
            .cloned()
            .collect()
    }

    /// Received messages dropped because the inbox was full.
    pub fn inbox_dropped(&self) -> u64 {
        self.inbox.dropped.load(Ordering::Relaxed)
    }

    /// Acks this node sent (only while [`EvilNode::set_acks`] is on).
    pub fn acks_sent(&self) -> u64 {
        self.inbox.acks_sent.load(Ordering::Relaxed)
    }

    /// The first received message (already in, or arriving within `within`) for which
    /// `pred` holds; `None` at the end of `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.inbox.kept.lock().iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// Stop receiving (also on drop).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for EvilNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive_loop(
    identity: usize,
    axl: AxlClient,
    inbox: Arc<Inbox>,
    ack: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            got = axl.recv() => got,
        };
        let m = match got {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(IDLE_POLL) => continue,
                }
            }
        };
        let env = Message::decode_envelope(&m.body).ok();
        let msg_id = env.as_ref().and_then(|e| e.msg_id);
        if let (Some(id), true) = (msg_id, ack.load(Ordering::SeqCst)) {
            let reply = Message::Ack(Ack { acked: id });
            if let Ok(body) = reply.encode() {
                if axl.send(&m.from, body).await.is_ok() {
                    inbox.acks_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let rec = Received {
            identity,
            from: m.from,
            body: m.body,
            msg_id,
            msg: env.map(|e| e.msg),
            at_ms: crate::jobs::now_ms(),
        };
        let mut kept = inbox.kept.lock();
        if kept.len() >= EVIL_INBOX_CAPACITY {
            kept.pop_front();
            inbox.dropped.fetch_add(1, Ordering::Relaxed);
        }
        kept.push_back(rec);
    }
}
