//! Instructions per call with the response future awaited inside the caller's own `async fn`
//! (`callagent_bench::create`: `svc.ready().await?.call(request).await`), as users write it: the
//! future is built, then moved into the `async fn`'s state. A binary of its own, as `moved.rs`
//! is: a second driver of the same service type in `instructions.rs` changes how the layer's
//! `poll` is inlined there.
//!
//! ```text
//! cargo bench -p callagent-bench --bench awaited -- --save-summary=json
//! python3 benches/check_bounds.py
//! ```

use std::hint::black_box;

use callagent_bench::{Budgeted, Succeed, call_awaited, default_layer};
use callagent_retry::CallAgentRetry;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tower::retry::{Retry, RetryLayer};
use tower::{Layer, Service};

/// Calls measured per benchmark, as in `instructions.rs` (`check_bounds.py` divides by it).
const CALLS: u32 = 100;

/// `n` calls through `svc`, each awaited in the caller's `async fn`; hands `svc` back (dropping
/// it is not measured).
fn calls<S>(svc: S, n: u32) -> S
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    for request in 0..n {
        black_box(call_awaited(&svc, request));
    }
    svc
}

fn setup_tower() -> Retry<Budgeted, Succeed> {
    calls(RetryLayer::new(Budgeted::default()).layer(Succeed), CALLS)
}

#[library_benchmark]
#[bench::call(setup = setup_tower)]
fn tower_retry_tps_budget_awaited(svc: Retry<Budgeted, Succeed>) -> Retry<Budgeted, Succeed> {
    calls(svc, CALLS)
}

fn setup_layer() -> CallAgentRetry<Succeed> {
    calls(default_layer().layer(Succeed), CALLS)
}

#[library_benchmark]
#[bench::call(setup = setup_layer)]
fn layer_default_awaited(svc: CallAgentRetry<Succeed>) -> CallAgentRetry<Succeed> {
    calls(svc, CALLS)
}

library_benchmark_group!(
    name = future_awaited,
    benchmarks = [tower_retry_tps_budget_awaited, layer_default_awaited]
);

main!(library_benchmark_groups = future_awaited);
