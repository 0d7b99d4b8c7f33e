//! The shipped example config loads, and a config survives a TOML round trip.

use std::time::Duration;

use callagent_retry::config::SubcodeOverride;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};

#[test]
fn the_example_config_file_is_valid() {
    let config = RetryConfig::from_toml(include_str!("../examples/retry.toml")).unwrap();
    assert_eq!(config.overrides[&40114], SubcodeOverride { retry: true, max_attempts: Some(2) });
    assert_eq!(config.deadline, Some(Duration::from_secs(30)));
    assert_eq!(config.attempt_timeout, None);
    CallAgentRetryLayer::new(config).unwrap();
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(RetryConfig::from_toml("").unwrap(), RetryConfig::default());
}
