//! What the layer costs per call, against baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! Every variant clones the service, drives it ready and calls it once, as a caller would.

mod common;

use std::hint::black_box;
use std::time::Duration;

use callagent_retry::retry::Jitter;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use common::{Attempts, FailEveryOther, Succeed, runtime};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::retry::RetryLayer;
use tower::{Layer, Service, ServiceExt};

fn bench<S>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, svc: S)
where
    S: Service<u32, Response = u32> + Clone + 'static,
    S::Error: std::fmt::Debug,
{
    let rt = runtime();
    c.bench_function(name, |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = svc.clone();
            async move { svc.ready().await.unwrap().call(black_box(7)).await.unwrap() }
        })
    });
}

fn success_path(c: &mut Criterion) {
    let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
    let no_budget =
        CallAgentRetryLayer::new(RetryConfig { budget: None, deadline: None, ..Default::default() }).unwrap();
    let mut g = c.benchmark_group("success_path");
    // Calibration: the layer reads tokio's clock twice per call (start, and finish for the
    // duration histogram).
    g.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    bench(&mut g, "bare_service", Succeed);
    bench(&mut g, "tower_retry_attempts_policy", RetryLayer::new(Attempts(3)).layer(Succeed));
    bench(&mut g, "tower_retry_callagent_policy", RetryLayer::new(layer.policy()).layer(Succeed));
    bench(&mut g, "callagent_layer_default_config", layer.layer(Succeed));
    bench(&mut g, "callagent_layer_no_budget_no_deadline", no_budget.layer(Succeed));
    g.finish();
}

fn one_retry(c: &mut Criterion) {
    let config = RetryConfig {
        initial_backoff: Duration::ZERO,
        jitter: Jitter::None,
        budget: None,
        deadline: None,
        ..Default::default()
    };
    let layer = CallAgentRetryLayer::new(config).unwrap();
    let mut g = c.benchmark_group("one_retry_zero_delay");
    bench(
        &mut g,
        "tower_retry_attempts_policy",
        RetryLayer::new(Attempts(3)).layer(FailEveryOther::default()),
    );
    bench(
        &mut g,
        "tower_retry_callagent_policy",
        RetryLayer::new(layer.policy()).layer(FailEveryOther::default()),
    );
    bench(&mut g, "callagent_layer", layer.layer(FailEveryOther::default()));
    g.finish();
}

fn future_sizes(_: &mut Criterion) {
    type Inner = <Succeed as Service<u32>>::Future;
    type Ours = <callagent_retry::CallAgentRetry<Succeed> as Service<u32>>::Future;
    type Towers = <tower::retry::Retry<Attempts, Succeed> as Service<u32>>::Future;
    println!(
        "future sizes (bytes): inner {}, callagent layer {}, tower Retry (Attempts policy) {}",
        size_of::<Inner>(),
        size_of::<Ours>(),
        size_of::<Towers>()
    );
}

criterion_group!(benches, future_sizes, success_path, one_retry);
criterion_main!(benches);
