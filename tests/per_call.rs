//! Per-call options on paused time: attempt details on success, and limits the request carries
//! (tightening only, with the effective deadline told to the inner service).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::retry::{CallLimits, CarriesLimits, Jitter};
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, StopReason};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn config() -> RetryConfig {
    RetryConfig { jitter: Jitter::None, budget: None, seed: Some(1), ..Default::default() }
}

/// A creation request that carries its own limits and learns the call's deadline.
#[derive(Clone, Debug, Default)]
struct Request {
    limits: CallLimits,
    told: Option<Instant>,
}

impl CarriesLimits for Request {
    fn limits(&self) -> CallLimits {
        self.limits
    }
    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.told = deadline;
    }
}

/// What each attempt's request carried as the deadline, and when it was made.
type Seen = Arc<Mutex<Vec<(Option<Instant>, Instant)>>>;

/// Fails with 40114 (retryable) every time, recording the deadline each attempt's request
/// carried and when the attempt was made.
fn always_failing(
    seen: Seen,
) -> impl tower::Service<Request, Response = (), Error = CallAgentError, Future: Send> + Clone {
    service_fn(move |req: Request| {
        seen.lock().unwrap().push((req.told, Instant::now()));
        async { Err::<(), _>(CallAgentError::from_catalog(40114).unwrap()) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_success_after_two_failures_reports_its_attempts_delay_and_failures() {
    // Popped from the end: 40104 first, then 40114, then success.
    let script = Arc::new(Mutex::new(vec![
        CallAgentError::from_catalog(40114).unwrap(),
        CallAgentError::from_catalog(40104).unwrap(),
    ]));
    let svc = service_fn(move |(): ()| {
        let next = script.lock().unwrap().pop();
        async move { next.map_or(Ok("agent"), Err) }
    });
    let layer = CallAgentRetryLayer::new(config()).unwrap().with_attempt_details();
    let got = layer.layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.response, "agent");
    assert_eq!(got.details.attempts, 3);
    assert_eq!(got.details.total_delay, MS * 1500, "500 ms then 1 s, the schedule without jitter");
    let subcodes: Vec<_> = got.details.failures.iter().map(|v| v.sub_code).collect();
    assert_eq!(subcodes, [Some(40104), Some(40114)], "in the order they happened");
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_success_reports_one_attempt_and_nothing_else() {
    let layer = CallAgentRetryLayer::new(config()).unwrap().with_attempt_details();
    let svc = layer.layer(service_fn(|(): ()| async { Ok::<_, CallAgentError>(7) }));
    let got = svc.oneshot(()).await.unwrap();
    assert_eq!((got.response, got.details.attempts, got.details.total_delay), (7, 1, Duration::ZERO));
    assert!(got.details.failures.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_tightens_the_layers_and_the_inner_service_sees_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer =
        CallAgentRetryLayer::new(RetryConfig { max_attempts: 10, ..config() }).unwrap().with_request_limits();
    let start = Instant::now();
    let own = start + MS * 2000;
    let request = Request { limits: CallLimits::none().with_deadline(own), told: None };
    let err = layer.layer(always_failing(seen.clone())).oneshot(request).await.unwrap_err();
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    let seen = seen.lock().unwrap();
    // Attempts at 0, 0.5 s and 1.5 s; the next wait (2 s) would end past the 2 s deadline.
    let at: Vec<_> = seen.iter().map(|(_, t)| *t - start).collect();
    assert_eq!(at, [Duration::ZERO, MS * 500, MS * 1500]);
    assert!(
        seen.iter().all(|(told, _)| *told == Some(own)),
        "every attempt's request carries the call's deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_never_loosens_the_layers() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer =
        CallAgentRetryLayer::new(RetryConfig { max_attempts: 10, deadline: Some(MS * 1000), ..config() })
            .unwrap()
            .with_request_limits();
    let start = Instant::now();
    let request = Request { limits: CallLimits::none().with_deadline(start + MS * 60_000), told: None };
    let err = layer.layer(always_failing(seen.clone())).oneshot(request).await.unwrap_err();
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "0 s and 0.5 s; a 1 s wait would end at the layer's 1 s deadline");
    assert_eq!(seen[0].0, Some(start + MS * 1000), "the inner service is told the earlier deadline");
}

#[tokio::test(start_paused = true)]
async fn a_request_attempt_limit_tightens_but_never_loosens() {
    for (own, expected) in [(2, 2), (1, 1), (10, 4)] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let layer = CallAgentRetryLayer::new(RetryConfig { deadline: None, ..config() })
            .unwrap()
            .with_request_limits();
        let request = Request { limits: CallLimits::none().with_max_attempts(own), told: None };
        let err = layer.layer(always_failing(seen.clone())).oneshot(request).await.unwrap_err();
        assert_eq!(
            (err.reason(), err.attempts()),
            (StopReason::Exhausted, expected),
            "request asks for {own}"
        );
        assert_eq!(seen.lock().unwrap().len(), expected as usize);
        assert_eq!(seen.lock().unwrap()[0].0, None, "no deadline anywhere: none told");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_cuts_a_hanging_attempt_short() {
    let layer =
        CallAgentRetryLayer::new(RetryConfig { deadline: None, ..config() }).unwrap().with_request_limits();
    let hang = service_fn(|_: Request| std::future::pending::<Result<(), CallAgentError>>());
    let start = Instant::now();
    let request = Request { limits: CallLimits::none().with_deadline(start + MS * 3000), told: None };
    let err = layer.layer(hang).oneshot(request).await.unwrap_err();
    assert_eq!(Instant::now() - start, MS * 3000);
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
}
