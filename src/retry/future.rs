//! [`ResponseFuture`]: the per-call state machine of [`CallAgentRetry`](super::CallAgentRetry).
//!
//! ```text
//!  call() ─▶ Calling ──── the attempt answers ──────────────────────────▶ Done: the response
//!              ▲  │
//!              │  │ the attempt fails, or runs past its timeout (dropped)
//!              │  ▼
//!              │ Failed ─── the core says stop ─────────────────────────▶ Done: RetryError
//!              │  │                          │
//!              │  │ retry after a delay      │ retry at once
//!              │  ▼                          ▼
//!              │ Waiting ── delay over ──▶ Readying ── service fails, ──▶ Done: RetryError
//!              │                             │        or the deadline
//!              └──── the kept service is ready: call it with the request
//! ```
//!
//! `Failed` lasts one poll: the failure is classified and decided where it landed. A retry that
//! has to wait (`Waiting`, or a `Readying` service that is not ready) parks the failure in the
//! boxed cold part, beside the one timer; a call that succeeds at once never allocates it.
//! Dropping the future in any state but `Done` reports the call as [`Outcome::Cancelled`].
//!
//! The untraced first attempt that answers is the hot path: [`ResponseFuture::poll`] handles it
//! inline and sends everything else out of line (`slow`).
//!
//! Over 500 lines, against tower's 119 for its retry future: this one also times attempts out,
//! watches a deadline, parks a failure without allocating, reports a cancelled call, and runs
//! attempts in spans. Its cold part is in `cold.rs`.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Service;

use super::cold::ColdPart;
use super::decide::{CallState, Decision};
use super::per_call::{Answer, Limits, NoLimits, Plain};
use super::report::{Trace, call_span};
use super::shared::Shared;
use super::{AttemptError, Outcome, RetryError, StopReason};
use crate::classify::{Classify, Verdict};

/// What the state machine needs of the inner service beyond [`Service`]: failures it can
/// classify, and a request it can clone to call again. One name for the bounds every method that
/// decides or retries repeats.
pub(crate) trait Retryable<Req>: Service<Req, Error: Classify> {}

impl<S: Service<Req, Error: Classify>, Req> Retryable<Req> for S {}

pin_project! {
    /// Resolves once the call succeeds or the layer gives up.
    ///
    /// A state machine pinned in place: one attempt in flight or one retry pending at a time.
    /// What only a slow or failed call needs lives behind one pointer, allocated on first need:
    /// the one timer (for the attempt timeout, the backoff wait and the deadline) and the failure
    /// a retry waits on. A call that completes at once allocates nothing, and the future is
    /// barely larger than the inner one, so it is cheap to move into `tokio::spawn`, a `JoinSet`
    /// or a state machine of the caller's. Dropping it drops (cancels) the attempt in flight and
    /// the pending wait, and reports the call as [`Outcome::Cancelled`].
    #[project = Proj]
    pub struct ResponseFuture<S, Req, D = Plain, L = NoLimits>
    where
        S: Service<Req>,
        D: Answer,
        L: Limits<Req>,
    {
        #[pin]
        state: State<S::Future, S::Error>,
        cold: ColdPart<S::Error>,
        // What a retry calls with; `None` when nothing can be retried (the core then stops as
        // `Exhausted`). Always `Some` while `Readying`.
        keep: Option<(S, Req)>,
        shared: Arc<Shared>,
        // The call's spans, only if a subscriber records them.
        trace: Option<Box<Trace>>,
        call: CallState,
        // When the call started: read in `call` if the budget or the call's duration needs it,
        // else on first need (an attempt pending with a limit to watch, a failure).
        started: Option<Instant>,
        // The call's own deadline, if the layer reads requests' limits (`()` otherwise).
        own_deadline: L::Deadline,
        // What a detailed answer needs (`()` for a plain one).
        record: D::Record,
    }

    impl<S, Req, D, L> PinnedDrop for ResponseFuture<S, Req, D, L>
    where
        S: Service<Req>,
        D: Answer,
        L: Limits<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            // A finished call (the common case) has nothing to report: one check.
            if !matches!(this.state, State::Done) {
                this.project().cancelled();
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, E> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
        // The attempt failed with `last`, to be decided in the same poll.
        Failed { last: AttemptError<E> },
        // A retry is decided: its delay is being waited out.
        Waiting,
        // The delay is over: the kept service is driven to readiness, within the deadline.
        Readying,
        Done,
    }
}

impl<S, Req, D, L> ResponseFuture<S, Req, D, L>
where
    S: Service<Req>,
    D: Answer,
    L: Limits<Req>,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        trace: Option<Box<Trace>>,
        future: S::Future,
        keep: Option<(S, Req)>,
        call: CallState,
        started: Option<Instant>,
        own_deadline: L::Deadline,
    ) -> Self {
        let record = D::Record::default();
        let state = State::Calling { future };
        let cold = ColdPart::new();
        Self { state, cold, keep, shared, trace, call, started, own_deadline, record }
    }
}

impl<S: Service<Req>, Req, D: Answer, L: Limits<Req>> fmt::Debug for ResponseFuture<S, Req, D, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Failed { .. } => "failed",
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

type Output<S, Req, D> =
    Result<<D as Answer>::Output<<S as Service<Req>>::Response>, RetryError<<S as Service<Req>>::Error>>;

impl<S, Req, D, L> Future for ResponseFuture<S, Req, D, L>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    type Output = Output<S, Req, D>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The hot path: an untraced attempt that answers. Everything else goes out of line with
        // the future as one pointer, so this path keeps no projection of the whole machine in
        // memory.
        let mut this = self.as_mut().project();
        if this.trace.is_none()
            && let StateProj::Calling { future } = this.state.as_mut().project()
        {
            match future.poll(cx) {
                Poll::Ready(Ok(response)) => return Poll::Ready(Ok(this.succeeded(response))),
                Poll::Ready(Err(e)) => this.state.set(State::Failed { last: AttemptError::Service(e) }),
                Poll::Pending => return slow(self, cx, true),
            }
        }
        slow(self, cx, false)
    }
}

/// Everything but an untraced attempt that answers, inside the call's span if it has one;
/// `polled` says [`poll`](ResponseFuture::poll) already polled the attempt in flight, and it was
/// pending.
#[inline(never)]
fn slow<S, Req, D, L>(
    future: Pin<&mut ResponseFuture<S, Req, D, L>>,
    cx: &mut Context<'_>,
    polled: bool,
) -> Poll<Output<S, Req, D>>
where
    S: Retryable<Req>,
    Req: Clone,
    D: Answer,
    L: Limits<Req>,
{
    let mut this = future.project();
    // A clone of the span (a reference-count increment) so the machine can borrow the
    // projection whole.
    let span = this.trace.as_deref().map(|t| t.call.clone());
    let _enter = span.as_ref().map(tracing::Span::enter);
    this.run(cx, polled)
}

/// The state machine's steps, on the projection of the pinned future.
impl<S, Req, D, L> Proj<'_, S, Req, D, L>
where
    S: Retryable<Req>,
    Req: Clone,
    D: Answer,
    L: Limits<Req>,
{
    /// Drives the machine until it completes or waits; `polled` as in
    /// `slow`.
    #[inline(always)]
    fn run(&mut self, cx: &mut Context<'_>, mut polled: bool) -> Poll<Output<S, Req, D>> {
        loop {
            match self.state.as_mut().project() {
                StateProj::Calling { future } => {
                    // The inner future runs in its attempt's span (and so do spans it opens).
                    let answer = if std::mem::take(&mut polled) {
                        Poll::Pending
                    } else {
                        match self.trace.as_deref() {
                            Some(t) => t.attempt.in_scope(|| future.poll(cx)),
                            None => future.poll(cx),
                        }
                    };
                    let failure = match answer {
                        Poll::Ready(Ok(response)) => return Poll::Ready(Ok(self.succeeded(response))),
                        Poll::Ready(Err(e)) => AttemptError::Service(e),
                        Poll::Pending => ready!(self.attempt_timed_out(cx)),
                    };
                    self.state.set(State::Failed { last: failure });
                }
                StateProj::Failed { .. } => {
                    if let ControlFlow::Break(done) = self.on_failed(cx) {
                        return done;
                    }
                }
                StateProj::Waiting => ready!(self.on_waiting(cx)),
                StateProj::Readying => {
                    if let ControlFlow::Break(done) = self.on_readying(cx) {
                        return done;
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }

    /// `Failed`: classify the failure and ask the core; then give up, park the retry to wait,
    /// or (no wait) ready the service and start the retry now, the failure dropped in place.
    #[inline(always)]
    fn on_failed(&mut self, cx: &mut Context<'_>) -> ControlFlow<Poll<Output<S, Req, D>>> {
        let StateProj::Failed { last } = self.state.as_mut().project() else {
            unreachable!("decided a call that has not failed")
        };
        let (verdict, retry_after) = (self.shared.decider.classify(&*last), last.retry_after());
        let reason = match self.schedule(&verdict, retry_after) {
            Next::Stop { reason } => reason,
            Next::Retry { waiting: true } => {
                self.park(State::Waiting, verdict);
                return ControlFlow::Continue(());
            }
            Next::Retry { waiting: false } => match self.retry(cx, &verdict) {
                Readied::Started => return ControlFlow::Continue(()),
                Readied::Stopped(stopped) => return ControlFlow::Break(Poll::Ready(Err(stopped))),
                Readied::Deadline => StopReason::DeadlineExceeded,
                Readied::Pending => {
                    self.park(State::Readying, verdict);
                    return ControlFlow::Break(Poll::Pending);
                }
            },
        };
        let StateReplace::Failed { last } = self.state.as_mut().project_replace(State::Done) else {
            unreachable!("took the failure of a call that has none")
        };
        ControlFlow::Break(Poll::Ready(Err(self.stop(reason, last, verdict))))
    }

    /// `Readying`: a parked retry readies the service and starts, or ends on its parked failure.
    #[inline(always)]
    fn on_readying(&mut self, cx: &mut Context<'_>) -> ControlFlow<Poll<Output<S, Req, D>>> {
        let Some(verdict) = self.cold.verdict() else { unreachable!("a parked retry keeps its verdict") };
        ControlFlow::Break(match self.retry(cx, &verdict) {
            Readied::Started => return ControlFlow::Continue(()),
            Readied::Stopped(stopped) => Poll::Ready(Err(stopped)),
            Readied::Deadline => {
                let (last, verdict) = self.cold.take_parked();
                Poll::Ready(Err(self.stop(StopReason::DeadlineExceeded, last, verdict)))
            }
            Readied::Pending => Poll::Pending,
        })
    }

    /// A retry decided as `verdict`, with its delay over: drive the kept service to readiness
    /// and call it, or give up if the service fails or the deadline passes first.
    #[inline(always)]
    fn retry(&mut self, cx: &mut Context<'_>, verdict: &Verdict) -> Readied<S::Error> {
        let Some((svc, request)) = self.keep.as_mut() else {
            unreachable!("a retry is decided only with the service and request kept")
        };
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                let future = match self.trace.as_deref_mut() {
                    Some(t) => {
                        let attempt = self.call.attempts() + 1;
                        self.shared.report.open_attempt(t, attempt, self.call.last_delay());
                        t.attempt.in_scope(|| svc.call(request.clone()))
                    }
                    None => svc.call(request.clone()),
                };
                self.retry_started(future, verdict);
                Readied::Started
            }
            Poll::Ready(Err(e)) => {
                let last = AttemptError::Service(e);
                let verdict = self.shared.decider.classify(&last);
                Readied::Stopped(self.stop(StopReason::ServiceFailed, last, verdict))
            }
            Poll::Pending if self.deadline().is_some() && self.cold.fired(cx) => Readied::Deadline,
            Poll::Pending => Readied::Pending,
        }
    }
}

/// What starting a retry led to.
enum Readied<E> {
    /// The retry is under way.
    Started,
    /// The service failed: the call ends with this.
    Stopped(RetryError<E>),
    /// The deadline passed first: the call ends on the failure that asked for the retry.
    Deadline,
    /// The service is not ready yet.
    Pending,
}

/// What a failed attempt leads to.
enum Next {
    /// Retry: wait first if `waiting`.
    Retry { waiting: bool },
    /// Give up.
    Stop { reason: StopReason },
}

/// The steps that neither classify nor call again: they need only what the future itself
/// needs (so dropping it can report too).
impl<S: Service<Req>, Req, D: Answer, L: Limits<Req>> Proj<'_, S, Req, D, L> {
    /// The attempt in flight produced a response: the call's one success path.
    #[inline(always)]
    fn succeeded(&mut self, response: S::Response) -> D::Output<S::Response> {
        let attempts = self.call.attempts();
        self.state.set(State::Done);
        let elapsed = self.elapsed();
        self.shared.report.succeeded(self.trace.as_deref(), attempts, elapsed);
        D::answer(response, std::mem::take(self.record), attempts)
    }

    /// The call's duration if anything reads it (a live recorder, an observer), else zero: the
    /// success path then skips its second clock read.
    #[inline(always)]
    fn elapsed(&self) -> Duration {
        match *self.started {
            Some(started) if self.shared.report.needs_elapsed() => {
                Instant::now().saturating_duration_since(started)
            }
            _ => Duration::ZERO,
        }
    }

    /// The call's deadline: the config's (once the call has started its clock), or the
    /// request's own if earlier.
    fn deadline(&self) -> Option<Instant> {
        let own = L::deadline(*self.own_deadline);
        match *self.started {
            Some(started) => self.shared.decider.deadline(started, own),
            None => own,
        }
    }

    /// The attempt in flight is pending: the first time, arm its timeout (the attempt timeout,
    /// capped by the call's deadline), reading the clock only if there is a limit to watch;
    /// report a timeout when it fires.
    fn attempt_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<AttemptError<S::Error>> {
        let since = match self.cold.attempt_since() {
            Some(since) => since,
            None => {
                let config = self.shared.decider.config();
                if config.attempt_timeout.is_none()
                    && config.deadline.is_none()
                    && L::deadline(*self.own_deadline).is_none()
                {
                    return Poll::Pending;
                }
                let now = Instant::now();
                self.started.get_or_insert(now);
                let timeout = self.shared.decider.config().attempt_timeout.map(|t| now + t);
                let Some(at) = timeout.into_iter().chain(self.deadline()).min() else {
                    return Poll::Pending;
                };
                self.cold.watch_attempt(at, now);
                now
            }
        };
        if !self.cold.fired(cx) {
            return Poll::Pending;
        }
        Poll::Ready(AttemptError::TimedOut { after: Instant::now() - since })
    }

    /// The attempt in flight failed as `verdict` (its failure is in the state; dropping the
    /// attempt cancelled it, if it timed out): report it, ask the core, and arm the timer for
    /// the retry's wait, or for the deadline while the service readies.
    #[inline(always)]
    fn schedule(&mut self, verdict: &Verdict, retry_after: Option<Duration>) -> Next {
        let now = Instant::now();
        self.started.get_or_insert(now);
        let call_deadline = self.deadline();
        self.shared.report.failure(verdict);
        if let Some(t) = self.trace.as_deref_mut() {
            self.shared.report.close_failed_attempt(t, verdict);
        }
        D::failed(self.record, verdict);
        let keep = self.keep.take();
        match self.shared.decide_and_report(self.call, verdict, retry_after, keep, call_deadline, now) {
            Decision::Retry { delay, with } => {
                self.shared.report.retry_scheduled(verdict, self.call.attempts(), delay);
                // A zero-length tokio sleep still waits for the next 1 ms tick: skip the timer.
                let waiting = !delay.is_zero();
                if waiting {
                    self.cold.arm(now + delay);
                } else if let Some(at) = call_deadline {
                    // No wait: readying watches the deadline from now (not a stale attempt timer).
                    self.cold.arm(at);
                }
                *self.keep = Some(with);
                Next::Retry { waiting }
            }
            Decision::Stop(reason) => Next::Stop { reason },
        }
    }

    /// A decided retry has to wait: the failure and its verdict move to the cold part, and the
    /// call to `next`.
    fn park(&mut self, next: State<S::Future, S::Error>, verdict: Verdict) {
        let StateReplace::Failed { last } = self.state.as_mut().project_replace(next) else {
            unreachable!("parked a retry from another state")
        };
        self.cold.park(last, verdict);
    }

    /// `Waiting`: once the delay is over, ready the service, watching the deadline.
    #[inline(always)]
    fn on_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ready!(self.cold.wait(cx));
        self.state.set(State::Readying);
        if let Some(at) = self.deadline() {
            self.cold.arm(at);
        }
        Poll::Ready(())
    }

    /// The kept service is ready and called: the retry is under way.
    #[inline(always)]
    fn retry_started(&mut self, future: S::Future, verdict: &Verdict) {
        self.call.start_attempt();
        self.shared.report.attempt();
        self.cold.attempt_started();
        // The failure that asked for the retry is dropped in place, not moved out.
        self.state.set(State::Calling { future });
        self.shared.report.retried(verdict, self.call.last_delay());
        D::waited(self.record, self.call.last_delay());
    }

    /// Ends the call for `reason` with `last` (classified as `verdict`) as its last failure.
    fn stop(
        &mut self,
        reason: StopReason,
        last: AttemptError<S::Error>,
        verdict: Verdict,
    ) -> RetryError<S::Error> {
        self.state.set(State::Done);
        // Every stop follows a failure, which started the clock.
        let started = self.started.unwrap_or_else(Instant::now);
        let (attempts, elapsed) = (self.call.attempts(), Instant::now().saturating_duration_since(started));
        let span = call_span(self.trace.as_deref());
        self.shared.report.finish(span, reason.into(), Some(&verdict), attempts, elapsed);
        RetryError::new(reason, last, &verdict, attempts, elapsed)
    }

    /// The call was dropped before it finished: report it as cancelled. A call dropped while
    /// waiting to retry ends on the failure that asked for the retry.
    #[cold]
    #[inline(never)]
    fn cancelled(self) {
        let pending = match self.state.as_ref().get_ref() {
            State::Done => return,
            State::Waiting | State::Readying => self.cold.verdict(),
            // A failure is decided in the poll that saw it.
            State::Calling { .. } | State::Failed { .. } => None,
        };
        let span = call_span(self.trace.as_deref());
        let _enter = span.enter();
        let elapsed = self.elapsed();
        self.shared.report.finish(span, Outcome::Cancelled, pending.as_ref(), self.call.attempts(), elapsed);
    }
}
