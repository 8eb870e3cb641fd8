//! Delegation, the requester's side: discover -> (begin) -> task -> result (-> settle).
//!
//! `/delegate` calls [`Requester::delegate`]. It asks every node the topology knows
//! (`resource_request`), collects `resource_ad`s for a short window, picks the best by
//! model, price, free memory and load ([`discovery`]), sends the `task`, and waits for the
//! `task_result` or `task_error` until the deadline ([`attempt`]). The router feeds ads and
//! results in through the `on_*` methods; each checks that the sender is the node the job
//! was given to. [`events`] runs a delegation as a stream of events for the front door.
//!
//! Money is called at three fixed points of the loop over candidates
//! ([`crate::paid::RequesterPayments`]): `begin` before the task is sent (the stake), `end`
//! after a failed attempt (what became of its stake), and `settle` once a provider
//! answered (the proof checked, the stake released).
//!
//! Failover: one attempt loop for unpaid and paid jobs. A failed attempt hands the job to
//! the next candidate within the same deadline. Paid attempts after the first run under a
//! fresh job id with their own stake (an escrow stake names one job id and one provider);
//! the failed attempt's record points to the next (`moved_to`), and what became of its
//! stake (declined and refunded, pending refund after its deadline, never made) is read
//! from the chain and listed in the answer's `attempts`.
//!
//! Every result's signed receipt is checked against what the attempt asked ([`attempt`]),
//! and a sample is re-run elsewhere ([`spot_check`]), each run one task to one provider
//! ([`check_run`]), a paid job of its own when payments are on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::ctx::NodeCtx;
use crate::jobs::{now_ms, JobRecord, JobState, Side, Timings};
use crate::paid::{Begin, BeginError, PaymentSwitch, RequesterPayments};
use crate::protocol::{JobId, Message, ResourceAd, Task, TaskErrorCode, TaskResult};
use crate::request::{
    Attempt, DelegateError, DelegateRequest, DelegateResponse, PaymentSummary, ProviderInfo,
    ValidRequest, WaitFor,
};
use crate::stream::{ChunkRegistry, Retry, StreamEvent};

mod attempt;
pub mod budget;
mod check_run;
mod discovery;
pub mod events;
pub mod evidence;
mod failure;
pub mod rescue;
pub mod spot_check;

use attempt::{AttemptEnd, Waiter};
use discovery::Tally;
use failure::{streamed_no_failover, with_pending_stakes};

/// The requester side of a node.
pub struct Requester {
    ctx: Arc<NodeCtx>,
    /// Which payments side is in use; read once per delegation.
    payments: Arc<PaymentSwitch>,
    /// Discoveries under way: where the answers to their request go (to be counted).
    discoveries: Mutex<HashMap<Uuid, mpsc::Sender<ResourceAd>>>,
    waiting: Mutex<HashMap<JobId, Waiter>>,
    /// Streamed jobs: where their `task_chunk`s go (see [`crate::stream`]).
    chunks: ChunkRegistry,
    /// Paid delegations that failed over: their first job id -> the current attempt's.
    current: Mutex<HashMap<JobId, JobId>>,
    /// Jobs seen per provider, for the spot checks of its first jobs (bounded).
    checked: Mutex<HashMap<crate::axl::PeerKey, u32>>,
    /// Providers a spot check caught: given no more jobs (bounded).
    caught: Mutex<std::collections::HashSet<crate::axl::PeerKey>>,
    /// Evidence of caught providers received from other nodes ([`evidence`]).
    evidence: evidence::EvidenceBook,
    /// The agent's spend budget ([`budget`]).
    budget: budget::SpendBudget,
    /// Results a delegation holds while it checks them ([`attempt::InHand`]).
    in_hand: Mutex<std::collections::HashSet<JobId>>,
}

/// Removes a discovery's or a job's entry from its map however the delegation ends.
struct Unregister<'a> {
    req: &'a Requester,
    request_id: Uuid,
    job_id: JobId,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.req.discoveries.lock().remove(&self.request_id);
        let current = self.req.current.lock().remove(&self.job_id);
        for job in std::iter::once(self.job_id).chain(current) {
            self.req.waiting.lock().remove(&job);
            self.req.chunks.remove(&job);
        }
    }
}

impl Requester {
    /// How many streamed jobs this requester holds now (`/status`'s `streams_open`: 0 when
    /// no delegation runs).
    pub fn streams_open(&self) -> usize {
        self.chunks.len()
    }

    /// A requester over the shared node state.
    pub fn new(ctx: Arc<NodeCtx>, payments: Arc<PaymentSwitch>) -> Self {
        let d = &ctx.config.delegation;
        let budget = budget::SpendBudget::new(d.spend_budget_units, d.spend_budget_period);
        Requester {
            budget,
            ctx,
            payments,
            discoveries: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            chunks: ChunkRegistry::default(),
            current: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
            caught: Mutex::new(std::collections::HashSet::new()),
            evidence: evidence::EvidenceBook::default(),
            in_hand: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Run one delegation to its end. The job is recorded whatever happens.
    pub async fn delegate(&self, req: DelegateRequest) -> Result<DelegateResponse, DelegateError> {
        if !self.ctx.config.node.role.requests() {
            return Err(DelegateError::BadInput(format!(
                "this node's EDGENT_ROLE is {}: it does not delegate",
                self.ctx.config.node.role.as_str()
            )));
        }
        let started = Instant::now();
        let req = req.validate(&self.ctx.config)?;
        // The payments side in use now serves the whole delegation.
        let payments = self.payments.requester();
        if req.unpaid_only && payments.paid() {
            return Err(DelegateError::Unauthorized(
                crate::request::SPEND_NEEDS_TOKEN,
            ));
        }
        // A paid delegation's hold on the agent's budget (taken once its candidates are
        // known, in `run`).
        let mut hold = None;
        let job_id = JobId::new();
        let deadline = started + req.timeout;
        let deadline_ms = now_ms() + req.timeout.as_millis() as u64;
        self.ctx.jobs.insert(&JobRecord::new(
            job_id,
            Side::Requester,
            &req.model,
            &crate::jobs::prompt_of(&req.prompt, req.messages.as_deref()),
            deadline_ms,
        ))?;
        let request_id = Uuid::new_v4();
        let _unregister = Unregister {
            req: self,
            request_id,
            job_id,
        };

        let result = self
            .run(
                &mut hold,
                payments.as_ref(),
                job_id,
                request_id,
                &req,
                deadline,
                deadline_ms,
                started,
            )
            .await;
        if let Some(r) = hold {
            r.spend(spent_units(&result));
        }
        let total_ms = started.elapsed().as_millis() as u64;
        self.ctx
            .metrics
            .delegation_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e @ DelegateError::ProofInvalid(_)) = &result {
            // The job has its output; its payment record says what became of the money.
            tracing::warn!(job = %job_id, error = %e, "delegation answered without a verified proof");
        } else if let Err(e) = &result {
            // A paid delegation that failed over ends on its last attempt's record.
            let job_id = self.current_job(&job_id);
            let state = match e {
                DelegateError::Deadline(_) => JobState::TimedOut,
                DelegateError::Cancelled(_) => JobState::Cancelled,
                _ => JobState::Failed,
            };
            let code = e.job_error_code();
            let msg = e.to_string();
            let res = self
                .ctx
                .jobs
                .transition(&job_id, Side::Requester, state, |r| {
                    r.error_code = Some(code);
                    r.error = Some(msg);
                    r.timings.total_ms = Some(total_ms);
                });
            if let Err(err) = res {
                tracing::warn!(job = %job_id, error = %err, "cannot record the failed job");
            }
            tracing::warn!(job = %job_id, error = %e, "delegation failed");
        }
        result
    }

    /// Discover, then give the task to the candidates in turn, calling `payments` at its
    /// three points: `begin`, `end` of a failed attempt, `settle` of an answer.
    #[allow(clippy::too_many_arguments)]
    async fn run<'a>(
        &'a self,
        hold: &mut Option<budget::Reservation<'a>>,
        payments: &dyn RequesterPayments,
        job_id: JobId,
        request_id: Uuid,
        req: &ValidRequest,
        deadline: Instant,
        deadline_ms: u64,
        started: Instant,
    ) -> Result<DelegateResponse, DelegateError> {
        let model = req.model.as_str();
        // The model as the `no_provider` answer names it: with its digest when pinned.
        let shown = crate::protocol::show_pin(model, req.model_digest.as_deref());
        // What every node said, for the one `no_provider` answer.
        let mut tally = Tally::default();
        // 1. Discover (from the ad cache, or asking the mesh): the ads that fit, best
        // first (a provider whose proof failed here last; paid jobs need a wallet).
        let candidates = self
            .discover(request_id, req, payments.paid(), deadline, &mut tally)
            .await?;
        let discover_ms = started.elapsed().as_millis() as u64;
        if candidates.is_empty() {
            return Err(tally.unserved(&shown, None, None).into());
        }
        // 1b. A paid delegation holds the most it can pay (the dearest candidate's price:
        // only one attempt is paid, the stakes of failed ones are refunded) on the agent's
        // budget, or is refused before any stake.
        if payments.paid() {
            let most = candidates.iter().map(|a| a.price).max().unwrap_or(0);
            *hold = Some(self.budget.reserve(most).map_err(|e| {
                tracing::warn!(job = %job_id, detail = %e.detail, "paid delegation refused: spend budget");
                DelegateError::BudgetExhausted {
                    detail: e.detail,
                    retry_after_secs: e.retry_after_secs,
                }
            })?);
        }
        tracing::info!(job = %job_id, candidates = candidates.len(), discover_ms, "providers found");

        // 2. Give the task to the candidates in turn until one answers: a provider that
        // is busy, fails, stops sending heartbeats or never acknowledges the task hands
        // the job to the next, within the same deadline. A paid attempt's stake names its
        // provider and its job id, so each paid attempt after the first runs under a fresh
        // job id with its own stake; the failed one's stake was declined (refunded at
        // once) or is refunded after its deadline by the payment watcher.
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut last_fail: Option<DelegateError> = None;
        // A provider that could not be paid (its ad's fault): the answer if none was tried.
        let mut payment_fail: Option<DelegateError> = None;
        let mut busy_retry_ms: Option<u64> = None;
        let mut all_busy = true;
        let mut tasked = false;
        let mut attempt_job = job_id;
        let pool = candidates.clone();
        // A streamed answer that broke mid-way goes on at the next candidate ([`rescue`]).
        let orig = req;
        let mut saved = rescue::Rescue::default();
        let mut continued: Option<Arc<ValidRequest>> = None;
        for ad in candidates {
            if Instant::now() >= deadline {
                break;
            }
            let now_req = continued.clone();
            let req = now_req.as_deref().unwrap_or(orig);
            let provider = ad.node_id;
            if self.is_caught(&provider) {
                continue;
            }
            // 2a. Payments begin the attempt: its job id (a paid failover's is fresh) and
            // its stake.
            let begun = payments
                .begin(&Begin {
                    job_id: attempt_job,
                    tried: tasked,
                    ad: &ad,
                    req,
                    deadline,
                    deadline_ms,
                    discover_ms,
                })
                .await;
            let now_job = match &begun {
                Ok(b) => b.job_id,
                Err(e) => e.job_id,
            };
            if now_job != attempt_job {
                // The failed attempt's stream is done with (its text, if any, was read at
                // its end); the delegation's own id and its last attempt's go on drop.
                if attempt_job != job_id {
                    self.chunks.remove(&attempt_job);
                }
                attempt_job = now_job;
                tasked = false;
                self.current.lock().insert(job_id, attempt_job);
            }
            let stake = match begun {
                Ok(b) => b.stake,
                Err(BeginError { error, .. }) if error.is_provider_fault() => {
                    tracing::warn!(job = %attempt_job, provider = %provider.short(), error = %error, "this provider cannot be paid: trying the next");
                    payment_fail = Some(error.into());
                    continue;
                }
                Err(BeginError { error, .. }) => {
                    if error.may_have_locked() {
                        tracing::warn!(job = %attempt_job, error = %error, "the stake may still land: the payment watcher unwinds it");
                    }
                    return Err(error.into());
                }
            };
            let task = Message::Task(Task {
                job_id: attempt_job,
                model: model.to_string(),
                prompt: req.prompt.clone(),
                options: req.options.clone(),
                stake,
                deadline_ms,
                sender_ens: self.ctx.config.node.ens_name.clone(),
                messages: req.messages.clone(),
                stream: req.sink.is_some(),
                model_digest: req.model_digest.clone(),
            });
            if let Some(sink) = &req.sink {
                self.chunks.register(attempt_job, provider, sink.clone());
                let _ = sink.events.send(StreamEvent::Started {
                    job_id: attempt_job,
                    provider: ProviderInfo {
                        node_id: provider,
                        ens: ad.ens.clone(),
                        wallet: ad.wallet.clone(),
                    },
                });
                if self.chunks.cancelled(&job_id) {
                    return Err(DelegateError::Cancelled("the agent went away".into()));
                }
            }
            let asked = attempt::asked_of(&ad, req);
            let record = |r: &mut JobRecord| {
                r.asked = Some(asked.clone());
                r.peer = Some(provider);
                r.peer_ens = ad.ens.clone();
                r.peer_wallet = ad.wallet.clone();
                r.price_units = Some(ad.price);
                r.timings.discover_ms = Some(discover_ms);
            };
            if tasked {
                self.ctx
                    .jobs
                    .update(&attempt_job, Side::Requester, record)?;
            } else {
                self.ctx.jobs.transition(
                    &attempt_job,
                    Side::Requester,
                    JobState::Tasked,
                    record,
                )?;
                tasked = true;
            }
            tracing::info!(job = %attempt_job, provider = %provider.short(), ens = ?ad.ens, attempt = attempts.len() + 1, "task sent");

            // 2b. The attempt: wait for the outcome, watching the provider's heartbeats, and
            // check a result's signed receipt against what was asked.
            tally.asked(&provider);
            let t0 = Instant::now();
            let (mut end, _held) = self
                .attempt(
                    attempt_job,
                    provider,
                    (&task, model),
                    Some(&asked),
                    deadline,
                )
                .await;
            // 2b'. A sampled result is spot-checked on another provider.
            if let AttemptEnd::Result(r) = &end {
                if self.wants_check(&provider) {
                    if let Some(why) = self
                        .spot_check(attempt_job, &ad, req, r, &pool, payments, deadline)
                        .await
                    {
                        end = AttemptEnd::Caught(why);
                    }
                }
            }
            let outcome = end.outcome();
            self.record_attempt(&provider, outcome, t0.elapsed());
            attempts.push(Attempt {
                provider,
                outcome,
                ms: t0.elapsed().as_millis() as u64,
                job_id: Some(attempt_job),
                stake: None,
            });
            let who = ad.ens.clone().unwrap_or_else(|| provider.short());
            let fail = match end {
                AttemptEnd::Result(r) => {
                    return self
                        .finish(
                            payments,
                            attempt_job,
                            &ad,
                            *r,
                            req.wait,
                            deadline,
                            started,
                            discover_ms,
                            attempts,
                        )
                        .await
                        .map(|mut res| {
                            res.output = saved.output(res.output);
                            res
                        })
                }
                AttemptEnd::Deadline => Some(DelegateError::Deadline(format!(
                    "no result from {who} before the deadline"
                ))),
                AttemptEnd::Error(e) if e.code == TaskErrorCode::DeadlineTooClose => {
                    tally.answered(&provider, Some(outcome.as_str()));
                    Some(DelegateError::Deadline(format!(
                        "{who} cannot meet the deadline: {}",
                        e.message
                    )))
                }
                AttemptEnd::Error(e) if e.code == TaskErrorCode::Cancelled => {
                    return Err(DelegateError::Cancelled(format!(
                        "the agent went away and {who} stopped: {}",
                        e.message
                    )))
                }
                AttemptEnd::Error(e) => {
                    tally.answered(&provider, Some(outcome.as_str()));
                    if e.code == TaskErrorCode::Busy {
                        busy_retry_ms = busy_retry_ms.max(Some(e.retry_after_ms.unwrap_or(1_000)));
                    } else {
                        all_busy = false;
                    }
                    Some(DelegateError::from_task_error(e.code, e.status, e.message))
                }
                AttemptEnd::Caught(why) => {
                    all_busy = false;
                    tally.answered(&provider, Some(outcome.as_str()));
                    Some(DelegateError::Caught(format!("{who} was not paid: {why}")))
                }
                AttemptEnd::EmptyOutput => {
                    all_busy = false;
                    tally.answered(&provider, Some(outcome.as_str()));
                    Some(DelegateError::ProviderFailed {
                        code: TaskErrorCode::InferenceFailed,
                        message: format!("{who} returned an empty output: refused, not paid"),
                    })
                }
                AttemptEnd::BadReceipt(why) => {
                    all_busy = false;
                    tally.answered(&provider, Some(outcome.as_str()));
                    Some(DelegateError::ReceiptInvalid(format!(
                        "{who} was not paid: {why}"
                    )))
                }
                AttemptEnd::Dead => {
                    all_busy = false;
                    tally.answered(&provider, Some(outcome.as_str()));
                    None
                }
                AttemptEnd::Unreachable(why) => {
                    all_busy = false;
                    tally.failed(&provider);
                    tracing::debug!(job = %attempt_job, provider = %provider.short(), %why, "task not acknowledged");
                    None
                }
            };
            // A streamed job whose text already reached the agent, or whose agent went
            // away, goes to no other provider (see crate::stream).
            let why = fail
                .as_ref()
                .map_or_else(|| outcome.as_str().to_string(), |f| f.to_string());
            match self.chunks.end_attempt(&attempt_job) {
                Retry::Allowed => {}
                Retry::Cancelled => {
                    return Err(DelegateError::Cancelled(format!(
                        "the agent went away ({why})"
                    )))
                }
                Retry::Streamed if rescue::rescues(outcome) => {
                    let text = self.chunks.streamed_text(&attempt_job);
                    tracing::warn!(job = %attempt_job, provider = %provider.short(), error = %why, delivered = text.len(), "the answer broke mid-stream: the next provider continues it");
                    continued = Some(Arc::new(saved.broke(orig, &text)));
                }
                Retry::Streamed if outcome.fails_over() => {
                    tracing::warn!(job = %attempt_job, provider = %provider.short(), error = %why, "part of the answer already reached the agent: no failover");
                    let fail = fail.unwrap_or_else(|| {
                        tally
                            .unserved(&shown, None, Some(format!("{who}: {why}")))
                            .into()
                    });
                    return Err(with_pending_stakes(streamed_no_failover(fail), &attempts));
                }
                Retry::Streamed => {}
            }
            // 2c. Payments end the failed attempt: what became of its stake.
            let stake = payments.end(&attempt_job, &provider, outcome).await;
            if let Some(last) = attempts.last_mut() {
                last.stake = stake;
            }
            self.note_attempts(&attempt_job, &attempts);
            if !outcome.fails_over() {
                let fail = fail.unwrap_or_else(|| tally.unserved(&shown, None, None).into());
                return Err(with_pending_stakes(saved.failed(fail), &attempts));
            }
            tracing::warn!(job = %attempt_job, provider = %provider.short(), outcome = outcome.as_str(), error = %why, "trying the next provider");
            if fail.is_some() {
                last_fail = fail;
            }
        }
        if attempts.is_empty() {
            if let Some(fail) = payment_fail {
                return Err(fail);
            }
        }
        if attempts.is_empty() || Instant::now() >= deadline {
            let fail = DelegateError::Deadline(format!(
                "deadline passed after {} attempt(s)",
                attempts.len()
            ));
            return Err(with_pending_stakes(saved.failed(fail), &attempts));
        }
        // One provider that failed the job: its own reason (502). Otherwise what every
        // node said (503), with `Retry-After` when they were all busy.
        if attempts.len() == 1 && !all_busy {
            if let Some(
                fail @ (DelegateError::ProviderFailed { .. }
                | DelegateError::ReceiptInvalid(_)
                | DelegateError::Caught(_)),
            ) = last_fail
            {
                return Err(with_pending_stakes(saved.failed(fail), &attempts));
            }
        }
        let retry = busy_retry_ms
            .filter(|_| all_busy)
            .map(|ms| ms.div_ceil(1000).max(1));
        Err(with_pending_stakes(
            saved.failed(tally.unserved(&shown, retry, None).into()),
            &attempts,
        ))
    }

    /// Keep the attempts so far on the attempt's job record (`/jobs` shows them).
    fn note_attempts(&self, job: &JobId, attempts: &[Attempt]) {
        let res = self.ctx.jobs.update(job, Side::Requester, |r| {
            r.attempts = attempts.to_vec();
        });
        if let Err(e) = res {
            tracing::warn!(%job, error = %e, "cannot record the attempts");
        }
    }

    /// The job id a delegation that started as `root` runs under now (paid failover
    /// gives each attempt its own).
    fn current_job(&self, root: &JobId) -> JobId {
        self.current.lock().get(root).copied().unwrap_or(*root)
    }

    /// The provider answered: record the result, let payments settle it (2d), answer.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        payments: &dyn RequesterPayments,
        job_id: JobId,
        ad: &ResourceAd,
        r: TaskResult,
        wait: WaitFor,
        deadline: Instant,
        started: Instant,
        discover_ms: u64,
        attempts: Vec<Attempt>,
    ) -> Result<DelegateResponse, DelegateError> {
        let provider = ad.node_id;
        let total_ms = started.elapsed().as_millis() as u64;
        // A streamed answer's first text; one sent whole reaches the agent all at once.
        let first_token_ms = self.chunks.first_delta(&job_id).map_or(total_ms, |t| {
            t.saturating_duration_since(started).as_millis() as u64
        });
        let mut timings = Timings {
            discover_ms: Some(discover_ms),
            inference_ms: Some(r.usage.inference_ms),
            first_token_ms: Some(first_token_ms),
            total_ms: Some(total_ms),
            ..Timings::default()
        };
        let output = r.output.clone();
        let usage = r.usage.clone();
        let t = timings.clone();
        let tried = attempts.clone();
        let rec =
            self.ctx
                .jobs
                .transition(&job_id, Side::Requester, JobState::Completed, |rec| {
                    rec.output = Some(output);
                    rec.usage = Some(usage);
                    rec.attempts = tried;
                    let stake_ms = rec.timings.stake_ms;
                    rec.timings = t;
                    rec.timings.stake_ms = stake_ms;
                })?;
        timings.stake_ms = rec.timings.stake_ms;
        let (mut proof_verified, mut payment) = (None, None);
        if let Some(rec) = payments.settle(&job_id, wait, deadline).await? {
            let total_ms = started.elapsed().as_millis() as u64;
            let rec = self
                .ctx
                .jobs
                .update(&job_id, Side::Requester, |r| {
                    r.timings.total_ms = Some(total_ms)
                })
                .unwrap_or(rec);
            timings = rec.timings.clone();
            if let Some(p) = rec.payment {
                proof_verified = p.proof_verified;
                payment = Some(PaymentSummary {
                    status: p.status.as_str().to_string(),
                    amount_units: p.amount_units,
                    stake_tx: p.stake_tx,
                    tx_hash: p.tx_hash,
                    explorer_url: p.explorer_url,
                });
            }
        }
        tracing::info!(job = %job_id, total_ms = timings.total_ms, attempts = attempts.len(), "delegation completed");
        Ok(DelegateResponse {
            job_id,
            provider: ProviderInfo {
                node_id: provider,
                ens: ad.ens.clone(),
                wallet: ad.wallet.clone(),
            },
            output: r.output,
            tool_calls: r.tool_calls,
            usage: r.usage,
            timings,
            proof_verified,
            payment,
            attempts,
        })
    }
}

/// What a delegation paid, for the budget: its payment's amount unless it was refunded or
/// never made (a failed delegation's stakes are refunded).
fn spent_units(result: &Result<DelegateResponse, DelegateError>) -> u64 {
    match result {
        Ok(r) => r.payment.as_ref().map_or(0, |p| match p.status.as_str() {
            "rejected" | "refunded" | "unwound" => 0,
            _ => p.amount_units,
        }),
        Err(_) => 0,
    }
}
