//! Instructions per call under callgrind (gungraun): exact and repeatable on a shared machine,
//! the figure of record. Baselines are measured in the same run; `check_bounds.py` turns the
//! counts into ratios and fails when one passes its committed bound (`bounds.toml`).
//!
//! ```text
//! cargo bench -p callagent-bench --bench instructions
//! python3 benches/check_bounds.py
//! ```
//!
//! Each benchmark makes [`CALLS`] calls through a service warmed up outside the measurement
//! (tracing callsites registered, budget windows started), so one-time costs do not count.

use std::hint::black_box;

use callagent_bench::{
    Attempts, Budgeted, ExporterFloor, FailEveryOther, Succeed, budget_only_layer, call_once,
    deadline_only_layer, default_layer, lean_layer, observed_layer, peer_layer, prometheus_layer,
    zero_delay_layer,
};
use callagent_retry::CallAgentRetry;
use gungraun::{library_benchmark, library_benchmark_group, main};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::retry::{Retry, RetryLayer};
use tower::{Layer, Service};

/// Calls measured per benchmark: `check_bounds.py` divides by this.
const CALLS: u32 = 100;
/// Calls made first by each benchmark's setup (a `setup =` function, not measured), so the
/// measured calls are steady state (tracing callsites registered, budget windows started); an
/// even number, so `FailEveryOther` starts the measured calls on a failure.
const WARM: u32 = CALLS;

/// `n` calls through `svc`, which it hands back (so dropping it is not measured).
fn calls<S>(svc: S, n: u32) -> S
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    for request in 0..n {
        black_box(call_once(&svc, request));
    }
    svc
}

fn setup_bare() -> Succeed {
    calls(Succeed, WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_bare)]
fn bare(svc: Succeed) -> Succeed {
    calls(svc, CALLS)
}

fn setup_tower_retry() -> Retry<Attempts, Succeed> {
    calls(RetryLayer::new(Attempts(3)).layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_tower_retry)]
fn tower_retry(svc: Retry<Attempts, Succeed>) -> Retry<Attempts, Succeed> {
    calls(svc, CALLS)
}

fn setup_tower_retry_tps_budget() -> Retry<Budgeted, Succeed> {
    calls(RetryLayer::new(Budgeted::default()).layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_tower_retry_tps_budget)]
fn tower_retry_tps_budget(svc: Retry<Budgeted, Succeed>) -> Retry<Budgeted, Succeed> {
    calls(svc, CALLS)
}

fn setup_layer_default() -> CallAgentRetry<Succeed> {
    calls(default_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_default)]
fn layer_default(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

fn setup_layer_no_budget_no_deadline() -> CallAgentRetry<Succeed> {
    calls(lean_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_no_budget_no_deadline)]
fn layer_no_budget_no_deadline(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

fn setup_layer_budget_only() -> CallAgentRetry<Succeed> {
    calls(budget_only_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_budget_only)]
fn layer_budget_only(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

fn setup_layer_deadline_only() -> CallAgentRetry<Succeed> {
    calls(deadline_only_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_deadline_only)]
fn layer_deadline_only(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

fn setup_layer_observer() -> CallAgentRetry<Succeed> {
    calls(observed_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_observer)]
fn layer_observer(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

type Peer = tower_resilience_retry::Retry<Succeed, u32, u32, callagent_retry::CallAgentError>;

fn setup_peer() -> Peer {
    calls(peer_layer().layer(Succeed), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_peer)]
fn peer_tower_resilience_retry(svc: Peer) -> Peer {
    calls(svc, CALLS)
}

fn with_prometheus() -> (CallAgentRetry<Succeed>, PrometheusHandle) {
    let (layer, handle) = prometheus_layer();
    (calls(layer.layer(Succeed), WARM), handle)
}

#[library_benchmark]
#[bench::call(setup = with_prometheus)]
fn layer_prometheus(
    (svc, handle): (CallAgentRetry<Succeed>, PrometheusHandle),
) -> (CallAgentRetry<Succeed>, PrometheusHandle) {
    (calls(svc, CALLS), handle)
}

fn setup_exporter_floor() -> ExporterFloor {
    let floor = ExporterFloor::new();
    for _ in 0..WARM {
        floor.report(black_box(0.001));
    }
    floor
}

// The exporter's own cost per call, with no layer: the floor under `layer_prometheus`'s extra.
#[library_benchmark]
#[bench::call(setup = setup_exporter_floor)]
fn prometheus_exporter_floor(floor: ExporterFloor) -> ExporterFloor {
    for _ in 0..CALLS {
        floor.report(black_box(0.001));
    }
    floor
}

fn setup_tower_retry_one_retry() -> Retry<Attempts, FailEveryOther> {
    calls(RetryLayer::new(Attempts(3)).layer(FailEveryOther::default()), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_tower_retry_one_retry)]
fn tower_retry_one_retry(svc: Retry<Attempts, FailEveryOther>) -> Retry<Attempts, FailEveryOther> {
    calls(svc, CALLS)
}

fn setup_layer_one_retry() -> CallAgentRetry<FailEveryOther> {
    calls(zero_delay_layer().layer(FailEveryOther::default()), WARM)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_one_retry)]
fn layer_one_retry(svc: CallAgentRetry<FailEveryOther>) -> CallAgentRetry<FailEveryOther> {
    calls(svc, CALLS)
}

fn setup_layer_one_retry_prometheus() -> (CallAgentRetry<FailEveryOther>, PrometheusHandle) {
    let (layer, handle) = callagent_bench::with_prometheus(zero_delay_layer);
    (calls(layer.layer(FailEveryOther::default()), WARM), handle)
}

#[library_benchmark]
#[bench::call(setup = setup_layer_one_retry_prometheus)]
fn layer_one_retry_prometheus(
    (svc, handle): (CallAgentRetry<FailEveryOther>, PrometheusHandle),
) -> (CallAgentRetry<FailEveryOther>, PrometheusHandle) {
    (calls(svc, CALLS), handle)
}

library_benchmark_group!(
    name = success_path,
    benchmarks = [
        bare,
        tower_retry,
        tower_retry_tps_budget,
        layer_default,
        layer_no_budget_no_deadline,
        layer_budget_only,
        layer_deadline_only,
        layer_observer,
        layer_prometheus,
        prometheus_exporter_floor,
        peer_tower_resilience_retry
    ]
);

library_benchmark_group!(
    name = one_retry_zero_delay,
    benchmarks = [tower_retry_one_retry, layer_one_retry, layer_one_retry_prometheus]
);

main!(library_benchmark_groups = success_path, one_retry_zero_delay);
