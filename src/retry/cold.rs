//! The cold part of a [`ResponseFuture`](super::future::ResponseFuture): what only a call that
//! waits or fails needs (the one timer, a parked failure and its verdict), boxed on first need so
//! a call that succeeds at once allocates nothing and its future stays small to move.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::AttemptError;
use crate::classify::Verdict;

/// The cold part of a call, boxed on first need (the first armed timer or parked failure).
pub(super) struct ColdPart<E>(Option<Pin<Box<Cold<E>>>>);

pin_project! {
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

impl<E> ColdPart<E> {
    /// Nothing allocated yet.
    pub(super) const fn new() -> Self {
        Self(None)
    }

    /// The cold part, allocated on first need.
    fn get(&mut self) -> Pin<&mut Cold<E>> {
        self.0
            .get_or_insert_with(|| {
                Box::pin(Cold { sleep: None, attempt_since: None, last: None, verdict: None })
            })
            .as_mut()
    }

    /// Sets the timer to fire at `at` for the attempt in flight, watched since `now`.
    pub(super) fn watch_attempt(&mut self, at: Instant, now: Instant) {
        *self.timer(at).project().attempt_since = Some(now);
    }

    /// A retry that has to wait parks the failure that asked for it, with its verdict.
    pub(super) fn park(&mut self, last: AttemptError<E>, verdict: Verdict) {
        let part = self.get().project();
        (*part.last, *part.verdict) = (Some(last), Some(verdict));
    }

    /// Sets the timer to fire at `at` (for a wait or the deadline, not an attempt).
    pub(super) fn arm(&mut self, at: Instant) {
        self.timer(at);
    }

    /// Sets the timer to fire at `at`, no attempt watched by it.
    fn timer(&mut self, at: Instant) -> Pin<&mut Cold<E>> {
        let mut part = self.get();
        let mut this = part.as_mut().project();
        match this.sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(at),
            None => this.sleep.set(Some(tokio::time::sleep_until(at))),
        }
        *this.attempt_since = None;
        part
    }

    /// The timer, if one is armed.
    fn sleep(&mut self) -> Option<Pin<&mut Sleep>> {
        self.0.as_mut().and_then(|c| c.as_mut().project().sleep.as_pin_mut())
    }

    /// `true` once the timer has fired; never, if none is armed.
    pub(super) fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep().is_some_and(|sleep| sleep.poll(cx).is_ready())
    }

    /// Waits for the timer, if one is armed.
    pub(super) fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep().map_or(Poll::Ready(()), |sleep| sleep.poll(cx))
    }

    /// Since when the attempt in flight is watched by the timer, if it is.
    pub(super) fn attempt_since(&self) -> Option<Instant> {
        self.0.as_deref().and_then(|c| c.attempt_since)
    }

    /// The verdict of the parked failure, if a retry is parked.
    pub(super) fn verdict(&self) -> Option<Verdict> {
        self.0.as_deref().and_then(|c| c.verdict)
    }

    /// A retry started: nothing is parked, and the new attempt is not watched yet.
    pub(super) fn attempt_started(&mut self) {
        if let Some(part) = self.0.as_mut() {
            let part = part.as_mut().project();
            *part.attempt_since = None;
            *part.last = None;
        }
    }

    /// The parked failure and its verdict, moved out to end the call with.
    pub(super) fn take_parked(&mut self) -> (AttemptError<E>, Verdict) {
        let part = self.get().project();
        match (part.last.take(), *part.verdict) {
            (Some(last), Some(verdict)) => (last, verdict),
            _ => unreachable!("ended a parked retry with no failure parked"),
        }
    }
}
