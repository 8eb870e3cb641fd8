//! At start, the open stakes of this node's wallet that its job table lost (a crash between
//! sending an authorization and committing its row, a lost data directory), found in the
//! escrow's `Staked` events and put back in the table so that the payment watcher ends each
//! one properly:
//!
//! - as the requester: the stake is recorded `staked` for a job that failed; the watcher
//!   refunds it after its deadline (nothing submitted), or records how it ended (a provider
//!   that submitted is paid by `finalize` after the window, as for any silent requester);
//! - as the provider: a stake still `Staked` is declined at once (the task is lost, so it
//!   can never be served: the requester is refunded in that transaction); a submitted one
//!   is recorded `submitted`, and the watcher finalizes it after the dispute window.

use crate::chain::{FairStatus, StakedEvent};
use crate::jobs::{JobRecord, JobState, PayStatus, PaymentRecord, Side};
use crate::protocol::JobId;

use super::{job_b256, Chain};
use crate::jobs::JobStore;

/// How far back the start looks for `Staked` events, in blocks: about 5.5 hours of Base's
/// 2-second blocks, longer than any stake's life (a job's deadline plus the dispute window),
/// and within the 10,000-block range public RPCs allow for one `eth_getLogs`.
pub const RECONCILE_LOOKBACK_BLOCKS: u64 = 9_999;

/// What [`reconcile`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Stakes found in the events for this wallet.
    pub seen: usize,
    /// Open stakes the job table lacked, now recorded for the watcher.
    pub recorded: usize,
    /// Of those, stakes this provider declined at once.
    pub declined: usize,
}

/// Put the open stakes of `chain.wallet` that `jobs` lacks back into it (see the module's
/// doc). `requester` and `provider` say which sides this node runs.
pub async fn reconcile(
    jobs: &JobStore,
    chain: &Chain,
    requester: bool,
    provider: bool,
) -> Result<Reconciled, crate::chain::EscrowError> {
    let found = chain
        .fair
        .staked_with(chain.wallet, RECONCILE_LOOKBACK_BLOCKS)
        .await?;
    let mut done = Reconciled {
        seen: found.len(),
        ..Reconciled::default()
    };
    for ev in found {
        let sides = [
            (Side::Requester, requester && ev.requester == chain.wallet),
            (Side::Provider, provider && ev.provider == chain.wallet),
        ];
        for (side, mine) in sides {
            if !mine {
                continue;
            }
            match one(jobs, chain, &ev, side).await {
                Ok(Outcome::Known) => {}
                Ok(Outcome::Recorded) => done.recorded += 1,
                Ok(Outcome::Declined) => {
                    done.recorded += 1;
                    done.declined += 1;
                }
                Err(e) => {
                    tracing::warn!(job = %ev.job_id, error = %e, "cannot reconcile this stake now; the next start tries again");
                }
            }
        }
    }
    if done.recorded > 0 {
        tracing::warn!(
            recorded = done.recorded,
            declined = done.declined,
            "open stakes the job table had lost were found in the escrow's Staked events"
        );
    }
    Ok(done)
}

enum Outcome {
    Known,
    Recorded,
    Declined,
}

async fn one(
    jobs: &JobStore,
    chain: &Chain,
    ev: &StakedEvent,
    side: Side,
) -> Result<Outcome, crate::chain::EscrowError> {
    let job = JobId(ev.job_id.0);
    if matches!(jobs.get(&job, side), Ok(Some(_))) {
        return Ok(Outcome::Known);
    }
    let stake = chain.fair.get_stake(job_b256(&job)).await?;
    if stake.status.is_final() || stake.status == FairStatus::None {
        return Ok(Outcome::Known);
    }
    let info = &stake.info;
    let mut rec = JobRecord::new(
        job,
        side,
        "",
        "(lost from the job table; found in the escrow's Staked events at start)",
        info.deadline.saturating_mul(1000),
    );
    rec.state = JobState::Failed;
    rec.error = Some("the job table had lost this job; its stake was found on chain".into());
    let amount = u64::try_from(info.amount).unwrap_or(u64::MAX);
    rec.price_units = Some(amount);
    let mut pay = PaymentRecord::new(
        PayStatus::Staked,
        chain.settings.chain_id,
        chain.escrow_hex(),
        amount,
        format!("{:#x}", info.provider),
        info.deadline,
    );
    let mut outcome = Outcome::Recorded;
    if side == Side::Provider {
        pay.status = PayStatus::Submitted;
        pay.submitted_at = Some(info.submitted_at);
        if stake.status == FairStatus::Staked {
            // The task is lost: it can never be served. The requester has its money back now.
            let tx = chain.fair.decline(job_b256(&job)).await?;
            tracing::info!(%job, %tx, "declined a stake the job table had lost: the requester is refunded");
            pay.status = PayStatus::Refunded;
            pay.tx_hash = Some(format!("{tx:#x}"));
            pay.explorer_url = Some(chain.escrow.tx_url(tx));
            outcome = Outcome::Declined;
        }
    }
    rec.payment = Some(pay);
    jobs.insert(&rec)
        .map_err(|e| crate::chain::EscrowError::Rpc(format!("recording the stake: {e}")))?;
    Ok(outcome)
}
