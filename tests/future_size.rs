//! The response future stays small to move: a failure waits for its decision where the attempt's
//! future was, and the timer, a parked failure and its verdict are boxed on first need. A
//! committed bound (what the layout reaches), so a change that grows the hot state fails here.

use std::future::{Ready, ready};

use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
use tower::{Layer, Service, service_fn};

/// Bytes the layer's future may add to the inner future's (docs/performance.md).
const BOUND: usize = 88;

fn future_size<S: Service<u32>>(_: &S) -> usize {
    size_of::<S::Future>()
}

#[test]
fn the_response_future_adds_at_most_the_bound_to_the_inner_future() {
    let inner = service_fn(|n: u32| -> Ready<Result<u32, CallAgentError>> { ready(Ok(n)) });
    let layer = CallAgentRetryLayer::new(RetryConfig::default()).expect("valid config");
    let (inner_size, ours) = (future_size(&inner), future_size(&layer.layer(inner)));
    assert!(
        ours <= inner_size + BOUND,
        "response future {ours} bytes around an inner future of {inner_size}"
    );
}
