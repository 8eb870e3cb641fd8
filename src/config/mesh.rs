//! The mesh's settings, read here: reliable delivery, heartbeats, the provider's queue and
//! the per-peer limits ([`DeliverySettings`]), the allow and deny lists ([`Access`]), and
//! where ENS names are checked ([`NameSettings`]).

use std::time::Duration;

use super::value::{invalid, ranged, ConfigError, Lookup};
use crate::mesh::access::{Access, AccessList};
use crate::mesh::settings::DeliverySettings;

/// Read and check the delivery settings.
pub fn delivery_from_lookup(get: Lookup) -> Result<DeliverySettings, ConfigError> {
    let ms = |key: &'static str, default: u64, min: u64, max: u64| {
        ranged(get(key), key, default, (min, max), "ms").map(Duration::from_millis)
    };
    let num = |key: &'static str, default: u64, min: u64, max: u64| {
        ranged(get(key), key, default, (min, max), "")
    };
    Ok(DeliverySettings {
        heartbeat: ms("HEARTBEAT_MS", 2_000, 50, 60_000)?,
        heartbeat_misses: num("HEARTBEAT_MISSES", 2, 1, 100)? as u32,
        stream_dead: ms("STREAM_DEAD_MS", 750, 300, 600_000)?,
        send_timeout: ms("MESH_SEND_TIMEOUT_MS", 5_000, 50, 600_000)?,
        ack_timeout: ms("ACK_TIMEOUT_MS", 500, 10, 60_000)?,
        reliable_window: ms("RELIABLE_WINDOW_MS", 120_000, 100, 3_600_000)?,
        provider_max_queue: num("PROVIDER_MAX_QUEUE", 32, 0, 100_000)? as usize,
        peer_msg_rate: num("PEER_MSG_RATE", 500, 1, 1_000_000)? as u32,
        peer_msg_burst: num("PEER_MSG_BURST", 1_000, 1, 1_000_000)? as u32,
        peer_task_rate: num("PEER_TASK_RATE", 64, 1, 1_000_000)? as u32,
        peer_task_burst: num("PEER_TASK_BURST", 256, 1, 1_000_000)? as u32,
        max_pending_acks: num("MAX_PENDING_ACKS", 65_536, 1, 10_000_000)? as usize,
        peer_max_pending_acks: num("PEER_MAX_PENDING_ACKS", 256, 1, 10_000_000)? as usize,
        max_handlers: num("MAX_HANDLERS", 1_024, 1, 1_000_000)? as usize,
        peer_max_handlers: num("PEER_MAX_HANDLERS", 64, 1, 1_000_000)? as usize,
        provider_peer_max_jobs: num("PROVIDER_PEER_MAX_JOBS", 0, 0, 200_000)? as usize,
    })
}

/// Where the ENS names peers announce are checked ([`crate::mesh::names`]).
#[derive(Clone)]
pub struct NameSettings {
    /// `ENS_RPC_URL` (the same key as the chain settings'; default the public Sepolia
    /// endpoint); `off` checks nothing (every name is shown unverified).
    pub rpc_url: Option<String>,
    /// `ENS_REGISTRY_ADDRESS` (default the canonical registry).
    pub registry: alloy::primitives::Address,
    /// `ENS_CHECK_TTL_SECS`: how long a checked name's verdict is kept (600 s).
    pub ttl: Duration,
}

impl std::fmt::Debug for NameSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameSettings")
            .field("rpc_url", &self.rpc_url.as_deref().map(crate::redact::urls))
            .field("registry", &self.registry)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Read `ENS_RPC_URL`, `ENS_REGISTRY_ADDRESS`, `ENS_CHECK_TTL_SECS`.
pub fn names_from_lookup(get: Lookup) -> Result<NameSettings, ConfigError> {
    let rpc_url = match get("ENS_RPC_URL").map(|v| v.trim().to_string()) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) if !v.is_empty() => Some(super::value::check_url("ENS_RPC_URL", &v)?),
        _ => Some(crate::chain::settings::DEFAULT_ENS_RPC_URL.to_string()),
    };
    let registry = match get("ENS_REGISTRY_ADDRESS").map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| invalid("ENS_REGISTRY_ADDRESS", &v, "a 0x-prefixed 20-byte address"))?,
        _ => alloy_ens::ENS_ADDRESS,
    };
    let ttl = ranged(
        get("ENS_CHECK_TTL_SECS"),
        "ENS_CHECK_TTL_SECS",
        600,
        (1, 86_400),
        "s",
    )?;
    Ok(NameSettings {
        rpc_url,
        registry,
        ttl: Duration::from_secs(ttl),
    })
}

/// Read `EDGENT_ALLOW` / `EDGENT_DENY`: node ids or ENS names that may / may never be chosen.
pub fn access_from_lookup(get: Lookup) -> Result<Access, ConfigError> {
    let list = |key: &'static str| {
        let v = get(key).unwrap_or_default();
        AccessList::parse(&v).map_err(|p| invalid(key, &v, p))
    };
    Ok(Access {
        allow: list("EDGENT_ALLOW")?,
        deny: list("EDGENT_DENY")?,
    })
}
