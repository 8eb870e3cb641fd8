//! The mesh endpoint: how the rest of the node talks to other nodes. It owns the AXL
//! transport and everything a send needs (reliable delivery, the receive loop's
//! counters, the message metrics, our own key, the delivery settings), so callers send a
//! [`Message`] to a [`PeerKey`] and read the topology, and never see AXL's HTTP.
//!
//! Every send is bounded by `MESH_SEND_TIMEOUT_MS` (AXL blocks about 127 s on a key
//! nobody has). A reliable message (see [`Message::is_reliable`]) carries a `msg_id` and
//! is sent again with backoff until acknowledged ([`crate::mesh::reliable`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use crate::axl::recv::RecvStats;
use crate::axl::{AxlError, PeerKey, Topology, Transport};
use crate::backoff::Backoff;
use crate::mesh::reliable::{Delivery, Undelivered};
use crate::mesh::settings::DeliverySettings;
use crate::metrics::Metrics;
use crate::protocol::Message;

/// A node's end of the mesh: sending, acks, and the topology.
pub struct Endpoint {
    transport: Arc<dyn Transport>,
    delivery: Arc<Delivery>,
    recv_stats: Arc<RecvStats>,
    metrics: Arc<Metrics>,
    me: PeerKey,
    settings: DeliverySettings,
}

impl Endpoint {
    /// The endpoint of node `me` over `transport`. Sending marks traffic in `recv_stats`
    /// so the receive loop polls fast for the reply; sends are counted in `metrics`.
    pub fn new(
        transport: Arc<dyn Transport>,
        me: PeerKey,
        settings: DeliverySettings,
        metrics: Arc<Metrics>,
        recv_stats: Arc<RecvStats>,
    ) -> Self {
        Endpoint {
            transport,
            delivery: Arc::new(Delivery::new(&settings)),
            recv_stats,
            metrics,
            me,
            settings,
        }
    }

    /// Note a message of `kind` sent or received: any but gossip's `announce` is a
    /// conversation, and the receive loop polls fast for the reply
    /// ([`crate::axl::recv`]).
    pub fn note_traffic(&self, kind: &str) {
        if kind != "announce" {
            self.recv_stats.touch();
        }
    }

    /// Our own full AXL key.
    pub fn me(&self) -> PeerKey {
        self.me
    }

    /// Acks, de-duplication and per-peer limits ([`crate::mesh::reliable`]).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The delivery settings (heartbeats, timeouts, limits).
    pub fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// The metrics sends are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// AXL's `/topology`: our direct peers and the spanning tree.
    pub async fn topology(&self) -> Result<Topology, AxlError> {
        self.transport.topology().await
    }

    /// Encode and send one message, counting it. No send takes longer than
    /// `MESH_SEND_TIMEOUT_MS` (AXL blocks about 127 s on a key nobody has).
    ///
    /// A reliable message (see [`Message::is_reliable`]) gets a `msg_id`; this returns
    /// after its first send as before, and it is sent again in the background with
    /// backoff until acknowledged or `RELIABLE_WINDOW_MS` passes.
    pub async fn send(&self, to: &PeerKey, msg: &Message) -> Result<(), AxlError> {
        if !msg.is_reliable() {
            let body = encode(msg, None)?;
            return self.send_body(to, msg.kind(), body).await;
        }
        let id = Uuid::new_v4();
        let body = encode(msg, Some(id))?;
        let acked = self.delivery.reliable.pending.expect(to, id);
        let first = self.send_body(to, msg.kind(), body.clone()).await;
        if let Some(mut acked) = acked {
            let until = Instant::now() + self.settings.reliable_window;
            let (transport, delivery, to, kind) = (
                self.transport.clone(),
                self.delivery.clone(),
                *to,
                msg.kind(),
            );
            let settings = self.settings.clone();
            tokio::spawn(async move {
                let mut backoff = Backoff::new(settings.ack_timeout, settings.ack_timeout * 8);
                loop {
                    let wait = backoff.next().unwrap_or(settings.ack_timeout);
                    let at = (Instant::now() + wait).min(until);
                    if tokio::time::timeout_at(at.into(), &mut acked).await.is_ok() {
                        return;
                    }
                    if Instant::now() >= until {
                        delivery.reliable.pending.forget(&id);
                        tracing::debug!(to = %to.short(), kind, "gave up waiting for an ack");
                        return;
                    }
                    let send = transport.send(&to, body.clone());
                    let _ = tokio::time::timeout(settings.send_timeout, send).await;
                }
            });
        }
        first
    }

    /// Send one message once, with no `msg_id`, no ack expected and no resend, whatever
    /// its type: for answers a peer may provoke at will (a refused task), which must not
    /// take places in the pending-ack table (threat model line 25). The receiver handles a
    /// reliable type without `msg_id` and does not acknowledge it.
    pub async fn send_once(&self, to: &PeerKey, msg: &Message) -> Result<(), AxlError> {
        let body = encode(msg, None)?;
        self.send_body(to, msg.kind(), body).await
    }

    /// Send a reliable message and wait for its ack, sending again with backoff, until
    /// `until`. Returns how many sends it took.
    pub async fn send_acked(
        &self,
        to: &PeerKey,
        msg: &Message,
        until: Instant,
    ) -> Result<u32, Undelivered> {
        let id = Uuid::new_v4();
        let body = encode(msg, Some(id)).map_err(|e| Undelivered::Encode(e.to_string()))?;
        let Some(mut acked) = self.delivery.reliable.pending.expect(to, id) else {
            return Err(Undelivered::NoAck {
                tries: 0,
                last: Some("too many messages wait for an ack".into()),
            });
        };
        // However this ends (acked, given up, or the caller stopped waiting), the ack is
        // no longer expected.
        let _forget = ForgetAck(&self.delivery, id);
        let settings = &self.settings;
        let mut backoff = Backoff::new(settings.ack_timeout, settings.ack_timeout * 8);
        let (mut tries, mut last) = (0u32, None);
        loop {
            tries += 1;
            // A send that blocks (a dead node) must not hold up the resends.
            let send =
                tokio::time::timeout_at(until.into(), self.send_body(to, msg.kind(), body.clone()));
            tokio::pin!(send);
            let wait = backoff.next().unwrap_or(settings.ack_timeout);
            let at = (Instant::now() + wait).min(until);
            let mut sent = false;
            loop {
                tokio::select! {
                    r = &mut acked => {
                        return match r {
                            Ok(()) => Ok(tries),
                            Err(_) => Err(Undelivered::NoAck { tries, last }),
                        };
                    }
                    r = &mut send, if !sent => {
                        sent = true;
                        if let Ok(Err(e)) = r {
                            last = Some(e.to_string());
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
                break;
            }
            if Instant::now() >= until {
                return Err(Undelivered::NoAck { tries, last });
            }
        }
    }

    /// One bounded send of an encoded message.
    async fn send_body(
        &self,
        to: &PeerKey,
        kind: &'static str,
        body: Bytes,
    ) -> Result<(), AxlError> {
        self.note_traffic(kind);
        let bound = self.settings.send_timeout;
        match tokio::time::timeout(bound, self.transport.send(to, body)).await {
            Ok(Ok(())) => {
                self.metrics.msg_out(kind);
                tracing::debug!(to = %to.short(), kind, "sent");
                Ok(())
            }
            Ok(Err(e)) => {
                self.metrics.send_failed(kind);
                tracing::warn!(to = %to.short(), kind, error = %e, "send failed");
                Err(e)
            }
            Err(_) => {
                self.metrics.send_failed(kind);
                tracing::debug!(to = %to.short(), kind, ms = bound.as_millis() as u64, "send timed out");
                Err(AxlError::Unreachable(format!(
                    "the send did not complete within {} ms",
                    bound.as_millis()
                )))
            }
        }
    }
}

fn encode(msg: &Message, id: Option<Uuid>) -> Result<Bytes, AxlError> {
    msg.encode_with_id(id).map_err(|e| AxlError::Http {
        status: 0,
        body: e.to_string(),
    })
}

/// Stops expecting an ack when dropped.
struct ForgetAck<'a>(&'a Delivery, Uuid);

impl Drop for ForgetAck<'_> {
    fn drop(&mut self) {
        self.0.reliable.pending.forget(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::axl::Inbound;
    use crate::protocol::{JobId, TaskError, TaskErrorCode};

    /// A peer of the previous release: AXL accepts every send, and nothing ever acks
    /// (it refuses a message carrying `msg_id`).
    #[derive(Default)]
    struct NeverAcks {
        sends: AtomicU32,
    }

    #[async_trait]
    impl Transport for NeverAcks {
        async fn topology(&self) -> Result<Topology, AxlError> {
            Err(AxlError::Unreachable("not in this test".into()))
        }
        async fn send(&self, _to: &PeerKey, _body: Bytes) -> Result<(), AxlError> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn recv(&self) -> Result<Option<Inbound>, AxlError> {
            Ok(None)
        }
    }

    /// `RELIABLE_WINDOW_MS=1000`, `ACK_TIMEOUT_MS=50`.
    fn endpoint(transport: Arc<NeverAcks>) -> Endpoint {
        let settings = DeliverySettings {
            reliable_window: Duration::from_millis(1_000),
            ack_timeout: Duration::from_millis(50),
            ..DeliverySettings::default()
        };
        Endpoint::new(
            transport,
            PeerKey([1; 32]),
            settings,
            Arc::new(Metrics::new()),
            Arc::new(RecvStats::default()),
        )
    }

    fn reliable() -> Message {
        Message::TaskError(TaskError {
            job_id: JobId([9; 32]),
            code: TaskErrorCode::Busy,
            message: "full".into(),
            retry_after_ms: None,
            status: None,
        })
    }

    /// A peer that never acks gets the deadline-bounded resends only, never more.
    /// (Real time: the sender's deadlines are `std::time::Instant`s.)
    #[tokio::test]
    async fn a_peer_that_never_acks_gets_only_the_bounded_resends() {
        let t = Arc::new(NeverAcks::default());
        let endpoint = endpoint(t.clone());
        let to = PeerKey([2; 32]);
        let sends = || t.sends.load(Ordering::SeqCst);

        // Waiting for the ack: resends on the 50, 100, 200, 400, 400 ms schedule until
        // `until` (at 0, 50, 150, 350 and 750 ms; the next would be at 1150).
        let until = Instant::now() + Duration::from_millis(1_000);
        let r = endpoint.send_acked(&to, &reliable(), until).await;
        assert!(matches!(r, Err(Undelivered::NoAck { .. })), "{r:?}");
        assert!(Instant::now() >= until);
        let by_deadline = sends();
        assert!((2..=5).contains(&by_deadline), "{by_deadline} sends");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(sends(), by_deadline, "sent after giving up");
        assert!(endpoint.delivery().reliable.pending.is_empty());

        // Fire and forget: resent in the background for RELIABLE_WINDOW_MS (1 s), then
        // given up.
        endpoint.send(&to, &reliable()).await.unwrap();
        let given_up = Instant::now() + Duration::from_secs(10);
        while !endpoint.delivery().reliable.pending.is_empty() {
            assert!(Instant::now() < given_up, "still resending after 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let by_window = sends() - by_deadline;
        assert!(
            (2..=5).contains(&by_window),
            "{by_window} sends in the window"
        );
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(sends() - by_deadline, by_window, "sent after the window");
    }
}
