//! The layer's telemetry through OpenTelemetry: a span per call and per attempt (tracing +
//! tracing-opentelemetry) and the metrics on an OpenTelemetry meter (`OtelMetrics`), exported
//! here to memory and printed, where an application would configure an OTLP exporter.
//!
//! ```text
//! cargo run --example opentelemetry --features otel
//! ```
//!
//! Paused clock, no network: a scripted service fails with 40114 (retryable) on every third
//! creation's first attempt and rejects one creation with 40229 (ExpectedError).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use callagent_retry::observe::ObserveConfig;
use callagent_retry::otel::OtelMetrics;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

type BoxError = Box<dyn std::error::Error>;

async fn run() -> Result<(), BoxError> {
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("callagent")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let metrics = InMemoryMetricExporter::default();
    let meter_provider =
        SdkMeterProvider::builder().with_reader(PeriodicReader::builder(metrics.clone()).build()).build();
    let meter = meter_provider.meter("callagent");

    let layer = CallAgentRetryLayer::new(RetryConfig::default())?
        .with_observe(ObserveConfig { name: "acs".into(), ..Default::default() })?;
    let otel = OtelMetrics::new(&meter, &layer);
    let layer = layer.with_observer(otel);

    let calls = Arc::new(AtomicU32::new(0));
    let svc = layer.layer(service_fn(move |creation: u32| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            match (creation, n % 2) {
                (7, _) => Err(CallAgentError::from_catalog(40229).expect("a catalog subcode")),
                (c, 0) if c % 3 == 0 => Err(CallAgentError::from_catalog(40114).expect("a catalog subcode")),
                _ => Ok(format!("agent {creation}")),
            }
        }
    }));
    let mut outcomes = Vec::new();
    for creation in 0..12 {
        outcomes.push(svc.clone().oneshot(creation).await.map_err(|e| e.reason().as_str()));
    }
    println!("outcomes: {outcomes:?}\n");

    tracer_provider.force_flush()?;
    let exported = spans.get_finished_spans()?;
    println!("spans of creation 0 (one call span, an attempt span per try):");
    let first_call = exported.iter().filter(|s| s.name == "callagent.create").min_by_key(|s| s.start_time);
    if let Some(call) = first_call {
        let mut trace: Vec<_> =
            exported.iter().filter(|s| s.span_context.trace_id() == call.span_context.trace_id()).collect();
        trace.sort_by_key(|s| s.start_time);
        for span in trace {
            let indent = if span.span_id_is(call) { "" } else { "  " };
            // The layer's attributes; tracing-opentelemetry adds code locations and timings.
            let ours = ["layer", "attempts", "outcome", "subcode", "error.type"];
            let attrs: Vec<_> = span
                .attributes
                .iter()
                .filter(|kv| kv.key.as_str().starts_with("callagent.") || ours.contains(&kv.key.as_str()))
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect();
            println!("{indent}{} {:?} {}", span.name, span.status, attrs.join(" "));
        }
    }

    meter_provider.force_flush()?;
    println!("\nmetrics (OpenTelemetry names and units):");
    for resource in metrics.get_finished_metrics()?.iter().rev().take(1) {
        for metric in resource.scope_metrics().flat_map(|s| s.metrics()) {
            let values: Vec<String> = match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    sum.data_points().map(|p| format!("{}{}", p.value(), labels(p.attributes()))).collect()
                }
                AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                    g.data_points().map(|p| format!("{}{}", p.value(), labels(p.attributes()))).collect()
                }
                AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                    .data_points()
                    .map(|p| format!("count {} sum {:.3}{}", p.count(), p.sum(), labels(p.attributes())))
                    .collect(),
                _ => vec!["(other)".into()],
            };
            println!("  {} [{}]: {}", metric.name(), metric.unit(), values.join(", "));
        }
    }
    Ok(())
}

/// The attributes other than the layer's name, as `{k=v, ...}`.
fn labels<'a>(attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    let shown: Vec<_> = attrs
        .filter(|kv| kv.key.as_str() != "callagent.layer")
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    if shown.is_empty() { String::new() } else { format!(" {{{}}}", shown.join(", ")) }
}

/// Whether `span` is `call` itself.
trait SameSpan {
    fn span_id_is(&self, call: &Self) -> bool;
}

impl SameSpan for opentelemetry_sdk::trace::SpanData {
    fn span_id_is(&self, call: &Self) -> bool {
        self.span_context.span_id() == call.span_context.span_id()
    }
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opentelemetry: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("opentelemetry: {e}");
            ExitCode::FAILURE
        }
    }
}
