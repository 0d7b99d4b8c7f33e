//! Instructions per call with the response future moved once per call, as a caller that spawns
//! it, selects on it or keeps it in a state machine of its own moves it (`instructions.rs` builds
//! the future in place). A binary of its own: in `instructions.rs`, a second driver of the same
//! service type changed how the layer's `poll` was inlined and moved every other figure.
//!
//! ```text
//! cargo bench -p callagent-bench --bench moved -- --save-summary=json
//! python3 benches/check_bounds.py
//! ```

use std::hint::black_box;

use callagent_bench::{Budgeted, Succeed, call_moved, default_layer};
use callagent_retry::CallAgentRetry;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tower::retry::{Retry, RetryLayer};
use tower::{Layer, Service};

/// Calls measured per benchmark, as in `instructions.rs` (`check_bounds.py` divides by it).
const CALLS: u32 = 100;

/// `n` calls through `svc`, each future moved once, which it hands back (dropping it is not
/// measured).
fn calls<S>(svc: S, n: u32) -> S
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    for request in 0..n {
        black_box(call_moved(&svc, request));
    }
    svc
}

fn setup_tower() -> Retry<Budgeted, Succeed> {
    calls(RetryLayer::new(Budgeted::default()).layer(Succeed), CALLS)
}

#[library_benchmark]
#[bench::call(setup = setup_tower)]
fn tower_retry_tps_budget_moved(svc: Retry<Budgeted, Succeed>) -> Retry<Budgeted, Succeed> {
    calls(svc, CALLS)
}

fn setup_layer() -> CallAgentRetry<Succeed> {
    calls(default_layer().layer(Succeed), CALLS)
}

#[library_benchmark]
#[bench::call(setup = setup_layer)]
fn layer_default_moved(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

library_benchmark_group!(
    name = future_moved,
    benchmarks = [tower_retry_tps_budget_moved, layer_default_moved]
);

main!(library_benchmark_groups = future_moved);
