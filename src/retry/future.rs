//! [`ResponseFuture`]: the per-call state machine of [`CallAgentRetry`](super::CallAgentRetry).

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::decide::{CallState, Decision};
use super::per_call::{Answer, Limits, NoLimits, Plain};
use super::report::{Trace, call_span};
use super::shared::Shared;
use super::{AttemptError, Outcome, RetryError, StopReason};
use crate::classify::{Classify, Verdict};

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
        cold: Option<Pin<Box<Cold<S::Error>>>>,
        // What a retry calls with; `None` when nothing can be retried (the core then stops as
        // `Exhausted`). Always `Some` while `Retrying`.
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
                cancelled(this.project());
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
        // The attempt failed with `last` (its one move is into here, where it is classified by
        // reference). Decided in the same poll: a retry that starts at once drops it in place; a
        // retry that must wait parks it in the cold part.
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
        Self { state, cold: None, keep, shared, trace, call, started, own_deadline, record }
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

pin_project! {
    /// The cold part of a call, boxed on first need (the first armed timer or failed attempt).
    struct Cold<E> {
        // The one timer, set when first armed.
        #[pin]
        sleep: Option<Sleep>,
        // Since when the attempt in flight is watched (set while the timer guards it).
        attempt_since: Option<Instant>,
        // The failure of a retry that had to wait (for its delay, or for the service's
        // readiness), with its verdict: kept for a deadline hit while readying, and to report a
        // call dropped meanwhile.
        last: Option<AttemptError<E>>,
        verdict: Option<Verdict>,
    }
}

/// The call's cold part, allocated on first need.
fn cold<E>(cold: &mut Option<Pin<Box<Cold<E>>>>) -> Pin<&mut Cold<E>> {
    cold.get_or_insert_with(|| Box::pin(Cold { sleep: None, attempt_since: None, last: None, verdict: None }))
        .as_mut()
}

/// The call was dropped before it finished: report it as cancelled. A call dropped while
/// waiting to retry ends on the failure that asked for the retry.
#[cold]
#[inline(never)]
fn cancelled<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(this: Proj<'_, S, Req, D, L>) {
    let pending = match this.state.as_ref().get_ref() {
        State::Done => return,
        State::Waiting | State::Readying => this.cold.as_deref().and_then(|c| c.verdict),
        // A failure is decided in the poll that saw it.
        State::Calling { .. } | State::Failed { .. } => None,
    };
    let span = call_span(this.trace.as_deref());
    let _enter = span.enter();
    let elapsed = elapsed_if_needed(this.shared, *this.started);
    this.shared.report.finish(span, Outcome::Cancelled, pending.as_ref(), this.call.attempts(), elapsed);
}

/// Sets the timer to fire at `at` (for a wait or the deadline, not an attempt).
fn arm<E>(part: &mut Option<Pin<Box<Cold<E>>>>, at: Instant) -> Pin<&mut Cold<E>> {
    let mut part = cold(part);
    let mut this = part.as_mut().project();
    match this.sleep.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => this.sleep.set(Some(tokio::time::sleep_until(at))),
    }
    *this.attempt_since = None;
    part
}

/// `true` once the (armed) timer has fired.
fn fired<E>(part: &mut Option<Pin<Box<Cold<E>>>>, cx: &mut Context<'_>) -> bool {
    part.as_mut()
        .and_then(|c| c.as_mut().project().sleep.as_pin_mut())
        .is_some_and(|sleep| sleep.poll(cx).is_ready())
}

/// The call's duration if anything reads it (a live recorder, an observer), else zero: the
/// success path then skips its second clock read.
#[inline]
fn elapsed_if_needed(shared: &Shared, started: Option<Instant>) -> Duration {
    match started {
        Some(started) if shared.report.needs_elapsed() => Instant::now().saturating_duration_since(started),
        _ => Duration::ZERO,
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
        // The common case first, apart from the state machine: an untraced call whose attempt
        // answers. Everything else goes out of line with the future as one pointer, so this path
        // builds no projection of the whole state machine in memory.
        let mut this = self.as_mut().project();
        if this.trace.is_none()
            && let StateProj::Calling { future } = this.state.as_mut().project()
        {
            match future.poll(cx) {
                Poll::Ready(Ok(response)) => {
                    // `succeeded`, written out for an untraced call: calling it here, even
                    // inlined, costs instructions on every call (docs/performance.md).
                    let attempts = this.call.attempts();
                    this.state.set(State::Done);
                    let elapsed = elapsed_if_needed(this.shared, *this.started);
                    this.shared.report.succeeded(None, attempts, elapsed);
                    return Poll::Ready(Ok(D::answer(response, std::mem::take(this.record), attempts)));
                }
                Poll::Ready(Err(e)) => {
                    set_failed(this.state, AttemptError::Service(e));
                    return slow(self, cx, false);
                }
                Poll::Pending => return slow(self, cx, true),
            }
        }
        slow(self, cx, false)
    }
}

/// The attempt in flight failed: its failure moves into the state, to be classified and
/// decided there.
#[inline]
fn set_failed<F, E>(mut state: Pin<&mut State<F, E>>, failure: AttemptError<E>) {
    state.set(State::Failed { last: failure });
}

/// Everything but an untraced attempt that answers: `pending` says that
/// [`poll`](ResponseFuture::poll) already polled the attempt in flight and it was pending.
#[inline(never)]
fn slow<S, Req, D, L>(
    future: Pin<&mut ResponseFuture<S, Req, D, L>>,
    cx: &mut Context<'_>,
    pending: bool,
) -> Poll<Output<S, Req, D>>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    let mut this = future.project();
    // Two copies of the state machine: one for a call nobody traces, with no span code in
    // it at all, and one that enters the call's span and runs each attempt in its own.
    if this.trace.is_some() {
        traced(&mut this, cx)
    } else {
        drive::<S, Req, D, L, false>(&mut this, cx, pending)
    }
}

/// [`drive`] inside the call's span.
#[inline(never)]
fn traced<S, Req, D, L>(this: &mut Proj<'_, S, Req, D, L>, cx: &mut Context<'_>) -> Poll<Output<S, Req, D>>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    // A clone (a reference-count increment) so `drive` can borrow the projection whole.
    let span = this.trace.as_deref().map(|t| t.call.clone());
    let _enter = span.as_ref().map(tracing::Span::enter);
    drive::<S, Req, D, L, true>(this, cx, false)
}

/// The state machine; `TRACED` says whether the call has spans to run its attempts in.
#[inline(always)]
fn drive<S, Req, D, L, const TRACED: bool>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
    mut pending: bool,
) -> Poll<Output<S, Req, D>>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    loop {
        match this.state.as_mut().project() {
            StateProj::Calling { future } => {
                // The inner future runs in its attempt's span (and so do spans it opens).
                let answer = if std::mem::take(&mut pending) {
                    Poll::Pending
                } else {
                    match this.trace.as_deref() {
                        Some(t) if TRACED => t.attempt.in_scope(|| future.poll(cx)),
                        _ => future.poll(cx),
                    }
                };
                let failure = match answer {
                    Poll::Ready(Ok(response)) => return Poll::Ready(Ok(succeeded(this, response))),
                    Poll::Ready(Err(e)) => AttemptError::Service(e),
                    Poll::Pending => ready!(attempt_timed_out(this, cx)),
                };
                set_failed(this.state.as_mut(), failure);
            }
            StateProj::Failed { .. } => {
                if let ControlFlow::Break(done) = decide::<S, Req, D, L, TRACED>(this, cx) {
                    return done;
                }
            }
            StateProj::Waiting => ready!(waited(this, cx)),
            StateProj::Readying => {
                if let ControlFlow::Break(done) = ready_parked::<S, Req, D, L, TRACED>(this, cx) {
                    return done;
                }
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}

/// `Failed`: classify the failure, ask the core, and give up, park the retry to wait, or (no
/// wait) ready the service and start it now, with the failure where it is.
#[inline(always)]
fn decide<S, Req, D, L, const TRACED: bool>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
) -> ControlFlow<Poll<Output<S, Req, D>>>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    let StateProj::Failed { last } = this.state.as_mut().project() else {
        unreachable!("decided a call that has not failed")
    };
    let (verdict, retry_after) = (this.shared.decider.classify(&*last), last.retry_after());
    let reason = match failed(this, &verdict, retry_after) {
        Next::Stop { reason } => reason,
        Next::Retry { waiting: true } => {
            park(this, State::Waiting, verdict);
            return ControlFlow::Continue(());
        }
        Next::Retry { waiting: false } => match readying::<S, Req, D, L, TRACED>(this, cx, &verdict) {
            Readied::Started => return ControlFlow::Continue(()),
            Readied::Stopped(stopped) => return ControlFlow::Break(Poll::Ready(Err(stopped))),
            Readied::Deadline => StopReason::DeadlineExceeded,
            Readied::Pending => {
                park(this, State::Readying, verdict);
                return ControlFlow::Break(Poll::Pending);
            }
        },
    };
    let last = take_failed(this.state.as_mut());
    ControlFlow::Break(Poll::Ready(Err(stop(this, reason, last, verdict))))
}

/// `Waiting`: once the delay is over, ready the service, watching the deadline.
#[inline(always)]
fn waited<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if let Some(sleep) = this.cold.as_mut().and_then(|c| c.as_mut().project().sleep.as_pin_mut()) {
        ready!(sleep.poll(cx));
    }
    this.state.set(State::Readying);
    if let Some(at) = deadline(this) {
        arm(this.cold, at);
    }
    Poll::Ready(())
}

/// `Readying`: a parked retry readies the service, and starts, or ends on its parked failure.
#[inline(always)]
fn ready_parked<S, Req, D, L, const TRACED: bool>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
) -> ControlFlow<Poll<Output<S, Req, D>>>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    let Some(verdict) = this.cold.as_deref().and_then(|c| c.verdict) else {
        unreachable!("a parked retry keeps its verdict")
    };
    ControlFlow::Break(match readying::<S, Req, D, L, TRACED>(this, cx, &verdict) {
        Readied::Started => return ControlFlow::Continue(()),
        Readied::Stopped(stopped) => Poll::Ready(Err(stopped)),
        Readied::Deadline => {
            let (last, verdict) = take_parked(this.cold);
            Poll::Ready(Err(stop(this, StopReason::DeadlineExceeded, last, verdict)))
        }
        Readied::Pending => Poll::Pending,
    })
}

/// A decided retry has to wait: the failure and its verdict move to the cold part, and the call
/// to `next`.
fn park<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    next: State<S::Future, S::Error>,
    verdict: Verdict,
) {
    let StateReplace::Failed { last } = this.state.as_mut().project_replace(next) else {
        unreachable!("parked a retry from another state")
    };
    let part = cold(this.cold).project();
    (*part.last, *part.verdict) = (Some(last), Some(verdict));
}

/// The failure of a call that is failing in the poll that saw it, moved out to end the call with.
fn take_failed<F, E>(state: Pin<&mut State<F, E>>) -> AttemptError<E> {
    match state.project_replace(State::Done) {
        StateReplace::Failed { last } => last,
        _ => unreachable!("took the failure of a call that has none"),
    }
}

/// What readying the kept service led to.
enum Readied<E> {
    /// The retry is under way.
    Started,
    /// The service failed: the call ends with this.
    Stopped(RetryError<E>),
    /// The deadline passed first: the call ends on the failure that asked for the retry.
    Deadline,
    /// Not ready yet.
    Pending,
}

/// A retry decided as `verdict`, with its delay over: drive the kept service to readiness and
/// start the retry, or give up if the service fails or the deadline passes first.
#[inline(always)]
fn readying<S, Req, D, L, const TRACED: bool>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
    verdict: &Verdict,
) -> Readied<S::Error>
where
    D: Answer,
    L: Limits<Req>,
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    let Some((svc, request)) = this.keep.as_mut() else {
        unreachable!("a retry is decided only with the service and request kept")
    };
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {
            let future = match this.trace.as_deref_mut() {
                Some(t) if TRACED => {
                    let attempt = this.call.attempts() + 1;
                    this.shared.report.open_attempt(t, attempt, this.call.last_delay());
                    t.attempt.in_scope(|| svc.call(request.clone()))
                }
                _ => svc.call(request.clone()),
            };
            retry_started(this, future, verdict);
            Readied::Started
        }
        Poll::Ready(Err(e)) => {
            let last = AttemptError::Service(e);
            let verdict = this.shared.decider.classify(&last);
            Readied::Stopped(stop(this, StopReason::ServiceFailed, last, verdict))
        }
        Poll::Pending if deadline(this).is_some() && fired(this.cold, cx) => Readied::Deadline,
        Poll::Pending => Readied::Pending,
    }
}

/// The attempt in flight produced a response.
#[inline(always)]
fn succeeded<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    response: S::Response,
) -> D::Output<S::Response> {
    let attempts = this.call.attempts();
    let elapsed = elapsed_if_needed(this.shared, *this.started);
    this.shared.report.succeeded(this.trace.as_deref(), attempts, elapsed);
    this.state.set(State::Done);
    D::answer(response, std::mem::take(this.record), attempts)
}

/// The call's deadline: the config's (once the call has started its clock), or the request's
/// own if earlier.
fn deadline<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &Proj<'_, S, Req, D, L>,
) -> Option<Instant> {
    let own = L::deadline(*this.own_deadline);
    match *this.started {
        Some(started) => this.shared.decider.deadline(started, own),
        None => own,
    }
}

/// The attempt in flight is pending: the first time, arm its timeout (the attempt timeout,
/// capped by the call's deadline), reading the clock only if there is a limit to watch; report a
/// timeout when it fires.
fn attempt_timed_out<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    cx: &mut Context<'_>,
) -> Poll<AttemptError<S::Error>> {
    let since = match this.cold.as_deref().and_then(|c| c.attempt_since) {
        Some(since) => since,
        None => {
            let config = this.shared.decider.config();
            if config.attempt_timeout.is_none()
                && config.deadline.is_none()
                && L::deadline(*this.own_deadline).is_none()
            {
                return Poll::Pending;
            }
            let now = Instant::now();
            this.started.get_or_insert(now);
            let timeout = this.shared.decider.config().attempt_timeout.map(|t| now + t);
            let Some(at) = timeout.into_iter().chain(deadline(this)).min() else {
                return Poll::Pending;
            };
            *arm(this.cold, at).project().attempt_since = Some(now);
            now
        }
    };
    if !fired(this.cold, cx) {
        return Poll::Pending;
    }
    Poll::Ready(AttemptError::TimedOut { after: Instant::now() - since })
}

/// What a failed attempt leads to.
enum Next {
    /// Retry: wait first if `waiting`.
    Retry { waiting: bool },
    /// Give up.
    Stop { reason: StopReason },
}

/// The attempt in flight failed as `verdict` (its failure is in the state; dropping the attempt
/// cancelled it, if it timed out): ask the core, and either schedule the retry or give up.
#[inline(always)]
fn failed<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    verdict: &Verdict,
    retry_after: Option<Duration>,
) -> Next {
    let now = Instant::now();
    this.started.get_or_insert(now);
    let call_deadline = deadline(this);
    this.shared.report.failure(verdict);
    if let Some(t) = this.trace.as_deref_mut() {
        this.shared.report.close_failed_attempt(t, verdict);
    }
    D::failed(this.record, verdict);
    let keep = this.keep.take();
    let decision = this.shared.decide(this.call, verdict, retry_after, keep, call_deadline, now);
    match decision {
        Decision::Retry { delay, with } => {
            this.shared.report.retry_scheduled(verdict, this.call.attempts(), delay);
            // A zero-length tokio sleep still waits for the next 1 ms tick: skip the timer.
            let waiting = !delay.is_zero();
            if waiting {
                arm(this.cold, now + delay);
            } else if let Some(at) = call_deadline {
                // No wait: the readiness phase watches the deadline from now (not a stale
                // attempt timer).
                arm(this.cold, at);
            }
            *this.keep = Some(with);
            Next::Retry { waiting }
        }
        Decision::Stop(reason) => Next::Stop { reason },
    }
}

/// The kept service is ready and called: the retry is under way.
#[inline(always)]
fn retry_started<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    future: S::Future,
    verdict: &Verdict,
) {
    this.call.start_attempt();
    this.shared.report.attempt();
    if let Some(part) = this.cold.as_mut() {
        let part = part.as_mut().project();
        *part.attempt_since = None;
        *part.last = None;
    }
    // The failure that asked for the retry is dropped in place, not moved out.
    this.state.set(State::Calling { future });
    this.shared.report.retried(verdict, this.call.last_delay());
    D::waited(this.record, this.call.last_delay());
}

/// The parked failure and its verdict, moved out to end the call with.
fn take_parked<E>(part: &mut Option<Pin<Box<Cold<E>>>>) -> (AttemptError<E>, Verdict) {
    let part = cold(part).project();
    match (part.last.take(), *part.verdict) {
        (Some(last), Some(verdict)) => (last, verdict),
        _ => unreachable!("ended a parked retry with no failure parked"),
    }
}

/// Ends the call for `reason` with `last` (classified as `verdict`) as its last failure.
fn stop<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
    reason: StopReason,
    last: AttemptError<S::Error>,
    verdict: Verdict,
) -> RetryError<S::Error> {
    this.state.set(State::Done);
    // Every stop follows a failure, which started the clock.
    let started = this.started.unwrap_or_else(Instant::now);
    let (attempts, elapsed) = (this.call.attempts(), Instant::now().saturating_duration_since(started));
    this.shared.report.finish(
        call_span(this.trace.as_deref()),
        reason.into(),
        Some(&verdict),
        attempts,
        elapsed,
    );
    RetryError::new(reason, last, &verdict, attempts, elapsed)
}
