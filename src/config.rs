//! The config file: one section per middleware, each owned by its middleware.
//!
//! ```toml
//! [retry]                      # RetryConfig: how the retry layer retries
//! max_attempts = 4
//! initial_backoff = "500ms"
//! max_backoff = "10s"
//! multiplier = 2.0
//! jitter = "full"              # full | equal | decorrelated | proportional | none
//! randomization_factor = 0.5   # for "proportional"
//! deadline = "30s"             # or "off"
//! attempt_timeout = "off"
//!
//! [retry.budget]               # or budget = "off" under [retry]
//! ttl = "10s"
//! min_per_sec = 1
//! retry_percent = 0.08
//!
//! [retry.overrides.40104]      # per subcode: beats every other rule
//! retry = true
//! max_attempts = 2
//!
//! [observe]                    # ObserveConfig: metric labels and tracing levels
//! name = "acs"                 # the `layer` metric label and span field
//! max_unknown_subcodes = 10    # metric series for subcodes outside the catalog
//! span_level = "debug"         # the per-call span
//! rejected_level = "warn"      # a call stopped on a failure a retry cannot fix
//! gave_up_level = "warn"       # a call that ran out of attempts, time or budget
//!
//! [connect]                    # ConnectConfig: judge the created agent (ConnectLayer)
//! timeout = "off"              # or e.g. "20s": an agent not connected by then fails, retryable
//!
//! [remedy]                     # RemedyConfig: opt-in hooks (each also needs its function)
//! refresh_token = false
//! dispose_existing_agent = false
//! create_again_on_race = false     # on 40228/40230: create once more, get the racer's agent
//! ```
//!
//! Every section and field is optional; unknown ones are an error that names them, so a typo is
//! caught at load time instead of silently ignored. Durations are human-readable (`"250ms"`,
//! `"2s"`, `"1m 30s"`).

use serde::{Deserialize, Serialize};

use crate::observe::ObserveConfig;
#[cfg(feature = "remedy")]
use crate::remedy::RemedyConfig;
use crate::retry::{CallAgentRetryLayer, RetryConfig};
pub use crate::validate::{ConfigError, MAX_DURATION};

// Here rather than in `retry`, which the config file's sections come from, so that `retry` does
// not depend on the file that names it.
impl CallAgentRetryLayer {
    /// The layer a config file describes: its `[retry]` and `[observe]` sections.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Self::new(config.retry.clone())?.with_observe(config.observe.clone())
    }
}

/// A whole config file (see the [module docs](self) for the format).
///
/// ```
/// # #[cfg(feature = "toml")] {
/// use callagent_retry::{CallAgentRetryLayer, Config};
/// let config = Config::from_toml("[retry]\nmax_attempts = 2\n[observe]\nname = \"acs\"").unwrap();
/// let layer = CallAgentRetryLayer::from_config(&config).unwrap();
/// assert_eq!(layer.config().max_attempts, 2);
/// let err = Config::from_toml("[retry]\nmax_atempts = 2").unwrap_err();
/// assert!(err.to_string().contains("max_atempts"));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The retry layer's policy.
    pub retry: RetryConfig,
    /// Metric labels and tracing levels of the retry layer.
    pub observe: ObserveConfig,
    /// The connect check ([`ConnectLayer`](crate::connect::ConnectLayer)).
    pub connect: crate::connect::ConnectConfig,
    /// Which remedy hooks run.
    #[cfg(feature = "remedy")]
    pub remedy: RemedyConfig,
}

impl Config {
    /// Checks every section.
    ///
    /// Fields are named from the file's root (`retry.max_attempts`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry.validate().map_err(|e| e.in_section("retry"))?;
        self.observe.validate().map_err(|e| e.in_section("observe"))
    }

    /// Parses and validates a TOML document.
    #[cfg(feature = "toml")]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(all(test, feature = "toml"))]
mod tests {
    use super::*;

    #[test]
    fn loads_the_documented_toml() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml\n").unwrap() + 12;
        let end = start + doc[start..].find("//! ```").unwrap();
        let text: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.retry.overrides[&40104].max_attempts, Some(2));
        assert_eq!(config.observe.name, "acs");
        assert_eq!(config.observe.span_level, tracing::Level::DEBUG);
        let again = toml::to_string(&config).unwrap();
        assert_eq!(Config::from_toml(&again).unwrap(), config);
    }

    #[test]
    fn bad_toml_is_a_clear_error() {
        for (text, needle) in [
            ("[retry]\nmax_attempts = -1", "max_attempts"),
            ("[retry]\ndeadline = \"3 parsecs\"", "invalid duration"),
            ("[retry]\nbudget = \"on\"", "budget"),
            ("[retry.overrides.abc]\nretry = true", "not a subcode"),
            ("[retry.overrides.40114]\nretry = true\nmax_attempt = 2", "max_attempt"),
            ("[retry]\njitter = \"lots\"", "jitter"),
            ("[retry.budget]\nttl = \"10s\"\npercent = 0.2", "percent"),
            ("[retry]\nmax_attempts = 0", "retry.max_attempts"),
            ("max_attempts = 3", "max_attempts"),
            ("[observe]\nspan_level = \"loud\"", "invalid level"),
            ("[observe]\nmax_unknown_subcodes = 5000", "observe.max_unknown_subcodes"),
            ("[metrics]\nname = \"x\"", "metrics"),
        ] {
            let err = Config::from_toml(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
