//! Pages: each has one owner, a [`PageHandle`] shared by its [`Tab`] handles and its
//! agents, and is closed when the last of them is dropped, wherever that happens (a creation
//! future dropped at any await point, an agent dropped undisposed, a timeout).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use callagent_retry::sdk::{AgentRequest, CreateAgentRequest};
use chromiumoxide::Page;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use tokio_util::sync::CancellationToken;

use crate::browser::Instance;
use crate::context::Context;
use crate::error::{WebSdkError, human};
use crate::protocol::{self, Created, Raced};
use crate::seal::{PageKey, Sealed, seal};

/// One host a page sent requests to ([`Tab::reach`]), as `page/reach.js` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct HostReach {
    /// The host, with its port when not the scheme's default (`host:port`).
    pub host: String,
    /// Requests that got an answer (any HTTP status; a WebSocket that opened).
    pub answered: u32,
    /// Requests that got no answer at all.
    pub failed: u32,
    /// How the page sent them.
    pub via: Vec<Channel>,
}

impl HostReach {
    /// Whether the host never answered.
    pub fn unreached(&self) -> bool {
        self.answered == 0 && self.failed > 0
    }
}

/// How a page sent a request ([`HostReach::via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Channel {
    /// `fetch`.
    Fetch,
    /// `XMLHttpRequest`.
    Xhr,
    /// A `WebSocket`.
    WebSocket,
    /// A channel this crate does not know (a newer page).
    #[serde(other)]
    Other,
}

impl Channel {
    /// Its name: `fetch`, `xhr`, `websocket` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Xhr => "xhr",
            Self::WebSocket => "websocket",
            Self::Other => "other",
        }
    }
}

/// The owner of one open page. Dropping it closes the page in the background.
pub(crate) struct PageHandle {
    page: Page,
    instance: Arc<Instance>,
    /// The page's public key, read once it has loaded: tokens are sealed to it.
    key: OnceLock<PageKey>,
    /// Fired when the browser reports the page crashed or was closed, and by `close`.
    gone: CancellationToken,
    closed: AtomicBool,
    /// What the pool placed on it: agents and creations, and the identities being created.
    pub(crate) load: Load,
}

/// A page's load, kept by the pool: places taken (live agents and creations in
/// flight) and their identities. One identity is never placed twice on a page: the SDK races two
/// creations for it (40228/40230) or hands a later one the same agent, which would then have two
/// owners. With tenants (`WebSdkConfig::tenant_of`), the page's tenant is its first identity's,
/// for the page's whole life: what one identity left in the realm stays there.
#[derive(Debug, Default)]
pub(crate) struct Load {
    inner: Mutex<LoadInner>,
}

#[derive(Debug, Default)]
struct LoadInner {
    identities: Vec<String>,
    tenant: Option<String>,
}

impl Load {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Places taken.
    pub(crate) fn places(&self) -> usize {
        self.lock().identities.len()
    }

    /// Takes a place for `identity` (of `tenant`, with tenants), if there is room, it has none
    /// here, and the page is its tenant's or no one's yet.
    pub(crate) fn try_take(&self, identity: &str, tenant: Option<&str>, capacity: usize) -> bool {
        let mut load = self.lock();
        let others = tenant.is_some_and(|t| load.tenant.as_deref().is_some_and(|own| own != t));
        if others || load.identities.len() >= capacity || load.identities.iter().any(|i| i == identity) {
            return false;
        }
        if load.tenant.is_none() {
            load.tenant = tenant.map(str::to_owned);
        }
        load.identities.push(identity.to_owned());
        true
    }

    /// Gives `identity`'s place back.
    pub(crate) fn release(&self, identity: &str) {
        let mut load = self.lock();
        if let Some(i) = load.identities.iter().position(|c| c == identity) {
            load.identities.swap_remove(i);
        }
    }
}

impl PageHandle {
    /// Opens a page of `instance` and loads the service's page in it (served from `ctx`'s site).
    /// The page is opened by a task of its own that hands it over: a caller dropped while the
    /// browser creates or loads the page does not leak it (the handle the task cannot hand over
    /// is dropped, which closes the page).
    pub(crate) async fn open(
        instance: Arc<Instance>,
        ctx: Arc<Context>,
        within: Duration,
    ) -> Result<Arc<Self>, WebSdkError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opener = Arc::clone(&instance);
        instance.handle().spawn(async move {
            let opening = async {
                let (page, gone) = opener.new_page("about:blank").await?;
                let handle = Arc::new(Self {
                    page,
                    instance: Arc::clone(&opener),
                    key: OnceLock::new(),
                    gone,
                    closed: AtomicBool::new(false),
                    load: Load::default(),
                });
                // Dropped (closed) if it does not load.
                handle.race(ctx.site.load(&handle.page, handle.started())).await?;
                Ok(handle)
            };
            let opened = match tokio::time::timeout(within, opening).await {
                Ok(opened) => opened,
                Err(_) => Err(WebSdkError::PageLoad(format!(
                    "the page did not open with the SDK started within {}",
                    human(within)
                ))),
            };
            let _ = tx.send(opened);
        });
        rx.await.unwrap_or_else(|_| Err(WebSdkError::PageLoad("the page opener was cancelled".into())))
    }

    /// Resolves once the page's script has started (`window.callagentReady`).
    async fn started(&self) -> Result<(), WebSdkError> {
        loop {
            if self.eval::<bool>(protocol::READY).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `work` on this page, failing as soon as the page or the browser is gone.
    async fn race<T>(&self, work: impl Future<Output = Result<T, WebSdkError>>) -> Result<T, WebSdkError> {
        tokio::select! {
            biased;
            _ = self.instance.died() => Err(self.instance.died_error()),
            _ = self.gone.cancelled() => Err(WebSdkError::PageGone("the page crashed or was closed".into())),
            result = work => result.map_err(|e| if self.instance.is_dead() { self.instance.died_error() } else { e }),
        }
    }

    /// Seals `token` to this page (read once the page has loaded).
    fn seal(&self, token: &callagent_retry::sdk::AccessToken) -> Result<Sealed, WebSdkError> {
        let key = self.key.get().ok_or_else(|| WebSdkError::PageLoad("the page has no key yet".into()))?;
        seal(key, token.expose_secret().as_bytes()).map_err(WebSdkError::unexpected)
    }

    fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Whether the page is gone (closed, crashed, or its browser died).
    pub(crate) fn is_gone(&self) -> bool {
        // Closing the page fires `gone` too.
        self.gone.is_cancelled() || self.instance.is_dead()
    }

    /// Closes the page now (idempotent). Fires `gone`, so evaluations in flight on it, and any
    /// made later, end at once with `PageGone`: the browser answers nothing more for a closed
    /// target, so they would otherwise wait for the DevTools request timeout (minutes).
    async fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.gone.cancel();
            self.instance.close_page(self.page.target_id().clone()).await;
        }
    }

    /// `expression`'s value (awaiting a promise), failing as soon as the page or the browser is
    /// gone.
    async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> Result<T, WebSdkError> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(WebSdkError::unexpected)?;
        let result = self.race(async { Ok(self.page.evaluate_expression(params).await?) }).await?;
        result
            .into_value()
            .map_err(|e| WebSdkError::unexpected(format!("unexpected answer from the page: {e}")))
    }
}

impl Drop for PageHandle {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) || self.instance.is_dead() {
            return;
        }
        // No blocking in drop: the runtime closes it.
        let instance = Arc::clone(&self.instance);
        let target = self.page.target_id().clone();
        instance.handle().clone().spawn(async move { instance.close_page(target).await });
    }
}

/// Opens a page and waits for the SDK bundle to start in it, within `launch_timeout`. A page
/// that does not make it is dropped (closed).
pub(crate) async fn open_ready(ctx: &Arc<Context>) -> Result<Arc<PageHandle>, WebSdkError> {
    let instance = ctx.supervisor.instance().await?;
    let within = ctx.config.launch_timeout;
    let page = PageHandle::open(instance, Arc::clone(ctx), within).await?;
    let published: String = page.eval(protocol::PUBLIC_KEY).await?;
    let key = PageKey::parse(&published).map_err(WebSdkError::unexpected)?;
    let _ = page.key.set(key);
    Ok(page)
}

/// Abandons a creation whose owner went away before it settled (dropped at an await point, or
/// timed out): the page disposes the agent as soon as the SDK makes it, so a shared page keeps
/// no agent nobody owns.
struct Abandon<'a> {
    tab: &'a Tab,
    request: u64,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if !self.armed || self.tab.page.is_gone() {
            return;
        }
        let page = Arc::clone(&self.tab.page);
        let expression = protocol::abandon(self.request);
        page.instance.handle().clone().spawn(async move {
            if let Err(e) = page.eval::<serde_json::Value>(&expression).await {
                tracing::debug!(error = %e, "abandoning a creation failed; the page closes with its last user");
            }
        });
    }
}

/// A handle to one page with the SDK loaded (named for the browser tab, not the DevTools
/// session it runs over). Agents created on it share its JavaScript realm, as agents of
/// one browser tab do. Clones (and the agents created on it) share the page, which closes when
/// the last of them is dropped, or at once with [`close`](Tab::close).
#[derive(Clone)]
pub struct Tab {
    page: Arc<PageHandle>,
    ctx: Arc<Context>,
}

impl fmt::Debug for Tab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tab").field("target", self.page.page.target_id()).finish_non_exhaustive()
    }
}

/// A failed creation, with what the page saw (`Tab::probe`, a probe of the conformance suite).
#[doc(hidden)]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Failure {
    /// The error.
    pub error: WebSdkError,
    /// `JSON.stringify` of what the SDK threw (for a `CallingCommunicationError`: its `_code`,
    /// `_subCode`, `_resultCategories`, `name` and `message`).
    pub stringified: Option<String>,
    /// How long the SDK took to throw, when it did.
    pub took: Option<Duration>,
}

pub(crate) fn bare(error: WebSdkError) -> Box<Failure> {
    Box::new(Failure { error, stringified: None, took: None })
}

impl Tab {
    /// The name of the browser the page is in (`WebSdkConfig::name`).
    pub(crate) fn browser_name(&self) -> &str {
        &self.ctx.config.name
    }

    /// Opens a page with the SDK loaded, starting the browser again if it died.
    pub(crate) async fn open(ctx: &Arc<Context>) -> Result<Self, WebSdkError> {
        let page = open_ready(ctx).await?;
        Ok(Self::on(page, ctx))
    }

    /// A handle to `page`.
    pub(crate) fn on(page: Arc<PageHandle>, ctx: &Arc<Context>) -> Self {
        Self { page, ctx: Arc::clone(ctx) }
    }

    pub(crate) async fn eval<T: serde::de::DeserializeOwned>(
        &self,
        expression: &str,
    ) -> Result<T, WebSdkError> {
        self.page.eval(expression).await
    }

    pub(crate) fn instance(&self) -> &Instance {
        self.page.instance()
    }

    /// Whether the page is gone (closed, crashed, or its browser died).
    pub fn is_gone(&self) -> bool {
        self.page.is_gone()
    }

    /// Makes a creation in the page (on `client_of`'s `CallClient` when given) and returns what
    /// the page answered; the agent module turns it into an agent.
    pub(crate) async fn make(
        &self,
        request: &CreateAgentRequest,
        client_of: Option<u64>,
    ) -> Result<Created, Box<Failure>> {
        let sealed = self.page.seal(request.token()).map_err(bare)?;
        static REQUESTS: AtomicU64 = AtomicU64::new(1);
        let number = REQUESTS.fetch_add(1, Ordering::Relaxed);
        let expression = protocol::create(
            &sealed,
            request.kind(),
            request.display_name(),
            request.uses_token_refresher(),
            client_of,
            number,
        );
        let mut abandon = Abandon { tab: self, request: number, armed: true };
        let timeout = self.ctx.config.create_timeout;
        let answered = tokio::time::timeout(timeout, self.eval(&expression)).await;
        // The page answered (or is gone): nothing left to abandon.
        abandon.armed = answered.is_err();
        let created: Created = match answered {
            Ok(result) => result.map_err(bare)?,
            Err(_) => {
                // A page of its own closes (with the creation); on a shared page the creation
                // is abandoned (the guard) and the other agents live on.
                if self.page.load.places() <= 1 {
                    self.close().await;
                }
                return Err(bare(WebSdkError::Timeout(timeout)));
            }
        };
        Ok(created)
    }

    /// Starts two creations at once (`delay` apart), on one `CallClient` or on two, and returns
    /// what the page answered ([`Tab::race`]).
    pub(crate) async fn make_race(
        &self,
        first: &CreateAgentRequest,
        second: &CreateAgentRequest,
        same_client: bool,
        delay: Duration,
    ) -> Result<Raced, WebSdkError> {
        let (sa, sb) = (self.page.seal(first.token())?, self.page.seal(second.token())?);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let expression = protocol::race((&sa, first.kind()), (&sb, second.kind()), same_client, delay_ms);
        let timeout = self.ctx.config.create_timeout;
        let raw: Raced = match tokio::time::timeout(timeout, self.eval(&expression)).await {
            Ok(r) => r?,
            Err(_) => return Err(WebSdkError::Timeout(timeout)),
        };
        Ok(raw)
    }

    /// The Web Calling SDK version the page was built with (`unknown` for a page built without
    /// `websdk/page/build.sh`).
    pub async fn sdk_version(&self) -> Result<String, WebSdkError> {
        self.eval(protocol::SDK_VERSION).await
    }

    // A probe of the remote suite, not API: hidden from the docs, and may change without notice.
    #[doc(hidden)]
    /// Whether the page is visible (`document.visibilityState`): a hidden page's timers run at
    /// most once a second.
    pub async fn is_visible(&self) -> Result<bool, WebSdkError> {
        self.eval(protocol::VISIBLE).await
    }

    // A probe of the conformance and lifecycle suites, not API: hidden from the docs, and may
    // change without notice.
    #[doc(hidden)]
    /// What the page holds now: live agents, and creations the SDK is still making (abandoned
    /// ones included, until the SDK makes their agent and the page disposes it).
    pub async fn census(&self) -> Result<(usize, usize), WebSdkError> {
        let census: protocol::Census = self.eval(protocol::CENSUS).await?;
        Ok((census.agents, census.creating))
    }

    /// How many `CallClient`s the page has made over its life. The page reuses each one (a
    /// client whose creation failed, or whose agent was disposed), so this stays at the most
    /// creations and agents it held at once.
    // A probe of the conformance and lifecycle suites, not API: hidden from the docs, and may
    // change without notice.
    #[doc(hidden)]
    pub async fn call_clients(&self) -> Result<usize, WebSdkError> {
        let census: protocol::Census = self.eval(protocol::CENSUS).await?;
        Ok(census.clients)
    }

    /// The hosts the SDK in this page sent requests to since the page loaded, in the order it
    /// first did, each with how many requests got an answer and how many got none (refused,
    /// unresolved, timed out, blocked): for a creation or connection that fails, the host the
    /// network between this browser and Azure does not let through. Only hosts are kept, never a
    /// request's path, query or content (the page wraps `fetch`, `XMLHttpRequest` and
    /// `WebSocket` before the SDK loads; see `page/reach.js`). Requests from the SDK's workers
    /// are not seen. A page is shared by the agents placed on it, so are its hosts.
    pub async fn reach(&self) -> Result<Vec<HostReach>, WebSdkError> {
        self.eval(protocol::REACH).await
    }

    /// Closes the page now, with every agent on it (without disposing them).
    pub async fn close(&self) {
        self.page.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pages_hosts_read_as_reach_js_answers_them() {
        let answer = r#"[{"host":"edge.skype.com","answered":0,"failed":2,"via":["fetch","websocket"]},
                         {"host":"x.example:8443","answered":1,"failed":0,"via":["xhr","beacon"]}]"#;
        let hosts: Vec<HostReach> = serde_json::from_str(answer).unwrap();
        assert_eq!(hosts[0].via, [Channel::Fetch, Channel::WebSocket]);
        assert!(hosts[0].unreached());
        assert_eq!((hosts[1].host.as_str(), hosts[1].answered), ("x.example:8443", 1));
        assert_eq!(hosts[1].via, [Channel::Xhr, Channel::Other], "a channel this crate does not know");
        assert!(!hosts[1].unreached());
        let names: Vec<&str> =
            [Channel::Fetch, Channel::Xhr, Channel::WebSocket].map(Channel::as_str).to_vec();
        assert_eq!(names, ["fetch", "xhr", "websocket"], "as the page spells them");
    }

    #[test]
    fn a_page_takes_each_identity_once_and_one_tenant_only() {
        let load = Load::default();
        assert!(load.try_take("8:acs:a1", Some("a"), 3));
        assert!(!load.try_take("8:acs:a1", Some("a"), 3), "one identity once per page");
        assert!(!load.try_take("8:acs:b1", Some("b"), 3), "another tenant's identity");
        assert!(load.try_take("8:acs:a2", Some("a"), 3));
        load.release("8:acs:a1");
        load.release("8:acs:a2");
        assert_eq!(load.places(), 0);
        assert!(!load.try_take("8:acs:b1", Some("b"), 3), "the page stays its first tenant's");
        assert!(load.try_take("8:acs:a3", Some("a"), 3));
        // Without tenants, anyone shares a page, up to its capacity.
        let shared = Load::default();
        assert!(shared.try_take("8:acs:a1", None, 2) && shared.try_take("8:acs:b1", None, 2));
        assert!(!shared.try_take("8:acs:c1", None, 2), "full");
    }
}
