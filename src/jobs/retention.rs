//! How long a provider keeps other nodes' prompts (threat model line 30): a job record on
//! the provider's side keeps its prompt (already cut to
//! [`STORED_PROMPT_BYTES`](super::STORED_PROMPT_BYTES) with its hash) for
//! `PROMPT_RETENTION_HOURS` (24 by default); a pass every [`PRUNE_EVERY`] then blanks it.
//! The record itself stays, so a task for a known job id is still dropped (rule 1).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{now_ms, JobError, JobStore};

/// How often the pruning pass runs (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

impl JobStore {
    /// Blank the prompts of provider-side jobs created before `before_ms`; returns how many.
    pub fn forget_prompts(&self, before_ms: u64) -> Result<usize, JobError> {
        let conn = self.lock();
        let n = conn.execute(
            "UPDATE jobs SET record = json_set(record, '$.prompt', '') \
             WHERE side = 'provider' AND created_ms < ?1 \
             AND json_extract(record, '$.prompt') != ''",
            rusqlite::params![before_ms as i64],
        )?;
        Ok(n)
    }
}

/// Blank other nodes' prompts older than `keep`, every [`PRUNE_EVERY`], until cancelled.
pub async fn prune_loop(jobs: Arc<JobStore>, keep: Duration, cancel: CancellationToken) {
    loop {
        let before = now_ms().saturating_sub(keep.as_millis() as u64);
        match jobs.forget_prompts(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "other nodes' prompts past their retention blanked"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot blank old prompts"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
