//! [`WebSdk`]: the `tower::Service`, its capacity (`max_agents`, backpressure in `poll_ready`),
//! and what it reports about the browser.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use callagent_retry::sdk::CreateAgentRequest;
use chromiumoxide::cdp::browser_protocol::target::GetTargetsParams;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::agent::Agent;
use crate::browser::Supervisor;
use crate::config::WebSdkConfig;
use crate::error::WebSdkError;
use crate::page::Tab;
use crate::pool::Pool;
use crate::{context, origin, private, procfs};

/// What every clone of a [`WebSdk`] shares: the context (which pages and agents hold too), the
/// pool and the `max_agents` slots.
pub(crate) struct ServiceState {
    pub(crate) ctx: Arc<context::Context>,
    pub(crate) pool: Arc<Pool>,
    slots: Arc<Semaphore>,
    /// Whether the background reconnection runs (one per service).
    kept_up: std::sync::atomic::AtomicBool,
}

/// The web SDK in headless Chromium: a `tower::Service` creating an agent per request, each on
/// a `CallClient` of its own, up to `agents_per_page` on a page, with `warm_pages` pages kept
/// loaded for the next creations. Clones share the browser, the pages and the `max_agents`
/// slots.
///
/// - **Ownership**: every page has one owner. A creation future dropped at any point closes its
///   page; an [`Agent`] dropped without [`dispose`](Agent::dispose) is disposed and its page
///   closed in the background; a creation past `create_timeout` closes its page.
/// - **Supervision**: when Chromium exits or its DevTools connection ends, every creation in
///   flight fails at once with [`WebSdkError::BrowserDied`] (retryable) and every call on a
///   live agent with [`WebSdkError::AgentGone`]; the next creation starts Chromium again
///   (`max_restarts` within `restart_window`, `restart_spacing` apart), counted in
///   `callagent_websdk_browser_restarts_total`. The dead browser is reaped and its profile
///   removed. Chromium is also killed when this process dies.
/// - **Capacity**: `max_agents` live agents plus creations in flight; `poll_ready` is `Pending`
///   while they are reached, so `ServiceBuilder` stacks get backpressure and `load_shed` gets
///   `Overloaded`.
pub struct WebSdk {
    shared: Arc<ServiceState>,
    slots: PollSemaphore,
    /// The slot `poll_ready` reserved for the next `call`.
    slot: Option<OwnedSemaphorePermit>,
}

impl Clone for WebSdk {
    fn clone(&self) -> Self {
        // A clone reserves its own slot: the reserved one stays with this handle, as tower's
        // ConcurrencyLimit does.
        Self { shared: Arc::clone(&self.shared), slots: self.slots.clone(), slot: None }
    }
}

impl fmt::Debug for WebSdk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSdk")
            .field("max_agents", &self.shared.ctx.config.max_agents)
            .field("ready", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

/// What the browser looks like now ([`WebSdk::stats`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrowserStats {
    /// The browser process, when one runs.
    pub pid: Option<u32>,
    /// Its profile directory (removed when it ends).
    pub profile: Option<PathBuf>,
    /// Chromium's processes (the browser and its helpers: zygotes, renderers, utilities).
    pub processes: usize,
    /// What each of them is (`browser`, `renderer`, `utility network.mojom.NetworkService`, …),
    /// sorted.
    pub process_kinds: Vec<String>,
    /// Their proportional set size, summed, in bytes.
    pub pss_bytes: u64,
    /// The CPU time they have used so far (user and system), in seconds: sample it twice for a
    /// rate.
    pub cpu_seconds: f64,
    /// Pages open, as the browser itself lists them (`Target.getTargets`).
    pub pages: usize,
    /// `max_agents` slots taken: live agents and creations in flight through the service.
    pub agents_and_creations: usize,
    /// Browser restarts so far.
    pub restarts: u64,
    /// Pages the service's pool holds with agents or creations on them.
    pub pool_pages: usize,
    /// Warm pages: the SDK loaded, waiting for a creation.
    pub warm_pages: usize,
    /// Times the SDK's bundle (13 MB over DevTools) was sent to the browser: once per connection
    /// (the service's browser context keeps it in its Cache Storage), not once per page.
    pub bundles_sent: u64,
}

impl BrowserStats {
    /// Chromium's processes but its utility services: those (audio, video capture, …) it starts
    /// on demand, one per browser, and keeps for its life, so one appearing is not a leak; what a
    /// leaked page leaves behind is a renderer. Compare this across idle readings.
    pub fn page_processes(&self) -> usize {
        self.process_kinds.iter().filter(|k| !k.starts_with("utility ")).count()
    }
}

impl WebSdk {
    /// Reads the built page and starts Chromium (or connects to [`WebSdkConfig::remote`]).
    pub async fn launch(config: WebSdkConfig) -> Result<Self, WebSdkError> {
        config.validate()?;
        if let Some(remote) = &config.remote
            && let Some(host) = remote.plain_text_host()
        {
            // Once per browser, before anything else: its reconnections say nothing new.
            tracing::warn!(
                browser = %config.name,
                %host,
                "the link to this remote browser is plain text (ws:// or http://): whoever shares it can \
                 drive the browser; keep it on a network nothing else shares, or put a TLS front before \
                 it (wss://, https://)"
            );
        }
        if config.remote.is_none() && !config.chromium.is_file() {
            return Err(WebSdkError::BrowserGone(format!(
                "no Chromium at {}: apt-get install chromium, or set WebSdkConfig::chromium",
                config.chromium.display()
            )));
        }
        let site = origin::Site::read(&config.page_dir).map_err(|e| {
            WebSdkError::PageLoad(format!(
                "cannot read the page in {}: {e} (run websdk/page/build.sh: npm ci + esbuild)",
                config.page_dir.display()
            ))
        })?;
        let dir = private::ServiceDir::create(&config.temp_dir).map_err(|e| {
            WebSdkError::BrowserGone(format!(
                "cannot create the service's private directory in {}: {e}",
                config.temp_dir.display()
            ))
        })?;
        if config.accept_invalid_certificates {
            tracing::warn!(
                "accept_invalid_certificates is on: Chromium accepts any TLS certificate, so anyone on the \
                 network path can impersonate Azure's services. For test rigs only; never with a real token"
            );
        }
        if procfs::running_as_root() && config.remote.is_none() {
            tracing::warn!(
                "running as root: Chromium's sandbox is off (Chromium refuses to start as root with it); \
                 run the service as an unprivileged user to keep it on"
            );
        }
        let config = Arc::new(config);
        let slots = Arc::new(Semaphore::new(config.max_agents));
        let ctx = Arc::new(context::Context {
            supervisor: Supervisor::new(Arc::clone(&config), dir.path().to_owned(), site.bodies()),
            site,
            config,
            dir,
        });
        let pool = Arc::new(Pool::new(Arc::clone(&ctx)));
        let kept_up = std::sync::atomic::AtomicBool::new(false);
        let shared = Arc::new(ServiceState { ctx, pool, slots: Arc::clone(&slots), kept_up });
        // Started now, so that a browser that cannot start is an error of `launch`.
        shared.ctx.supervisor.instance().await?;
        shared.pool.refill();
        let sdk = Self { shared, slots: PollSemaphore::new(slots), slot: None };
        // A remote browser is reconnected as soon as its host answers again, not when the next
        // creation asks (which meanwhile fail at once, retryably). A local one is started again
        // when a creation asks (or at once, as a member of `Browsers`).
        if sdk.shared.ctx.config.remote.is_some() {
            sdk.keep_up();
        }
        Ok(sdk)
    }

    /// Closes the browser and waits for it to end; later creations fail with
    /// [`WebSdkError::Closed`], and `poll_ready` with the same.
    pub async fn close(&self) {
        self.shared.slots.close();
        self.shared.pool.close();
        self.shared.ctx.supervisor.close().await;
        self.shared.ctx.dir.release();
    }

    /// Pages open in the browser, as the browser lists them.
    pub async fn open_pages(&self) -> Result<usize, WebSdkError> {
        let Some(instance) = self.shared.ctx.supervisor.running().await else {
            return Ok(0);
        };
        // Asked of the browser itself: the driver's own page list can lag behind a close. Only
        // the service's own context's: a remote browser may hold other services' pages too.
        let targets = instance.execute(GetTargetsParams::default()).await?;
        let ours = |t: &&chromiumoxide::cdp::browser_protocol::target::TargetInfo| {
            t.r#type == "page" && t.browser_context_id.as_ref() == instance.context()
        };
        Ok(targets.target_infos.iter().filter(ours).count())
    }

    /// The browser's processes, memory, pages, slots and restarts now.
    pub async fn stats(&self) -> Result<BrowserStats, WebSdkError> {
        let instance = self.shared.ctx.supervisor.running().await;
        let pids =
            instance.as_ref().and_then(|i| i.profile()).map(|p| procfs::processes_of(&p)).unwrap_or_default();
        let (warm, placed) = self.shared.pool.counts();
        Ok(BrowserStats {
            pid: instance.as_ref().and_then(|i| i.pid()),
            profile: instance.as_ref().and_then(|i| i.profile()),
            processes: pids.len(),
            process_kinds: {
                let mut kinds: Vec<String> = pids.iter().map(|p| procfs::kind(*p)).collect();
                kinds.sort();
                kinds
            },
            pss_bytes: procfs::pss_bytes(&pids),
            cpu_seconds: procfs::cpu_seconds(&pids),
            pages: self.open_pages().await?,
            agents_and_creations: self.agents_and_creations(),
            restarts: self.shared.ctx.supervisor.restarts(),
            pool_pages: placed,
            warm_pages: warm,
            bundles_sent: self.shared.ctx.site.bundles_sent(),
        })
    }

    /// Every process of this service's browsers still alive, current or dead (a dead browser's
    /// helpers that outlived it would show here).
    pub fn chromium_processes(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.shared.ctx.dir.path()) else {
            return Vec::new();
        };
        entries.filter_map(Result::ok).flat_map(|e| procfs::processes_of(&e.path().join("profile"))).collect()
    }

    /// Whether its browser is running now (not dead, not being restarted or reconnected).
    pub fn is_up(&self) -> bool {
        self.shared.ctx.supervisor.is_up()
    }

    /// Live agents and creations in flight now (`max_agents` less the free slots).
    pub fn agents_and_creations(&self) -> usize {
        self.shared.ctx.config.max_agents - self.shared.slots.available_permits()
    }

    /// `max_agents` slots free now.
    pub fn free_slots(&self) -> usize {
        self.shared.slots.available_permits()
    }

    /// Starts the browser again whenever it is lost, without waiting for a creation to ask
    /// (restarts and reconnects spaced as a creation's would be), until the service is closed
    /// or dropped: what keeps a member of [`Browsers`](crate::Browsers) coming back on its own.
    pub(crate) fn keep_up(&self) {
        if self.shared.kept_up.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let handle = tokio::runtime::Handle::current();
        handle.spawn(async move {
            loop {
                let Some(lost) = shared.upgrade().map(|s| Arc::clone(&s.ctx)) else { return };
                lost.supervisor.lost().await;
                if lost.supervisor.is_closed() {
                    return;
                }
                drop(lost);
                let Some(state) = shared.upgrade() else { return };
                match state.ctx.supervisor.reconnect().await {
                    Ok(_) => state.pool.refill(),
                    Err(_) if state.ctx.supervisor.is_closed() => return,
                    // Spaced by the supervisor itself; a local browser past `max_restarts` stays
                    // down (its error says why).
                    Err(e) if !matches!(e, WebSdkError::BrowserDied(_)) => return,
                    Err(_) => {}
                }
            }
        });
    }

    /// A new page with the SDK loaded: a place for one or more `CallClient`s. Outside
    /// `max_agents` (for probing the SDK); the page closes when the last handle to it (the
    /// tab's clones and its agents) is dropped.
    pub async fn tab(&self) -> Result<Tab, WebSdkError> {
        Tab::open(&self.shared.ctx).await
    }

    /// Creates an agent for `request` on a page of its own, waiting for a `max_agents` slot
    /// first. With `request.token_refresher` the credential gets a `tokenRefresher` (returning
    /// the same token), and the SDK checks `exp` itself.
    pub async fn create(&self, request: &CreateAgentRequest) -> Result<Agent, WebSdkError> {
        let slot = Arc::clone(&self.shared.slots).acquire_owned().await.map_err(|_| WebSdkError::closed())?;
        create(Arc::clone(&self.shared), request, slot).await
    }
}

async fn create(
    shared: Arc<ServiceState>,
    request: &CreateAgentRequest,
    slot: OwnedSemaphorePermit,
) -> Result<Agent, WebSdkError> {
    // Every await below may be the last: the place (and with it, if it was the page's last user,
    // the page), the tab and the slot are locals, dropped with the future; a creation the
    // page is still making is abandoned (its agent disposed as soon as it exists).
    // The SDK knows a user by the token's user id: two requests naming different identities
    // with one token's user are one identity to it.
    let claims = request.token.claims().ok();
    let identity = claims.as_ref().and_then(|c| c.skypeid()).unwrap_or(&request.identity);
    // The tenant is the application's: of the identity it named.
    let tenant = shared.ctx.config.tenant_of.as_ref().map(|t| t.of(&request.identity));
    let (tab, mut place) = shared.pool.place(identity, tenant.as_deref()).await?;
    // The warm pages are topped up once the creation settles or is dropped: not while it runs,
    // as loading a page (CPU-bound) would slow it down.
    let _refill = Refill(&shared.pool);
    let agent = tab.create(request).await?;
    place.created();
    Ok(agent.with_slot(slot).with_place(place))
}

/// Tops the pool's warm pages up when dropped.
struct Refill<'a>(&'a Arc<Pool>);

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        self.0.refill();
    }
}

/// The future of [`WebSdk::call`](tower::Service::call): the creation. Dropping it at any point
/// closes its page and frees its slot.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Agent, WebSdkError>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl ResponseFuture {
    /// A creation that fails at once with `error`.
    pub(crate) fn failed(error: WebSdkError) -> Self {
        Self { inner: Box::pin(async move { Err(error) }) }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Agent, WebSdkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl tower::Service<CreateAgentRequest> for WebSdk {
    type Response = Agent;
    type Error = WebSdkError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WebSdkError>> {
        if self.slot.is_none() {
            match ready!(self.slots.poll_acquire(cx)) {
                Some(slot) => self.slot = Some(slot),
                None => return Poll::Ready(Err(WebSdkError::closed())),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CreateAgentRequest) -> ResponseFuture {
        let slot = self.slot.take().or_else(|| Arc::clone(&self.shared.slots).try_acquire_owned().ok());
        let shared = Arc::clone(&self.shared);
        let inner: Pin<Box<dyn Future<Output = _> + Send>> = match slot {
            Some(slot) => Box::pin(async move { create(shared, &request, slot).await }),
            None => {
                let max = shared.ctx.config.max_agents;
                Box::pin(async move { Err(WebSdkError::NotReady(max)) })
            }
        };
        ResponseFuture { inner }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RemoteBrowser;

    /// A plain-text link to another host is warned of once, at launch, whatever comes of it;
    /// one to loopback is not.
    #[tokio::test]
    async fn a_plain_text_link_to_another_host_is_warned_of_once_at_launch() {
        let logs = crate::tests::logs();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let launch = |name: &str, host: &str| {
            WebSdk::launch(WebSdkConfig {
                name: name.into(),
                remote: Some(RemoteBrowser::new(format!("http://{host}:{port}"))),
                launch_timeout: Duration::from_secs(2),
                ..WebSdkConfig::default()
            })
        };
        // 0.0.0.0 is no loopback address, yet Linux connects it to this machine: nothing leaves.
        assert!(launch("plain-other", "0.0.0.0").await.is_err(), "nothing listens there");
        assert!(launch("plain-loopback", "127.0.0.1").await.is_err(), "nothing listens there");
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        let warned = |name: &str| {
            let browser = format!("browser={name}");
            text.lines()
                .filter(|l| l.contains(" WARN ") && l.contains("plain text") && l.contains(&browser))
                .count()
        };
        assert_eq!(warned("plain-other"), 1, "{text}");
        assert_eq!(warned("plain-loopback"), 0, "{text}");
    }
}
