//! Fixing ExpectedErrors before they happen: preflight, remedy hooks, single flight.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callagent_retry::preflight::PreflightLayer;
use callagent_retry::remedy::RemedyConfig;
use callagent_retry::remedy::RemedyLayer;
use callagent_retry::retry::Jitter;
use callagent_retry::sdk::AccessToken;
use callagent_retry::sdk::{AgentKind, AgentRequest, CreateAgentRequest};
use callagent_retry::single_flight::SingleFlightLayer;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, StopReason};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn acs_claims() -> Value {
    json!({"skypeid": "acs:r_u1", "acsScope": "voip", "resourceId": "r", "exp": now() + 3600})
}

fn teams_claims() -> Value {
    json!({"skypeid": "orgid:u1", "acsScope": "voip", "tid": "tenant", "exp": now() + 3600})
}

fn with(mut claims: Value, key: &str, value: Option<Value>) -> Value {
    match value {
        Some(v) => claims[key] = v,
        None => {
            claims.as_object_mut().unwrap().remove(key);
        }
    }
    claims
}

/// Records every request's token text and answers from a script (then succeeds).
#[derive(Clone, Default)]
struct Sdk {
    script: Arc<Mutex<Vec<u32>>>,
    tokens: Arc<Mutex<Vec<String>>>,
}

impl Sdk {
    fn failing(subs: &[u32]) -> Self {
        let s = Self::default();
        *s.script.lock().unwrap() = subs.iter().rev().copied().collect();
        s
    }
    fn calls(&self) -> usize {
        self.tokens.lock().unwrap().len()
    }
}

impl Service<CreateAgentRequest> for Sdk {
    type Response = String;
    type Error = CallAgentError;
    type Future = std::future::Ready<Result<String, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CreateAgentRequest) -> Self::Future {
        self.tokens.lock().unwrap().push(req.token().expose_secret().to_owned());
        std::future::ready(match self.script.lock().unwrap().pop() {
            Some(sub) => Err(CallAgentError::from_catalog(sub).unwrap()),
            None => Ok(format!("agent:{}", req.identity())),
        })
    }
}

fn request(claims: &Value, kind: AgentKind) -> CreateAgentRequest {
    CreateAgentRequest::new("8:acs:u1", AccessToken::unsigned(claims), kind)
}

#[tokio::test]
async fn each_preflight_rule_fails_fast_and_its_opposite_passes() {
    let (long, longest) = ("x".repeat(257), "x".repeat(256));
    let cases: Vec<(&str, Value, AgentKind, Option<&str>, u32)> = vec![
        (
            "scope not a string",
            with(acs_claims(), "acsScope", Some(json!(["voip"]))),
            AgentKind::Acs,
            None,
            44114,
        ),
        ("no scope", with(acs_claims(), "acsScope", None), AgentKind::Acs, None, 44114),
        (
            "scope without voip",
            with(acs_claims(), "acsScope", Some(json!("chat"))),
            AgentKind::Acs,
            None,
            44113,
        ),
        (
            "voipish is not voip",
            with(acs_claims(), "acsScope", Some(json!("voipx chat"))),
            AgentKind::Acs,
            None,
            44113,
        ),
        ("no skypeid", with(acs_claims(), "skypeid", None), AgentKind::Acs, None, 44116),
        ("no resourceId", with(acs_claims(), "resourceId", None), AgentKind::Acs, None, 44115),
        ("Teams token on an ACS agent", teams_claims(), AgentKind::Acs, None, 40229),
        ("ACS token on a Teams agent", acs_claims(), AgentKind::Teams, None, 40231),
        ("display name for a Teams user", teams_claims(), AgentKind::Teams, Some("Ann"), 40214),
        (
            "expired (token refresher)",
            with(acs_claims(), "exp", Some(json!(now() - 1))),
            AgentKind::Acs,
            None,
            40235,
        ),
        (
            "fractional exp, expired",
            with(acs_claims(), "exp", Some(json!(now() as f64 - 0.5))),
            AgentKind::Acs,
            None,
            40235,
        ),
        ("display name over 256", acs_claims(), AgentKind::Acs, Some(long.as_str()), 40215),
        (
            "an expired exp is checked before acsScope",
            with(with(acs_claims(), "exp", Some(json!(now() - 1))), "acsScope", Some(json!("chat"))),
            AgentKind::Acs,
            None,
            40235,
        ),
        (
            "resourceId before skypeid",
            with(with(acs_claims(), "skypeid", None), "resourceId", None),
            AgentKind::Acs,
            None,
            44115,
        ),
        (
            "space-separated scope",
            with(acs_claims(), "acsScope", Some(json!("chat voip"))),
            AgentKind::Acs,
            None,
            44113,
        ),
    ];
    for (what, claims, kind, name, sub) in cases {
        let sdk = Sdk::default();
        let req = CreateAgentRequest {
            display_name: name.map(str::to_owned),
            token_refresher: true,
            ..request(&claims, kind)
        };
        let err = PreflightLayer::new().layer(sdk.clone()).oneshot(req).await.unwrap_err();
        assert_eq!(err.sub_code(), sub, "{what}");
        assert_eq!(sdk.calls(), 0, "{what}: the inner service is never called");
    }
    let passing: Vec<(&str, Value, AgentKind, Option<&str>)> = vec![
        ("ACS token, ACS agent, display name", acs_claims(), AgentKind::Acs, Some("Ann")),
        (
            "voip.join scope",
            with(acs_claims(), "acsScope", Some(json!("chat,voip.join"))),
            AgentKind::Acs,
            None,
        ),
        ("display name of 256", acs_claims(), AgentKind::Acs, Some(longest.as_str())),
        (
            "expired, plain credential (the SDK does not check)",
            with(acs_claims(), "exp", Some(json!(now() - 1))),
            AgentKind::Acs,
            None,
        ),
        (
            "comma-separated scope",
            with(acs_claims(), "acsScope", Some(json!("chat,voip"))),
            AgentKind::Acs,
            None,
        ),
        ("Teams token, Teams agent, no resourceId needed", teams_claims(), AgentKind::Teams, None),
        ("no exp", with(acs_claims(), "exp", None), AgentKind::Acs, None),
    ];
    for (what, claims, kind, name) in passing {
        let sdk = Sdk::default();
        let req = CreateAgentRequest { display_name: name.map(str::to_owned), ..request(&claims, kind) };
        PreflightLayer::new().layer(sdk.clone()).oneshot(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(sdk.calls(), 1, "{what}");
    }
}

/// The rule family the conformance grid found the preflight getting wrong: which identity needs
/// a `resourceId` is told from the form of `skypeid`, not from `tid`; a token with neither scope
/// nor resource skips the scope and identity checks; the id needs a `prefix:`.
#[test]
fn the_identity_rules_follow_the_form_of_skypeid() {
    use callagent_retry::preflight::check;
    let sub =
        |claims: Value, kind| check(&request(&claims, kind), SystemTime::now()).err().map(|e| e.sub_code());
    let acs = || with(acs_claims(), "resourceId", None);
    let teams = || with(teams_claims(), "resourceId", None);
    // A tenant does not make an ACS id a Teams one: the resourceId is still needed.
    assert_eq!(sub(with(acs(), "tid", Some(json!("t"))), AgentKind::Acs), Some(44115));
    // A Teams id needs no resourceId, with or without a tenant; the tenant decides the kind.
    assert_eq!(sub(with(teams(), "tid", None), AgentKind::Acs), None);
    assert_eq!(sub(with(teams(), "tid", None), AgentKind::Teams), Some(40231));
    for id in ["dod:u", "gcch:u", "teamsvisitor:u"] {
        assert_eq!(sub(with(teams(), "skypeid", Some(json!(id))), AgentKind::Teams), None, "{id}");
    }
    // As JavaScript turns an array into a string, it reads as a Teams id; then it breaks the
    // SDK's parse (not a string).
    assert_eq!(sub(with(teams(), "skypeid", Some(json!(["orgid:u"]))), AgentKind::Teams), Some(44117));
    assert_eq!(sub(with(acs_claims(), "skypeid", Some(json!(7))), AgentKind::Acs), Some(44117));
    assert_eq!(sub(with(acs_claims(), "skypeid", Some(json!("someone"))), AgentKind::Acs), Some(44012));
    // The prefix is what comes before the first ':', so an id that starts with one has none.
    assert_eq!(sub(with(acs_claims(), "skypeid", Some(json!(":someone"))), AgentKind::Acs), Some(44012));
    assert_eq!(sub(with(acs(), "skypeid", Some(json!("8:orgid:u"))), AgentKind::Acs), Some(44115));
    // Neither scope nor resource: no scope or identity checks, never a Teams user's token.
    let bare = with(with(teams(), "acsScope", None), "oid", Some(json!("o")));
    assert_eq!(sub(bare.clone(), AgentKind::Acs), None);
    assert_eq!(sub(bare.clone(), AgentKind::Teams), Some(40231));
    assert_eq!(sub(with(bare, "oid", None), AgentKind::Acs), Some(44114), "no identity at all");
    // An empty display name is none.
    let mut r = request(&teams_claims(), AgentKind::Teams);
    r.display_name = Some(String::new());
    assert!(check(&r, SystemTime::now()).is_ok());
}

#[tokio::test]
async fn an_undecodable_token_is_refused_as_the_sdk_refuses_it() {
    let sdk = Sdk::default();
    let req = CreateAgentRequest::new("u", AccessToken::new("opaque-format-v2"), AgentKind::Acs);
    let err = PreflightLayer::new().layer(sdk.clone()).oneshot(req).await.unwrap_err();
    assert_eq!((err.code(), err.sub_code()), (401, 44111));
    assert_eq!(sdk.calls(), 0);
}

#[tokio::test]
async fn strict_expiry_also_checks_the_plain_credential() {
    let expired = request(&with(acs_claims(), "exp", Some(json!(now() - 1))), AgentKind::Acs);
    PreflightLayer::new().layer(Sdk::default()).oneshot(expired.clone()).await.unwrap();
    let err =
        PreflightLayer::new().strict_expiry(true).layer(Sdk::default()).oneshot(expired).await.unwrap_err();
    assert_eq!(err.sub_code(), 40235);
}

#[tokio::test]
async fn a_clock_can_be_injected_for_expiry() {
    let claims = with(acs_claims(), "exp", Some(json!(2_000_000_000u64)));
    let later = || UNIX_EPOCH + Duration::from_secs(2_000_000_001);
    let err = PreflightLayer::with_clock(later)
        .layer(Sdk::default())
        .oneshot(CreateAgentRequest { token_refresher: true, ..request(&claims, AgentKind::Acs) })
        .await;
    assert_eq!(err.unwrap_err().sub_code(), 40235);
}

fn refreshing(config: RemedyConfig, calls: Arc<AtomicU32>) -> RemedyLayer {
    RemedyLayer::builder(&config)
        .token_source(move |identity: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(AccessToken::new(format!("fresh-{n}-for-{identity}"))) }
        })
        .build()
        .unwrap()
}

const REFRESH: RemedyConfig =
    RemedyConfig { refresh_token: true, dispose_existing_agent: false, create_again_on_race: false };

#[tokio::test(start_paused = true)]
async fn token_refresh_fixes_an_expired_token_with_one_more_call() {
    let hook = Arc::new(AtomicU32::new(0));
    let sdk = Sdk::failing(&[40235]);
    let out = refreshing(REFRESH, hook.clone())
        .layer(sdk.clone())
        .oneshot(request(&acs_claims(), AgentKind::Acs))
        .await;
    assert_eq!(out.unwrap(), "agent:8:acs:u1");
    assert_eq!(hook.load(Ordering::SeqCst), 1);
    let tokens = sdk.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1], "fresh-0-for-8:acs:u1", "the retry carries the fresh token");
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_gets_one_retry_after_refresh_never_more() {
    let hook = Arc::new(AtomicU32::new(0));
    let sdk = Sdk::failing(&[40235, 40235, 40235]);
    let retry = CallAgentRetryLayer::new(RetryConfig { jitter: Jitter::None, ..Default::default() }).unwrap();
    let svc =
        ServiceBuilder::new().layer(retry).layer(refreshing(REFRESH, hook.clone())).service(sdk.clone());
    let err = svc.oneshot(request(&acs_claims(), AgentKind::Acs)).await.unwrap_err();
    assert!(err.reason() == StopReason::Rejected, "{err}");
    assert_eq!((hook.load(Ordering::SeqCst), sdk.calls()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_failed_token_fetch_is_refreshed_and_still_retried_by_the_retry_layer() {
    // 44110 is retryable anyway: each attempt refreshes once, the retry layer keeps going.
    let hook = Arc::new(AtomicU32::new(0));
    let sdk = Sdk::failing(&[44110, 44110, 44110]);
    let retry = CallAgentRetryLayer::new(RetryConfig { jitter: Jitter::None, ..Default::default() }).unwrap();
    let svc =
        ServiceBuilder::new().layer(retry).layer(refreshing(REFRESH, hook.clone())).service(sdk.clone());
    assert!(svc.oneshot(request(&acs_claims(), AgentKind::Acs)).await.is_ok());
    assert_eq!((hook.load(Ordering::SeqCst), sdk.calls()), (2, 4));
}

#[tokio::test(start_paused = true)]
async fn hooks_run_only_when_the_config_switches_them_on() {
    let hook = Arc::new(AtomicU32::new(0));
    let sdk = Sdk::failing(&[40235]);
    let off = refreshing(RemedyConfig::default(), hook.clone());
    let err = off.layer(sdk.clone()).oneshot(request(&acs_claims(), AgentKind::Acs)).await.unwrap_err();
    assert_eq!((err.sub_code(), hook.load(Ordering::SeqCst), sdk.calls()), (40235, 0, 1));
    // Other failures never trigger it either.
    let sdk = Sdk::failing(&[40229]);
    let err = refreshing(REFRESH, hook.clone())
        .layer(sdk.clone())
        .oneshot(request(&acs_claims(), AgentKind::Acs))
        .await;
    assert_eq!((err.unwrap_err().sub_code(), hook.load(Ordering::SeqCst), sdk.calls()), (40229, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_failing_hook_returns_the_original_error_without_another_call() {
    let layer = RemedyLayer::builder(&REFRESH)
        .token_source(|_| async { Err("token service down".into()) })
        .build()
        .unwrap();
    let sdk = Sdk::failing(&[40235]);
    let err = layer.layer(sdk.clone()).oneshot(request(&acs_claims(), AgentKind::Acs)).await.unwrap_err();
    assert_eq!((err.sub_code(), sdk.calls()), (40235, 1));
}

#[tokio::test(start_paused = true)]
async fn dispose_then_retry_once_on_an_existing_agent() {
    let disposed = Arc::new(Mutex::new(Vec::new()));
    let log = disposed.clone();
    let layer = RemedyLayer::builder(&RemedyConfig { dispose_existing_agent: true, ..Default::default() })
        .dispose(move |identity: String| {
            log.lock().unwrap().push(identity);
            async { Ok(()) }
        })
        .build()
        .unwrap();
    let sdk = Sdk::failing(&[40228]);
    layer.layer(sdk.clone()).oneshot(request(&acs_claims(), AgentKind::Acs)).await.unwrap();
    assert_eq!((disposed.lock().unwrap().clone(), sdk.calls()), (vec!["8:acs:u1".to_owned()], 2));
    let sdk = Sdk::failing(&[40228, 40228]);
    assert_eq!(
        layer
            .layer(sdk.clone())
            .oneshot(request(&acs_claims(), AgentKind::Acs))
            .await
            .unwrap_err()
            .sub_code(),
        40228
    );
    assert_eq!(sdk.calls(), 2, "one more call, never more");
}

/// Answers 40228 whenever two creations for one identity overlap in time.
#[derive(Clone, Default)]
struct OverlapDetector {
    in_flight: Arc<Mutex<std::collections::HashMap<String, u32>>>,
}

impl Service<CreateAgentRequest> for OverlapDetector {
    type Response = ();
    type Error = CallAgentError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CallAgentError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CreateAgentRequest) -> Self::Future {
        let map = self.in_flight.clone();
        let identity = req.identity().to_owned();
        Box::pin(async move {
            let overlapping = {
                let mut m = map.lock().unwrap();
                let n = m.entry(identity.clone()).or_default();
                *n += 1;
                *n > 1
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            *map.lock().unwrap().get_mut(&identity).unwrap() -= 1;
            if overlapping { Err(CallAgentError::from_catalog(40228).unwrap()) } else { Ok(()) }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn one_hundred_concurrent_creations_of_one_identity_never_overlap() {
    let req = request(&acs_claims(), AgentKind::Acs);
    // Without single flight they do.
    let bare = OverlapDetector::default();
    let tasks: Vec<_> = (0..100).map(|_| tokio::spawn(bare.clone().oneshot(req.clone()))).collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += usize::from(t.await.unwrap().is_err());
    }
    assert!(conflicts > 90, "the detector sees overlap: {conflicts}");

    let single = SingleFlightLayer::new();
    let svc = single.layer(OverlapDetector::default());
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..100).map(|_| tokio::spawn(svc.clone().oneshot(req.clone()))).collect();
    for t in tasks {
        t.await.unwrap().expect("no 40228");
    }
    assert_eq!(started.elapsed(), Duration::from_millis(50 * 100), "one after another");
    assert_eq!(single.identities_in_flight(), 0, "memory for idle identities is reclaimed");
}

#[tokio::test(start_paused = true)]
async fn different_identities_never_wait_on_each_other_and_dropped_waiters_leave_nothing() {
    let single = SingleFlightLayer::new();
    let svc = single.layer(OverlapDetector::default());
    let mk = |id: &str| CreateAgentRequest::new(id, AccessToken::unsigned(&acs_claims()), AgentKind::Acs);
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(svc.clone().oneshot(mk("a")), svc.clone().oneshot(mk("b")));
    a.unwrap();
    b.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(50));

    // A waiter dropped mid-wait, and the holder dropped mid-call.
    let holder = tokio::spawn(svc.clone().oneshot(mk("c")));
    tokio::task::yield_now().await;
    let waiter = tokio::time::timeout(Duration::from_millis(10), svc.clone().oneshot(mk("c"))).await;
    assert!(waiter.is_err(), "still waiting for its turn");
    assert_eq!(single.identities_in_flight(), 1);
    holder.abort();
    let _ = holder.await;
    assert_eq!(single.identities_in_flight(), 0);
}

/// The real SDK answers 40228 only to a creation that raced another CallClient's in the same
/// tick; created again, it hands back the agent the other creation made. `create_again_on_race`
/// does that, with no application function and nothing disposed.
#[tokio::test(start_paused = true)]
async fn a_lost_race_is_created_again_and_gets_the_other_creations_agent() {
    use callagent_retry::sim::{BackendConfig, SimBackend, SimToken, request};
    let backend = SimBackend::new(BackendConfig::default());
    let config = RemedyConfig { create_again_on_race: true, ..Default::default() };
    let svc = RemedyLayer::builder(&config).build().unwrap().layer(backend.clone());
    let bo = || request("8:acs:bo", SimToken::Acs, AgentKind::Acs);
    let (a, b) = tokio::join!(svc.clone().oneshot(bo()), svc.clone().oneshot(bo()));
    assert_eq!(a.unwrap().id, b.unwrap().id, "one agent, shared");
    let stats = backend.stats();
    assert_eq!((stats.failures[&40228], stats.created, stats.existing), (1, 1, 1));
    assert_eq!(backend.live_agents(), 1, "nothing was disposed");
}

/// Never ready: answers `poll_ready` with an error.
#[derive(Clone)]
struct Down;

impl Service<CreateAgentRequest> for Down {
    type Response = String;
    type Error = CallAgentError;
    type Future = std::future::Ready<Result<String, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Err(CallAgentError::new(503, 1, "down")))
    }

    fn call(&mut self, _: CreateAgentRequest) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn the_preflight_is_ready_when_its_service_is_and_says_what_it_holds() {
    let err = PreflightLayer::new().layer(Down).ready().await.err().expect("the inner service's error");
    assert_eq!((err.code(), err.sub_code()), (503, 1));
    let mut svc = PreflightLayer::new().layer(Sdk::default());
    let rejected = svc.call(request(&with(acs_claims(), "acsScope", Some(json!("chat"))), AgentKind::Acs));
    assert_eq!(format!("{rejected:?}"), "ResponseFuture { rejected: true, .. }");
    let passed = svc.call(request(&acs_claims(), AgentKind::Acs));
    assert_eq!(format!("{passed:?}"), "ResponseFuture { rejected: false, .. }");
}
