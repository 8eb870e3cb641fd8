//! How a provider's job whose stake it accepted ended, as the payment watcher decides what
//! to do with the stake: prove an output that left, decline the stake of a job that failed
//! before any output (the requester is refunded at once), or leave to the requester's
//! refund a job the daemon's stop interrupted.

use crate::jobs::{JobErrorCode, JobRecord, JobState};

/// How a job whose stake was accepted ended, for the watcher: `None` while it runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EndedUnpaid {
    /// Completed, or stopped after part of its output left: proved and asked to be paid.
    OutputLeft,
    /// Failed or cancelled before any output left: its stake is declined.
    NoOutput,
    /// The daemon stopped while it ran: whether output left is unknown, so it is neither
    /// proved nor declined (the requester's refund after the deadline ends it).
    Unknown,
}

/// How `rec` ended; `None` while it runs.
pub(super) fn ended_unpaid(rec: &JobRecord) -> Option<EndedUnpaid> {
    match rec.state {
        JobState::Running => None,
        JobState::Completed => Some(EndedUnpaid::OutputLeft),
        _ if rec.output.is_some() => Some(EndedUnpaid::OutputLeft),
        _ if rec.error_code == Some(JobErrorCode::Interrupted) => Some(EndedUnpaid::Unknown),
        _ => Some(EndedUnpaid::NoOutput),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Side;
    use crate::protocol::JobId;

    fn record(state: JobState, output: Option<&str>, code: Option<JobErrorCode>) -> JobRecord {
        let mut r = JobRecord::new(JobId::new(), Side::Provider, "m", "p", u64::MAX);
        r.state = state;
        r.output = output.map(str::to_string);
        r.error_code = code;
        r
    }

    #[test]
    fn a_failure_before_any_output_is_declined_and_an_output_that_left_is_proved() {
        use crate::protocol::TaskErrorCode;
        use EndedUnpaid::*;
        let failed = Some(JobErrorCode::Provider(TaskErrorCode::InferenceFailed));
        let cases = [
            (record(JobState::Running, None, None), None),
            (
                record(JobState::Completed, Some("x"), None),
                Some(OutputLeft),
            ),
            (
                record(JobState::Failed, Some("x"), Some(JobErrorCode::Undelivered)),
                Some(OutputLeft),
            ),
            (
                record(JobState::Cancelled, Some("part"), None),
                Some(OutputLeft),
            ),
            (record(JobState::Failed, None, failed), Some(NoOutput)),
            (record(JobState::Cancelled, None, None), Some(NoOutput)),
            (
                record(JobState::Failed, None, Some(JobErrorCode::Interrupted)),
                Some(Unknown),
            ),
        ];
        for (rec, want) in cases {
            assert_eq!(
                ended_unpaid(&rec),
                want,
                "{:?} {:?}",
                rec.state,
                rec.error_code
            );
        }
    }
}
