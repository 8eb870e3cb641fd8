//! The settings of reliable delivery, heartbeats, the provider's queue and the per-peer
//! limits (read with the rest of the configuration in [`crate::config`]).

use std::time::Duration;

/// How messages are delivered and jobs watched.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// `HEARTBEAT_MS`: how often a provider tells the requester a job is alive (2 s).
    pub heartbeat: Duration,
    /// `HEARTBEAT_MISSES`: beats missed before the requester declares the provider dead (2).
    pub heartbeat_misses: u32,
    /// `STREAM_DEAD_MS`: once a provider's stream began, how long without a chunk or a
    /// beat it counts as dead (750 ms). A streaming provider beats every
    /// [`crate::mesh::heartbeat::STREAM_BEAT`] of silence, so a stream's death is noticed
    /// within this, not `dead_after`'s seconds, and the agent's stream is rescued sooner.
    pub stream_dead: Duration,
    /// `MESH_SEND_TIMEOUT_MS`: the longest one `/send` may take (5 s). AXL blocks about
    /// 127 s on a key nobody has; a send that does not complete in time counts as failed.
    pub send_timeout: Duration,
    /// `ACK_TIMEOUT_MS`: first wait for an acknowledgement before sending again (500 ms);
    /// doubled after each try up to eight times that.
    pub ack_timeout: Duration,
    /// `RELIABLE_WINDOW_MS`: how long a reliable message with no deadline of its own
    /// (payment messages) is sent again until acknowledged (120 s).
    pub reliable_window: Duration,
    /// `PROVIDER_MAX_QUEUE`: tasks that wait for a job slot before `busy` is answered (32).
    pub provider_max_queue: usize,
    /// `PEER_MSG_RATE` / `PEER_MSG_BURST`: messages a second one peer may send, and the
    /// burst allowed (500 / 1000); beyond that its messages are dropped.
    pub peer_msg_rate: u32,
    /// See `peer_msg_rate`.
    pub peer_msg_burst: u32,
    /// `PEER_TASK_RATE` / `PEER_TASK_BURST`: tasks a second one peer may send, and the
    /// burst allowed (64 / 256); beyond that its tasks are answered `busy`.
    pub peer_task_rate: u32,
    /// See `peer_task_rate`.
    pub peer_task_burst: u32,
    /// `MAX_PENDING_ACKS`: sent messages awaiting their ack at once (65,536); beyond that
    /// a message is sent once with no resends.
    pub max_pending_acks: usize,
    /// `PEER_MAX_PENDING_ACKS`: of those, awaiting the ack of one peer (256).
    pub peer_max_pending_acks: usize,
    /// `MAX_HANDLERS`: handlers of inbound messages running at once (1,024); beyond that
    /// a message is dropped ([`crate::mesh::handlers`]).
    pub max_handlers: usize,
    /// `PEER_MAX_HANDLERS`: of those, for the messages of one peer (64).
    pub peer_max_handlers: usize,
    /// `PROVIDER_PEER_MAX_JOBS`: job slots and queue places one requester may hold at
    /// once; beyond that its tasks are answered `busy`. 0 (the default): all but a quarter
    /// of `PROVIDER_MAX_JOBS + PROVIDER_MAX_QUEUE`, kept for the others.
    pub provider_peer_max_jobs: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            heartbeat: Duration::from_millis(2_000),
            heartbeat_misses: 2,
            stream_dead: Duration::from_millis(750),
            send_timeout: Duration::from_millis(5_000),
            ack_timeout: Duration::from_millis(500),
            reliable_window: Duration::from_millis(120_000),
            provider_max_queue: 32,
            peer_msg_rate: 500,
            peer_msg_burst: 1_000,
            peer_task_rate: 64,
            peer_task_burst: 256,
            max_pending_acks: crate::mesh::reliable::MAX_PENDING_ACKS,
            peer_max_pending_acks: crate::mesh::reliable::PEER_MAX_PENDING_ACKS,
            max_handlers: crate::mesh::handlers::MAX_HANDLERS,
            peer_max_handlers: crate::mesh::handlers::PEER_MAX_HANDLERS,
            provider_peer_max_jobs: 0,
        }
    }
}

impl DeliverySettings {
    /// How long without a sign of life (heartbeat, ack, result) a provider counts as dead.
    pub fn dead_after(&self) -> Duration {
        self.heartbeat * self.heartbeat_misses.max(1) + self.heartbeat / 4
    }

    /// How long without a chunk or a beat a provider whose stream began counts as dead:
    /// `stream_dead`, or `dead_after` when that is shorter.
    pub fn stream_dead_after(&self) -> Duration {
        self.stream_dead.min(self.dead_after())
    }
}
