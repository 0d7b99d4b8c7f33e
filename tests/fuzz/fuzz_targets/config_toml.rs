//! The TOML config (and scenario files): what `from_toml` accepts must build a layer and
//! round-trip; nothing may panic.
#![no_main]

use callagent_retry::sim::Scenario;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = RetryConfig::from_toml(text) {
        CallAgentRetryLayer::new(config.clone()).expect("a validated config builds a layer");
        let again = toml::to_string(&config).expect("serializes");
        assert_eq!(RetryConfig::from_toml(&again).expect("parses back"), config);
    }
    let _ = Scenario::from_toml(text);
});
