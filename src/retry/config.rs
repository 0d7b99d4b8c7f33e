//! [`RetryConfig`] and [`BudgetConfig`]: the `[retry]` section of the config file.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::schedule::Jitter;
use crate::classify::SubcodeOverride;
use crate::validate::{ConfigError, OFF, check_duration as duration, off_or_duration, subcode_keys};

/// How the layer retries: the `[retry]` section of the [config file](crate::config). Build one
/// in code, or load it with [`Config::from_toml`](crate::Config::from_toml),
/// [`RetryConfig::from_toml`] or any serde format; either way
/// [`CallAgentRetryLayer::new`](crate::CallAgentRetryLayer::new) validates it.
///
/// Durations are human-readable (`"250ms"`, `"2s"`, `"1m 30s"`); `deadline`, `attempt_timeout`
/// and `budget` accept `"off"`. Unknown fields are an error, so a typo in a config file is caught
/// at load time instead of silently ignored.
///
/// ```
/// use std::time::Duration;
/// use callagent_retry::retry::{Jitter, RetryConfig};
/// let config = RetryConfig {
///     max_attempts: 3,
///     jitter: Jitter::Equal,
///     attempt_timeout: Some(Duration::from_secs(5)),
///     ..RetryConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
///
/// # Why these defaults
///
/// | field | default | reasoning |
/// |---|---|---|
/// | `max_attempts` | 4 | Azure SDKs retry 3 times (`MaxRetries = 3`); AWS standard mode makes 3 attempts; gRPC caps policies at 5. |
/// | `initial_backoff` | 500 ms | Azure.Core starts at 0.8 s, AWS at up to 1 s, gRPC leaves it to the service; a person is waiting to place a call, so start a little sooner. |
/// | `max_backoff` | 10 s | AWS caps at 20 s and Azure at 60 s for background work; past 10 s a waiting user has given up. |
/// | `multiplier` | 2.0 | Azure, AWS and the common gRPC policies all double. |
/// | `jitter` | `full` | AWS's measurements: full jitter does the least total work under contention; gRPC's retry policy also draws in `[0, d]`. |
/// | `deadline` | 30 s | bounds the whole creation for an interactive caller. Measured against the real SDK 2.0.0: local token checks answer in under 0.2 s, a creation that cannot reach the service resolves (Disconnected) after ~14 s (ACS) or ~16 s (Teams), and on a network that never answers a Teams creation can take ~76 s. 30 s leaves room for one full ACS attempt plus a retry's start, and stops an interactive caller's wait well before 76 s; a background monitor that should see the SDK's own answer sets 90 s. |
/// | `attempt_timeout` | off | the SDK times out its own attempts; any value under ~20 s would cut off every creation that reaches for the network (~14–16 s when it cannot connect), so set one only above that, for a service that can hang. |
/// | `budget` | 10 s, 10/s, 20% | tower's and Finagle's defaults; the SRE book's 10% per client keeps an outage's amplification near 1.1×–1.2×. |
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
        }
    }
}

/// The retry budget's settings (see [`RetryBudget`](super::RetryBudget)).
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

impl BudgetConfig {
    /// Checks the settings; fields are named `budget.*`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = self;
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
        Ok(())
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(10), min_per_sec: 1, retry_percent: 0.08 }
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
            b.validate()?;
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

    /// Parses and validates the body of a `[retry]` section on its own (for a whole file with
    /// every section, see [`Config::from_toml`](crate::Config::from_toml)).
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

mod off_or_budget {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<BudgetConfig>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => b.serialize(s),
            None => s.serialize_str(OFF),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BudgetConfig>, D::Error> {
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
