//! Retry middleware for creating Azure Communication Services call agents.
//!
//! The Calling SDK's `createCallAgent` fails with an HTTP-like code, a subcode and a category.
//! `UnexpectedClientError` failures usually succeed on a retry; `ExpectedError` failures never
//! will until the application fixes a precondition. [`CallAgentRetryLayer`] wraps *any*
//! agent-creation [`tower::Service`] whose error it can [classify](Classify): it retries what a
//! retry can fix, with jittered exponential backoff inside an attempt limit, a deadline, an
//! attempt timeout and a shared retry budget, and stops at once on everything else with the
//! catalog's remedy.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, StopReason};
//! use callagent_retry::sdk::catalog;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! // Times out twice (408/40114, retryable), then creates the agent.
//! let flaky = service_fn(move |identity: &'static str| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n < 2 {
//!             Err(CallAgentError::from_catalog(catalog::INFRASTRUCTURE_TIMEOUT).unwrap())
//!         } else {
//!             Ok(format!("agent:{identity}"))
//!         }
//!     }
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(CallAgentRetryLayer::new(RetryConfig::default()).unwrap())
//!     .service(flaky);
//! assert_eq!(svc.clone().oneshot("alice").await.unwrap(), "agent:alice");
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//!
//! // A Teams token on an ACS agent (403/40229) is an ExpectedError: one call, no retry.
//! let wrong_token = service_fn(|_: &'static str| async {
//!     Err::<String, _>(CallAgentError::from_catalog(catalog::ACS_AGENT_NEEDS_ACS_TOKEN).unwrap())
//! });
//! let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
//! let err = tower::Layer::layer(&layer, wrong_token).oneshot("bob").await.unwrap_err();
//! assert_eq!(err.reason(), StopReason::Rejected);
//! assert_eq!(err.attempts(), 1);
//! assert!(err.remedy().unwrap().contains("TeamsCallAgent"));
//! # }
//! ```
//!
//! # Architecture
//!
//! ```text
//!  sdk/            the SDK's vocabulary: CallAgentError, ErrorCategory, catalog (+ AccessToken,
//!   │              CreateAgentRequest with `token`)
//!   ▼ code, subcode, categories
//!  classify        the rule table: a failure ─▶ Verdict (retry?, which rule, category, catalog row)
//!   ▼ Verdict (made once per failure)
//!  retry/          pure core (decide, schedule, RetryBudget: time passed in, no I/O) and its
//!   │              tower adapters (CallAgentRetryLayer, CallAgentRetry, ResponseFuture waiting on
//!   │              tokio's clock, CallAgentRetryPolicy for tower's Retry) ─▶ RetryError/StopReason
//!   ▼ attempts, failures, retries, outcomes
//!  observe/        RetryObserver; the metrics adapter (one observer, always on); ObserveConfig
//!  otel            OtelMetrics: the layer's metrics on an OpenTelemetry meter (feature `otel`)
//!
//!  beside retry, each its own layer:  preflight (token checks, no inner call) · remedy (refresh
//!  the token / dispose the old agent, then one more call) · single_flight (one creation per
//!  identity at a time) · connect (an agent that never connects is a failure, disposed)
//!  sim/            a simulated ACS backend, scenarios and a soak, for tests and the main example
//!  config          the config file: one section per middleware ([retry], [observe], [connect],
//!                  [remedy])
//! ```
//!
//! Stack them outside in as `docs/fixing-expected-errors.md` ("The order of the layers") does, in
//! its doc-tested example, the one copy of the order: `retry` ▸ `single_flight` ▸ `remedy` ▸
//! `preflight` ▸ `connect` ▸ your SDK service, so every failure, local or remote, is classified and
//! counted by the retry layer.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `toml` | yes | [`Config::from_toml`], [`RetryConfig::from_toml`] |
//! | `token` | yes | [`AccessToken`](sdk::AccessToken), [`CreateAgentRequest`](sdk::CreateAgentRequest), [`AgentRequest`](sdk::AgentRequest) |
//! | `preflight` | yes | the [`preflight`] layer (needs `token`) |
//! | `remedy` | yes | the [`remedy`] layer (needs `token`) |
//! | `single-flight` | yes | the [`single_flight`] layer (needs `token`) |
//! | `sim` | yes | the [`sim`]ulated backend, scenario runner and soak (needs all of the above) |
//! | `otel` | no | `otel::OtelMetrics`: the layer's metrics on an OpenTelemetry meter (the `opentelemetry` API crate only) |
//!
//! A retry-only user turns default features off and compiles the retry layer, the error model,
//! the catalog and the metrics: `callagent-retry = { version = "0.1", default-features = false }`.
//!
//! # Stability
//!
//! Enums that may grow ([`StopReason`], [`Outcome`], [`AttemptError`](retry::AttemptError),
//! [`Jitter`](retry::Jitter), [`Basis`](classify::Basis), [`ConfigError`]) and read-only structs
//! ([`Verdict`](classify::Verdict), the catalog's [`Entry`](sdk::catalog::Entry)) are
//! `#[non_exhaustive]`. Config structs are not: they are meant to be written as
//! `RetryConfig { max_attempts: 3, ..Default::default() }`, which `#[non_exhaustive]` forbids;
//! a new config field always has a default, so code written that way keeps compiling.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub, clippy::all)]

pub mod classify;
pub mod config;
pub mod connect;
mod human;
pub mod observe;
#[cfg(feature = "otel")]
pub mod otel;
mod outcome;
#[cfg(feature = "preflight")]
pub mod preflight;
#[cfg(feature = "remedy")]
pub mod remedy;
pub mod retry;
pub mod sdk;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "single-flight")]
pub mod single_flight;
mod validate;

pub use classify::Classify;
pub use config::{Config, ConfigError};
pub use human::HumanDuration;
pub use retry::{CallAgentRetry, CallAgentRetryLayer, Outcome, RetryConfig, RetryError, StopReason};
pub use sdk::{CallAgentError, ErrorCategory};

// Compiles and runs the README's Rust snippets as doc tests (they use every layer and the simulator).
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// And those of the docs that moved out of the README.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../docs/fixing-expected-errors.md")]
struct FixingExpectedErrorsDoctests;
