//! The agent's spend budget: what a paid delegation may still spend in the rolling period
//! (`SPEND_BUDGET_USDC` per `SPEND_BUDGET_PERIOD_SECS`, docs/threat-model.md line 11).
//!
//! "The agent" is whoever holds this node's API token: spending needs it (an unpaid-only
//! caller spends nothing), and every door that spends (the API, the Ollama and OpenAI
//! front doors, MCP over HTTP or `edgent mcp`, the CLI) presents it, so they share one
//! budget. Once its candidates are known, a delegation reserves the most it can pay (the
//! dearest candidate's price, at most its `max_price`) before its first stake, and is
//! refused with 402 `budget_exhausted` when what was spent in the period, the reservations
//! under way and its own would pass the budget; when it ends, the reservation gives way to
//! what it paid (nothing when it failed: a failed attempt's stake is refunded). The record
//! is kept in memory: a restart forgets what was spent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most spends remembered: beyond it the two oldest merge (under the later time, so the
/// budget only errs on the safe side).
const MAX_SPENDS: usize = 1024;

/// The budget and what was spent of it.
pub struct SpendBudget {
    limit: u64,
    period: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When, and how much (base units), oldest first.
    spent: VecDeque<(Instant, u64)>,
    /// Reservations of the delegations under way.
    reserved: u64,
}

/// A refusal: the budget would be passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// What the refusal says, in words.
    pub detail: String,
    /// When enough of the period's spending has aged out, seconds, when it ever will.
    pub retry_after_secs: Option<u64>,
}

/// A delegation's reservation: released when dropped, unless [`Reservation::spend`] kept
/// what it paid.
pub struct Reservation<'a> {
    budget: &'a SpendBudget,
    units: u64,
}

impl SpendBudget {
    /// A budget of `limit` base units per rolling `period`.
    pub fn new(limit: u64, period: Duration) -> SpendBudget {
        SpendBudget {
            limit,
            period,
            state: Mutex::new(State::default()),
        }
    }

    /// Reserve `units` for one delegation, or say why not.
    pub fn reserve(&self, units: u64) -> Result<Reservation<'_>, Exhausted> {
        self.reserve_at(units, Instant::now())
    }

    fn reserve_at(&self, units: u64, now: Instant) -> Result<Reservation<'_>, Exhausted> {
        let mut st = self.state.lock();
        while st
            .spent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.period)
        {
            st.spent.pop_front();
        }
        let spent: u64 = st.spent.iter().map(|(_, u)| *u).sum();
        let committed = spent.saturating_add(st.reserved);
        if committed.saturating_add(units) > self.limit {
            // The earliest time enough spending has aged out (reservations may end sooner).
            let mut freed = self.limit.saturating_sub(committed);
            let retry = st.spent.iter().find_map(|(t, u)| {
                freed = freed.saturating_add(*u);
                (freed >= units).then(|| (*t + self.period).saturating_duration_since(now))
            });
            let usdc = crate::config::format_usdc;
            return Err(Exhausted {
                detail: format!(
                    "the spend budget is used up: {} of {} USDC spent or reserved in the last {} s, and this delegation may pay up to {} USDC (SPEND_BUDGET_USDC, SPEND_BUDGET_PERIOD_SECS)",
                    usdc(committed),
                    usdc(self.limit),
                    self.period.as_secs(),
                    usdc(units)
                ),
                retry_after_secs: retry.map(|d| d.as_secs().max(1)),
            });
        }
        st.reserved = st.reserved.saturating_add(units);
        Ok(Reservation {
            budget: self,
            units,
        })
    }

    fn record(&self, units: u64, at: Instant) {
        if units == 0 {
            return;
        }
        let mut st = self.state.lock();
        if st.spent.len() >= MAX_SPENDS {
            if let (Some((_, a)), Some((t, b))) = (st.spent.pop_front(), st.spent.pop_front()) {
                st.spent.push_front((t, a.saturating_add(b)));
            }
        }
        st.spent.push_back((at, units));
    }
}

impl Reservation<'_> {
    /// The delegation paid `units` (at most what it reserved is counted as reserved; what
    /// it paid is counted whole).
    pub fn spend(self, units: u64) {
        self.budget.record(units, Instant::now());
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut st = self.budget.state.lock();
        st.reserved = st.reserved.saturating_sub(self.units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_and_spending_are_bounded_by_the_budget_over_the_period() {
        let b = SpendBudget::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        let r1 = b.reserve_at(60, t0).unwrap();
        // 60 reserved: 50 more would pass 100.
        let e = b.reserve_at(50, t0).err().unwrap();
        assert!(e.detail.contains("0.00006 of 0.0001 USDC"), "{}", e.detail);
        assert_eq!(e.retry_after_secs, None, "nothing spent ages out");
        // It paid 30: 70 left.
        b.record(30, t0);
        drop(r1);
        let r2 = b.reserve_at(70, t0).unwrap();
        drop(r2); // failed: nothing spent
        let e = b
            .reserve_at(71, t0 + Duration::from_secs(10))
            .err()
            .unwrap();
        assert_eq!(
            e.retry_after_secs,
            Some(50),
            "the 30 spent at t0 ages out at 60 s"
        );
        // Once the period passed, the whole budget is there again.
        assert!(b.reserve_at(100, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn the_record_is_bounded_and_errs_on_the_safe_side() {
        let b = SpendBudget::new(u64::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_SPENDS as u64 + 10) {
            b.record(1, t0 + Duration::from_millis(i));
        }
        let st = b.state.lock();
        assert_eq!(st.spent.len(), MAX_SPENDS);
        assert_eq!(
            st.spent.iter().map(|(_, u)| *u).sum::<u64>(),
            MAX_SPENDS as u64 + 10
        );
    }
}
