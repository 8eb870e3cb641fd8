//! Discovery, the requester's first step: find the providers for a model, from the ad
//! cache or by asking the mesh, and count what every node said for the one `no_provider`
//! answer (503) when none serves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::Requester;
use crate::axl::PeerKey;
use crate::mesh::ads::ANSWER_AD_TTL;
use crate::mesh::gossip;
use crate::mesh::score::{self, Want};
use crate::protocol::{Message, ResourceAd, ResourceRequest};
use crate::request::{DelegateError, Unserved, ValidRequest};

/// How many times discovery sends its request to a node that accepted it but gave no ad:
/// AXL acknowledges nothing, and a request it accepted may still be lost on the way.
const DISCOVERY_ROUNDS: u32 = 3;

/// Most ads one discovery counts as answers (the rest still land in the ad cache).
const MAX_ANSWERS: usize = 256;

/// While a discovery send is still under way, discovery waits at least this long: AXL's
/// first send after two nodes peer takes about 3 s.
const SLOW_SEND_WAIT: Duration = Duration::from_millis(4_000);

/// Failed discovery sends, and nodes learnt of meanwhile, are tried again this often.
const RETRY_EVERY: Duration = Duration::from_millis(1_000);

/// Most nodes one discovery asks directly (relays reach the rest).
const MAX_ASKED: usize = 256;

/// Where one discovery send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Pending,
    Ok,
    Failed,
}

/// One node a discovery asked: where its last send stands, and how many it took.
#[derive(Debug, Clone, Copy)]
struct Ask {
    key: PeerKey,
    state: Asked,
    sends: u32,
}

/// What one node said to a delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// Asked, nothing back.
    Silent,
    /// The send failed or did not complete in time.
    Failed,
    /// It answered; why it did not serve, when it did not.
    Answered(Option<&'static str>),
}

/// What the mesh said to one delegation, node by node: the counts of its `no_provider`
/// answer ([`Unserved`]).
#[derive(Debug, Default)]
pub(super) struct Tally {
    nodes: HashMap<[u8; 16], Said>,
}

impl Tally {
    pub(super) fn asked(&mut self, node: &PeerKey) {
        self.nodes.entry(node.address()).or_insert(Said::Silent);
    }

    /// The send failed: a node that answered with a reason keeps it.
    pub(super) fn failed(&mut self, node: &PeerKey) {
        let e = self.nodes.entry(node.address()).or_insert(Said::Silent);
        if matches!(*e, Said::Silent | Said::Answered(None)) {
            *e = Said::Failed;
        }
    }

    pub(super) fn answered(&mut self, node: &PeerKey, unfit: Option<&'static str>) {
        self.nodes.insert(node.address(), Said::Answered(unfit));
    }

    fn is_silent(&self, node: &PeerKey) -> bool {
        self.nodes.get(&node.address()) == Some(&Said::Silent)
    }

    pub(super) fn unserved(
        &self,
        model: &str,
        retry_after_secs: Option<u64>,
        note: Option<String>,
    ) -> Unserved {
        let mut u = Unserved {
            model: model.to_string(),
            asked: self.nodes.len(),
            retry_after_secs,
            note,
            ..Unserved::default()
        };
        for said in self.nodes.values() {
            match said {
                Said::Silent => {}
                Said::Failed => u.failed += 1,
                Said::Answered(why) => {
                    u.answered += 1;
                    if let Some(why) = why {
                        *u.unfit.entry((*why).to_string()).or_default() += 1;
                    }
                }
            }
        }
        u
    }
}

impl Requester {
    /// Find the providers for the request's model, best first ([`crate::mesh::score`]).
    ///
    /// From the ad cache at once when a fresh ad serves the model (no mesh round trip).
    /// Otherwise a `resource_request` goes to every node the directory knows (it is not
    /// relayed: the directory and the cache fill from gossip across hops), and the answers land in the cache. Discovery ends
    /// [`DISCOVERY_SETTLE_MS`](crate::config::DelegationSettings::discovery_settle) after the first usable
    /// ad, or when nothing came: `DISCOVERY_WINDOW_MS` after the start and after the last
    /// accepted send, and never before [`SLOW_SEND_WAIT`] while a send is still under way
    /// (AXL's first send after peering takes 3 s). Sends that failed, and nodes learnt of
    /// meanwhile, are tried again every [`RETRY_EVERY`] until an ad comes. AXL acknowledges
    /// nothing, so a request it accepted may still be lost: when a window ends with no ad,
    /// the nodes that accepted it are asked again, [`DISCOVERY_ROUNDS`] sends each at most
    /// (a node that saw the request once does not answer it twice, so this only recovers a
    /// lost request; a lost ad comes back with the provider's next announcement).
    ///
    /// Every node asked, and what it said, goes into `tally`: a send still under way when
    /// discovery ends counts as failed (timed out), and an asked node whose announced ad
    /// does not fit counts as answered with that reason.
    pub(super) async fn discover(
        &self,
        request_id: Uuid,
        req: &ValidRequest,
        paid: bool,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Result<Vec<ResourceAd>, DelegateError> {
        let (model, min_memory_mb, max_price) =
            (req.model.as_str(), req.min_memory_mb, req.max_price);
        let mesh = &self.ctx.mesh;
        let access = &self.ctx.mesh.access;
        let want = Want {
            model,
            digest: req.model_digest.as_deref(),
            max_price,
            min_memory_mb,
            paid,
            premium_cap_pct: self.ctx.config.delegation.premium_cap_pct,
            proven_after: self.ctx.config.delegation.proven_after,
            names: Some(&mesh.names),
        };
        // Ranked with the names as checked, then each ad's name as shown from here on
        // (`/jobs`, the answer, `X-Edgent-Provider`): an unchecked one marked unverified.
        let ranked = || {
            let mut ads = score::rank(mesh.ads.fresh_for(model), &want, access, |k| {
                mesh.history.get(k)
            });
            for ad in &mut ads {
                ad.ens = mesh
                    .names
                    .shown(&ad.node_id, ad.ens.as_deref(), ad.wallet.as_deref());
            }
            ads
        };
        let mut changes = mesh.ads.subscribe();
        let fresh = ranked();
        if !fresh.is_empty() {
            tracing::debug!(
                candidates = fresh.len(),
                "providers chosen from the ad cache"
            );
            return Ok(fresh);
        }
        mesh.my_requests.insert(request_id);
        let (answers_tx, mut answers) = mpsc::channel(MAX_ANSWERS);
        self.discoveries.lock().insert(request_id, answers_tx);
        let topo_nodes = match gossip::learn_topology(&self.ctx.endpoint, &self.ctx.mesh).await {
            Ok(n) => n,
            Err(e) if mesh.directory.is_empty() => return Err(DelegateError::Mesh(e.to_string())),
            Err(e) => {
                tracing::debug!(error = %e, "/topology failed; asking the nodes already known");
                Vec::new()
            }
        };
        let msg = Message::ResourceRequest(ResourceRequest {
            request_id,
            node_id: self.ctx.endpoint.me(),
            model: model.to_string(),
            min_memory_mb,
            max_price: Some(max_price),
            sender_ens: self.ctx.config.node.ens_name.clone(),
            // No relays (an older node would relay a request with hops, and every receiver
            // of the relay would drop it as spoofed).
            hops: 0,
        });
        let started = Instant::now();
        let window = self.ctx.config.delegation.discovery_window;
        let settle = self.ctx.config.delegation.discovery_settle;
        let mut asked: HashMap<[u8; 16], Ask> = HashMap::new();
        let mut sends = tokio::task::JoinSet::new();
        self.ask_round(&msg, &topo_nodes, &mut asked, &mut sends, tally);
        let mut last_ok: Option<Instant> = None;
        let mut first_ad: Option<Instant> = None;
        let mut next_retry = started + RETRY_EVERY;
        let outcome = loop {
            if asked.is_empty() {
                break Err(());
            }
            let now = Instant::now();
            let found = ranked();
            if !found.is_empty() {
                let at = *first_ad.get_or_insert(now);
                if now >= at + settle || now >= deadline {
                    break Ok(found);
                }
            }
            let pending = asked.values().any(|a| a.state == Asked::Pending);
            let mut end = started + window;
            if let Some(t) = last_ok {
                end = end.max(t + window);
            }
            if pending {
                end = end.max(started + SLOW_SEND_WAIT);
            }
            let end = end.min(deadline);
            if first_ad.is_none() && now >= end {
                // A window with no ad: ask the nodes that accepted the request again.
                if now + window >= deadline || !self.ask_again(&msg, &mut asked, &mut sends) {
                    break Err(());
                }
                tracing::debug!(request = %request_id, "no ad within the window; asking again");
                last_ok = Some(now);
                continue;
            }
            let mut wake = match first_ad {
                Some(at) => (at + settle).min(deadline),
                None => end,
            };
            if first_ad.is_none() {
                wake = wake.min(next_retry);
            }
            tokio::select! {
                Some(done) = sends.join_next(), if !sends.is_empty() => {
                    if let Ok((key, ok)) = done {
                        if let Some(a) = asked.get_mut(&key.address()) {
                            a.state = if ok { Asked::Ok } else { Asked::Failed };
                        }
                        if ok {
                            last_ok = Some(Instant::now());
                        } else {
                            tally.failed(&key);
                        }
                    }
                }
                Some(ad) = answers.recv() => {
                    tally.answered(&ad.node_id, score::unfit(&ad, &want, access));
                }
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {
                    if first_ad.is_none() && Instant::now() >= next_retry {
                        let topo = gossip::learn_topology(&self.ctx.endpoint, &self.ctx.mesh).await.unwrap_or_default();
                        self.ask_round(&msg, &topo, &mut asked, &mut sends, tally);
                        next_retry = Instant::now() + RETRY_EVERY;
                    }
                }
            }
        };
        sends.detach_all();
        self.discoveries.lock().remove(&request_id);
        while let Ok(ad) = answers.try_recv() {
            tally.answered(&ad.node_id, score::unfit(&ad, &want, access));
        }
        match outcome {
            Ok(found) => {
                tracing::debug!(
                    asked = asked.len(),
                    candidates = found.len(),
                    "discovery done"
                );
                Ok(found)
            }
            Err(()) if Instant::now() >= deadline => Err(DelegateError::Deadline(
                "deadline passed during discovery".into(),
            )),
            Err(()) => {
                for a in asked.values().filter(|a| a.state == Asked::Pending) {
                    tracing::debug!(to = %a.key.short(), "resource_request still being sent when discovery ended: counted as failed (timed out)");
                    tally.failed(&a.key);
                }
                // Providers asked that stayed silent, whose announced ad says why.
                for ad in mesh.ads.fresh() {
                    if tally.is_silent(&ad.node_id) {
                        if let Some(why) = score::unfit(&ad, &want, access) {
                            tally.answered(&ad.node_id, Some(why));
                        }
                    }
                }
                let note = asked
                    .is_empty()
                    .then(|| "the mesh shows no other node".to_string());
                let shown = crate::protocol::show_pin(model, req.model_digest.as_deref());
                let u = tally.unserved(&shown, None, note);
                tracing::debug!(request = %request_id, ms = started.elapsed().as_millis() as u64, "{u}");
                Err(u.into())
            }
        }
    }

    /// Send the request to every node known and not asked yet (or whose send failed and
    /// whose back-off is over), each send in its own task with [`gossip::SEND_TIMEOUT`].
    fn ask_round(
        &self,
        msg: &Message,
        topo_nodes: &[PeerKey],
        asked: &mut HashMap<[u8; 16], Ask>,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
        tally: &mut Tally,
    ) {
        let mesh = &self.ctx.mesh;
        let mut targets = mesh.directory.targets();
        if targets.is_empty() {
            // Every known node is backing off: try the topology's anyway.
            targets = topo_nodes.to_vec();
        }
        for node in targets.into_iter().take(MAX_ASKED) {
            if node == self.ctx.endpoint.me() || self.ctx.mesh.access.denied_sender(&node) {
                continue;
            }
            let sends_before = match asked.get(&node.address()) {
                Some(Ask {
                    state: Asked::Pending | Asked::Ok,
                    ..
                }) => continue,
                Some(
                    a @ Ask {
                        state: Asked::Failed,
                        ..
                    },
                ) => {
                    if !mesh.directory.sendable(&node) {
                        continue;
                    }
                    a.sends
                }
                None => 0,
            };
            asked.insert(
                node.address(),
                Ask {
                    key: node,
                    state: Asked::Pending,
                    sends: sends_before + 1,
                },
            );
            tally.asked(&node);
            self.spawn_ask(node, msg, sends);
        }
    }

    /// Ask again the nodes that accepted the request or whose send failed,
    /// [`DISCOVERY_ROUNDS`] sends each at most. False when none is left to ask.
    fn ask_again(
        &self,
        msg: &Message,
        asked: &mut HashMap<[u8; 16], Ask>,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
    ) -> bool {
        let mut any = false;
        for a in asked.values_mut() {
            // A send that failed is tried again too: during AXL's slow first sends after
            // peering (3 s at first) a send can time out although the node is there.
            if matches!(a.state, Asked::Ok | Asked::Failed) && a.sends < DISCOVERY_ROUNDS {
                a.state = Asked::Pending;
                a.sends += 1;
                self.spawn_ask(a.key, msg, sends);
                any = true;
            }
        }
        any
    }

    /// One discovery send, bounded by [`gossip::SEND_TIMEOUT`]; the directory learns how
    /// it went.
    fn spawn_ask(
        &self,
        node: PeerKey,
        msg: &Message,
        sends: &mut tokio::task::JoinSet<(PeerKey, bool)>,
    ) {
        let ctx = self.ctx.clone();
        let msg = msg.clone();
        sends.spawn(async move {
            let ok = match tokio::time::timeout(gossip::SEND_TIMEOUT, ctx.endpoint.send(&node, &msg)).await
            {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(to = %node.short(), error = %e, "resource_request not sent");
                    false
                }
                Err(_) => {
                    tracing::debug!(to = %node.short(), ms = gossip::SEND_TIMEOUT.as_millis() as u64, "resource_request send timed out");
                    false
                }
            };
            if ok {
                ctx.mesh.directory.send_ok(&node);
            } else {
                ctx.mesh.directory.send_failed(&node);
            }
            (node, ok)
        });
    }

    /// An ad arrived (the router checked `node_id` against the sender). One answering a
    /// request of ours (even after its discovery ended) goes into the ad cache.
    pub fn on_resource_ad(&self, from: &PeerKey, ad: ResourceAd) {
        self.ctx
            .mesh
            .peers
            .saw(ad.node_id, ad.ens.clone(), Some(ad.models.clone()));
        if !self.ctx.mesh.my_requests.contains(&ad.request_id) {
            self.ctx
                .metrics
                .dropped(crate::protocol::DropReason::Unexpected);
            tracing::debug!(from = %from.short(), request = %ad.request_id, "resource_ad for no request of ours dropped");
            return;
        }
        if let Some(tx) = self.discoveries.lock().get(&ad.request_id) {
            // Counted by its discovery; a full channel only loses the count.
            let _ = tx.try_send(ad.clone());
        }
        if self.ctx.mesh.directory.heard(ad.node_id) {
            self.ctx.mesh.greet(ad.node_id);
        }
        if let Some(name) = ad.ens.as_deref() {
            self.ctx.mesh.names.check(ad.node_id, name);
        }
        if !self
            .ctx
            .mesh
            .access
            .may_keep(&ad.node_id, ad.ens.as_deref())
        {
            tracing::debug!(from = %from.short(), "resource_ad from a node EDGENT_ALLOW/EDGENT_DENY excludes, ignored");
            return;
        }
        self.ctx.mesh.ads.insert(ad, ANSWER_AD_TTL);
    }
}
