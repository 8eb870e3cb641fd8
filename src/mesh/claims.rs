//! The job ids a provider is taking in: claimed when a task arrives, before any stake
//! check, and held until that task ends (refused, queued, run, or delivered). A second
//! task for a claimed job id is refused at once (docs/threat-model.md, rule 1), so two
//! tasks for one job never both reach the stake, and only the task that took a stake can
//! decline it.
//!
//! Bounded by the tasks in flight: an entry lives only as long as its task.

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::protocol::JobId;

/// The claimed job ids.
#[derive(Default)]
pub struct JobClaims {
    held: Mutex<HashSet<JobId>>,
}

/// One task's claim on its job id, released when dropped.
pub struct JobClaim<'a> {
    claims: &'a JobClaims,
    job: JobId,
}

impl JobClaims {
    /// Claim `job`, or `None` when another task holds it.
    pub fn claim(&self, job: JobId) -> Option<JobClaim<'_>> {
        // The lock is let go before a claim exists: a claim made and dropped under it
        // (`then_some`) would take it again in its `drop`, and free another task's id.
        let fresh = self.held.lock().insert(job);
        fresh.then(|| JobClaim { claims: self, job })
    }

    /// Job ids claimed now.
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    /// Whether no job id is claimed.
    pub fn is_empty(&self) -> bool {
        self.held.lock().is_empty()
    }
}

impl Drop for JobClaim<'_> {
    fn drop(&mut self) {
        self.claims.held.lock().remove(&self.job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_is_claimed_once_until_its_claim_ends() {
        let claims = JobClaims::default();
        let job = JobId([7; 32]);
        let first = claims.claim(job).expect("free");
        assert!(claims.claim(job).is_none());
        assert!(claims.claim(JobId([8; 32])).is_some());
        drop(first);
        assert_eq!(claims.len(), 0);
        assert!(claims.claim(job).is_some());
    }
}
