//! [`WebSdkError`]: what the SDK threw, or what went wrong in the bridge to it.

use std::time::Duration;

use callagent_retry::classify::Classify;
use callagent_retry::sdk::{CallAgentError, ErrorCategory};

/// Why a creation through the web SDK failed.
///
/// [`Sdk`](Self::Sdk) is the SDK's own `CallingCommunicationError`, whole. Every other variant
/// is a failure of the bridge (the browser, the page, the DevTools protocol) or a plain
/// JavaScript exception; each classifies for the retry layer as what it is (see [`Classify`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebSdkError {
    /// The SDK refused: its code, subcode, categories and message.
    #[error(transparent)]
    Sdk(CallAgentError),
    /// The page threw something that is not a `CallingCommunicationError` (the credential's own
    /// input checks throw a plain `Error`, e.g. for an empty token). Deterministic: not retried.
    #[error("the page threw {name}: {message}")]
    Script {
        /// The exception's `name`.
        name: String,
        /// The exception's `message`.
        message: String,
    },
    /// The creation did not settle in time; its page was closed. Retryable, like any timeout.
    #[error("agent creation did not settle within {0:?}; its page was closed")]
    Timeout(Duration),
    /// The page did not load or the SDK bundle did not start. Retryable: a new page may load.
    #[error("the page did not load: {0}")]
    PageLoad(String),
    /// The browser is gone (crashed, killed or closed): this service cannot create agents any
    /// more. Not retryable through it: launch a new [`WebSdk`](crate::WebSdk).
    #[error("the browser is gone: {0}")]
    BrowserGone(String),
    /// A DevTools-protocol call failed or answered something unexpected. Retryable.
    #[error("DevTools protocol error: {0}")]
    Protocol(String),
}

impl WebSdkError {
    /// The SDK's error, when the SDK threw one.
    pub fn sdk_error(&self) -> Option<&CallAgentError> {
        match self {
            Self::Sdk(e) => Some(e),
            _ => None,
        }
    }
}

/// The bridge's failures are given the HTTP-like code of what they are, so the retry layer's
/// code rule (408, 429 and 5xx retry) treats them right: a timeout is 408, a page that did not
/// load or a protocol hiccup is 503; a gone browser and a plain script exception carry no code
/// and stop (the first needs a new service, the second a different input).
impl Classify for WebSdkError {
    fn code(&self) -> Option<u16> {
        match self {
            Self::Sdk(e) => Some(e.code()),
            Self::Timeout(_) => Some(408),
            Self::PageLoad(_) | Self::Protocol(_) => Some(503),
            Self::Script { .. } | Self::BrowserGone(_) => None,
        }
    }

    fn sub_code(&self) -> Option<u32> {
        self.sdk_error().map(CallAgentError::sub_code)
    }

    fn categories(&self) -> &[ErrorCategory] {
        self.sdk_error().map_or(&[], CallAgentError::categories)
    }
}

impl From<chromiumoxide::error::CdpError> for WebSdkError {
    fn from(e: chromiumoxide::error::CdpError) -> Self {
        use chromiumoxide::error::CdpError;
        match e {
            CdpError::Ws(_) | CdpError::ChannelSendError(_) | CdpError::NoResponse => {
                Self::BrowserGone(e.to_string())
            }
            other => Self::Protocol(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callagent_retry::classify::classify;

    #[test]
    fn the_bridge_classifies_as_what_it_is() {
        let retry = |e: WebSdkError| classify(&e, &Default::default()).retry;
        assert!(retry(WebSdkError::Timeout(Duration::from_secs(1))), "a timeout is transient");
        assert!(retry(WebSdkError::PageLoad("x".into())));
        assert!(retry(WebSdkError::Protocol("x".into())));
        assert!(!retry(WebSdkError::BrowserGone("x".into())), "a new service is needed");
        assert!(!retry(WebSdkError::Script { name: "Error".into(), message: "Invalid token".into() }));
        let sdk = CallAgentError::new(409, 40228, "exists").with_category_name("ExpectedError");
        assert!(!retry(WebSdkError::Sdk(sdk.clone())));
        assert_eq!(WebSdkError::Sdk(sdk).sub_code(), Some(40228));
    }
}
