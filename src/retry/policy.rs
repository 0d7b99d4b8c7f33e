//! [`CallAgentRetryPolicy`]: the same decisions for tower's own [`Retry`](tower::retry::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use tokio::time::{Instant, Sleep};
use tower::retry::Policy;

use super::Outcome;
use super::decide::{CallState, Decision};
use super::shared::Shared;
use crate::classify::{Classify, Verdict};

/// A [`tower::retry::Policy`] over the same decision core, budget and reports as the
/// [`CallAgentRetryLayer`](super::CallAgentRetryLayer) it came from
/// ([`CallAgentRetryLayer::policy`](super::CallAgentRetryLayer::policy)).
///
/// Differences, because tower's `Retry` owns the waiting: the error type stays the inner one
/// (there is no [`RetryError`](super::RetryError)), `attempt_timeout` is not enforced (wrap the
/// inner service in a timeout that yields a classifiable error if you need one), and the
/// deadline only stops retries from starting; it does not cut an attempt short.
///
/// ```
/// use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
/// use tower::{ServiceExt, retry::RetryLayer, Layer, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().policy();
/// let svc = RetryLayer::new(policy)
///     .layer(service_fn(|_: ()| async { Err::<(), _>(CallAgentError::from_catalog(40229).unwrap()) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert_eq!(err.sub_code(), 40229); // an ExpectedError: not retried
/// # }
/// ```
#[derive(Clone)]
pub struct CallAgentRetryPolicy {
    shared: Arc<Shared>,
    call: Option<Call>,
}

#[derive(Clone, Debug)]
struct Call {
    state: CallState,
    started: Instant,
    // The decided retry, reported as made when tower makes its call.
    pending: Option<(Verdict, Duration)>,
    // Set once a retry is scheduled: tower calls `clone_request` on its template policy before
    // each call and on the per-call clone before each retry; only the former starts a call.
    retrying: bool,
}

pin_project! {
    /// The wait before a retry of [`CallAgentRetryPolicy`]: tokio's clock, or nothing at all for
    /// a zero delay (a zero-length tokio sleep still waits for the next timer tick, 1 ms).
    #[derive(Debug)]
    pub struct RetryDelay {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl CallAgentRetryPolicy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, call: None }
    }
}

impl fmt::Debug for CallAgentRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallAgentRetryPolicy")
            .field("attempts", &self.call.as_ref().map(|c| c.state.attempts()))
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E> Policy<Req, Res, E> for CallAgentRetryPolicy
where
    Req: Clone,
    E: Classify,
{
    type Future = RetryDelay;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<RetryDelay> {
        let shared = &self.shared;
        let call = self.call.as_mut()?;
        let now = Instant::now();
        let elapsed = now - call.started;
        let attempts = call.state.attempts();
        let failure = match result {
            Ok(_) => {
                let outcome = Outcome::success_at(attempts);
                shared.report.finish(&tracing::Span::none(), outcome, None, attempts, elapsed);
                return None;
            }
            Err(e) => e,
        };
        let verdict = shared.decider.classify(failure);
        shared.report.failure(&verdict);
        // tower's Retry keeps the request itself (`clone_request`): there is always one.
        match shared.decide_and_report(
            &mut call.state,
            &verdict,
            failure.retry_after(),
            Some(()),
            shared.decider.deadline(call.started, None),
            now,
        ) {
            Decision::Retry { delay, .. } => {
                shared.report.retry_scheduled(&verdict, attempts, delay);
                call.retrying = true;
                call.pending = Some((verdict, delay));
                Some(RetryDelay { sleep: (!delay.is_zero()).then(|| tokio::time::sleep(delay)) })
            }
            Decision::Stop(reason) => {
                shared.report.finish(
                    &tracing::Span::none(),
                    reason.into(),
                    Some(&verdict),
                    attempts,
                    elapsed,
                );
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        match &mut self.call {
            Some(call) if call.retrying => {}
            _ => {
                let now = Instant::now();
                self.call = Some(Call {
                    state: self.shared.begin(Some(now)),
                    started: now,
                    pending: None,
                    retrying: false,
                });
            }
        }
        let call = self.call.as_mut()?;
        // tower's Retry asks for the request right before each call: a decided retry is now made.
        if let Some((verdict, delay)) = call.pending.take() {
            self.shared.report.retried(&verdict, delay);
        }
        call.state.start_attempt();
        self.shared.report.attempt();
        // Always kept: without it tower never shows the policy the result, and the call's
        // outcome would go unreported.
        Some(req.clone())
    }
}
