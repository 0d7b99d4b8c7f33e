//! The success path with no metrics recorder vs with a Prometheus recorder installed.
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! Both layers exist in one process: the first is built before the recorder is installed (its
//! handles are no-ops), the second after (its handles are live Prometheus counters).

mod common;

use std::hint::black_box;

use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use common::{Succeed, runtime};
use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{Layer, Service, ServiceExt};

fn recorder(c: &mut Criterion) {
    let without = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().layer(Succeed);
    let handle = PrometheusBuilder::new().install_recorder().expect("install recorder");
    let with = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().layer(Succeed);
    let rt = runtime();
    let mut g = c.benchmark_group("metrics_success_path");
    g.bench_function("bare_service", |b| {
        b.to_async(&rt).iter(|| async { Succeed.ready().await.unwrap().call(black_box(7)).await.unwrap() })
    });
    for (name, svc) in [("layer_no_recorder", without), ("layer_prometheus_recorder", with)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = svc.clone();
                async move { svc.ready().await.unwrap().call(black_box(7)).await.unwrap() }
            })
        });
    }
    g.finish();
    let rendered = handle.render();
    assert!(rendered.contains("callagent_create_calls_total"), "the recorder saw the calls");
}

criterion_group!(benches, recorder);
criterion_main!(benches);
