//! The layer's spans as OpenTelemetry sees them: tracing-opentelemetry into the SDK's in-memory
//! exporter, on paused time. Asserts the exported data: names, parent links, attributes, status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use callagent_retry::retry::Jitter;
use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, StopReason};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

/// A token whose text must appear in no exported attribute.
const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJza3lwZWlkIjoiYWNzOjEiLCJleHAiOjQxMDI0NDQ4MDB9.secret-signature";

/// Runs `f` with a subscriber that exports to memory; returns what was exported.
async fn exported<F: Future>(f: F) -> (F::Output, Vec<SpanData>) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    provider.force_flush().expect("flush");
    (out, exporter.get_finished_spans().expect("spans"))
}

fn attrs(span: &SpanData) -> HashMap<String, Value> {
    span.attributes.iter().map(|KeyValue { key, value, .. }| (key.to_string(), value.clone())).collect()
}

fn request() -> CreateAgentRequest {
    CreateAgentRequest::new("8:acs:1_alice", AccessToken::new(TOKEN), AgentKind::Acs)
}

fn no_token_anywhere(spans: &[SpanData]) {
    for span in spans {
        for (key, value) in attrs(span) {
            assert!(!value.as_str().contains("secret-signature"), "{key} carries the token");
            assert!(!value.as_str().contains("alice"), "{key} carries request content");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_retries_twice_and_succeeds_exports_a_span_per_attempt_under_the_call() {
    let failures = Arc::new(Mutex::new(vec![40104u32, 40114]));
    let svc = service_fn(move |_: CreateAgentRequest| {
        let next = failures.lock().unwrap().pop();
        async move { next.map_or(Ok("agent"), |sub| Err(CallAgentError::from_catalog(sub).unwrap())) }
    });
    let config = RetryConfig { jitter: Jitter::None, budget: None, ..Default::default() };
    let layer = CallAgentRetryLayer::new(config).unwrap();
    let (result, spans) = exported(layer.layer(svc).oneshot(request())).await;
    assert_eq!(result.unwrap(), "agent");

    let calls: Vec<_> = spans.iter().filter(|s| s.name == "callagent.create").collect();
    let mut attempts: Vec<_> = spans.iter().filter(|s| s.name == "callagent.attempt").collect();
    assert_eq!((calls.len(), attempts.len(), spans.len()), (1, 3, 4));
    let call = calls[0];
    attempts.sort_by_key(|s| attrs(s)["callagent.attempt"].as_str().parse::<u32>().unwrap());
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.parent_span_id, call.span_context.span_id(), "attempt {n} is a child of the call");
        assert_eq!(attempt.span_context.trace_id(), call.span_context.trace_id());
    }
    let a: Vec<_> = attempts.iter().map(|s| attrs(s)).collect();
    assert_eq!(a[0]["callagent.attempt"], Value::I64(1));
    assert_eq!(a[0]["callagent.retry.delay"], Value::F64(0.0));
    assert_eq!(a[0]["error.type"].as_str(), "40114");
    assert_eq!(a[0]["callagent.code"], Value::I64(408));
    assert_eq!(a[0]["callagent.category"].as_str(), "UnexpectedClientError");
    assert_eq!(a[0]["callagent.retryable"], Value::Bool(true));
    assert!(matches!(attempts[0].status, Status::Error { .. }), "{:?}", attempts[0].status);
    assert_eq!(a[1]["callagent.retry.delay"], Value::F64(0.5), "the wait before attempt 2");
    assert_eq!(a[1]["error.type"].as_str(), "40104");
    assert_eq!(a[2]["callagent.retry.delay"], Value::F64(1.0));
    assert!(!a[2].contains_key("error.type"), "the successful attempt has no error");
    assert_eq!(attempts[2].status, Status::Unset);

    let c = attrs(call);
    assert_eq!(c["outcome"].as_str(), "success_after_retry");
    assert_eq!(c["attempts"], Value::I64(3));
    assert!(!c.contains_key("error.type"));
    no_token_anywhere(&spans);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_exports_one_failed_attempt_and_a_failed_call() {
    let svc = service_fn(|_: CreateAgentRequest| async {
        Err::<(), _>(CallAgentError::from_catalog(40229).unwrap())
    });
    let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
    let (result, spans) = exported(layer.layer(svc).oneshot(request())).await;
    assert_eq!(result.unwrap_err().reason(), StopReason::Rejected);
    assert_eq!(spans.len(), 2);
    let attempt = spans.iter().find(|s| s.name == "callagent.attempt").expect("an attempt span");
    let call = spans.iter().find(|s| s.name == "callagent.create").expect("the call span");
    assert_eq!(attempt.parent_span_id, call.span_context.span_id());
    let a = attrs(attempt);
    assert_eq!(a["error.type"].as_str(), "40229");
    assert_eq!(a["callagent.category"].as_str(), "ExpectedError");
    assert_eq!(a["callagent.retryable"], Value::Bool(false));
    let c = attrs(call);
    assert_eq!((c["outcome"].as_str(), c["error.type"].as_str()), ("rejected".into(), "rejected".into()));
    assert_eq!(c["subcode"].as_str(), "40229");
    assert!(matches!(call.status, Status::Error { .. }));
    no_token_anywhere(&spans);
}
