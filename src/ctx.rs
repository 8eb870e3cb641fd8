//! The state every part of a node shares: the mesh transport, settings, the job store,
//! metrics, our own key and the peer book.

use std::sync::Arc;
use std::time::Instant;

use crate::axl::recv::RecvStats;
use crate::axl::{AxlError, PeerKey, Transport};
use crate::config::Config;
use crate::jobs::JobStore;
use crate::mesh::{MeshState, PeerBook};
use crate::metrics::Metrics;
use crate::protocol::Message;

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
    /// Discovery: the directory of nodes, the ad cache, the provider history.
    pub mesh: MeshState,
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
