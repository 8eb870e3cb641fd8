//! Job records, their state machine, and their persistence in SQLite (WAL) under
//! `EDGENT_DATA_DIR`, so `/jobs` and unfinished work survive a restart.
//!
//! Every change goes through [`JobStore::transition`], which refuses a move the machine
//! does not allow ([`JobState::can_move_to`]):
//!
//! | side | from | to |
//! |---|---|---|
//! | requester | `discovering` | `tasked`, `failed`, `timed_out`, `cancelled` |
//! | requester | `tasked` | `completed`, `failed`, `timed_out`, `cancelled` |
//! | provider | `running` | `completed`, `failed`, `cancelled` |
//! | local | `running` | `completed`, `failed`, `cancelled` |
//!
//! A `local` job is a front-door request the local Ollama answered
//! ([`crate::front`]): it never left this machine and has no peer and no payment.
//!
//! `cancelled` is the end of a job whose agent went away: the requester sent `task_cancel`
//! and the provider dropped its backend request. A paid requester job that ended
//! `failed`, `timed_out` or `cancelled` with its stake still open may still move to
//! `completed` when its result arrives late ([`JobRecord::can_move_to`]).
//!
//! # Layout
//!
//! - [`state`]: the side of a job, its states and their table of moves.
//! - [`asked`]: what a requester asked of a provider, kept so any result's receipt is
//!   checked against it, late ones too.
//! - [`attempt`]: one provider tried for a delegation, and what became of its stake.
//! - [`error_code`]: the API's error codes and a job record's `error_code`.
//! - [`pay`]: the money side of a paid job and its table of moves.
//! - [`pay_book`]: one side's writes of its payments, through the table of moves.
//! - [`record`]: one job as stored and shown, and what it records as its prompt.
//! - [`spot_check`]: what a requester's spot check of a job found.
//! - [`store`]: the SQLite table and its one write path.
//! - [`retention`]: how long a provider keeps other nodes' prompts.

pub mod asked;
pub mod attempt;
pub mod error_code;
pub mod pay;
pub mod pay_book;
pub mod record;
pub mod retention;
pub mod spot_check;
pub mod state;
pub mod store;

pub use asked::Asked;
pub use attempt::{Attempt, AttemptOutcome, AttemptStake, StakeOutcome};
pub use error_code::{ErrorCode, JobErrorCode};
pub use pay::{PayStatus, PaymentRecord};
pub use pay_book::PayBook;
pub use record::{
    now_ms, prompt_of, stored_prompt, JobRecord, Timings, CHAT_PROMPT_CHARS, STORED_PROMPT_BYTES,
};
pub use spot_check::{SpotCheck, SpotVerdict};
pub use state::{JobState, Side};
pub use store::{JobChanges, JobError, JobStore};

#[cfg(test)]
mod tests;
