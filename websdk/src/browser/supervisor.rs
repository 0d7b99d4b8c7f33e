//! Starts browsers (a local Chromium, or a connection to a remote one), replaces a dead one when
//! the restart policy allows, and ends them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chromiumoxide::Browser;
use chromiumoxide::cdp::browser_protocol::browser::GetVersionParams;
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateBrowserContextParams, GetTargetsParams,
};
use chromiumoxide::handler::HandlerConfig;
use tokio::process::Child;
use tokio::runtime::Handle;
use tokio::sync::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::instance::Instance;
use super::restart::{Next, Policy, Restarts};
use super::watch::watch;
use super::{CLOSE_TIMEOUT, Death, remove_dir};
use crate::chromium::{Launcher, Stderr, chromium_args};
use crate::config::WebSdkConfig;
use crate::error::{WebSdkError, human};
use crate::{private, procfs, transport};

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
    /// The starts so far, as the restart policy reads them.
    restarts: Restarts,
    generation: u64,
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
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2);
            match state.restarts.next(Instant::now(), &self.policy(), jitter) {
                Next::Refused { ended } => {
                    return Err(WebSdkError::BrowserGone(format!(
                        "Chromium ended {ended} times within {} and is not started again (max_restarts); the \
                         last time: {why}. Fix the cause (memory, a crashing flag) and launch a new WebSdk",
                        human(self.config.restart_window)
                    )));
                }
                Next::At(Some(spaced)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(spaced) => {}
                        _ = self.closed.cancelled() => {
                            return Err(WebSdkError::closed());
                        }
                    }
                }
                Next::At(None) => {}
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
            let index = usize::from(death == Death::Disconnected);
            self.restart_counters[index].increment(1);
            tracing::warn!(
                reason = death.label(),
                cause = %why,
                restart = state.restarts.in_window() + 1,
                max_restarts = self.config.max_restarts,
                "Chromium ended; starting it again"
            );
        }
        state.restarts.started(Instant::now(), previous.is_some());
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
                state.restarts.connected(true, true);
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(instance.died.clone());
                self.lost.set(0.0);
                Ok(instance)
            }
            Err(e) if self.config.remote.is_some() => {
                // An endpoint that did not answer at all is asked again at the base spacing
                // (a connection attempt); one that answered and failed is backed off.
                state.restarts.connected(false, answered);
                // Kept as the current browser, dead, so the next creation spaces its attempt.
                state.current =
                    Some(Instance::unreachable(generation, e.to_string(), &self.closed, self.lost.clone()));
                Err(e)
            }
            Err(e) if previous.is_some() => Err(WebSdkError::BrowserDied(format!(
                "Chromium ended and did not start again (restart {} of at most {} within {}): {e}",
                state.restarts.in_window(),
                self.config.max_restarts,
                human(self.config.restart_window)
            ))),
            Err(e) => Err(e),
        }
    }

    /// The restart policy this service's config sets.
    fn policy(&self) -> Policy {
        Policy {
            window: self.config.restart_window,
            max_restarts: self.config.max_restarts,
            spacing: self.config.restart_spacing,
            remote: self.config.remote.is_some(),
        }
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
        // validate() refused an endpoint that does not parse: this names it if one got here.
        let endpoint = remote.endpoint().map_err(|why| (unreachable(&why.to_string()), true))?;
        let reach = crate::remote::reach(crate::remote::Reach {
            endpoint,
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
