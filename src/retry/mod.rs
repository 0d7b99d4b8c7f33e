//! The retry middleware: [`CallAgentRetryLayer`] and what it is made of.
//!
//! ```text
//!             ┌────────────── pure core: no I/O, no clock of its own ──────────────┐
//!  failure ──▶│ classify (once) ─▶ decide: limit · delay (schedule) · deadline ·   │──▶ Retry { delay } / Stop(StopReason)
//!             │                            budget                                  │
//!             └────────────────────────────────────────────────────────────────────┘
//!  CallAgentRetry (Service) ─▶ ResponseFuture (waits on tokio's clock) ─▶ report (tracing, metrics, observer)
//!  CallAgentRetryPolicy: the same core for tower's own Retry
//! ```
//!
//! The core (`decide`, the delay schedule and [`RetryBudget`]) takes the time as an argument; the
//! adapters read tokio's clock, so tests on paused time are exact. [`StopReason`] is the one
//! answer to "why did it stop": [`RetryError`] and [`Outcome`] derive from it.

mod budget;
mod cold;
mod config;
mod decide;
mod error;
mod future;
mod layer;
mod per_call;
mod policy;
mod report;
mod schedule;
mod service;
mod shared;

pub use budget::RetryBudget;
pub use config::{BudgetConfig, MAX_ATTEMPTS, RetryConfig};
pub use error::{AttemptError, Outcome, RetryError, StopReason};
pub use future::ResponseFuture;
pub use layer::CallAgentRetryLayer;
pub use per_call::{
    Answer, AttemptDetails, Attempted, CallLimits, CarriesLimits, Detailed, Limits, NoLimits, PerRequest,
    Plain,
};
pub use policy::{CallAgentRetryPolicy, RetryDelay};
pub use schedule::Jitter;
pub use service::CallAgentRetry;
