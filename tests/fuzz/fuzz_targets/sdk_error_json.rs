//! The SDK error JSON: parse anything; what parses must classify, display and round-trip.
#![no_main]

use callagent_retry::CallAgentError;
use callagent_retry::classify::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<CallAgentError>(data) {
        let _ = classify(&e, &Default::default());
        let _ = e.to_string();
        let json = serde_json::to_string(&e).expect("a parsed error serializes");
        assert_eq!(serde_json::from_str::<CallAgentError>(&json).expect("and parses back"), e);
    }
});
