//! The payment watcher: every `PAYMENT_TICK_MS` it reads the open payments from the job
//! table and moves each one along its timers, with the chain's own clock (so anvil's time
//! travel and a node's restart are handled alike):
//!
//! - requester: a stake interrupted mid-transaction is looked up, and so is the stake of a
//!   job that failed (a provider's `decline` ends it at once); a result whose proof is
//!   stored is verified; a failed release is retried; a result that failed its check is
//!   disputed once the provider submits (within the dispute window); after the stake's
//!   deadline, nothing submitted means `refund`.
//! - provider: a delivery interrupted before its proof is proved and sent; no
//!   `payment_confirmed` within the grace period means the result is sent again and the
//!   output hash submitted; at the end of the dispute window, undisputed, `finalize`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Chain, PaidProvider, PaidRequester};
use crate::jobs::{now_ms, JobStore, PayStatus, Side};

/// Run until cancelled. Either side may be absent (a provider-only node has no requester).
pub async fn run(
    jobs: Arc<JobStore>,
    chain: Arc<Chain>,
    requester: Option<Arc<PaidRequester>>,
    provider: Option<Arc<PaidProvider>>,
    tick: Duration,
    retry_after: Duration,
    cancel: CancellationToken,
) {
    loop {
        tick_once(
            &jobs,
            &chain,
            requester.as_ref(),
            provider.as_ref(),
            retry_after,
        )
        .await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    tracing::debug!("payment watcher stopped");
}

/// One pass over the open payments.
pub async fn tick_once(
    jobs: &JobStore,
    chain: &Chain,
    requester: Option<&Arc<PaidRequester>>,
    provider: Option<&Arc<PaidProvider>>,
    retry_after: Duration,
) {
    let req_open = match requester {
        Some(_) => jobs.open_payments(Side::Requester).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read open requester payments");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let prov_open = match provider {
        Some(_) => jobs.open_payments(Side::Provider).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read open provider payments");
            Vec::new()
        }),
        None => Vec::new(),
    };
    if req_open.is_empty() && prov_open.is_empty() {
        return;
    }
    let chain_now = match chain.escrow.chain_time().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "payment watcher cannot read the chain's time; retrying");
            return;
        }
    };
    let retry_ms = retry_after.as_millis() as u64;
    if let Some(r) = requester {
        for rec in req_open {
            let Some(pay) = &rec.payment else { continue };
            let job = rec.job_id;
            let stale = now_ms().saturating_sub(rec.updated_ms) >= retry_ms;
            match pay.status {
                PayStatus::Staking if chain_now > pay.stake_deadline => {
                    tokio::spawn(r.clone().unwind(job, chain_now));
                }
                PayStatus::Staking => {
                    r.check_staking(job).await;
                }
                PayStatus::Staked if chain_now > pay.stake_deadline => {
                    tokio::spawn(r.clone().unwind(job, chain_now));
                }
                PayStatus::Staked if rec.output.is_some() && pay.request.is_some() => {
                    tokio::spawn(r.clone().try_verify(job));
                }
                // The job failed after its stake landed (the provider declined it, say): the
                // chain shows the stake's end long before its deadline.
                PayStatus::Staked if rec.state.is_terminal() && rec.output.is_none() => {
                    r.check_staking(job).await;
                }
                PayStatus::Verified if stale => {
                    tokio::spawn(r.clone().settle(job));
                }
                PayStatus::Disputed if stale => {
                    tokio::spawn(r.clone().dispute(job));
                }
                _ => {}
            }
        }
    }
    if let Some(p) = provider {
        for rec in prov_open {
            tokio::spawn(p.clone().step(rec, chain_now));
        }
    }
}
