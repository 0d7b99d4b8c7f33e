//! Preflight: fail fast, with the SDK's own code and subcode, on what the SDK would refuse before
//! any network traffic, and never call the inner service for it.
//!
//! | check (on the token's JWT payload, unverified) | error |
//! |---|---|
//! | `acsScope` is not a string | 401/44114 |
//! | `acsScope` has neither `voip` nor `voip.join` | 401/44113 |
//! | no `skypeid` | 401/44116 |
//! | no `resourceId`, for a non-Teams user | 401/44115 |
//! | a `tid` (Teams user's token) on an ACS agent | 403/40229 |
//! | no `tid` on a Teams agent | 403/40231 |
//! | a display name for a Teams user | 400/40214 |
//! | `exp` in the past | 401/40235 |
//!
//! A token that cannot be decoded passes through untouched (with a `DEBUG` event): the token
//! format is not a contract, and the service stays the judge. Put the layer inside the retry
//! layer so its rejections are counted per subcode like any other:
//! `ServiceBuilder::new().layer(retry).layer(PreflightLayer::new()).service(sdk)`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::sdk::catalog::{
    ACS_AGENT_NEEDS_ACS_TOKEN, TEAMS_AGENT_NEEDS_TEAMS_TOKEN, TEAMS_DISPLAY_NAME, TOKEN_EXPIRED,
    TOKEN_SCOPE_NOT_A_STRING, TOKEN_SCOPE_WITHOUT_VOIP, TOKEN_WITHOUT_RESOURCE_ID, TOKEN_WITHOUT_USER_ID,
};
use crate::sdk::{AgentKind, AgentRequest, CallAgentError};

/// Applies the checks in the [module docs](self) at wall-clock time `now` (token expiry is wall
/// time, not tokio's). `Ok` when they pass or the token cannot be decoded.
///
/// ```
/// use std::time::SystemTime;
/// use callagent_retry::preflight::check;
/// use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
/// let token = AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_u", "acsScope": "chat"}));
/// let req = CreateAgentRequest::new("u", token, AgentKind::Acs);
/// assert_eq!(check(&req, SystemTime::now()).unwrap_err().sub_code(), 44113);
/// ```
pub fn check<R: AgentRequest + ?Sized>(request: &R, now: SystemTime) -> Result<(), CallAgentError> {
    let claims = match request.token().claims() {
        Ok(claims) => claims,
        Err(reason) => {
            tracing::debug!(%reason, "preflight skipped: the access token cannot be decoded");
            return Ok(());
        }
    };
    let fail =
        |sub_code| Err(CallAgentError::from_catalog(sub_code).expect("preflight subcodes are catalogued"));
    let Some(serde_json::Value::String(scope)) = &claims.acs_scope else {
        return fail(TOKEN_SCOPE_NOT_A_STRING);
    };
    if !scope.split(|c: char| c.is_whitespace() || c == ',').any(|s| s == "voip" || s == "voip.join") {
        return fail(TOKEN_SCOPE_WITHOUT_VOIP);
    }
    if claims.skypeid.is_none() {
        return fail(TOKEN_WITHOUT_USER_ID);
    }
    let teams_user = claims.tid.is_some();
    if !teams_user && claims.resource_id.is_none() {
        return fail(TOKEN_WITHOUT_RESOURCE_ID);
    }
    match (request.kind(), teams_user) {
        (AgentKind::Acs, true) => return fail(ACS_AGENT_NEEDS_ACS_TOKEN),
        (AgentKind::Teams, false) => return fail(TEAMS_AGENT_NEEDS_TEAMS_TOKEN),
        _ => {}
    }
    if teams_user && request.display_name().is_some() {
        return fail(TEAMS_DISPLAY_NAME);
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if claims.exp.is_some_and(|exp| exp <= now_secs) {
        return fail(TOKEN_EXPIRED);
    }
    Ok(())
}

/// Wall-clock source for token expiry; tests pass their own.
pub type WallClock = fn() -> SystemTime;

/// Builds [`Preflight`] services.
#[derive(Debug, Clone, Copy)]
pub struct PreflightLayer {
    clock: WallClock,
}

impl PreflightLayer {
    /// Checks against the system clock.
    pub fn new() -> Self {
        Self { clock: SystemTime::now }
    }

    /// Checks expiry against `clock` instead.
    pub fn with_clock(clock: WallClock) -> Self {
        Self { clock }
    }
}

impl Default for PreflightLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for PreflightLayer {
    type Service = Preflight<S>;

    fn layer(&self, inner: S) -> Preflight<S> {
        Preflight { inner, clock: self.clock }
    }
}

/// Rejects, without calling the inner service, a request the SDK would refuse (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct Preflight<S> {
    inner: S,
    clock: WallClock,
}

impl<S, R> Service<R> for Preflight<S>
where
    S: Service<R>,
    S::Error: From<CallAgentError>,
    R: AgentRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = PreflightFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match check(&request, (self.clock)()) {
            Ok(()) => PreflightFuture { kind: Kind::Inner { future: self.inner.call(request) } },
            Err(e) => {
                tracing::debug!(code = e.code(), subcode = e.sub_code(), "preflight rejected the request");
                PreflightFuture { kind: Kind::Rejected { error: Some(e.into()) } }
            }
        }
    }
}

pin_project! {
    /// The inner service's future, or the preflight's rejection.
    pub struct PreflightFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

impl<F, E> std::fmt::Debug for PreflightFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected = matches!(self.kind, Kind::Rejected { .. });
        f.debug_struct("PreflightFuture").field("rejected", &rejected).finish_non_exhaustive()
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Inner { #[pin] future: F },
        Rejected { error: Option<E> },
    }
}

impl<F, T, E> Future for PreflightFuture<F, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("PreflightFuture polled after completion")))
            }
        }
    }
}
