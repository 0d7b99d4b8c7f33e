//! What the adapters report: `tracing` events, and calls to a [`RetryObserver`] that a metrics
//! adapter (or a test) implements to count what happens.
//!
//! | when | tracing | observer |
//! |---|---|---|
//! | each call of the inner service | | [`on_attempt`](RetryObserver::on_attempt) |
//! | each failed attempt | | [`on_failure`](RetryObserver::on_failure) |
//! | a retry is scheduled | `DEBUG` with attempt, delay, code, subcode | [`on_retry`](RetryObserver::on_retry) |
//! | rejected (not retryable) | `WARN` with code, subcode, category, remedy | [`on_finish`](RetryObserver::on_finish) |
//! | exhausted, deadline, budget, service failure | `ERROR` with the same fields and attempts | [`on_finish`](RetryObserver::on_finish) |
//! | success | | [`on_finish`](RetryObserver::on_finish) |
//! | the caller dropped the call | `DEBUG` | [`on_finish`](RetryObserver::on_finish) with [`Outcome::Cancelled`] |
//!
//! Each call through the layer runs in an `INFO` span `callagent.create` with fields `layer`,
//! `attempts`, `outcome` and `subcode` (of the last failure), filled in when the call ends. The
//! [`metrics`](crate::metrics) adapter is always an observer; [`RetryObserver`] adds your own.
//!
//! No field ever holds the request or a token: only codes, subcodes, categories, counts and
//! durations.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::Verdict;
use crate::decide::Stop;
use crate::metrics::Metrics;
use crate::outcome::Outcome;

/// Receives the layer's events. Every method has an empty default; implement what you count.
/// Called inline on the request path: keep it cheap and non-blocking.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use callagent_retry::observe::RetryObserver;
/// #[derive(Default)]
/// struct Attempts(AtomicU64);
/// impl RetryObserver for Attempts {
///     fn on_attempt(&self) { self.0.fetch_add(1, Ordering::Relaxed); }
/// }
/// ```
pub trait RetryObserver: Send + Sync + 'static {
    /// The inner service is about to be called.
    fn on_attempt(&self) {}
    /// An attempt failed; `verdict` says what it was and whether it is retryable.
    fn on_failure(&self, verdict: &Verdict) {
        let _ = verdict;
    }
    /// A retry will be made after `delay`, caused by the failure in `verdict`.
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        let _ = (verdict, delay);
    }
    /// The call finished.
    fn on_finish(&self, outcome: Outcome, attempts: u32, elapsed: Duration) {
        let _ = (outcome, attempts, elapsed);
    }
}

impl From<Stop> for Outcome {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Rejected => Outcome::Rejected,
            Stop::Exhausted => Outcome::Exhausted,
            Stop::DeadlineExceeded => Outcome::DeadlineExceeded,
            Stop::BudgetExhausted => Outcome::BudgetExhausted,
        }
    }
}

/// An optional number as a tracing field without allocating.
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// A pair of observers is an observer: both are told everything, in order.
impl<A: RetryObserver, B: RetryObserver> RetryObserver for (A, B) {
    fn on_attempt(&self) {
        self.0.on_attempt();
        self.1.on_attempt();
    }
    fn on_failure(&self, verdict: &Verdict) {
        self.0.on_failure(verdict);
        self.1.on_failure(verdict);
    }
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        self.0.on_retry(verdict, delay);
        self.1.on_retry(verdict, delay);
    }
    fn on_finish(&self, outcome: Outcome, attempts: u32, elapsed: Duration) {
        self.0.on_finish(outcome, attempts, elapsed);
        self.1.on_finish(outcome, attempts, elapsed);
    }
}

/// Everything a layer reports to: its metrics (always), tracing, and an optional observer.
pub(crate) struct Report {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) observer: Option<Arc<dyn RetryObserver>>,
}

impl Report {
    pub(crate) fn attempt(&self) {
        self.metrics.on_attempt();
        if let Some(o) = &self.observer {
            o.on_attempt();
        }
    }

    pub(crate) fn failure(&self, v: &Verdict) {
        self.metrics.on_failure(v);
        if let Some(o) = &self.observer {
            o.on_failure(v);
        }
    }

    /// A retry was scheduled after attempt number `attempt`.
    pub(crate) fn retry(&self, v: &Verdict, attempt: u32, delay: Duration) {
        tracing::debug!(
            attempt,
            delay_ms = delay.as_secs_f64() * 1e3,
            code = %Opt(v.code),
            subcode = %Opt(v.sub_code),
            category = v.category.as_str(),
            "call agent creation failed; retrying",
        );
        self.metrics.on_retry(v, delay);
        if let Some(o) = &self.observer {
            o.on_retry(v, delay);
        }
    }

    /// The call ended; `failure` is the last failure's verdict unless it succeeded or was
    /// cancelled. `span` is the call's span (or `Span::none()`).
    pub(crate) fn finish(
        &self,
        span: &tracing::Span,
        outcome: Outcome,
        failure: Option<&Verdict>,
        attempts: u32,
        elapsed: Duration,
    ) {
        span.record("attempts", attempts);
        span.record("outcome", outcome.as_str());
        if let Some(v) = failure {
            span.record("subcode", tracing::field::display(Opt(v.sub_code)));
            let (code, subcode, category) = (Opt(v.code), Opt(v.sub_code), v.category.as_str());
            let remedy = v
                .sub_code
                .and_then(crate::catalog::lookup)
                .map_or("unknown subcode: see the error's code and message", |e| e.remedy);
            if outcome == Outcome::Rejected {
                tracing::warn!(%code, %subcode, category, remedy, attempts, "call agent creation rejected: not retryable");
            } else {
                let elapsed_ms = elapsed.as_secs_f64() * 1e3;
                tracing::error!(%code, %subcode, category, remedy, attempts, elapsed_ms, outcome = outcome.as_str(),
                    "call agent creation gave up");
            }
        } else if outcome == Outcome::Cancelled {
            tracing::debug!(attempts, "call agent creation cancelled by the caller");
        }
        self.metrics.on_finish(outcome, attempts, elapsed);
        if let Some(o) = &self.observer {
            o.on_finish(outcome, attempts, elapsed);
        }
    }
}
