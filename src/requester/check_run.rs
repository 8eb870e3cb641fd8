//! One run of a spot check ([`Requester::check_run`]): the job's task (or its greedy
//! probe) sent to one provider under a fresh job id, its signed receipt checked like any
//! result's.
//!
//! With payments on, a check run is a paid job to that provider like any other (a paid
//! provider refuses a task without a stake, so an unpaid check would find no checker): its
//! own requester record, a stake at the provider's price (discovery kept only providers
//! within the request's max price), the provider's proof checked, and the stake released.
//! Its price is reserved on, and spent from, the agent's spend budget like a delegation's;
//! a run the budget cannot pay is not made (the check finds no checker). A run whose
//! receipt does not check is refused and disputed like any result; a run that fails ends
//! its stake as any failed attempt's does.

use std::time::Instant;

use serde_json::{Map, Value};

use super::Requester;
use crate::jobs::{now_ms, prompt_of, Asked, JobRecord, JobState, Side};
use crate::paid::{Begin, RequesterPayments};
use crate::protocol::receipt::{check_receipt, receipt_digest};
use crate::protocol::{JobId, Message, ResourceAd, Task, TaskResult};
use crate::request::{AttemptOutcome, ValidRequest, WaitFor};

use super::attempt::AttemptEnd;

/// The result of one check run: its output, its checked receipt, and what it cost.
pub(super) struct Run {
    /// What the provider answered.
    pub output: String,
    /// Its result, with the receipt that checked.
    pub result: Box<TaskResult>,
    /// The run's job id (its own record when paid).
    pub job: JobId,
    /// What it was paid, USDC base units (0 when payments are off).
    pub cost_units: u64,
}

impl Requester {
    /// One check run on `on`'s provider, its receipt checked like any result's; paid like
    /// any job when payments are on (its record marked as a check of job `of`: one of
    /// ours, or the accused's job of an evidence). `None` when it made no run that counts.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn check_run(
        &self,
        of: Option<JobId>,
        payments: &dyn RequesterPayments,
        on: &ResourceAd,
        req: &ValidRequest,
        options: Option<Map<String, Value>>,
        deadline: Instant,
    ) -> Option<Run> {
        let job = JobId::new();
        let provider = on.node_id;
        let deadline_ms = now_ms()
            + deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
        let paid = payments.paid();
        // A paid run is held on the agent's budget first, then staked under its own record.
        let hold = if paid {
            match self.budget.reserve(on.price) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(provider = %provider.short(), detail = %e.detail, "spot check run not made: spend budget");
                    return None;
                }
            }
        } else {
            None
        };
        let mut stake = None;
        if paid {
            let prompt = prompt_of(&req.prompt, req.messages.as_deref());
            let mut rec = JobRecord::new(job, Side::Requester, &req.model, &prompt, deadline_ms);
            rec.check_of = of;
            if let Err(e) = self.ctx.jobs.insert(&rec) {
                tracing::warn!(%job, error = %e, "spot check run not made: cannot record it");
                return None;
            }
            let begin = Begin {
                job_id: job,
                tried: false,
                ad: on,
                req,
                deadline,
                deadline_ms,
                discover_ms: 0,
            };
            match payments.begin(&begin).await {
                Ok(b) => stake = b.stake,
                Err(e) => {
                    tracing::warn!(%job, provider = %provider.short(), error = %e.error, "spot check run not staked");
                    self.end_check_job(job, JobState::Failed, &e.error.to_string());
                    return None;
                }
            }
        }
        let task = Task {
            job_id: job,
            model: req.model.clone(),
            prompt: req.prompt.clone(),
            options,
            stake,
            deadline_ms,
            sender_ens: self.ctx.config.node.ens_name.clone(),
            messages: req.messages.clone(),
            stream: false,
            model_digest: req.model_digest.clone(),
        };
        let sent_ms = now_ms();
        // The digest a check run's receipt must name: the pinned one, else the one the
        // checker's receipt names (the checker was chosen for it).
        let mut asked = Asked::new(
            task.model_digest.as_deref().unwrap_or_default(),
            task.options.as_ref(),
            &task.prompt,
            task.messages.as_deref(),
            sent_ms,
        );
        if paid {
            let kept = asked.clone();
            let res = self
                .ctx
                .jobs
                .transition(&job, Side::Requester, JobState::Tasked, |r| {
                    r.peer = Some(provider);
                    r.peer_ens = on.ens.clone();
                    r.peer_wallet = on.wallet.clone();
                    r.price_units = Some(on.price);
                    r.asked = Some(kept);
                });
            if let Err(e) = res {
                tracing::warn!(%job, error = %e, "cannot record the spot check run as tasked");
            }
        }
        // Its receipt is checked below, against the digest the checker's receipt names.
        let msg = Message::Task(task.clone());
        let (end, _held) = self
            .attempt(job, provider, (&msg, &task.model), None, deadline)
            .await;
        let result = match end {
            AttemptEnd::Result(result) => result,
            other => {
                if paid {
                    let outcome = other.outcome();
                    let _ = payments.end(&job, &provider, outcome).await;
                    let state = if outcome == AttemptOutcome::Deadline {
                        JobState::TimedOut
                    } else {
                        JobState::Failed
                    };
                    self.end_check_job(job, state, &format!("spot check run: {outcome}"));
                }
                return None;
            }
        };
        if task.model_digest.is_none() {
            asked.model_digest = receipt_digest(result.receipt.as_ref()).to_string();
        }
        let want = asked.expected(
            &job,
            &provider,
            &task.model,
            &result.output,
            &result.tool_calls,
        );
        if let Err(e) = check_receipt(result.receipt.as_ref(), &want) {
            tracing::warn!(provider = %provider.short(), error = %e, "a spot check run's receipt does not check");
            if paid {
                let (receipt, why) = (result.receipt.clone(), e.to_string());
                let _ = self.ctx.jobs.update(&job, Side::Requester, |r| {
                    r.receipt = receipt;
                    r.receipt_refused = Some(why);
                });
                let _ = payments
                    .end(&job, &provider, AttemptOutcome::BadReceipt)
                    .await;
                self.end_check_job(job, JobState::Failed, &format!("spot check run: {e}"));
            }
            return None;
        }
        let mut cost_units = 0;
        if paid {
            let (output, usage, receipt) = (
                result.output.clone(),
                result.usage.clone(),
                result.receipt.clone(),
            );
            let res = self
                .ctx
                .jobs
                .transition(&job, Side::Requester, JobState::Completed, |r| {
                    r.output = Some(output);
                    r.usage = Some(usage);
                    r.receipt = receipt;
                });
            if let Err(e) = res {
                tracing::warn!(%job, error = %e, "cannot record the spot check run's result");
                return None;
            }
            // Paid once its proof checks, like any job; the release follows.
            match payments.settle(&job, WaitFor::Verified, deadline).await {
                Ok(rec) => {
                    cost_units = rec
                        .and_then(|r| r.payment)
                        .map_or(on.price, |p| p.amount_units);
                    if let Some(h) = hold {
                        h.spend(cost_units);
                    }
                }
                Err(e) => {
                    tracing::warn!(%job, provider = %provider.short(), error = %e, "a spot check run's payment did not check: the run does not count");
                    return None;
                }
            }
        }
        Some(Run {
            output: result.output.clone(),
            result,
            job,
            cost_units,
        })
    }

    /// End a paid check run's record that made no run that counts.
    fn end_check_job(&self, job: JobId, state: JobState, why: &str) {
        let res = self.ctx.jobs.transition(&job, Side::Requester, state, |r| {
            r.error = Some(why.to_string());
        });
        if let Err(e) = res {
            tracing::debug!(%job, error = %e, "cannot record the spot check run's end");
        }
    }
}
