//! What every config section's validation shares, below all of them: [`ConfigError`], the
//! longest duration allowed, and the serde forms of durations, subcode keys and levels. The
//! sections (`retry`, `observe`, `connect`, `remedy`, `sim`) and the file that gathers them
//! ([`Config`](crate::Config)) all import from here, never from each other.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

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

    pub(crate) fn in_section(self, section: &str) -> Self {
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
