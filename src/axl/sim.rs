//! TEST AND DEMO HARNESS: an in-process stand-in for a few AXL nodes.
//!
//! This is **not** a mesh implementation. It reproduces AXL's *local HTTP contract*
//! (`/topology`, `/send`, `/recv`, as read from AXL's `api/*.go` and
//! `internal/tcp/listen/listener.go`) so the daemon, its tests and `edgent demo` can run
//! without the Go binary or a network. Each node listens on its own `127.0.0.1` port.
//!
//! What it copies from AXL, on purpose:
//! - `/recv`: 204 when empty; else the raw body with `X-From-Peer-Id` set to the sender's
//!   PARTIAL key ([`PeerKey::partial`], i.e. Yggdrasil `Address.GetKey`), not its full key.
//! - The receive queue holds 100 messages and drops the OLDEST when full.
//! - `/send`: 400 `Invalid destination peer ID` for anything but 64 hex characters (and
//!   `Missing X-Destination-Peer-Id header` without it); 502 `Failed to reach peer` when
//!   the destination cannot be reached; else 200 with `X-Sent-Bytes`. The destination is
//!   found by its Yggdrasil address, like AXL's dialer, so a partial key reaches it too.
//! - `/send` answers once the message is handed over, not when it is read: losses after
//!   that point (drop rate, a full queue) are invisible to the sender, as in AXL.
//! - A body over the 16 MiB `max_message_size`: AXL's sender writes the length prefix,
//!   the receiver reads it and closes the connection, and the sender's write of the
//!   (larger than its 8 MiB send buffer) body fails, so `/send` answers 500
//!   `Write data failed: …`. The sim answers that 500 and never queues the message.
//!
//! Where it is simpler than AXL: every node is a direct peer of every other; the tree
//! is a star rooted at the lowest-numbered up node; an unknown destination gets 502 at
//! once (AXL would first spend a TCP dial timeout); node keys are 32 bytes derived from
//! `(seed, index)` ([`sim_node_key`]), not ed25519 keys (nothing here signs).
//!
//! Faults, settable from Rust ([`MeshSim::set_faults`] and helpers) or over HTTP on any
//! up node under the separate `/sim/` prefix (`GET`/`POST /sim/faults` with [`Faults`]
//! as JSON; `GET /sim/stats`), so another process can inject them:
//! - `drop_rate`: each message is silently lost with this probability (`/send` still 200);
//! - `delay_ms`: delivery happens this much after `/send` answers;
//! - `partitions`: `[[i, j], …]` pairs that cannot reach each other (502 both ways);
//! - `down`: nodes whose AXL is "not running": their port refuses connections, `/send`
//!   to them answers 502, and their queue is lost (as when the process dies).

mod http;

use std::collections::{BTreeSet, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::identity::YggAddress;
use super::{AxlClient, AxlError, PeerKey};

/// AXL's receive queue capacity (`DefaultRecvQueue`).
pub const SIM_QUEUE_CAPACITY: usize = 100;
/// AXL's default `max_message_size`.
pub const SIM_MAX_MESSAGE_BYTES: usize = super::client::MAX_MESSAGE_BYTES;
/// Largest `delay_ms` accepted, so a typo cannot park messages for hours.
pub const SIM_MAX_DELAY_MS: u64 = 60_000;
/// How long starting or stopping a node's listener may take.
const LISTENER_DEADLINE: Duration = Duration::from_secs(3);

/// Why the sim could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A node's port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fault setting is out of range (bad node index, drop rate outside 0..=1, …).
    #[error("invalid faults: {0}")]
    BadFaults(String),
    /// `base_port + n` does not fit in a port number, or `n` is zero.
    #[error("invalid sim size: {0}")]
    BadSize(String),
    /// A node's listener did not open or close in time.
    #[error("node {0}: listener did not change state in time")]
    ListenerStuck(usize),
}

/// The faults in force, as JSON on `/sim/faults`. Missing fields mean "no fault".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability in `0.0..=1.0` that a sent message is silently lost.
    pub drop_rate: f64,
    /// Delivery delay in milliseconds.
    pub delay_ms: u64,
    /// Node index pairs that cannot reach each other.
    pub partitions: Vec<[usize; 2]>,
    /// Node indices that are down.
    pub down: Vec<usize>,
}

impl Faults {
    fn validate(&self, n: usize) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(SimError::BadFaults(format!(
                "drop_rate must be within 0..=1, got {}",
                self.drop_rate
            )));
        }
        if self.delay_ms > SIM_MAX_DELAY_MS {
            return Err(SimError::BadFaults(format!(
                "delay_ms must be at most {SIM_MAX_DELAY_MS}, got {}",
                self.delay_ms
            )));
        }
        for &[i, j] in &self.partitions {
            if i >= n || j >= n || i == j {
                return Err(SimError::BadFaults(format!(
                    "partition [{i}, {j}] must name two different nodes below {n}"
                )));
            }
        }
        if let Some(i) = self.down.iter().find(|&&i| i >= n) {
            return Err(SimError::BadFaults(format!(
                "down node {i} does not exist (there are {n})"
            )));
        }
        Ok(())
    }

    fn is_down(&self, i: usize) -> bool {
        self.down.contains(&i)
    }

    fn partitioned(&self, i: usize, j: usize) -> bool {
        self.partitions
            .iter()
            .any(|&[a, b]| (a == i && b == j) || (a == j && b == i))
    }

    /// Whether `from` can reach `to` (both up, not partitioned).
    fn reachable(&self, from: usize, to: usize) -> bool {
        !self.is_down(from) && !self.is_down(to) && !self.partitioned(from, to)
    }
}

/// Counters of one sim node, as JSON on `/sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimNodeStats {
    /// Messages put on this node's receive queue.
    pub delivered: u64,
    /// Messages pushed out of the full queue (oldest first), as AXL does.
    pub overflow_dropped: u64,
    /// Messages to this node lost to the drop rate or to the node being down.
    pub fault_dropped: u64,
    /// Messages waiting in the queue now.
    pub queued: usize,
    /// `GET /recv` requests answered (shows how often a receiver polls).
    pub recv_polls: u64,
}

#[derive(Default)]
struct NodeCounters {
    delivered: AtomicU64,
    overflow_dropped: AtomicU64,
    fault_dropped: AtomicU64,
    recv_polls: AtomicU64,
}

struct Queued {
    from_partial: PeerKey,
    body: Bytes,
}

struct SimNode {
    key: PeerKey,
    addr: YggAddress,
    port: u16,
    queue: Mutex<VecDeque<Queued>>,
    counters: NodeCounters,
    /// Stops this node's HTTP server; `None` while the node is down.
    server: Mutex<Option<CancellationToken>>,
}

/// State shared by every node's HTTP handlers.
struct Shared {
    nodes: Vec<SimNode>,
    faults: Mutex<Faults>,
    rng: Mutex<fastrand::Rng>,
    /// Serialises fault changes: starting and stopping listeners must not interleave.
    apply: tokio::sync::Mutex<()>,
    /// Cancelled when the whole sim stops (stops delayed deliveries too).
    closed: CancellationToken,
}

/// Lock a std mutex, recovering the data if a panicking thread poisoned it: every value
/// behind these locks stays consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key of sim node `index` under `seed`: 32 bytes of splitmix64 output, so a sim
/// restarted with the same seed has the same node ids.
pub fn sim_node_key(seed: u64, index: usize) -> PeerKey {
    let mut state = seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x6564_6765_6e74;
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_be_bytes());
    }
    PeerKey(key)
}

/// What happened to one `/send`, mapped to AXL's answer by the HTTP layer.
enum SendOutcome {
    /// Handed over (maybe lost later, invisibly): 200.
    Sent,
    /// No node has that address, or it is down or partitioned away: 502.
    Unreachable(String),
    /// Over the receiver's `max_message_size`: 500, as AXL's failed write.
    TooLarge,
}

impl Shared {
    fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    fn is_down(&self, i: usize) -> bool {
        lock(&self.faults).is_down(i)
    }

    fn node_by_addr(&self, addr: &YggAddress) -> Option<usize> {
        self.nodes.iter().position(|n| &n.addr == addr)
    }

    fn send(self: &Arc<Self>, from: usize, to: &PeerKey, body: Bytes) -> SendOutcome {
        let Some(dest) = self.node_by_addr(&to.address()) else {
            return SendOutcome::Unreachable(format!("no node has address {} (sim)", to.ipv6()));
        };
        let faults = self.faults();
        if !faults.reachable(from, dest) {
            return SendOutcome::Unreachable(format!(
                "connection timed out (sim: node {dest} is down or partitioned from node {from})"
            ));
        }
        if body.len() > SIM_MAX_MESSAGE_BYTES {
            return SendOutcome::TooLarge;
        }
        let lost = faults.drop_rate > 0.0 && lock(&self.rng).f64() < faults.drop_rate;
        if lost {
            self.nodes[dest]
                .counters
                .fault_dropped
                .fetch_add(1, Ordering::Relaxed);
            return SendOutcome::Sent;
        }
        let msg = Queued {
            from_partial: self.nodes[from].key.partial(),
            body,
        };
        if faults.delay_ms == 0 {
            self.deliver(dest, msg);
        } else {
            let shared = Arc::clone(self);
            let delay = Duration::from_millis(faults.delay_ms);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shared.closed.cancelled() => {}
                    _ = tokio::time::sleep(delay) => shared.deliver(dest, msg),
                }
            });
        }
        SendOutcome::Sent
    }

    fn deliver(&self, dest: usize, msg: Queued) {
        let node = &self.nodes[dest];
        if self.is_down(dest) {
            node.counters.fault_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut q = lock(&node.queue);
        if q.len() >= SIM_QUEUE_CAPACITY {
            q.pop_front();
            node.counters
                .overflow_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(msg);
        node.counters.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn pop(&self, i: usize) -> Option<Queued> {
        let node = &self.nodes[i];
        node.counters.recv_polls.fetch_add(1, Ordering::Relaxed);
        lock(&node.queue).pop_front()
    }

    fn stats(&self, i: usize) -> SimNodeStats {
        let n = &self.nodes[i];
        SimNodeStats {
            delivered: n.counters.delivered.load(Ordering::Relaxed),
            overflow_dropped: n.counters.overflow_dropped.load(Ordering::Relaxed),
            fault_dropped: n.counters.fault_dropped.load(Ordering::Relaxed),
            queued: lock(&n.queue).len(),
            recv_polls: n.counters.recv_polls.load(Ordering::Relaxed),
        }
    }

    /// Replace the faults, stopping and starting node listeners as `down` changes.
    async fn set_faults(self: &Arc<Self>, new: Faults) -> Result<(), SimError> {
        new.validate(self.nodes.len())?;
        let _serial = self.apply.lock().await;
        let old = std::mem::replace(&mut *lock(&self.faults), new.clone());
        for i in 0..self.nodes.len() {
            match (old.is_down(i), new.is_down(i)) {
                (false, true) => self.stop_node(i).await?,
                (true, false) => self.start_node(i).await?,
                _ => {}
            }
        }
        tracing::info!(target: "axl::sim", faults = ?new, "sim faults set");
        Ok(())
    }

    /// Take node `i` down: its queue is lost and its port refuses connections. Returns
    /// once a connection to the port is refused.
    async fn stop_node(&self, i: usize) -> Result<(), SimError> {
        let node = &self.nodes[i];
        if let Some(token) = lock(&node.server).take() {
            token.cancel();
        }
        lock(&node.queue).clear();
        let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
        let deadline = tokio::time::Instant::now() + LISTENER_DEADLINE;
        while TcpStream::connect(addr).await.is_ok() {
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::ListenerStuck(i));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Bring node `i` back on its old port (retrying while the old listener closes).
    async fn start_node(self: &Arc<Self>, i: usize) -> Result<(), SimError> {
        let port = self.nodes[i].port;
        let deadline = tokio::time::Instant::now() + LISTENER_DEADLINE;
        let listener = loop {
            match bind(port) {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        self.serve(i, listener);
        Ok(())
    }

    fn serve(self: &Arc<Self>, i: usize, listener: TcpListener) {
        let token = self.closed.child_token();
        *lock(&self.nodes[i].server) = Some(token.clone());
        let app = http::router(Arc::clone(self), i);
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(target: "axl::sim", node = i, error = %e, "sim node server failed");
            }
        });
    }
}

fn bind(port: u16) -> Result<TcpListener, SimError> {
    let err = |source| SimError::Bind { port, source };
    let socket = TcpSocket::new_v4().map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .map_err(err)?;
    socket.listen(1024).map_err(err)
}

/// A running in-process mesh of `n` nodes (TEST AND DEMO HARNESS, see the module docs).
/// Dropping it stops every node.
pub struct MeshSim {
    shared: Arc<Shared>,
}

impl MeshSim {
    /// Start `n` nodes on `127.0.0.1`, on ports `base_port + i`, or on ephemeral ports
    /// when `base_port` is 0. Node ids come from `(seed, i)` ([`sim_node_key`]).
    pub async fn start(n: usize, base_port: u16, seed: u64) -> Result<MeshSim, SimError> {
        if n == 0 {
            return Err(SimError::BadSize("at least one node is needed".into()));
        }
        if base_port != 0 && usize::from(base_port) + n > usize::from(u16::MAX) + 1 {
            return Err(SimError::BadSize(format!(
                "{n} nodes from port {base_port} run past port 65535"
            )));
        }
        let mut listeners = Vec::with_capacity(n);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let want = if base_port == 0 {
                0
            } else {
                base_port + i as u16
            };
            let listener = bind(want)?;
            let port = listener
                .local_addr()
                .map_err(|source| SimError::Bind { port: want, source })?
                .port();
            let key = sim_node_key(seed, i);
            nodes.push(SimNode {
                key,
                addr: key.address(),
                port,
                queue: Mutex::new(VecDeque::with_capacity(SIM_QUEUE_CAPACITY)),
                counters: NodeCounters::default(),
                server: Mutex::new(None),
            });
            listeners.push(listener);
        }
        let shared = Arc::new(Shared {
            nodes,
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5151_5151)),
            apply: tokio::sync::Mutex::new(()),
            closed: CancellationToken::new(),
        });
        for (i, listener) in listeners.into_iter().enumerate() {
            shared.serve(i, listener);
        }
        tracing::info!(target: "axl::sim", nodes = n, seed, "mesh sim started");
        Ok(MeshSim { shared })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.shared.nodes.len()
    }

    /// Always false: a sim has at least one node.
    pub fn is_empty(&self) -> bool {
        self.shared.nodes.is_empty()
    }

    /// Full public key of node `i`. Panics if `i >= len()`.
    pub fn key(&self, i: usize) -> PeerKey {
        self.shared.nodes[i].key
    }

    /// API port of node `i`. Panics if `i >= len()`.
    pub fn port(&self, i: usize) -> u16 {
        self.shared.nodes[i].port
    }

    /// API base URL of node `i`, e.g. `http://127.0.0.1:9002`. Panics if `i >= len()`.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.port(i))
    }

    /// An [`AxlClient`] for node `i`. Panics if `i >= len()`.
    pub fn client(&self, i: usize) -> Result<AxlClient, AxlError> {
        AxlClient::new(&self.url(i))
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replace all faults. Returns once downed nodes refuse connections and revived ones
    /// listen again.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        self.shared.set_faults(faults).await
    }

    /// Take node `i` down (`true`) or bring it back (`false`), keeping other faults.
    pub async fn set_down(&self, i: usize, down: bool) -> Result<(), SimError> {
        let mut f = self.faults();
        f.down.retain(|&d| d != i);
        if down {
            f.down.push(i);
        }
        self.set_faults(f).await
    }

    /// Cut nodes `i` and `j` off from each other.
    pub async fn partition(&self, i: usize, j: usize) -> Result<(), SimError> {
        let mut f = self.faults();
        f.partitions.push([i, j]);
        self.set_faults(f).await
    }

    /// Remove every partition.
    pub async fn heal(&self) -> Result<(), SimError> {
        let mut f = self.faults();
        f.partitions.clear();
        self.set_faults(f).await
    }

    /// Set the probability that a message is silently lost.
    pub async fn set_drop_rate(&self, rate: f64) -> Result<(), SimError> {
        let mut f = self.faults();
        f.drop_rate = rate;
        self.set_faults(f).await
    }

    /// Set the delivery delay.
    pub async fn set_delay(&self, delay: Duration) -> Result<(), SimError> {
        let mut f = self.faults();
        f.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.set_faults(f).await
    }

    /// Counters of node `i`. Panics if `i >= len()`.
    pub fn stats(&self, i: usize) -> SimNodeStats {
        self.shared.stats(i)
    }

    /// Stop every node.
    pub fn shutdown(&self) {
        self.shared.closed.cancel();
    }
}

impl Drop for MeshSim {
    fn drop(&mut self) {
        self.shared.closed.cancel();
    }
}

/// The ids of the nodes down or partitioned away, as sets, for `/topology`.
fn unreachable_from(faults: &Faults, me: usize, n: usize) -> BTreeSet<usize> {
    (0..n)
        .filter(|&j| !faults.reachable(me, j) && j != me)
        .collect()
}

/// `edgent mesh-sim`: start a sim, print one line per node
/// (`node <i> id=<64 hex> url=http://127.0.0.1:<port>`) to stdout, serve until `cancel`.
pub async fn run_mesh_sim_cli(
    nodes: usize,
    base_port: u16,
    seed: u64,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let sim = MeshSim::start(nodes, base_port, seed).await?;
    {
        let mut out = std::io::stdout().lock();
        for i in 0..sim.len() {
            writeln!(out, "node {i} id={} url={}", sim.key(i), sim.url(i))?;
        }
        out.flush()?;
    }
    eprintln!(
        "mesh-sim: {nodes} simulated AXL nodes (test/demo harness); faults at POST {}/sim/faults",
        sim.url(0)
    );
    cancel.cancelled().await;
    sim.shutdown();
    Ok(())
}
