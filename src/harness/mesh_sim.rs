//! TEST AND DEMO HARNESS: an in-process stand-in for a mesh of AXL nodes.
//!
//! This is **not** a mesh implementation. It reproduces AXL's *local HTTP contract*
//! (`/topology`, `/send`, `/recv`, as read from AXL's `api/*.go` and
//! `internal/tcp/listen/listener.go`) and, switch by switch, the behaviours measured on the
//! real node (`axl/README.md`, "How the real node behaves"), so the daemon, its tests and
//! `edgent demo` can run without the Go binary or a network. Each node listens on its own
//! `127.0.0.1` port.
//!
//! # Layout
//! - this file: [`MeshSim`] (start, kill, restart, faults), the routing of one `/send`;
//! - [`topology`]: the peering graph ([`SimTopology`]) and each node's view of the tree;
//! - [`timing`]: route warm-up, SYN backoff, the blocking send, lingering ([`SimTiming`]);
//! - [`Faults`] (`faults`): lost messages, delays, partitions, nodes down;
//! - `http`: one node's HTTP server, AXL's API plus the `/sim/` control routes;
//! - `cli`: `edgent mesh-sim` ([`MeshSimArgs`], [`run_mesh_sim_cli`]).
//!
//! # The real node and the sim, side by side
//!
//! `MeshSim::start` and `edgent mesh-sim` without flags keep the old, simple behaviour
//! (full mesh, no timing rules); [`SimOptions::real`] / `--real` turns on every measured
//! behaviour at once with the measured durations (`--time-scale F` shortens them), and
//! each has its own switch.
//!
//! | measured on the real node | what the sim does | switch |
//! |---|---|---|
//! | `/recv`: 204 when empty, else the body with `X-From-Peer-Id` = the sender's PARTIAL key (Yggdrasil `Address.GetKey`, 115-116 key bits then 1s) | the same ([`PeerKey::partial`]) | always |
//! | the `/recv` queue holds 100 messages, the oldest dropped when full | the same ([`SIM_QUEUE_CAPACITY`]) | always |
//! | `/send`: 400 `Invalid destination peer ID` for anything but 64 hex, 200 with `X-Sent-Bytes` once handed over; later losses are invisible to the sender | the same; the destination is found by its Yggdrasil address, so a partial key reaches it | always |
//! | a body over `max_message_size` (16 MiB): 500 `Write data failed: …` | the same, never queued | always |
//! | a spoke's `tree` lists itself, its direct peers and their ancestors only: spokes of a hub never see each other; the hub sees its peers; `/send` still routes to any key | the same over a peering tree; `/send` needs a path of running nodes | `--parents` / `--topology` ([`SimTopology`]); default: full mesh, everyone a direct peer |
//! | `tree` entries `{public_key, parent, sequence}`, the root its own parent | root: the smallest key of each connected part; parent: the neighbour one hop closer | with the topology |
//! | the first `/send` after two nodes peer takes 3.0 s at +0-0.3 s, 1.0 s at +1 s, ~5 ms from +2 s (route ready 2 s after peering; SYNs at 0, 1, 3, 7 … s) | a send is held until its first SYN attempt at or after "ready", the route being ready `warmup` after its last node (re)started; so a restarted peer is sendable again after a few seconds | `--warmup-ms`, `--syn-backoff-ms` ([`SimTiming::warmup_ms`]); off by default |
//! | `/send` to a key nobody has, or to a node that is down, blocks 127 s, then `502 Failed to reach peer: … operation timed out`; AXL keeps dialling, so a node back in time is reached | held, re-checked at each SYN attempt, 502 after the block time; shutdown and killing the sender end held sends | `--block-ms` ([`SimTiming::block_ms`]); default: 502 at once |
//! | a departed node lingers in the others' `tree` for minutes; its peer entry says `up: false` | it stays in the trees that listed it for the linger time (the tree's shape frozen meanwhile) | `--linger-ms` ([`SimTiming::linger_ms`]); default: gone at once; peers always show `up: false` |
//! | a message accepted (200) is lost if the node dies before delivering it | killing a node loses its queue and every delayed delivery from or to it | always (`down`, `/sim/kill/{i}`) |
//! | a node can be killed (SIGKILL) and restarted with the same key; its port refuses connections meanwhile | the same ([`MeshSim::kill`], [`MeshSim::restart`], `POST /sim/kill/{i}`, `POST /sim/restart/{i}`, `down` in the faults); a held `/send` on a killed node answers 503 `sim: node is down` (the real client would see the connection drop) | always |
//! | every node uses the same `tcp_port`; peers dial with TLS | not modelled (no sockets between nodes) | - |
//! | node keys are ed25519; the node's key file (`PrivateKeyPath`) is the operator's | ed25519 keys from `(seed, index)` ([`sim_node_key`]); `GET /sim/key` gives node's key as the PKCS#8 PEM AXL reads, for the daemon to sign receipts with (the real node's operator has the file) | always |
//!
//! # Faults and control over HTTP
//!
//! Settable from Rust ([`MeshSim::set_faults`] and helpers) or over HTTP on any up node
//! under the separate `/sim/` prefix, so another process can drive the sim:
//! - `GET`/`POST /sim/faults` with [`Faults`] as JSON:
//!   - `drop_rate`: each message is silently lost with this probability (`/send` still 200);
//!   - `delay_ms`: delivery happens this much after `/send` answers;
//!   - `partitions`: `[[i, j], …]` pairs that cannot reach each other;
//!   - `down`: nodes whose AXL is "not running": their port refuses connections, sends to
//!     them fail (at once, or after the block time), their queue is lost;
//! - `POST /sim/kill/{i}`, `POST /sim/restart/{i}` (a running node is killed first);
//! - `GET`/`POST /sim/timing` with [`SimTiming`] as JSON (the topology is fixed at start);
//! - `GET /sim/stats`: [`SimNodeStats`] per node, `sent` included (mesh traffic per node).

mod cli;
mod faults;
mod http;
pub mod timing;
pub mod topology;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::axl::identity::YggAddress;
use crate::axl::{AxlClient, AxlError, PeerKey};
pub use cli::{run_mesh_sim_cli, MeshSimArgs};
pub use faults::Faults;
pub use timing::SimTiming;
use timing::{dial_delay, next_attempt_after, SIM_MAX_TIMING_MS};
use topology::Graph;
pub use topology::SimTopology;

/// AXL's receive queue capacity (`DefaultRecvQueue`).
pub const SIM_QUEUE_CAPACITY: usize = 100;
/// AXL's default `max_message_size`.
pub const SIM_MAX_MESSAGE_BYTES: usize = crate::axl::client::MAX_MESSAGE_BYTES;
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
    /// A timing setting is out of range.
    #[error("invalid timing: {0}")]
    BadTiming(String),
    /// A peering graph that is not a tree of the sim's nodes.
    #[error("invalid topology: {0}")]
    BadTopology(String),
    /// `base_port + n` does not fit in a port number, or `n` is zero.
    #[error("invalid sim size: {0}")]
    BadSize(String),
    /// A node's listener did not open or close in time.
    #[error("node {0}: listener did not change state in time")]
    ListenerStuck(usize),
}

/// How to start a sim: size, ports, ids, peering graph and timing rules.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Node `i` serves on `base_port + i`; 0 for ephemeral ports.
    pub base_port: u16,
    /// Seed of the node keys ([`sim_node_key`]).
    pub seed: u64,
    /// Who peers with whom.
    pub topology: SimTopology,
    /// Warm-up, blocking sends, lingering.
    pub timing: SimTiming,
}

impl SimOptions {
    /// `nodes` nodes on ephemeral ports, seed 1, full mesh, no timing rules (the old sim).
    pub fn new(nodes: usize) -> SimOptions {
        SimOptions {
            nodes,
            base_port: 0,
            seed: 1,
            topology: SimTopology::Full,
            timing: SimTiming::default(),
        }
    }

    /// Every measured timing behaviour on, with the measured durations
    /// ([`SimTiming::real`]); the topology is set apart ([`SimOptions::topology`]).
    pub fn real(mut self) -> SimOptions {
        self.timing = SimTiming::real();
        self
    }

    /// The peering graph.
    pub fn topology(mut self, topology: SimTopology) -> SimOptions {
        self.topology = topology;
        self
    }

    /// The timing rules.
    pub fn timing(mut self, timing: SimTiming) -> SimOptions {
        self.timing = timing;
        self
    }

    /// The key seed.
    pub fn seed(mut self, seed: u64) -> SimOptions {
        self.seed = seed;
        self
    }

    /// The first port (0: ephemeral ports).
    pub fn base_port(mut self, base_port: u16) -> SimOptions {
        self.base_port = base_port;
        self
    }
}

/// Counters of one sim node, as JSON on `/sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimNodeStats {
    /// Messages put on this node's receive queue.
    pub delivered: u64,
    /// Messages pushed out of the full queue (oldest first), as AXL does.
    pub overflow_dropped: u64,
    /// Messages to this node lost to the drop rate or to a node being killed.
    pub fault_dropped: u64,
    /// Messages waiting in the queue now.
    pub queued: usize,
    /// `GET /recv` requests answered (shows how often a receiver polls).
    pub recv_polls: u64,
    /// Messages this node's `/send` accepted (200), whether or not they arrived: the
    /// node's mesh traffic.
    pub sent: u64,
}

#[derive(Default)]
struct NodeCounters {
    delivered: AtomicU64,
    overflow_dropped: AtomicU64,
    fault_dropped: AtomicU64,
    recv_polls: AtomicU64,
    sent: AtomicU64,
}

struct Queued {
    from_partial: PeerKey,
    body: Bytes,
}

struct SimNode {
    key: PeerKey,
    /// The ed25519 seed of `key` (what AXL's key file holds).
    secret: [u8; 32],
    addr: YggAddress,
    port: u16,
    queue: Mutex<VecDeque<Queued>>,
    counters: NodeCounters,
    /// Stops this node's HTTP server (and its held sends); `None` while the node is down.
    server: Mutex<Option<CancellationToken>>,
}

/// When a node last came up and went down.
#[derive(Clone, Copy)]
struct Life {
    up_since: Instant,
    down_since: Option<Instant>,
    /// Bumped at every kill: a delayed delivery from or to an older life is lost.
    epoch: u64,
}

/// State shared by every node's HTTP handlers.
struct Shared {
    nodes: Vec<SimNode>,
    graph: Graph,
    faults: Mutex<Faults>,
    timing: Mutex<SimTiming>,
    life: Mutex<Vec<Life>>,
    rng: Mutex<fastrand::Rng>,
    /// Serialises fault changes: starting and stopping listeners must not interleave.
    apply: tokio::sync::Mutex<()>,
    /// Cancelled when the whole sim stops (stops delayed deliveries and held sends too).
    closed: CancellationToken,
}

/// The private key (ed25519 seed) of sim node `index` under `seed`: 32 bytes of
/// splitmix64 output, so a sim restarted with the same seed has the same node ids.
pub fn sim_node_secret(seed: u64, index: usize) -> [u8; 32] {
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
    key
}

/// The key (node id) of sim node `index` under `seed`: the ed25519 public key of
/// [`sim_node_secret`], as a real AXL node's id is its key file's public key.
pub fn sim_node_key(seed: u64, index: usize) -> PeerKey {
    crate::protocol::receipt::ReceiptSigner::from_seed(&sim_node_secret(seed, index)).public()
}

/// What happened to one `/send`, mapped to AXL's answer by the HTTP layer.
enum SendOutcome {
    /// Handed over (maybe lost later, invisibly): 200.
    Sent,
    /// No node has that address, or it is down or partitioned away: 502.
    Unreachable(String),
    /// Over the receiver's `max_message_size`: 500, as AXL's failed write.
    TooLarge,
    /// The sending node was killed (or the sim stopped) while the send was held.
    SenderDown,
}

/// Where a send stands at one moment.
enum Route {
    /// Deliverable now to this node.
    Ready(usize),
    /// A path exists but is still warming up until then.
    Warming(Instant),
    /// No way there now.
    Unreachable(String),
}

/// One node's `/topology`, by node index.
struct View {
    /// Direct peers: (node, up, inbound).
    peers: Vec<(usize, bool, bool)>,
    /// Tree entries: (node, parent).
    tree: Vec<(usize, usize)>,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults.lock().clone()
    }

    fn timing(&self) -> SimTiming {
        *self.timing.lock()
    }

    fn key_pem(&self, i: usize) -> String {
        crate::axl::supervisor::key::encode_pem(&self.nodes[i].secret)
    }

    fn is_down(&self, i: usize) -> bool {
        self.faults.lock().is_down(i)
    }

    fn epoch(&self, i: usize) -> u64 {
        self.life.lock()[i].epoch
    }

    fn node_by_addr(&self, addr: &YggAddress) -> Option<usize> {
        self.nodes.iter().position(|n| &n.addr == addr)
    }

    fn route(&self, from: usize, to: &PeerKey, now: Instant) -> Route {
        let Some(dest) = self.node_by_addr(&to.address()) else {
            return Route::Unreachable(format!("no node has address {} (sim)", to.ipv6()));
        };
        let faults = self.faults();
        if !faults.reachable(from, dest) {
            return Route::Unreachable(format!(
                "connection timed out (sim: node {dest} is down or partitioned from node {from})"
            ));
        }
        if from == dest {
            return Route::Ready(dest);
        }
        let Some(path) = self.graph.path(from, dest, &|j| !faults.is_down(j)) else {
            return Route::Unreachable(format!(
                "connection timed out (sim: no path of running nodes from node {from} to node {dest})"
            ));
        };
        let Some(warmup) = self.timing().warmup() else {
            return Route::Ready(dest);
        };
        let life = self.life.lock();
        let last_up = path.iter().map(|&j| life[j].up_since).max().unwrap_or(now);
        let ready_at = last_up + warmup;
        if now >= ready_at {
            Route::Ready(dest)
        } else {
            Route::Warming(ready_at)
        }
    }

    /// One `/send` from node `from`: delivered when its route is ready, held while the
    /// route warms up or (with a block time) while the destination cannot be reached,
    /// re-checked at each SYN attempt (see [`timing`]).
    async fn send(self: &Arc<Self>, from: usize, to: &PeerKey, body: Bytes) -> SendOutcome {
        let Some(killed) = self.nodes[from].server.lock().clone() else {
            return SendOutcome::SenderDown;
        };
        let start = Instant::now();
        loop {
            let now = Instant::now();
            let timing = self.timing();
            let unit = timing.unit();
            let block = timing.block();
            let give_up = start + block.unwrap_or(Duration::from_millis(SIM_MAX_TIMING_MS));
            let (wake, why) = match self.route(from, to, now) {
                Route::Ready(dest) => return self.hand_over(from, dest, body),
                Route::Warming(ready_at) => (
                    start + dial_delay(ready_at.saturating_duration_since(start), unit),
                    "the route is still warming up".to_string(),
                ),
                Route::Unreachable(why) if block.is_none() => return SendOutcome::Unreachable(why),
                Route::Unreachable(why) => (start + next_attempt_after(now - start, unit), why),
            };
            if now >= give_up {
                return SendOutcome::Unreachable(format!(
                    "connect tcp [{}]:7000: operation timed out ({why})",
                    to.ipv6()
                ));
            }
            tokio::select! {
                _ = killed.cancelled() => return SendOutcome::SenderDown,
                _ = tokio::time::sleep_until(wake.min(give_up)) => {}
            }
        }
    }

    /// Hand a message over on a ready route: the answer is 200 from here on, whatever
    /// becomes of the message.
    fn hand_over(self: &Arc<Self>, from: usize, dest: usize, body: Bytes) -> SendOutcome {
        if body.len() > SIM_MAX_MESSAGE_BYTES {
            return SendOutcome::TooLarge;
        }
        self.nodes[from]
            .counters
            .sent
            .fetch_add(1, Ordering::Relaxed);
        let faults = self.faults();
        let lost = faults.drop_rate > 0.0 && self.rng.lock().f64() < faults.drop_rate;
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
            let lives = (self.epoch(from), self.epoch(dest));
            let shared = Arc::clone(self);
            let delay = Duration::from_millis(faults.delay_ms);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shared.closed.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {
                        if (shared.epoch(from), shared.epoch(dest)) == lives {
                            shared.deliver(dest, msg);
                        } else {
                            // Killed meanwhile: the message was in the dead process.
                            shared.nodes[dest].counters.fault_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
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
        let mut q = node.queue.lock();
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
        node.queue.lock().pop_front()
    }

    fn stats(&self, i: usize) -> SimNodeStats {
        let n = &self.nodes[i];
        SimNodeStats {
            delivered: n.counters.delivered.load(Ordering::Relaxed),
            overflow_dropped: n.counters.overflow_dropped.load(Ordering::Relaxed),
            fault_dropped: n.counters.fault_dropped.load(Ordering::Relaxed),
            queued: n.queue.lock().len(),
            recv_polls: n.counters.recv_polls.load(Ordering::Relaxed),
            sent: n.counters.sent.load(Ordering::Relaxed),
        }
    }

    /// Node `me`'s `/topology`: its direct peers, and in the tree itself, its peers and
    /// their ancestors among the nodes it can see (running, or departed within the
    /// linger time, and not partitioned from it).
    fn view(&self, me: usize) -> View {
        let faults = self.faults();
        let linger = self.timing().linger();
        let life = self.life.lock().clone();
        let now = Instant::now();
        let lingering = |j: usize| match (linger, life[j].down_since) {
            (Some(l), Some(since)) => now < since + l,
            _ => false,
        };
        let present = |j: usize| {
            j == me || (!faults.partitioned(me, j) && (!faults.is_down(j) || lingering(j)))
        };
        let keys: Vec<PeerKey> = self.nodes.iter().map(|n| n.key).collect();
        let peers = self
            .graph
            .peers(me)
            .iter()
            .map(|&j| (j, faults.reachable(me, j), self.graph.inbound(me, j)))
            .collect();
        View {
            peers,
            tree: self.graph.tree_view(me, &keys, &present),
        }
    }

    /// Replace the faults, stopping and starting node listeners as `down` changes.
    async fn set_faults(self: &Arc<Self>, new: Faults) -> Result<(), SimError> {
        new.validate(self.nodes.len())?;
        let _serial = self.apply.lock().await;
        self.apply_faults(new).await
    }

    /// [`Shared::set_faults`] with the `apply` lock held.
    async fn apply_faults(self: &Arc<Self>, new: Faults) -> Result<(), SimError> {
        let old = std::mem::replace(&mut *self.faults.lock(), new.clone());
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

    /// Kill node `i` (if it runs) and start it again.
    async fn restart(self: &Arc<Self>, i: usize) -> Result<(), SimError> {
        let _serial = self.apply.lock().await;
        let mut f = self.faults();
        f.validate(self.nodes.len())?;
        if i >= self.nodes.len() {
            return Err(SimError::BadFaults(format!(
                "node {i} does not exist (there are {})",
                self.nodes.len()
            )));
        }
        if !f.is_down(i) {
            f.down.push(i);
            self.apply_faults(f.clone()).await?;
        }
        f.down.retain(|&d| d != i);
        self.apply_faults(f).await
    }

    fn set_timing(&self, timing: SimTiming) -> Result<(), SimError> {
        timing.validate()?;
        *self.timing.lock() = timing;
        tracing::info!(target: "axl::sim", ?timing, "sim timing set");
        Ok(())
    }

    /// Take node `i` down: its queue is lost, its held sends end, its delayed deliveries
    /// are lost, and its port refuses connections. Returns once a connection is refused.
    async fn stop_node(&self, i: usize) -> Result<(), SimError> {
        let node = &self.nodes[i];
        {
            let mut life = self.life.lock();
            life[i].epoch += 1;
            life[i].down_since = Some(Instant::now());
        }
        if let Some(token) = node.server.lock().take() {
            token.cancel();
        }
        node.queue.lock().clear();
        let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
        let deadline = Instant::now() + LISTENER_DEADLINE;
        while TcpStream::connect(addr).await.is_ok() {
            if Instant::now() >= deadline {
                return Err(SimError::ListenerStuck(i));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Bring node `i` back on its old port (retrying while the old listener closes).
    async fn start_node(self: &Arc<Self>, i: usize) -> Result<(), SimError> {
        let port = self.nodes[i].port;
        let deadline = Instant::now() + LISTENER_DEADLINE;
        let listener = loop {
            match bind(port) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        {
            let mut life = self.life.lock();
            life[i].up_since = Instant::now();
            life[i].down_since = None;
        }
        self.serve(i, listener);
        Ok(())
    }

    fn serve(self: &Arc<Self>, i: usize, listener: TcpListener) {
        let token = self.closed.child_token();
        *self.nodes[i].server.lock() = Some(token.clone());
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

/// A running in-process mesh (TEST AND DEMO HARNESS, see the module docs). Dropping it
/// stops every node.
pub struct MeshSim {
    shared: Arc<Shared>,
}

impl MeshSim {
    /// Start `n` nodes on `127.0.0.1`, on ports `base_port + i`, or on ephemeral ports
    /// when `base_port` is 0. Node ids come from `(seed, i)` ([`sim_node_key`]). A full
    /// mesh without timing rules: [`MeshSim::start_with`] for the real node's behaviours.
    pub async fn start(n: usize, base_port: u16, seed: u64) -> Result<MeshSim, SimError> {
        MeshSim::start_with(SimOptions::new(n).base_port(base_port).seed(seed)).await
    }

    /// Start a sim as `options` say. Every node starts (and so peers) now.
    pub async fn start_with(options: SimOptions) -> Result<MeshSim, SimError> {
        let SimOptions {
            nodes: n,
            base_port,
            seed,
            topology,
            timing,
        } = options;
        if n == 0 {
            return Err(SimError::BadSize("at least one node is needed".into()));
        }
        if base_port != 0 && usize::from(base_port) + n > usize::from(u16::MAX) + 1 {
            return Err(SimError::BadSize(format!(
                "{n} nodes from port {base_port} run past port 65535"
            )));
        }
        topology.validate(n)?;
        timing.validate()?;
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
                secret: sim_node_secret(seed, i),
                addr: key.address(),
                port,
                queue: Mutex::new(VecDeque::with_capacity(SIM_QUEUE_CAPACITY)),
                counters: NodeCounters::default(),
                server: Mutex::new(None),
            });
            listeners.push(listener);
        }
        let now = Instant::now();
        let life = Life {
            up_since: now,
            down_since: None,
            epoch: 0,
        };
        let shared = Arc::new(Shared {
            nodes,
            graph: Graph::new(&topology, n),
            faults: Mutex::new(Faults::default()),
            timing: Mutex::new(timing),
            life: Mutex::new(vec![life; n]),
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5151_5151)),
            apply: tokio::sync::Mutex::new(()),
            closed: CancellationToken::new(),
        });
        for (i, listener) in listeners.into_iter().enumerate() {
            shared.serve(i, listener);
        }
        tracing::info!(target: "axl::sim", nodes = n, seed, ?topology, ?timing, "mesh sim started");
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

    /// Node `i`'s private key as the PKCS#8 PEM AXL reads (`PrivateKeyPath`). Panics if
    /// `i >= len()`.
    pub fn key_pem(&self, i: usize) -> String {
        self.shared.key_pem(i)
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

    /// The timing rules in force.
    pub fn timing(&self) -> SimTiming {
        self.shared.timing()
    }

    /// Replace the timing rules (sends already held keep their start time).
    pub fn set_timing(&self, timing: SimTiming) -> Result<(), SimError> {
        self.shared.set_timing(timing)
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

    /// Kill node `i` as SIGKILL would: its port refuses connections, its queue, held
    /// sends and messages in flight from or to it are lost.
    pub async fn kill(&self, i: usize) -> Result<(), SimError> {
        self.set_down(i, true).await
    }

    /// Start node `i` again with the same key and port (killing it first if it runs).
    /// Its routes warm up again as after a start.
    pub async fn restart(&self, i: usize) -> Result<(), SimError> {
        self.shared.restart(i).await
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

    /// Stop every node (held sends end too).
    pub fn shutdown(&self) {
        self.shared.closed.cancel();
    }
}

impl Drop for MeshSim {
    fn drop(&mut self) {
        self.shared.closed.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The sim's own send path on a paused clock, at the measured durations: the first
    /// send after peering waits 3.0 s at +0 to +0.3 s, 1.0 s at +1 s, nothing from +2 s;
    /// a send to nobody answers 502 after exactly 127 s.
    #[tokio::test(start_paused = true)]
    async fn the_first_send_after_peering_follows_the_measured_schedule() {
        for (sent_at, waits) in [
            (0, 3_000),
            (300, 3_000),
            (1_000, 1_000),
            (1_900, 1_000),
            (2_000, 0),
        ] {
            let sim = MeshSim::start_with(SimOptions::new(2).real())
                .await
                .unwrap();
            tokio::time::advance(ms(sent_at)).await;
            let t = Instant::now();
            let out = sim
                .shared
                .send(0, &sim.key(1), Bytes::from_static(b"x"))
                .await;
            assert!(matches!(out, SendOutcome::Sent), "sent at +{sent_at} ms");
            assert_eq!(t.elapsed(), ms(waits), "sent at +{sent_at} ms");
            assert_eq!(sim.stats(1).delivered, 1);
        }
        let sim = MeshSim::start_with(SimOptions::new(2).real())
            .await
            .unwrap();
        let t = Instant::now();
        let out = sim
            .shared
            .send(0, &PeerKey([0x42; 32]), Bytes::from_static(b"x"))
            .await;
        assert!(matches!(out, SendOutcome::Unreachable(ref why) if why.contains("timed out")));
        assert_eq!(t.elapsed(), ms(timing::REAL_BLOCK_MS));
    }
}
