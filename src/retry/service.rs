//! [`CallAgentRetry`]: the service the layer makes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::Service;

use super::future::ResponseFuture;
use super::per_call::{Answer, Limits, NoLimits, Plain};
use super::shared::Shared;
use super::{AttemptError, RetryError, StopReason};
use crate::classify::Classify;

/// The service [`CallAgentRetryLayer`](super::CallAgentRetryLayer) makes.
///
/// Readiness is the inner service's: `poll_ready` drives it and the first attempt uses that
/// ready instance; retries drive a clone to readiness again, as tower's `Retry` does.
pub struct CallAgentRetry<S, D = Plain, L = NoLimits> {
    inner: S,
    shared: Arc<Shared>,
    mode: PhantomData<fn() -> (D, L)>,
}

impl<S: Clone, D, L> Clone for CallAgentRetry<S, D, L> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared), mode: PhantomData }
    }
}

impl<S, D, L> CallAgentRetry<S, D, L> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared, mode: PhantomData }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, D, L> fmt::Debug for CallAgentRetry<S, D, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallAgentRetry").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, Req, D, L> Service<Req> for CallAgentRetry<S, D, L>
where
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
    D: Answer,
    L: Limits<Req>,
{
    type Response = D::Output<S::Response>;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, Req, D, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|e| {
            let last = AttemptError::Service(e);
            let verdict = self.shared.decider.classify(&last);
            self.shared.report.not_ready(&verdict);
            RetryError::new(StopReason::ServiceFailed, last, &verdict, 0, Duration::ZERO)
        })
    }

    // Always inlined: out of line, the future comes back through a return slot that a caller's
    // `async fn` then copies into its own state (a `memcpy` call per call); inlined, it is built
    // where it is kept (docs/performance.md, "How callers hold the future").
    #[inline(always)]
    fn call(&mut self, mut request: Req) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        // A request's own limits need the start too: its deadline is told to the inner service.
        let started = (shared.start_clock || L::PER_REQUEST).then(Instant::now);
        let mut call = shared.begin(started);
        let (own_deadline, own_attempts) = L::read(&request);
        if let Some(n) = own_attempts {
            call.cap_attempts(n);
        }
        if let (true, Some(started)) = (L::PER_REQUEST, started) {
            L::tell(&mut request, shared.decider.deadline(started, L::deadline(own_deadline)));
        }
        call.start_attempt();
        shared.report.attempt();
        let mut trace = shared.report.trace();
        // As tower's Retry: the ready instance takes this call; a clone, driven to readiness
        // again, takes the retries. Skipped when no failure could be retried.
        let retry_with = shared.decider.may_retry().then(|| (self.inner.clone(), request.clone()));
        let future = match trace.as_deref_mut() {
            Some(t) => {
                shared.report.open_attempt(t, 1, Duration::ZERO);
                t.attempt.in_scope(|| self.inner.call(request))
            }
            None => self.inner.call(request),
        };
        ResponseFuture::new(shared, trace, future, retry_with, call, started, own_deadline)
    }
}
