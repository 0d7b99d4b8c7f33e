//! [`ResponseFuture`]: the per-call state machine of [`CallAgentRetry`](super::CallAgentRetry).

use std::fmt;
use std::future::Future;
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
    /// What only a slow call needs lives off the hot path: the one timer (for the attempt
    /// timeout, the backoff wait and the deadline) is boxed when first armed, so a call that
    /// completes at once allocates nothing and the future stays small to move. Dropping it drops
    /// (cancels) the attempt in flight and the pending wait, and reports the call as
    /// [`Outcome::Cancelled`].
    #[project = Proj]
    pub struct ResponseFuture<S, Req, D = Plain, L = NoLimits>
    where
        S: Service<Req>,
        D: Answer,
        L: Limits<Req>,
    {
        #[pin]
        state: State<S::Future, S::Error>,
        timer: Option<Pin<Box<Timer>>>,
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
        // The attempt failed with `last`. Until `verdict` is set the failure awaits its decision
        // (the failure's one move is into here, where it is classified by reference); then a
        // retry is decided: wait out the delay (`waiting`), then drive the kept service to
        // readiness, within the deadline. `last` stays for a deadline hit while waiting for
        // readiness, and is dropped in place when the retry starts.
        Retrying { last: AttemptError<E>, verdict: Option<Verdict>, waiting: bool },
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
        Self { state, timer: None, keep, shared, trace, call, started, own_deadline, record }
    }
}

impl<S: Service<Req>, Req, D: Answer, L: Limits<Req>> fmt::Debug for ResponseFuture<S, Req, D, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Retrying { verdict: None, .. } => "failed",
            State::Retrying { waiting: true, .. } => "waiting",
            State::Retrying { waiting: false, .. } => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The cold part of a call, boxed on first need: the one timer, and since when the attempt
    /// in flight is watched (set while the timer guards it).
    struct Timer {
        #[pin]
        sleep: Sleep,
        attempt_since: Option<Instant>,
    }
}

/// The call was dropped before it finished: report it as cancelled. A call dropped while
/// waiting to retry ends on the failure that asked for the retry.
#[cold]
#[inline(never)]
fn cancelled<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(this: Proj<'_, S, Req, D, L>) {
    let pending = match this.state.as_ref().get_ref() {
        State::Done => return,
        State::Retrying { verdict, .. } => *verdict,
        State::Calling { .. } => None,
    };
    let span = call_span(this.trace.as_deref());
    let _enter = span.enter();
    let elapsed = elapsed_if_needed(this.shared, *this.started);
    this.shared.report.finish(span, Outcome::Cancelled, pending.as_ref(), this.call.attempts(), elapsed);
}

/// Sets the timer to fire at `at` (for a wait or the deadline, not an attempt), boxing it on
/// first use.
fn arm(timer: &mut Option<Pin<Box<Timer>>>, at: Instant) -> Pin<&mut Timer> {
    match timer {
        Some(t) => {
            let mut t = t.as_mut();
            let this = t.as_mut().project();
            this.sleep.reset(at);
            *this.attempt_since = None;
            t
        }
        None => timer
            .insert(Box::pin(Timer { sleep: tokio::time::sleep_until(at), attempt_since: None }))
            .as_mut(),
    }
}

/// `true` once the (armed) timer has fired.
fn fired(timer: &mut Option<Pin<Box<Timer>>>, cx: &mut Context<'_>) -> bool {
    timer.as_mut().is_some_and(|t| t.as_mut().project().sleep.poll(cx).is_ready())
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
                    // inlined, costs instructions on every call (README, Performance).
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

/// The attempt in flight failed: its failure moves into the state (its one move before a retry
/// drops it in place), to be classified and decided there.
#[inline]
fn set_failed<F, E>(mut state: Pin<&mut State<F, E>>, failure: AttemptError<E>) {
    state.set(State::Retrying { last: failure, verdict: None, waiting: false });
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
            StateProj::Retrying { last, verdict: verdict @ None, .. } => {
                let v = this.shared.decider.classify(&*last);
                let retry_after = last.retry_after();
                *verdict = Some(v);
                match failed(this, &v, retry_after) {
                    Next::Retry { waiting } => {
                        if let StateProj::Retrying { waiting: w, .. } = this.state.as_mut().project() {
                            *w = waiting;
                        }
                    }
                    Next::Stop { reason } => {
                        let (last, _) = leave_retrying(this.state.as_mut(), State::Done);
                        return Poll::Ready(Err(stop(this, reason, last, v)));
                    }
                }
            }
            StateProj::Retrying { waiting, .. } => {
                if *waiting {
                    if let Some(timer) = this.timer.as_mut() {
                        ready!(timer.as_mut().project().sleep.poll(cx));
                    }
                    *waiting = false;
                    if let Some(at) = deadline(this) {
                        arm(this.timer, at);
                    }
                }
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
                        retry_started(this, future);
                    }
                    Poll::Ready(Err(e)) => {
                        let last = AttemptError::Service(e);
                        let verdict = this.shared.decider.classify(&last);
                        return Poll::Ready(Err(stop(this, StopReason::ServiceFailed, last, verdict)));
                    }
                    Poll::Pending => {
                        if deadline(this).is_none() || !fired(this.timer, cx) {
                            return Poll::Pending;
                        }
                        return Poll::Ready(Err(deadline_while_readying(this)));
                    }
                }
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
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
    let since = match this.timer.as_ref().and_then(|t| t.attempt_since) {
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
            *arm(this.timer, at).project().attempt_since = Some(now);
            now
        }
    };
    if !fired(this.timer, cx) {
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
                arm(this.timer, now + delay);
            } else if let Some(at) = call_deadline {
                // No wait: the readiness phase watches the deadline from now (not a stale
                // attempt timer).
                arm(this.timer, at);
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
) {
    this.call.start_attempt();
    this.shared.report.attempt();
    if let Some(timer) = this.timer.as_mut() {
        *timer.as_mut().project().attempt_since = None;
    }
    let State::Retrying { verdict: Some(verdict), .. } = *this.state else {
        unreachable!("a retry starts from a decided Retrying")
    };
    // The failure that asked for the retry is dropped in place, not moved out.
    this.state.set(State::Calling { future });
    this.shared.report.retried(&verdict, this.call.last_delay());
    D::waited(this.record, this.call.last_delay());
}

/// The deadline passed while the kept service was not ready: give up with the failure that
/// caused the retry.
fn deadline_while_readying<S: Service<Req>, Req, D: Answer, L: Limits<Req>>(
    this: &mut Proj<'_, S, Req, D, L>,
) -> RetryError<S::Error> {
    let (last, verdict) = leave_retrying(this.state.as_mut(), State::Done);
    stop(this, StopReason::DeadlineExceeded, last, verdict)
}

/// Moves out of `Retrying` into `next`, handing back what it held.
fn leave_retrying<F, E>(state: Pin<&mut State<F, E>>, next: State<F, E>) -> (AttemptError<E>, Verdict) {
    match state.project_replace(next) {
        StateReplace::Retrying { last, verdict: Some(verdict), .. } => (last, verdict),
        // Both callers run inside `poll`'s `Retrying` arm.
        _ => unreachable!("left a decided Retrying from another state"),
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
