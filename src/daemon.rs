//! Assembling a node: the AXL child (or an attached node), the job store, the receive
//! loop, the router, the requester and provider, and the HTTP API; and taking it all
//! down again in order (stop accepting, stop the loops, kill the AXL child).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, AxlChildStatus, AxlStatusSource};
use crate::axl::recv::{spawn_recv_loop, RecvStats, RECV_CHANNEL_CAPACITY};
use crate::axl::supervisor::{Supervisor, SupervisorConfig};
use crate::axl::{AxlClient, PeerKey, Transport};
use crate::backoff::Backoff;
use crate::config::{BackendKind, Config};
use crate::ctx::NodeCtx;
use crate::inference::{Backend, DemoBackend, OllamaBackend};
use crate::jobs::JobStore;
use crate::node::{run_router, Handlers};
use crate::paid::PaymentsSetupError;
use crate::provider::Provider;
use crate::requester::Requester;

/// How long the daemon waits for the AXL node's API at start.
const AXL_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the provider re-checks its backend's models.
const MODEL_REFRESH: Duration = Duration::from_secs(15);

struct Attached {
    api_url: String,
}

impl AxlStatusSource for Attached {
    fn axl_status(&self) -> AxlChildStatus {
        AxlChildStatus {
            mode: "attached",
            state: "attached".into(),
            restarts: 0,
            pid: None,
            api_url: self.api_url.clone(),
        }
    }
}

struct Supervised {
    sup: Arc<Supervisor>,
    api_url: String,
}

impl AxlStatusSource for Supervised {
    fn axl_status(&self) -> AxlChildStatus {
        let s = self.sup.status();
        AxlChildStatus {
            mode: "spawned",
            state: serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            restarts: u64::from(s.restarts),
            pid: s.pid,
            api_url: self.api_url.clone(),
        }
    }
}

/// A running node.
pub struct Daemon {
    /// Shared node state.
    pub ctx: Arc<NodeCtx>,
    /// The requester side.
    pub requester: Arc<Requester>,
    /// The provider side.
    pub provider: Arc<Provider>,
    http_addr: SocketAddr,
    cancel: CancellationToken,
    supervisor: Option<Arc<Supervisor>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The backend the configuration asks for.
pub fn backend_from_config(config: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match config.inference.backend {
        BackendKind::Ollama => Arc::new(
            OllamaBackend::new(&config.inference.ollama_url)
                .context("OLLAMA_URL: cannot build the HTTP client")?,
        ),
        BackendKind::Demo => Arc::new(DemoBackend),
        BackendKind::OpenAi => Arc::new(
            crate::inference::openai::OpenAiBackend::new(
                &config.inference.openai_base_url,
                config.inference.openai_api_key.clone(),
            )
            .context("OPENAI_BASE_URL: cannot build the HTTP client")?,
        ),
    })
}

/// Whether a start-up error is a configuration that cannot work (exit with
/// [`crate::config::EX_CONFIG`], which the systemd unit does not restart on), rather than
/// something a later try may get past (an RPC endpoint that is down).
pub fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::config::ConfigError>().is_some()
            || c.downcast_ref::<crate::init::InitError>().is_some()
            || c.downcast_ref::<PaymentsSetupError>()
                .is_some_and(|p| !p.is_transient())
    })
}

/// Wait until the AXL API answers `/topology`, returning our own key.
async fn wait_for_axl(transport: &dyn Transport, timeout: Duration) -> anyhow::Result<PeerKey> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        match transport.topology().await {
            Ok(t) => {
                return PeerKey::from_hex(&t.our_public_key)
                    .map_err(|e| anyhow::anyhow!("AXL reported a bad our_public_key: {e}"));
            }
            Err(e) if start.elapsed() >= timeout => {
                anyhow::bail!("AXL API did not answer within {timeout:?}: {e}");
            }
            Err(_) => {
                if let Some(delay) = backoff.next() {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl Daemon {
    /// Start a node. `backend` overrides the one the configuration names (the demo uses it).
    pub async fn start(
        config: Config,
        backend: Option<Arc<dyn Backend>>,
    ) -> anyhow::Result<Daemon> {
        let cancel = CancellationToken::new();
        // Before anything is spawned: a setup that cannot pay stops here (or, under
        // EDGENT_PAYMENTS=auto, turns payments off with its reason).
        let payments = crate::paid::setup::decide(&config).await?;
        let payments_status = payments.status.clone();
        let jobs = Arc::new(
            JobStore::open(&config.node.data_dir)
                .with_context(|| format!("EDGENT_DATA_DIR {}", config.node.data_dir.display()))?,
        );
        let closed = jobs.close_interrupted()?;
        if closed > 0 {
            tracing::warn!(
                closed,
                "jobs left in flight by the previous run were marked failed"
            );
        }

        let supervisor = if config.axl.spawn {
            let mut sc = SupervisorConfig::new(
                config.axl.bin.clone(),
                config.node.data_dir.clone(),
                config.axl.api_port(),
                config.axl.tcp_port,
            );
            sc.key_path = config.axl.key_path.clone();
            sc.peers = config.axl.peers.clone();
            sc.listen = config.axl.listen.clone();
            if !config.axl.bin.exists() {
                anyhow::bail!(
                    "AXL_BIN {}: no such file (install AXL with scripts/install-axl.sh, or set AXL_SPAWN=false and AXL_API_URL to attach to a running node)",
                    config.axl.bin.display()
                );
            }
            let sup = Supervisor::start(sc)
                .await
                .context("starting the AXL node (AXL_BIN)")?;
            Some(Arc::new(sup))
        } else {
            None
        };

        let client = AxlClient::new(&config.axl.api_url).context("AXL_API_URL")?;
        let transport: Arc<dyn Transport> = Arc::new(client);
        let me = match wait_for_axl(transport.as_ref(), AXL_READY_TIMEOUT).await {
            Ok(me) => me,
            Err(e) => {
                if let Some(s) = &supervisor {
                    s.shutdown().await;
                }
                return Err(e.context(format!("AXL node at {}", config.axl.api_url)));
            }
        };
        tracing::info!(node_id = %me, ipv6 = %me.ipv6(), "AXL node ready");

        let backend = match backend {
            Some(b) => b,
            None => backend_from_config(&config)?,
        };
        let recv_stats = Arc::new(RecvStats::default());
        let history = crate::mesh::ProviderHistory::open(&config.node.data_dir)
            .with_context(|| format!("EDGENT_DATA_DIR {}", config.node.data_dir.display()))?;
        let ctx = Arc::new(NodeCtx::new(
            config.clone(),
            transport.clone(),
            me,
            jobs,
            history,
            recv_stats.clone(),
        ));
        let mut tasks = Vec::new();
        let (payments, payments_task) = payments.start(&ctx, &cancel);
        tasks.extend(payments_task);
        let signer = if config.node.role.provides() {
            receipt_signer(&config.axl.key_path, &me)
        } else {
            None
        };
        let provider =
            Arc::new(Provider::new(ctx.clone(), backend, payments.clone()).with_signer(signer));
        if config.node.role.provides() {
            provider.refresh_models().await;
        }
        let requester = Arc::new(Requester::new(ctx.clone(), payments.clone()));

        let (tx, rx) = mpsc::channel(RECV_CHANNEL_CAPACITY);
        tasks.push(spawn_recv_loop(
            transport.clone(),
            tx,
            cancel.clone(),
            recv_stats.clone(),
        ));
        let handlers = Handlers {
            requester: requester.clone(),
            provider: provider.clone(),
            payments,
        };
        tasks.push(tokio::spawn(run_router(
            ctx.clone(),
            handlers,
            rx,
            cancel.clone(),
        )));
        if config.node.role.provides() {
            tasks.push(tokio::spawn(
                provider.clone().refresh_loop(MODEL_REFRESH, cancel.clone()),
            ));
        }
        tasks.push(tokio::spawn(crate::jobs::retention::prune_loop(
            ctx.jobs.clone(),
            config.provider.prompt_retention,
            cancel.clone(),
        )));
        let offers: Option<Arc<dyn crate::mesh::gossip::OfferSource>> = config
            .node
            .role
            .provides()
            .then(|| provider.clone() as Arc<dyn crate::mesh::gossip::OfferSource>);
        tasks.push(tokio::spawn(crate::mesh::gossip::run(
            ctx.endpoint.clone(),
            ctx.mesh.clone(),
            config.node.ens_name.clone(),
            offers,
            config.node.announce_interval,
            cancel.clone(),
        )));

        let axl_status: Arc<dyn AxlStatusSource> = match &supervisor {
            Some(sup) => Arc::new(Supervised {
                sup: sup.clone(),
                api_url: config.axl.api_url.clone(),
            }),
            None => Arc::new(Attached {
                api_url: config.axl.api_url.clone(),
            }),
        };
        let state = Arc::new(AppState {
            ctx: ctx.clone(),
            requester: requester.clone(),
            provider: provider.clone(),
            recv_stats,
            axl: axl_status,
            payments: payments_status,
        });
        let front = Arc::new(
            crate::front::FrontDoor::new(ctx.clone(), requester.clone())
                .context("the front door's HTTP client")?,
        );
        let listener = match tokio::net::TcpListener::bind(config.node.http_addr).await {
            Ok(l) => l,
            Err(e) => {
                return Err(abort_start(
                    &cancel,
                    &supervisor,
                    "EDGENT_HTTP_ADDR",
                    config.node.http_addr,
                    e,
                )
                .await)
            }
        };
        let http_addr = listener.local_addr()?;
        let app = crate::guard::guarded(
            api::router(state).merge(crate::front::router(front.clone())),
            config.front.guard_for(http_addr),
        );
        if let Some(addr) = config.front.ollama_addr {
            let l = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    return Err(
                        abort_start(&cancel, &supervisor, "EDGENT_OLLAMA_ADDR", addr, e).await,
                    )
                }
            };
            let ollama_app = crate::guard::guarded(
                crate::front::ollama_only_router(front),
                config.front.guard_for(addr),
            );
            tasks.push(tokio::spawn(serve_http(
                l,
                ollama_app,
                cancel.clone(),
                "the Ollama-only HTTP server",
            )));
            tracing::info!(%addr, "Ollama and OpenAI APIs listening (EDGENT_OLLAMA_ADDR)");
        }
        tasks.push(tokio::spawn(serve_http(
            listener,
            app,
            cancel.clone(),
            "the HTTP server",
        )));
        tracing::info!(addr = %http_addr, role = config.node.role.as_str(), ens = ?config.node.ens_name, "edgent listening");

        Ok(Daemon {
            ctx,
            requester,
            provider,
            http_addr,
            cancel,
            supervisor,
            tasks,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The token whose cancellation stops the daemon.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stop everything: the HTTP server, the loops, then the AXL child.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("a task did not stop within 5 s");
            }
        }
        if let Some(s) = self.supervisor {
            s.shutdown().await;
        }
        tracing::info!("edgent stopped");
    }
}

/// Serves `app` on `listener` until `cancel`, with TCP_NODELAY on every connection:
/// streamed answers are many small writes, and without it Nagle holds each behind the
/// agent's delayed ACK (40 ms on Linux). Ollama sets it too.
/// A listener that cannot bind ends the start: everything started so far stops (the AXL
/// child too), and the error names the setting.
async fn abort_start(
    cancel: &CancellationToken,
    supervisor: &Option<Arc<crate::axl::supervisor::Supervisor>>,
    key: &str,
    addr: std::net::SocketAddr,
    e: std::io::Error,
) -> anyhow::Error {
    cancel.cancel();
    if let Some(s) = supervisor {
        s.shutdown().await;
    }
    anyhow::anyhow!("{key} {addr}: cannot listen: {e}")
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cancel: CancellationToken,
    what: &'static str,
) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "{what} stopped");
    }
}

/// The signer of this provider's receipts: the AXL node's own key (`AXL_KEY_PATH`, the file
/// the supervisor gives AXL), when it is the key of the node the daemon talks to. Without
/// it the provider's results carry no receipt and requesters refuse them.
fn receipt_signer(
    key_path: &std::path::Path,
    me: &PeerKey,
) -> Option<crate::protocol::receipt::ReceiptSigner> {
    let seed = match crate::axl::supervisor::key::read_seed(key_path) {
        Ok(seed) => seed,
        Err(e) => {
            tracing::warn!(error = %e, "no AXL key to sign receipts with: requesters will refuse this provider's results");
            return None;
        }
    };
    let signer = crate::protocol::receipt::ReceiptSigner::from_seed(&seed);
    if signer.public() != *me {
        tracing::warn!(
            key = %signer.public().short(),
            node = %me.short(),
            "AXL_KEY_PATH is not the key of the AXL node in use: no receipts are signed"
        );
        return None;
    }
    Some(signer)
}
