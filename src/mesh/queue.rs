//! The provider's job slots and the bounded queue behind them: a task beyond the slots
//! (`PROVIDER_MAX_JOBS`) waits its turn, first come first served, while fewer than
//! `PROVIDER_MAX_QUEUE` wait; only a full queue answers `busy`. One requester holds at
//! most `PROVIDER_PEER_MAX_JOBS` of the slots and places together ([`JobQueue::hold`],
//! threat model line 29; by default all but a quarter of them, [`peer_share`]), so no
//! peer can take them all.

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
    per_peer: usize,
    held: Mutex<std::collections::HashMap<[u8; 16], usize>>,
}

/// One requester's share of the slots and queue, given back when dropped.
pub struct PeerHold<'a> {
    queue: &'a JobQueue,
    addr: [u8; 16],
}

impl Drop for PeerHold<'_> {
    fn drop(&mut self) {
        let mut h = self.queue.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = h.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                h.remove(&self.addr);
            }
        }
    }
}

/// The requester holds its share of the slots and queue already: answer `busy`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this node holds {0} jobs here already (running or queued); wait for one to end")]
pub struct PeerFull(pub usize);

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

/// One requester's share of `max_jobs` slots and `max_queue` places: `configured`, or when
/// 0, all but a quarter of them (at least 1).
pub fn peer_share(max_jobs: usize, max_queue: usize, configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let all = max_jobs.max(1).saturating_add(max_queue);
    (all - all / 4).max(1)
}

impl JobQueue {
    /// `max_jobs` slots (at least 1) and up to `max_queue` waiting, with no share per
    /// requester.
    pub fn new(max_jobs: usize, max_queue: usize) -> Self {
        Self::with_peer_share(max_jobs, max_queue, usize::MAX)
    }

    /// `max_jobs` slots (at least 1) and up to `max_queue` waiting, of which one requester
    /// holds at most `per_peer` (at least 1).
    pub fn with_peer_share(max_jobs: usize, max_queue: usize, per_peer: usize) -> Self {
        let max_jobs = max_jobs.max(1);
        JobQueue {
            slots: Arc::new(Semaphore::new(max_jobs)),
            max_jobs,
            max_queue,
            running: Arc::new(AtomicUsize::new(0)),
            waiting: Mutex::new(VecDeque::new()),
            per_peer: per_peer.max(1),
            held: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Take one of `peer`'s share of slots and places (hold it while the job waits or
    /// runs), or [`PeerFull`] when it holds its share already.
    pub fn hold(&self, peer: &crate::axl::PeerKey) -> Result<PeerHold<'_>, PeerFull> {
        let addr = peer.address();
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = h.entry(addr).or_default();
        if *n >= self.per_peer {
            return Err(PeerFull(*n));
        }
        *n += 1;
        Ok(PeerHold { queue: self, addr })
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

    #[test]
    fn one_requester_holds_at_most_its_share() {
        let q = JobQueue::with_peer_share(2, 8, 3);
        let (a, b) = (crate::axl::PeerKey([1; 32]), crate::axl::PeerKey([2; 32]));
        let held: Vec<_> = (0..10).filter_map(|_| q.hold(&a).ok()).collect();
        assert_eq!(held.len(), 3);
        assert!(q.hold(&b).is_ok(), "another requester still gets in");
        drop(held);
        let again: Vec<_> = (0..10).filter_map(|_| q.hold(&a).ok()).collect();
        assert_eq!(again.len(), 3);
        assert_eq!(peer_share(2, 32, 0), 26);
        assert_eq!(peer_share(1, 1, 0), 2);
        assert_eq!(peer_share(2, 32, 5), 5);
    }
}
