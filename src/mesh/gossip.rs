//! Gossip over AXL: how every node comes to know every provider in a mesh of any shape.
//!
//! - **The id exchange.** Every node sends an `announce` to its direct peers (from
//!   `/topology`) each interval. It carries up to [`MAX_ANNOUNCE_KNOWN`] nodes the sender
//!   heard from recently, so spokes learn of each other through their hub.
//! - **Ads.** A provider's `announce` also carries its ad (models with size and loaded
//!   state, free memory, price, load, slots, queue, version, wallet, ENS) and goes to
//!   every node it knows, each interval and within [`CHANGE_CHECK`] of a change in what it
//!   offers.
//! - **Greetings.** A node new to us (from topology, its own message, or a `known` list)
//!   gets our announcement at once, so a requester that starts learns of the providers in
//!   a few hops instead of an interval. A key named in a `known` list may be nobody's (a
//!   send to it blocks in AXL), so the keys `known` lists add are limited per sender and
//!   per second ([`HearsayLimits`](super::limits::HearsayLimits)), never evict a node heard
//!   from, and only those taken in are greeted (threat model line 27). Every greeting is
//!   sent by the announcer in the background, never by the router.
//! - **No relay.** A `resource_request` is answered, never passed on: a relayed copy keeps
//!   the requester's `node_id`, which is not its sender's, and every receiver drops it as
//!   spoofed (issue 25), while one relay cost up to 32 sends. Discovery crosses hops by the
//!   above instead: `known` lists carry node ids through hubs, greetings make new nodes
//!   announce themselves at once, and providers send their ads to every node they know.
//!   The `hops` a request asks for is ignored.
//!
//! Traffic at idle is bounded: the interval is at least `ANNOUNCE_INTERVAL_SECS` and at
//! least one second per node known, so a node sends at most one message a second on
//! average, whatever the mesh's size. Every send runs in its own task with a timeout
//! ([`SEND_TIMEOUT`], longer than AXL's 3 s first send after peering): a dead node's
//! blocking `/send` never holds up the loop, and its failure backs it off in the
//! [`Directory`](super::Directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::endpoint::Endpoint;
use super::MeshState;
use crate::axl::{AxlError, PeerKey};
use crate::protocol::{
    Announce, DropReason, Message, ResourceAd, ResourceRequest, MAX_ANNOUNCE_KNOWN,
};

/// How long one gossip send may take before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(8);

/// How often `/topology` is read for new direct peers (a local call, no mesh traffic).
pub const TOPOLOGY_POLL: Duration = Duration::from_secs(5);

/// How often a provider checks whether its offer changed.
pub const CHANGE_CHECK: Duration = Duration::from_secs(2);

/// An ad is kept by its receivers for this many announce intervals.
pub const AD_TTL_INTERVALS: u32 = 3;

/// What a provider offers now (`None`: nothing to advertise).
pub trait OfferSource: Send + Sync {
    /// The ad to announce, with a nil `request_id`.
    fn offer(&self) -> Option<ResourceAd>;
}

/// The announce interval for a node that knows `known` others: at least `base`, and at
/// least one second per node, so that it sends at most one message a second on average.
pub fn interval_for(base: Duration, known: usize) -> Duration {
    base.max(Duration::from_secs(known as u64))
}

/// Send `msg` to `to` in the background, with [`SEND_TIMEOUT`], and tell the directory
/// how it went.
pub fn send_in_background(
    endpoint: &Arc<Endpoint>,
    mesh: &Arc<MeshState>,
    to: PeerKey,
    msg: Message,
) {
    let (endpoint, mesh) = (endpoint.clone(), mesh.clone());
    tokio::spawn(async move {
        let res = tokio::time::timeout(SEND_TIMEOUT, endpoint.send(&to, &msg))
            .await
            .unwrap_or_else(|_| Err(AxlError::Unreachable("gossip send timed out".into())));
        match res {
            Ok(()) => mesh.directory.send_ok(&to),
            Err(e) => {
                tracing::debug!(to = %to.short(), kind = msg.kind(), error = %e, "gossip send failed; backing off");
                mesh.directory.send_failed(&to);
            }
        }
    });
}

/// Read `/topology` into the directory: direct peers and tree entries; new ones are
/// greeted. Returns every other node it lists.
pub async fn learn_topology(
    endpoint: &Endpoint,
    mesh: &MeshState,
) -> Result<Vec<PeerKey>, AxlError> {
    let topo = endpoint.topology().await?;
    let direct: Vec<PeerKey> = topo
        .peers
        .iter()
        .filter(|p| p.up)
        .filter_map(|p| PeerKey::from_hex(&p.public_key).ok())
        .filter(|k| *k != endpoint.me())
        .collect();
    let nodes = topo.reachable_nodes();
    for k in &nodes {
        if mesh.access.denied_sender(k) {
            continue;
        }
        if mesh.directory.learned(*k, direct.contains(k)) {
            mesh.greet(*k);
        }
    }
    mesh.directory.set_direct(&direct);
    Ok(nodes)
}

fn announcement(
    endpoint: &Endpoint,
    mesh: &MeshState,
    ens: &Option<String>,
    to: &PeerKey,
    ad: Option<&ResourceAd>,
    ttl: Duration,
) -> Message {
    Message::Announce(Announce {
        node_id: endpoint.me(),
        ens: ens.clone(),
        known: mesh.directory.gossip(MAX_ANNOUNCE_KNOWN, to),
        ad: ad.cloned(),
        ttl_ms: ttl.as_millis() as u64,
    })
}

/// What of an offer counts as a change worth announcing (free memory moves all the time
/// and is left out).
fn signature(ad: &Option<ResourceAd>) -> Option<String> {
    ad.as_ref().map(|a| {
        format!(
            "{:?}|{:?}|{}|{:.3}|{:?}|{:?}|{:?}",
            a.models, a.model_info, a.price, a.load, a.slots, a.queue, a.wallet
        )
    })
}

/// The announcer: id exchange, ads, greetings. Returns at once when `base` is zero
/// (`ANNOUNCE_INTERVAL_SECS=0`: discovery by broadcast only).
pub async fn run(
    endpoint: Arc<Endpoint>,
    mesh: Arc<MeshState>,
    ens: Option<String>,
    source: Option<Arc<dyn OfferSource>>,
    base: Duration,
    cancel: CancellationToken,
) {
    if base.is_zero() {
        return;
    }
    let offer = || source.as_ref().and_then(|s| s.offer());
    let mut next_round = Instant::now();
    let mut next_topology = Instant::now();
    let mut next_check = Instant::now() + CHANGE_CHECK;
    let mut last_sig: Option<String> = None;
    loop {
        let now = Instant::now();
        if now >= next_topology {
            if let Err(e) = learn_topology(&endpoint, &mesh).await {
                tracing::debug!(error = %e, "announcer: /topology failed");
            }
            mesh.directory.expire();
            next_topology = now + TOPOLOGY_POLL;
        }
        let interval = interval_for(base, mesh.directory.len());
        let ttl = interval * AD_TTL_INTERVALS;
        let mut greet: Vec<PeerKey> =
            std::mem::take(&mut *mesh.greet.lock().unwrap_or_else(|p| p.into_inner()));
        let mut ad = None;
        let round = now >= next_round;
        let check = now >= next_check;
        if round || check || !greet.is_empty() {
            ad = offer();
        }
        let changed = check && signature(&ad) != last_sig;
        if round || changed {
            let targets = if ad.is_some() {
                mesh.directory.targets()
            } else {
                mesh.directory.direct_targets()
            };
            tracing::debug!(targets = targets.len(), round, changed, "announcing");
            for to in &targets {
                send_in_background(
                    &endpoint,
                    &mesh,
                    *to,
                    announcement(&endpoint, &mesh, &ens, to, ad.as_ref(), ttl),
                );
            }
            greet.retain(|k| !targets.contains(k));
            last_sig = signature(&ad);
            if round {
                next_round = now + interval;
            }
        }
        for to in greet {
            if mesh.directory.sendable(&to) {
                send_in_background(
                    &endpoint,
                    &mesh,
                    to,
                    announcement(&endpoint, &mesh, &ens, &to, ad.as_ref(), ttl),
                );
            }
        }
        if check {
            next_check = now + CHANGE_CHECK;
        }
        let mut wake_at = next_round.min(next_topology);
        if source.is_some() {
            wake_at = wake_at.min(next_check);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = mesh.wake.notified() => {}
        }
    }
}

/// An `announce` arrived (the router checked `node_id` against the sender).
pub fn on_announce(endpoint: &Endpoint, mesh: &MeshState, from: &PeerKey, m: Announce) {
    if m.node_id == endpoint.me() {
        return;
    }
    if mesh.directory.heard(m.node_id) {
        mesh.greet(m.node_id);
    }
    mesh.peers.saw(
        m.node_id,
        m.ens.clone(),
        m.ad.as_ref().map(|a| a.models.clone()),
    );
    // Hearsay: known keys are taken in within the sender's and the node's hearsay limits
    // and never evict a node heard from (threat model line 27). A key only heard of may be
    // nobody's, and a send to it blocks in AXL: only the keys taken in are greeted, from
    // the announcer in the background (greetings are how discovery crosses hubs).
    for k in m.known.iter().take(MAX_ANNOUNCE_KNOWN) {
        if *k == endpoint.me() || mesh.access.denied_sender(k) {
            continue;
        }
        if mesh.directory.knows(k) {
            mesh.directory.learned(*k, false);
        } else if !mesh.hearsay.allow(from) || !mesh.directory.hearsay(*k) {
            endpoint.metrics().table("hearsay_dropped").inc();
        } else {
            mesh.greet(*k);
        }
    }
    if let Some(name) = m.ens.as_deref() {
        mesh.names.check(m.node_id, name);
    }
    match m.ad {
        Some(ad) if mesh.access.may_keep(&ad.node_id, ad.ens.as_deref()) => {
            if let Some(name) = ad.ens.as_deref().filter(|n| Some(*n) != m.ens.as_deref()) {
                mesh.names.check(ad.node_id, name);
            }
            let ttl = Duration::from_millis(m.ttl_ms).max(Duration::from_secs(1));
            mesh.ads.insert(ad, ttl);
        }
        Some(_) => {
            endpoint.metrics().dropped(DropReason::Unexpected);
            tracing::debug!(from = %from.short(), "ad from a node EDGENT_ALLOW/EDGENT_DENY excludes, dropped");
        }
        None => mesh.ads.remove(&m.node_id),
    }
}

/// A `resource_request` arrived: greet its sender when it is new to us. Returns whether
/// this is the request's first sighting here (a repeat is not answered again). It is never
/// relayed (see the module docs).
pub fn on_request(endpoint: &Arc<Endpoint>, mesh: &Arc<MeshState>, req: &ResourceRequest) -> bool {
    if !mesh.seen_requests.insert(req.request_id) {
        tracing::debug!(request = %req.request_id, "repeated resource_request ignored");
        return false;
    }
    if req.node_id != endpoint.me() && mesh.directory.heard(req.node_id) {
        mesh.greet(req.node_id);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_keeps_idle_traffic_under_one_message_a_second() {
        let base = Duration::from_secs(20);
        assert_eq!(interval_for(base, 3), base);
        for known in [0usize, 1, 11, 20, 49, 50, 511, 512] {
            let i = interval_for(base, known);
            // A provider sends to every node it knows once per interval.
            let per_sec = known as f64 / i.as_secs_f64();
            assert!(per_sec <= 1.0, "{known} nodes: {per_sec}/s");
        }
    }

    #[test]
    fn signature_ignores_free_memory_only() {
        let mut a = crate::mesh::ads::tests::ad(1, &["m"]);
        let s = signature(&Some(a.clone()));
        a.free_memory_mb += 100;
        assert_eq!(signature(&Some(a.clone())), s);
        a.load = 0.5;
        assert_ne!(signature(&Some(a)), s);
        assert_eq!(signature(&None), None);
    }
}
