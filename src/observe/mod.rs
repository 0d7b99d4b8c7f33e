//! What the retry layer reports, and to whom: `tracing`, the `metrics` facade, and your own
//! [`RetryObserver`]s. The metrics adapter is one observer among others, present whenever a
//! recorder was installed when the layer was built (with none, the layer skips metrics entirely).
//!
//! | when | tracing (level: [`ObserveConfig`]) | observer |
//! |---|---|---|
//! | each call of the inner service | | [`on_attempt`](RetryObserver::on_attempt) |
//! | each failed attempt | | [`on_failure`](RetryObserver::on_failure) |
//! | a retry is decided | `DEBUG` with attempt, delay, code, subcode | [`on_retry_scheduled`](RetryObserver::on_retry_scheduled) |
//! | the retry's call is made | | [`on_retry`](RetryObserver::on_retry) |
//! | rejected (not retryable) | `rejected_level` (`WARN`) with code, subcode, category, remedy | [`on_finish`](RetryObserver::on_finish) |
//! | exhausted, deadline, budget, service failure | `gave_up_level` (`WARN`) with the same fields and attempts | [`on_finish`](RetryObserver::on_finish) |
//! | success | | [`on_finish`](RetryObserver::on_finish) |
//! | the caller dropped the call | `DEBUG` | [`on_finish`](RetryObserver::on_finish) with [`Outcome::Cancelled`] |
//!
//! Each call through the layer runs in a span `callagent.create` (at `span_level`, `DEBUG` by
//! default as tower-http's `TraceLayer` does) with fields `layer`, `attempts`, `outcome` and
//! `subcode` (of the last failure), filled in when the call ends. The give-up events default to
//! `WARN`, not `ERROR`: in a retry storm every call gives up, and one error line per call drowns
//! the alert that matters; raise them where a give-up should page.
//!
//! No field ever holds the request or a token: only codes, subcodes, categories, counts and
//! durations.
//!
//! # Metrics
//!
//! | metric | type | labels | counts |
//! |---|---|---|---|
//! | `callagent_create_calls_total` | counter | `layer`, `outcome` | every call of the layer, by how it ended |
//! | `callagent_create_attempts_total` | counter | `layer` | every call of the inner service |
//! | `callagent_create_errors_total` | counter | `layer`, `code`, `subcode`, `category` | every failed attempt |
//! | `callagent_create_retries_total` | counter | `layer`, `subcode` | every retry made (the inner service called again), by the subcode that caused it |
//! | `callagent_create_duration_seconds` | histogram | `layer` | time from call to outcome |
//! | `callagent_create_attempts` | histogram | `layer` | attempts per finished call, except first-attempt successes (counted by `calls_total{outcome="success"}`) |
//! | `callagent_retry_delay_seconds` | histogram | `layer` | each wait before a retry that was made |
//! | `callagent_retry_budget_available` | gauge | `layer` | retries the budget would allow now, set when its window moves (under traffic, every `ttl / 10`), after each failure, and by the task `CallAgentRetryLayer::refresh_budget_gauge` through quiet spells; absent without a budget |
//!
//! `outcome` is one of `success`, `success_after_retry`, `rejected`, `exhausted`,
//! `deadline_exceeded`, `budget_exhausted`, `service_failed`, `cancelled` (the caller dropped the
//! call). `layer` is [`ObserveConfig::name`], empty by default: it tells two layers in one process
//! apart. A failed attempt that timed out locally has `code="none"`, `subcode="timeout"`; an
//! agent created but never connected (the [`connect`](crate::connect) check) `code="none"`,
//! `subcode="not_connected"`. An SDK error without a subcode (old SDKs throw every error with
//! subcode 0) has its code and `subcode="no_subcode"`. A call whose inner service failed
//! `poll_ready` before its first
//! attempt counts as `outcome="service_failed"` with no attempt.
//!
//! **Cardinality is bounded.** Series for every outcome and every catalog subcode (at its catalog
//! category) are registered when the layer is built, so a dashboard sees zeros, not gaps; their
//! handles are kept and the hot path never hashes a label set. Other categories of a known
//! subcode are registered on first use, once. A subcode outside the catalog (or a catalog subcode
//! with an unexpected code) gets series of its own, up to [`ObserveConfig::max_unknown_subcodes`]
//! distinct ones; after that it is counted under `code="other", subcode="other"`.
//!
//! **Install the recorder first.** Handles are resolved against the recorder installed when the
//! layer is built; a layer built before `PrometheusBuilder::install` (or any other recorder)
//! records nothing, and then skips the metrics' work altogether.
//!
//! Histograms: the Prometheus exporter renders summaries unless given buckets; give it
//! [`HISTOGRAM_BUCKETS`] so quantiles can be aggregated across instances (the `serve_metrics`
//! example shows how).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Level;

use crate::classify::Verdict;
use crate::outcome::Outcome;
use crate::validate::ConfigError;

mod recorder;

pub(crate) use recorder::Metrics;
pub use recorder::{
    ATTEMPTS, ATTEMPTS_BUCKETS, ATTEMPTS_PER_CALL, BUDGET_AVAILABLE, CALLS, DELAY, DELAY_BUCKETS, DURATION,
    DURATION_BUCKETS, ERRORS, HISTOGRAM_BUCKETS, RETRIES,
};

/// Receives the layer's events. Every method has an empty default; implement what you count.
/// Called inline on the request path: keep it cheap and non-blocking.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use callagent_retry::{CallAgentRetryLayer, RetryConfig};
/// use callagent_retry::observe::RetryObserver;
/// #[derive(Default)]
/// struct Attempts(AtomicU64);
/// impl RetryObserver for Attempts {
///     fn on_attempt(&self) { self.0.fetch_add(1, Ordering::Relaxed); }
/// }
/// // An `Arc` of an observer is one, so you can keep a handle to read it.
/// let attempts = Arc::new(Attempts::default());
/// let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().with_observer(attempts.clone());
/// ```
pub trait RetryObserver: Send + Sync + 'static {
    /// The inner service is about to be called.
    fn on_attempt(&self) {}
    /// An attempt failed; `verdict` says what it was and whether it is retryable.
    fn on_failure(&self, verdict: &Verdict) {
        let _ = verdict;
    }
    /// A retry is decided (and charged to the budget): after `delay`, once the inner service is
    /// ready, the call is made again. It may never be made: the caller can drop the call, the
    /// deadline can pass while the service is not ready.
    fn on_retry_scheduled(&self, verdict: &Verdict, delay: Duration) {
        let _ = (verdict, delay);
    }
    /// A retry is made: the inner service is called again, after waiting `delay`, because of the
    /// failure in `verdict`. Counted here, so retries = attempts − calls exactly.
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        let _ = (verdict, delay);
    }
    /// The call finished.
    fn on_finish(&self, call: &Finished) {
        let _ = call;
    }
}

/// How a call through the layer ended, as [`RetryObserver::on_finish`] sees it.
///
/// `#[non_exhaustive]`: more details of a call may be added.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// Calls made to the inner service.
    pub attempts: u32,
    /// Time from the call to its end, on tokio's clock.
    pub elapsed: Duration,
    /// The failure that stopped the call, for an outcome that gave up; `None` for a success or
    /// a cancelled call.
    pub stopped_by: Option<Verdict>,
}

impl Finished {
    pub(crate) fn new(
        outcome: Outcome,
        attempts: u32,
        elapsed: Duration,
        stopped_by: Option<&Verdict>,
    ) -> Self {
        Self { outcome, attempts, elapsed, stopped_by: stopped_by.copied() }
    }
}

/// A shared observer is an observer: keep one `Arc` to read it, give the layer another.
impl<T: RetryObserver + ?Sized> RetryObserver for Arc<T> {
    fn on_attempt(&self) {
        (**self).on_attempt();
    }
    fn on_failure(&self, verdict: &Verdict) {
        (**self).on_failure(verdict);
    }
    fn on_retry_scheduled(&self, verdict: &Verdict, delay: Duration) {
        (**self).on_retry_scheduled(verdict, delay);
    }
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        (**self).on_retry(verdict, delay);
    }
    fn on_finish(&self, call: &Finished) {
        (**self).on_finish(call);
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
    fn on_retry_scheduled(&self, verdict: &Verdict, delay: Duration) {
        self.0.on_retry_scheduled(verdict, delay);
        self.1.on_retry_scheduled(verdict, delay);
    }
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        self.0.on_retry(verdict, delay);
        self.1.on_retry(verdict, delay);
    }
    fn on_finish(&self, call: &Finished) {
        self.0.on_finish(call);
        self.1.on_finish(call);
    }
}

/// How the retry layer labels its metrics and at which levels it traces: the `[observe]` section
/// of the [config file](crate::config).
///
/// ```
/// use callagent_retry::{CallAgentRetryLayer, RetryConfig};
/// use callagent_retry::observe::ObserveConfig;
/// let observe = ObserveConfig { name: "acs".into(), gave_up_level: tracing::Level::ERROR, ..Default::default() };
/// let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().with_observe(observe).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveConfig {
    /// The `layer` label of the metrics and field of the span, to tell two layers in one process
    /// apart; empty by default. At most 64 characters.
    pub name: String,
    /// Subcodes outside the catalog get metric series of their own up to this many; the rest are
    /// counted as `other`. At most 1000.
    pub max_unknown_subcodes: usize,
    /// The level of the per-call span (`DEBUG`).
    #[serde(with = "crate::validate::level")]
    pub span_level: Level,
    /// The level of the event for a call rejected as not retryable (`WARN`).
    #[serde(with = "crate::validate::level")]
    pub rejected_level: Level,
    /// The level of the event for a call that ran out of attempts, time or budget, or whose
    /// inner service failed (`WARN`).
    #[serde(with = "crate::validate::level")]
    pub gave_up_level: Level,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_unknown_subcodes: 10,
            span_level: Level::DEBUG,
            rejected_level: Level::WARN,
            gave_up_level: Level::WARN,
        }
    }
}

impl ObserveConfig {
    /// Checks the bounds that keep metric cardinality in check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.chars().count() > 64 {
            return Err(ConfigError::invalid("name", "must be at most 64 characters (it is a metric label)"));
        }
        if self.max_unknown_subcodes > 1000 {
            return Err(ConfigError::invalid(
                "max_unknown_subcodes",
                format!(
                    "must be at most 1000 (each is a set of metric series), got {}",
                    self.max_unknown_subcodes
                ),
            ));
        }
        Ok(())
    }
}
