//! A simulated Azure Communication Services agent-creation backend, and a scenario runner that
//! shows what a [`RetryConfig`](crate::RetryConfig) does to it. Behind the `sim` feature (on by
//! default) so applications can use the backend in their own tests.
//!
//! - [`SimBackend`], a `tower::Service` that creates fake agents and fails with
//!   [`CallAgentError`](crate::CallAgentError)s the way the SDK does: random failures per subcode,
//!   outage windows, overload turning into timeouts, an identity registry (40228), and the SDK's
//!   token checks (the [preflight](crate::preflight) rules: 40229, 40231, 44113-44116, 40214,
//!   40235) on unsigned tokens it mints ([`SimToken`]). Deterministic from a seed on tokio's clock.
//! - [`soak()`]: a long run checking that every call resolves exactly once and every count adds up.
//! - a TOML [`Scenario`] (backend, offered load, retry policy), [`run`] and the
//!   [`Report`] it produces.
//!
//! ```
//! use callagent_retry::sdk::AgentKind;
//! use callagent_retry::sim::{BackendConfig, SimBackend, SimToken, request};
//! use callagent_retry::{CallAgentRetryLayer, RetryConfig};
//! use tower::{Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let backend = SimBackend::new(BackendConfig { failures: [(40114, 0.3)].into(), ..Default::default() });
//! let svc = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().layer(backend.clone());
//! let agent = svc.oneshot(request("alice", SimToken::Acs, AgentKind::Acs)).await.unwrap();
//! assert_eq!(agent.identity, "alice");
//! assert!(backend.stats().calls >= 1);
//! # }
//! ```

mod backend;
mod error;
mod scenario;
mod soak;

pub use backend::{BackendConfig, Capacity, Outage, SimAgent, SimBackend, SimStats, SimToken, request};
pub use error::SimError;
pub use scenario::{Arrival, Identities, Load, Report, Scenario, SubcodeRow, Tally, Tick, run};
pub use soak::{SoakConfig, SoakReport, soak};
