//! What a creation request must expose for the [preflight](crate::preflight),
//! [remedy](crate::remedy) and [single-flight](crate::single_flight) layers.

use serde::{Deserialize, Serialize};

use super::AccessToken;

/// Which agent a request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// A `CallAgent`, for a Communication Services user.
    #[default]
    Acs,
    /// A `TeamsCallAgent`, for a Teams user.
    Teams,
}

/// A request to create an agent, as the layers beyond retrying need to read and change it.
/// Implement it for your own request type, or use [`CreateAgentRequest`].
pub trait AgentRequest {
    /// The user identity (one agent per identity).
    fn identity(&self) -> &str;
    /// The access token.
    fn token(&self) -> &AccessToken;
    /// Replaces the access token (after a refresh).
    fn set_token(&mut self, token: AccessToken);
    /// The agent's kind.
    fn kind(&self) -> AgentKind;
    /// The display name, if one is set.
    fn display_name(&self) -> Option<&str>;
    /// Whether the credential is built with a `tokenRefresher` (the SDK then checks `exp` itself
    /// before creating the agent); `false` by default: the plain credential.
    fn uses_token_refresher(&self) -> bool {
        false
    }
}

/// A ready-made [`AgentRequest`]. Its `Debug` never shows the token.
///
/// ```
/// use callagent_retry::sdk::{AgentKind, CreateAgentRequest};
/// use callagent_retry::sdk::AccessToken;
/// let r = CreateAgentRequest::new("8:acs:alice", AccessToken::new("secret"), AgentKind::Acs);
/// assert!(!format!("{r:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAgentRequest {
    /// The user identity.
    pub identity: String,
    /// The access token.
    pub token: AccessToken,
    /// The agent's kind.
    pub kind: AgentKind,
    /// The display name (not allowed for Teams users; at most 256 characters).
    pub display_name: Option<String>,
    /// Build the credential with a `tokenRefresher` instead of the plain token.
    pub token_refresher: bool,
}

impl CreateAgentRequest {
    /// A request with no display name.
    pub fn new(identity: impl Into<String>, token: AccessToken, kind: AgentKind) -> Self {
        Self { identity: identity.into(), token, kind, display_name: None, token_refresher: false }
    }
}

impl AgentRequest for CreateAgentRequest {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn token(&self) -> &AccessToken {
        &self.token
    }
    fn set_token(&mut self, token: AccessToken) {
        self.token = token;
    }
    fn kind(&self) -> AgentKind {
        self.kind
    }
    fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }
    fn uses_token_refresher(&self) -> bool {
        self.token_refresher
    }
}
