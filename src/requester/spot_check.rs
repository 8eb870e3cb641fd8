//! Spot checks: with the probability `VERIFY_RATE` (and always for a provider's first
//! `VERIFY_FIRST` jobs), a job's result is re-run by a second, independent provider that
//! advertises the same model digest, under fixed sampling, and the outputs compared
//! ([`outputs_agree`]).
//!
//! - A job whose sampling is fixed (`temperature` 0, or a `seed`) is re-run as it was
//!   (`rerun`): one extra run, compared with the output the provider delivered.
//! - Otherwise the provider's output cannot be reproduced, so the job's prompt runs greedy
//!   (`temperature` 0, `seed` 0, at most [`PROBE_TOKENS`] tokens) on the provider and on the
//!   checker (`probe`): two extra runs.
//!
//! Two runs that disagree do not say who lied: a third provider of the same digest runs it
//! too, and only the one in the minority is accused. Without a third, nobody is
//! (`unsettled`). A caught provider's result is refused (not paid), the provider is
//! recorded as disputed and excluded by this node from then on, and the delegation moves
//! to the next provider while the agent waits. Each check run's signed receipt is checked
//! like any result's and kept, with the verdict, on the job record (`spot_check`). With
//! payments on, each check run is a paid job to its provider ([`super::check_run`]); what
//! the check cost is kept with it.

use std::time::Instant;

use serde_json::{Map, Value};

use super::Requester;
use crate::axl::PeerKey;
use crate::jobs::{Side, SpotCheck, SpotVerdict};
use crate::paid::RequesterPayments;
use crate::protocol::receipt::{output_hash, receipt_digest};
use crate::protocol::{JobId, ResourceAd, TaskResult};
use crate::request::ValidRequest;

/// Tokens a greedy probe asks for.
pub const PROBE_TOKENS: u64 = 32;

/// Characters of common beginning two greedy runs of the same weights must share when
/// they are not identical (float differences between machines can make a long greedy run
/// drift late; a different model differs from the first tokens).
pub const AGREE_PREFIX_CHARS: usize = 48;

/// The spot-check rule: two greedy runs of the same weights agree when their outputs are
/// identical, or share their first [`AGREE_PREFIX_CHARS`] characters (or all of the
/// shorter one, when it is shorter than that).
pub fn outputs_agree(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let shorter = a.chars().count().min(b.chars().count());
    common >= AGREE_PREFIX_CHARS.min(shorter) && shorter > 0
}

/// Whether a job's sampling is fixed, so its output can be reproduced as it is.
pub fn sampling_is_fixed(options: Option<&Map<String, Value>>) -> bool {
    options.is_some_and(|o| {
        o.get("temperature").and_then(Value::as_f64) == Some(0.0) || o.contains_key("seed")
    })
}

/// The greedy options of a probe of a job run with `options`.
fn probe_options(options: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut o = options.cloned().unwrap_or_default();
    let asked = o
        .get("num_predict")
        .and_then(Value::as_u64)
        .unwrap_or(PROBE_TOKENS);
    o.insert("temperature".into(), Value::from(0));
    o.insert("seed".into(), Value::from(0));
    o.insert(
        "num_predict".into(),
        Value::from(asked.clamp(1, PROBE_TOKENS)),
    );
    o
}

impl Requester {
    /// Whether this job of `provider`'s is checked: always among its first
    /// `VERIFY_FIRST` jobs here, else with probability `VERIFY_RATE`.
    pub(super) fn wants_check(&self, provider: &PeerKey) -> bool {
        let d = &self.ctx.config.delegation;
        let mut seen = self.checked.lock();
        if seen.len() >= MAX_TRACKED && !seen.contains_key(provider) {
            seen.clear();
        }
        let n = seen.entry(*provider).or_insert(0);
        *n = n.saturating_add(1);
        *n <= d.verify_first || (d.verify_rate > 0.0 && fastrand::f64() < d.verify_rate)
    }

    /// The providers a spot check of this node caught (full keys, hex), for `/status`.
    pub fn caught(&self) -> Vec<String> {
        let mut v: Vec<String> = self.caught.lock().iter().map(PeerKey::to_hex).collect();
        v.sort();
        v
    }

    /// Whether this node caught `provider` cheating (it is given no more jobs).
    pub(super) fn is_caught(&self, provider: &PeerKey) -> bool {
        self.caught.lock().contains(provider)
    }

    /// Exclude `provider` from this node's delegations (a cheater caught by a spot check of
    /// an attempt, whose `caught` outcome records the dispute in its history).
    fn exclude(&self, provider: &PeerKey) {
        let mut c = self.caught.lock();
        if c.len() < MAX_TRACKED {
            c.insert(*provider);
        }
    }

    /// Exclude `provider` and record one dispute in its history (a checker that lied, or a
    /// cheater confirmed from a peer's evidence: no attempt of this node records it).
    pub(super) fn mark_caught(&self, provider: &PeerKey) {
        self.exclude(provider);
        self.ctx
            .mesh
            .history
            .record(provider, crate::mesh::ProviderOutcome::Dispute, None);
    }

    /// Spot-check `r`, the result `ad`'s provider delivered for `job` (one the sample wants:
    /// [`Requester::wants_check`]), with the other candidates `pool`; the check is kept on the job's record. Returns why the provider
    /// was caught, when it was. Check runs are paid through `payments` when jobs are paid.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn spot_check(
        &self,
        job: JobId,
        ad: &ResourceAd,
        req: &ValidRequest,
        r: &TaskResult,
        pool: &[ResourceAd],
        payments: &dyn RequesterPayments,
        deadline: Instant,
    ) -> Option<String> {
        let provider = ad.node_id;
        let started = Instant::now();
        let digest = receipt_digest(r.receipt.as_ref()).to_string();
        // Checkers: other providers of the same digest; when nobody else claims it, other
        // providers of the same name (a name served as a digest nobody else has is itself
        // suspect, and only two others that agree with each other accuse it).
        let others: Vec<&ResourceAd> = pool
            .iter()
            .filter(|c| c.node_id != provider && !self.is_caught(&c.node_id))
            .collect();
        let digest_of = |c: &ResourceAd| -> Option<String> {
            c.model_info
                .iter()
                .find(|m| crate::inference::model_matches(&req.model, &m.name))
                .map(|m| m.digest.clone().unwrap_or_default())
        };
        let same: Vec<&ResourceAd> = others
            .iter()
            .copied()
            .filter(|c| digest_of(c).as_deref() == Some(digest.as_str()))
            .collect();
        let mut checkers = if same.is_empty() {
            others
                .into_iter()
                .filter(|c| digest_of(c).is_some())
                .collect()
        } else {
            same
        };
        // In an order the provider cannot foresee.
        fastrand::shuffle(&mut checkers);
        let fixed = sampling_is_fixed(req.options.as_ref());
        let options = if fixed {
            req.options.clone()
        } else {
            Some(probe_options(req.options.as_ref()))
        };
        let mut check = SpotCheck {
            provider,
            verdict: SpotVerdict::NoChecker,
            mode: if fixed { "rerun" } else { "probe" }.into(),
            checkers: Vec::new(),
            receipts: Vec::new(),
            output_hashes: Vec::new(),
            ms: 0,
            at_ms: 0,
            cost_units: 0,
            check_jobs: Vec::new(),
        };
        // The provider's own output to compare: as delivered, or its probe.
        let theirs = if fixed || checkers.is_empty() {
            check.receipts.extend(r.receipt.clone());
            Some(r.output.clone())
        } else {
            self.check_run(Some(job), payments, ad, req, options.clone(), deadline)
                .await
                .map(|run| {
                    check.receipts.extend(run.result.receipt.clone());
                    check.cost_units += run.cost_units;
                    check.check_jobs.push(run.job);
                    run.output
                })
        };
        let caught = match theirs {
            // Nobody else runs this model: nothing to compare with.
            _ if checkers.is_empty() => None,
            None => {
                // The provider did not run its own probe (busy, gone): nothing is proved.
                check.verdict = SpotVerdict::Unsettled;
                None
            }
            Some(theirs) => {
                check.output_hashes.push(output_hash(&theirs));
                // The first checker that answers with a receipt that checks, and a second
                // when the first disagrees with the provider.
                let mut runs: Vec<(PeerKey, String)> = Vec::new();
                for c in &checkers {
                    let Some(run) = self
                        .check_run(Some(job), payments, c, req, options.clone(), deadline)
                        .await
                    else {
                        continue;
                    };
                    check.checkers.push(c.node_id);
                    check.cost_units += run.cost_units;
                    check.check_jobs.push(run.job);
                    check.receipts.extend(run.result.receipt.clone());
                    check.output_hashes.push(output_hash(&run.output));
                    runs.push((c.node_id, run.output));
                    if runs.len() == 2 || outputs_agree(&theirs, &runs[0].1) {
                        break;
                    }
                }
                check.verdict = judge(&theirs, &runs);
                match (check.verdict, runs.first()) {
                    (SpotVerdict::CheckerCaught, Some((liar, _))) => {
                        self.mark_caught(liar);
                        None
                    }
                    (SpotVerdict::Caught, _) => Some(format!(
                        "a spot check caught it: two other providers of the same model ({}) agree with each other and not with it",
                        if fixed { "re-running the job" } else { "greedy probes" }
                    )),
                    _ => None,
                }
            }
        };
        check.ms = started.elapsed().as_millis() as u64;
        check.at_ms = crate::jobs::now_ms();
        tracing::info!(%job, provider = %provider.short(), verdict = <&str>::from(check.verdict), ms = check.ms, "spot check");
        self.ctx.metrics.spot_check(check.verdict.into());
        if caught.is_some() {
            // Excluded here; its history gets the dispute once, from the attempt's outcome.
            self.exclude(&provider);
            if let Some((accused_receipt, checker_receipts)) = check.receipts.split_first() {
                self.publish_evidence(crate::protocol::Evidence {
                    accused: provider,
                    model: req.model.clone(),
                    model_digest: digest.clone(),
                    options: options.clone(),
                    prompt: req.prompt.clone(),
                    messages: req.messages.clone(),
                    accused_receipt: accused_receipt.clone(),
                    checker_receipts: checker_receipts.to_vec(),
                });
            }
        }
        let res = self.ctx.jobs.update(&job, Side::Requester, |rec| {
            if rec.spot_checks.len() < MAX_CHECKS_PER_JOB {
                rec.spot_checks.push(check);
            }
        });
        if let Err(e) = res {
            tracing::warn!(%job, error = %e, "cannot keep the spot check with the job");
        }
        caught
    }
}

/// The verdict of a spot check, from the provider's output `theirs` and the checkers' runs
/// (in order; a second is asked only when the first disagrees): the first agrees, passed;
/// two checkers that agree with each other and not with the provider catch it; a second
/// that agrees with the provider catches the first checker; anything else is unsettled.
fn judge(theirs: &str, runs: &[(PeerKey, String)]) -> SpotVerdict {
    match runs {
        [] => SpotVerdict::NoChecker,
        [(_, a), ..] if outputs_agree(theirs, a) => SpotVerdict::Passed,
        [_] => SpotVerdict::Unsettled,
        [(_, a), (_, b), ..] if outputs_agree(a, b) && !outputs_agree(theirs, b) => {
            SpotVerdict::Caught
        }
        [_, (_, b), ..] if outputs_agree(theirs, b) => SpotVerdict::CheckerCaught,
        _ => SpotVerdict::Unsettled,
    }
}

/// Spot checks kept on one job record, at most (one per provider tried).
pub const MAX_CHECKS_PER_JOB: usize = 16;

/// Providers tracked for their first checks and as caught, at most.
pub const MAX_TRACKED: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_accepts_identical_and_late_drift_and_refuses_an_early_difference() {
        let a = "Paris. It is the capital and most populous city of France, with an estimated";
        assert!(outputs_agree(a, a));
        let late = format!("{}{}", &a[..60], " population of");
        assert!(outputs_agree(a, &late));
        assert!(!outputs_agree(
            a,
            "Lyon. It is the capital and most populous city of France"
        ));
        assert!(outputs_agree("Paris.", "Paris."));
        assert!(!outputs_agree("Paris.", "Paris!"));
        assert!(!outputs_agree("", "x"));
    }

    #[test]
    fn the_verdict_accuses_only_the_one_two_others_outvote() {
        let run = |n: u8, out: &str| (PeerKey([n; 32]), out.to_string());
        let (good, bad) = ("Paris. It is the capital", "Lyon. It is the capital");
        assert_eq!(judge(good, &[]), SpotVerdict::NoChecker);
        assert_eq!(judge(good, &[run(1, good)]), SpotVerdict::Passed);
        assert_eq!(judge(good, &[run(1, bad)]), SpotVerdict::Unsettled);
        // Two checkers agree with each other and not with the provider: the provider lied.
        assert_eq!(
            judge(bad, &[run(1, good), run(2, good)]),
            SpotVerdict::Caught
        );
        // The second agrees with the provider: the first checker lied.
        assert_eq!(
            judge(good, &[run(1, bad), run(2, good)]),
            SpotVerdict::CheckerCaught
        );
        // Three different answers: nobody is accused.
        assert_eq!(
            judge(good, &[run(1, bad), run(2, "Rome. It is")]),
            SpotVerdict::Unsettled
        );
    }

    #[test]
    fn fixed_sampling_is_recognised_and_probes_are_greedy() {
        let o = |v: Value| v.as_object().cloned();
        assert!(sampling_is_fixed(
            o(serde_json::json!({"temperature": 0})).as_ref()
        ));
        assert!(sampling_is_fixed(
            o(serde_json::json!({"seed": 3, "temperature": 0.8})).as_ref()
        ));
        assert!(!sampling_is_fixed(
            o(serde_json::json!({"temperature": 0.8})).as_ref()
        ));
        assert!(!sampling_is_fixed(None));
        let p =
            probe_options(o(serde_json::json!({"temperature": 0.8, "num_predict": 500})).as_ref());
        assert_eq!(p["temperature"], 0);
        assert_eq!(p["seed"], 0);
        assert_eq!(p["num_predict"], PROBE_TOKENS);
    }
}
