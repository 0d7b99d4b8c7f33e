//! Creates Azure Communication Services call agents with the real Web Calling SDK
//! (`@azure/communication-calling`, pinned in `page/package.json`) in headless Chromium, driven
//! from Rust over the DevTools protocol: a [`tower::Service`] for the
//! [`callagent_retry`] layer to wrap, for bots, load testers and synthetic monitors of ACS.
//!
//! ```text
//!  WebSdk (tower::Service<CreateAgentRequest>)            Chromium (headless, /usr/bin/chromium)
//!    ├─ a page per creation ── DevTools protocol ────────▶  http://localhost:PORT/index.html
//!    │                                                       └─ the SDK bundle (page/dist)
//!    └─ localhost server: ServeDir(page/dist), POST /token/{one-time key} ◀── the page's fetch
//! ```
//!
//! The access token never crosses the DevTools protocol (whose messages `chromiumoxide` traces):
//! the service puts it behind a one-time random key on its own localhost server and the page
//! fetches it. It never appears in `Debug`, errors, tracing fields or the page's console.
//!
//! Set-up: `websdk/page/build.sh` (npm ci + esbuild) builds the page once; Chromium comes from
//! Debian (`apt-get install chromium`). No Node.js runs on the request path.
//!
//! ```no_run
//! use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
//! use callagent_retry::{CallAgentRetryLayer, RetryConfig};
//! use callagent_websdk::{WebSdk, WebSdkConfig};
//! use tower::{Layer, ServiceExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let sdk = WebSdk::launch(WebSdkConfig::default()).await?;
//! let svc = CallAgentRetryLayer::new(RetryConfig::default())?.layer(sdk.clone());
//! let token = AccessToken::new(std::env::var("ACS_TOKEN")?);
//! let agent = svc.oneshot(CreateAgentRequest::new("8:acs:probe", token, AgentKind::Acs)).await?;
//! println!("{:?}", agent.connection_state().await?);
//! agent.dispose_and_close().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use callagent_retry::sdk::{AgentKind, AgentRequest, CallAgentError, CreateAgentRequest};
use chromiumoxide::browser::{Browser, BrowserConfig, HeadlessMode};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::Page;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

mod error;
mod server;

pub use error::WebSdkError;

/// Host resolver rules that send every name but `localhost` nowhere: with them Chromium can
/// reach only this machine's own server, whatever the SDK tries.
pub const NO_EXTERNAL_HOSTS: &str = "MAP * ~NOTFOUND , EXCLUDE localhost";

/// How to run the browser and the SDK.
#[derive(Debug, Clone)]
pub struct WebSdkConfig {
    /// The Chromium binary (Debian's by default). Never downloaded.
    pub chromium: PathBuf,
    /// The built page (`websdk/page/dist`, made by `websdk/page/build.sh`).
    pub page_dir: PathBuf,
    /// How long the SDK may take to create one agent, once its page has loaded (which
    /// `launch_timeout` bounds), before the page is closed. The SDK resolves a creation
    /// whose service cannot be reached after ~14 s (ACS) to ~76 s (Teams, a network that never
    /// answers), so the default leaves room for those.
    pub create_timeout: Duration,
    /// How long the browser and a page may take to start.
    pub launch_timeout: Duration,
    /// Chromium's `--host-resolver-rules`; [`NO_EXTERNAL_HOSTS`] keeps every request on this
    /// machine (tests, and dry runs of a monitor).
    pub host_resolver_rules: Option<String>,
    /// More Chromium arguments.
    pub extra_args: Vec<String>,
}

impl Default for WebSdkConfig {
    fn default() -> Self {
        Self {
            chromium: PathBuf::from("/usr/bin/chromium"),
            page_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/page/dist")),
            create_timeout: Duration::from_secs(120),
            launch_timeout: Duration::from_secs(30),
            host_resolver_rules: None,
            extra_args: Vec::new(),
        }
    }
}

impl WebSdkConfig {
    /// The default config with [`NO_EXTERNAL_HOSTS`]: nothing the browser resolves leaves the
    /// machine.
    pub fn isolated() -> Self {
        Self { host_resolver_rules: Some(NO_EXTERNAL_HOSTS.to_owned()), ..Self::default() }
    }
}

struct Shared {
    browser: Mutex<Option<Browser>>,
    handler: JoinHandle<()>,
    server: server::Server,
    config: WebSdkConfig,
    // Kept alive as long as the browser: its profile.
    _profile: TempDir,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

/// The web SDK in one headless Chromium: a `tower::Service` creating an agent per request, on a
/// page (and `CallClient`) of its own. Clones share the browser.
#[derive(Clone)]
pub struct WebSdk {
    shared: Arc<Shared>,
}

impl fmt::Debug for WebSdk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSdk").field("page", &self.shared.server.page_url()).finish_non_exhaustive()
    }
}

/// A directory removed on drop (the browser profile).
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl WebSdk {
    /// Starts the page server and Chromium.
    pub async fn launch(config: WebSdkConfig) -> Result<Self, WebSdkError> {
        if !config.page_dir.join("bundle.js").is_file() {
            return Err(WebSdkError::PageLoad(format!(
                "no SDK bundle in {}: run websdk/page/build.sh (npm ci + esbuild) first",
                config.page_dir.display()
            )));
        }
        if !config.chromium.is_file() {
            return Err(WebSdkError::BrowserGone(format!(
                "no Chromium at {}: apt-get install chromium, or set WebSdkConfig::chromium",
                config.chromium.display()
            )));
        }
        let server = server::Server::start(config.page_dir.clone())
            .await
            .map_err(|e| WebSdkError::PageLoad(format!("cannot serve the page on localhost: {e}")))?;
        let profile = std::env::temp_dir().join(format!(
            "callagent-websdk-{}-{}",
            std::process::id(),
            server.addr.port()
        ));
        let profile = TempDir(profile);
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&config.chromium)
            .headless_mode(HeadlessMode::New)
            .user_data_dir(&profile.0)
            .launch_timeout(config.launch_timeout)
            .request_timeout(config.create_timeout + Duration::from_secs(10))
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--disable-gpu",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ])
            .args(config.extra_args.iter().cloned());
        if let Some(rules) = &config.host_resolver_rules {
            builder = builder.arg(format!("--host-resolver-rules={rules}"));
        }
        if running_as_root() {
            builder = builder.no_sandbox();
        }
        let browser_config = builder.build().map_err(WebSdkError::BrowserGone)?;
        let (browser, mut handler) = Browser::launch(browser_config).await.map_err(|e| {
            WebSdkError::BrowserGone(format!("Chromium did not start ({}): {e}", config.chromium.display()))
        })?;
        // The handler drives the DevTools connection. An event this chromiumoxide cannot decode
        // (newer Chromium sends some) is an error item, not the end of the connection.
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::trace!(error = %e, "DevTools event not understood; ignored");
                }
            }
        });
        Ok(Self {
            shared: Arc::new(Shared {
                browser: Mutex::new(Some(browser)),
                handler,
                server,
                config,
                _profile: profile,
            }),
        })
    }

    /// Closes the browser; later creations fail with [`WebSdkError::BrowserGone`].
    pub async fn close(&self) {
        if let Some(mut browser) = self.shared.browser.lock().await.take() {
            let _ = browser.close().await;
            let _ = browser.wait().await;
        }
    }

    /// Pages open in the browser (each creation has its own until its agent is disposed and
    /// closed).
    pub async fn open_pages(&self) -> Result<usize, WebSdkError> {
        use chromiumoxide::cdp::browser_protocol::target::GetTargetsParams;
        let browser = self.shared.browser.lock().await;
        let browser = browser.as_ref().ok_or_else(|| WebSdkError::BrowserGone("closed".into()))?;
        // Asked of the browser itself: the driver's own page list can lag behind a close.
        let targets = browser.execute(GetTargetsParams::default()).await?;
        Ok(targets.result.target_infos.iter().filter(|t| t.r#type == "page").count())
    }

    /// A new page with the SDK loaded: a place for one or more `CallClient`s.
    pub async fn session(&self) -> Result<Session, WebSdkError> {
        let page = {
            let browser = self.shared.browser.lock().await;
            let browser = browser.as_ref().ok_or_else(|| WebSdkError::BrowserGone("closed".into()))?;
            browser.new_page(self.shared.server.page_url()).await?
        };
        let session = Session { page, shared: Arc::clone(&self.shared) };
        let ready = tokio::time::timeout(self.shared.config.launch_timeout, async {
            loop {
                if session.eval::<bool>("window.callagentReady === true").await? {
                    return Ok::<_, WebSdkError>(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(session),
            Ok(Err(e)) => {
                session.close().await;
                Err(e)
            }
            Err(_) => {
                session.close().await;
                Err(WebSdkError::PageLoad(format!(
                    "the SDK bundle did not start within {:?}",
                    self.shared.config.launch_timeout
                )))
            }
        }
    }

    /// Creates an agent for `request` on a page of its own (see [`Session::create`]). With
    /// `request.token_refresher` the credential gets a `tokenRefresher` (returning the same
    /// token), and the SDK checks `exp` itself.
    pub async fn create(&self, request: &CreateAgentRequest) -> Result<Agent, WebSdkError> {
        let session = self.session().await?;
        let created = session.create(request).await;
        if created.is_err() {
            session.close().await;
        }
        created
    }
}

/// One page with the SDK loaded. Agents created on it share its JavaScript realm, as agents of
/// one browser tab do.
#[derive(Clone)]
pub struct Session {
    page: Page,
    shared: Arc<Shared>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Thrown {
    code: Option<u16>,
    #[serde(rename = "subCode")]
    sub_code: Option<u32>,
    #[serde(rename = "resultCategories")]
    result_categories: Option<Vec<String>>,
    name: String,
    message: String,
    json: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    ok: bool,
    id: Option<u64>,
    state: Option<String>,
    same: Option<bool>,
    error: Option<Thrown>,
    ms: f64,
}

impl Session {
    async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> Result<T, WebSdkError> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(WebSdkError::Protocol)?;
        let result = self.page.evaluate_expression(params).await?;
        result
            .into_value()
            .map_err(|e| WebSdkError::Protocol(format!("unexpected answer from the page: {e}")))
    }

    /// Creates an agent on a fresh `CallClient` of this page.
    pub async fn create(&self, request: &CreateAgentRequest) -> Result<Agent, WebSdkError> {
        self.create_on(request, None).await
    }

    /// Creates an agent on the `CallClient` that created `other` (the SDK allows one agent per
    /// client; this is for probing what it does).
    pub async fn create_on_client_of(
        &self,
        other: &Agent,
        request: &CreateAgentRequest,
    ) -> Result<Agent, WebSdkError> {
        self.create_on(request, Some(other.id)).await
    }

    async fn create_on(
        &self,
        request: &CreateAgentRequest,
        client_of: Option<u64>,
    ) -> Result<Agent, WebSdkError> {
        self.create_detailed(request, client_of).await.map_err(|f| f.error)
    }

    /// Like [`create`](Self::create) (on `client_of`'s `CallClient` when given), with what a
    /// failure looked like in the page: for conformance checks.
    pub async fn probe(
        &self,
        request: &CreateAgentRequest,
        client_of: Option<&Agent>,
    ) -> Result<Agent, Box<Failure>> {
        self.create_detailed(request, client_of.map(|a| a.id)).await
    }

    async fn create_detailed(
        &self,
        request: &CreateAgentRequest,
        client_of: Option<u64>,
    ) -> Result<Agent, Box<Failure>> {
        let bare = |error| Box::new(Failure { error, stringified: None, took: None });
        let key = self.shared.server.tokens.offer(request.token().clone());
        let args = serde_json::json!({
            "key": key.as_str(),
            "kind": match request.kind() { AgentKind::Teams => "teams", _ => "acs" },
            "displayName": request.display_name(),
            "tokenRefresher": request.uses_token_refresher(),
            "clientId": client_of,
        });
        let timeout = self.shared.config.create_timeout;
        let expression = format!("window.callagent.create({args})");
        let created: Created = match tokio::time::timeout(timeout, self.eval(&expression)).await {
            Ok(result) => result.map_err(bare)?,
            Err(_) => {
                self.close().await;
                return Err(bare(WebSdkError::Timeout(timeout)));
            }
        };
        drop(key);
        self.settle(created, request)
    }

    /// Starts two creations at once (`delay` apart), on one `CallClient` or on two, and reports
    /// both: how the SDK treats a creation while another is pending. For conformance probing;
    /// both requests use the plain credential.
    pub async fn race(
        &self,
        first: &CreateAgentRequest,
        second: &CreateAgentRequest,
        same_client: bool,
        delay: Duration,
    ) -> Result<Race, WebSdkError> {
        #[derive(Deserialize)]
        struct Raw {
            a: Created,
            b: Created,
            same: bool,
        }
        let (ka, kb) = (
            self.shared.server.tokens.offer(first.token().clone()),
            self.shared.server.tokens.offer(second.token().clone()),
        );
        let kind = |r: &CreateAgentRequest| if r.kind() == AgentKind::Teams { "teams" } else { "acs" };
        let args = serde_json::json!({
            "first": { "key": ka.as_str(), "kind": kind(first) },
            "second": { "key": kb.as_str(), "kind": kind(second) },
            "sameClient": same_client,
            "delayMs": delay.as_millis() as u64,
        });
        let timeout = self.shared.config.create_timeout;
        let raw: Raw =
            match tokio::time::timeout(timeout, self.eval(&format!("window.callagent.race({args})"))).await {
                Ok(r) => r?,
                Err(_) => return Err(WebSdkError::Timeout(timeout)),
            };
        drop((ka, kb));
        let result = |c: Created, r: &CreateAgentRequest| self.settle(c, r).map_err(|f| f.error);
        Ok(Race { first: result(raw.a, first), second: result(raw.b, second), same_agent: raw.same })
    }

    fn settle(&self, created: Created, request: &CreateAgentRequest) -> Result<Agent, Box<Failure>> {
        let bare = |error| Box::new(Failure { error, stringified: None, took: None });
        let took = Duration::from_secs_f64(created.ms.max(0.0) / 1e3);
        if created.ok {
            let id = created
                .id
                .ok_or_else(|| bare(WebSdkError::Protocol("created an agent without an id".into())))?;
            return Ok(Agent {
                identity: request.identity().to_owned(),
                kind: request.kind(),
                id,
                initial_state: ConnectionState::parse(created.state.as_deref().unwrap_or_default()),
                existing: created.same.unwrap_or(false),
                took,
                session: self.clone(),
            });
        }
        let thrown =
            created.error.ok_or_else(|| bare(WebSdkError::Protocol("a failure without an error".into())))?;
        let stringified = thrown.json.clone();
        Err(Box::new(Failure { error: thrown.into_error(), stringified, took: Some(took) }))
    }

    /// Closes the page (and every agent on it, without disposing them). Through the browser
    /// (`Target.closeTarget`), which works while the page is busy awaiting the SDK.
    pub async fn close(&self) {
        use chromiumoxide::cdp::browser_protocol::target::CloseTargetParams;
        let closed = {
            let browser = self.shared.browser.lock().await;
            match browser.as_ref() {
                Some(b) => b.execute(CloseTargetParams::new(self.page.target_id().clone())).await.is_ok(),
                None => false,
            }
        };
        if !closed {
            let _ = self.page.clone().close().await;
        }
    }
}

impl Thrown {
    fn into_error(self) -> WebSdkError {
        let Self { code, sub_code, result_categories, name, message, .. } = self;
        match (code, sub_code) {
            (Some(code), Some(sub_code)) => {
                let mut error = CallAgentError::new(code, sub_code, message).with_name(name);
                for category in result_categories.unwrap_or_default() {
                    error = error.with_category_name(category);
                }
                WebSdkError::Sdk(error)
            }
            _ => WebSdkError::Script { name, message },
        }
    }
}

/// A failed creation, with what the page saw.
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

/// Two creations started together ([`Session::race`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Race {
    /// The first creation's result.
    pub first: Result<Agent, WebSdkError>,
    /// The second creation's result.
    pub second: Result<Agent, WebSdkError>,
    /// Whether both resolved to the very same agent object.
    pub same_agent: bool,
}

/// A `CallAgent`'s (or `TeamsCallAgent`'s) `connectionState`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected to the service: the agent can place and receive calls.
    Connected,
    /// Not connected (the SDK resolves a creation whose service it cannot reach this way).
    Disconnected,
    /// A state this crate does not know, as the SDK spelled it.
    Other(String),
}

impl ConnectionState {
    fn parse(s: &str) -> Self {
        match s {
            "Connected" => Self::Connected,
            "Disconnected" => Self::Disconnected,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A change of an agent's connection state (`connectionStateChanged`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The new state.
    pub state: ConnectionState,
    /// The SDK's reason, if it gave one.
    pub reason: Option<String>,
    /// When, in milliseconds since the page loaded.
    pub at_ms: f64,
}

#[derive(Debug, Deserialize)]
struct RawChange {
    state: String,
    reason: Option<String>,
    at: f64,
}

#[derive(Debug, Deserialize)]
struct RawState {
    state: String,
    changes: Vec<RawChange>,
}

/// A created agent, alive in its page until [`dispose`](Agent::dispose)d.
pub struct Agent {
    identity: String,
    kind: AgentKind,
    id: u64,
    initial_state: ConnectionState,
    existing: bool,
    took: Duration,
    session: Session,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("identity", &self.identity)
            .field("kind", &self.kind)
            .field("state", &self.initial_state)
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The identity the request named.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `CallAgent` or `TeamsCallAgent`.
    pub fn kind(&self) -> AgentKind {
        self.kind
    }

    /// The connection state when the creation resolved.
    pub fn initial_state(&self) -> &ConnectionState {
        &self.initial_state
    }

    /// Whether the SDK handed back an agent this page already had (it does for a second create
    /// on one `CallClient`) instead of a new one.
    pub fn is_existing(&self) -> bool {
        self.existing
    }

    /// How long the SDK took to resolve the creation.
    pub fn creation_time(&self) -> Duration {
        self.took
    }

    /// The page the agent lives on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The connection state now, and every change since the creation.
    pub async fn connection_state(&self) -> Result<(ConnectionState, Vec<StateChange>), WebSdkError> {
        let raw: Option<RawState> =
            self.session.eval(&format!("window.callagent.state({})", self.id)).await?;
        let raw = raw.ok_or_else(|| WebSdkError::Protocol("the agent is gone from its page".into()))?;
        let changes = raw
            .changes
            .into_iter()
            .map(|c| StateChange { state: ConnectionState::parse(&c.state), reason: c.reason, at_ms: c.at })
            .collect();
        Ok((ConnectionState::parse(&raw.state), changes))
    }

    /// Disposes the agent (awaiting the SDK's `dispose()`), then closes its page when no other
    /// agent was created on it.
    pub async fn dispose(self) -> Result<(), WebSdkError> {
        #[derive(Deserialize)]
        struct Disposed {
            ok: bool,
            error: Option<Thrown>,
        }
        let disposed: Disposed = self.session.eval(&format!("window.callagent.dispose({})", self.id)).await?;
        if disposed.ok {
            return Ok(());
        }
        Err(disposed.error.map_or_else(|| WebSdkError::Protocol("dispose failed".into()), Thrown::into_error))
    }

    /// Disposes the agent and closes its page.
    pub async fn dispose_and_close(self) -> Result<(), WebSdkError> {
        let session = self.session.clone();
        let result = self.dispose().await;
        session.close().await;
        result
    }
}

/// The agent can be judged by `callagent_retry`'s connect check: connected within a time, and
/// disposed (with its page) when it is not.
impl callagent_retry::connect::Connectable for Agent {
    fn connected_within(&mut self, within: Duration) -> callagent_retry::connect::BoxFuture<'_, bool> {
        Box::pin(async move {
            if self.initial_state == ConnectionState::Connected {
                return true;
            }
            let deadline = tokio::time::Instant::now() + within;
            loop {
                if let Ok((ConnectionState::Connected, _)) = self.connection_state().await {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(250).min(within)).await;
            }
        })
    }

    fn dispose(self) -> callagent_retry::connect::BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = self.dispose_and_close().await {
                tracing::debug!(error = %e, "disposing an agent that never connected failed");
            }
        })
    }
}

impl tower::Service<CreateAgentRequest> for WebSdk {
    type Response = Agent;
    type Error = WebSdkError;
    type Future = Pin<Box<dyn Future<Output = Result<Agent, WebSdkError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), WebSdkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CreateAgentRequest) -> Self::Future {
        let sdk = self.clone();
        Box::pin(async move { sdk.create(&request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_page_or_browser_is_a_clear_error() {
        let config = WebSdkConfig { page_dir: PathBuf::from("/nonexistent"), ..WebSdkConfig::isolated() };
        let err = WebSdk::launch(config).await.unwrap_err().to_string();
        assert!(err.contains("websdk/page/build.sh"), "{err}");
        let config =
            WebSdkConfig { chromium: PathBuf::from("/nonexistent/chromium"), ..WebSdkConfig::isolated() };
        if config.page_dir.join("bundle.js").is_file() {
            let err = WebSdk::launch(config).await.unwrap_err().to_string();
            assert!(err.contains("apt-get install chromium"), "{err}");
        }
    }

    #[test]
    fn isolation_maps_every_external_host_away() {
        assert_eq!(WebSdkConfig::isolated().host_resolver_rules.as_deref(), Some(NO_EXTERNAL_HOSTS));
        assert!(WebSdkConfig::default().host_resolver_rules.is_none());
    }
}
