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
//! - So are refusals (a negative cache, [`REFUSED_TTL`], at most [`MAX_REFUSED`] of each
//!   kind): a stake found ended or for another provider or key (by job: that never changes
//!   back), a stake not found (by job and sender: a stake may still land, so one peer's
//!   forged task must not refuse the honest requester's), and a wallet found short of the
//!   amount an authorization names (by wallet). A task the cache refuses costs no RPC call
//!   and none of the all-peers budget, only a unit of its peer's (threat model line 32).
//!
//! All this runs before the task is admitted to a slot or the queue (the provider's
//! `serve`), so an unstaked task never holds a slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::axl::identity::YggAddress;
use crate::axl::PeerKey;
use crate::chain::{FairStatus, StakeAuthorization, StakeInfo, StakeStatus};
use crate::mesh::limits::{TokenBucket, MAX_TRACKED_PEERS};
use crate::protocol::{JobId, Task};

use super::seams::{OverBudget, StakeRefusal};

/// How long a stake read is reused for the same job.
const STAKE_TTL: Duration = Duration::from_secs(30);
/// How long the chain's time is reused.
const CLOCK_TTL: Duration = Duration::from_secs(1);
/// Most stake reads kept.
const MAX_CACHED_STAKES: usize = 4_096;
/// How long a refused stake or an unfunded wallet is remembered (the negative cache).
pub const REFUSED_TTL: Duration = Duration::from_secs(30);
/// Most refusals kept, of each kind.
pub const MAX_REFUSED: usize = 4_096;
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
    refused: Mutex<Refused>,
    payee: Payee,
}

/// The negative cache: chain reads that refused a task, kept [`REFUSED_TTL`].
#[derive(Default)]
struct Refused {
    /// Stakes that will never pay this node (ended, another provider or key), by job.
    stakes: HashMap<JobId, (Instant, StakeInfo)>,
    /// Stakes not found, by job and the peer that claimed them.
    missing: HashMap<(JobId, YggAddress), Instant>,
    /// Wallets found holding less than an authorization named, with that balance.
    wallets: HashMap<Address, (Instant, U256)>,
}

/// Insert into a map bounded at [`MAX_REFUSED`]: entries past [`REFUSED_TTL`] go first,
/// then, if it is still full, all of them (an attacker's fill is forgotten, never grown).
fn insert_bounded<K: std::hash::Hash + Eq, V>(
    m: &mut HashMap<K, V>,
    k: K,
    v: V,
    at: impl Fn(&V) -> Instant,
) {
    if m.len() >= MAX_REFUSED && !m.contains_key(&k) {
        m.retain(|_, v| at(v).elapsed() < REFUSED_TTL);
        if m.len() >= MAX_REFUSED {
            m.clear();
        }
    }
    m.insert(k, v);
}

impl StakeGate {
    /// A gate giving each peer `burst` unpaid tasks, refilled at `per_min` a minute, for
    /// the provider `payee`.
    pub fn new(burst: u32, per_min: u32, payee: Payee) -> Arc<Self> {
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
            refused: Mutex::new(Refused::default()),
            payee,
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

    /// Why the stake read `info` refuses `from`'s task for `job` (not there, ended, or for
    /// another provider or key), remembered for [`REFUSED_TTL`]; `None` for an open stake
    /// of this provider (the caller's other checks follow).
    pub fn refusal_of_read(
        &self,
        from: &PeerKey,
        job: &JobId,
        info: &StakeInfo,
    ) -> Option<StakeRefusal> {
        if info.status == StakeStatus::None {
            self.remember_missing_stake(*job, from);
            return Some(StakeRefusal::NotStaked);
        }
        let refusal = refused_for_good(info, &self.payee)?;
        self.remember_refused_stake(*job, info.clone());
        Some(refusal)
    }

    /// A read of `job`'s stake within [`REFUSED_TTL`] that refused it for good (ended, or
    /// for another provider or key), if any.
    fn refused_stake(&self, job: &JobId) -> Option<StakeInfo> {
        let r = self.refused.lock();
        r.stakes
            .get(job)
            .filter(|(at, _)| at.elapsed() < REFUSED_TTL)
            .map(|(_, s)| s.clone())
    }

    /// Remember a stake read that refuses `job` for good.
    fn remember_refused_stake(&self, job: JobId, info: StakeInfo) {
        let mut r = self.refused.lock();
        insert_bounded(&mut r.stakes, job, (Instant::now(), info), |v| v.0);
    }

    /// Whether `peer` claimed `job`'s stake within [`REFUSED_TTL`] and the escrow had none.
    fn stake_missing(&self, job: &JobId, peer: &PeerKey) -> bool {
        let r = self.refused.lock();
        r.missing
            .get(&(*job, peer.address()))
            .is_some_and(|at| at.elapsed() < REFUSED_TTL)
    }

    /// Remember that the escrow had no stake for `job` when `peer` claimed one.
    fn remember_missing_stake(&self, job: JobId, peer: &PeerKey) {
        let mut r = self.refused.lock();
        insert_bounded(
            &mut r.missing,
            (job, peer.address()),
            Instant::now(),
            |at| *at,
        );
    }

    /// The balance `wallet` was found to hold, within [`REFUSED_TTL`], when it was short of
    /// an authorization's amount, if any.
    pub fn unfunded_balance(&self, wallet: &Address) -> Option<U256> {
        let r = self.refused.lock();
        r.wallets
            .get(wallet)
            .filter(|(at, _)| at.elapsed() < REFUSED_TTL)
            .map(|(_, b)| *b)
    }

    /// Remember that `wallet` holds `balance`, short of what an authorization named.
    pub fn remember_unfunded(&self, wallet: Address, balance: U256) {
        let mut r = self.refused.lock();
        insert_bounded(&mut r.wallets, wallet, (Instant::now(), balance), |v| v.0);
    }

    /// A refusal this negative cache already knows for `task` from `from` (with `auth`, its
    /// checked authorization, if any): a wallet short of the authorization's amount, a
    /// stake this peer claimed and the escrow did not have, or a stake that can never pay
    /// this provider. A refusal found here spends a unit of the peer's
    /// budget ([`StakeGate::charge`]) and none of the all-peers one.
    pub fn known_refusal(
        &self,
        from: &PeerKey,
        task: &Task,
        auth: Option<&StakeAuthorization>,
    ) -> Option<StakeRefusal> {
        let job = &task.job_id;
        let refusal = match auth {
            Some(auth) => {
                let balance = self.unfunded_balance(&auth.requester)?;
                (balance < auth.amount).then_some(StakeRefusal::Unfunded {
                    balance,
                    needed: auth.amount,
                })
            }
            None if self.stake_missing(job, from) => Some(StakeRefusal::NotStaked),
            None => refused_for_good(&self.refused_stake(job)?, &self.payee),
        };
        if let Some(e) = &refusal {
            self.charge(from);
            tracing::debug!(%job, from = %from.short(), error = %e, "task refused from the gate's negative cache");
        }
        refusal
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

/// Who a provider's stakes must pay: its wallet, and the commitment to its AXL key that
/// `submit` verifies its proof against.
#[derive(Debug, Clone, Copy)]
pub struct Payee {
    /// The provider's wallet.
    pub wallet: Address,
    /// [`crate::chain::key_commitment`] of the provider's AXL key.
    pub key: B256,
}

/// Why the stake `info`, found on chain, can never pay `payee` for its job: ended (or
/// submitted), for another provider, or for another key (`submit` verifies the proof
/// against the key the stake names). `None` for an open stake of `payee`.
pub fn refused_for_good(info: &StakeInfo, payee: &Payee) -> Option<StakeRefusal> {
    let (wallet, key) = (payee.wallet, payee.key);
    if info.status != StakeStatus::Staked {
        return Some(StakeRefusal::NotOpen(FairStatus::from_u8(
            info.status.as_u8(),
        )));
    }
    if info.provider != wallet {
        return Some(StakeRefusal::OtherProvider(info.provider));
    }
    if info.key_commitment != key {
        return Some(StakeRefusal::OtherKey(info.key_commitment));
    }
    None
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

    fn payee() -> Payee {
        Payee {
            wallet: Address::repeat_byte(7),
            key: B256::repeat_byte(8),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_peer_that_never_pays_runs_dry_and_others_are_untouched() {
        let gate = StakeGate::new(3, 1, payee());
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
        let gate = StakeGate::new(3, 1, payee());
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
        let gate = StakeGate::new(2, 1, payee());
        let bad = PeerKey([1; 32]);
        gate.charge(&bad);
        gate.charge(&bad);
        assert!(gate.enter(&bad, soon()).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_tasks_of_a_paying_peer_wait_for_each_other_instead_of_failing() {
        let gate = StakeGate::new(2, 1, payee());
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
        let gate = StakeGate::new(4, 1, payee());
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

    fn stake(status: StakeStatus, provider: Address) -> StakeInfo {
        StakeInfo {
            requester: Address::repeat_byte(1),
            provider,
            key_commitment: payee().key,
            amount: U256::from(10_000u64),
            created_at: 0,
            submitted_at: 0,
            deadline: 0,
            output_hash: B256::ZERO,
            status,
        }
    }

    fn task(job: JobId) -> Task {
        Task {
            job_id: job,
            model: "m".into(),
            prompt: "p".into(),
            options: None,
            stake: None,
            deadline_ms: 0,
            sender_ens: None,
            messages: None,
            stream: false,
            model_digest: None,
        }
    }

    #[test]
    fn a_missing_stake_is_remembered_for_its_claimer_only() {
        let gate = StakeGate::new(100, 1, payee());
        let (bad, honest) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let job = JobId::new();
        assert!(gate.known_refusal(&bad, &task(job), None).is_none());
        let read = stake(StakeStatus::None, Address::ZERO);
        assert!(matches!(
            gate.refusal_of_read(&bad, &job, &read),
            Some(StakeRefusal::NotStaked)
        ));
        for _ in 0..10 {
            assert!(matches!(
                gate.known_refusal(&bad, &task(job), None),
                Some(StakeRefusal::NotStaked)
            ));
        }
        // The stake may still land: another peer's (the requester's) task is not refused.
        assert!(gate.known_refusal(&honest, &task(job), None).is_none());
        // Each cached refusal spent a unit of the claimer's own budget (100 - 10 left).
        let mut left = 0;
        while gate
            .peers
            .lock()
            .get_mut(&bad.address())
            .unwrap()
            .bucket
            .try_take(Instant::now())
        {
            left += 1;
        }
        assert_eq!(left, 90);
    }

    #[test]
    fn a_stake_that_can_never_pay_this_provider_is_remembered_for_everyone() {
        let gate = StakeGate::new(100, 1, payee());
        let (a, b) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let (ended, other) = (JobId::new(), JobId::new());
        let open = JobId::new();
        let released = stake(StakeStatus::Released, payee().wallet);
        let elsewhere = stake(StakeStatus::Staked, Address::repeat_byte(9));
        let mine = stake(StakeStatus::Staked, payee().wallet);
        assert!(gate.refusal_of_read(&a, &ended, &released).is_some());
        assert!(gate.refusal_of_read(&a, &other, &elsewhere).is_some());
        assert!(gate.refusal_of_read(&a, &open, &mine).is_none());
        assert!(matches!(
            gate.known_refusal(&b, &task(ended), None),
            Some(StakeRefusal::NotOpen(_))
        ));
        assert!(matches!(
            gate.known_refusal(&b, &task(other), None),
            Some(StakeRefusal::OtherProvider(_))
        ));
        assert!(gate.known_refusal(&b, &task(open), None).is_none());
    }

    #[test]
    fn an_unfunded_wallet_is_remembered_until_an_amount_it_holds() {
        let gate = StakeGate::new(100, 1, payee());
        let peer = PeerKey([1; 32]);
        let wallet = Address::repeat_byte(5);
        let auth = |amount: u64| StakeAuthorization {
            job_id: B256::ZERO,
            requester: wallet,
            provider: payee().wallet,
            key_commitment: payee().key,
            amount: U256::from(amount),
            deadline: 0,
            valid_after: 0,
            valid_before: 0,
            signature: alloy::primitives::Signature::new(U256::ZERO, U256::ZERO, false),
        };
        let t = task(JobId::new());
        assert!(gate.known_refusal(&peer, &t, Some(&auth(10))).is_none());
        gate.remember_unfunded(wallet, U256::from(5u64));
        assert!(matches!(
            gate.known_refusal(&peer, &t, Some(&auth(10))),
            Some(StakeRefusal::Unfunded { .. })
        ));
        assert!(gate.known_refusal(&peer, &t, Some(&auth(5))).is_none());
    }

    #[test]
    fn the_negative_cache_is_bounded() {
        let gate = StakeGate::new(1, 1, payee());
        let peer = PeerKey([1; 32]);
        for i in 0..3 * MAX_REFUSED as u64 {
            gate.remember_missing_stake(JobId::new(), &peer);
            gate.remember_unfunded(Address::left_padding_from(&i.to_be_bytes()), U256::ZERO);
        }
        let r = gate.refused.lock();
        assert!(r.missing.len() <= MAX_REFUSED && r.wallets.len() <= MAX_REFUSED);
    }
}
