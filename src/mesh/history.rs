//! What this node remembers about the providers it delegated to: successes, failures,
//! disputes (a proof that did not check) and latency, kept in SQLite next to the job
//! store (`providers.sqlite` in the data dir) so it survives a restart, and in memory for
//! choosing without a query.
//!
//! The table (one row per provider, by Yggdrasil address):
//!
//! ```sql
//! CREATE TABLE provider_history (
//!   node_addr  TEXT PRIMARY KEY,   -- hex of the 16-byte Yggdrasil address
//!   node_id    TEXT NOT NULL,      -- the full key last seen, 64 hex
//!   successes  INTEGER NOT NULL,
//!   failures   INTEGER NOT NULL,
//!   disputes   INTEGER NOT NULL,
//!   latency_ms REAL,               -- moving average over successful jobs
//!   updated_ms INTEGER NOT NULL    -- unix ms
//! );
//! ```
//!
//! At most [`MAX_PROVIDERS`] rows are kept; the one updated longest ago goes first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::Serialize;

use super::evict::evict_oldest;
use crate::axl::PeerKey;
use crate::jobs::now_ms;

/// Most providers remembered.
pub const MAX_PROVIDERS: usize = 4096;

/// Weight of the newest latency in the moving average.
const LATENCY_WEIGHT: f64 = 0.3;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS provider_history (
    node_addr  TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL,
    successes  INTEGER NOT NULL DEFAULT 0,
    failures   INTEGER NOT NULL DEFAULT 0,
    disputes   INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL,
    updated_ms INTEGER NOT NULL
);";

/// Why the history store failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite refused.
    #[error("provider history database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// How a job given to a provider ended, as the requester saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderOutcome {
    /// It delivered a result (and, when paid, a proof that checked).
    Success,
    /// It refused, failed, could not be reached, or let the deadline pass.
    Failure,
    /// Its proof did not check: the worst mark; it is ranked last from then on.
    Dispute,
}

/// One provider's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderRecord {
    /// The full key last seen, 64 hex.
    pub node_id: String,
    /// Jobs it delivered.
    pub successes: u32,
    /// Jobs it failed.
    pub failures: u32,
    /// Proofs of its that did not check.
    pub disputes: u32,
    /// Moving average of its delegations' latency, ms.
    pub latency_ms: Option<f64>,
    /// When the record last changed, unix ms.
    pub updated_ms: u64,
}

impl ProviderRecord {
    /// Success rate with one success and no failure assumed up front (so a newcomer has
    /// 1.0, and one failure on its own gives 0.5).
    pub fn reliability(&self) -> f64 {
        let s = f64::from(self.successes) + 1.0;
        s / (s + f64::from(self.failures))
    }
}

/// The history: SQLite for persistence, a map for reading.
pub struct ProviderHistory {
    conn: Mutex<Option<Connection>>,
    cache: Mutex<HashMap<[u8; 16], ProviderRecord>>,
}

fn addr_hex(k: &PeerKey) -> String {
    hex::encode(k.address())
}

impl ProviderHistory {
    /// Open (or create) `providers.sqlite` in `data_dir` and load it.
    pub fn open(data_dir: &Path) -> Result<ProviderHistory, HistoryError> {
        let path = data_dir.join("providers.sqlite");
        // Which providers this node used is its own business: 0600 like the job store. (A
        // file that cannot be made private still opens: SQLite says why if it cannot.)
        if let Err(e) = crate::files::private_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the provider history private");
        }
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let mut cache = HashMap::new();
        {
            let mut st = conn.prepare(
                "SELECT node_addr, node_id, successes, failures, disputes, latency_ms, updated_ms
                 FROM provider_history ORDER BY updated_ms DESC LIMIT ?1",
            )?;
            let rows = st.query_map(params![MAX_PROVIDERS as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    ProviderRecord {
                        node_id: r.get(1)?,
                        successes: r.get(2)?,
                        failures: r.get(3)?,
                        disputes: r.get(4)?,
                        latency_ms: r.get(5)?,
                        updated_ms: r.get::<_, i64>(6)?.max(0) as u64,
                    },
                ))
            })?;
            for row in rows {
                let (addr, rec) = row?;
                let mut a = [0u8; 16];
                if hex::decode_to_slice(&addr, &mut a).is_ok() {
                    cache.insert(a, rec);
                } else {
                    tracing::warn!(node_addr = %addr, "skipping a malformed provider history row");
                }
            }
        }
        Ok(ProviderHistory {
            conn: Mutex::new(Some(conn)),
            cache: Mutex::new(cache),
        })
    }

    /// A history kept in memory only (tests and tools).
    pub fn in_memory() -> ProviderHistory {
        ProviderHistory {
            conn: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Record how a job given to `provider` ended; `latency` is the delegation's time from
    /// the task to the answer (successes only).
    pub fn record(&self, provider: &PeerKey, outcome: ProviderOutcome, latency: Option<Duration>) {
        let rec = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let addr = provider.address();
            if let Some(oldest) = evict_oldest(&mut cache, &addr, MAX_PROVIDERS, |r| r.updated_ms) {
                self.delete(&oldest);
            }
            let r = cache.entry(addr).or_default();
            r.node_id = provider.to_hex();
            match outcome {
                ProviderOutcome::Success => {
                    r.successes = r.successes.saturating_add(1);
                    if let Some(l) = latency {
                        let ms = l.as_secs_f64() * 1000.0;
                        r.latency_ms = Some(match r.latency_ms {
                            Some(avg) => avg + LATENCY_WEIGHT * (ms - avg),
                            None => ms,
                        });
                    }
                }
                ProviderOutcome::Failure => r.failures = r.failures.saturating_add(1),
                ProviderOutcome::Dispute => r.disputes = r.disputes.saturating_add(1),
            }
            r.updated_ms = now_ms();
            r.clone()
        };
        tracing::debug!(provider = %provider.short(), ?outcome, "provider history recorded");
        self.store(provider, &rec);
    }

    fn store(&self, provider: &PeerKey, r: &ProviderRecord) {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = guard.as_ref() else { return };
        let res = conn.execute(
            "INSERT INTO provider_history (node_addr, node_id, successes, failures, disputes, latency_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(node_addr) DO UPDATE SET node_id = ?2, successes = ?3, failures = ?4,
               disputes = ?5, latency_ms = ?6, updated_ms = ?7",
            params![
                addr_hex(provider),
                r.node_id,
                r.successes,
                r.failures,
                r.disputes,
                r.latency_ms,
                r.updated_ms as i64
            ],
        );
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot store the provider history");
        }
    }

    fn delete(&self, addr: &[u8; 16]) {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = guard.as_ref() {
            if let Err(e) = conn.execute(
                "DELETE FROM provider_history WHERE node_addr = ?1",
                params![hex::encode(addr)],
            ) {
                tracing::warn!(error = %e, "cannot trim the provider history");
            }
        }
    }

    /// The scoring hook for a provider caught cheating (a spot check that disagrees, a
    /// receipt that does not hold, an empty output it wanted paid): the worst mark, as a
    /// failed proof, so it is ranked last from then on ([`crate::mesh::score`]).
    pub fn caught(&self, provider: &PeerKey, why: &str) {
        tracing::warn!(provider = %provider.short(), why, "provider caught: ranked last from now on");
        self.record(provider, ProviderOutcome::Dispute, None);
    }

    /// A provider's record, if it has one.
    pub fn get(&self, provider: &PeerKey) -> Option<ProviderRecord> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&provider.address())
            .cloned()
    }

    /// How many of the provider's proofs did not check here.
    pub fn disputes(&self, provider: &PeerKey) -> u32 {
        self.get(provider).map_or(0, |r| r.disputes)
    }

    /// Every record, most recently updated first.
    pub fn all(&self) -> Vec<ProviderRecord> {
        let mut v: Vec<ProviderRecord> = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.updated_ms));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (PeerKey([1; 32]), PeerKey([2; 32]));
        {
            let h = ProviderHistory::open(dir.path()).unwrap();
            h.record(
                &a,
                ProviderOutcome::Success,
                Some(Duration::from_millis(100)),
            );
            h.record(
                &a,
                ProviderOutcome::Success,
                Some(Duration::from_millis(200)),
            );
            h.record(&b, ProviderOutcome::Failure, None);
            h.record(&b, ProviderOutcome::Dispute, None);
        }
        let h = ProviderHistory::open(dir.path()).unwrap();
        let ra = h.get(&a).unwrap();
        assert_eq!((ra.successes, ra.failures, ra.disputes), (2, 0, 0));
        assert!((ra.latency_ms.unwrap() - 130.0).abs() < 1e-6);
        assert_eq!(h.disputes(&b), 1);
        assert_eq!(h.get(&b).unwrap().failures, 1);
        assert!((h.get(&b).unwrap().reliability() - 0.5).abs() < 1e-9);
        assert_eq!(h.all().len(), 2);
        h.caught(&a, "a spot check disagreed");
        assert_eq!(h.disputes(&a), 1);
    }

    #[test]
    fn reliability_starts_at_one() {
        assert_eq!(ProviderRecord::default().reliability(), 1.0);
    }
}
