//! What the layer costs per call in time, against baselines measured in the same run
//! (indicative: wall time on a shared VM moves; `instructions` is the figure of record).
//!
//! ```text
//! cargo bench -p callagent-bench --bench overhead
//! ```
//!
//! Every variant clones the service, drives it ready, calls it once and polls the response
//! (the same driver as the instruction-count bench).

use std::hint::black_box;

use callagent_bench::{
    Attempts, Budgeted, FailEveryOther, Succeed, call_once, default_layer, lean_layer, peer_layer,
    prometheus_layer, zero_delay_layer,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tower::retry::RetryLayer;
use tower::{Layer, Service};

fn bench<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    g.bench_function(name, |b| b.iter(|| call_once(&svc, black_box(7))));
}

fn success_path(c: &mut Criterion) {
    let (prometheus, handle) = prometheus_layer();
    let mut g = c.benchmark_group("success_path");
    // Calibration: what one read of tokio's clock costs here.
    g.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    bench(&mut g, "bare_service", Succeed);
    bench(&mut g, "tower_retry_attempts_policy", RetryLayer::new(Attempts(3)).layer(Succeed));
    bench(&mut g, "tower_retry_tps_budget_policy", RetryLayer::new(Budgeted::default()).layer(Succeed));
    bench(&mut g, "callagent_layer_default_config", default_layer().layer(Succeed));
    bench(&mut g, "callagent_layer_no_budget_no_deadline", lean_layer().layer(Succeed));
    bench(&mut g, "callagent_layer_prometheus_recorder", prometheus.layer(Succeed));
    bench(&mut g, "peer_tower_resilience_retry_budget", peer_layer().layer(Succeed));
    g.finish();
    assert!(handle.render().contains("callagent_create_calls_total"), "the recorder saw the calls");
}

fn one_retry(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_retry_zero_delay");
    bench(
        &mut g,
        "tower_retry_attempts_policy",
        RetryLayer::new(Attempts(3)).layer(FailEveryOther::default()),
    );
    bench(&mut g, "callagent_layer", zero_delay_layer().layer(FailEveryOther::default()));
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
