//! The Azure Communication Services identity REST API (api-version 2023-10-01): create an
//! identity with a token, issue a token for an identity, delete an identity.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use callagent_cli::identity::{ConnectionString, IdentityClient, Scope};
//!
//! let client = IdentityClient::new(ConnectionString::from_env()?)?;
//! let created = client.create_identity_with_token(&[Scope::Voip], Duration::from_secs(3600)).await?;
//! let again = client.issue_token(&created.id, &[Scope::Voip], Duration::from_secs(3600)).await?;
//! client.delete_identity(&created.id).await?;
//! # drop(again); Ok(()) }
//! ```
//!
//! Requests are signed with the resource's access key as the ACS REST "Authentication" page
//! defines it (HMAC-SHA256 over the verb, the path and query, `x-ms-date`, the host and
//! `x-ms-content-sha256`). The key is read from a file, stdin or `ACS_CONNECTION_STRING`, never
//! from a command-line value; it and every token are wiped from memory when dropped, and appear
//! in no `Debug`, error or log record.
//!
//! What is not wiped: copies the transport makes (hyper's read buffers hold an answer's token,
//! the `Authorization` header value is copied into the request), ring's HMAC state derived from
//! the key, and whatever the caller copies out of [`AccessToken::expose_secret`].
//!
//! [`AccessToken::expose_secret`]: callagent_retry::sdk::AccessToken::expose_secret

mod client;
mod connection_string;
mod error;
mod sign;

pub use client::{API_VERSION, CreatedIdentity, IdentityClient, IdentityClientBuilder, IssuedToken, Scope};
pub use connection_string::{ConnectionString, ConnectionStringError, ENV_VAR};
pub use error::{IdentityError, ServiceError};
