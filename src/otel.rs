//! [`OtelMetrics`]: the layer's metrics as OpenTelemetry instruments (feature `otel`). An
//! adapter above the retry layer (it reads the layer's budget), beside [`observe`](crate::observe)'s
//! Prometheus-named metrics.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use opentelemetry::{KeyValue, Value};

use crate::classify::{Basis, Verdict};
use crate::observe::{DELAY_BUCKETS, DURATION_BUCKETS, Finished, RetryObserver};
use crate::retry::{CallAgentRetryLayer, Outcome, RetryBudget};
use crate::sdk::{ErrorCategory, catalog};

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
/// [`ObserveConfig::name`](crate::observe::ObserveConfig::name). `error.type` is the SDK subcode for a
/// catalog subcode, `timeout` or `not_connected` for this crate's own failures, and `_OTHER`
/// (the semantic conventions' value for the rest) otherwise, so cardinality is bounded by the
/// catalog. It is an observer, so it costs nothing on a layer it is not given to:
///
/// ```
/// use callagent_retry::{CallAgentRetryLayer, RetryConfig};
/// use callagent_retry::otel::OtelMetrics;
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
    // Attribute sets built once, so recording allocates nothing: the layer's own, per outcome,
    // and per failure label (each catalog row at its category, `timeout`, `not_connected`,
    // `_OTHER`).
    layer: Vec<KeyValue>,
    outcomes: Vec<Vec<KeyValue>>,
    known: Box<[Label]>,
    timeout: Label,
    not_connected: Label,
    other: Label,
}

/// The attribute sets of one failure label.
#[derive(Debug)]
struct Label {
    /// `error.type` (and the layer): for the retries counter.
    retries: Vec<KeyValue>,
    /// The same with the category it is expected at: for the errors counter.
    errors: Vec<KeyValue>,
    category: ErrorCategory,
}

impl Label {
    fn new(error_type: impl Into<Value>, category: ErrorCategory, layer: &[KeyValue]) -> Self {
        let retries: Vec<_> =
            std::iter::once(KeyValue::new("error.type", error_type)).chain(layer.iter().cloned()).collect();
        let mut errors = retries.clone();
        errors.push(KeyValue::new("callagent.category", category.as_str()));
        Self { retries, errors, category }
    }
}

impl OtelMetrics {
    /// Creates the instruments on `meter` for `layer` (its name and its budget).
    pub fn new<D, L>(meter: &Meter, layer: &CallAgentRetryLayer<D, L>) -> Self {
        let name = layer.observe_config().name.clone();
        let layer_attr: Vec<KeyValue> =
            if name.is_empty() { Vec::new() } else { vec![KeyValue::new("callagent.layer", name)] };
        let budget = layer.budget().map(|b| budget_gauge(meter, Arc::clone(b), layer_attr.clone()));
        let with_layer =
            |kv: KeyValue| std::iter::once(kv).chain(layer_attr.iter().cloned()).collect::<Vec<_>>();
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
            outcomes: Outcome::ALL
                .iter()
                .map(|o| with_layer(KeyValue::new("callagent.outcome", o.as_str())))
                .collect(),
            known: catalog::entries()
                .iter()
                .map(|e| Label::new(e.sub_code.to_string(), e.category, &layer_attr))
                .collect(),
            timeout: Label::new("timeout", ErrorCategory::Unknown, &layer_attr),
            not_connected: Label::new("not_connected", ErrorCategory::Unknown, &layer_attr),
            other: Label::new("_OTHER", ErrorCategory::Unknown, &layer_attr),
            layer: layer_attr,
        }
    }

    fn label(&self, v: &Verdict) -> &Label {
        match (v.basis, v.catalog_row()) {
            (Basis::LocalTimeout, _) => &self.timeout,
            (Basis::NotConnected, _) => &self.not_connected,
            (_, Some(row)) => &self.known[row],
            (_, None) => &self.other,
        }
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
        let label = self.label(verdict);
        if verdict.category == label.category {
            self.errors.add(1, &label.errors);
        } else {
            // A category other than the expected one (a carried category, an override): rare.
            let mut attrs = label.retries.clone();
            attrs.push(KeyValue::new("callagent.category", verdict.category.as_str()));
            self.errors.add(1, &attrs);
        }
    }

    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        self.retries.add(1, &self.label(verdict).retries);
        self.delay.record(delay.as_secs_f64(), &self.layer);
    }

    fn on_finish(&self, call: &Finished) {
        let attrs = &self.outcomes[call.outcome as usize];
        self.calls.add(1, attrs);
        self.duration.record(call.elapsed.as_secs_f64(), attrs);
    }
}
