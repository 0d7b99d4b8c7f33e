//! The decision core: retry or stop, and how long to wait. No I/O, no clock, no tracing: the
//! adapters ([`CallAgentRetry`](crate::CallAgentRetry) and
//! [`CallAgentRetryPolicy`](crate::CallAgentRetryPolicy)) read tokio's clock, wait, and report.
//!
//! For each failed attempt, in order:
//! 1. [classify](crate::classify) it; not retryable → [`Stop::Rejected`];
//! 2. attempts made ≥ the limit (an override's `max_attempts`, else the config's) → [`Stop::Exhausted`];
//! 3. draw the next delay (a `retry_after` hint replaces it, capped at `max_backoff`);
//! 4. the wait would not end before the deadline → [`Stop::DeadlineExceeded`];
//! 5. withdraw from the budget; empty → [`Stop::BudgetExhausted`];
//! 6. otherwise [`Decision::Retry`] after the delay.
//!
//! The budget is charged last so a retry that would not happen anyway costs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffSchedule};
use crate::budget::RetryBudget;
use crate::classify::{Classify, Verdict, classify};
use crate::config::{ConfigError, RetryConfig};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait `delay`, then call again.
    Retry {
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// Give up.
    Stop(Stop),
}

/// Why the core gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stop {
    /// The failure is not retryable.
    Rejected,
    /// The attempt limit is reached.
    Exhausted,
    /// The next attempt could not start before the deadline.
    DeadlineExceeded,
    /// The retry budget is empty.
    BudgetExhausted,
}

/// The per-call state of the core: attempts so far and the call's backoff.
#[derive(Debug, Clone)]
pub struct CallState {
    attempts: u32,
    // Created (and boxed) on the first retry: the success path neither builds it nor carries its
    // ~200 bytes in every response future.
    backoff: Option<Box<Backoff>>,
}

impl CallState {
    /// Calls made to the inner service so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records that an attempt is starting.
    pub fn start_attempt(&mut self) {
        self.attempts += 1;
    }
}

/// The shared, validated policy: one per layer, behind an `Arc`.
#[derive(Debug)]
pub struct Decider {
    config: RetryConfig,
    schedule: BackoffSchedule,
    budget: Option<Arc<RetryBudget>>,
    seed: u64,
    next_call: AtomicU64,
    may_retry: bool,
}

impl Decider {
    /// Validates `config` and builds the core (with a fresh budget).
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let budget =
            config.budget.as_ref().map(|b| Arc::new(RetryBudget::new(b.ttl, b.min_per_sec, b.retry_percent)));
        let limit = config.max_attempts;
        let may_retry =
            limit > 1 || config.overrides.values().any(|o| o.retry && o.max_attempts.unwrap_or(limit) > 1);
        Ok(Self {
            schedule: config.schedule(),
            seed: config.seed.unwrap_or_else(rand::random),
            budget,
            config,
            next_call: AtomicU64::new(0),
            may_retry,
        })
    }

    /// The validated config.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The shared budget, if one is configured.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// Whether any failure could be retried (if not, requests need not be kept for a retry).
    pub fn may_retry(&self) -> bool {
        self.may_retry
    }

    /// Starts a call at `now`: deposits into the budget. Count the first attempt with
    /// [`CallState::start_attempt`].
    pub fn begin(&self, now: Instant) -> CallState {
        if let Some(b) = &self.budget {
            b.deposit_at(now);
        }
        CallState { attempts: 0, backoff: None }
    }

    /// Decides after a failed attempt of a call that started at `started`; `now` is the time of
    /// the failure. See the [module docs](self) for the order of the checks.
    pub fn decide<F: Classify + ?Sized>(
        &self,
        call: &mut CallState,
        failure: &F,
        started: Instant,
        now: Instant,
    ) -> (Verdict, Decision) {
        let verdict = classify(failure, &self.config.overrides);
        (verdict, self.decide_classified(call, &verdict, failure.retry_after(), started, now))
    }

    fn decide_classified(
        &self,
        call: &mut CallState,
        verdict: &Verdict,
        retry_after: Option<Duration>,
        started: Instant,
        now: Instant,
    ) -> Decision {
        if !verdict.retry {
            return Decision::Stop(Stop::Rejected);
        }
        if call.attempts >= verdict.max_attempts.unwrap_or(self.config.max_attempts) {
            return Decision::Stop(Stop::Exhausted);
        }
        let backoff = call.backoff.get_or_insert_with(|| {
            // Seeds follow call order, so a seeded, deterministic workload repeats exactly.
            let n = self.next_call.fetch_add(1, Ordering::Relaxed);
            Box::new(self.schedule.start(self.seed.wrapping_add(n)))
        });
        let mut delay = backoff.next_delay();
        if let Some(hint) = retry_after {
            delay = hint.min(self.config.max_backoff);
        }
        if let Some(deadline) = self.config.deadline {
            // The next attempt needs time of its own: its wait must end strictly before the deadline.
            if now.saturating_duration_since(started) + delay >= deadline {
                return Decision::Stop(Stop::DeadlineExceeded);
            }
        }
        if let Some(b) = &self.budget
            && !b.withdraw_at(now)
        {
            return Decision::Stop(Stop::BudgetExhausted);
        }
        Decision::Retry { delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallAgentError;
    use crate::backoff::Jitter;
    use crate::config::{BudgetConfig, SubcodeOverride};

    fn decider(config: RetryConfig) -> Decider {
        Decider::new(RetryConfig { jitter: Jitter::None, seed: Some(1), ..config }).unwrap()
    }

    fn timeout() -> CallAgentError {
        CallAgentError::from_catalog(40114).unwrap()
    }

    /// Runs failures through the core until it stops; returns the delays and the stop.
    fn run(d: &Decider, failure: &CallAgentError) -> (Vec<Duration>, Stop) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut call = d.begin(now);
        let mut delays = vec![];
        loop {
            call.start_attempt();
            match d.decide(&mut call, failure, t0, now).1 {
                Decision::Retry { delay } => {
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
        assert_eq!(stop, Stop::Exhausted);
        assert_eq!(delays, [500, 1000, 2000].map(Duration::from_millis));
        let (delays, stop) = run(&d, &CallAgentError::from_catalog(40228).unwrap());
        assert_eq!((delays.len(), stop), (0, Stop::Rejected));
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
        assert_eq!((delays.len(), stop), (2, Stop::DeadlineExceeded));
    }

    #[test]
    fn an_override_sets_its_own_attempt_limit() {
        let d = decider(RetryConfig {
            overrides: [(40114, SubcodeOverride { retry: true, max_attempts: Some(2) })].into(),
            budget: None,
            ..Default::default()
        });
        let (delays, stop) = run(&d, &timeout());
        assert_eq!((delays.len(), stop), (1, Stop::Exhausted));
    }

    #[test]
    fn an_empty_budget_stops_and_charges_only_real_retries() {
        let d = decider(RetryConfig {
            budget: Some(BudgetConfig { min_per_sec: 0, retry_percent: 1.0, ..Default::default() }),
            ..Default::default()
        });
        // One deposit (this call) allows one retry.
        let (delays, stop) = run(&d, &timeout());
        assert_eq!((delays.len(), stop), (1, Stop::BudgetExhausted));
        // A rejected failure withdraws nothing: the next call's deposit plus nothing spent = 1.
        let (_, stop) = run(&d, &CallAgentError::from_catalog(40228).unwrap());
        assert_eq!(stop, Stop::Rejected);
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
        let mut call = d.begin(t0);
        call.start_attempt();
        let (_, first) = d.decide(&mut call, &Hint(Duration::from_secs(3)), t0, t0);
        assert_eq!(first, Decision::Retry { delay: Duration::from_secs(3) });
        let (_, second) = d.decide(&mut call, &Hint(Duration::from_secs(300)), t0, t0);
        assert_eq!(second, Decision::Retry { delay: Duration::from_secs(10) });
    }

    #[test]
    fn an_invalid_config_never_builds() {
        assert!(Decider::new(RetryConfig { max_attempts: 0, ..Default::default() }).is_err());
    }
}
