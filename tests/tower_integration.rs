//! Readiness, tower's own Retry, and ServiceBuilder stacks.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use callagent_retry::retry::Jitter;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, Outcome, RetryConfig, StopReason};
use common::{Recorder, Scripted, Step, fail};
use tower::retry::RetryLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn plain() -> RetryConfig {
    RetryConfig { jitter: Jitter::None, deadline: None, budget: None, seed: Some(7), ..Default::default() }
}

#[tokio::test(start_paused = true)]
async fn tower_retry_with_the_policy_makes_the_same_decisions() {
    for (script, calls) in [
        (vec![fail(40114), fail(40104)], 3),                // success at attempt 3
        (vec![fail(40229)], 1),                             // ExpectedError: no retry
        (std::iter::repeat_n(fail(40114), 9).collect(), 4), // exhausted
    ] {
        let config = RetryConfig { jitter: Jitter::Full, ..plain() };
        let ours = Scripted::new(script.clone());
        let ours_rec = Recorder::default();
        let layer = CallAgentRetryLayer::new(config.clone()).unwrap().with_observer(ours_rec.clone());
        let a = layer.layer(ours.clone()).oneshot(()).await.map_err(|e| e.into_inner().unwrap());

        let theirs = Scripted::new(script);
        let theirs_rec = Recorder::default();
        let policy = CallAgentRetryLayer::new(config).unwrap().with_observer(theirs_rec.clone()).policy();
        let b = RetryLayer::new(policy).layer(theirs.clone()).oneshot(()).await;

        assert_eq!(a, b);
        assert_eq!((ours.calls(), theirs.calls()), (calls, calls));
        assert_eq!(ours.gaps(), theirs.gaps(), "same seed, same waits");
        let (x, y) = (ours_rec.events(), theirs_rec.events());
        assert_eq!((x.attempts, &x.retries, &x.finished), (y.attempts, &y.retries, &y.finished));
    }
}

#[tokio::test(start_paused = true)]
async fn the_policy_shares_the_layers_budget() {
    let config = RetryConfig {
        budget: Some(callagent_retry::retry::BudgetConfig {
            min_per_sec: 0,
            retry_percent: 1.0,
            ..Default::default()
        }),
        ..plain()
    };
    let layer = CallAgentRetryLayer::new(config).unwrap();
    // Two calls through the layer earn two retries, spent by one call through tower's Retry.
    for _ in 0..2 {
        layer.layer(Scripted::default()).oneshot(()).await.unwrap();
    }
    let svc = Scripted::always(fail(40114));
    RetryLayer::new(layer.policy()).layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert_eq!(svc.calls(), 4, "its own deposit plus the two earned: three retries");
}

/// A service that is never ready again once it has been called `ready_calls` times, and can be
/// made to fail `poll_ready` instead.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicU32>,
    ready_calls: u32,
    fail_ready: bool,
}

impl Service<()> for Flaky {
    type Response = ();
    type Error = CallAgentError;
    type Future = std::future::Ready<Result<(), CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        if self.calls.load(Ordering::SeqCst) < self.ready_calls {
            Poll::Ready(Ok(()))
        } else if self.fail_ready {
            Poll::Ready(Err(CallAgentError::new(503, 0, "backend gone")))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(CallAgentError::from_catalog(40114).unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_is_driven_before_each_retry() {
    let flaky = |fail_ready| Flaky { calls: Arc::default(), ready_calls: 1, fail_ready };
    // Never ready again: the deadline ends the wait for readiness, keeping the last error.
    let svc = flaky(false);
    let config = RetryConfig { deadline: Some(MS * 2000), ..plain() };
    let err = CallAgentRetryLayer::new(config).unwrap().layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert!(err.reason() == StopReason::DeadlineExceeded, "{err}");
    assert_eq!((svc.calls.load(Ordering::SeqCst), err.attempts(), err.elapsed()), (1, 1, MS * 2000));
    assert_eq!(err.last_error().unwrap().sub_code(), 40114);

    // Failing poll_ready: the service must not be called again.
    let svc = flaky(true);
    let recorder = Recorder::default();
    let layer = CallAgentRetryLayer::new(plain()).unwrap().with_observer(recorder.clone());
    let err = layer.layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert!(err.reason() == StopReason::ServiceFailed, "{err}");
    assert_eq!(err.last_error().unwrap().code(), 503);
    assert_eq!(svc.calls.load(Ordering::SeqCst), 1);
    assert_eq!(recorder.events().finished, [(Outcome::ServiceFailed, 1)]);

    // Failing poll_ready before the first call: no call, still counted once, with no attempt.
    let svc = Flaky { ready_calls: 0, ..flaky(true) };
    let recorder = Recorder::default();
    let layer = CallAgentRetryLayer::new(plain()).unwrap().with_observer(recorder.clone());
    let err = layer.layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert_eq!(
        (err.reason(), err.attempts(), err.last_error().unwrap().code()),
        (StopReason::ServiceFailed, 0, 503)
    );
    assert_eq!(svc.calls.load(Ordering::SeqCst), 0);
    let events = recorder.events();
    assert_eq!((events.attempts, &events.finished[..]), (0, &[(Outcome::ServiceFailed, 0)][..]));
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_its_turn_behind_a_concurrency_limit() {
    // The retry needs the single permit, which a hanging call holds until it times out at 3 s.
    let svc = Scripted::new([fail(40114), Step::After(MS * 3000, Box::new(Step::Ok))]);
    let stack = ServiceBuilder::new()
        .layer(CallAgentRetryLayer::new(plain()).unwrap())
        .concurrency_limit(1)
        .service(svc.clone());
    let mut a = stack.clone();
    let first = ServiceExt::<()>::ready(&mut a).await.unwrap().call(());
    let mut b = stack.clone();
    let first = tokio::spawn(first);
    tokio::time::sleep(MS * 10).await; // `first` failed and is waiting 500 ms
    let second = tokio::spawn(ServiceExt::<()>::ready(&mut b).await.unwrap().call(()));
    let started = tokio::time::Instant::now();
    assert_eq!(first.await.unwrap().unwrap(), "agent");
    assert_eq!(started.elapsed(), MS * 3000, "the retry waited for the permit");
    second.await.unwrap().unwrap();
    assert_eq!(svc.calls(), 3);
}

#[tokio::test]
async fn a_zero_delay_retries_at_once_not_on_the_next_timer_tick() {
    // A zero-length tokio sleep still waits for the next 1 ms tick (and is Pending on first poll);
    // with instant failures, a zero-delay retry must finish within a single poll.
    let config = RetryConfig { initial_backoff: Duration::ZERO, ..plain() };
    let layer = CallAgentRetryLayer::new(config).unwrap();
    let mut cx = Context::from_waker(std::task::Waker::noop());

    let svc = Scripted::new([fail(40114), fail(40114)]);
    let mut call = std::pin::pin!(layer.layer(svc.clone()).oneshot(()));
    assert!(call.as_mut().poll(&mut cx).is_ready());
    let policy_svc = Scripted::new([fail(40114), fail(40114)]);
    let mut call = std::pin::pin!(RetryLayer::new(layer.policy()).layer(policy_svc.clone()).oneshot(()));
    assert!(call.as_mut().poll(&mut cx).is_ready());
    assert_eq!((svc.calls(), policy_svc.calls()), (3, 3));
}
