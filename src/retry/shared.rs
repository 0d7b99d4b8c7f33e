//! [`Shared`]: what a layer, its services, their futures and its policy share. Below all of
//! them: each imports it, it imports none of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::RetryBudget;
use super::decide::{CallState, Decider, Decision};
use super::report::Reporter;
use crate::classify::Verdict;

/// What every clone of a layer and its services share: the decision core (with its budget) and
/// the reports.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) decider: Arc<Decider>,
    pub(crate) report: Reporter,
    /// Whether a call reads the clock when it starts: for the budget's deposit, or for the
    /// call's duration (a live recorder, an observer). Otherwise it reads the clock on first need
    /// (an attempt still pending, a failure), and a call that succeeds at once reads it never.
    pub(crate) start_clock: bool,
}

impl Shared {
    /// Starts a call (see [`Decider::begin`]); reports the budget's balance when its window
    /// moved on.
    // Always inlined: out of line the state comes back through memory (the instruction-count
    // bench shows the cost).
    #[inline(always)]
    pub(crate) fn begin(&self, now: Option<Instant>) -> CallState {
        let (call, moved) = self.decider.begin(now);
        if let (true, Some(now)) = (moved, now) {
            self.report_budget(now);
        }
        call
    }

    /// Decides after a failed attempt (see [`Decider::decide`]), and reports the budget's balance,
    /// which the decision may have drawn on.
    // Always inlined, as `begin`.
    #[inline(always)]
    pub(crate) fn decide_and_report<T>(
        &self,
        call: &mut CallState,
        verdict: &Verdict,
        retry_after: Option<Duration>,
        keep: Option<T>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Decision<T> {
        let decision = self.decider.decide(call, verdict, retry_after, keep, deadline, now);
        self.report_budget(now);
        decision
    }

    /// Reports the budget's balance, if there is a budget: once per budget window, and after a
    /// failure. The check is inline; the report (a lock and a gauge) is not.
    #[inline]
    pub(crate) fn report_budget(&self, now: Instant) {
        if let Some(b) = self.decider.budget() {
            self.report_balance(b, now);
        }
    }

    #[cold]
    fn report_balance(&self, budget: &RetryBudget, now: Instant) {
        self.report.budget(budget.available_at(now));
    }

    pub(crate) fn new(decider: Arc<Decider>, report: Reporter) -> Self {
        let start_clock = decider.budget().is_some() || report.needs_elapsed();
        Self { decider, report, start_clock }
    }
}
