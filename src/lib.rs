//! Retry middleware for creating Azure Communication Services call agents.
//!
//! The Calling SDK's `createCallAgent` fails with an HTTP-like code, a subcode and a category.
//! `UnexpectedClientError` failures usually succeed on a retry; `ExpectedError` failures never
//! will until the application fixes a precondition. [`CallAgentRetryLayer`] wraps *any*
//! agent-creation [`tower::Service`] whose error it can [classify](classify::Classify): it
//! retries what a retry can fix, with jittered exponential backoff inside an attempt limit, a
//! deadline, an attempt timeout and a shared retry budget, and stops at once on everything else
//! with the catalog's remedy.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, RetryError};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! // Times out twice (408/40114, retryable), then creates the agent.
//! let flaky = service_fn(move |identity: &'static str| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n < 2 { Err(CallAgentError::from_catalog(40114).unwrap()) } else { Ok(format!("agent:{identity}")) }
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
//!     Err::<String, _>(CallAgentError::from_catalog(40229).unwrap())
//! });
//! let svc = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
//! let err = tower::Layer::layer(&svc, wrong_token).oneshot("bob").await.unwrap_err();
//! assert!(matches!(err, RetryError::Rejected(_)));
//! assert_eq!(err.attempts(), 1);
//! assert!(err.remedy().unwrap().contains("TeamsCallAgent"));
//! # }
//! ```
//!
//! Modules, one concept each: [`error`] and [`catalog`] describe the SDK's failures;
//! [`classify`], [`backoff`], [`budget`] and [`decide`] are the pure decision core (no I/O, no
//! clock); [`config`] is what operators tune; [`layer`], [`future`] and [`policy`] are the tower
//! adapters; [`observe`] is the seam for metrics and tracing; [`outcome`] is what callers get back.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod budget;
pub mod catalog;
pub mod classify;
pub mod config;
pub mod decide;
pub mod error;
pub mod future;
pub mod layer;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod policy;
pub mod preflight;
pub mod remedy;
pub mod request;
#[cfg(feature = "sim")]
pub mod sim;
pub mod single_flight;
pub mod token;

pub use config::{ConfigError, RetryConfig};
pub use error::{CallAgentError, ErrorCategory};
pub use layer::{CallAgentRetry, CallAgentRetryLayer};
pub use outcome::{Outcome, RetryError};
pub use policy::CallAgentRetryPolicy;

// Compiles and runs the README's Rust snippets as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
