//! Access tokens: arbitrary text, and arbitrary bytes as a JWT payload; decoding and the
//! preflight checks must never panic.
#![no_main]

use std::time::SystemTime;

use base64::Engine as _;
use callagent_retry::preflight::check;
use callagent_retry::sdk::{AgentKind, CreateAgentRequest};
use callagent_retry::sdk::AccessToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        // Steer the fuzzer into the JSON decoder: the bytes become the payload.
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rest);
        format!("eyJhbGciOiJub25lIn0.{payload}.sig")
    };
    let token = AccessToken::new(text);
    let _ = token.claims();
    let kind = if mode & 2 == 0 { AgentKind::Acs } else { AgentKind::Teams };
    let mut request = CreateAgentRequest::new("8:acs:fuzz", token, kind);
    if mode & 4 != 0 {
        request.display_name = Some("name".into());
    }
    let _ = check(&request, SystemTime::now());
});
