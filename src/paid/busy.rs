//! The jobs with a money step under way, so the watcher and a message handler never act on
//! the same job at once. A step that may skip (the watcher's, which comes back) tries; a
//! step that must act (a decline, a delivery) waits its turn.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::protocol::JobId;

/// Jobs with a money step under way.
#[derive(Default)]
pub struct Busy {
    held: Mutex<HashSet<JobId>>,
    freed: Notify,
}

/// Holds a job in [`Busy`] until dropped.
pub struct BusyGuard {
    set: Arc<Busy>,
    job: JobId,
}

impl Busy {
    /// Take the job, or `None` when another step holds it.
    pub fn try_take(self: &Arc<Self>, job: JobId) -> Option<BusyGuard> {
        self.held.lock().insert(job).then(|| BusyGuard {
            set: self.clone(),
            job,
        })
    }

    /// Take the job, waiting while another step holds it.
    pub async fn take(self: &Arc<Self>, job: JobId) -> BusyGuard {
        loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(g) = self.try_take(job) {
                return g;
            }
            freed.await;
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set.held.lock().remove(&self.job);
        self.set.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_step_that_must_act_waits_for_the_one_holding_the_job() {
        let busy = Arc::new(Busy::default());
        let job = JobId::new();
        let held = busy.try_take(job).expect("free");
        assert!(busy.try_take(job).is_none(), "held: a try fails");
        let mut waiting = Box::pin(busy.take(job));
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "held: a take waits"
        );
        let other = busy.take(JobId::new()).now_or_never();
        assert!(other.is_some(), "another job is not held");
        drop(held);
        let _g = waiting.await;
        assert!(busy.try_take(job).is_none(), "the waiter holds it now");
    }
}
