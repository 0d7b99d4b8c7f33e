//! The page protocol: what the Rust side asks `window.callagent` (see `page/entry.js`) and the
//! shapes of its answers. No readable token crosses it: a creation passes its token sealed to
//! the page (`seal`).

use callagent_retry::sdk::{AgentKind, CallAgentError};
use serde::Deserialize;

use crate::error::WebSdkError;
use crate::seal::Sealed;

/// What the SDK (or the page) threw, read from its getters and from `JSON.stringify`.
#[derive(Debug, Deserialize)]
pub(crate) struct Thrown {
    code: Option<u16>,
    #[serde(rename = "subCode")]
    sub_code: Option<u32>,
    #[serde(rename = "resultCategories")]
    result_categories: Option<Vec<String>>,
    name: String,
    message: String,
    pub(crate) json: Option<String>,
}

impl Thrown {
    pub(crate) fn into_error(self) -> WebSdkError {
        let Self { code, sub_code, result_categories, name, message, .. } = self;
        match (code, sub_code) {
            (Some(code), Some(sub_code)) => {
                let mut error = CallAgentError::new(code, sub_code, message).with_name(name);
                for category in result_categories.unwrap_or_default() {
                    error = error.with_category_name(category);
                }
                WebSdkError::Sdk(error)
            }
            _ => WebSdkError::Script { name, message },
        }
    }
}

/// A creation's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct Created {
    pub(crate) ok: bool,
    pub(crate) id: Option<u64>,
    pub(crate) state: Option<String>,
    pub(crate) same: Option<bool>,
    pub(crate) error: Option<Thrown>,
    pub(crate) ms: f64,
}

/// Two creations' answers ([`race`]).
#[derive(Debug, Deserialize)]
pub(crate) struct Raced {
    pub(crate) a: Created,
    pub(crate) b: Created,
    pub(crate) same: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawChange {
    pub(crate) state: String,
    pub(crate) reason: Option<String>,
    pub(crate) at: f64,
}

/// An agent's state and its changes; `null` when the page has no such agent.
#[derive(Debug, Deserialize)]
pub(crate) struct RawState {
    pub(crate) state: String,
    pub(crate) changes: Vec<RawChange>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Disposed {
    pub(crate) ok: bool,
    pub(crate) error: Option<Thrown>,
}

fn kind(kind: AgentKind) -> &'static str {
    match kind {
        AgentKind::Teams => "teams",
        _ => "acs",
    }
}

/// Whether the page's script has started.
pub(crate) const READY: &str = "window.callagentReady === true";

/// Whether the page is visible (a hidden page's timers are throttled).
pub(crate) const VISIBLE: &str = "document.visibilityState === \"visible\"";

/// The page's public key (base64), which tokens are sealed to.
pub(crate) const PUBLIC_KEY: &str = "window.callagent.publicKey()";

pub(crate) fn create(
    sealed: &Sealed,
    agent: AgentKind,
    display_name: Option<&str>,
    token_refresher: bool,
    client_of: Option<u64>,
    request: u64,
) -> String {
    let args = serde_json::json!({
        "sealed": sealed,
        "kind": kind(agent),
        "displayName": display_name,
        "tokenRefresher": token_refresher,
        "clientId": client_of,
        "request": request,
    });
    format!("window.callagent.create({args})")
}

pub(crate) fn race(
    first: (&Sealed, AgentKind),
    second: (&Sealed, AgentKind),
    same_client: bool,
    delay_ms: u64,
) -> String {
    let args = serde_json::json!({
        "first": { "sealed": first.0, "kind": kind(first.1) },
        "second": { "sealed": second.0, "kind": kind(second.1) },
        "sameClient": same_client,
        "delayMs": delay_ms,
    });
    format!("window.callagent.race({args})")
}

/// The SDK version the page was built with (`websdk/page/build.sh` defines it).
pub(crate) const SDK_VERSION: &str = "window.callagent.sdkVersion";

/// What a page holds ([`census`]).
#[derive(Debug, Deserialize)]
pub(crate) struct Census {
    pub(crate) agents: usize,
    pub(crate) creating: usize,
    /// CallClients the page has made (each is kept and reused).
    pub(crate) clients: usize,
}

/// Live agents, creations in flight and CallClients made in the page.
pub(crate) const CENSUS: &str = "window.callagent.census()";

/// The hosts the page met ([`crate::Tab::reach`]); `page/reach.js` keeps them.
pub(crate) const REACH: &str = "window.callagent.reach()";

/// The owner of creation `request` went away: the page disposes its agent.
pub(crate) fn abandon(request: u64) -> String {
    format!("window.callagent.abandon({request})")
}

pub(crate) fn state(id: u64) -> String {
    format!("window.callagent.state({id})")
}

pub(crate) fn dispose(id: u64) -> String {
    format!("window.callagent.dispose({id})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sdk_error_keeps_code_subcode_categories_and_message() {
        let thrown: Thrown = serde_json::from_value(serde_json::json!({
            "code": 401, "subCode": 44109, "resultCategories": ["ExpectedError"],
            "name": "CallingCommunicationError", "message": "token expired", "json": null
        }))
        .unwrap();
        let WebSdkError::Sdk(e) = thrown.into_error() else { panic!("not an SDK error") };
        assert_eq!((e.code(), e.sub_code(), e.message()), (401, 44109, "token expired"));
        assert_eq!(e.categories().len(), 1);
    }

    #[test]
    fn a_plain_exception_is_a_script_error() {
        let thrown: Thrown = serde_json::from_value(serde_json::json!({
            "code": null, "subCode": null, "resultCategories": null, "name": "TypeError", "message": "x"
        }))
        .unwrap();
        assert!(matches!(thrown.into_error(), WebSdkError::Script { .. }));
    }

    #[test]
    fn no_token_is_in_a_creation_expression() {
        use base64::Engine;
        use ring::agreement::{ECDH_P256, EphemeralPrivateKey};
        let page = EphemeralPrivateKey::generate(&ECDH_P256, &ring::rand::SystemRandom::new()).unwrap();
        let public = base64::engine::general_purpose::STANDARD.encode(page.compute_public_key().unwrap());
        let key = crate::seal::PageKey::parse(&public).unwrap();
        let token = "eyJhbGciOiJub25lIn0.eyJza3lwZWlkIjoiYWNzOjEifQ.";
        let sealed = crate::seal::seal(&key, token.as_bytes()).unwrap();
        let e = create(&sealed, AgentKind::Teams, Some("bot"), true, None, 7);
        assert!(e.starts_with(r#"window.callagent.create({"clientId":null,"displayName":"bot","kind":"teams","request":7,"sealed":{"ct":""#), "{e}");
        assert!(!e.contains("eyJza3lwZWlkIjoiYWNzOjEifQ"), "{e}");
        let r = race((&sealed, AgentKind::Acs), (&sealed, AgentKind::Teams), true, 0);
        assert!(!r.contains("eyJza3lwZWlkIjoiYWNzOjEifQ") && r.contains(r#""sealed":{"ct":"#), "{r}");
    }
}
