//! [`SimError`]: why a scenario or soak could not run.

use crate::validate::ConfigError;

/// Why a scenario or soak could not run.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A field of the scenario cannot work.
    #[error("invalid scenario: `{field}` {reason}")]
    Invalid {
        /// The field, dotted from the scenario's root (`backend.failures.40114`).
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The scenario file is not valid TOML or has an unknown field.
    #[error("cannot parse scenario: {0}")]
    Parse(String),
    /// The scenario's `[retry]` or `[observe]` section is refused.
    #[error("invalid scenario: {0}")]
    Config(#[from] ConfigError),
    /// A simulated client task panicked or was cancelled (a bug in the simulator or the layer).
    #[error("a simulated client failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SimError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The offending field, when one is known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Config(e) => e.field(),
            Self::Parse(_) | Self::Task(_) => None,
        }
    }
}
