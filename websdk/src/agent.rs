//! Agents: a created `CallAgent` (or `TeamsCallAgent`) in its page. An agent dropped without
//! [`Agent::dispose`] is disposed in the background, and its page closed when it was the page's
//! last user; its `max_agents` slot is held until then.

use std::fmt;
use std::time::Duration;

use callagent_retry::sdk::{AgentKind, AgentRequest, CreateAgentRequest};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::WebSdkError;
use crate::page::{Failure, Tab, bare};
use crate::pool::Place;
use crate::protocol::{self, Created, Disposed, RawState, Thrown};

/// How long the SDK's `dispose()` may take, explicit or of a dropped agent.
const DISPOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub(crate) fn parse(s: &str) -> Self {
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

/// A created agent, alive in its page until [`dispose`](Agent::dispose)d or dropped (a drop
/// disposes it in the background).
pub struct Agent {
    identity: String,
    kind: AgentKind,
    id: u64,
    initial_state: ConnectionState,
    existing: bool,
    took: Duration,
    tab: Tab,
    disposed: bool,
    /// Its `max_agents` slot, for an agent created through the service.
    slot: Option<OwnedSemaphorePermit>,
    /// Its place on a pooled page, for an agent created through the service.
    place: Option<Place>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("identity", &self.identity)
            .field("browser", &self.browser())
            .field("kind", &self.kind)
            .field("state", &self.initial_state)
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

/// What an agent's call gets when its page or browser is gone.
fn gone(e: WebSdkError) -> WebSdkError {
    match e {
        WebSdkError::BrowserDied(why) => WebSdkError::AgentGone(format!("its browser died: {why}")),
        WebSdkError::BrowserGone(why) => WebSdkError::AgentGone(format!("its browser is gone: {why}")),
        WebSdkError::Closed => WebSdkError::AgentGone("its service was closed".into()),
        WebSdkError::PageGone(why) => WebSdkError::AgentGone(format!("its page is gone: {why}")),
        other => other,
    }
}

impl Agent {
    pub(crate) fn new(
        request: &CreateAgentRequest,
        id: u64,
        initial_state: ConnectionState,
        existing: bool,
        took: Duration,
        tab: Tab,
    ) -> Self {
        Self {
            identity: request.identity().to_owned(),
            kind: request.kind(),
            id,
            initial_state,
            existing,
            took,
            tab,
            disposed: false,
            slot: None,
            place: None,
        }
    }

    pub(crate) fn with_place(mut self, place: Place) -> Self {
        self.place = Some(place);
        self
    }

    pub(crate) fn with_slot(mut self, slot: OwnedSemaphorePermit) -> Self {
        self.slot = Some(slot);
        self
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The identity the request named.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The name of the browser the agent lives in (its `WebSdkConfig::name`; a member of
    /// `Browsers` found by DNS is named by its address): where to look when it misbehaves, and
    /// the `browser` label of its metrics.
    pub fn browser(&self) -> &str {
        self.tab.browser_name()
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
    pub fn tab(&self) -> &Tab {
        &self.tab
    }

    /// The connection state now, and every change since the creation. Fails with
    /// [`WebSdkError::AgentGone`] once its page or browser is gone.
    pub async fn connection_state(&self) -> Result<(ConnectionState, Vec<StateChange>), WebSdkError> {
        let raw: Option<RawState> = self.tab.eval(&protocol::state(self.id)).await.map_err(gone)?;
        let raw = raw.ok_or_else(|| WebSdkError::AgentGone("its page no longer has it".into()))?;
        let changes = raw
            .changes
            .into_iter()
            .map(|c| StateChange { state: ConnectionState::parse(&c.state), reason: c.reason, at_ms: c.at })
            .collect();
        Ok((ConnectionState::parse(&raw.state), changes))
    }

    /// Disposes the agent (awaiting the SDK's `dispose()`, for up to 5 s). Its page closes when
    /// no other agent or [`Tab`] handle uses it; its `max_agents` slot is free when this
    /// returns, or at most 5 s later when the SDK's `dispose()` did not settle in time
    /// ([`WebSdkError::DisposeTimeout`]). On an agent whose page is gone it fails at once with
    /// [`WebSdkError::AgentGone`] (nothing is left to dispose).
    pub async fn dispose(mut self) -> Result<(), WebSdkError> {
        let disposed =
            tokio::time::timeout(DISPOSE_TIMEOUT, self.tab.eval(&protocol::dispose(self.id))).await;
        // Not marked disposed: dropping it asks the page once more in the background, which
        // answers at once if the first request arrived (the page stops tracking an agent when
        // its dispose begins) and covers the case where it did not.
        let Ok(disposed) = disposed else {
            return Err(WebSdkError::DisposeTimeout(DISPOSE_TIMEOUT));
        };
        let disposed: Disposed = disposed.map_err(gone)?;
        self.disposed = true;
        if disposed.ok {
            return Ok(());
        }
        Err(disposed.error.map_or_else(|| WebSdkError::unexpected("dispose failed"), Thrown::into_error))
    }

    /// Disposes the agent and closes its page now, with any other agent on it.
    pub async fn dispose_and_close(self) -> Result<(), WebSdkError> {
        let tab = self.tab.clone();
        let result = self.dispose().await;
        tab.close().await;
        result
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.disposed || self.tab.is_gone() {
            return;
        }
        // No blocking in drop: the runtime disposes it, then lets its page and slot go.
        let tab = self.tab.clone();
        let slot = self.slot.take();
        let place = self.place.take();
        let expression = protocol::dispose(self.id);
        tab.instance().handle().clone().spawn(async move {
            let disposed = tokio::time::timeout(DISPOSE_TIMEOUT, tab.eval::<Disposed>(&expression)).await;
            if !matches!(disposed, Ok(Ok(Disposed { ok: true, .. }))) {
                tracing::debug!("disposing a dropped agent failed; its page is closed anyway");
            }
            drop((tab, place, slot));
        });
    }
}

/// The agent can be judged by `callagent_retry`'s connect check: connected within a time, and
/// disposed when it is not.
impl callagent_retry::connect::Connectable for Agent {
    fn connected_within(&mut self, within: Duration) -> callagent_retry::connect::BoxFuture<'_, bool> {
        Box::pin(async move {
            if self.initial_state == ConnectionState::Connected {
                return true;
            }
            let deadline = tokio::time::Instant::now() + within;
            loop {
                match self.connection_state().await {
                    Ok((ConnectionState::Connected, _)) => return true,
                    Err(WebSdkError::AgentGone(_)) => return false,
                    _ => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(250).min(within)).await;
            }
        })
    }

    /// Disposes the agent alone: its page is shared with other callers' agents and closes with
    /// its last one.
    fn dispose(self) -> callagent_retry::connect::BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = Agent::dispose(self).await {
                tracing::debug!(error = %e, "disposing an agent that never connected failed");
            }
        })
    }
}
/// Two creations started together (`Tab::race`, a probe of the conformance suite).
#[doc(hidden)]
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

// Creations on a page, made into agents here: the page module knows nothing of agents.
impl Tab {
    /// Creates an agent on a fresh `CallClient` of this page. Unlike the service's creations,
    /// it takes no slot of `max_agents`.
    pub async fn create(&self, request: &CreateAgentRequest) -> Result<Agent, WebSdkError> {
        self.probe(request, None).await.map_err(|f| f.error)
    }

    // A probe of the conformance and lifecycle suites, not API: hidden from the docs, and may
    // change without notice.
    #[doc(hidden)]
    /// Creates an agent on the `CallClient` that created `other` (the SDK allows one agent per
    /// client; this is for probing what it does).
    pub async fn create_on_client_of(
        &self,
        other: &Agent,
        request: &CreateAgentRequest,
    ) -> Result<Agent, WebSdkError> {
        self.probe(request, Some(other)).await.map_err(|f| f.error)
    }

    // A probe of the conformance and lifecycle suites, not API: hidden from the docs, and may
    // change without notice.
    #[doc(hidden)]
    /// Like [`create`](Self::create) (on `client_of`'s `CallClient` when given), with what a
    /// failure looked like in the page: for conformance checks.
    pub async fn probe(
        &self,
        request: &CreateAgentRequest,
        client_of: Option<&Agent>,
    ) -> Result<Agent, Box<Failure>> {
        let created = self.make(request, client_of.map(Agent::id)).await?;
        settle(self, created, request)
    }

    /// Starts two creations at once (`delay` apart), on one `CallClient` or on two, and reports
    /// both: how the SDK treats a creation while another is pending. For conformance probing;
    /// both requests use the plain credential.
    // A probe of the conformance and lifecycle suites, not API: hidden from the docs, and may
    // change without notice.
    #[doc(hidden)]
    pub async fn race(
        &self,
        first: &CreateAgentRequest,
        second: &CreateAgentRequest,
        same_client: bool,
        delay: Duration,
    ) -> Result<Race, WebSdkError> {
        let raw = self.make_race(first, second, same_client, delay).await?;
        let result = |c: Created, r: &CreateAgentRequest| settle(self, c, r).map_err(|f| f.error);
        Ok(Race { first: result(raw.a, first), second: result(raw.b, second), same_agent: raw.same })
    }
}

/// The agent the page made, or what it threw.
fn settle(tab: &Tab, created: Created, request: &CreateAgentRequest) -> Result<Agent, Box<Failure>> {
    let took = Duration::from_secs_f64(created.ms.max(0.0) / 1e3);
    if created.ok {
        let id = created.id.ok_or_else(|| bare(WebSdkError::unexpected("created an agent without an id")))?;
        let state = ConnectionState::parse(created.state.as_deref().unwrap_or_default());
        return Ok(Agent::new(request, id, state, created.same.unwrap_or(false), took, tab.clone()));
    }
    let thrown = created.error.ok_or_else(|| bare(WebSdkError::unexpected("a failure without an error")))?;
    let stringified = thrown.json.clone();
    Err(Box::new(Failure { error: thrown.into_error(), stringified, took: Some(took) }))
}
