//! The provider's job slots and the bounded queue behind them: a task beyond the slots
//! (`PROVIDER_MAX_JOBS`) waits its turn, first come first served, while fewer than
//! `PROVIDER_MAX_QUEUE` wait; only a full queue answers `busy`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::protocol::JobId;

/// Job slots and the queue in front of them.
pub struct JobQueue {
    slots: Arc<Semaphore>,
    max_jobs: usize,
    max_queue: usize,
    running: Arc<AtomicUsize>,
    waiting: Mutex<VecDeque<JobId>>,
}

/// A task's place: running (holding a slot) or queued.
pub enum Admission<'a> {
    /// A slot was free: run now.
    Run(SlotGuard),
    /// Waiting in the queue: call [`JobQueue::wait_turn`].
    Queued(QueueTicket<'a>),
}

/// The queue is full: answer `busy`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("all {max_jobs} job slots are taken and {max_queue} tasks wait already")]
pub struct QueueFull {
    /// Job slots.
    pub max_jobs: usize,
    /// Queue length.
    pub max_queue: usize,
}

/// A job slot, given back when dropped.
pub struct SlotGuard {
    _permit: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A place in the queue; leaving (drop) frees it.
pub struct QueueTicket<'a> {
    queue: &'a JobQueue,
    job: JobId,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        let mut w = self.queue.lock();
        if let Some(i) = w.iter().position(|j| *j == self.job) {
            w.remove(i);
        }
    }
}

impl JobQueue {
    /// `max_jobs` slots (at least 1) and up to `max_queue` waiting.
    pub fn new(max_jobs: usize, max_queue: usize) -> Self {
        let max_jobs = max_jobs.max(1);
        JobQueue {
            slots: Arc::new(Semaphore::new(max_jobs)),
            max_jobs,
            max_queue,
            running: Arc::new(AtomicUsize::new(0)),
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<JobId>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn guard(&self, permit: OwnedSemaphorePermit) -> SlotGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        SlotGuard {
            _permit: permit,
            running: self.running.clone(),
        }
    }

    /// Take a slot, or a place in the queue, or refuse when both are full.
    pub fn admit(&self, job: JobId) -> Result<Admission<'_>, QueueFull> {
        let mut w = self.lock();
        // Nobody may overtake a queued task: a free slot goes to the queue first.
        if w.is_empty() {
            if let Ok(p) = self.slots.clone().try_acquire_owned() {
                return Ok(Admission::Run(self.guard(p)));
            }
        }
        if w.len() >= self.max_queue {
            return Err(QueueFull {
                max_jobs: self.max_jobs,
                max_queue: self.max_queue,
            });
        }
        w.push_back(job);
        Ok(Admission::Queued(QueueTicket { queue: self, job }))
    }

    /// Wait for a slot (the semaphore serves waiters in order). `None` only if the slots
    /// were closed, which this type never does.
    pub async fn wait_turn(&self, ticket: QueueTicket<'_>) -> Option<SlotGuard> {
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        drop(ticket);
        Some(self.guard(permit))
    }

    /// Jobs ahead of `job` in the queue (0 = next), if it is queued.
    pub fn position(&self, job: &JobId) -> Option<u32> {
        self.lock().iter().position(|j| j == job).map(|i| i as u32)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Tasks waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.lock().len()
    }

    /// Job slots.
    pub fn max_jobs(&self) -> usize {
        self.max_jobs
    }

    /// Queue length.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Whether a new task would run or queue rather than be refused.
    pub fn has_room(&self) -> bool {
        self.queued() < self.max_queue || self.slots.available_permits() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_beyond_the_slots_queue_in_order_then_busy() {
        let q = JobQueue::new(1, 2);
        let (a, b, c, d) = (JobId::new(), JobId::new(), JobId::new(), JobId::new());
        let Ok(Admission::Run(slot_a)) = q.admit(a) else {
            panic!("first task should run")
        };
        let Ok(Admission::Queued(tb)) = q.admit(b) else {
            panic!("second should queue")
        };
        let Ok(Admission::Queued(tc)) = q.admit(c) else {
            panic!("third should queue")
        };
        assert!(q.admit(d).is_err(), "queue full");
        assert!(!q.has_room());
        assert_eq!((q.position(&b), q.position(&c)), (Some(0), Some(1)));
        assert_eq!((q.running(), q.queued()), (1, 2));
        drop(slot_a);
        let slot_b = q.wait_turn(tb).await.unwrap();
        assert_eq!(q.position(&c), Some(0));
        assert_eq!((q.running(), q.queued()), (1, 1));
        // A queued task that gives up leaves the queue.
        drop(tc);
        assert_eq!(q.queued(), 0);
        drop(slot_b);
        assert!(matches!(q.admit(d), Ok(Admission::Run(_))));
    }
}
