//! The state every part of a node shares: the settings, the mesh endpoint, what the node
//! knows of the mesh, the job store and the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::axl::recv::RecvStats;
use crate::axl::{PeerKey, Transport};
use crate::config::Config;
use crate::jobs::JobStore;
use crate::mesh::endpoint::Endpoint;
use crate::mesh::{MeshState, ProviderHistory};
use crate::metrics::Metrics;

/// State shared by the router, the requester, the provider and the HTTP API.
pub struct NodeCtx {
    /// Settings.
    pub config: Config,
    /// Sending to other nodes, and the topology ([`crate::mesh::endpoint`]).
    pub endpoint: Arc<Endpoint>,
    /// What we know of the mesh: the peer book, the directory of nodes, the ad cache, the
    /// provider history.
    pub mesh: Arc<MeshState>,
    /// The job table.
    pub jobs: Arc<JobStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// When the daemon started.
    started: Instant,
}

impl NodeCtx {
    /// The shared state of node `me` over `transport`; `recv_stats` are the receive
    /// loop's counters (sending marks traffic so the loop polls fast for the reply).
    pub fn new(
        config: Config,
        transport: Arc<dyn Transport>,
        me: PeerKey,
        jobs: Arc<JobStore>,
        history: ProviderHistory,
        recv_stats: Arc<RecvStats>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let endpoint = Endpoint::new(
            transport,
            me,
            config.delivery.clone(),
            metrics.clone(),
            recv_stats,
        );
        let ens = config.names.rpc_url.as_deref().and_then(|url| {
            crate::chain::ens::EnsClient::new(url, config.names.registry, None)
                .map_err(|e| tracing::warn!(error = %e, "ENS names cannot be checked"))
                .ok()
        });
        let names = crate::mesh::names::NameChecks::new(ens, config.names.ttl);
        let mesh = MeshState::new(history, config.access.clone(), Arc::new(names));
        NodeCtx {
            endpoint: Arc::new(endpoint),
            mesh: Arc::new(mesh),
            jobs,
            metrics,
            started: Instant::now(),
            config,
        }
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
