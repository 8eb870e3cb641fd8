//! Counters and histograms of the daemon, exposed at `/metrics` in the Prometheus text
//! format through the `prometheus-client` crate.

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::jobs::{JobState, Side};
use crate::protocol::{DropReason, MESSAGE_TYPES};

/// Label: a message `type`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// The message type.
    pub r#type: String,
}

/// Label: why a message was dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: String,
}

/// Label: a job's side and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// requester or provider.
    pub side: String,
    /// The state.
    pub state: String,
}

/// Label: an outcome (settlement, verification).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: String,
}

/// Label: one bounded table or counter of the defences against hostile peers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// Its name (`handlers_peer_peak`, `refusals_unsent`, ...).
    pub table: String,
}

/// Every metric of one daemon.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Messages decoded from the mesh, by type.
    pub messages_in: Family<TypeLabel, Counter>,
    /// Messages sent to the mesh, by type.
    pub messages_out: Family<TypeLabel, Counter>,
    /// Sends that AXL refused or could not deliver, by type.
    pub send_failures: Family<TypeLabel, Counter>,
    /// Messages dropped, by reason.
    pub messages_dropped: Family<ReasonLabel, Counter>,
    /// Jobs by side and state (set at scrape time from the job store).
    pub jobs: Family<JobLabel, Gauge>,
    /// Time from `/delegate` to the answer, seconds.
    pub delegation_latency: Histogram,
    /// Restarts of the AXL child (set at scrape time).
    pub axl_restarts: Gauge,
    /// Proofs generated.
    pub proofs_generated: Counter,
    /// Proofs verified, by outcome (valid/invalid).
    pub proofs_verified: Family<OutcomeLabel, Counter>,
    /// Settlements by outcome (released/rejected/refunded/claimed/failed).
    pub settlements: Family<OutcomeLabel, Counter>,
    /// Spot checks by verdict (passed/caught/checker_caught/unsettled/no_checker).
    pub spot_checks: Family<OutcomeLabel, Counter>,
    /// Receive loop: messages taken from AXL's queue (set at scrape time).
    pub recv_received: Gauge,
    /// Receive loop: failed `/recv` calls (set at scrape time).
    pub recv_errors: Gauge,
    /// Receive loop: messages dropped because the router was behind (set at scrape time).
    pub recv_dropped_full: Gauge,
    /// Receive loop: outages of the AXL node (set at scrape time).
    pub recv_outages: Gauge,
    /// Sent messages awaiting their ack now (set at scrape time).
    pub pending_acks: Gauge,
    /// The most ever awaiting their ack at once (set at scrape time).
    pub pending_acks_peak: Gauge,
    /// The most ever awaiting the ack of one peer at once (set at scrape time).
    pub pending_acks_peer_peak: Gauge,
    /// The sizes, peaks and drops of the bounded tables (docs/threat-model.md, 25-32).
    pub bounded: Family<TableLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered and every known label pre-created,
    /// so a scrape shows zeros rather than missing series.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            messages_in: Family::default(),
            messages_out: Family::default(),
            send_failures: Family::default(),
            messages_dropped: Family::default(),
            jobs: Family::default(),
            delegation_latency: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            axl_restarts: Gauge::default(),
            proofs_generated: Counter::default(),
            proofs_verified: Family::default(),
            settlements: Family::default(),
            spot_checks: Family::default(),
            recv_received: Gauge::default(),
            recv_errors: Gauge::default(),
            recv_dropped_full: Gauge::default(),
            recv_outages: Gauge::default(),
            pending_acks: Gauge::default(),
            pending_acks_peak: Gauge::default(),
            pending_acks_peer_peak: Gauge::default(),
            bounded: Family::default(),
        };
        r.register(
            "edgent_messages_in",
            "Messages received from the mesh, by type",
            m.messages_in.clone(),
        );
        r.register(
            "edgent_messages_out",
            "Messages sent to the mesh, by type",
            m.messages_out.clone(),
        );
        r.register(
            "edgent_send_failures",
            "Sends AXL could not deliver, by type",
            m.send_failures.clone(),
        );
        r.register(
            "edgent_bounded",
            "Sizes, peaks and drops of the tables bounded against hostile peers",
            m.bounded.clone(),
        );
        r.register(
            "edgent_messages_dropped",
            "Incoming messages dropped, by reason",
            m.messages_dropped.clone(),
        );
        r.register("edgent_jobs", "Jobs by side and state", m.jobs.clone());
        r.register(
            "edgent_delegation_latency_seconds",
            "Time from /delegate to the answer",
            m.delegation_latency.clone(),
        );
        r.register(
            "edgent_axl_restarts",
            "Restarts of the AXL child process",
            m.axl_restarts.clone(),
        );
        r.register(
            "edgent_proofs_generated",
            "Groth16 proofs generated",
            m.proofs_generated.clone(),
        );
        r.register(
            "edgent_proofs_verified",
            "Groth16 proofs checked, by outcome",
            m.proofs_verified.clone(),
        );
        r.register(
            "edgent_spot_checks",
            "Spot checks of providers' results, by verdict",
            m.spot_checks.clone(),
        );
        r.register(
            "edgent_settlements",
            "Escrow settlements, by outcome",
            m.settlements.clone(),
        );
        r.register(
            "edgent_recv_received",
            "Messages the receive loop took from AXL's queue",
            m.recv_received.clone(),
        );
        r.register(
            "edgent_recv_errors",
            "Failed /recv calls",
            m.recv_errors.clone(),
        );
        r.register(
            "edgent_recv_dropped_full",
            "Received messages dropped because the router was behind",
            m.recv_dropped_full.clone(),
        );
        r.register(
            "edgent_recv_outages",
            "Times the AXL node stopped answering /recv",
            m.recv_outages.clone(),
        );
        r.register(
            "edgent_pending_acks",
            "Sent messages awaiting their ack",
            m.pending_acks.clone(),
        );
        r.register(
            "edgent_pending_acks_peak",
            "The most sent messages ever awaiting their ack at once",
            m.pending_acks_peak.clone(),
        );
        r.register(
            "edgent_pending_acks_peer_peak",
            "The most sent messages ever awaiting the ack of one peer at once",
            m.pending_acks_peer_peak.clone(),
        );
        for t in MESSAGE_TYPES {
            let _ = m.messages_in.get_or_create(&TypeLabel { r#type: t.into() });
            let _ = m
                .messages_out
                .get_or_create(&TypeLabel { r#type: t.into() });
            let _ = m
                .send_failures
                .get_or_create(&TypeLabel { r#type: t.into() });
        }
        for reason in DropReason::ALL {
            let _ = m.messages_dropped.get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            });
        }
        for o in ["released", "rejected", "refunded", "claimed", "failed"] {
            let _ = m
                .settlements
                .get_or_create(&OutcomeLabel { outcome: o.into() });
        }
        for o in ["valid", "invalid"] {
            let _ = m
                .proofs_verified
                .get_or_create(&OutcomeLabel { outcome: o.into() });
        }
        *m.registry.lock() = r;
        m
    }

    /// Count one spot check by its verdict.
    pub fn spot_check(&self, verdict: &'static str) {
        self.spot_checks
            .get_or_create(&OutcomeLabel {
                outcome: verdict.into(),
            })
            .inc();
    }

    /// Count one proof checked by a requester.
    pub fn proof_checked(&self, valid: bool) {
        self.proofs_verified
            .get_or_create(&OutcomeLabel {
                outcome: if valid { "valid" } else { "invalid" }.into(),
            })
            .inc();
    }

    /// Count one proof generated by a provider.
    pub fn proof_generated(&self) {
        self.proofs_generated.inc();
    }

    /// Count one settlement by how it ended (released, rejected, refunded, claimed, failed).
    pub fn settled(&self, outcome: &str) {
        self.settlements
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Count one decoded incoming message.
    pub fn msg_in(&self, kind: &str) {
        self.messages_in
            .get_or_create(&TypeLabel {
                r#type: kind.into(),
            })
            .inc();
    }

    /// Count one sent message.
    pub fn msg_out(&self, kind: &str) {
        self.messages_out
            .get_or_create(&TypeLabel {
                r#type: kind.into(),
            })
            .inc();
    }

    /// Count one failed send.
    pub fn send_failed(&self, kind: &str) {
        self.send_failures
            .get_or_create(&TypeLabel {
                r#type: kind.into(),
            })
            .inc();
    }

    /// Count one dropped message.
    pub fn dropped(&self, reason: DropReason) {
        self.messages_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// How many messages were dropped for `reason`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.messages_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            })
            .get()
    }

    /// Set the job gauges from the store's counts.
    pub fn set_jobs(&self, counts: &[(Side, JobState, u64)]) {
        for side in [Side::Requester, Side::Provider, Side::Local] {
            for state in JobState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, st, _)| *s == side && *st == state)
                    .map(|c| c.2)
                    .unwrap_or(0);
                self.jobs
                    .get_or_create(&JobLabel {
                        side: side.as_str().into(),
                        state: state.as_str().into(),
                    })
                    .set(n as i64);
            }
        }
    }

    /// Copy the receive loop's counters into their gauges.
    pub fn set_recv(&self, c: &crate::axl::recv::RecvCounts) {
        self.recv_received.set(c.received as i64);
        self.recv_errors.set(c.recv_errors as i64);
        self.recv_dropped_full.set(c.dropped_full as i64);
        self.recv_outages.set(c.outages as i64);
    }

    /// Copy the pending-ack table's size, its peak, and its peak for any one peer into
    /// `edgent_pending_acks`, `..._peak` and `..._peer_peak`.
    pub fn set_pending_acks(&self, len: usize, (peak, peer_peak): (usize, usize)) {
        self.pending_acks.set(len as i64);
        self.pending_acks_peak.set(peak as i64);
        self.pending_acks_peer_peak.set(peer_peak as i64);
    }

    /// `edgent_bounded{table}`: one bounded table's size, peak or drop count.
    pub fn table(&self, table: &str) -> Gauge {
        self.bounded
            .get_or_create(&TableLabel {
                table: table.to_string(),
            })
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock();
        if let Err(e) = encode(&mut out, &reg) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
