//! The side of a job and where it is in its life: [`JobState::can_move_to`] is the table
//! of moves, per side.

use serde::{Deserialize, Serialize};

/// Which side of the job this node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Side {
    /// We delegated it.
    Requester,
    /// We ran it for a peer.
    Provider,
    /// The front door served it with the local Ollama (never left this machine).
    Local,
}

impl Side {
    /// Lower-case name, as stored.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The side of a stored name.
    pub(super) fn parse(s: &str) -> Option<Side> {
        s.parse().ok()
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum JobState {
    /// Requester: asking the mesh who can run it.
    Discovering,
    /// Requester: task sent to the chosen provider, awaiting the result.
    Tasked,
    /// Provider: inference under way.
    Running,
    /// Result delivered (provider) or received (requester).
    Completed,
    /// Ended without a result.
    Failed,
    /// The deadline passed without a result.
    TimedOut,
    /// The agent went away: the requester cancelled the job and the provider stopped.
    Cancelled,
}

impl JobState {
    /// Every state, for zeroed metrics.
    pub const ALL: [JobState; 7] = [
        JobState::Discovering,
        JobState::Tasked,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    /// Lower-case name, as stored and shown.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The state of a stored name.
    pub(super) fn parse(s: &str) -> Option<JobState> {
        s.parse().ok()
    }

    /// Whether the job is over.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::TimedOut | JobState::Cancelled
        )
    }

    /// Whether `self -> to` is a move the machine allows for `side`.
    pub fn can_move_to(&self, side: Side, to: JobState) -> bool {
        use JobState::*;
        match side {
            Side::Requester => matches!(
                (self, to),
                (Discovering, Tasked | Failed | TimedOut | Cancelled)
                    | (Tasked, Completed | Failed | TimedOut | Cancelled)
            ),
            Side::Provider | Side::Local => {
                matches!((self, to), (Running, Completed | Failed | Cancelled))
            }
        }
    }

    /// The state a new job of `side` starts in.
    pub fn initial(side: Side) -> JobState {
        match side {
            Side::Requester => JobState::Discovering,
            Side::Provider | Side::Local => JobState::Running,
        }
    }
}
