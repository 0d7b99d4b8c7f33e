//! The metrics adapter: a [`RetryObserver`] over the `metrics` facade (see the
//! [module docs](super) for the metrics, their labels and the cardinality bound).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, SharedString, Unit};

use super::{Finished, ObserveConfig, RetryObserver};
use crate::classify::{Basis, Verdict};
use crate::outcome::Outcome;
use crate::sdk::{ErrorCategory, catalog};

/// Calls per outcome.
pub const CALLS: &str = "callagent_create_calls_total";
/// Calls of the inner service.
pub const ATTEMPTS: &str = "callagent_create_attempts_total";
/// Failed attempts by code, subcode and category.
pub const ERRORS: &str = "callagent_create_errors_total";
/// Retries by the subcode that caused them.
pub const RETRIES: &str = "callagent_create_retries_total";
/// Call duration histogram.
pub const DURATION: &str = "callagent_create_duration_seconds";
/// Attempts-per-call histogram, for every finished call except first-attempt successes (those
/// are `calls_total{outcome="success"}`: a sample of 1 each would say the same again).
pub const ATTEMPTS_PER_CALL: &str = "callagent_create_attempts";
/// Retry delay histogram.
pub const DELAY: &str = "callagent_retry_delay_seconds";
/// Retries the budget would allow (gauge), set when the budget's window moves, after each
/// failure, and by [`CallAgentRetryLayer::refresh_budget_gauge`](crate::CallAgentRetryLayer::refresh_budget_gauge).
pub const BUDGET_AVAILABLE: &str = "callagent_retry_budget_available";

/// Suggested buckets for [`DURATION`], in seconds.
pub const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Suggested buckets for [`ATTEMPTS_PER_CALL`].
pub const ATTEMPTS_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];
/// Suggested buckets for [`DELAY`], in seconds.
pub const DELAY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Every histogram with its suggested buckets, to hand to an exporter in one loop:
///
/// ```text
/// let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
/// for (name, buckets) in callagent_retry::observe::HISTOGRAM_BUCKETS {
///     builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)?;
/// }
/// ```
pub const HISTOGRAM_BUCKETS: [(&str, &[f64]); 3] =
    [(DURATION, DURATION_BUCKETS), (ATTEMPTS_PER_CALL, ATTEMPTS_BUCKETS), (DELAY, DELAY_BUCKETS)];

fn category_index(c: ErrorCategory) -> usize {
    match c {
        ErrorCategory::ExpectedError => 0,
        ErrorCategory::UnexpectedClientError => 1,
        ErrorCategory::UnexpectedServerError => 2,
        ErrorCategory::Unknown => 3,
    }
}

/// Handles for one (code, subcode) label pair. The error counter of each category is registered
/// on first use (the catalog's category up front), then kept: each label set is hashed once.
#[derive(Debug)]
struct Series {
    code: SharedString,
    subcode: SharedString,
    errors: [OnceLock<Counter>; 4],
    retries: Counter,
}

impl Series {
    fn new(layer: &SharedString, code: String, subcode: String) -> Self {
        let subcode = SharedString::from(subcode);
        Self {
            retries: ::metrics::counter!(RETRIES, "layer" => layer.clone(), "subcode" => subcode.clone()),
            code: SharedString::from(code),
            subcode,
            errors: Default::default(),
        }
    }

    fn error(&self, layer: &SharedString, category: ErrorCategory) -> &Counter {
        self.errors[category_index(category)].get_or_init(|| {
            ::metrics::counter!(ERRORS, "layer" => layer.clone(), "code" => self.code.clone(),
                "subcode" => self.subcode.clone(), "category" => category.as_str())
        })
    }
}

/// Label pairs outside the catalog, admitted up to the bound; the map never grows past it.
#[derive(Debug, Default)]
struct Seen {
    series: HashMap<(Option<u16>, Option<u32>), Arc<Series>>,
}

/// The metrics adapter: an observer the layer always runs (with no recorder installed every
/// handle is a no-op).
#[derive(Debug)]
pub(crate) struct Metrics {
    layer: SharedString,
    calls: [Counter; Outcome::ALL.len()],
    attempts: Counter,
    duration: Histogram,
    attempts_per_call: Histogram,
    delay: Histogram,
    // Registered on first use: a layer without a budget has no such series.
    budget: OnceLock<Gauge>,
    known: Box<[Series]>,
    timeout: Series,
    not_connected: Series,
    other: Series,
    max_unknown: usize,
    seen: Mutex<Seen>,
}

impl Metrics {
    /// Describes the metrics and resolves every handle known in advance against the recorder
    /// installed now; `None` when that is `metrics`' no-op recorder (every handle would do
    /// nothing).
    pub(crate) fn resolve(config: &ObserveConfig) -> Option<Self> {
        if !recorder_is_live() {
            return None;
        }
        Some(Self::new(config))
    }

    fn new(config: &ObserveConfig) -> Self {
        describe();
        let layer = SharedString::from(config.name.clone());
        let calls = Outcome::ALL
            .map(|o| ::metrics::counter!(CALLS, "layer" => layer.clone(), "outcome" => o.as_str()));
        let known = catalog::entries()
            .iter()
            .map(|e| {
                let series = Series::new(&layer, e.code.to_string(), e.sub_code.to_string());
                series.error(&layer, e.category);
                series
            })
            .collect();
        Self {
            calls,
            attempts: ::metrics::counter!(ATTEMPTS, "layer" => layer.clone()),
            duration: ::metrics::histogram!(DURATION, "layer" => layer.clone()),
            attempts_per_call: ::metrics::histogram!(ATTEMPTS_PER_CALL, "layer" => layer.clone()),
            delay: ::metrics::histogram!(DELAY, "layer" => layer.clone()),
            budget: OnceLock::new(),
            known,
            timeout: Series::new(&layer, "none".into(), "timeout".into()),
            not_connected: Series::new(&layer, "none".into(), "not_connected".into()),
            other: Series::new(&layer, "other".into(), "other".into()),
            max_unknown: config.max_unknown_subcodes,
            seen: Mutex::default(),
            layer,
        }
    }

    /// The series for a failure's labels: the catalog row the verdict found (no lookup, no
    /// hashing), the local timeout, an admitted unknown pair, or `other` once the bound is reached.
    fn series(&self, v: &Verdict, f: impl FnOnce(&Series)) {
        if v.basis == Basis::LocalTimeout {
            return f(&self.timeout);
        }
        if v.basis == Basis::NotConnected {
            return f(&self.not_connected);
        }
        if let Some(row) = v.catalog_row()
            && v.entry().is_some_and(|e| v.code == Some(e.code))
        {
            return f(&self.known[row]);
        }
        let key = (v.code, v.sub_code);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let series = match seen.series.get(&key) {
            Some(series) => Arc::clone(series),
            None if seen.series.len() >= self.max_unknown => {
                drop(seen);
                return f(&self.other);
            }
            None => {
                let label = |n: Option<String>| n.unwrap_or_else(|| "none".to_owned());
                let series = Arc::new(Series::new(
                    &self.layer,
                    label(v.code.map(|c| c.to_string())),
                    // A subcode, or what stands for its absence (`no_subcode`).
                    match (v.sub_code, v.local_label()) {
                        (Some(s), _) => s.to_string(),
                        (None, label) => label.unwrap_or("none").to_owned(),
                    },
                ));
                seen.series.insert(key, Arc::clone(&series));
                series
            }
        };
        drop(seen);
        f(&series)
    }
}

/// `metrics` answers with its own zero-sized `NoopRecorder` when no recorder is installed, and
/// offers no other way to tell. Every real recorder holds state (a registry, an exporter), so a
/// zero-sized one is taken for the no-op; a zero-sized recorder of your own that forwards to
/// statics gets nothing from the layer (give it a field).
fn recorder_is_live() -> bool {
    ::metrics::with_recorder(|recorder| size_of_val(recorder) != 0)
}

fn describe() {
    use ::metrics::{describe_counter, describe_histogram};
    describe_counter!(CALLS, Unit::Count, "Call agent creations through the retry layer, by outcome.");
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Calls of the inner agent-creation service (first attempts and retries)."
    );
    describe_counter!(ERRORS, Unit::Count, "Failed attempts by the SDK's code, subcode and category.");
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Retries made (the inner service called again), by the subcode of the failure that caused them."
    );
    describe_histogram!(DURATION, Unit::Seconds, "Time from a call of the layer to its outcome.");
    describe_histogram!(
        ATTEMPTS_PER_CALL,
        Unit::Count,
        "Attempts made per finished call, except first-attempt successes (calls_total{outcome=\"success\"})."
    );
    describe_histogram!(DELAY, Unit::Seconds, "Each wait before a retry.");
    ::metrics::describe_gauge!(
        BUDGET_AVAILABLE,
        Unit::Count,
        "Retries the retry budget would allow now (set when its window moves, after each failure, and by refresh_budget_gauge)."
    );
}

impl RetryObserver for Metrics {
    #[inline]
    fn on_attempt(&self) {
        self.attempts.increment(1);
    }

    fn on_failure(&self, v: &Verdict) {
        self.series(v, |s| s.error(&self.layer, v.category).increment(1));
    }

    fn on_retry(&self, v: &Verdict, delay: Duration) {
        self.series(v, |s| s.retries.increment(1));
        self.delay.record(delay.as_secs_f64());
    }

    #[inline]
    fn on_finish(&self, call: &Finished) {
        self.calls[call.outcome as usize].increment(1);
        self.duration.record(call.elapsed.as_secs_f64());
        // A first-attempt success is already counted by `calls_total{outcome="success"}`; a
        // sample of 1 would say it again, at a histogram's cost.
        if call.outcome != Outcome::Success {
            self.attempts_per_call.record(f64::from(call.attempts));
        }
    }
}

impl Metrics {
    /// The budget's balance.
    pub(crate) fn on_budget(&self, available: u64) {
        let gauge =
            self.budget.get_or_init(|| ::metrics::gauge!(BUDGET_AVAILABLE, "layer" => self.layer.clone()));
        gauge.set(available as f64);
    }

    /// A call that never started: its inner service failed `poll_ready`.
    /// Not a failed attempt (no attempt was made), so no error series moves.
    pub(crate) fn on_not_ready(&self) {
        self.calls[Outcome::ServiceFailed as usize].increment(1);
    }
}
