//! Remedy hooks: fix a known `ExpectedError` (or a token fetch failure) with an
//! application-provided action, then try once more. Opt-in twice: [`RemedyConfig`] (the
//! `[remedy]` section of the [config file](crate::config)) switches each hook on, the builder
//! supplies it.
//!
//! | failure | hook | then |
//! |---|---|---|
//! | 44110 (failed to get the token), 40235 (token expired), 44117 (the token's payload cannot be decoded) | `token_source(identity)` → a fresh token, put in the request | one more call |
//! | 40228 / 40230 (another `CallClient` created for this identity in the same tick) | `create_again_on_race`: nothing (the SDK hands back the racing creation's agent) | one more call |
//! | 40228 / 40230, with `dispose_existing_agent` instead | `dispose(identity)` (disposes the racing creation's agent) | one more call |
//!
//! Never more than one extra call per call through this layer, and only after the hook succeeded:
//! an `ExpectedError` is still never blindly retried. Each use is counted in
//! `callagent_remedy_hooks_total{hook, outcome}` (`outcome` = `fixed`, `still_failing`,
//! `hook_failed`) and traced at `INFO` (`WARN` when the hook fails). Put it inside the retry
//! layer: `ServiceBuilder::new().layer(retry).layer(remedy).layer(preflight).service(sdk)`.
//!
//! Cost: every call clones the inner service and the request (kept for the one extra call, as
//! tower's `Retry` keeps them), whether or not a hook runs; a remedy in progress is one boxed
//! future. The success path allocates only what those clones allocate (a `String` identity and a
//! token for [`CreateAgentRequest`](crate::sdk::CreateAgentRequest)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::metrics::Counter;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use serde::{Deserialize, Serialize};

use crate::classify::Classify;
use crate::sdk::catalog::{
    AGENT_EXISTS, TEAMS_AGENT_EXISTS, TOKEN_EXPIRED, TOKEN_FETCH_FAILED, TOKEN_UNPARSABLE,
};
use crate::sdk::{AccessToken, AgentRequest};
use crate::validate::ConfigError;

/// Which remedy hooks run: the `[remedy]` section of the [config file](crate::config). Both off
/// by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemedyConfig {
    /// On 44110, 40235 or 44117: get a fresh token from the application, then call once more.
    pub refresh_token: bool,
    /// On 40228 or 40230: let the application dispose the identity's agent, then call once more.
    /// Beware: the real SDK answers 40228 only to a creation that raced another `CallClient`'s
    /// in the same tick, so the agent disposed is the one the other creation just made.
    pub dispose_existing_agent: bool,
    /// On 40228 or 40230: call once more, without disposing anything: the real SDK then hands
    /// back the agent the racing creation made. Needs no function; wins over
    /// `dispose_existing_agent` when both are on.
    pub create_again_on_race: bool,
}

/// An error from an application's hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
type TokenSource = Arc<dyn Fn(String) -> BoxFuture<Result<AccessToken, BoxError>> + Send + Sync>;
type Disposer = Arc<dyn Fn(String) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

/// The metric counting hook uses.
pub const HOOKS: &str = "callagent_remedy_hooks_total";

/// Which hook ran. `#[non_exhaustive]`: more hooks may come.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A fresh token from the application's token source.
    RefreshToken,
    /// The application disposed the identity's existing agent.
    DisposeExistingAgent,
    /// Nothing to fix: a creation that lost a same-tick race is made once more.
    CreateAgainOnRace,
}

impl Hook {
    /// The `hook` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::DisposeExistingAgent => "dispose_existing_agent",
            Self::CreateAgainOnRace => "create_again_on_race",
        }
    }
}

/// Counters for one hook: fixed, still failing, hook failed.
struct Counters([Counter; 3]);

impl Counters {
    fn new(hook: Hook) -> Self {
        ::metrics::describe_counter!(HOOKS, ::metrics::Unit::Count, "Remedy hook uses, by hook and outcome.");
        Self(
            ["fixed", "still_failing", "hook_failed"]
                .map(|o| ::metrics::counter!(HOOKS, "hook" => hook.as_str(), "outcome" => o)),
        )
    }
}

/// The hooks switched on, each with its counters.
struct Hooks {
    refresh: Option<(TokenSource, Counters)>,
    dispose: Option<(Disposer, Counters)>,
    again: Option<Counters>,
}

/// Builds a [`RemedyLayer`]: supply the hooks the config switches on.
///
/// ```
/// use callagent_retry::remedy::{RemedyConfig, RemedyLayer};
/// use callagent_retry::sdk::AccessToken;
/// let config = RemedyConfig { refresh_token: true, ..Default::default() };
/// let layer = RemedyLayer::builder(&config)
///     .token_source(|identity: String| async move {
///         Ok(AccessToken::new(format!("fresh token for {identity}")))
///     })
///     .build()
///     .unwrap();
/// // Switched on in the config but not supplied: refused, naming the field.
/// let err = RemedyLayer::builder(&RemedyConfig { refresh_token: true, ..Default::default() }).build().unwrap_err();
/// assert_eq!(err.field(), Some("remedy.refresh_token"));
/// ```
#[must_use]
pub struct RemedyBuilder {
    config: RemedyConfig,
    refresh: Option<TokenSource>,
    dispose: Option<Disposer>,
}

impl fmt::Debug for RemedyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemedyBuilder")
            .field("config", &self.config)
            .field("token_source", &self.refresh.is_some())
            .field("dispose", &self.dispose.is_some())
            .finish()
    }
}

impl RemedyBuilder {
    /// The application's token source, called with the identity.
    pub fn token_source<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AccessToken, BoxError>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move |identity| Box::pin(f(identity))));
        self
    }

    /// The application's dispose, called with the identity whose agent already exists.
    pub fn dispose<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.dispose = Some(Arc::new(move |identity| Box::pin(f(identity))));
        self
    }

    /// The layer, with the hooks the config switches on. A hook switched on without a function
    /// is an error; a function whose hook is switched off is not used.
    pub fn build(self) -> Result<RemedyLayer, ConfigError> {
        let missing = |field: &str, what: &str| ConfigError::Invalid {
            field: field.into(),
            reason: format!("is on, but no {what} was given to RemedyLayer::builder"),
        };
        let refresh = match (self.config.refresh_token, self.refresh) {
            (true, None) => return Err(missing("remedy.refresh_token", "token_source")),
            (true, Some(f)) => Some((f, Counters::new(Hook::RefreshToken))),
            (false, _) => None,
        };
        let dispose = match (self.config.dispose_existing_agent, self.dispose) {
            (true, None) => return Err(missing("remedy.dispose_existing_agent", "dispose function")),
            (true, Some(f)) => Some((f, Counters::new(Hook::DisposeExistingAgent))),
            (false, _) => None,
        };
        let again = self.config.create_again_on_race.then(|| Counters::new(Hook::CreateAgainOnRace));
        Ok(RemedyLayer { shared: Arc::new(Hooks { refresh, dispose, again }) })
    }
}

/// Runs remedy hooks around the inner service (see the [module docs](self)).
#[derive(Clone)]
pub struct RemedyLayer {
    shared: Arc<Hooks>,
}

impl RemedyLayer {
    /// Starts a layer for the hooks `config` switches on.
    pub fn builder(config: &RemedyConfig) -> RemedyBuilder {
        RemedyBuilder { config: config.clone(), refresh: None, dispose: None }
    }
}

impl fmt::Debug for RemedyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemedyLayer")
            .field("refresh_token", &self.shared.refresh.is_some())
            .field("dispose_existing_agent", &self.shared.dispose.is_some())
            .field("create_again_on_race", &self.shared.again.is_some())
            .finish()
    }
}

impl<S> Layer<S> for RemedyLayer {
    type Service = Remedy<S>;

    fn layer(&self, inner: S) -> Remedy<S> {
        Remedy { inner, shared: Arc::clone(&self.shared) }
    }
}

/// The service [`RemedyLayer`] makes.
#[derive(Clone)]
pub struct Remedy<S> {
    inner: S,
    shared: Arc<Hooks>,
}

impl<S> fmt::Debug for Remedy<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remedy").finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for Remedy<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Classify + Send + 'static,
    R: AgentRequest + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let again = self.inner.clone();
        let future = self.inner.call(request.clone());
        ResponseFuture {
            state: State::First { future, again: Some((again, request)), shared: Arc::clone(&self.shared) },
        }
    }
}

pin_project! {
    /// The first call's future; a boxed remedy only when a hook runs.
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R>
    where
        S: Service<R>,
    {
        First { #[pin] future: S::Future, again: Option<(S, R)>, shared: Arc<Hooks> },
        Remedying { future: BoxFuture<Result<S::Response, S::Error>> },
    }
}

impl<S: Service<R>, R> fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remedying = matches!(self.state, State::Remedying { .. });
        f.debug_struct("ResponseFuture").field("remedying", &remedying).finish_non_exhaustive()
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R> + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Classify + Send + 'static,
    R: AgentRequest + Send + 'static,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::First { future, again, shared } => {
                    let error = match ready!(future.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(error) => error,
                    };
                    let sub_code = error.sub_code();
                    let hook = match sub_code {
                        Some(TOKEN_FETCH_FAILED | TOKEN_EXPIRED | TOKEN_UNPARSABLE)
                            if shared.refresh.is_some() =>
                        {
                            Hook::RefreshToken
                        }
                        Some(AGENT_EXISTS | TEAMS_AGENT_EXISTS) if shared.again.is_some() => {
                            Hook::CreateAgainOnRace
                        }
                        Some(AGENT_EXISTS | TEAMS_AGENT_EXISTS) if shared.dispose.is_some() => {
                            Hook::DisposeExistingAgent
                        }
                        _ => return Poll::Ready(Err(error)),
                    };
                    let Some((service, request)) = again.take() else { return Poll::Ready(Err(error)) };
                    let future = Box::pin(remedy(Arc::clone(shared), hook, error, service, request));
                    this.state.set(State::Remedying { future });
                }
                StateProj::Remedying { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

/// Runs `hook`, then calls once more; on a failed hook, returns the original error.
async fn remedy<S, R>(
    shared: Arc<Hooks>,
    hook: Hook,
    error: S::Error,
    service: S,
    mut request: R,
) -> Result<S::Response, S::Error>
where
    S: Service<R>,
    S::Error: Classify,
    R: AgentRequest,
{
    let identity = request.identity().to_owned();
    let subcode = error.sub_code().unwrap_or_default();
    let (fixed, counters) = match (hook, &shared.refresh, &shared.dispose, &shared.again) {
        (Hook::RefreshToken, Some((source, counters)), _, _) => {
            (source(identity).await.map(|token| request.set_token(token)), counters)
        }
        (Hook::DisposeExistingAgent, _, Some((dispose, counters)), _) => (dispose(identity).await, counters),
        (Hook::CreateAgainOnRace, _, _, Some(counters)) => (Ok(()), counters),
        _ => return Err(error),
    };
    if let Err(reason) = fixed {
        counters.0[2].increment(1);
        tracing::warn!(hook = hook.as_str(), subcode, %reason, "remedy hook failed; returning the original error");
        return Err(error);
    }
    let result = service.oneshot(request).await;
    let outcome = if result.is_ok() { 0 } else { 1 };
    counters.0[outcome].increment(1);
    tracing::info!(
        hook = hook.as_str(),
        subcode,
        fixed = result.is_ok(),
        "remedy hook ran; called once more"
    );
    result
}
