//! The layer's metrics on an OpenTelemetry meter (`otel::OtelMetrics`, feature `otel`),
//! exported by the SDK's in-memory exporter: names, units, attributes and values.

mod common;

use std::time::Duration;

use callagent_retry::observe::ObserveConfig;
use callagent_retry::otel::OtelMetrics;
use callagent_retry::retry::{BudgetConfig, Jitter};
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use common::{Scripted, fail};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tower::{Layer, ServiceExt};

fn find<'a>(exported: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    exported
        .iter()
        .flat_map(|r| r.scope_metrics())
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .last()
        .unwrap_or_else(|| panic!("no instrument {name}"))
}

fn has(attrs: &[KeyValue], key: &str, value: &str) -> bool {
    attrs.iter().any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
}

/// Sum of a u64 counter's points whose attributes include `key = value` (all points if `key` is
/// empty); every point must carry the layer's name.
fn counter(metric: &Metric, key: &str, value: &str) -> u64 {
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
        panic!("{} is no u64 sum", metric.name())
    };
    sum.data_points()
        .map(|p| (p.attributes().cloned().collect::<Vec<_>>(), p.value()))
        .inspect(|(attrs, _)| assert!(has(attrs, "callagent.layer", "acs"), "{attrs:?}"))
        .filter(|(attrs, _)| key.is_empty() || has(attrs, key, value))
        .map(|(_, v)| v)
        .sum()
}

/// (count, sum) of an f64 histogram over all its points.
fn histogram(metric: &Metric) -> (u64, f64) {
    let AggregatedMetrics::F64(MetricData::Histogram(h)) = metric.data() else {
        panic!("{} is no f64 histogram", metric.name())
    };
    h.data_points().fold((0, 0.0), |(c, s), p| (c + p.count(), s + p.sum()))
}

#[tokio::test(start_paused = true)]
async fn the_layers_metrics_arrive_with_opentelemetry_names_units_and_attributes() {
    let exporter = InMemoryMetricExporter::default();
    let provider =
        SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let meter = provider.meter("callagent-test");

    let budget = BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 0, retry_percent: 1.0 };
    let config = RetryConfig { jitter: Jitter::None, budget: Some(budget), ..Default::default() };
    let layer = CallAgentRetryLayer::new(config)
        .unwrap()
        .with_observe(ObserveConfig { name: "acs".into(), ..Default::default() })
        .unwrap();
    let layer = {
        let otel = OtelMetrics::new(&meter, &layer);
        layer.with_observer(otel)
    };

    // A success after one retry (40114, 0.5 s), then a rejection (40229).
    layer.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap();
    layer.layer(Scripted::new([fail(40229)])).oneshot(0u32).await.unwrap_err();

    provider.force_flush().expect("flush");
    let exported = exporter.get_finished_metrics().expect("metrics");

    let calls = find(&exported, "callagent.create.calls");
    assert_eq!(calls.unit(), "{call}");
    assert_eq!(counter(calls, "callagent.outcome", "success_after_retry"), 1);
    assert_eq!(counter(calls, "callagent.outcome", "rejected"), 1);
    assert_eq!(counter(find(&exported, "callagent.create.attempts"), "", ""), 3);

    let errors = find(&exported, "callagent.create.errors");
    assert_eq!(counter(errors, "error.type", "40114"), 1);
    assert_eq!(counter(errors, "error.type", "40229"), 1);
    assert_eq!(counter(errors, "callagent.category", "ExpectedError"), 1);
    assert_eq!(counter(find(&exported, "callagent.create.retries"), "error.type", "40114"), 1);

    let duration = find(&exported, "callagent.create.duration");
    assert_eq!(duration.unit(), "s");
    assert_eq!(histogram(duration), (2, 0.5), "two calls; only the retried one waited");
    let delay = find(&exported, "callagent.retry.delay");
    assert_eq!((delay.unit(), histogram(delay)), ("s", (1, 0.5)));

    // Two calls deposited one retry each; one was taken.
    let gauge = find(&exported, "callagent.retry.budget.available");
    assert_eq!(gauge.unit(), "{retry}");
    let AggregatedMetrics::U64(MetricData::Gauge(g)) = gauge.data() else { panic!("not a u64 gauge") };
    let points: Vec<_> = g.data_points().map(|p| p.value()).collect();
    assert_eq!(points, [1]);
}
