//! The browser and its supervision: one Chromium at a time, owned by one [`Instance`]; the
//! [`Supervisor`] notices its death, reaps it, removes its profile and starts the next one
//! (bounded and spaced) when a creation asks.
//!
//! Ownership: the supervisor's watcher task owns the running browser. It ends the browser when
//! the process exits, the DevTools connection ends, or the service is closed or dropped, and is
//! the only place that kills, reaps and cleans up. Everything else holds an `Arc<Instance>` and
//! races its calls against [`Instance::died`], so no call outlives the browser by more than a
//! poll.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::{BrowserContextId, GetVersionParams};
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
    EventTargetCrashed, EventTargetDestroyed, GetTargetsParams, TargetId,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Handler, Page};
use futures::StreamExt;
use tokio::process::Child;
use tokio::runtime::Handle;
use tokio::sync::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chromium::{Launcher, Stderr, chromium_args};
use crate::config::WebSdkConfig;
use crate::error::{WebSdkError, human};
use crate::{private, procfs, transport};

/// How often the watcher looks at the browser process (besides the DevTools connection, which
/// usually tells first): a death is noticed within this.
const PROCESS_CHECK: Duration = Duration::from_millis(200);
/// How long a page close or a graceful browser close may take before it is given up on.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a browser ended: the `reason` label of `callagent_websdk_browser_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Death {
    /// The process exited (crashed, killed, out of memory).
    Exited,
    /// The DevTools connection ended while the process was still there.
    Disconnected,
    /// The service closed it.
    Closed,
}

impl Death {
    fn label(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Disconnected => "disconnected",
            Self::Closed => "closed",
        }
    }
}

/// One running Chromium.
pub(crate) struct Instance {
    /// `None` once the watcher has taken it to end it.
    browser: RwLock<Option<Browser>>,
    pid: Option<u32>,
    generation: u64,
    /// This browser's own directory: its profile and its launcher script. Removed at its end.
    /// `None` for a remote browser.
    dir: Option<PathBuf>,
    /// The browser context the service's pages open in, made for this connection with
    /// `disposeOnDetach`: when the connection goes, however it goes (closed, the link lost, the
    /// service killed), Chromium disposes the context with every page in it. So no page of the
    /// service outlives its connection in a browser it does not own. Set once the browser answers.
    context: OnceLock<BrowserContextId>,
    /// Whether this is a remote browser (shared, not the service's to close).
    remote: bool,
    died: CancellationToken,
    cause: OnceLock<(Death, String)>,
    /// Set when the browser is reaped and its directory removed.
    ended: CancellationToken,
    /// The service asks the watcher to end the browser.
    shutdown: CancellationToken,
    /// Each open page's "gone" signal, fired when the browser reports it crashed or closed.
    pages: Mutex<HashMap<TargetId, CancellationToken>>,
    handle: Handle,
    /// The service's `callagent_websdk_browser_lost`, set when this browser dies.
    lost: metrics::Gauge,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("pid", &self.pid)
            .field("generation", &self.generation)
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// A local browser's profile directory (`None` for a remote one).
    pub(crate) fn profile(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("profile"))
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.died.is_cancelled()
    }

    /// Resolves when the browser is dead (or being ended).
    pub(crate) fn died(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.died.cancelled()
    }

    /// The error a call gets when the browser died under it.
    pub(crate) fn died_error(&self) -> WebSdkError {
        match self.cause.get() {
            Some((Death::Closed, _)) => WebSdkError::closed(),
            Some((_, why)) => WebSdkError::BrowserDied(why.clone()),
            None => WebSdkError::BrowserDied("the browser is ending".into()),
        }
    }

    /// A remote browser that could not be reached: dead from the start, so the next creation
    /// connects again (spaced).
    fn unreachable(
        generation: u64,
        why: String,
        closed: &CancellationToken,
        lost: metrics::Gauge,
    ) -> Arc<Self> {
        let instance = Self {
            browser: RwLock::new(None),
            pid: None,
            generation,
            dir: None,
            context: OnceLock::new(),
            remote: true,
            died: CancellationToken::new(),
            cause: OnceLock::new(),
            ended: CancellationToken::new(),
            shutdown: closed.child_token(),
            pages: Mutex::new(HashMap::new()),
            handle: Handle::current(),
            lost,
        };
        instance.die(Death::Disconnected, why);
        instance.ended.cancel();
        Arc::new(instance)
    }

    fn die(&self, death: Death, why: String) {
        let _ = self.cause.set((death, why));
        // Before `died`: whoever sees a call fail on the loss sees the browser lost too.
        self.lost.set(if death == Death::Closed { 0.0 } else { 1.0 });
        self.died.cancel();
        for (_, gone) in self.pages.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            gone.cancel();
        }
    }

    /// The browser, shared; an error as soon as it dies (the watcher takes it then).
    async fn browser(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Option<Browser>>, WebSdkError> {
        tokio::select! {
            biased;
            _ = self.died.cancelled() => Err(self.died_error()),
            guard = self.browser.read() => Ok(guard),
        }
    }

    /// A DevTools call to the browser, failing as soon as the browser dies.
    pub(crate) async fn execute<C>(&self, cmd: C) -> Result<C::Response, WebSdkError>
    where
        C: chromiumoxide::types::Command,
    {
        let guard = self.browser().await?;
        let browser = guard.as_ref().ok_or_else(|| self.died_error())?;
        tokio::select! {
            biased;
            _ = self.died.cancelled() => Err(self.died_error()),
            r = browser.execute(cmd) => r.map(|r| r.result).map_err(|e| self.cdp_error(e)),
        }
    }

    /// Opens a page at `url`, in the service's browser context, and registers its "gone" signal.
    /// Fails as soon as the browser dies.
    pub(crate) async fn new_page(&self, url: &str) -> Result<(Page, CancellationToken), WebSdkError> {
        let guard = self.browser().await?;
        let browser = guard.as_ref().ok_or_else(|| self.died_error())?;
        let mut params = CreateTargetParams::new(url);
        params.browser_context_id =
            Some(self.context.get().cloned().ok_or_else(|| {
                WebSdkError::BrowserDied("the browser has no context for pages yet".into())
            })?);
        let page = tokio::select! {
            biased;
            _ = self.died.cancelled() => return Err(self.died_error()),
            r = browser.new_page(params) => r.map_err(|e| self.cdp_error(e))?,
        };
        let gone = CancellationToken::new();
        self.pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(page.target_id().clone(), gone.clone());
        if self.is_dead() {
            gone.cancel();
        }
        Ok((page, gone))
    }

    /// Closes a page through the browser (`Target.closeTarget` works while the page is busy
    /// awaiting the SDK). Nothing to do once the browser is dead: its pages went with it.
    pub(crate) async fn close_page(&self, target: TargetId) {
        self.forget_page(&target);
        if self.is_dead() {
            return;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, self.execute(CloseTargetParams::new(target))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if self.is_dead() => tracing::trace!(error = %e, "page went with its browser"),
            Ok(Err(e)) => tracing::debug!(error = %e, "closing a page failed"),
            Err(_) => tracing::warn!("closing a page did not finish within {}", human(CLOSE_TIMEOUT)),
        }
    }

    fn forget_page(&self, target: &TargetId) {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner).remove(target);
    }

    fn page_gone(&self, target: &TargetId) {
        if let Some(gone) = self.pages.lock().unwrap_or_else(PoisonError::into_inner).remove(target) {
            gone.cancel();
        }
    }

    fn cdp_error(&self, e: CdpError) -> WebSdkError {
        if self.is_dead() {
            return self.died_error();
        }
        WebSdkError::from(e)
    }
}

/// Starts browsers, restarts a dead one (bounded and spaced), and ends them.
pub(crate) struct Supervisor {
    config: Arc<WebSdkConfig>,
    state: tokio::sync::Mutex<State>,
    /// The current browser's death signal, readable without waiting for `state` (`is_up`).
    current: Mutex<Option<CancellationToken>>,
    launcher: Launcher,
    closed: CancellationToken,
    restarts: AtomicU64,
    restart_counters: [metrics::Counter; 2],
    lost: metrics::Gauge,
    /// The directory each browser's own directory goes under.
    base: PathBuf,
    /// The page's files, which each relay puts into the driver's answers to the page's requests.
    bodies: transport::Bodies,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("restarts", &self.restarts()).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    current: Option<Arc<Instance>>,
    /// When each launch in the restart window started (first launch excluded).
    restarts: VecDeque<Instant>,
    last_launch: Option<Instant>,
    generation: u64,
    /// Connections to a remote browser that failed in a row (their spacing grows with it).
    failed_connects: u32,
}

impl Supervisor {
    pub(crate) fn new(config: Arc<WebSdkConfig>, base: PathBuf, bodies: transport::Bodies) -> Self {
        use crate::metrics::{BROWSER, BROWSER_LOST, RESTARTS};
        metrics::describe_counter!(
            RESTARTS,
            metrics::Unit::Count,
            "Chromium restarts (or reconnections) of the call-agent service, by why the browser ended."
        );
        metrics::describe_gauge!(
            BROWSER_LOST,
            metrics::Unit::Count,
            "1 while the browser is lost and being started again or reconnected; 0 while it runs or once closed."
        );
        let name = config.name.clone();
        let counter =
            |reason: &'static str| metrics::counter!(RESTARTS, BROWSER => name.clone(), "reason" => reason);
        let restart_counters = [counter(Death::Exited.label()), counter(Death::Disconnected.label())];
        let lost = metrics::gauge!(BROWSER_LOST, BROWSER => name);
        Self {
            config,
            state: tokio::sync::Mutex::new(State::default()),
            launcher: Launcher::start(),
            closed: CancellationToken::new(),
            current: Mutex::new(None),
            restarts: AtomicU64::new(0),
            restart_counters,
            lost,
            base,
            bodies,
        }
    }

    /// Browser restarts so far (launches after the first).
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Whether a browser is running now (started, connected, not dead), without waiting.
    pub(crate) fn is_up(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|d| !d.is_cancelled())
    }

    /// Resolves once the current browser is dead, or at once if none runs.
    pub(crate) async fn lost(&self) {
        let died = self.current.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(died) = died {
            died.cancelled().await;
        }
    }

    /// Whether the service was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// The running browser if there is one, without starting one.
    pub(crate) async fn running(&self) -> Option<Arc<Instance>> {
        self.state.lock().await.current.clone().filter(|i| !i.is_dead())
    }

    /// The running browser, started (again) if it is not running. A lost remote browser that
    /// someone else is reconnecting (the background reconnection, see `WebSdk::keep_up`) is an
    /// error at once, retryable: a creation does not wait behind a connection attempt to a host
    /// that may not answer for seconds.
    pub(crate) async fn instance(&self) -> Result<Arc<Instance>, WebSdkError> {
        self.instance_or(false).await
    }

    /// [`instance`](Self::instance), waiting for an attempt in progress instead: the background
    /// reconnection's.
    pub(crate) async fn reconnect(&self) -> Result<Arc<Instance>, WebSdkError> {
        self.instance_or(true).await
    }

    async fn instance_or(&self, wait: bool) -> Result<Arc<Instance>, WebSdkError> {
        if self.closed.is_cancelled() {
            return Err(WebSdkError::closed());
        }
        let lost = || {
            self.current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|d| d.is_cancelled())
        };
        let mut state = match (self.state.try_lock(), &self.config.remote) {
            (Ok(state), _) => state,
            (Err(_), Some(remote)) if !wait && lost() => {
                return Err(WebSdkError::BrowserDied(format!(
                    "the remote browser at {} is lost and being reconnected",
                    remote.authority()
                )));
            }
            (Err(_), _) => self.state.lock().await,
        };
        let previous = match &state.current {
            Some(i) if !i.is_dead() => return Ok(Arc::clone(i)),
            Some(i) => Some(Arc::clone(i)),
            None => None,
        };
        if let Some(dead) = &previous {
            let (death, why) = dead.cause.get().cloned().unwrap_or((Death::Exited, "unknown".into()));
            if death == Death::Closed {
                return Err(WebSdkError::closed());
            }
            let now = Instant::now();
            let window = self.config.restart_window;
            while state.restarts.front().is_some_and(|t| now.duration_since(*t) >= window) {
                state.restarts.pop_front();
            }
            if self.config.remote.is_none() && state.restarts.len() >= self.config.max_restarts as usize {
                return Err(WebSdkError::BrowserGone(format!(
                    "Chromium ended {} times within {} and is not started again (max_restarts); the last \
                     time: {why}. Fix the cause (memory, a crashing flag) and launch a new WebSdk",
                    state.restarts.len() + 1,
                    human(window)
                )));
            }
            if let Some(last) = state.last_launch {
                let spaced = last + self.spacing(state.failed_connects);
                tokio::select! {
                    _ = tokio::time::sleep_until(spaced) => {}
                    _ = self.closed.cancelled() => {
                        return Err(WebSdkError::closed());
                    }
                }
            }
            state.restarts.push_back(Instant::now());
            self.restarts.fetch_add(1, Ordering::Relaxed);
            let index = usize::from(death == Death::Disconnected);
            self.restart_counters[index].increment(1);
            tracing::warn!(
                reason = death.label(),
                cause = %why,
                restart = state.restarts.len(),
                max_restarts = self.config.max_restarts,
                "Chromium ended; starting it again"
            );
        }
        state.last_launch = Some(Instant::now());
        state.generation += 1;
        let generation = state.generation;
        let mut answered = true;
        let launched = match &self.config.remote {
            Some(remote) => self.connect(remote, generation).await.map_err(|(e, a)| {
                answered = a;
                e
            }),
            None => self.launch(generation).await,
        };
        match launched {
            Ok(instance) => {
                state.current = Some(Arc::clone(&instance));
                state.failed_connects = 0;
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(instance.died.clone());
                self.lost.set(0.0);
                Ok(instance)
            }
            Err(e) if self.config.remote.is_some() => {
                // An endpoint that did not answer at all is asked again at the base spacing
                // (a connection attempt); one that answered and failed is backed off.
                state.failed_connects = if answered { state.failed_connects.saturating_add(1) } else { 0 };
                // Kept as the current browser, dead, so the next creation spaces its attempt.
                state.current =
                    Some(Instance::unreachable(generation, e.to_string(), &self.closed, self.lost.clone()));
                Err(e)
            }
            Err(e) if previous.is_some() => Err(WebSdkError::BrowserDied(format!(
                "Chromium ended and did not start again (restart {} of at most {} within {}): {e}",
                state.restarts.len(),
                self.config.max_restarts,
                human(self.config.restart_window)
            ))),
            Err(e) => Err(e),
        }
    }

    /// The least time before the next start: `restart_spacing`, and for a remote browser whose
    /// endpoint answered but could not be connected to `failures` times in a row, twice that per
    /// failure up to 30 s, with ±20% jitter so many services do not reconnect in step. (One
    /// that does not answer at all is asked again at `restart_spacing`: a host that comes back
    /// rejoins within it, however long it was gone.)
    fn spacing(&self, failures: u32) -> Duration {
        let base = self.config.restart_spacing;
        if self.config.remote.is_none() || failures == 0 {
            return base;
        }
        let grown = base.saturating_mul(1 << failures.min(5)).min(Duration::from_secs(30)).max(base);
        grown.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2))
    }

    /// Connects to the remote browser (`remote`), through a relay as a local one is.
    async fn connect(
        &self,
        remote: &crate::config::RemoteBrowser,
        generation: u64,
    ) -> Result<Arc<Instance>, (WebSdkError, bool)> {
        let within = self.config.launch_timeout;
        let unreachable = |why: &str| {
            WebSdkError::BrowserDied(format!(
                "the remote browser at {} cannot be reached: {why}",
                remote.authority()
            ))
        };
        let reach = crate::remote::reach(crate::remote::Reach {
            endpoint: &remote.endpoint,
            header: remote.header(),
            lost_after: remote.lost_after,
            ca_file: remote.ca_file.as_ref(),
            connect_to: remote.connect_to,
        });
        // A browser that is up answers its endpoint in milliseconds; one that does not within
        // twice `lost_after` is as lost as one that went silent (a hung browser's relay still
        // accepts), and creations meanwhile should fail fast, not wait out `launch_timeout`.
        let reaching = within.min((remote.lost_after * 2).max(Duration::from_secs(2)));
        // The second of each pair: whether the endpoint answered at all (see `remote::Unreached`).
        let upstream = match tokio::time::timeout(reaching, reach).await {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(e)) => return Err((unreachable(&e.why), e.answered)),
            Err(_) => {
                return Err((
                    unreachable(&format!("no DevTools connection within {}", human(reaching))),
                    false,
                ));
            }
        };
        let endpoint = transport::relay(upstream, within, Arc::clone(&self.bodies))
            .await
            .map_err(|e| (unreachable(&format!("cannot relay its DevTools connection: {e}")), true))?;
        let instance =
            self.attach(endpoint, None, None, generation, &unreachable).await.map_err(|e| (e, true))?;
        tracing::info!(endpoint = %remote.authority(), generation, "connected to the remote browser");
        Ok(instance)
    }

    async fn launch(&self, generation: u64) -> Result<Arc<Instance>, WebSdkError> {
        let config = &self.config;
        let within = config.launch_timeout;
        let dir = self.base.join(format!("browser-{generation}"));
        let profile = dir.join("profile");
        let cannot = |what: &str, path: &Path, e: std::io::Error| {
            WebSdkError::BrowserGone(format!("cannot create {what} {}: {e}", path.display()))
        };
        // Exclusive: a directory that is already there (planted, or left behind) is an error,
        // never used.
        private::create_dir(&dir).map_err(|e| cannot("the browser's directory", &dir, e))?;
        let cleanup = RemoveOnDrop(Some(dir.clone()));
        private::create_dir(&profile).map_err(|e| cannot("the browser profile", &profile, e))?;
        let script = dir.join("chromium");
        private::create_launcher(&script, &config.chromium)
            .map_err(|e| cannot("the launcher script", &script, e))?;
        let args = chromium_args(config, &profile, procfs::running_as_root());
        let mut child = self.launcher.spawn(&script, &args).await.map_err(|e| {
            WebSdkError::BrowserGone(format!("Chromium did not start ({}): {e}", config.chromium.display()))
        })?;
        let (Some(to_browser), Some(from_browser)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WebSdkError::BrowserGone("Chromium started without its DevTools pipe".into()));
        };
        let stderr = Stderr::capture(child.stderr.take());
        let pipe = transport::Upstream::pipe(to_browser, from_browser);
        let endpoint = transport::relay(pipe, within, Arc::clone(&self.bodies))
            .await
            .map_err(|e| WebSdkError::BrowserGone(format!("cannot relay Chromium's DevTools pipe: {e}")))?;
        let fail = |what: &str| stderr.launch_error(what);
        let instance = self.attach(endpoint, Some(child), Some(cleanup), generation, &fail).await?;
        stderr.started();
        // Chromium opens its first tab at the URL it was given (about:blank: not the new-tab
        // page, which loads a search engine's page); the service's pages are its own, so that tab
        // goes, with its renderer.
        // Waited for (the browser reports the close a moment after answering it), so a browser
        // handed out lists only the service's own pages.
        let closing = async {
            loop {
                let Ok(targets) = instance.execute(GetTargetsParams::default()).await else { break };
                let pages: Vec<_> = targets.target_infos.into_iter().filter(|t| t.r#type == "page").collect();
                if pages.is_empty() {
                    break;
                }
                for first in pages {
                    let _ = instance.execute(CloseTargetParams::new(first.target_id)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        tracing::debug!(pid = instance.pid, generation, "Chromium started");
        Ok(instance)
    }

    /// Drives the browser behind `endpoint` (a local `child` with its directory, or a remote
    /// browser): the driver connects, the watcher takes it over, and it must answer. `fail`
    /// words an error of this start.
    async fn attach(
        &self,
        endpoint: transport::Endpoint,
        child: Option<Child>,
        dir: Option<RemoveOnDrop>,
        generation: u64,
        fail: &(dyn Fn(&str) -> WebSdkError + Sync),
    ) -> Result<Arc<Instance>, WebSdkError> {
        let config = &self.config;
        let within = config.launch_timeout;
        let pid = child.as_ref().and_then(Child::id);
        let handler_config = HandlerConfig {
            // Certificates are verified: the driver would otherwise send
            // Security.setIgnoreCertificateErrors(true) to every page.
            ignore_https_errors: false,
            request_timeout: config.create_timeout + Duration::from_secs(10),
            viewport: None,
            ..HandlerConfig::default()
        };
        let connected =
            tokio::time::timeout(within, Browser::connect_with_config(endpoint.url(), handler_config));
        let (browser, handler) = match connected.await {
            Ok(Ok(connected)) => connected,
            Ok(Err(e)) => return Err(fail(&format!("the DevTools connection failed: {e}"))),
            Err(_) => return Err(fail(&format!("no DevTools connection within {}", human(within)))),
        };
        let handle = Handle::current();
        let instance = Arc::new(Instance {
            browser: RwLock::new(Some(browser)),
            pid,
            generation,
            dir: dir.as_ref().and_then(|d| d.0.clone()),
            context: OnceLock::new(),
            remote: child.is_none(),
            died: CancellationToken::new(),
            cause: OnceLock::new(),
            ended: CancellationToken::new(),
            shutdown: self.closed.child_token(),
            pages: Mutex::new(HashMap::new()),
            handle: handle.clone(),
            lost: self.lost.clone(),
        });
        // From here the watcher owns the process, the relay and the directory.
        drop(dir.map(RemoveOnDrop::disarm));
        handle.spawn(watch(Arc::clone(&instance), handler, child, endpoint));
        // A browser that answers: one that exits at once (a bad flag, root without
        // --no-sandbox, a missing library) is an error of its launch, with what it printed. Its
        // answer is the service's own browser context (see `Instance::context`).
        let answers = async {
            instance.execute(GetVersionParams::default()).await?;
            let context = CreateBrowserContextParams { dispose_on_detach: Some(true), ..Default::default() };
            instance.execute(context).await
        };
        match tokio::time::timeout(within, answers).await {
            Ok(Ok(made)) => {
                let _ = instance.context.set(made.browser_context_id);
            }
            Ok(Err(e)) => {
                instance.shutdown.cancel();
                return Err(fail(&e.to_string()));
            }
            Err(_) => {
                instance.shutdown.cancel();
                return Err(fail(&format!("no answer within {}", human(within))));
            }
        }
        Ok(instance)
    }

    /// Ends the running browser and refuses to start another.
    pub(crate) async fn close(&self) {
        self.closed.cancel();
        let current = self.state.lock().await.current.clone();
        if let Some(instance) = current {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, instance.ended.cancelled()).await;
        }
        // Also when it was closed while lost (an unreachable remote one): closed is not lost.
        self.lost.set(0.0);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The watcher ends the browser; if the runtime is gone too, dropping the browser kills it
        // (kill_on_drop) and the launcher thread's end sends it SIGKILL (its parent-death signal).
        self.closed.cancel();
    }
}

/// The watcher: drives the DevTools connection and ends the browser when it dies or is asked to.
async fn watch(
    instance: Arc<Instance>,
    mut handler: Handler,
    mut child: Option<Child>,
    relay: transport::Endpoint,
) {
    // Listening goes through the handler, so it is driven while the listeners are registered.
    let listen = async {
        let guard = instance.browser.read().await;
        let browser = guard.as_ref()?;
        let crashed = browser.event_listener::<EventTargetCrashed>().await.ok();
        let destroyed = browser.event_listener::<EventTargetDestroyed>().await.ok();
        Some((crashed, destroyed))
    };
    tokio::pin!(listen);
    let (mut crashed, mut destroyed) = loop {
        tokio::select! {
            listening = &mut listen => break listening.unwrap_or((None, None)),
            event = handler.next() => if event.is_none() { break (None, None) },
        }
    };
    let mut check = tokio::time::interval(PROCESS_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (death, why) = loop {
        tokio::select! {
            event = handler.next() => match event {
                None => break (Death::Disconnected, "the DevTools connection closed".to_owned()),
                Some(Ok(())) => {}
                // An event this driver cannot decode is not the end of the connection.
                Some(Err(CdpError::InvalidMessage(..))) => {}
                Some(Err(e @ (CdpError::Ws(_) | CdpError::Io(_) | CdpError::ChannelSendError(_)))) => {
                    break match instance.pid.filter(|p| !procfs::alive(*p)) {
                        Some(pid) => (Death::Exited, format!("the Chromium process (pid {pid}) exited")),
                        None => (Death::Disconnected, format!("the DevTools connection failed: {e}")),
                    };
                }
                Some(Err(e)) => tracing::trace!(error = %e, "DevTools event not understood; ignored"),
            },
            _ = check.tick() => if let Some(pid) = instance.pid.filter(|p| !procfs::alive(*p)) {
                break (Death::Exited, format!("the Chromium process (pid {pid}) exited"));
            },
            Some(event) = next(&mut crashed) => {
                tracing::warn!(target_id = ?event.target_id, "a page crashed; its agents are gone");
                instance.page_gone(&event.target_id);
            },
            Some(event) = next(&mut destroyed) => instance.page_gone(&event.target_id),
            _ = instance.shutdown.cancelled() => break (Death::Closed, "closed".to_owned()),
        }
    };
    instance.die(death, why.clone());
    if death == Death::Closed {
        tracing::debug!(pid = instance.pid, "closing Chromium");
    } else {
        tracing::warn!(pid = instance.pid, cause = %why, "Chromium is gone; creations in flight fail");
    }
    // Every reader races `died`, so the write lock comes at once.
    let browser = instance.browser.write().await.take();
    if let Some(mut browser) = browser
        && death == Death::Closed
    {
        let closing = async {
            let ask = async {
                match instance.context.get() {
                    // A remote browser is not ours to close: what the service opened in it goes,
                    // now rather than when it notices the connection gone.
                    Some(context) if instance.remote => {
                        let _ = browser.execute(DisposeBrowserContextParams::new(context.clone())).await;
                    }
                    _ if instance.remote => {}
                    _ => {
                        let _ = browser.close().await;
                    }
                }
            };
            tokio::pin!(ask);
            // The handler carries the command and its answer.
            loop {
                tokio::select! {
                    _ = &mut ask => break,
                    event = handler.next() => if event.is_none() { return },
                }
            }
            if !instance.remote {
                while handler.next().await.is_some() {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
    drop(relay);
    if let Some(child) = child.as_mut() {
        // Kill (a no-op on an exited process) and reap: no zombie.
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if let (Some(dir), Some(profile)) = (&instance.dir, instance.profile()) {
        // Its helpers (network service, renderers) end a moment after it, and may write into
        // the profile as they go: the profile is removed once none is left.
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while !procfs::processes_of(&profile).is_empty() {
            if Instant::now() >= deadline {
                tracing::warn!(profile = %profile.display(), "Chromium helpers outlived their browser");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remove_dir(dir);
        // The service's own directory goes with its last browser (not while another is in it).
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    instance.ended.cancel();
}

async fn next<T>(stream: &mut Option<chromiumoxide::listeners::EventStream<T>>) -> Option<Arc<T>>
where
    T: chromiumoxide::cdp::IntoEventKind + Unpin,
{
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the browser's profile");
    }
}

/// A directory removed on drop unless disarmed (a browser that did not start).
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) -> Self {
        self.0 = None;
        self
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            remove_dir(&dir);
        }
    }
}
