//! The layer's contract, on paused tokio time: exact and instant.

mod common;

use std::time::Duration;

use callagent_retry::retry::AttemptError;
use callagent_retry::retry::BudgetConfig;
use callagent_retry::retry::Jitter;
use callagent_retry::sdk::catalog::{self, Entry};
use callagent_retry::{
    CallAgentError, CallAgentRetryLayer, ErrorCategory, Outcome, RetryConfig, RetryError, StopReason,
};
use common::{Recorder, Scripted, Step, fail};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// Only the attempt limit; no deadline, no budget, no jitter.
fn plain() -> RetryConfig {
    RetryConfig { jitter: Jitter::None, deadline: None, budget: None, seed: Some(7), ..Default::default() }
}

async fn run(config: RetryConfig, svc: &Scripted) -> Result<String, RetryError<CallAgentError>> {
    CallAgentRetryLayer::new(config).unwrap().layer(svc.clone()).oneshot(0u32).await
}

fn entries(category: ErrorCategory) -> impl Iterator<Item = &'static Entry> {
    catalog::entries().iter().filter(move |e| e.category == category)
}

#[tokio::test(start_paused = true)]
async fn expected_errors_make_one_call_and_are_rejected_with_the_remedy() {
    for e in entries(ErrorCategory::ExpectedError) {
        let svc = Scripted::failing(e.sub_code, 10);
        let err = run(plain(), &svc).await.unwrap_err();
        assert!(err.reason() == StopReason::Rejected, "{}: {err}", e.sub_code);
        assert_eq!((svc.calls(), err.attempts()), (1, 1), "{}", e.sub_code);
        assert_eq!(err.remedy(), Some(e.remedy));
        assert_eq!(err.category(), ErrorCategory::ExpectedError);
        assert!(err.to_string().contains(e.remedy), "{err}");
        let last = err.into_inner().unwrap();
        assert_eq!((last.code(), last.sub_code(), last.message()), (e.code, e.sub_code, e.message));
    }
}

#[tokio::test(start_paused = true)]
async fn deterministic_failures_stop_at_once_whatever_their_category() {
    for e in catalog::entries().iter().filter(|e| e.deterministic) {
        let svc = Scripted::always(fail(e.sub_code));
        let err = run(plain(), &svc).await.unwrap_err();
        assert_eq!((err.reason(), svc.calls()), (StopReason::Rejected, 1), "{}", e.sub_code);
        assert_eq!(err.category(), e.category, "the SDK's category is kept");
        assert_eq!(err.remedy(), Some(e.remedy));
    }
}

#[tokio::test(start_paused = true)]
async fn unexpected_errors_retry_to_success_at_attempt_k_and_exhaust_at_the_limit() {
    for e in entries(ErrorCategory::UnexpectedClientError).filter(|e| !e.deterministic) {
        for k in 1..=4 {
            let svc = Scripted::failing(e.sub_code, k - 1);
            assert_eq!(run(plain(), &svc).await.unwrap(), "agent");
            assert_eq!(svc.calls(), k, "{} succeeding at attempt {k}", e.sub_code);
        }
        let svc = Scripted::failing(e.sub_code, 10);
        let err = run(plain(), &svc).await.unwrap_err();
        assert!(err.reason() == StopReason::Exhausted, "{err}");
        assert_eq!((svc.calls(), err.attempts()), (4, 4));
        assert_eq!(err.last_error().unwrap().sub_code(), e.sub_code);
    }
}

#[tokio::test(start_paused = true)]
async fn with_no_jitter_the_waits_are_exactly_the_schedule() {
    let svc = Scripted::failing(40114, 10);
    let config = RetryConfig { max_attempts: 6, max_backoff: Duration::from_secs(3), ..plain() };
    let started = Instant::now();
    let err = run(config, &svc).await.unwrap_err();
    assert_eq!(svc.gaps(), [500, 1000, 2000, 3000, 3000].map(|n| MS * n));
    assert_eq!(err.elapsed(), MS * 9500);
    assert_eq!(started.elapsed(), MS * 9500);
}

#[tokio::test(start_paused = true)]
async fn every_wait_lies_in_its_jitter_kinds_bounds() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated, Jitter::Proportional] {
        for seed in 0..25 {
            let svc = Scripted::failing(40104, 20);
            let config = RetryConfig {
                max_attempts: 9,
                initial_backoff: MS * 100,
                max_backoff: MS * 1000,
                jitter,
                randomization_factor: 0.5,
                seed: Some(seed),
                ..plain()
            };
            run(config, &svc).await.unwrap_err();
            let gaps = svc.gaps();
            assert_eq!(gaps.len(), 8);
            let mut prev = MS * 100;
            for (n, gap) in gaps.into_iter().enumerate() {
                let d = (MS * 100 * 2u32.pow(n as u32)).min(MS * 1000);
                let (lo, hi) = match jitter {
                    Jitter::Full => (Duration::ZERO, d),
                    Jitter::Equal => (d / 2, d),
                    Jitter::Decorrelated => (MS * 100, (prev * 3).min(MS * 1000)),
                    Jitter::Proportional => (d / 2, (d * 3 / 2).min(MS * 1000)),
                    _ => unreachable!(),
                };
                assert!(
                    gap >= lo && gap <= hi,
                    "{jitter:?} seed {seed} wait {n}: {gap:?} not in [{lo:?}, {hi:?}]"
                );
                prev = gap;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_waits() {
    let waits = |seed| async move {
        let svc = Scripted::failing(40114, 3);
        run(RetryConfig { jitter: Jitter::Full, seed: Some(seed), ..plain() }, &svc).await.unwrap();
        svc.gaps()
    };
    assert_eq!(waits(3).await, waits(3).await);
    assert_ne!(waits(3).await, waits(4).await);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_a_retry_that_would_end_past_it() {
    // Waits of 500 ms and 1 s fit in 2 s; the next (2 s, ending at 3.5 s) would not.
    let svc = Scripted::failing(40114, 10);
    let config = RetryConfig { max_attempts: 10, deadline: Some(MS * 2000), ..plain() };
    let err = run(config, &svc).await.unwrap_err();
    assert!(err.reason() == StopReason::DeadlineExceeded, "{err}");
    assert_eq!((svc.calls(), err.elapsed()), (3, MS * 1500));
    assert_eq!(err.last_error().unwrap().sub_code(), 40114);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_a_hanging_attempt_short() {
    let svc = Scripted::always(Step::Hang);
    let config = RetryConfig { deadline: Some(MS * 2000), ..plain() };
    let err = run(config, &svc).await.unwrap_err();
    assert!(err.reason() == StopReason::DeadlineExceeded, "{err}");
    assert_eq!((svc.calls(), err.elapsed()), (1, MS * 2000));
    assert_eq!(err.last_attempt(), &AttemptError::TimedOut { after: MS * 2000 });
    assert_eq!(svc.in_flight(), 0, "the hanging attempt was cancelled");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_cancels_the_attempt_and_is_retried() {
    let svc = Scripted::new([Step::Hang, Step::After(MS * 5000, Box::new(Step::Ok)), Step::Ok]);
    let config = RetryConfig { attempt_timeout: Some(MS * 1000), ..plain() };
    let started = Instant::now();
    assert_eq!(run(config.clone(), &svc).await.unwrap(), "agent");
    assert_eq!(svc.calls(), 3);
    assert_eq!(started.elapsed(), MS * (1000 + 500 + 1000 + 1000));
    assert_eq!(svc.in_flight(), 0);

    let svc = Scripted::always(Step::Hang);
    let err = run(RetryConfig { max_attempts: 2, ..config }, &svc).await.unwrap_err();
    assert!(err.reason() == StopReason::Exhausted, "{err}");
    assert_eq!(err.last_attempt(), &AttemptError::TimedOut { after: MS * 1000 });
    assert_eq!(err.category(), ErrorCategory::Unknown);
    assert!(err.into_inner().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_with_its_own_variant() {
    // Each call deposits half a retry: the first call cannot retry, the second can once.
    let config = RetryConfig {
        budget: Some(BudgetConfig { min_per_sec: 0, retry_percent: 0.5, ..Default::default() }),
        ..plain()
    };
    let svc = Scripted::always(fail(40114));
    let layer = CallAgentRetryLayer::new(config).unwrap();
    let first = layer.layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert!(first.reason() == StopReason::BudgetExhausted, "{first}");
    assert_eq!(first.attempts(), 1);
    let second = layer.layer(svc.clone()).oneshot(()).await.unwrap_err();
    assert!(second.reason() == StopReason::BudgetExhausted, "{second}");
    assert_eq!((second.attempts(), svc.calls()), (2, 3));
}

#[tokio::test(start_paused = true)]
async fn a_carried_category_beats_the_catalog() {
    let carried = |sub, cat| {
        let e = CallAgentError::from_catalog(sub).unwrap();
        Step::Fail(CallAgentError::new(e.code(), sub, e.message()).with_category(cat))
    };
    let svc = Scripted::always(carried(40114, ErrorCategory::ExpectedError));
    assert!(run(plain(), &svc).await.map_err(|e| e.reason()) == Err(StopReason::Rejected));
    assert_eq!(svc.calls(), 1);
    let svc = Scripted::new([carried(40228, ErrorCategory::UnexpectedClientError)]);
    assert!(run(plain(), &svc).await.is_ok());
    assert_eq!(svc.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn unknown_subcodes_follow_the_code_fallback() {
    for (code, calls) in [(503, 4), (429, 4), (408, 4), (400, 1), (404, 1)] {
        let svc = Scripted::always(Step::Fail(CallAgentError::new(code, 99_999, "new in a later SDK")));
        let err = run(plain(), &svc).await.unwrap_err();
        assert_eq!(svc.calls(), calls, "{code}");
        assert_eq!(err.remedy(), None);
        assert_eq!(err.category(), ErrorCategory::Unknown);
    }
}

#[tokio::test(start_paused = true)]
async fn an_override_beats_the_category() {
    let mut config = plain();
    config
        .overrides
        .insert(40114, callagent_retry::classify::SubcodeOverride { retry: false, max_attempts: None });
    config
        .overrides
        .insert(40104, callagent_retry::classify::SubcodeOverride { retry: true, max_attempts: Some(2) });
    let svc = Scripted::always(fail(40114));
    assert!(run(config.clone(), &svc).await.map_err(|e| e.reason()) == Err(StopReason::Rejected));
    assert_eq!(svc.calls(), 1);
    let svc = Scripted::always(fail(40104));
    assert!(run(config, &svc).await.map_err(|e| e.reason()) == Err(StopReason::Exhausted));
    assert_eq!(svc.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_makes_no_further_calls() {
    let svc = Scripted::always(fail(40114));
    let recorder = Recorder::default();
    let layer = CallAgentRetryLayer::new(plain()).unwrap().with_observer(recorder.clone());
    let mut retrying = layer.layer(svc.clone());
    let fut = ServiceExt::<()>::ready(&mut retrying).await.unwrap().call(());
    // Drive it into its first wait, then drop it.
    let fut = tokio::time::timeout(MS * 100, fut).await;
    assert!(fut.is_err(), "still waiting");
    assert_eq!(svc.calls(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(svc.calls(), 1);
    assert_eq!(recorder.events().finished, [(Outcome::Cancelled, 1)], "reported once, as cancelled");

    // Mid-attempt: the attempt in flight is dropped with it.
    let svc = Scripted::always(Step::Hang);
    let mut retrying = CallAgentRetryLayer::new(plain()).unwrap().layer(svc.clone());
    let fut = ServiceExt::<()>::ready(&mut retrying).await.unwrap().call(());
    assert!(tokio::time::timeout(MS * 100, fut).await.is_err());
    assert_eq!((svc.calls(), svc.in_flight()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_through_clones_share_one_budget() {
    // 1000 calls that always fail, each depositing a tenth of a retry: 100 retries in all.
    let config = RetryConfig {
        budget: Some(BudgetConfig { min_per_sec: 0, retry_percent: 0.1, ..Default::default() }),
        jitter: Jitter::Full,
        ..plain()
    };
    let svc = Scripted::always(fail(40114));
    let recorder = Recorder::default();
    let retrying =
        CallAgentRetryLayer::new(config).unwrap().with_observer(recorder.clone()).layer(svc.clone());
    let tasks: Vec<_> =
        (0..1000).map(|_| tokio::spawn(ServiceExt::<()>::oneshot(retrying.clone(), ()))).collect();
    let mut by_outcome = std::collections::BTreeMap::new();
    for t in tasks {
        *by_outcome.entry(t.await.unwrap().unwrap_err().outcome()).or_insert(0) += 1;
    }
    assert_eq!(svc.calls(), 1100);
    let events = recorder.events();
    assert_eq!(events.retries.len(), 100);
    assert_eq!(events.attempts, 1100);
    assert_eq!(by_outcome.values().sum::<i32>(), 1000);
    assert!(by_outcome.keys().all(|o| matches!(o, Outcome::BudgetExhausted | Outcome::Exhausted)));
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_every_attempt_failure_retry_and_outcome() {
    let recorder = Recorder::default();
    let layer = CallAgentRetryLayer::new(plain()).unwrap().with_observer(recorder.clone());
    let svc = Scripted::new([fail(40114), fail(40104)]);
    layer.layer(svc.clone()).oneshot(()).await.unwrap();
    let svc = Scripted::new([fail(40228)]);
    layer.layer(svc.clone()).oneshot(()).await.unwrap_err();
    let e = recorder.events();
    assert_eq!(e.attempts, 4);
    assert_eq!(e.failures.iter().map(|v| v.sub_code.unwrap()).collect::<Vec<_>>(), [40114, 40104, 40228]);
    assert_eq!(e.retries, [(Some(40114), MS * 500), (Some(40104), MS * 1000)]);
    assert_eq!(e.finished, [(Outcome::SuccessAfterRetry, 3), (Outcome::Rejected, 1)]);
}

#[test]
fn an_invalid_config_never_builds_a_layer() {
    let err = CallAgentRetryLayer::new(RetryConfig { max_attempts: 0, ..Default::default() }).unwrap_err();
    assert_eq!(err.field(), Some("max_attempts"));
}

/// Walks an error chain as `anyhow`'s `{:#}` and `eyre` print it: each level's own `Display`.
fn chain(err: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(Some(err), |e| e.source()).map(|e| e.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn an_error_chain_says_each_thing_once() {
    let layer = CallAgentRetryLayer::new(plain()).unwrap();
    let err = layer.layer(Scripted::always(fail(40229))).oneshot(()).await.unwrap_err();
    let levels = chain(&err);
    assert_eq!(levels.len(), 2, "{levels:#?}");
    assert!(
        levels[0].starts_with("call agent creation rejected (not retryable) after 1 attempt"),
        "{levels:#?}"
    );
    assert!(levels[0].contains("Remedy: Create a CallAgent"), "{levels:#?}");
    assert!(levels[1].starts_with("call agent creation failed: 403/40229"), "{levels:#?}");
    let joined = levels.join("\n");
    assert_eq!(joined.matches("403/40229").count(), 1, "{joined}");
    assert_eq!(
        joined.matches("Failed to create CallAgent").count() + joined.matches("must be created").count(),
        1,
        "{joined}"
    );

    // A local timeout is its own last level.
    let config = RetryConfig { attempt_timeout: Some(MS * 100), max_attempts: 1, ..plain() };
    let layer = CallAgentRetryLayer::new(config).unwrap();
    let err = layer.layer(Scripted::always(Step::Hang)).oneshot(()).await.unwrap_err();
    let levels = chain(&err);
    assert_eq!(levels.len(), 2, "{levels:#?}");
    assert_eq!(levels[1], "attempt timed out after 100 ms and was cancelled");
}

/// Ready only from `at` on (tokio's clock); the first attempt hangs, later ones succeed.
struct ReadyFrom {
    at: Instant,
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Clone for ReadyFrom {
    fn clone(&self) -> Self {
        Self { at: self.at, calls: self.calls.clone(), sleep: None }
    }
}

impl Service<u32> for ReadyFrom {
    type Response = &'static str;
    type Error = CallAgentError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<&'static str, CallAgentError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), CallAgentError>> {
        if self.calls.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return std::task::Poll::Ready(Ok(()));
        }
        let at = self.at;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, _: u32) -> Self::Future {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async { Ok("agent") })
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_retry_waits_for_readiness_until_the_deadline_not_a_stale_attempt_timer() {
    // The first attempt times out at 1 s (its timer fires); the retry has no delay, and the
    // service is not ready until 3 s: the call must wait for it (the deadline is 10 s), not stop
    // on the attempt timer that already fired.
    let start = Instant::now();
    let svc = ReadyFrom { at: start + MS * 3000, calls: Default::default(), sleep: None };
    let config = RetryConfig {
        initial_backoff: Duration::ZERO,
        attempt_timeout: Some(MS * 1000),
        deadline: Some(MS * 10_000),
        ..plain()
    };
    let agent = CallAgentRetryLayer::new(config).unwrap().layer(svc).oneshot(0).await.unwrap();
    assert_eq!((agent, Instant::now() - start), ("agent", MS * 3000));
}

/// A request that counts its clones.
#[derive(Debug)]
struct Counted(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(std::sync::Arc::clone(&self.0))
    }
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_can_never_retry_keeps_no_copy_of_the_request() {
    let clones = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = || clones.load(std::sync::atomic::Ordering::SeqCst);
    let svc =
        tower::service_fn(|_: Counted| async { Err::<(), _>(CallAgentError::from_catalog(40114).unwrap()) });
    let once = CallAgentRetryLayer::new(RetryConfig { max_attempts: 1, ..plain() }).unwrap();
    once.layer(svc).oneshot(Counted(clones.clone())).await.unwrap_err();
    assert_eq!(count(), 0, "max_attempts 1: nothing to retry with, so no copy");
    let twice = CallAgentRetryLayer::new(RetryConfig { max_attempts: 2, ..plain() }).unwrap();
    twice.layer(svc).oneshot(Counted(clones.clone())).await.unwrap_err();
    assert!(count() >= 1, "a retry needs the request again");
}
