//! [`OtelMetrics`]: the layer's metrics as OpenTelemetry instruments (feature `otel`).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

use super::{DELAY_BUCKETS, DURATION_BUCKETS, Finished, RetryObserver};
use crate::classify::Verdict;
use crate::retry::{CallAgentRetryLayer, RetryBudget};
use crate::sdk::catalog;

/// The layer's metrics on an OpenTelemetry [`Meter`], with OpenTelemetry's naming: dotted names,
/// units as UCUM (`s`, `{call}`), attributes from the semantic conventions where one exists
/// (`error.type`) and `callagent.*` otherwise.
///
/// | instrument | kind | unit | attributes |
/// |---|---|---|---|
/// | `callagent.create.calls` | counter | `{call}` | `callagent.outcome` |
/// | `callagent.create.attempts` | counter | `{attempt}` | |
/// | `callagent.create.errors` | counter | `{error}` | `error.type`, `callagent.category` |
/// | `callagent.create.retries` | counter | `{retry}` | `error.type` |
/// | `callagent.create.duration` | histogram | `s` | `callagent.outcome` |
/// | `callagent.retry.delay` | histogram | `s` | |
/// | `callagent.retry.budget.available` | gauge (observed at each collection) | `{retry}` | |
///
/// Every instrument also has `callagent.layer` when the layer has an
/// [`ObserveConfig::name`](super::ObserveConfig::name). `error.type` is the SDK subcode for a
/// catalog subcode, `timeout` or `not_connected` for this crate's own failures, and `_OTHER`
/// (the semantic conventions' value for the rest) otherwise, so cardinality is bounded by the
/// catalog. It is an observer, so it costs nothing on a layer it is not given to:
///
/// ```
/// use callagent_retry::{CallAgentRetryLayer, RetryConfig};
/// use callagent_retry::observe::OtelMetrics;
/// let meter = opentelemetry::global::meter("callagent");
/// let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
/// let otel = OtelMetrics::new(&meter, &layer);
/// let layer = layer.with_observer(otel);
/// ```
#[derive(Debug)]
pub struct OtelMetrics {
    calls: Counter<u64>,
    attempts: Counter<u64>,
    errors: Counter<u64>,
    retries: Counter<u64>,
    duration: Histogram<f64>,
    delay: Histogram<f64>,
    // Kept so the callback stays registered as long as the observer lives.
    _budget: Option<ObservableGauge<u64>>,
    /// `callagent.layer`, or nothing.
    layer: Vec<KeyValue>,
    /// `error.type` for each catalog row, built once.
    known: Box<[KeyValue]>,
}

impl OtelMetrics {
    /// Creates the instruments on `meter` for `layer` (its name and its budget).
    pub fn new<D, L>(meter: &Meter, layer: &CallAgentRetryLayer<D, L>) -> Self {
        let name = layer.observe_config().name.clone();
        let layer_attr: Vec<KeyValue> =
            if name.is_empty() { Vec::new() } else { vec![KeyValue::new("callagent.layer", name)] };
        let budget = layer.budget().map(|b| budget_gauge(meter, Arc::clone(b), layer_attr.clone()));
        Self {
            calls: meter
                .u64_counter("callagent.create.calls")
                .with_unit("{call}")
                .with_description("Call agent creations through the retry layer, by outcome.")
                .build(),
            attempts: meter
                .u64_counter("callagent.create.attempts")
                .with_unit("{attempt}")
                .with_description("Calls of the inner agent-creation service (first attempts and retries).")
                .build(),
            errors: meter
                .u64_counter("callagent.create.errors")
                .with_unit("{error}")
                .with_description("Failed attempts by subcode (error.type) and category.")
                .build(),
            retries: meter
                .u64_counter("callagent.create.retries")
                .with_unit("{retry}")
                .with_description("Retries made, by the subcode of the failure that caused them.")
                .build(),
            duration: meter
                .f64_histogram("callagent.create.duration")
                .with_unit("s")
                .with_description("Time from a call of the layer to its outcome.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            delay: meter
                .f64_histogram("callagent.retry.delay")
                .with_unit("s")
                .with_description("Each wait before a retry that was made.")
                .with_boundaries(DELAY_BUCKETS.to_vec())
                .build(),
            _budget: budget,
            known: catalog::entries()
                .iter()
                .map(|e| KeyValue::new("error.type", e.sub_code.to_string()))
                .collect(),
            layer: layer_attr,
        }
    }

    fn error_type(&self, v: &Verdict) -> KeyValue {
        if let Some(label) = v.local_label() {
            return KeyValue::new("error.type", label);
        }
        match v.catalog_row() {
            Some(row) => self.known[row].clone(),
            None => KeyValue::new("error.type", "_OTHER"),
        }
    }

    fn with_layer<const N: usize>(&self, attrs: [KeyValue; N]) -> Vec<KeyValue> {
        let mut all = Vec::with_capacity(N + self.layer.len());
        all.extend(attrs);
        all.extend(self.layer.iter().cloned());
        all
    }
}

/// `callagent.retry.budget.available`: read from the budget at each collection.
fn budget_gauge(meter: &Meter, budget: Arc<RetryBudget>, attrs: Vec<KeyValue>) -> ObservableGauge<u64> {
    meter
        .u64_observable_gauge("callagent.retry.budget.available")
        .with_unit("{retry}")
        .with_description("Retries the retry budget would allow now; falling toward 0 means a storm.")
        .with_callback(move |observer| {
            observer.observe(budget.available_at(tokio::time::Instant::now()), &attrs)
        })
        .build()
}

impl RetryObserver for OtelMetrics {
    fn on_attempt(&self) {
        self.attempts.add(1, &self.layer);
    }

    fn on_failure(&self, verdict: &Verdict) {
        let attrs = self.with_layer([
            self.error_type(verdict),
            KeyValue::new("callagent.category", verdict.category.as_str()),
        ]);
        self.errors.add(1, &attrs);
    }

    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        self.retries.add(1, &self.with_layer([self.error_type(verdict)]));
        self.delay.record(delay.as_secs_f64(), &self.layer);
    }

    fn on_finish(&self, call: &Finished) {
        let attrs = self.with_layer([KeyValue::new("callagent.outcome", call.outcome.as_str())]);
        self.calls.add(1, &attrs);
        self.duration.record(call.elapsed.as_secs_f64(), &attrs);
    }
}
