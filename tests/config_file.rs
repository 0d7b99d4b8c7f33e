//! The shipped example config loads, and a config survives a TOML round trip.

use std::time::Duration;

use callagent_retry::classify::SubcodeOverride;
use callagent_retry::{CallAgentRetryLayer, Config, RetryConfig};

#[test]
fn the_example_config_file_is_valid() {
    let config = Config::from_toml(include_str!("../examples/retry.toml")).unwrap();
    assert_eq!(config.retry.overrides[&40114], SubcodeOverride { retry: true, max_attempts: Some(2) });
    assert_eq!(config.retry.deadline, Some(Duration::from_secs(30)));
    assert_eq!(config.retry.attempt_timeout, None);
    assert_eq!(config.observe.name, "acs");
    let layer = CallAgentRetryLayer::from_config(&config).unwrap();
    assert_eq!(layer.observe_config().name, "acs");
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
    assert_eq!(RetryConfig::from_toml("").unwrap(), RetryConfig::default());
}

#[test]
fn a_field_in_the_wrong_section_is_named() {
    let err = Config::from_toml("[observe]\nmax_attempts = 3").unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
    let err = Config::from_toml("[retry]\nmax_attempts = 0").unwrap_err();
    assert_eq!(err.field(), Some("retry.max_attempts"));
}
