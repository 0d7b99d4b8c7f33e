//! [`Browsers`]: several browsers behind one `tower::Service`, local or on other hosts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use callagent_retry::sdk::CreateAgentRequest;
use futures::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::config::WebSdkConfig;
use crate::error::WebSdkError;
use crate::service::{BrowserStats, ResponseFuture, WebSdk};

mod dns;

pub use dns::DnsBrowsers;

/// Several browsers behind one `tower::Service`: each a [`WebSdk`] of its own (its own
/// `max_agents`, pages, warm pages and restarts), local or remote ([`WebSdkConfig::remote`]),
/// from a list ([`launch`](Self::launch)) or from a name's DNS records ([`discover`](Self::discover)).
///
/// - **Placement**: each creation goes to the browser with the most `max_agents` slots free among
///   those running; `poll_ready` is `Pending` only when none has a slot.
/// - **A lost browser** fails its own creations in flight ([`WebSdkError::BrowserDied`]) and its
///   agents' calls ([`WebSdkError::AgentGone`]); new creations go to the others at once. It is
///   started again, or reconnected, in the background (spaced as its config says) and placed on
///   again once it runs.
/// - **Metrics**: each browser's series carry its [`WebSdkConfig::name`] as the `browser` label.
/// - Clones share the browsers; each reserves its own slot, as [`WebSdk`]'s clones do.
pub struct Browsers {
    /// This handle's own handles to the roster's browsers (each reserves its own slot), as of
    /// roster generation `seen`.
    members: Vec<(String, WebSdk)>,
    seen: u64,
    roster: Arc<Roster>,
    /// The member `poll_ready` reserved a slot on, for the next `call`.
    ready: Option<usize>,
    /// Woken when the roster changes, once this handle waited on it (`watching`).
    waker: Arc<AtomicWaker>,
    watching: bool,
}

impl Clone for Browsers {
    fn clone(&self) -> Self {
        // The reservation stays with this handle (the clone's member handles hold no slot).
        Self {
            members: self.members.clone(),
            seen: self.seen,
            roster: Arc::clone(&self.roster),
            ready: None,
            waker: Arc::default(),
            watching: false,
        }
    }
}

impl fmt::Debug for Browsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.members.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Browsers").field("members", &names).field("ready", &self.ready).finish()
    }
}

/// The browsers every handle places on: fixed for [`Browsers::launch`], kept by the DNS task
/// for [`Browsers::discover`].
struct Roster {
    members: Mutex<Arc<[(String, WebSdk)]>>,
    /// Bumped at each change, so a handle resyncs its own handles.
    generation: AtomicU64,
    /// Handles whose `poll_ready` found no slot (a new browser may have one): one entry per live
    /// handle that ever waited, pruned as handles go, so a roster that never changes does not
    /// gather the wakers of every task that ever waited.
    watchers: Mutex<Vec<Weak<AtomicWaker>>>,
    /// Whether the roster changes at all (found by DNS); a fixed list has nothing to wake for.
    dynamic: bool,
    /// What a creation is told when there is no browser at all.
    source: String,
    closed: CancellationToken,
}

impl Roster {
    fn new(members: Vec<(String, WebSdk)>, source: String, dynamic: bool) -> Self {
        Self {
            members: Mutex::new(members.into()),
            generation: AtomicU64::new(0),
            watchers: Mutex::new(Vec::new()),
            dynamic,
            source,
            closed: CancellationToken::new(),
        }
    }

    fn snapshot(&self) -> Arc<[(String, WebSdk)]> {
        Arc::clone(&self.members.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn replace(&self, members: Vec<(String, WebSdk)>) {
        *self.members.lock().unwrap_or_else(PoisonError::into_inner) = members.into();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|w| w.upgrade().map(|w| w.wake()).is_some());
    }

    fn watch(&self, waker: Weak<AtomicWaker>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(waker);
    }
}

/// Launches each browser of `configs` (names checked first), in order.
async fn launch_all(configs: Vec<WebSdkConfig>) -> Result<Vec<(String, WebSdk)>, WebSdkError> {
    for (i, config) in configs.iter().enumerate() {
        if configs[..i].iter().any(|c| c.name == config.name) {
            return Err(WebSdkError::Config {
                field: "name",
                reason: format!(
                    "{:?} names two browsers; each needs its own (its metrics' `browser` label)",
                    config.name
                ),
            });
        }
    }
    let mut members = Vec::with_capacity(configs.len());
    for config in configs {
        members.push((config.name.clone(), launch_member(config).await?));
    }
    Ok(members)
}

/// Launches one member and keeps it coming back when lost.
async fn launch_member(config: WebSdkConfig) -> Result<WebSdk, WebSdkError> {
    let name = config.name.clone();
    let sdk = WebSdk::launch(config).await.map_err(|e| match e {
        WebSdkError::Config { field, reason } => {
            WebSdkError::Config { field, reason: format!("browser {name:?}: {reason}") }
        }
        other => other,
    })?;
    sdk.keep_up();
    Ok(sdk)
}

impl Browsers {
    /// Launches (or connects to) each browser, known by its [`WebSdkConfig::name`] in `stats`,
    /// logs and metrics (the names must differ). Fails if any cannot start: a browser that is
    /// down at launch is a configuration to look at, not to route around.
    pub async fn launch(browsers: Vec<WebSdkConfig>) -> Result<Self, WebSdkError> {
        if browsers.is_empty() {
            return Err(WebSdkError::Config { field: "browsers", reason: "at least one browser".into() });
        }
        let members = launch_all(browsers).await?;
        Ok(Self::over(Arc::new(Roster::new(members, "the configured browsers".into(), false))))
    }

    fn over(roster: Arc<Roster>) -> Self {
        let seen = roster.generation();
        Self {
            members: roster.snapshot().to_vec(),
            seen,
            roster,
            ready: None,
            waker: Arc::default(),
            watching: false,
        }
    }

    /// Each browser's name and what it looks like now.
    pub async fn stats(&self) -> Vec<(String, Result<BrowserStats, WebSdkError>)> {
        let members = self.roster.snapshot();
        let mut all = Vec::with_capacity(members.len());
        for (name, sdk) in members.iter() {
            all.push((name.clone(), sdk.stats().await));
        }
        all
    }

    /// Each browser's live agents and creations in flight now, by name: its own counters, with
    /// no DevTools round trip (unlike [`Browsers::stats`]), so cheap to read on every scrape or
    /// placement decision of the caller's.
    pub fn load(&self) -> Vec<(String, usize)> {
        self.roster.snapshot().iter().map(|(name, sdk)| (name.clone(), sdk.agents_and_creations())).collect()
    }

    /// The browsers placed on now, by name.
    pub fn members(&self) -> Vec<(String, WebSdk)> {
        self.roster.snapshot().to_vec()
    }

    /// Closes every browser (and stops looking for more).
    pub async fn close(&self) {
        self.roster.closed.cancel();
        for (_, sdk) in self.roster.snapshot().iter() {
            sdk.close().await;
        }
    }

    /// This handle's members, brought up to the roster's (only between reservations).
    fn sync(&mut self) {
        let generation = self.roster.generation();
        if generation != self.seen {
            self.members = self.roster.snapshot().to_vec();
            self.seen = generation;
        }
    }

    /// The order to try members in: running ones first, most free slots first (ties in
    /// configured order); then the others, whose creations fail fast and retryably.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.sort_by_key(|&i| {
            let sdk = &self.members[i].1;
            (!sdk.is_up(), std::cmp::Reverse(sdk.free_slots()))
        });
        order
    }
}

impl tower::Service<CreateAgentRequest> for Browsers {
    type Response = Agent;
    type Error = WebSdkError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WebSdkError>> {
        if self.ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.sync();
        if self.roster.closed.is_cancelled() {
            return Poll::Ready(Err(WebSdkError::closed()));
        }
        // No browser at all (the name lists none now): ready, and the call fails at once and
        // retryably, as a lost browser's do.
        if self.members.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut closed = 0;
        for i in self.order() {
            // Stops at the first with a slot: only that one holds a reservation. (A member that
            // was Pending keeps its place in its slots' queue, as tower's ready caches do: a slot
            // freed there waits for this handle's next poll.)
            match self.members[i].1.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.ready = Some(i);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(_)) => closed += 1,
                Poll::Pending => {}
            }
        }
        if closed == self.members.len() {
            return Poll::Ready(Err(WebSdkError::closed()));
        }
        // A browser found meanwhile may have a slot: woken when the roster changes.
        if self.roster.dynamic {
            self.waker.register(cx.waker());
            if !self.watching {
                self.roster.watch(Arc::downgrade(&self.waker));
                self.watching = true;
            }
            if self.roster.generation() != self.seen {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }

    fn call(&mut self, request: CreateAgentRequest) -> ResponseFuture {
        if self.members.is_empty() {
            return ResponseFuture::failed(WebSdkError::NoBrowser(self.roster.source.clone()));
        }
        // Without a reservation, the member `poll_ready` would have tried first (its call
        // answers `NotReady` if it has no slot either).
        let i = self.ready.take().unwrap_or_else(|| self.order()[0]);
        self.members[i].1.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_change_wakes_each_live_waiting_handle_and_forgets_dropped_ones() {
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(me: &Arc<Self>) {
                me.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let roster = Roster::new(Vec::new(), "test".into(), true);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (kept, dropped) = (Arc::new(AtomicWaker::new()), Arc::new(AtomicWaker::new()));
        for waker in [&kept, &dropped] {
            waker.register(&futures::task::waker(Arc::clone(&count)));
            roster.watch(Arc::downgrade(waker));
        }
        drop(dropped);
        roster.replace(Vec::new());
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "the live handle is woken");
        assert_eq!(roster.watchers.lock().unwrap().len(), 1, "the dropped handle is forgotten");
        // Handles that come and go do not pile up between changes.
        for _ in 0..100 {
            let passing = Arc::new(AtomicWaker::new());
            roster.watch(Arc::downgrade(&passing));
        }
        assert_eq!(roster.watchers.lock().unwrap().len(), 2);
        assert_eq!(roster.generation(), 1);
    }

    #[tokio::test]
    async fn two_browsers_of_one_name_are_refused_before_any_starts() {
        // A Chromium that does not exist: the names are checked before anything launches.
        let config = WebSdkConfig { chromium: "/nonexistent/chromium".into(), ..WebSdkConfig::default() };
        let other = WebSdkConfig { name: "pod-1".into(), ..config.clone() };
        let err = Browsers::launch(vec![config.clone(), other, config]).await.unwrap_err();
        assert!(err.to_string().contains("\"local\" names two browsers"), "{err}");
        let err = Browsers::launch(Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("at least one browser"), "{err}");
    }
}
