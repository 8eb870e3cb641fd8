//! The attempts of one delegation: how each provider tried fared, for the answer's
//! `attempts` list and for the provider history ([`crate::mesh::history`]).

/// How one attempt at a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It answered with the result.
    Completed,
    /// Its queue was full.
    Busy,
    /// It does not serve the model (any more).
    ModelUnavailable,
    /// Its backend failed.
    InferenceFailed,
    /// It refused the task for another reason (stake, deadline, bad request).
    Refused,
    /// It acknowledged the task, then stopped sending heartbeats.
    Dead,
    /// The task was never acknowledged.
    Unreachable,
    /// The agent's deadline passed while it worked.
    Deadline,
    /// The agent went away and the job was cancelled (says nothing about the provider).
    Cancelled,
}

impl AttemptOutcome {
    /// The snake_case name, as in the answer's `attempts`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::ModelUnavailable => "model_unavailable",
            Self::InferenceFailed => "inference_failed",
            Self::Refused => "refused",
            Self::Dead => "dead",
            Self::Unreachable => "unreachable",
            Self::Deadline => "deadline",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job may move on to the next candidate after this.
    pub fn fails_over(&self) -> bool {
        matches!(
            self,
            Self::Busy
                | Self::ModelUnavailable
                | Self::InferenceFailed
                | Self::Dead
                | Self::Unreachable
        )
    }
}
