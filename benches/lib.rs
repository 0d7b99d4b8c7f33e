//! Fixtures shared by the benches: the services, the tower baselines' policies, the layer
//! configurations measured, and one driver, so criterion and gungraun measure the same code.
//!
//! Every service here is ready at once and answers on the first poll: the benches measure what
//! a layer adds per call, not waiting.

use std::future::{Future as _, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use callagent_retry::observe::ObserveConfig;
use callagent_retry::retry::Jitter;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::Service;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

/// Creates an "agent" at once.
#[derive(Clone, Debug)]
pub struct Succeed;

impl Service<u32> for Succeed {
    type Response = u32;
    type Error = CallAgentError;
    type Future = Ready<Result<u32, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        ready(Ok(n))
    }
}

/// Fails every other call with 408/40114 (retryable): each call through a retry layer makes
/// exactly one retry.
#[derive(Clone, Debug, Default)]
pub struct FailEveryOther(Arc<AtomicU64>);

impl Service<u32> for FailEveryOther {
    type Response = u32;
    type Error = CallAgentError;
    type Future = Ready<Result<u32, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        if self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            ready(Err(CallAgentError::new(408, 40114, "timeout")))
        } else {
            ready(Ok(n))
        }
    }
}

/// The simplest useful tower policy: up to `n` retries, no delay, no classification. The
/// baseline for what retrying costs in tower itself.
#[derive(Clone, Debug)]
pub struct Attempts(pub usize);

impl<Req: Clone, Res, E> Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's budgeted policy, as its docs build one: a success deposits into a shared
/// [`TpsBudget`] (tower's defaults: 10 s, 10 retries/s reserve, 20%), a failure retries if the
/// budget allows.
#[derive(Clone, Debug)]
pub struct Budgeted(pub Arc<TpsBudget>);

impl Default for Budgeted {
    fn default() -> Self {
        Self(Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)))
    }
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// The layer with the default config: budget, 30 s deadline, jitter.
pub fn default_layer() -> CallAgentRetryLayer {
    CallAgentRetryLayer::new(RetryConfig::default()).expect("the default config is valid")
}

/// The layer with neither budget nor deadline.
pub fn lean_layer() -> CallAgentRetryLayer {
    CallAgentRetryLayer::new(RetryConfig { budget: None, deadline: None, ..Default::default() })
        .expect("valid config")
}

/// The layer with the budget but no deadline: what the budget alone costs.
pub fn budget_only_layer() -> CallAgentRetryLayer {
    CallAgentRetryLayer::new(RetryConfig { deadline: None, ..Default::default() }).expect("valid config")
}

/// The layer with the deadline but no budget: what the deadline alone costs.
pub fn deadline_only_layer() -> CallAgentRetryLayer {
    CallAgentRetryLayer::new(RetryConfig { budget: None, ..Default::default() }).expect("valid config")
}

/// An observer that counts attempts and finished calls: the cheapest useful one.
#[derive(Debug, Default)]
pub struct Counting {
    /// Attempts seen.
    pub attempts: AtomicU64,
    /// Calls finished.
    pub finished: AtomicU64,
}

impl callagent_retry::observe::RetryObserver for Counting {
    fn on_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    fn on_finish(&self, _: &callagent_retry::observe::Finished) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// The default layer with an observer: the observer makes the call read its duration.
pub fn observed_layer() -> CallAgentRetryLayer {
    default_layer().with_observer(Counting::default())
}

/// The nearest peer, `tower-resilience-retry`, configured as its docs configure a budgeted retry
/// for this job: 4 attempts, exponential backoff from 500 ms, a token-bucket budget (its
/// defaults: 10 a second, up to 100), retrying what the SDK marks retryable.
pub fn peer_layer() -> tower_resilience_retry::RetryLayer<u32, u32, CallAgentError> {
    let budget = tower_resilience_retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("a valid budget");
    tower_resilience_retry::RetryLayer::builder()
        .max_attempts(4)
        .exponential_backoff(Duration::from_millis(500))
        .retry_on(|e: &CallAgentError| {
            e.categories().contains(&callagent_retry::ErrorCategory::UnexpectedClientError)
        })
        .budget(budget)
        .build()
}

/// The layer for the one-retry path: no delay (so nothing waits), no budget, no deadline.
pub fn zero_delay_layer() -> CallAgentRetryLayer {
    CallAgentRetryLayer::new(RetryConfig {
        initial_backoff: Duration::ZERO,
        jitter: Jitter::None,
        budget: None,
        deadline: None,
        ..Default::default()
    })
    .expect("valid config")
}

/// The default layer with its metric handles resolved against a Prometheus recorder (local to
/// this call, so several variants can live in one process); the handle renders what it saw.
pub fn prometheus_layer() -> (CallAgentRetryLayer, PrometheusHandle) {
    with_prometheus(default_layer)
}

/// The layer `build` makes, its metric handles resolved against a Prometheus recorder of its
/// own.
pub fn with_prometheus(build: fn() -> CallAgentRetryLayer) -> (CallAgentRetryLayer, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let layer = metrics::with_local_recorder(&recorder, build);
    (layer, handle)
}

/// The Prometheus exporter's own share of what a call reports: the handles the layer resolves
/// for a first-attempt success (two counters and the duration histogram), on a recorder of
/// their own, with no layer around them. Its bench prices one increment of each counter and one
/// histogram sample: the floor under any layer that reports the same series to this exporter.
pub struct ExporterFloor {
    calls: metrics::Counter,
    attempts: metrics::Counter,
    duration: metrics::Histogram,
    // Keeps the recorder's registry alive.
    _handle: PrometheusHandle,
}

impl ExporterFloor {
    /// Registers the three series on a fresh local recorder.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // The series and labels the default layer registers (its name is empty).
        use callagent_retry::observe::{ATTEMPTS, CALLS, DURATION};
        let layer = ObserveConfig::default().name;
        let success = callagent_retry::Outcome::Success.as_str();
        metrics::with_local_recorder(&recorder, || Self {
            calls: metrics::counter!(CALLS, "layer" => layer.clone(), "outcome" => success),
            attempts: metrics::counter!(ATTEMPTS, "layer" => layer.clone()),
            duration: metrics::histogram!(DURATION, "layer" => layer.clone()),
            _handle: handle,
        })
    }

    /// What the exporter does for one successful call: two increments and one sample.
    pub fn report(&self, seconds: f64) {
        self.attempts.increment(1);
        self.calls.increment(1);
        self.duration.record(seconds);
    }
}

impl Default for ExporterFloor {
    fn default() -> Self {
        Self::new()
    }
}

/// One call as a caller makes it: clone the service, drive it ready, call, await. Every service
/// here completes on the first poll, so no runtime is needed and nothing else is measured.
///
/// # Panics
/// If the service is not ready at once or the call does not complete on its first poll (a
/// broken fixture, not a measurement).
// Always inlined: left to LLVM, whether it is inlined into each bench's loop changed when a
// bench was added (every figure moved by ~16), so figures would depend on the bench list.
#[inline(always)]
pub fn call_once<S>(svc: &S, request: u32) -> u32
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut svc = svc.clone();
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("bench service not ready at once: {:?}", other.map(|r| r.err())),
    }
    let future = pin!(svc.call(black_box(request)));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => panic!("bench call failed: {e:?}"),
        Poll::Pending => panic!("bench call did not complete on its first poll"),
    }
}

/// [`call_once`], with the response future moved once before it is polled, as a caller that
/// hands it to `tokio::spawn`, a `JoinSet`, `select!` or a state machine of its own moves it
/// (`call_once`'s future is built in place, which a caller cannot count on).
// Written out rather than shared with `call_once` through a flag: sharing changed the code
// `call_once` compiles to and moved every figure of record.
#[inline(always)]
pub fn call_moved<S>(svc: &S, request: u32) -> u32
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut svc = svc.clone();
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("bench service not ready at once: {:?}", other.map(|r| r.err())),
    }
    // `black_box` takes the future by value and hands it back: one move the optimizer must keep.
    let future = pin!(black_box(svc.call(black_box(request))));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => panic!("bench call failed: {e:?}"),
        Poll::Pending => panic!("bench call did not complete on its first poll"),
    }
}

/// A caller's own `async fn`, as users write one: wait until the service is ready, call it, and
/// await the response. Its state machine holds the response future, so the future is built and
/// then moved into it (what `call_once`, which builds it in place, never pays).
pub async fn create<S>(mut svc: S, request: u32) -> u32
where
    S: Service<u32, Response = u32>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt as _;
    let ready = svc.ready().await.expect("bench service ready");
    ready.call(request).await.expect("bench call succeeds")
}

/// One call through [`create`], the caller's `async fn`, polled once by a minimal executor (a
/// no-op waker: every service here completes on the first poll).
///
/// # Panics
/// If the call does not complete on its first poll (a broken fixture, not a measurement).
#[inline(always)]
pub fn call_awaited<S>(svc: &S, request: u32) -> u32
where
    S: Service<u32, Response = u32> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(create(svc.clone(), black_box(request)));
    match future.poll(&mut cx) {
        Poll::Ready(n) => n,
        Poll::Pending => panic!("bench call did not complete on its first poll"),
    }
}
