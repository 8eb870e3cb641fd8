//! How a failed delegation is told to the agent: a streamed answer cut short says why no
//! other provider restarts it, and a failed paid delegation says how many of its stakes
//! wait for their refund.

use crate::jobs::{Attempt, StakeOutcome};
use crate::request::DelegateError;

/// The error of a streamed job whose provider failed after part of its answer reached the
/// agent and no other provider continued it: the cause, and why the answer stops there.
pub(super) fn streamed_no_failover(fail: DelegateError) -> DelegateError {
    const WHY: &str =
        "the answer is cut short: part of it already reached the agent, and no other provider could continue it";
    match fail {
        DelegateError::NoProvider(mut u) => {
            u.note = Some(match u.note.take() {
                Some(n) => format!("{n}; {WHY}"),
                None => WHY.to_string(),
            });
            DelegateError::NoProvider(u)
        }
        DelegateError::ProviderFailed { code, message } => DelegateError::ProviderFailed {
            code,
            message: format!("{message}; {WHY}"),
        },
        other => other,
    }
}

/// A failed paid delegation says when stakes of its attempts are still locked (they are
/// refunded after their deadline; `/jobs` lists them), so the agent knows its money is
/// coming back.
pub(super) fn with_pending_stakes(e: DelegateError, attempts: &[Attempt]) -> DelegateError {
    let pending = attempts
        .iter()
        .filter(|a| {
            a.stake
                .as_ref()
                .is_some_and(|s| s.status == StakeOutcome::PendingRefund)
        })
        .count();
    if pending == 0 {
        return e;
    }
    let note = format!(
        "; {pending} stake(s) of this delegation are refunded after their deadline (see /jobs)"
    );
    match e {
        DelegateError::NoProvider(mut u) => {
            u.note = Some(match u.note.take() {
                Some(n) => format!("{n}{note}"),
                None => note.trim_start_matches("; ").to_string(),
            });
            DelegateError::NoProvider(u)
        }
        DelegateError::Deadline(m) => DelegateError::Deadline(m + &note),
        DelegateError::ProviderFailed { code, message } => DelegateError::ProviderFailed {
            code,
            message: message + &note,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axl::PeerKey;
    use crate::protocol::JobId;

    #[test]
    fn a_failed_paid_delegation_says_how_many_stakes_wait_for_their_refund() {
        let attempt = |stake: Option<StakeOutcome>| Attempt {
            provider: PeerKey([1; 32]),
            outcome: crate::request::AttemptOutcome::Dead,
            ms: 1,
            job_id: Some(JobId([2; 32])),
            stake: stake.map(|s| crate::request::AttemptStake {
                status: s,
                tx_hash: None,
                refund_after: Some(10),
            }),
        };
        let e = with_pending_stakes(
            DelegateError::Internal("gone".into()),
            &[attempt(Some(StakeOutcome::PendingRefund))],
        );
        assert_eq!(
            e.to_string(),
            "internal error: gone",
            "other errors are left alone"
        );
        let e = with_pending_stakes(
            DelegateError::Deadline("gone".into()),
            &[
                attempt(Some(StakeOutcome::PendingRefund)),
                attempt(Some(StakeOutcome::Refunded)),
                attempt(Some(StakeOutcome::PendingRefund)),
            ],
        );
        assert!(e.to_string().contains("gone; 2 stake(s)"), "{e}");
        let e = with_pending_stakes(
            DelegateError::Deadline("gone".into()),
            &[attempt(Some(StakeOutcome::NotStaked)), attempt(None)],
        );
        assert!(e.to_string().ends_with("gone"), "{e}");
        let e = with_pending_stakes(
            crate::request::Unserved::default().into(),
            &[attempt(Some(StakeOutcome::PendingRefund))],
        );
        match e {
            DelegateError::NoProvider(u) => assert_eq!(
                u.note.as_deref(),
                Some("1 stake(s) of this delegation are refunded after their deadline (see /jobs)")
            ),
            other => panic!("{other:?}"),
        }
    }
}
