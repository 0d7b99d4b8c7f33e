//! [`ResponseFuture`]: the per-call state machine of [`CallAgentRetry`](crate::CallAgentRetry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::classify::{Classify, classify};
use crate::decide::{CallState, Decision};
use crate::layer::Shared;
use crate::outcome::{AttemptError, Failed, Outcome, RetryError};

pin_project! {
    /// Resolves once the call succeeds or the layer gives up.
    ///
    /// A state machine pinned in place, with no allocation of its own: one attempt in flight or
    /// one wait at a time, and a single reused timer for the attempt timeout, the backoff wait and
    /// the deadline. Dropping it drops (cancels) the attempt in flight and the pending wait.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // Created on first need: a call that completes at once never touches the timer wheel.
        #[pin]
        timer: Option<Sleep>,
        retry_with: Option<(S, Req)>,
        shared: Arc<Shared>,
        span: tracing::Span,
        call: CallState,
        started: Instant,
        attempt_started: Instant,
        attempt_timer_armed: bool,
        // Whether `Waiting` waits on the timer (not for a zero delay).
        waiting: bool,
        // The failure that caused the pending retry, for a deadline hit while waiting for readiness.
        // Boxed: only the retry path has one, and the success path should not carry its size.
        last: Option<Box<AttemptError<S::Error>>>,
    }

    impl<S, Req> PinnedDrop for ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !matches!(this.state.as_ref().get_ref(), State::Done) {
                let _enter = this.span.enter();
                let elapsed = Instant::now().saturating_duration_since(*this.started);
                this.shared.report.finish(this.span, Outcome::Cancelled, None, this.call.attempts(), elapsed);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting,
        Readying,
        Done,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        span: tracing::Span,
        future: S::Future,
        retry_with: Option<(S, Req)>,
        call: CallState,
        started: Instant,
    ) -> Self {
        Self {
            state: State::Calling { future },
            timer: None,
            retry_with,
            shared,
            span,
            call,
            started,
            attempt_started: started,
            attempt_timer_armed: false,
            waiting: false,
            last: None,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Readying => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts())
            .finish_non_exhaustive()
    }
}

fn arm(mut timer: Pin<&mut Option<Sleep>>, at: Instant) {
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => timer.set(Some(tokio::time::sleep_until(at))),
    }
}

/// `true` once the (armed) timer has fired.
fn fired(timer: Pin<&mut Option<Sleep>>, cx: &mut Context<'_>) -> bool {
    timer.as_pin_mut().is_some_and(|t| t.poll(cx).is_ready())
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    type Output = Result<S::Response, RetryError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _enter = this.span.enter();
        let decider = &this.shared.decider;
        let config = decider.config();
        let deadline = config.deadline.map(|d| *this.started + d);
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let failure = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            let outcome = if this.call.attempts() > 1 {
                                Outcome::SuccessAfterRetry
                            } else {
                                Outcome::Success
                            };
                            let elapsed = Instant::now() - *this.started;
                            this.shared.report.finish(
                                this.span,
                                outcome,
                                None,
                                this.call.attempts(),
                                elapsed,
                            );
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Poll::Ready(Err(e)) => AttemptError::Service(e),
                        Poll::Pending => {
                            let attempt_deadline = match (config.attempt_timeout, deadline) {
                                (Some(t), Some(d)) => Some((*this.attempt_started + t).min(d)),
                                (Some(t), None) => Some(*this.attempt_started + t),
                                (None, d) => d,
                            };
                            let Some(at) = attempt_deadline else { return Poll::Pending };
                            if !*this.attempt_timer_armed {
                                arm(this.timer.as_mut(), at);
                                *this.attempt_timer_armed = true;
                            }
                            if !fired(this.timer.as_mut(), cx) {
                                return Poll::Pending;
                            }
                            AttemptError::TimedOut { after: Instant::now() - *this.attempt_started }
                        }
                    };
                    // Drops the attempt in flight (if it timed out, this cancels it).
                    this.state.set(State::Waiting);
                    let now = Instant::now();
                    let (verdict, decision) = decider.decide(this.call, &failure, *this.started, now);
                    this.shared.report.failure(&verdict);
                    match decision {
                        Decision::Retry { delay } if this.retry_with.is_some() => {
                            this.shared.report.retry(&verdict, this.call.attempts(), delay);
                            *this.last = Some(Box::new(failure));
                            if delay.is_zero() {
                                // A zero-length tokio sleep still waits for the next 1 ms tick.
                                *this.waiting = false;
                            } else {
                                arm(this.timer.as_mut(), now + delay);
                                *this.waiting = true;
                            }
                        }
                        // A retry without a kept request cannot happen (may_retry guards it);
                        // were it to, giving up is the safe reading.
                        Decision::Retry { .. } | Decision::Stop(_) => {
                            let stop = match decision {
                                Decision::Stop(stop) => stop,
                                Decision::Retry { .. } => crate::decide::Stop::Exhausted,
                            };
                            this.state.set(State::Done);
                            let failed = Failed::new(failure, this.call.attempts(), now - *this.started);
                            this.shared.report.finish(
                                this.span,
                                stop.into(),
                                Some(&verdict),
                                failed.attempts,
                                failed.elapsed,
                            );
                            return Poll::Ready(Err(RetryError::from_stop(stop, failed)));
                        }
                    }
                }
                StateProj::Waiting => {
                    if *this.waiting
                        && let Some(timer) = this.timer.as_mut().as_pin_mut()
                    {
                        ready!(timer.poll(cx));
                    }
                    if let Some(at) = deadline {
                        arm(this.timer.as_mut(), at);
                    }
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let Some((service, request)) = this.retry_with.as_mut() else {
                        unreachable!("Readying is entered only with a kept request");
                    };
                    match service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let future = service.call(request.clone());
                            this.call.start_attempt();
                            this.shared.report.attempt();
                            *this.attempt_started = Instant::now();
                            *this.attempt_timer_armed = false;
                            *this.last = None;
                            this.state.set(State::Calling { future });
                        }
                        Poll::Ready(Err(e)) => {
                            this.state.set(State::Done);
                            let last = AttemptError::Service(e);
                            return Poll::Ready(Err(give_up(
                                this.shared,
                                this.span,
                                this.call,
                                *this.started,
                                Outcome::ServiceFailed,
                                last,
                            )));
                        }
                        Poll::Pending => {
                            if deadline.is_none() || !fired(this.timer.as_mut(), cx) {
                                return Poll::Pending;
                            }
                            this.state.set(State::Done);
                            let attempt_started = *this.attempt_started;
                            let last = this.last.take().map_or_else(
                                || AttemptError::TimedOut { after: Instant::now() - attempt_started },
                                |last| *last,
                            );
                            return Poll::Ready(Err(give_up(
                                this.shared,
                                this.span,
                                this.call,
                                *this.started,
                                Outcome::DeadlineExceeded,
                                last,
                            )));
                        }
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Ends the call outside the decision core's own stops (readiness failure or deadline).
fn give_up<E: Classify>(
    shared: &Shared,
    span: &tracing::Span,
    call: &CallState,
    started: Instant,
    outcome: Outcome,
    last: AttemptError<E>,
) -> RetryError<E> {
    let verdict = classify(&last, &shared.decider.config().overrides);
    let failed = Failed::new(last, call.attempts(), Instant::now() - started);
    shared.report.finish(span, outcome, Some(&verdict), failed.attempts, failed.elapsed);
    match outcome {
        Outcome::ServiceFailed => RetryError::ServiceFailed(failed),
        _ => RetryError::DeadlineExceeded(failed),
    }
}
