//! The persistent job table: SQLite (WAL) under `EDGENT_DATA_DIR`. Every write goes
//! through one read-change-write under the lock ([`JobStore::transition`] for states,
//! [`JobStore::advance`] for payments, [`JobStore::update`] for the rest).
//!
//! Money rows (a record with a payment) are written at `synchronous=FULL`: the commit
//! returns only once its WAL frame is on disk, so a power cut never rolls back a payment
//! the node acted on (a `staking` row whose authorization already left, a `submitted` or
//! `released` one). Unpaid rows stay at `NORMAL` (WAL), which costs no fsync per write:
//! FULL measured ~1.6 ms per commit against ~14 us on this machine's disk.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, JobRecord, JobState, PayStatus, PaymentRecord, Side};
use crate::protocol::JobId;

/// Job store failures.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// SQLite failed.
    #[error("job database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Creating the data directory (0700) or the job store's file (0600) failed.
    #[error("cannot create {path} privately: {source}")]
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

/// Most characters of a prompt a job list ([`JobStore::list`]) shows; one job
/// ([`JobStore::get`]) shows it whole.
pub const LIST_PROMPT_CHARS: usize = 2000;

/// The persistent job table.
pub struct JobStore {
    conn: Mutex<Connection>,
}

pub(super) const SCHEMA: &str = "
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

/// Added with `/jobs?since=`: the change counter of a row, bumped by every write to it
/// (rows from before it are numbered in their insertion order).
const MIGRATE_SEQ: &str = "
ALTER TABLE jobs ADD COLUMN seq INTEGER;
UPDATE jobs SET seq = rowid WHERE seq IS NULL;
";

const SEQ_INDEX: &str = "CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);";

/// The next change counter, inside an insert or update.
const NEXT_SEQ: &str = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)";

fn migrate(conn: &Connection) -> Result<(), JobError> {
    conn.execute_batch(SCHEMA)?;
    add_column(conn, "pay_state", MIGRATE_PAY_STATE, PAY_STATE_INDEX)?;
    add_column(conn, "seq", MIGRATE_SEQ, SEQ_INDEX)
}

/// Adds `column` to a `jobs` table from before it (running `migrate` only when the column
/// is missing), then makes sure its `index` exists.
fn add_column(conn: &Connection, column: &str, migrate: &str, index: &str) -> Result<(), JobError> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = ?1")?
        .exists([column])?;
    if !has {
        conn.execute_batch(migrate)?;
    }
    conn.execute_batch(index)?;
    Ok(())
}

/// The jobs that changed after a cursor, and the cursor to ask from next time
/// ([`JobStore::changed_since`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobChanges {
    /// The changed jobs, the latest change first.
    pub jobs: Vec<JobRecord>,
    /// The store's change counter when it was read: pass it as the next `since`.
    pub cursor: u64,
    /// More jobs changed than `limit`: the earliest changes were left out.
    pub truncated: bool,
}

impl JobStore {
    /// Open (or create) `jobs.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<JobStore, JobError> {
        let path = data_dir.join("jobs.sqlite");
        crate::files::private_dir(data_dir)
            .and_then(|()| crate::files::private_file(&path))
            .map_err(|source| JobError::Dir {
                path: path.display().to_string(),
                source,
            })?;
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL for unpaid rows; money rows switch to FULL for their commit ([`durable`]).
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each write is
        // one statement), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store a new job.
    pub fn insert(&self, rec: &JobRecord) -> Result<(), JobError> {
        // A new record seldom has an error; copy it (the prompt too) only when it does.
        let redacted;
        let rec = if rec.error.is_some() || rec.payment.as_ref().is_some_and(|p| p.error.is_some())
        {
            let mut r = rec.clone();
            redact(&mut r);
            redacted = r;
            &redacted
        } else {
            rec
        };
        let json = serde_json::to_string(rec).map_err(|e| JobError::Corrupt(e.to_string()))?;
        let n = durable(&self.lock(), rec.payment.is_some(), |conn| {
            conn.execute(
                &format!("INSERT OR IGNORE INTO jobs (job_id, side, state, created_ms, updated_ms, record, pay_state, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NEXT_SEQ})"),
                params![rec.job_id.to_hex(), rec.side.as_str(), rec.state.as_str(), rec.created_ms as i64, rec.updated_ms as i64, json, pay_state(rec)],
            )
        })?;
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
        redact(&mut rec);
        let json = serde_json::to_string(&rec).map_err(|e| JobError::Corrupt(e.to_string()))?;
        durable(&conn, rec.payment.is_some(), |conn| {
            conn.execute(
                &format!("UPDATE jobs SET state = ?3, updated_ms = ?4, record = ?5, pay_state = ?6, seq = {NEXT_SEQ} WHERE job_id = ?1 AND side = ?2"),
                params![job_id.to_hex(), side.as_str(), rec.state.as_str(), rec.updated_ms as i64, json, pay_state(&rec)],
            )
        })?;
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
        // A list shows at most LIST_PROMPT_CHARS of each prompt (threat model line 30): a
        // dashboard polling `/jobs` does not carry whole prompts every time.
        let mut stmt = conn.prepare(
            "SELECT CASE WHEN length(json_extract(record, '$.prompt')) > ?2 \
             THEN json_set(record, '$.prompt', substr(json_extract(record, '$.prompt'), 1, ?2) || '…') \
             ELSE record END FROM jobs ORDER BY created_ms DESC, rowid DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64, LIST_PROMPT_CHARS as i64], |r| {
            r.get::<_, String>(0)
        })?;
        collect_records(rows)
    }

    /// The jobs written (created or changed) after the change counter `since`, at most
    /// `limit` of them, the latest change first, with the counter to pass next time.
    /// `since = 0` gives the `limit` most recently changed jobs.
    pub fn changed_since(&self, since: u64, limit: usize) -> Result<JobChanges, JobError> {
        let conn = self.lock();
        let cursor: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM jobs", [], |r| r.get(0))?;
        let mut stmt =
            conn.prepare("SELECT record FROM jobs WHERE seq > ?1 ORDER BY seq DESC LIMIT ?2")?;
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        // One more than asked, to tell whether some were left out.
        let rows = stmt.query_map(params![since, limit as i64 + 1], |r| r.get::<_, String>(0))?;
        let mut jobs = collect_records(rows)?;
        let truncated = jobs.len() > limit;
        jobs.truncate(limit);
        Ok(JobChanges {
            jobs,
            cursor: cursor.max(0) as u64,
            truncated,
        })
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
                r.error_code = Some(super::JobErrorCode::Interrupted);
                r.error = Some("the daemon stopped while this job was in flight".into());
            });
            if res.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Cut the URLs out of a record's error texts before it is stored: a transport error
/// quotes the URL it failed on, and an RPC URL may carry the account's key
/// ([`crate::redact`]); `/jobs` and MCP's `jobs` show what is stored.
fn redact(rec: &mut JobRecord) {
    for text in [
        rec.error.as_mut(),
        rec.payment.as_mut().and_then(|p| p.error.as_mut()),
    ]
    .into_iter()
    .flatten()
    {
        *text = crate::redact::urls(text);
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

/// Runs one write; a money row's (`money`) at `synchronous=FULL`, back to `NORMAL` after.
fn durable<T>(
    conn: &Connection,
    money: bool,
    write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if !money {
        return write(conn);
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    #[cfg(test)]
    tests::record_level(conn);
    let out = write(conn);
    if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
        tracing::warn!(error = %e, "job store: cannot go back to synchronous=NORMAL");
    }
    out
}

/// The payment status stored beside the record, for finding open stakes.
fn pay_state(rec: &JobRecord) -> Option<&'static str> {
    rec.payment.as_ref().map(|p| p.status.as_str())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use rusqlite::Connection;

    use super::JobStore;
    use crate::jobs::{JobRecord, PayStatus, PaymentRecord, Side};
    use crate::protocol::JobId;

    thread_local! {
        /// The `synchronous` level each money write ran at, on this test's thread.
        static LEVELS: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record_level(conn: &Connection) {
        let level = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap_or(-1);
        LEVELS.with(|l| l.borrow_mut().push(level));
    }

    fn level(store: &JobStore) -> i64 {
        store
            .lock()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn money_rows_commit_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path()).unwrap();
        assert_eq!(level(&store), 1, "unpaid rows: NORMAL (1)");
        let unpaid = JobRecord::new(JobId::new(), Side::Requester, "m", "p", 0);
        store.insert(&unpaid).unwrap();
        assert!(
            LEVELS.with(|l| l.borrow().is_empty()),
            "no FULL for unpaid rows"
        );

        let mut paid = JobRecord::new(JobId::new(), Side::Requester, "m", "p", 0);
        paid.payment = Some(PaymentRecord::new(
            PayStatus::Staking,
            31337,
            "0x01".into(),
            10,
            "0x02".into(),
            100,
        ));
        store.insert(&paid).unwrap();
        store
            .advance(&paid.job_id, Side::Requester, PayStatus::Staked, |_, _| {})
            .unwrap();
        assert_eq!(
            LEVELS.with(|l| l.borrow().clone()),
            vec![2, 2],
            "FULL (2) for both"
        );
        assert_eq!(level(&store), 1, "back to NORMAL after");
    }
}
