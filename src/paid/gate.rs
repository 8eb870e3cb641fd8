//! The provider's guard against free work: a `task` that claims a stake must not make the
//! provider ask the chain without bound, nor take a job slot, before the stake is known.
//!
//! - Cheap checks come first and cost no RPC call (a missing stake, another escrow, an amount
//!   below the price, an authorization whose signature does not hold); see
//!   [`super::PaidProvider`]'s `check_stake`.
//! - Every chain read for a task goes through a [`GatePass`] of its peer. A peer has a budget
//!   of `PEER_UNSTAKED_BURST` unpaid tasks, refilled at `PEER_UNSTAKED_PER_MIN` a minute. A
//!   pass takes one unit; a task whose stake checks out gives it back, so an honest peer
//!   never runs dry, however many paid tasks it sends. A peer whose budget is spent is
//!   refused at once, without an RPC call, until it refills. While a peer's checks are in
//!   flight, its further tasks wait for them rather than read the chain in parallel, so the
//!   reads one peer can cause at once are bounded by its budget too.
//! - All peers together have a budget too (`UNSTAKED_BURST_ALL` unpaid tasks, refilled at
//!   `UNSTAKED_PER_MIN_ALL` a minute; a paid one gives its unit back), so many identities,
//!   each within its own budget, cannot drive chain reads without bound (threat model
//!   line 32).
//! - The stake read for a job is cached ([`StakeGate::cached_stake`]), and so is the chain's
//!   time for a second, so a task sent again, or many tasks at once, do not read them again.
//!
//! All this runs before the task is admitted to a slot or the queue (the provider's
//! `serve`), so an unstaked task never holds a slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::axl::identity::YggAddress;
use crate::axl::PeerKey;
use crate::chain::StakeInfo;
use crate::mesh::limits::{TokenBucket, MAX_TRACKED_PEERS};
use crate::protocol::JobId;

/// How long a stake read is reused for the same job.
const STAKE_TTL: Duration = Duration::from_secs(30);
/// How long the chain's time is reused.
const CLOCK_TTL: Duration = Duration::from_secs(1);
/// Most stake reads kept.
const MAX_CACHED_STAKES: usize = 4_096;
/// Unpaid tasks of all peers together before the gate refuses without an RPC call.
pub const UNSTAKED_BURST_ALL: u32 = 256;
/// How fast that budget refills, a minute.
pub const UNSTAKED_PER_MIN_ALL: u32 = 240;
/// A waiting task looks at its peer's budget again at least this often (it refills).
const RECHECK: Duration = Duration::from_millis(250);

/// A peer's budget of unpaid tasks, and its checks under way.
struct PeerBudget {
    bucket: TokenBucket,
    in_flight: u32,
    done: Arc<Notify>,
}

/// Per-peer budgets of unpaid tasks, and the provider's cache of stake reads.
pub struct StakeGate {
    per_min: u32,
    burst: u32,
    peers: Mutex<HashMap<YggAddress, PeerBudget>>,
    all: Mutex<TokenBucket>,
    stakes: Mutex<HashMap<JobId, (Instant, StakeInfo)>>,
    clock: Mutex<Option<(Instant, u64)>>,
}

/// Why a task is refused at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many unpaid tasks from this node: its budget of {burst} refills at {per_min} a minute"
)]
pub struct OverBudget {
    /// `PEER_UNSTAKED_BURST`.
    pub burst: u32,
    /// `PEER_UNSTAKED_PER_MIN`.
    pub per_min: u32,
}

impl StakeGate {
    /// A gate giving each peer `burst` unpaid tasks, refilled at `per_min` a minute.
    pub fn new(burst: u32, per_min: u32) -> Arc<Self> {
        Arc::new(StakeGate {
            per_min: per_min.max(1),
            burst: burst.max(1),
            peers: Mutex::new(HashMap::new()),
            all: Mutex::new(TokenBucket::with_rate(
                f64::from(UNSTAKED_PER_MIN_ALL) / 60.0,
                UNSTAKED_BURST_ALL,
                Instant::now(),
            )),
            stakes: Mutex::new(HashMap::new()),
            clock: Mutex::new(None),
        })
    }

    fn over(&self) -> OverBudget {
        OverBudget {
            burst: self.burst,
            per_min: self.per_min,
        }
    }

    fn new_budget(&self, now: Instant) -> PeerBudget {
        PeerBudget {
            bucket: TokenBucket::with_rate(f64::from(self.per_min) / 60.0, self.burst, now),
            in_flight: 0,
            done: Arc::new(Notify::new()),
        }
    }

    /// Take one unit of `peer`'s budget for a chain read. When it is spent but checks of
    /// this peer are in flight, wait (until `until`) for them: a paid one gives its unit
    /// back. When it is spent and nothing is in flight, refuse at once.
    pub async fn enter(
        self: &Arc<Self>,
        peer: &PeerKey,
        until: Instant,
    ) -> Result<GatePass, OverBudget> {
        let addr = peer.address();
        loop {
            let now = Instant::now();
            let done = {
                let mut m = self.peers.lock();
                if !m.contains_key(&addr) && m.len() >= MAX_TRACKED_PEERS {
                    m.retain(|_, b| b.in_flight > 0 || !b.bucket.is_full(now));
                    if m.len() >= MAX_TRACKED_PEERS {
                        return Err(self.over());
                    }
                }
                let b = m.entry(addr).or_insert_with(|| self.new_budget(now));
                if b.bucket.try_take(now) {
                    if !self.all.lock().try_take(now) {
                        b.bucket.give_back();
                        return Err(self.over());
                    }
                    b.in_flight += 1;
                    return Ok(GatePass {
                        gate: self.clone(),
                        peer: addr,
                        paid: false,
                    });
                }
                if b.in_flight == 0 || now >= until {
                    return Err(self.over());
                }
                b.done.clone()
            };
            let wait = until.saturating_duration_since(now).min(RECHECK);
            let _ = tokio::time::timeout(wait, done.notified()).await;
        }
    }

    /// Spend one unit of `peer`'s budget for an unpaid task found out without a pass (an
    /// offline refusal, or a stake that failed after admission).
    pub fn charge(&self, peer: &PeerKey) {
        let now = Instant::now();
        let mut m = self.peers.lock();
        if !m.contains_key(&peer.address()) && m.len() >= MAX_TRACKED_PEERS {
            return;
        }
        let b = m
            .entry(peer.address())
            .or_insert_with(|| self.new_budget(now));
        b.bucket.try_take(now);
    }

    fn leave(&self, peer: &YggAddress, paid: bool) {
        let mut m = self.peers.lock();
        if let Some(b) = m.get_mut(peer) {
            b.in_flight = b.in_flight.saturating_sub(1);
            if paid {
                b.bucket.give_back();
                self.all.lock().give_back();
            }
            b.done.notify_waiters();
        }
    }

    /// The stake read for `job` within the last [`STAKE_TTL`], if any.
    pub fn cached_stake(&self, job: &JobId) -> Option<StakeInfo> {
        let m = self.stakes.lock();
        m.get(job)
            .filter(|(at, _)| at.elapsed() < STAKE_TTL)
            .map(|(_, s)| s.clone())
    }

    /// Keep a stake read for `job`.
    pub fn cache_stake(&self, job: JobId, info: StakeInfo) {
        let mut m = self.stakes.lock();
        if m.len() >= MAX_CACHED_STAKES {
            m.retain(|_, (at, _)| at.elapsed() < STAKE_TTL);
            if m.len() >= MAX_CACHED_STAKES {
                m.clear();
            }
        }
        m.insert(job, (Instant::now(), info));
    }

    /// The chain's time read within the last [`CLOCK_TTL`], if any.
    pub fn cached_chain_time(&self) -> Option<u64> {
        self.clock
            .lock()
            .and_then(|(at, t)| (at.elapsed() < CLOCK_TTL).then_some(t))
    }

    /// Keep a reading of the chain's time.
    pub fn cache_chain_time(&self, t: u64) {
        *self.clock.lock() = Some((Instant::now(), t));
    }
}

/// One unit of a peer's budget, held while its task's stake is read. Dropped unpaid, the
/// unit stays spent; [`GatePass::paid`] gives it back.
pub struct GatePass {
    gate: Arc<StakeGate>,
    peer: YggAddress,
    paid: bool,
}

impl GatePass {
    /// The stake checked out (or the chain, not the peer, failed): give the unit back.
    pub fn paid(mut self) {
        self.paid = true;
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        self.gate.leave(&self.peer, self.paid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_peer_that_never_pays_runs_dry_and_others_are_untouched() {
        let gate = StakeGate::new(3, 1);
        let (bad, good) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let mut passes = 0;
        for _ in 0..100 {
            match gate.enter(&bad, soon()).await {
                Ok(p) => {
                    passes += 1;
                    drop(p); // unpaid: the unit stays spent
                }
                Err(e) => assert_eq!(e.burst, 3),
            }
        }
        assert_eq!(passes, 3, "only the budget gets through");
        for _ in 0..100 {
            gate.enter(&good, soon()).await.unwrap().paid();
        }
    }

    #[tokio::test]
    async fn many_identities_share_one_budget_of_chain_reads() {
        let gate = StakeGate::new(3, 1);
        let mut passes = 0;
        for i in 0..1_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            if let Ok(p) = gate.enter(&PeerKey(k), soon()).await {
                passes += 1;
                drop(p);
            }
        }
        // 1,000 identities within their own budgets: the node's budget stops them.
        assert_eq!(passes, UNSTAKED_BURST_ALL);
    }

    #[tokio::test]
    async fn offline_refusals_spend_the_budget_too() {
        let gate = StakeGate::new(2, 1);
        let bad = PeerKey([1; 32]);
        gate.charge(&bad);
        gate.charge(&bad);
        assert!(gate.enter(&bad, soon()).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_tasks_of_a_paying_peer_wait_for_each_other_instead_of_failing() {
        let gate = StakeGate::new(2, 1);
        let peer = PeerKey([3; 32]);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let g = gate.clone();
            tasks.push(tokio::spawn(async move {
                let pass = g.enter(&peer, soon()).await?;
                tokio::task::yield_now().await;
                pass.paid();
                Ok::<_, OverBudget>(())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_hostile_burst_reads_the_chain_at_most_its_budget_at_once() {
        let gate = StakeGate::new(4, 1);
        let peer = PeerKey([4; 32]);
        let reads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let (g, reads) = (gate.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                if let Ok(pass) = g.enter(&peer, soon()).await {
                    reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    drop(pass); // no stake found
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
