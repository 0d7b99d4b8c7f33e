//! [`RetryConfig`]: every knob of the layer, loadable from a config file.
//!
//! Durations are human-readable (`"250ms"`, `"2s"`, `"1m 30s"`); `deadline`, `attempt_timeout`
//! and `budget` accept `"off"`. Unknown fields are an error, so a typo in a config file is caught
//! at load time instead of silently ignored.
//!
//! ```toml
//! max_attempts = 4
//! initial_backoff = "500ms"
//! max_backoff = "10s"
//! multiplier = 2.0
//! jitter = "full"            # full | equal | decorrelated | proportional | none
//! randomization_factor = 0.5 # for "proportional"
//! deadline = "30s"           # or "off"
//! attempt_timeout = "off"
//! name = "acs"               # the `layer` metric label
//! max_unknown_subcodes = 10  # metric series for subcodes outside the catalog
//!
//! [remedies]                 # opt-in hooks; each also needs its function in RemedyLayer::builder
//! refresh_token = false
//! dispose_existing_agent = false
//!
//! [budget]                   # or budget = "off"
//! ttl = "10s"
//! min_per_sec = 10
//! retry_percent = 0.2
//!
//! [overrides.40104]          # per subcode: beats every other rule
//! retry = true
//! max_attempts = 2
//! ```
//!
//! # Why these defaults
//!
//! | field | default | reasoning |
//! |---|---|---|
//! | `max_attempts` | 4 | Azure SDKs retry 3 times (`MaxRetries = 3`); AWS standard mode makes 3 attempts; gRPC caps policies at 5. |
//! | `initial_backoff` | 500 ms | Azure.Core starts at 0.8 s, AWS at up to 1 s, gRPC leaves it to the service; a person is waiting to place a call, so start a little sooner. |
//! | `max_backoff` | 10 s | AWS caps at 20 s and Azure at 60 s for background work; past 10 s a waiting user has given up. |
//! | `multiplier` | 2.0 | Azure, AWS and the common gRPC policies all double. |
//! | `jitter` | `full` | AWS's measurements: full jitter does the least total work under contention; gRPC's retry policy also draws in `[0, d]`. |
//! | `deadline` | 30 s | bounds the whole creation for an interactive caller; the SDK's own init timeouts (40104/40114) are several seconds each. |
//! | `attempt_timeout` | off | the SDK times out its own attempts and reports 408s; set one when the inner service can hang. |
//! | `budget` | 10 s, 10/s, 20% | tower's and Finagle's defaults; the SRE book's 10% per client keeps an outage's amplification near 1.1×–1.2×. |

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::backoff::{BackoffSchedule, Jitter};

/// The longest any configured duration may be; beyond it `Instant` arithmetic could overflow and
/// no retry policy needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How the layer retries. Build one in code, or load it with [`RetryConfig::from_toml`] or any
/// serde format; either way [`CallAgentRetryLayer::new`](crate::CallAgentRetryLayer::new)
/// validates it.
///
/// ```
/// use std::time::Duration;
/// use callagent_retry::{RetryConfig, backoff::Jitter};
/// let config = RetryConfig {
///     max_attempts: 3,
///     jitter: Jitter::Equal,
///     attempt_timeout: Some(Duration::from_secs(5)),
///     ..RetryConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, counting the first call (1 = never retry); at most 100.
    pub max_attempts: u32,
    /// The schedule's first nominal delay.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The cap on any delay, including one an error suggests.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth of the nominal delay per retry (at least 1).
    pub multiplier: f64,
    /// How delays are randomized.
    pub jitter: Jitter,
    /// For [`Jitter::Proportional`]: the delay is uniform in `[d(1 - f), d(1 + f)]`, `f` in `[0, 1]`.
    pub randomization_factor: f64,
    /// Total time for the call across all attempts and waits; a retry whose wait would end past it
    /// is not started.
    #[serde(with = "off_or_duration")]
    pub deadline: Option<Duration>,
    /// Time allowed for each call of the inner service; a timed-out attempt is retryable.
    #[serde(with = "off_or_duration")]
    pub attempt_timeout: Option<Duration>,
    /// The retry budget shared by every clone of the layer.
    #[serde(with = "off_or_budget")]
    pub budget: Option<BudgetConfig>,
    /// Per-subcode decisions that beat every other classification rule.
    #[serde(with = "subcode_keys")]
    pub overrides: BTreeMap<u32, SubcodeOverride>,
    /// Seeds the jitter so a run is reproducible; random when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The `layer` label of this layer's metrics (and its tracing span), to tell two layers in one
    /// process apart; empty by default. At most 64 characters.
    pub name: String,
    /// Subcodes outside the catalog get metric series of their own up to this many; the rest are
    /// counted as `other`. At most 1000.
    pub max_unknown_subcodes: usize,
    /// Which [remedy hooks](crate::remedy) run (each also needs its function in the builder).
    pub remedies: RemedyConfig,
}

/// Switches for the [remedy hooks](crate::remedy); both off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemedyConfig {
    /// On 44110 or 40235: get a fresh token from the application, then call once more.
    pub refresh_token: bool,
    /// On 40228 or 40230: let the application dispose the identity's agent, then call once more.
    pub dispose_existing_agent: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
            randomization_factor: 0.5,
            deadline: Some(Duration::from_secs(30)),
            attempt_timeout: None,
            budget: Some(BudgetConfig::default()),
            overrides: BTreeMap::new(),
            seed: None,
            name: String::new(),
            max_unknown_subcodes: 10,
            remedies: RemedyConfig::default(),
        }
    }
}

/// The retry budget's settings (see [`budget`](crate::budget)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// How long a call counts towards the budget, 1 s to 60 s.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries allowed per second regardless of traffic.
    pub min_per_sec: u32,
    /// Retries allowed as a fraction of calls (`0.2` = 20%), 0 to 1000.
    pub retry_percent: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(10), min_per_sec: 10, retry_percent: 0.2 }
    }
}

/// An operator's decision for one subcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubcodeOverride {
    /// Retry this subcode (`true`) or stop on it (`false`), whatever the error says.
    pub retry: bool,
    /// A tighter (or looser) attempt limit when this subcode is the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A field's value cannot work.
    #[error("invalid retry config: `{field}` {reason}")]
    Invalid {
        /// The field, dotted for nested ones (`budget.ttl`, `overrides.40114.max_attempts`).
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The text is not a valid config (syntax, unknown field, wrong type).
    #[error("cannot parse retry config: {0}")]
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

    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl RetryConfig {
    /// Checks every field; the layer runs exactly the configs this accepts.
    ///
    /// ```
    /// let bad = callagent_retry::RetryConfig { multiplier: 0.5, ..Default::default() };
    /// assert_eq!(bad.validate().unwrap_err().field(), Some("multiplier"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        attempts("max_attempts", self.max_attempts)?;
        duration("initial_backoff", self.initial_backoff, true)?;
        duration("max_backoff", self.max_backoff, true)?;
        if self.max_backoff < self.initial_backoff {
            return Err(ConfigError::invalid(
                "max_backoff",
                format!(
                    "({:?}) must not be below initial_backoff ({:?})",
                    self.max_backoff, self.initial_backoff
                ),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::invalid(
                "multiplier",
                format!("must be a finite number >= 1, got {}", self.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(ConfigError::invalid(
                "randomization_factor",
                format!("must be between 0 and 1, got {}", self.randomization_factor),
            ));
        }
        if let Some(d) = self.deadline {
            duration("deadline", d, false)?;
        }
        if let Some(d) = self.attempt_timeout {
            duration("attempt_timeout", d, false)?;
        }
        if let Some(b) = &self.budget {
            if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&b.ttl) {
                return Err(ConfigError::invalid(
                    "budget.ttl",
                    format!("must be between 1s and 60s, got {:?}", b.ttl),
                ));
            }
            if !(0.0..=1000.0).contains(&b.retry_percent) {
                return Err(ConfigError::invalid(
                    "budget.retry_percent",
                    format!("must be between 0 and 1000 (0.2 = 20%), got {}", b.retry_percent),
                ));
            }
        }
        if self.name.chars().count() > 64 {
            return Err(ConfigError::invalid("name", "must be at most 64 characters (it is a metric label)"));
        }
        if self.max_unknown_subcodes > 1000 {
            return Err(ConfigError::invalid(
                "max_unknown_subcodes",
                format!(
                    "must be at most 1000 (each is a set of metric series), got {}",
                    self.max_unknown_subcodes
                ),
            ));
        }
        for (sub_code, o) in &self.overrides {
            match o.max_attempts {
                Some(n) if o.retry => attempts(&format!("overrides.{sub_code}.max_attempts"), n)?,
                Some(_) => {
                    return Err(ConfigError::invalid(
                        format!("overrides.{sub_code}.max_attempts"),
                        "has no effect with retry = false; remove it",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Parses and validates a TOML document (the format shown in the [module docs](self)).
    ///
    /// ```
    /// let config = callagent_retry::RetryConfig::from_toml("max_attempts = 2\nbudget = \"off\"").unwrap();
    /// assert_eq!(config.max_attempts, 2);
    /// assert!(config.budget.is_none());
    /// let err = callagent_retry::RetryConfig::from_toml("max_atempts = 2").unwrap_err();
    /// assert!(err.to_string().contains("max_atempts"));
    /// ```
    #[cfg(feature = "toml")]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn schedule(&self) -> BackoffSchedule {
        BackoffSchedule::new(
            self.initial_backoff,
            self.max_backoff,
            self.multiplier,
            self.jitter,
            self.randomization_factor,
        )
    }
}

/// The most attempts any policy may make: gRPC caps retry policies at 5; past 100 a limit is a
/// typo, and the deadline and budget should be doing the limiting.
pub const MAX_ATTEMPTS: u32 = 100;

fn attempts(field: &str, n: u32) -> Result<(), ConfigError> {
    match n {
        0 => Err(ConfigError::invalid(field, "must be at least 1 (the first call counts)")),
        n if n > MAX_ATTEMPTS => {
            Err(ConfigError::invalid(field, format!("must be at most {MAX_ATTEMPTS}, got {n}")))
        }
        _ => Ok(()),
    }
}

fn duration(field: &str, d: Duration, zero_ok: bool) -> Result<(), ConfigError> {
    if !zero_ok && d.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero (use \"off\" to disable)"));
    }
    if d > MAX_DURATION {
        return Err(ConfigError::invalid(field, format!("must be at most 24h, got {d:?}")));
    }
    Ok(())
}

const OFF: &str = "off";

mod off_or_duration {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => humantime_serde::serialize(d, s),
            None => s.serialize_str(OFF),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
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

mod off_or_budget {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<BudgetConfig>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => b.serialize(s),
            None => s.serialize_str(OFF),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BudgetConfig>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<BudgetConfig>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a budget table (ttl, min_per_sec, retry_percent) or \"off\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.eq_ignore_ascii_case(OFF) {
                    Ok(None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                BudgetConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
        d.deserialize_any(V)
    }
}

/// Maps keyed by subcode: TOML keys are strings, so parse them here with a clear error. Shared
/// with the simulator's per-subcode failure probabilities.
pub(crate) mod subcode_keys {
    use super::*;

    pub fn serialize<V: Serialize, S: Serializer>(v: &BTreeMap<u32, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(v.iter().map(|(k, o)| (k.to_string(), o)))
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        RetryConfig::default().validate().unwrap();
    }

    #[test]
    fn each_invalid_value_names_its_field() {
        let d = RetryConfig::default;
        let with_override = |o: SubcodeOverride| RetryConfig { overrides: [(40114, o)].into(), ..d() };
        let budget = |b: BudgetConfig| RetryConfig { budget: Some(b), ..d() };
        let cases = [
            (RetryConfig { max_attempts: 0, ..d() }, "max_attempts"),
            (RetryConfig { max_attempts: 101, ..d() }, "max_attempts"),
            (RetryConfig { multiplier: 0.9, ..d() }, "multiplier"),
            (RetryConfig { multiplier: f64::NAN, ..d() }, "multiplier"),
            (RetryConfig { multiplier: f64::INFINITY, ..d() }, "multiplier"),
            (RetryConfig { max_backoff: Duration::from_millis(100), ..d() }, "max_backoff"),
            (
                RetryConfig {
                    initial_backoff: Duration::from_secs(90_000),
                    max_backoff: Duration::from_secs(90_000),
                    ..d()
                },
                "initial_backoff",
            ),
            (RetryConfig { randomization_factor: -0.1, ..d() }, "randomization_factor"),
            (RetryConfig { randomization_factor: f64::NAN, ..d() }, "randomization_factor"),
            (RetryConfig { deadline: Some(Duration::ZERO), ..d() }, "deadline"),
            (RetryConfig { attempt_timeout: Some(Duration::ZERO), ..d() }, "attempt_timeout"),
            (RetryConfig { attempt_timeout: Some(Duration::from_secs(100_000)), ..d() }, "attempt_timeout"),
            (budget(BudgetConfig { ttl: Duration::from_millis(500), ..Default::default() }), "budget.ttl"),
            (budget(BudgetConfig { ttl: Duration::from_secs(61), ..Default::default() }), "budget.ttl"),
            (budget(BudgetConfig { retry_percent: -0.2, ..Default::default() }), "budget.retry_percent"),
            (budget(BudgetConfig { retry_percent: f64::NAN, ..Default::default() }), "budget.retry_percent"),
            (budget(BudgetConfig { retry_percent: 1001.0, ..Default::default() }), "budget.retry_percent"),
            (
                with_override(SubcodeOverride { retry: true, max_attempts: Some(0) }),
                "overrides.40114.max_attempts",
            ),
            (
                with_override(SubcodeOverride { retry: false, max_attempts: Some(3) }),
                "overrides.40114.max_attempts",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let config = RetryConfig {
            overrides: [(40104, SubcodeOverride { retry: true, max_attempts: Some(2) })].into(),
            attempt_timeout: Some(Duration::from_millis(1500)),
            budget: None,
            seed: Some(7),
            ..RetryConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""attempt_timeout":"1s 500ms""#), "{json}");
        assert!(json.contains(r#""budget":"off""#), "{json}");
        assert_eq!(serde_json::from_str::<RetryConfig>(&json).unwrap(), config);
    }

    #[cfg(feature = "toml")]
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
        let config = RetryConfig::from_toml(&text).unwrap();
        assert_eq!(config.overrides[&40104], SubcodeOverride { retry: true, max_attempts: Some(2) });
        assert_eq!(config.attempt_timeout, None);
        assert_eq!(config.budget, Some(BudgetConfig::default()));
        assert_eq!(toml::to_string(&config).map(|t| RetryConfig::from_toml(&t).unwrap()).unwrap(), config);
    }

    #[cfg(feature = "toml")]
    #[test]
    fn bad_toml_is_a_clear_error() {
        for (text, needle) in [
            ("max_attempts = -1", "max_attempts"),
            ("deadline = \"3 parsecs\"", "invalid duration"),
            ("budget = \"on\"", "budget"),
            ("[overrides.abc]\nretry = true", "not a subcode"),
            ("[overrides.40114]\nretry = true\nmax_attempt = 2", "max_attempt"),
            ("jitter = \"lots\"", "jitter"),
            ("[budget]\nttl = \"10s\"\npercent = 0.2", "percent"),
            ("max_attempts = 0", "max_attempts"),
        ] {
            let err = RetryConfig::from_toml(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
