//! The decision core: retry or stop, and how long to wait. No I/O, no clock, no tracing: the
//! adapters (the layer's service and future, and the tower policy) read tokio's clock, wait,
//! and report.
//!
//! For each failed attempt, classified once by the caller ([`Decider::classify`]), in order:
//! 1. not retryable → [`StopReason::Rejected`];
//! 2. attempts made ≥ the limit (an override's `max_attempts`, else the config's, lowered by the
//!    call's own), or the call kept nothing to call again with → [`StopReason::Exhausted`];
//! 3. draw the next delay (a `retry_after` hint replaces it, capped at `max_backoff`);
//! 4. the wait would not end before the call's deadline (the config's from the start, or the
//!    call's own if earlier) → [`StopReason::DeadlineExceeded`];
//! 5. withdraw from the budget; empty → [`StopReason::BudgetExhausted`];
//! 6. otherwise [`Decision::Retry`] after the delay, handing back what the call kept.
//!
//! The budget is charged last so a retry that would not happen anyway costs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::budget::RetryBudget;
use super::schedule::{Backoff, BackoffSchedule};
use super::{RetryConfig, StopReason};
use crate::classify::{Classify, Verdict, classify};
use crate::validate::ConfigError;

/// What to do after a failed attempt. `T` is what the call kept to call again with (the service
/// and the request): a retry hands it back, so a retry without it cannot be expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision<T> {
    /// Wait `delay`, then call again with `with`.
    Retry { delay: Duration, with: T },
    /// Give up.
    Stop(StopReason),
}

/// The per-call state of the core: attempts so far and the call's backoff.
#[derive(Debug, Clone)]
pub(crate) struct CallState {
    attempts: u32,
    // The call's own attempt limit (`u32::MAX`: none); it only ever lowers the config's.
    cap: u32,
    // Seeded on the first retry (seeds follow the order of first retries); 24 bytes inline, so
    // the retry path allocates nothing for it.
    backoff: Backoff,
}

impl CallState {
    /// Calls made to the inner service so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay of the retry decided last (zero before any).
    pub(crate) fn last_delay(&self) -> Duration {
        self.backoff.previous()
    }

    /// Lowers this call's attempt limit to `max_attempts` (a limit the request carries).
    pub(crate) fn cap_attempts(&mut self, max_attempts: u32) {
        self.cap = self.cap.min(max_attempts.max(1));
    }

    /// Records that an attempt is starting.
    pub(crate) fn start_attempt(&mut self) {
        self.attempts += 1;
    }
}

/// The shared, validated policy: one per layer, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Decider {
    config: RetryConfig,
    schedule: BackoffSchedule,
    budget: Option<Arc<RetryBudget>>,
    seed: u64,
    next_call: AtomicU64,
    may_retry: bool,
}

impl Decider {
    /// Validates `config` and builds the core (with a fresh budget).
    pub(crate) fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let budget = config.budget.as_ref().map(RetryBudget::new).transpose()?.map(Arc::new);
        let limit = config.max_attempts;
        let may_retry =
            limit > 1 || config.overrides.values().any(|o| o.retry && o.max_attempts.unwrap_or(limit) > 1);
        Ok(Self {
            schedule: BackoffSchedule::of(&config),
            seed: config.seed.unwrap_or_else(rand::random),
            budget,
            config,
            next_call: AtomicU64::new(0),
            may_retry,
        })
    }

    /// The validated config.
    pub(crate) fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The shared budget, if one is configured.
    pub(crate) fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// Whether any failure could be retried (if not, requests need not be kept for a retry).
    pub(crate) fn may_retry(&self) -> bool {
        self.may_retry
    }

    /// Starts a call at `now`: deposits into the budget. `now` may be `None` only when there is
    /// no budget (the caller then need not read the clock). Count the first attempt with
    /// [`CallState::start_attempt`]. The flag says the budget's window moved on: a moment to
    /// report its balance.
    #[inline]
    pub(crate) fn begin(&self, now: Option<Instant>) -> (CallState, bool) {
        debug_assert!(self.budget.is_none() || now.is_some(), "a budget needs the call's time");
        let moved = match (&self.budget, now) {
            (Some(b), Some(now)) => b.deposit_moving(now),
            _ => false,
        };
        (CallState { attempts: 0, cap: u32::MAX, backoff: Backoff::default() }, moved)
    }

    /// Classifies a failure by the config's overrides: once per failure; the verdict then feeds
    /// the decision, the error returned and every report.
    pub(crate) fn classify<F: Classify + ?Sized>(&self, failure: &F) -> Verdict {
        classify(failure, &self.config.overrides)
    }

    /// The deadline of a call that started at `started`: the config's, or `own` (a limit the
    /// request carries) if that is earlier.
    #[inline]
    pub(crate) fn deadline(&self, started: Instant, own: Option<Instant>) -> Option<Instant> {
        self.config.deadline.map(|d| started + d).into_iter().chain(own).min()
    }

    /// Decides after a failed attempt (`verdict`) of a call whose deadline is `deadline` (see
    /// [`Decider::deadline`]); `now` is the time of the failure, `keep` what the call kept to
    /// retry with. See the module docs for the order of the checks.
    // Always inlined: one caller per adapter, and out of line the call state goes through memory
    // (the instruction-count bench shows the cost; docs/performance.md).
    #[inline(always)]
    pub(crate) fn decide<T>(
        &self,
        call: &mut CallState,
        verdict: &Verdict,
        retry_after: Option<Duration>,
        keep: Option<T>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Decision<T> {
        if !verdict.retry {
            return Decision::Stop(StopReason::Rejected);
        }
        let Some(with) = keep.filter(|_| {
            call.attempts < verdict.max_attempts.unwrap_or(self.config.max_attempts).min(call.cap)
        }) else {
            return Decision::Stop(StopReason::Exhausted);
        };
        if call.backoff.retries() == 0 {
            // Seeds follow call order, so a seeded, deterministic workload repeats exactly.
            let n = self.next_call.fetch_add(1, Ordering::Relaxed);
            call.backoff = self.schedule.start(self.seed.wrapping_add(n));
        }
        let mut delay = call.backoff.next_delay(&self.schedule);
        if let Some(hint) = retry_after {
            delay = hint.min(self.config.max_backoff);
            // The wait taken, not the one drawn, is what decorrelated jitter builds on.
            call.backoff.set_previous(delay);
        }
        // The next attempt needs time of its own: its wait must end strictly before the deadline.
        if deadline.is_some_and(|d| now + delay >= d) {
            return Decision::Stop(StopReason::DeadlineExceeded);
        }
        if let Some(b) = &self.budget
            && !b.withdraw_at(now)
        {
            return Decision::Stop(StopReason::BudgetExhausted);
        }
        Decision::Retry { delay, with }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::SubcodeOverride;
    use crate::retry::{BudgetConfig, Jitter};
    use crate::sdk::CallAgentError;

    fn decider(config: RetryConfig) -> Decider {
        Decider::new(RetryConfig { jitter: Jitter::None, seed: Some(1), ..config }).unwrap()
    }

    fn timeout() -> CallAgentError {
        CallAgentError::from_catalog(40114).unwrap()
    }

    /// Runs failures through the core until it stops; returns the delays and the stop.
    fn run(d: &Decider, failure: &CallAgentError) -> (Vec<Duration>, StopReason) {
        let t0 = Instant::now();
        let mut now = t0;
        let (mut call, _) = d.begin(Some(now));
        let mut delays = vec![];
        loop {
            call.start_attempt();
            let verdict = d.classify(failure);
            match d.decide(&mut call, &verdict, None, Some(()), d.deadline(t0, None), now) {
                Decision::Retry { delay, .. } => {
                    delays.push(delay);
                    now += delay;
                }
                Decision::Stop(s) => return (delays, s),
            }
        }
    }

    #[test]
    fn stops_in_the_documented_order() {
        let d = decider(RetryConfig { budget: None, deadline: None, ..Default::default() });
        let (delays, stop) = run(&d, &timeout());
        assert_eq!(stop, StopReason::Exhausted);
        assert_eq!(delays, [500, 1000, 2000].map(Duration::from_millis));
        let (delays, stop) = run(&d, &CallAgentError::from_catalog(40228).unwrap());
        assert_eq!((delays.len(), stop), (0, StopReason::Rejected));
    }

    #[test]
    fn a_wait_ending_at_or_past_the_deadline_is_not_started() {
        // 500 + 1000 = 1.5 s elapsed; the next wait (2 s) would end at 3.5 s >= 3.5 s.
        let d = decider(RetryConfig {
            max_attempts: 10,
            deadline: Some(Duration::from_millis(3500)),
            budget: None,
            ..Default::default()
        });
        let (delays, stop) = run(&d, &timeout());
        assert_eq!((delays.len(), stop), (2, StopReason::DeadlineExceeded));
    }

    #[test]
    fn an_override_sets_its_own_attempt_limit() {
        let d = decider(RetryConfig {
            overrides: [(40114, SubcodeOverride { retry: true, max_attempts: Some(2) })].into(),
            budget: None,
            ..Default::default()
        });
        let (delays, stop) = run(&d, &timeout());
        assert_eq!((delays.len(), stop), (1, StopReason::Exhausted));
    }

    #[test]
    fn an_empty_budget_stops_and_charges_only_real_retries() {
        let d = decider(RetryConfig {
            budget: Some(BudgetConfig { min_per_sec: 0, retry_percent: 1.0, ..Default::default() }),
            ..Default::default()
        });
        // One deposit (this call) allows one retry.
        let (delays, stop) = run(&d, &timeout());
        assert_eq!((delays.len(), stop), (1, StopReason::BudgetExhausted));
        // A rejected failure withdraws nothing: the next call's deposit plus nothing spent = 1.
        let (_, stop) = run(&d, &CallAgentError::from_catalog(40228).unwrap());
        assert_eq!(stop, StopReason::Rejected);
        assert_eq!(d.budget().unwrap().available_at(Instant::now()), 1);
    }

    #[test]
    fn a_retry_after_hint_replaces_the_delay_up_to_the_cap() {
        struct Hint(Duration);
        impl Classify for Hint {
            fn code(&self) -> Option<u16> {
                Some(429)
            }
            fn sub_code(&self) -> Option<u32> {
                None
            }
            fn retry_after(&self) -> Option<Duration> {
                Some(self.0)
            }
        }
        let d = decider(RetryConfig { budget: None, deadline: None, ..Default::default() });
        let t0 = Instant::now();
        let (mut call, _) = d.begin(Some(t0));
        call.start_attempt();
        let decide = |call: &mut CallState, hint: Duration| {
            let failure = Hint(hint);
            d.decide(call, &d.classify(&failure), failure.retry_after(), Some(()), d.deadline(t0, None), t0)
        };
        assert_eq!(
            decide(&mut call, Duration::from_secs(3)),
            Decision::Retry { delay: Duration::from_secs(3), with: () }
        );
        assert_eq!(
            decide(&mut call, Duration::from_secs(300)),
            Decision::Retry { delay: Duration::from_secs(10), with: () }
        );
    }

    #[test]
    fn a_call_that_kept_nothing_to_retry_with_is_exhausted() {
        let d = decider(RetryConfig { budget: None, ..Default::default() });
        let t0 = Instant::now();
        let (mut call, _) = d.begin(Some(t0));
        call.start_attempt();
        let verdict = d.classify(&timeout());
        assert_eq!(
            d.decide::<()>(&mut call, &verdict, None, None, d.deadline(t0, None), t0),
            Decision::Stop(StopReason::Exhausted)
        );
    }

    #[test]
    fn an_invalid_config_never_builds() {
        assert!(Decider::new(RetryConfig { max_attempts: 0, ..Default::default() }).is_err());
    }
}
