//! The bad-input table of docs/hardening.md: each row's behaviour, one test each.

mod common;

use std::task::{Context, Poll};
use std::time::Duration;

use callagent_retry::sdk::{AccessToken, TokenError};
use callagent_retry::sdk::{AgentKind, CreateAgentRequest};
use callagent_retry::{CallAgentError, CallAgentRetryLayer, ErrorCategory, Outcome, RetryConfig};
use common::{Recorder, Scripted, fail};
use tower::{Layer, Service, ServiceExt};

#[test]
fn malformed_error_json_is_a_serde_error() {
    for bad in
        ["", "{", "null", r#"{"code":"409","subCode":40228}"#, r#"{"subCode":40228}"#, r#"{"code":409}"#]
    {
        assert!(serde_json::from_str::<CallAgentError>(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_unknown_category_string_is_unknown_and_falls_through() {
    let e: CallAgentError =
        serde_json::from_str(r#"{"code":408,"subCode":40114,"resultCategories":["BrandNewCategory"]}"#)
            .unwrap();
    assert_eq!(e.categories(), &[ErrorCategory::Unknown]);
    let v = callagent_retry::classify::classify(&e, &Default::default());
    assert_eq!((v.retry, v.basis), (true, callagent_retry::classify::Basis::Catalog));
}

#[test]
fn an_out_of_range_code_is_refused_and_odd_codes_stop() {
    assert!(serde_json::from_str::<CallAgentError>(r#"{"code":70000,"subCode":1}"#).is_err());
    assert!(serde_json::from_str::<CallAgentError>(r#"{"code":-1,"subCode":1}"#).is_err());
    assert!(serde_json::from_str::<CallAgentError>(r#"{"code":408,"subCode":5000000000}"#).is_err());
    for code in [0, 99, 600, 999, u16::MAX] {
        let v = callagent_retry::classify::classify(&CallAgentError::new(code, 1, ""), &Default::default());
        assert!(!v.retry, "{code}");
    }
}

#[test]
fn invalid_and_unknown_config_fields_are_named() {
    assert_eq!(RetryConfig::from_toml("multiplier = nan").unwrap_err().field(), Some("multiplier"));
    let err = RetryConfig::from_toml("max_retries = 3").unwrap_err();
    assert!(err.to_string().contains("max_retries"), "{err}");
    let err = RetryConfig::from_toml("this is not toml").unwrap_err();
    assert!(err.to_string().starts_with("cannot parse config"), "{err}");
}

#[test]
fn an_undecodable_or_oversized_token_is_refused_as_the_sdk_refuses_it() {
    assert_eq!(AccessToken::new("opaque").claims().unwrap_err(), TokenError::NotAJwt);
    let huge = format!("a.{}.c", "A".repeat(100_000));
    assert_eq!(AccessToken::new(huge.clone()).claims().unwrap_err(), TokenError::TooLarge);
    // The real SDK 2.0.0: not a JWT → 401/44111; a payload it cannot decode → 401/44117.
    let check = |token: &str| {
        let req = CreateAgentRequest::new("u", AccessToken::new(token), AgentKind::Acs);
        callagent_retry::preflight::check(&req, std::time::SystemTime::now()).unwrap_err().sub_code()
    };
    assert_eq!(check("opaque"), 44111);
    assert_eq!(check("a.!!!.c"), 44117);
    assert_eq!(check(&huge), 44117);
    assert_eq!(check(""), 44109);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_service_reaches_the_caller_and_harms_nothing_else() {
    let recorder = Recorder::default();
    let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().with_observer(recorder.clone());
    let panicking = layer.layer(tower::service_fn(|()| async {
        if true {
            panic!("the SDK binding crashed");
        }
        Ok::<(), CallAgentError>(())
    }));
    let joined = tokio::spawn(ServiceExt::<()>::oneshot(panicking, ())).await;
    assert!(joined.unwrap_err().is_panic(), "the panic propagates, as with any tower middleware");
    assert_eq!(recorder.events().finished, [(Outcome::Cancelled, 1)], "counted once, as cancelled");
    // The layer's shared state (budget, metrics) is intact for everyone else.
    let svc = Scripted::new([fail(40114)]);
    layer.layer(svc.clone()).oneshot(()).await.unwrap();
    assert_eq!(svc.calls(), 2);
}

/// Never ready.
#[derive(Clone)]
struct Stuck;

impl Service<()> for Stuck {
    type Response = ();
    type Error = CallAgentError;
    type Future = std::future::Ready<Result<(), CallAgentError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Pending
    }
    fn call(&mut self, _: ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_that_never_becomes_ready_is_not_masked() {
    // Before the first call the layer is exactly as ready as the inner service (tower's contract:
    // bound it with tower's timeout or load-shed layers outside); the deadline counts from the call.
    let mut svc = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().layer(Stuck);
    let waited = tokio::time::timeout(Duration::from_secs(60), ServiceExt::<()>::ready(&mut svc)).await;
    assert!(waited.is_err(), "still pending after a minute");
    // Waiting for readiness before a retry is bounded by the deadline: see
    // tests/tower_integration.rs, readiness_is_driven_before_each_retry.
}
