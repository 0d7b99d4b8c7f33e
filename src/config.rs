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

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::observe::ObserveConfig;
#[cfg(feature = "remedy")]
use crate::remedy::RemedyConfig;
use crate::retry::RetryConfig;

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

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field's value cannot work.
    #[error("invalid config: `{field}` {reason}")]
    Invalid {
        /// The field, dotted from its section (`retry.budget.ttl`, `retry.overrides.40114.max_attempts`).
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The text is not a valid config (syntax, unknown field, wrong type).
    #[error("cannot parse config: {0}")]
    Parse(String),
}

impl ConfigError {
    /// The offending field, when one is known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Parse(_) => None,
        }
    }

    fn in_section(self, section: &str) -> Self {
        match self {
            Self::Invalid { field, reason } => Self::Invalid { field: format!("{section}.{field}"), reason },
            parse => parse,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// The longest any configured duration may be; beyond it `Instant` arithmetic could overflow and
/// no retry policy needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks a configured duration: at most [`MAX_DURATION`], and non-zero unless `zero_ok`.
pub(crate) fn check_duration(field: &str, d: Duration, zero_ok: bool) -> Result<(), ConfigError> {
    if !zero_ok && d.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero (use \"off\" to disable)"));
    }
    if d > MAX_DURATION {
        return Err(ConfigError::invalid(field, format!("must be at most 24h, got {d:?}")));
    }
    Ok(())
}

pub(crate) const OFF: &str = "off";

/// `Option<Duration>` as a human-readable duration or `"off"`.
pub(crate) mod off_or_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => humantime_serde::serialize(d, s),
            None => s.serialize_str(OFF),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\" or \"2s\", or \"off\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.eq_ignore_ascii_case(OFF) {
                    return Ok(None);
                }
                humantime::parse_duration(v).map(Some).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {v:?}: {e} (write e.g. \"250ms\", \"2s\" or \"off\")"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Maps keyed by subcode: TOML keys are strings, so parse them here with a clear error. Shared
/// by the retry overrides and the simulator's per-subcode failure probabilities.
pub(crate) mod subcode_keys {
    use super::*;

    pub(crate) fn serialize<V: Serialize, S: Serializer>(
        v: &BTreeMap<u32, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(v.iter().map(|(k, o)| (k.to_string(), o)))
    }

    pub(crate) fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, V>, D::Error> {
        let raw = BTreeMap::<String, V>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, o)| {
                k.trim().parse::<u32>().map(|k| (k, o)).map_err(|_| {
                    de::Error::custom(format!("key {k:?} is not a subcode (a number such as 40114)"))
                })
            })
            .collect()
    }
}

/// A `tracing::Level` as `"trace"`, `"debug"`, `"info"`, `"warn"` or `"error"`.
pub(crate) mod level {
    use super::*;
    use tracing::Level;

    pub(crate) fn serialize<S: Serializer>(v: &Level, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.as_str().to_ascii_lowercase())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| {
            de::Error::custom(format!(
                "invalid level {text:?} (write \"trace\", \"debug\", \"info\", \"warn\" or \"error\")"
            ))
        })
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
