//! What the Calling SDK says and takes: its error, the catalog of creation failures, and (behind
//! the `token` feature) the access token and the creation request.
//!
//! Nothing here waits, retries or records: the [`retry`](crate::retry) layer and the layers
//! beside it read these types.

mod error;

pub mod catalog;
#[cfg(feature = "token")]
mod request;
#[cfg(feature = "token")]
mod token;

pub use error::{CallAgentError, ErrorCategory};
#[cfg(feature = "token")]
pub use request::{AgentKind, AgentRequest, CreateAgentRequest};
#[cfg(feature = "token")]
pub use token::{AccessToken, Claims, TokenError};
