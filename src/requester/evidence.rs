//! Evidence of a caught cheater over the mesh: published by the node whose spot check
//! caught it ([`Requester::publish_evidence`]), checked and, when this node can, confirmed
//! by its own run before anyone is excluded here ([`Requester::on_evidence`]).
//!
//! A received `evidence` is dropped (and counted) unless its sender is under its rate
//! ([`EVIDENCE_PER_MINUTE`]) and [`check_evidence`] passes: every signature checks, the
//! accused signed its receipt, and every receipt ran the carried job. Then this node asks
//! a provider of the same digest that is neither the sender, the accused nor one of the
//! checkers to run the job (the spot check's run, [`Requester::check_run`]); the accused
//! is excluded, as a caught provider is, only when that run's output hash is a checker's
//! and not the accused's. Otherwise the evidence is kept as unconfirmed (`/status`'s
//! `evidence_unconfirmed`, bounded) and nobody is excluded: never on hearsay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::Requester;
use crate::axl::PeerKey;
use crate::jobs::now_ms;
use crate::protocol::evidence::{check_evidence, Evidence};
use crate::protocol::receipt::output_hash;
use crate::protocol::Message;
use crate::request::{ValidRequest, WaitFor};

/// Evidences one sender may send per minute; more are dropped.
pub const EVIDENCE_PER_MINUTE: u32 = 4;

/// Senders tracked for the rate, and accused tracked as unconfirmed, at most.
pub const MAX_EVIDENCE_TRACKED: usize = 256;

/// Unconfirmed evidences kept per accused, at most (one per sender).
pub const MAX_EVIDENCE_PER_ACCUSED: usize = 4;

/// How long this node's own run of an evidence's job may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);

/// An evidence this node checked but could not confirm: nobody was excluded on it.
#[derive(Debug, Clone, Serialize)]
pub struct Unconfirmed {
    /// The accused provider (full key, hex).
    pub accused: String,
    /// Who sent it (full key, hex).
    pub from: String,
    /// The job's model.
    pub model: String,
    /// Why it is not confirmed.
    pub why: String,
    /// When it arrived, unix ms.
    pub received_ms: u64,
}

/// What this node holds of received evidence (every map bounded).
#[derive(Default)]
pub struct EvidenceBook {
    /// Per sender: the start of its minute and how many it sent in it.
    rate: Mutex<HashMap<PeerKey, (Instant, u32)>>,
    /// Per accused: the unconfirmed evidences.
    unconfirmed: Mutex<HashMap<PeerKey, Vec<Unconfirmed>>>,
    /// Evidences dropped: over the rate, or failing their check.
    dropped: AtomicU64,
    /// Evidences this node's own run confirmed.
    confirmed: AtomicU64,
}

impl EvidenceBook {
    /// Whether `from` is under its rate (and count this one).
    fn allow(&self, from: &PeerKey, now: Instant) -> bool {
        let mut m = self.rate.lock();
        if m.len() >= MAX_EVIDENCE_TRACKED && !m.contains_key(from) {
            m.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
            if m.len() >= MAX_EVIDENCE_TRACKED {
                return false;
            }
        }
        let e = m.entry(*from).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= EVIDENCE_PER_MINUTE
    }

    fn keep(&self, accused: PeerKey, u: Unconfirmed) {
        let mut m = self.unconfirmed.lock();
        if m.len() >= MAX_EVIDENCE_TRACKED && !m.contains_key(&accused) {
            return;
        }
        let v = m.entry(accused).or_default();
        v.retain(|x| x.from != u.from);
        if v.len() < MAX_EVIDENCE_PER_ACCUSED {
            v.push(u);
        }
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Requester {
    /// Send `ev` once, unreliably, to this node's direct peers.
    pub(super) fn publish_evidence(&self, ev: Evidence) {
        if let Err(e) = check_evidence(&ev) {
            tracing::warn!(error = %e, "evidence not published");
            return;
        }
        let peers = self.ctx.mesh.directory.direct();
        let endpoint = self.ctx.endpoint.clone();
        let accused = ev.accused;
        let msg = Message::Evidence(Box::new(ev));
        tracing::info!(accused = %accused.short(), peers = peers.len(), "publishing evidence of a caught provider");
        tokio::spawn(async move {
            for p in peers.iter().filter(|p| **p != accused) {
                if let Err(e) = endpoint.send_once(p, &msg).await {
                    tracing::debug!(to = %p.short(), error = %e, "evidence not sent");
                }
            }
        });
    }

    /// A received `evidence`: dropped unless under the sender's rate and checked; then
    /// confirmed by this node's own run (the accused excluded) or kept as unconfirmed.
    pub async fn on_evidence(&self, from: &PeerKey, ev: Evidence) {
        let book = &self.evidence;
        if !book.allow(from, Instant::now()) {
            book.drop_one();
            tracing::warn!(from = %from.short(), "evidence dropped: over the sender's rate");
            return;
        }
        if let Err(e) = check_evidence(&ev) {
            book.drop_one();
            tracing::warn!(from = %from.short(), error = %e, "evidence dropped");
            return;
        }
        let accused = ev.accused;
        if accused == self.ctx.endpoint.me() || self.is_caught(&accused) {
            return;
        }
        let why = match self.confirm(from, &ev).await {
            Ok(()) => {
                book.confirmed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(accused = %accused.short(), from = %from.short(), "evidence confirmed by this node's own run: provider excluded");
                self.mark_caught(&accused);
                return;
            }
            Err(why) => why,
        };
        tracing::info!(accused = %accused.short(), from = %from.short(), %why, "evidence kept unconfirmed: nobody excluded");
        book.keep(
            accused,
            Unconfirmed {
                accused: accused.to_hex(),
                from: from.to_hex(),
                model: ev.model.clone(),
                why,
                received_ms: now_ms(),
            },
        );
    }

    /// Run the evidence's job on an independent provider of its digest; `Ok` when the
    /// run's output hash is a checker's and not the accused's.
    async fn confirm(&self, from: &PeerKey, ev: &Evidence) -> Result<(), String> {
        if !self.ctx.config.node.role.requests() {
            return Err(
                "this node does not delegate: it has no jobs to keep from the accused".into(),
            );
        }
        let signers: Vec<&str> = ev.receipts().map(|r| r.body.signer.as_str()).collect();
        let digest_of = |ad: &crate::protocol::ResourceAd| {
            ad.model_info
                .iter()
                .find(|m| crate::inference::model_matches(&ev.model, &m.name))
                .map(|m| m.digest.clone().unwrap_or_default())
        };
        let runner = self
            .ctx
            .mesh
            .ads
            .fresh_for(&ev.model)
            .into_iter()
            .filter(|ad| ad.node_id != *from && !self.is_caught(&ad.node_id))
            .filter(|ad| !signers.contains(&ad.node_id.to_hex().as_str()))
            .find(|ad| digest_of(ad).as_deref() == Some(ev.model_digest.as_str()))
            .ok_or("no independent provider of the digest to re-run it")?;
        let req = ValidRequest {
            model: ev.model.clone(),
            model_digest: (!ev.model_digest.is_empty()).then(|| ev.model_digest.clone()),
            prompt: ev.prompt.clone(),
            options: ev.options.clone(),
            max_price: runner.price,
            timeout: CONFIRM_TIMEOUT,
            min_memory_mb: 0,
            wait: WaitFor::Verified,
            messages: ev.messages.clone(),
            sink: None,
            unpaid_only: false,
        };
        let payments = self.payments.requester();
        let run = self
            .check_run(
                crate::protocol::JobId::from_hex(&ev.accused_receipt.body.job_id).ok(),
                payments.as_ref(),
                &runner,
                &req,
                ev.options.clone(),
                Instant::now() + CONFIRM_TIMEOUT,
            )
            .await
            .ok_or("the re-run made no run that counts")?;
        let mine = output_hash(&run.output);
        let checkers_agree = ev
            .checker_receipts
            .iter()
            .any(|r| r.body.output_hash == mine);
        if checkers_agree && ev.accused_receipt.body.output_hash != mine {
            Ok(())
        } else {
            Err(format!(
                "this node's re-run ({}) does not side with the checkers",
                runner.node_id.short()
            ))
        }
    }

    /// Evidence kept unconfirmed, for `/status`.
    pub fn evidence_unconfirmed(&self) -> Vec<Unconfirmed> {
        let m = self.evidence.unconfirmed.lock();
        let mut v: Vec<Unconfirmed> = m.values().flatten().cloned().collect();
        v.sort_by_key(|u| u.received_ms);
        v
    }

    /// Evidences dropped (over the rate, or failing their check), and confirmed.
    pub fn evidence_counts(&self) -> (u64, u64) {
        (
            self.evidence.dropped.load(Ordering::Relaxed),
            self.evidence.confirmed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_is_held_to_its_rate_and_the_books_are_bounded() {
        let b = EvidenceBook::default();
        let (a, t) = (PeerKey([1; 32]), Instant::now());
        let n = (0..10).filter(|_| b.allow(&a, t)).count();
        assert_eq!(n, EVIDENCE_PER_MINUTE as usize);
        assert!(b.allow(&a, t + Duration::from_secs(61)));
        for i in 0..MAX_EVIDENCE_TRACKED + 10 {
            let k = PeerKey([
                (i % 256) as u8,
                (i / 256) as u8,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
            ]);
            let u = |from: u8| Unconfirmed {
                accused: k.to_hex(),
                from: from.to_string(),
                model: "m".into(),
                why: String::new(),
                received_ms: 0,
            };
            for from in 0..8 {
                b.keep(k, u(from));
            }
        }
        let m = b.unconfirmed.lock();
        assert_eq!(m.len(), MAX_EVIDENCE_TRACKED);
        assert!(m.values().all(|v| v.len() == MAX_EVIDENCE_PER_ACCUSED));
    }
}
