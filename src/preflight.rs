//! Preflight: fail fast, with the SDK's own code and subcode, on what the SDK would refuse before
//! any network traffic, and never call the inner service for it.
//!
//! The checks and their order are the real Web Calling SDK's (2.0.0), established by the
//! conformance suite in `websdk/` against the SDK itself:
//!
//! | # | check (on the token's JWT payload, unverified) | error |
//! |---|---|---|
//! | 1 | the token is empty | 401/44109 ¹ |
//! | 2 | not three dot-separated parts | 401/44111 |
//! | 3 | the payload is not base64url JSON (or not an object ¹) | 401/44117 |
//! | 4 | with a token refresher only: `exp` is a number at or before now | 401/40235 ² |
//! | 5 | neither `acsScope` nor `resourceId`: checks 6–10 are skipped and the token is not a Teams user's; with no `oid` either | 401/44114 ³ |
//! | 6 | `acsScope` is not a string | 401/44114 |
//! | 7 | `acsScope` split on `,` has no element exactly `voip` or `voip.join` | 401/44113 |
//! | 8 | no `resourceId`, unless `skypeid` is a Teams user's id (`orgid:`, `dod:`, `gcch:`, `teamsvisitor:`) | 401/44115 |
//! | 9 | no `skypeid` | 401/44116 |
//! | 10 | `skypeid` is not a string / has no `prefix:` | 401/44117 / 409/44012 |
//! | 11 | a Teams user's token (`tid`) on an ACS agent | 403/40229 |
//! | 12 | no `tid` on a Teams agent | 403/40231 |
//! | 13 | a (non-empty) display name for a Teams user | 400/40214 |
//! | 14 | a display name over 256 characters | 400/40215 |
//!
//! Which identity needs a `resourceId` (8) is told from the form of `skypeid`; which agent kind
//! a token may create (11, 12) from `tid`. The generated grid of the conformance suite
//! (`websdk/tests/grid.rs`: every claim absent, mistyped, empty and in each of its forms, × agent
//! kind × credential) checks all of it against the real SDK.
//!
//! ¹ Deliberate differences: for an empty token the SDK's credential throws a plain `Error`
//! before the SDK sees it, and for a payload that is JSON but not an object the SDK throws a
//! `TypeError`; preflight reports the SDK's own subcodes for those conditions instead, so the
//! retry layer stops with a remedy. ² With the plain credential the SDK does not check `exp` (an
//! expired token gives a `Disconnected` agent); [`PreflightLayer::strict_expiry`] checks it there
//! too, which is stricter than the SDK. ³ The SDK crashes with a `TypeError` on a token with
//! neither `acsScope`, `resourceId` nor `oid` (it has no identity); preflight stops it as a token
//! without a scope.
//!
//! A claim is "present" as in the SDK's JavaScript (not missing, `null`, `false`, `0` or `""`);
//! each claim is read on its own. Put the layer inside the retry layer so its rejections are
//! counted per subcode like any other:
//! `ServiceBuilder::new().layer(retry).layer(PreflightLayer::new()).service(sdk)`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::sdk::catalog::{
    ACS_AGENT_NEEDS_ACS_TOKEN, DISPLAY_NAME_TOO_LONG, TEAMS_AGENT_NEEDS_TEAMS_TOKEN, TEAMS_DISPLAY_NAME,
    TOKEN_EMPTY, TOKEN_EXPIRED, TOKEN_INVALID, TOKEN_SCOPE_NOT_A_STRING, TOKEN_SCOPE_WITHOUT_VOIP,
    TOKEN_UNPARSABLE, TOKEN_WITHOUT_RESOURCE_ID, TOKEN_WITHOUT_USER_ID, USER_ID_WITHOUT_CLOUD_PREFIX,
};
use crate::sdk::{AgentKind, AgentRequest, CallAgentError, TokenError};

/// The longest display name the SDK accepts, in UTF-16 code units (JavaScript's `length`).
pub const MAX_DISPLAY_NAME: usize = 256;

/// Applies the checks in the [module docs](self) at wall-clock time `now` (token expiry is wall
/// time, not tokio's), as the SDK does: `exp` only when the request uses a token refresher.
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
    check_with(request, now, false)
}

fn check_with<R: AgentRequest + ?Sized>(
    request: &R,
    now: SystemTime,
    strict_expiry: bool,
) -> Result<(), CallAgentError> {
    let fail =
        |sub_code| Err(CallAgentError::from_catalog(sub_code).expect("preflight subcodes are catalogued"));
    if request.token().expose_secret().is_empty() {
        return fail(TOKEN_EMPTY);
    }
    let claims = match request.token().claims() {
        Ok(claims) => claims,
        Err(TokenError::NotAJwt) => return fail(TOKEN_INVALID),
        Err(_) => return fail(TOKEN_UNPARSABLE),
    };
    if request.uses_token_refresher() || strict_expiry {
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if claims.exp().is_some_and(|exp| exp <= now_secs) {
            return fail(TOKEN_EXPIRED);
        }
    }
    // A token with neither a scope nor a resource skips the SDK's scope and identity checks
    // (its identity is the Entra `oid`), and is never a Teams user's.
    let teams_user = if !claims.has_acs_scope() && !claims.has_resource_id() {
        if !claims.has_object_id() {
            // The SDK crashes on it (a TypeError, no identity): stop with the scope's subcode.
            return fail(TOKEN_SCOPE_NOT_A_STRING);
        }
        false
    } else {
        let Some(serde_json::Value::String(scope)) = claims.acs_scope() else {
            return fail(TOKEN_SCOPE_NOT_A_STRING);
        };
        if !scope.split(',').any(|s| s == "voip" || s == "voip.join") {
            return fail(TOKEN_SCOPE_WITHOUT_VOIP);
        }
        if !claims.has_resource_id() && !claims.is_teams_identity() {
            return fail(TOKEN_WITHOUT_RESOURCE_ID);
        }
        if !claims.has_user_id() {
            return fail(TOKEN_WITHOUT_USER_ID);
        }
        // The SDK reads the cloud from the id's `prefix:`; an id that is not a string breaks it.
        match claims.get("skypeid") {
            Some(serde_json::Value::String(id)) if id.find(':').is_some_and(|i| i > 0) => {}
            Some(serde_json::Value::String(_)) => return fail(USER_ID_WITHOUT_CLOUD_PREFIX),
            _ => return fail(TOKEN_UNPARSABLE),
        }
        claims.is_teams_user()
    };
    match (request.kind(), teams_user) {
        (AgentKind::Acs, true) => return fail(ACS_AGENT_NEEDS_ACS_TOKEN),
        (AgentKind::Teams, false) => return fail(TEAMS_AGENT_NEEDS_TEAMS_TOKEN),
        _ => {}
    }
    // An empty display name is none, as in JavaScript.
    if let Some(name) = request.display_name().filter(|n| !n.is_empty()) {
        if teams_user {
            return fail(TEAMS_DISPLAY_NAME);
        }
        if name.encode_utf16().count() > MAX_DISPLAY_NAME {
            return fail(DISPLAY_NAME_TOO_LONG);
        }
    }
    Ok(())
}

/// Wall-clock source for token expiry; tests pass their own.
pub type WallClock = fn() -> SystemTime;

/// Builds [`Preflight`] services.
#[derive(Debug, Clone, Copy)]
pub struct PreflightLayer {
    clock: WallClock,
    strict_expiry: bool,
}

impl PreflightLayer {
    /// Checks as the SDK does, against the system clock.
    pub fn new() -> Self {
        Self { clock: SystemTime::now, strict_expiry: false }
    }

    /// Checks expiry against `clock` instead.
    pub fn with_clock(clock: WallClock) -> Self {
        Self { clock, ..Self::new() }
    }

    /// Also refuses an expired token (401/40235) when the request uses the plain credential.
    /// Stricter than the SDK, which then creates an agent that never connects; worth it when
    /// your tokens come from a cache that can hold stale ones.
    #[must_use]
    pub fn strict_expiry(mut self, on: bool) -> Self {
        self.strict_expiry = on;
        self
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
        Preflight { inner, clock: self.clock, strict_expiry: self.strict_expiry }
    }
}

/// Rejects, without calling the inner service, a request the SDK would refuse (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct Preflight<S> {
    inner: S,
    clock: WallClock,
    strict_expiry: bool,
}

impl<S, R> Service<R> for Preflight<S>
where
    S: Service<R>,
    S::Error: From<CallAgentError>,
    R: AgentRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match check_with(&request, (self.clock)(), self.strict_expiry) {
            Ok(()) => ResponseFuture { state: State::Inner { future: self.inner.call(request) } },
            Err(e) => {
                tracing::debug!(code = e.code(), subcode = e.sub_code(), "preflight rejected the request");
                ResponseFuture { state: State::Rejected { error: Some(e.into()) } }
            }
        }
    }
}

pin_project! {
    /// The inner service's future, or the preflight's rejection.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

impl<F, E> std::fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected = matches!(self.state, State::Rejected { .. });
        f.debug_struct("ResponseFuture").field("rejected", &rejected).finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Inner { #[pin] future: F },
        Rejected { error: Option<E> },
    }
}

impl<F, T, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("ResponseFuture polled after completion")))
            }
        }
    }
}
