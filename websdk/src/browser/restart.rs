//! The restart policy, pure: whether a browser that ended may be started (or connected) again,
//! and not before when. No clock of its own and no I/O: the supervisor passes the time in, waits,
//! and starts the browser.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The bounds a service's config sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// A local browser is not started again past `max_restarts` starts within `window`.
    pub(crate) window: Duration,
    pub(crate) max_restarts: u32,
    /// The least time between two starts.
    pub(crate) spacing: Duration,
    /// A remote browser is reconnected however often it is lost (it is someone else's to fix),
    /// and one that answers but fails is backed off.
    pub(crate) remote: bool,
}

/// The most a remote browser that answers but fails is backed off.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// What the supervisor may do about a browser that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start it again, at this time or later (`None`: at once).
    At(Option<Instant>),
    /// Do not: it ended `ended` times within the window (a local browser past `max_restarts`).
    Refused { ended: usize },
}

/// The starts so far, as the policy needs them.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    /// When each restart in the window began (the first start excluded).
    within: VecDeque<Instant>,
    last_start: Option<Instant>,
    /// Connections to a remote browser that answered and failed, in a row.
    failed_connects: u32,
}

impl Restarts {
    /// Whether a browser that ended may be started again at `now`, and from when. `jitter`
    /// (0.8 to 1.2, drawn by the caller) spreads a backed-off remote browser's reconnections, so
    /// that many services do not reconnect in step.
    pub(crate) fn next(&mut self, now: Instant, policy: &Policy, jitter: f64) -> Next {
        while self.within.front().is_some_and(|t| now.duration_since(*t) >= policy.window) {
            self.within.pop_front();
        }
        if !policy.remote && self.within.len() >= policy.max_restarts as usize {
            return Next::Refused { ended: self.within.len() + 1 };
        }
        Next::At(self.last_start.map(|last| last + spacing(policy, self.failed_connects, jitter)))
    }

    /// A start began at `at`; `restart` when it follows an ended browser (the first does not
    /// count against `max_restarts`).
    pub(crate) fn started(&mut self, at: Instant, restart: bool) {
        if restart {
            self.within.push_back(at);
        }
        self.last_start = Some(at);
    }

    /// How a remote browser's connection went: connected, or failed after its endpoint
    /// `answered` (backed off) or without an answer (asked again at the base spacing: a host that
    /// comes back rejoins within it, however long it was gone).
    pub(crate) fn connected(&mut self, ok: bool, answered: bool) {
        self.failed_connects = if ok || !answered { 0 } else { self.failed_connects.saturating_add(1) };
    }

    /// Restarts within the window, as of the last [`next`](Self::next).
    pub(crate) fn in_window(&self) -> usize {
        self.within.len()
    }
}

/// The least time from one start to the next: `spacing`, and for a remote browser whose
/// endpoint answered but failed `failures` times in a row, twice that per failure up to 30 s,
/// times `jitter`.
fn spacing(policy: &Policy, failures: u32, jitter: f64) -> Duration {
    let base = policy.spacing;
    if !policy.remote || failures == 0 {
        return base;
    }
    let grown = base.saturating_mul(1 << failures.min(5)).min(MOST_BACKOFF).max(base);
    grown.mul_f64(jitter.clamp(0.8, 1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Policy = Policy {
        window: Duration::from_secs(600),
        max_restarts: 5,
        spacing: Duration::from_secs(1),
        remote: false,
    };
    const REMOTE: Policy = Policy { remote: true, ..LOCAL };

    /// Starts a browser each time the policy allows, as the supervisor does, on tokio's paused
    /// clock: `n` restarts after the first start.
    async fn restart(restarts: &mut Restarts, policy: &Policy, n: usize) -> Vec<Next> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let next = restarts.next(Instant::now(), policy, 1.0);
            seen.push(next);
            match next {
                Next::At(at) => {
                    if let Some(at) = at {
                        tokio::time::sleep_until(at).await;
                    }
                    restarts.started(Instant::now(), true);
                }
                Next::Refused { .. } => break,
            }
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_browser_is_started_again_spaced_and_at_most_max_restarts_per_window() {
        let mut restarts = Restarts::default();
        let first = Instant::now();
        restarts.started(first, false);
        let seen = restart(&mut restarts, &LOCAL, 6).await;
        // Five restarts, each a second after the one before; the sixth is refused.
        let expected: Vec<Next> = (1..=5).map(|i| Next::At(Some(first + Duration::from_secs(i)))).collect();
        assert_eq!(&seen[..5], &expected[..]);
        assert_eq!(seen[5], Next::Refused { ended: 6 });
        assert_eq!(first.elapsed(), Duration::from_secs(5), "spaced a second apart, no more");
        // Once the first restart is older than the window, one more is allowed, at once.
        tokio::time::advance(LOCAL.window - Duration::from_secs(5)).await;
        assert_eq!(restarts.next(Instant::now(), &LOCAL, 1.0), Next::Refused { ended: 6 }, "still within");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            matches!(restarts.next(Instant::now(), &LOCAL, 1.0), Next::At(Some(at)) if at <= Instant::now())
        );
        assert_eq!(restarts.in_window(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_browser_is_reconnected_however_often_it_is_lost() {
        let mut restarts = Restarts::default();
        restarts.started(Instant::now(), false);
        let seen = restart(&mut restarts, &REMOTE, 50).await;
        assert_eq!(seen.len(), 50);
        assert!(seen.iter().all(|n| matches!(n, Next::At(_))), "never refused: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_answers_and_fails_is_backed_off_and_a_silent_one_is_not() {
        let mut restarts = Restarts::default();
        let start = Instant::now();
        restarts.started(start, false);
        let after = |restarts: &mut Restarts, jitter| match restarts.next(Instant::now(), &REMOTE, jitter) {
            Next::At(Some(at)) => at - start,
            other => panic!("{other:?}"),
        };
        for (failures, spaced) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)] {
            while restarts.failed_connects < failures {
                restarts.connected(false, true);
            }
            assert_eq!(after(&mut restarts, 1.0), Duration::from_secs(spaced), "after {failures} failures");
        }
        // Jitter spreads it, within ±20%.
        assert_eq!(after(&mut restarts, 0.8), Duration::from_secs(24));
        assert_eq!(after(&mut restarts, 5.0), Duration::from_secs(36), "jitter is bounded");
        // An endpoint that did not answer at all: the base spacing again, however many failed.
        restarts.connected(false, false);
        assert_eq!(after(&mut restarts, 1.2), REMOTE.spacing);
        // A local browser is never backed off.
        restarts.connected(false, true);
        assert_eq!(restarts.next(Instant::now(), &LOCAL, 1.2), Next::At(Some(start + LOCAL.spacing)));
        // Connected: back to the base spacing.
        restarts.connected(true, true);
        assert_eq!(after(&mut restarts, 1.0), REMOTE.spacing);
    }
}
