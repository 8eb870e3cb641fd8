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
//!
//! `cancelled` is the end of a job whose agent went away: the requester sent `task_cancel`
//! and the provider dropped its backend request. A paid requester job that ended
//! `failed`, `timed_out` or `cancelled` with its stake still open may still move to
//! `completed` when its result arrives late ([`JobRecord::can_move_to`]).

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::axl::PeerKey;
use crate::protocol::{ChatMessage, JobId, Usage};

/// Which side of the job this node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// We delegated it.
    Requester,
    /// We ran it for a peer.
    Provider,
}

impl Side {
    /// Lower-case name, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Requester => "requester",
            Side::Provider => "provider",
        }
    }
    fn parse(s: &str) -> Option<Side> {
        match s {
            "requester" => Some(Side::Requester),
            "provider" => Some(Side::Provider),
            _ => None,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
        match self {
            JobState::Discovering => "discovering",
            JobState::Tasked => "tasked",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
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
            Side::Provider => matches!((self, to), (Running, Completed | Failed | Cancelled)),
        }
    }

    /// The state a new job of `side` starts in.
    pub fn initial(side: Side) -> JobState {
        match side {
            Side::Requester => JobState::Discovering,
            Side::Provider => JobState::Running,
        }
    }
}

/// How long each phase took, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Finding a provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover_ms: Option<u64>,
    /// Inference on the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_ms: Option<u64>,
    /// Locking the payment in the escrow (approve when needed, then stake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_ms: Option<u64>,
    /// Provider: proving. Requester: from the result to the proof's arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prove_ms: Option<u64>,
    /// Checking the commitments and the Groth16 proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_ms: Option<u64>,
    /// From the verified proof to the confirmed release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
    /// End to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
}

/// Where the money of a paid job is. Requester: `staking -> staked -> verified ->
/// released`, or `disputed -> rejected`, or `refunded` after the deadline, or `unwound`
/// when the stake never landed. Provider: `accepted -> delivered -> (submitted ->)
/// released | claimed`, or `rejected` / `refunded` when the requester took it back, or
/// `abandoned` when the job died before delivery. [`PayStatus::can_move_to`] is the
/// table, and [`JobStore::advance`] the one way a stored payment moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayStatus {
    /// Requester: the stake transaction is being sent.
    Staking,
    /// Requester: the stake is locked; waiting for the result and its proof.
    Staked,
    /// Requester: the proof checked; the release is under way.
    Verified,
    /// Requester: the proof failed; the operator is asked to reject.
    Disputed,
    /// Provider: the stake checked out; the work is under way.
    Accepted,
    /// Provider: result and payment request sent; waiting to be paid.
    Delivered,
    /// Provider: the output hash is on chain; claimable after the claim delay.
    Submitted,
    /// The provider was paid by the operator's release.
    Released,
    /// The provider took the stake after the claim delay.
    Claimed,
    /// The operator refunded the requester (failed proof).
    Rejected,
    /// The requester took the stake back after the deadline.
    Refunded,
    /// Requester: the stake never landed; nothing is locked.
    Unwound,
    /// Provider: the job died before delivery; the requester's refund ends it.
    Abandoned,
}

impl PayStatus {
    /// Every status.
    pub const ALL: [PayStatus; 13] = [
        PayStatus::Staking,
        PayStatus::Staked,
        PayStatus::Verified,
        PayStatus::Disputed,
        PayStatus::Accepted,
        PayStatus::Delivered,
        PayStatus::Submitted,
        PayStatus::Released,
        PayStatus::Claimed,
        PayStatus::Rejected,
        PayStatus::Refunded,
        PayStatus::Unwound,
        PayStatus::Abandoned,
    ];

    /// Lower-case name, as stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            PayStatus::Staking => "staking",
            PayStatus::Staked => "staked",
            PayStatus::Verified => "verified",
            PayStatus::Disputed => "disputed",
            PayStatus::Accepted => "accepted",
            PayStatus::Delivered => "delivered",
            PayStatus::Submitted => "submitted",
            PayStatus::Released => "released",
            PayStatus::Claimed => "claimed",
            PayStatus::Rejected => "rejected",
            PayStatus::Refunded => "refunded",
            PayStatus::Unwound => "unwound",
            PayStatus::Abandoned => "abandoned",
        }
    }

    /// Whether `self -> next` is a move the payment machine allows. A status belongs to
    /// one side (requester: staking, staked, verified, disputed, unwound; provider:
    /// accepted, delivered, submitted, abandoned), and moves never cross sides or go back.
    /// The chain is the source of truth, so an open status may always record how the
    /// escrow says the stake ended (released, claimed, rejected, refunded), except where
    /// the escrow itself cannot get there (a submitted stake is never refunded). A
    /// settled status never moves again.
    pub fn can_move_to(&self, next: PayStatus) -> bool {
        use PayStatus::*;
        let ended_on_chain = matches!(next, Released | Claimed | Rejected | Refunded);
        match self {
            Staking => matches!(next, Staked | Unwound) || ended_on_chain,
            Staked => matches!(next, Verified | Disputed) || ended_on_chain,
            Verified | Disputed => ended_on_chain,
            Accepted => matches!(next, Delivered | Abandoned) || ended_on_chain,
            Delivered => matches!(next, Submitted | Abandoned) || ended_on_chain,
            Submitted => matches!(next, Released | Claimed | Rejected),
            Released | Claimed | Rejected | Refunded | Unwound | Abandoned => false,
        }
    }

    /// Whether the daemon still has something to do (or wait for) about this money.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            PayStatus::Staking
                | PayStatus::Staked
                | PayStatus::Verified
                | PayStatus::Disputed
                | PayStatus::Accepted
                | PayStatus::Delivered
                | PayStatus::Submitted
        )
    }
}

/// The money side of a paid job, persisted with it so every stake ends even across
/// restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// Where the money is.
    pub status: PayStatus,
    /// EIP-155 chain id of the escrow.
    pub chain_id: u64,
    /// Escrow address.
    pub escrow: String,
    /// Staked amount, USDC base units.
    pub amount_units: u64,
    /// The provider's wallet (the stake's payee).
    pub pay_to: String,
    /// The stake transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_tx: Option<String>,
    /// The stake's deadline, unix seconds of chain time.
    pub stake_deadline: u64,
    /// The output commitment (the escrow's `outputHash`), `0x` + 64 hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_commitment: Option<String>,
    /// Requester: whether the provider's proof checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_verified: Option<bool>,
    /// The transaction that settled the stake (release, reject, refund or claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Explorer link for `tx_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer_url: Option<String>,
    /// Provider: the `submit` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_tx: Option<String>,
    /// Provider: chain time of the `submit`, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<u64>,
    /// Provider: when the result was delivered, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
    /// Provider: the payment request sent (kept to send again). Requester: one received
    /// before the result it proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::protocol::PaymentRequest>,
    /// Why the last money step failed or the proof was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PaymentRecord {
    /// A payment in `status` for a stake of `amount_units` to `pay_to`, nothing else known yet.
    pub fn new(
        status: PayStatus,
        chain_id: u64,
        escrow: String,
        amount_units: u64,
        pay_to: String,
        stake_deadline: u64,
    ) -> Self {
        PaymentRecord {
            status,
            chain_id,
            escrow,
            amount_units,
            pay_to,
            stake_tx: None,
            stake_deadline,
            output_commitment: None,
            proof_verified: None,
            tx_hash: None,
            explorer_url: None,
            submit_tx: None,
            submitted_at: None,
            delivered_ms: None,
            request: None,
            error: None,
        }
    }
}

/// One job, as stored and as `/jobs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id (the escrow's bytes32).
    pub job_id: JobId,
    /// Our side of it.
    pub side: Side,
    /// Where it is.
    pub state: JobState,
    /// Model requested.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// The output, once there is one.
    pub output: Option<String>,
    /// The other node (provider for a requester job, requester for a provider job).
    pub peer: Option<PeerKey>,
    /// The other node's ENS name.
    pub peer_ens: Option<String>,
    /// The other node's wallet.
    pub peer_wallet: Option<String>,
    /// Agreed price, USDC base units.
    pub price_units: Option<u64>,
    /// Machine-readable failure cause.
    pub error_code: Option<crate::request::JobErrorCode>,
    /// Human-readable failure detail.
    pub error: Option<String>,
    /// Created, unix ms.
    pub created_ms: u64,
    /// Last change, unix ms.
    pub updated_ms: u64,
    /// Deadline, unix ms.
    pub deadline_ms: u64,
    /// Phase timings.
    pub timings: Timings,
    /// Usage reported by the provider.
    pub usage: Option<Usage>,
    /// The money side of a paid job; `None` when payments are off.
    #[serde(default)]
    pub payment: Option<PaymentRecord>,
    /// Requester: the paid delegation failed over from this attempt to the job with this
    /// id (its own stake); a result that comes here afterwards is not paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<JobId>,
    /// Requester: the providers tried so far for the delegation, this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<crate::request::Attempt>,
}

impl JobRecord {
    /// A new job in its side's initial state.
    pub fn new(job_id: JobId, side: Side, model: &str, prompt: &str, deadline_ms: u64) -> Self {
        let now = now_ms();
        JobRecord {
            job_id,
            side,
            state: JobState::initial(side),
            model: model.to_string(),
            prompt: prompt.to_string(),
            output: None,
            peer: None,
            peer_ens: None,
            peer_wallet: None,
            price_units: None,
            error_code: None,
            error: None,
            created_ms: now,
            updated_ms: now,
            deadline_ms,
            timings: Timings::default(),
            usage: None,
            payment: None,
            moved_to: None,
            attempts: Vec::new(),
        }
    }

    /// Whether the state machine allows `self.state -> to` for this record. Beyond
    /// [`JobState::can_move_to`], a paid requester job whose stake is still open may
    /// complete late (after a restart, a timeout or a cancel) when its result arrives: the provider
    /// did the work within the stake's life, and the proof decides whether it is paid.
    pub fn can_move_to(&self, to: JobState) -> bool {
        if self.state.can_move_to(self.side, to) {
            return true;
        }
        self.side == Side::Requester
            && matches!(
                self.state,
                JobState::Failed | JobState::TimedOut | JobState::Cancelled
            )
            && to == JobState::Completed
            && self.output.is_none()
            && self.payment.as_ref().is_some_and(|p| p.status.is_open())
    }

    fn pay_state(&self) -> Option<&'static str> {
        self.payment.as_ref().map(|p| p.status.as_str())
    }
}

/// Job store failures.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// SQLite failed.
    #[error("job database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Creating the data directory failed.
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No such job.
    #[error("no {side} job {job_id}")]
    NotFound {
        /// The job.
        job_id: JobId,
        /// The side looked up.
        side: &'static str,
    },
    /// The job already exists.
    #[error("job {0} already exists")]
    Exists(JobId),
    /// The state machine does not allow this move.
    #[error("job {job_id}: cannot move from {from} to {to}")]
    BadTransition {
        /// The job.
        job_id: JobId,
        /// Current state.
        from: &'static str,
        /// Requested state.
        to: &'static str,
    },
    /// The payment machine does not allow this move (see [`PayStatus::can_move_to`]).
    #[error("payment of job {job_id}: cannot move from {from} to {to}")]
    BadPayTransition {
        /// The job.
        job_id: JobId,
        /// Current payment status.
        from: &'static str,
        /// Requested payment status.
        to: &'static str,
    },
    /// The job is not paid, so its payment cannot move.
    #[error("job {0} has no payment")]
    NoPayment(JobId),
    /// A stored row could not be read back.
    #[error("corrupt job row: {0}")]
    Corrupt(String),
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Most characters of a chat's rendering that a job records as its prompt.
pub const CHAT_PROMPT_CHARS: usize = 2000;

/// What a job records as its prompt: the prompt itself, or for a chat its messages as
/// `role: content` lines, the latest kept when they run over [`CHAT_PROMPT_CHARS`] (the
/// earlier part is cut, marked with `…`).
pub fn prompt_of(prompt: &str, messages: Option<&[ChatMessage]>) -> String {
    let msgs = match messages {
        Some(m) if !m.is_empty() && prompt.is_empty() => m,
        _ => return prompt.to_string(),
    };
    let lines: Vec<String> = msgs
        .iter()
        .map(|m| format!("{}: {}", m.role, m.content))
        .collect();
    let all = lines.join("\n");
    let n = all.chars().count();
    if n <= CHAT_PROMPT_CHARS {
        return all;
    }
    let tail: String = all.chars().skip(n - (CHAT_PROMPT_CHARS - 1)).collect();
    format!("…{tail}")
}

/// The persistent job table.
pub struct JobStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    side TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (job_id, side)
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_ms DESC);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
";

/// Added with the paid flow: the payment status of a paid job, for finding open stakes.
const MIGRATE_PAY_STATE: &str = "
ALTER TABLE jobs ADD COLUMN pay_state TEXT;
";

const PAY_STATE_INDEX: &str = "CREATE INDEX IF NOT EXISTS jobs_pay_state ON jobs (pay_state);";

fn migrate(conn: &Connection) -> Result<(), JobError> {
    conn.execute_batch(SCHEMA)?;
    let has_pay_state: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'pay_state'")?
        .exists([])?;
    if !has_pay_state {
        conn.execute_batch(MIGRATE_PAY_STATE)?;
    }
    conn.execute_batch(PAY_STATE_INDEX)?;
    Ok(())
}

impl JobStore {
    /// Open (or create) `jobs.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<JobStore, JobError> {
        std::fs::create_dir_all(data_dir).map_err(|source| JobError::Dir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(data_dir.join("jobs.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        Ok(JobStore {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<JobStore, JobError> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Ok(JobStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each write is
        // one statement), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store a new job.
    pub fn insert(&self, rec: &JobRecord) -> Result<(), JobError> {
        let json = serde_json::to_string(rec).map_err(|e| JobError::Corrupt(e.to_string()))?;
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO jobs (job_id, side, state, created_ms, updated_ms, record, pay_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![rec.job_id.to_hex(), rec.side.as_str(), rec.state.as_str(), rec.created_ms as i64, rec.updated_ms as i64, json, rec.pay_state()],
        )?;
        if n == 0 {
            return Err(JobError::Exists(rec.job_id));
        }
        Ok(())
    }

    /// One job.
    pub fn get(&self, job_id: &JobId, side: Side) -> Result<Option<JobRecord>, JobError> {
        let row: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM jobs WHERE job_id = ?1 AND side = ?2",
                params![job_id.to_hex(), side.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        row.map(|s| parse_record(&s)).transpose()
    }

    /// Move a job to `to`, applying `edit` to the record in the same write. Refuses moves
    /// the state machine does not allow (so a late message cannot reopen a finished job).
    pub fn transition(
        &self,
        job_id: &JobId,
        side: Side,
        to: JobState,
        edit: impl FnOnce(&mut JobRecord),
    ) -> Result<JobRecord, JobError> {
        self.write(job_id, side, |rec| {
            if !rec.can_move_to(to) {
                return Err(JobError::BadTransition {
                    job_id: *job_id,
                    from: rec.state.as_str(),
                    to: to.as_str(),
                });
            }
            edit(rec);
            rec.state = to;
            Ok(())
        })
    }

    /// Move a job's payment to `to`, applying `edit` to the record and its payment in the
    /// same write. Refuses (and logs) a move [`PayStatus::can_move_to`] does not allow, so a
    /// late message or a retried step cannot reopen or rewrite settled money.
    pub fn advance(
        &self,
        job_id: &JobId,
        side: Side,
        to: PayStatus,
        edit: impl FnOnce(&mut JobRecord, &mut PaymentRecord),
    ) -> Result<JobRecord, JobError> {
        self.write(job_id, side, |rec| {
            let Some(mut pay) = rec.payment.take() else {
                tracing::warn!(job = %job_id, to = to.as_str(), "payment move refused: the job is not paid");
                return Err(JobError::NoPayment(*job_id));
            };
            let from = pay.status;
            if !from.can_move_to(to) {
                if from == to {
                    // Two steps raced to record the same thing (the watcher and a message).
                    tracing::debug!(job = %job_id, status = from.as_str(), "payment already in this status");
                } else {
                    tracing::warn!(job = %job_id, from = from.as_str(), to = to.as_str(), "payment move refused");
                }
                rec.payment = Some(pay);
                return Err(JobError::BadPayTransition {
                    job_id: *job_id,
                    from: from.as_str(),
                    to: to.as_str(),
                });
            }
            edit(rec, &mut pay);
            pay.status = to;
            rec.payment = Some(pay);
            Ok(())
        })
    }

    /// Change a job's record without moving its state. A new payment may be set here; an
    /// existing one's status moves only through [`JobStore::advance`].
    pub fn update(
        &self,
        job_id: &JobId,
        side: Side,
        edit: impl FnOnce(&mut JobRecord),
    ) -> Result<JobRecord, JobError> {
        self.write(job_id, side, |rec| {
            let state = rec.state;
            edit(rec);
            rec.state = state;
            Ok(())
        })
    }

    /// Read, change and write one record under the lock, so two writers never interleave.
    fn write(
        &self,
        job_id: &JobId,
        side: Side,
        change: impl FnOnce(&mut JobRecord) -> Result<(), JobError>,
    ) -> Result<JobRecord, JobError> {
        let conn = self.lock();
        let row: Option<String> = conn
            .query_row(
                "SELECT record FROM jobs WHERE job_id = ?1 AND side = ?2",
                params![job_id.to_hex(), side.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let mut rec = match row {
            Some(s) => parse_record(&s)?,
            None => {
                return Err(JobError::NotFound {
                    job_id: *job_id,
                    side: side.as_str(),
                })
            }
        };
        change(&mut rec)?;
        rec.updated_ms = now_ms();
        let json = serde_json::to_string(&rec).map_err(|e| JobError::Corrupt(e.to_string()))?;
        conn.execute(
            "UPDATE jobs SET state = ?3, updated_ms = ?4, record = ?5, pay_state = ?6 WHERE job_id = ?1 AND side = ?2",
            params![job_id.to_hex(), side.as_str(), rec.state.as_str(), rec.updated_ms as i64, json, rec.pay_state()],
        )?;
        Ok(rec)
    }

    /// Jobs of `side` whose money is not settled yet, oldest first.
    pub fn open_payments(&self, side: Side) -> Result<Vec<JobRecord>, JobError> {
        let open: Vec<&str> = PayStatus::ALL
            .iter()
            .filter(|s| s.is_open())
            .map(|s| s.as_str())
            .collect();
        let placeholders = vec!["?"; open.len()].join(", ");
        let sql = format!(
            "SELECT record FROM jobs WHERE side = ? AND pay_state IN ({placeholders}) ORDER BY created_ms ASC"
        );
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql)?;
        let mut args: Vec<&str> = vec![side.as_str()];
        args.extend(open);
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
        collect_records(rows)
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> Result<Vec<JobRecord>, JobError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT record FROM jobs ORDER BY created_ms DESC, rowid DESC LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| r.get::<_, String>(0))?;
        collect_records(rows)
    }

    /// How many jobs are in each (side, state).
    pub fn counts(&self) -> Result<Vec<(Side, JobState, u64)>, JobError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT side, state, COUNT(*) FROM jobs GROUP BY side, state")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (side, state, n) = row?;
            if let (Some(side), Some(state)) = (Side::parse(&side), JobState::parse(&state)) {
                out.push((side, state, n.max(0) as u64));
            }
        }
        Ok(out)
    }

    /// After a restart: jobs that were in flight when the daemon stopped cannot be
    /// finished by it (the agent's HTTP request and the inference are gone), so they end
    /// `failed` with a reason instead of hanging forever. Returns how many were closed.
    pub fn close_interrupted(&self) -> Result<usize, JobError> {
        let open: Vec<(JobId, Side)> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(
                "SELECT job_id, side FROM jobs WHERE state IN ('discovering', 'tasked', 'running')",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut v = Vec::new();
            for row in rows {
                let (id, side) = row?;
                if let (Ok(id), Some(side)) = (JobId::from_hex(&id), Side::parse(&side)) {
                    v.push((id, side));
                }
            }
            v
        };
        let mut n = 0;
        for (id, side) in open {
            let res = self.transition(&id, side, JobState::Failed, |r| {
                r.error_code = Some(crate::request::JobErrorCode::Interrupted);
                r.error = Some("the daemon stopped while this job was in flight".into());
            });
            if res.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The records of a query's rows; an unreadable row is logged and skipped, not fatal.
fn collect_records(
    rows: impl Iterator<Item = rusqlite::Result<String>>,
) -> Result<Vec<JobRecord>, JobError> {
    let mut out = Vec::new();
    for row in rows {
        match parse_record(&row?) {
            Ok(rec) => out.push(rec),
            Err(e) => tracing::warn!(error = %e, "skipping unreadable job row"),
        }
    }
    Ok(out)
}

fn parse_record(s: &str) -> Result<JobRecord, JobError> {
    serde_json::from_str(s).map_err(|e| JobError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_happy_path_and_refusals() {
        let store = JobStore::in_memory().unwrap();
        let id = JobId::new();
        store
            .insert(&JobRecord::new(
                id,
                Side::Requester,
                "m",
                "p",
                now_ms() + 1000,
            ))
            .unwrap();
        assert!(matches!(
            store.insert(&JobRecord::new(id, Side::Requester, "m", "p", 0)),
            Err(JobError::Exists(_))
        ));
        // Cannot complete before being tasked.
        assert!(matches!(
            store.transition(&id, Side::Requester, JobState::Completed, |_| {}),
            Err(JobError::BadTransition { .. })
        ));
        store
            .transition(&id, Side::Requester, JobState::Tasked, |r| {
                r.peer = Some(PeerKey([1; 32]))
            })
            .unwrap();
        let done = store
            .transition(&id, Side::Requester, JobState::Completed, |r| {
                r.output = Some("out".into())
            })
            .unwrap();
        assert_eq!(done.output.as_deref(), Some("out"));
        assert_eq!(done.peer, Some(PeerKey([1; 32])));
        // A finished job stays finished.
        assert!(store
            .transition(&id, Side::Requester, JobState::Failed, |_| {})
            .is_err());
        assert_eq!(
            store.get(&id, Side::Requester).unwrap().unwrap().state,
            JobState::Completed
        );
        assert!(store.get(&id, Side::Provider).unwrap().is_none());
    }

    #[test]
    fn jobs_survive_reopen_and_interrupted_ones_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (JobId::new(), JobId::new());
        {
            let store = JobStore::open(dir.path()).unwrap();
            store
                .insert(&JobRecord::new(a, Side::Provider, "m", "p", 0))
                .unwrap();
            store
                .transition(&a, Side::Provider, JobState::Completed, |_| {})
                .unwrap();
            store
                .insert(&JobRecord::new(b, Side::Requester, "m", "p", 0))
                .unwrap();
        }
        let store = JobStore::open(dir.path()).unwrap();
        assert_eq!(store.list(10).unwrap().len(), 2);
        assert_eq!(store.close_interrupted().unwrap(), 1);
        let b_rec = store.get(&b, Side::Requester).unwrap().unwrap();
        assert_eq!(b_rec.state, JobState::Failed);
        assert_eq!(
            b_rec.error_code.as_ref().map(|c| c.as_str()),
            Some("interrupted")
        );
        let counts = store.counts().unwrap();
        assert!(counts.contains(&(Side::Provider, JobState::Completed, 1)));
        assert!(counts.contains(&(Side::Requester, JobState::Failed, 1)));
    }

    #[test]
    fn cancelled_ends_a_job_on_either_side() {
        use JobState::*;
        for (side, from) in [
            (Side::Requester, Discovering),
            (Side::Requester, Tasked),
            (Side::Provider, Running),
        ] {
            assert!(from.can_move_to(side, Cancelled), "{side:?} {from:?}");
        }
        assert!(Cancelled.is_terminal());
        for to in JobState::ALL {
            assert!(
                !Cancelled.can_move_to(Side::Requester, to),
                "cancelled -> {to:?}"
            );
            assert!(
                !Cancelled.can_move_to(Side::Provider, to),
                "cancelled -> {to:?}"
            );
            assert!(
                !Completed.can_move_to(Side::Provider, to),
                "completed -> {to:?}"
            );
        }
        let store = JobStore::in_memory().unwrap();
        let id = JobId::new();
        store
            .insert(&JobRecord::new(id, Side::Provider, "m", "p", 0))
            .unwrap();
        let rec = store
            .transition(&id, Side::Provider, Cancelled, |r| {
                r.error_code = Some(crate::request::ErrorCode::Cancelled.into())
            })
            .unwrap();
        assert_eq!(rec.state, Cancelled);
        assert!(store
            .transition(&id, Side::Provider, Completed, |_| {})
            .is_err());
        assert!(store
            .counts()
            .unwrap()
            .contains(&(Side::Provider, Cancelled, 1)));
        assert_eq!(JobState::parse("cancelled"), Some(Cancelled));
    }

    #[test]
    fn a_chat_is_recorded_as_role_lines_bounded_to_its_latest_part() {
        let msg = |role: &str, content: &str| ChatMessage {
            role: role.into(),
            content: content.into(),
        };
        assert_eq!(prompt_of("plain", None), "plain");
        let chat = [msg("system", "be brief"), msg("user", "hello edge mesh")];
        assert_eq!(
            prompt_of("", Some(&chat)),
            "system: be brief\nuser: hello edge mesh"
        );
        let long = [
            msg("user", &"é".repeat(5000)),
            msg("user", "the last question"),
        ];
        let p = prompt_of("", Some(&long));
        assert_eq!(p.chars().count(), CHAT_PROMPT_CHARS);
        assert!(
            p.starts_with('…') && p.ends_with("user: the last question"),
            "{p}"
        );
    }

    fn paid(status: PayStatus) -> PaymentRecord {
        PaymentRecord::new(status, 31337, "0x01".into(), 10, "0x02".into(), 100)
    }

    #[test]
    fn open_payments_are_found_and_a_paid_job_may_complete_late() {
        let store = JobStore::in_memory().unwrap();
        let (paid_job, unpaid_job, settled) = (JobId::new(), JobId::new(), JobId::new());
        for (id, pay) in [
            (paid_job, Some(paid(PayStatus::Staked))),
            (unpaid_job, None),
            (settled, Some(paid(PayStatus::Released))),
        ] {
            let mut r = JobRecord::new(id, Side::Requester, "m", "p", 0);
            r.payment = pay;
            store.insert(&r).unwrap();
            store
                .transition(&id, Side::Requester, JobState::Failed, |_| {})
                .unwrap();
        }
        let open: Vec<JobId> = store
            .open_payments(Side::Requester)
            .unwrap()
            .iter()
            .map(|r| r.job_id)
            .collect();
        assert_eq!(open, vec![paid_job]);
        assert!(store.open_payments(Side::Provider).unwrap().is_empty());

        // A late result completes the paid job whose stake is open, and nothing else.
        let done = store
            .transition(&paid_job, Side::Requester, JobState::Completed, |r| {
                r.output = Some("late".into())
            })
            .unwrap();
        assert_eq!(done.state, JobState::Completed);
        for id in [unpaid_job, settled] {
            assert!(store
                .transition(&id, Side::Requester, JobState::Completed, |_| {})
                .is_err());
        }

        // advance moves the payment without moving the state, and the index follows it.
        let r = store
            .advance(&paid_job, Side::Requester, PayStatus::Released, |_, _| {})
            .unwrap();
        assert_eq!(r.state, JobState::Completed);
        assert!(store.open_payments(Side::Requester).unwrap().is_empty());
    }

    /// The payment machine's whole table: every allowed move, one status per line.
    #[rustfmt::skip]
    const PAY_MOVES: &[(PayStatus, &[PayStatus])] = {
        use PayStatus::*;
        &[
            (Staking, &[Staked, Unwound, Released, Claimed, Rejected, Refunded]),
            (Staked, &[Verified, Disputed, Released, Claimed, Rejected, Refunded]),
            (Verified, &[Released, Claimed, Rejected, Refunded]),
            (Disputed, &[Released, Claimed, Rejected, Refunded]),
            (Accepted, &[Delivered, Abandoned, Released, Claimed, Rejected, Refunded]),
            (Delivered, &[Submitted, Abandoned, Released, Claimed, Rejected, Refunded]),
            (Submitted, &[Released, Claimed, Rejected]),
            (Released, &[]),
            (Claimed, &[]),
            (Rejected, &[]),
            (Refunded, &[]),
            (Unwound, &[]),
            (Abandoned, &[]),
        ]
    };

    #[test]
    fn the_payment_machine_allows_exactly_its_table() {
        assert_eq!(PAY_MOVES.len(), PayStatus::ALL.len());
        for from in PayStatus::ALL {
            let allowed = PAY_MOVES
                .iter()
                .find(|(f, _)| *f == from)
                .map(|(_, to)| *to)
                .unwrap();
            for to in PayStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&to),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
            // Settled money never moves, and nothing stays put.
            assert!(!from.can_move_to(from), "{} -> itself", from.as_str());
            if !from.is_open() {
                assert!(allowed.is_empty(), "{} is settled", from.as_str());
            }
        }
    }

    #[test]
    fn the_payment_machine_refuses_backward_and_cross_side_moves() {
        use PayStatus::*;
        for (from, to) in [
            (Released, Staked),
            (Released, Refunded),
            (Refunded, Released),
            (Unwound, Staked),
            (Verified, Staked),
            (Disputed, Verified),
            (Staking, Verified),
            (Submitted, Delivered),
            (Submitted, Refunded),
            (Delivered, Accepted),
            (Staked, Delivered),
            (Accepted, Verified),
            (Staked, Abandoned),
            (Delivered, Unwound),
        ] {
            assert!(
                !from.can_move_to(to),
                "{} -> {}",
                from.as_str(),
                to.as_str()
            );
        }
    }

    #[test]
    fn advance_moves_a_stored_payment_and_refuses_what_the_table_refuses() {
        let store = JobStore::in_memory().unwrap();
        let (id, unpaid) = (JobId::new(), JobId::new());
        let mut r = JobRecord::new(id, Side::Requester, "m", "p", 0);
        r.payment = Some(paid(PayStatus::Staking));
        store.insert(&r).unwrap();
        store
            .insert(&JobRecord::new(unpaid, Side::Requester, "m", "p", 0))
            .unwrap();

        let r = store
            .advance(&id, Side::Requester, PayStatus::Staked, |r, p| {
                p.stake_tx = Some("0xabc".into());
                r.timings.stake_ms = Some(5);
            })
            .unwrap();
        let p = r.payment.unwrap();
        assert_eq!(p.status, PayStatus::Staked);
        assert_eq!(p.stake_tx.as_deref(), Some("0xabc"));
        assert_eq!(r.timings.stake_ms, Some(5));

        // The edit cannot choose the status: advance sets the one it checked.
        let r = store
            .advance(&id, Side::Requester, PayStatus::Verified, |_, p| {
                p.status = PayStatus::Staking;
            })
            .unwrap();
        assert_eq!(r.payment.unwrap().status, PayStatus::Verified);
        store
            .advance(&id, Side::Requester, PayStatus::Released, |_, _| {})
            .unwrap();

        // Refused: the record is unchanged, the edit not applied, the error names both ends.
        let err = store
            .advance(&id, Side::Requester, PayStatus::Staked, |_, p| {
                p.error = Some("must not be written".into())
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                JobError::BadPayTransition {
                    from: "released",
                    to: "staked",
                    ..
                }
            ),
            "{err}"
        );
        let p = store
            .get(&id, Side::Requester)
            .unwrap()
            .unwrap()
            .payment
            .unwrap();
        assert_eq!(p.status, PayStatus::Released);
        assert_eq!(p.error, None);
        assert!(matches!(
            store
                .advance(&id, Side::Requester, PayStatus::Released, |_, _| {})
                .unwrap_err(),
            JobError::BadPayTransition { .. }
        ));

        // An unpaid job has no payment to move; an unknown one is not found.
        assert!(matches!(
            store
                .advance(&unpaid, Side::Requester, PayStatus::Staked, |_, _| {})
                .unwrap_err(),
            JobError::NoPayment(j) if j == unpaid
        ));
        assert!(matches!(
            store
                .advance(&id, Side::Provider, PayStatus::Delivered, |_, _| {})
                .unwrap_err(),
            JobError::NotFound { .. }
        ));
    }

    #[test]
    fn a_database_from_before_payments_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let id = JobId::new();
        {
            let conn = Connection::open(dir.path().join("jobs.sqlite")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            let rec = JobRecord::new(id, Side::Provider, "m", "p", 0);
            conn.execute(
                "INSERT INTO jobs (job_id, side, state, created_ms, updated_ms, record) VALUES (?1, ?2, ?3, 0, 0, ?4)",
                params![id.to_hex(), "provider", "running", serde_json::to_string(&rec).unwrap()],
            )
            .unwrap();
        }
        let store = JobStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(&id, Side::Provider).unwrap().unwrap().payment,
            None
        );
        assert!(store.open_payments(Side::Provider).unwrap().is_empty());
        // Opening again does not migrate twice.
        drop(store);
        JobStore::open(dir.path()).unwrap();
    }
}
