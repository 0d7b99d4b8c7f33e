//! [`WebSdkError`]: what the SDK threw, or what went wrong in the bridge to it.

use std::time::Duration;

use callagent_retry::HumanDuration;
use callagent_retry::classify::Classify;
use callagent_retry::sdk::{CallAgentError, ErrorCategory};

/// A duration as a person reads it, for messages.
pub(crate) fn human(d: Duration) -> HumanDuration {
    HumanDuration(d)
}

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
    #[error("agent creation did not settle within {}; its page was closed", human(*.0))]
    Timeout(Duration),
    /// The page did not load or the SDK bundle did not start. Retryable: a new page may load.
    #[error("the page did not load: {0}")]
    PageLoad(String),
    /// The browser cannot be used: the service was closed, Chromium is missing or will not
    /// start, or it ended more often than `max_restarts` allows. Not retryable through this
    /// service: fix the cause and launch a new [`WebSdk`](crate::WebSdk).
    #[error("the browser is gone: {0}")]
    BrowserGone(String),
    /// The browser died (its process exited or its DevTools connection ended) while this
    /// creation used it. Retryable: the service starts Chromium again for the next creation.
    #[error(
        "the browser died during the creation ({0}); a local one is started again for the next creation, a \
         remote one reconnected as soon as it answers"
    )]
    BrowserDied(String),
    /// No browser to create on: none of [`Browsers`](crate::Browsers)' sources lists one now
    /// (a name that resolves to no address, every listed browser retired). Retryable: a browser
    /// found meanwhile takes the next creation.
    #[error("no browser to create on: {0} lists none now; the next one found takes creations")]
    NoBrowser(String),
    /// The agent (or its page) is gone: its page crashed or was closed, or its browser died.
    /// Create a new one.
    #[error("the agent is gone: {0}")]
    AgentGone(String),
    /// The page crashed or was closed while a creation used it. Retryable: a new page is opened.
    #[error("the page is gone: {0}")]
    PageGone(String),
    /// The SDK's `dispose()` did not settle in time. The agent was let go anyway: the page no
    /// longer tracks it, its `max_agents` slot is free within the same bound again, and its page
    /// closes with its last user. Nothing to retry.
    #[error("the SDK's dispose() did not settle within {}; the agent was let go", human(*.0))]
    DisposeTimeout(Duration),
    /// `call` without a slot: `poll_ready` (or `ServiceExt::ready`) must return `Ready` first,
    /// which waits while `max_agents` agents and creations are live.
    #[error("called without capacity: call poll_ready (or ServiceExt::ready) first; max_agents is {0}")]
    NotReady(usize),
    /// A setting of [`WebSdkConfig`](crate::WebSdkConfig) is out of range.
    #[error("invalid WebSdkConfig: `{field}` {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A DevTools-protocol call failed or answered something unexpected. Retryable.
    #[error("DevTools protocol error: {0}")]
    Protocol(ProtocolError),
    /// The service was closed ([`WebSdk::close`](crate::WebSdk::close),
    /// [`Browsers::close`](crate::Browsers::close)): it takes no more creations. Not retryable
    /// through it.
    #[error("the service was closed: it takes no more creations")]
    Closed,
}

/// How a DevTools-protocol call failed, for [`WebSdkError::Protocol`]: typed, so a caller tells
/// a refusal from a timeout without reading text.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The browser answered the command with an error: its JSON-RPC code and message.
    #[error("the browser refused the command ({code}): {message}")]
    Refused {
        /// The error's code (`-32000` for most of Chromium's refusals).
        code: i64,
        /// The browser's message.
        message: String,
    },
    /// No answer within the DevTools request timeout.
    #[error("no answer within the DevTools request timeout")]
    Timeout,
    /// An answer the bridge could not read, or one it did not expect (a page's reply of the
    /// wrong shape, a key that does not parse).
    #[error("{0}")]
    Unexpected(String),
}

impl WebSdkError {
    /// The service was closed ([`WebSdk::close`](crate::WebSdk::close)): it takes no more creations.
    pub(crate) fn closed() -> Self {
        Self::Closed
    }

    /// An answer of the bridge's that it did not expect.
    pub(crate) fn unexpected(what: impl Into<String>) -> Self {
        Self::Protocol(ProtocolError::Unexpected(what.into()))
    }

    /// The SDK's error, when the SDK threw one.
    pub fn sdk_error(&self) -> Option<&CallAgentError> {
        match self {
            Self::Sdk(e) => Some(e),
            _ => None,
        }
    }
}

/// The SDK's error as the service's: what lets `callagent_retry`'s preflight, which answers with
/// the SDK's own errors, sit in front of the service.
impl From<CallAgentError> for WebSdkError {
    fn from(e: CallAgentError) -> Self {
        Self::Sdk(e)
    }
}

/// The bridge's failures are given the HTTP-like code of what they are, so the retry layer's
/// code rule (408, 429 and 5xx retry) treats them right: a timeout is 408, a page that did not
/// load, a page or browser that died under a creation, or a protocol hiccup is 503 (the service
/// opens a new page and starts a new browser); a browser that cannot be used, a plain script
/// exception and misuse carry no code and stop (they need a new service, a different input or a
/// fix in the caller).
impl Classify for WebSdkError {
    fn code(&self) -> Option<u16> {
        match self {
            Self::Sdk(e) => Some(e.code()),
            Self::Timeout(_) => Some(408),
            Self::PageLoad(_)
            | Self::Protocol(_)
            | Self::BrowserDied(_)
            | Self::PageGone(_)
            | Self::NoBrowser(_) => Some(503),
            Self::Script { .. }
            | Self::BrowserGone(_)
            | Self::AgentGone(_)
            | Self::DisposeTimeout(_)
            | Self::NotReady(_)
            | Self::Config { .. }
            | Self::Closed => None,
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
                Self::BrowserDied(e.to_string())
            }
            CdpError::Chrome(refused) => {
                Self::Protocol(ProtocolError::Refused { code: refused.code, message: refused.message })
            }
            CdpError::Timeout => Self::Protocol(ProtocolError::Timeout),
            other => Self::unexpected(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callagent_retry::classify::classify;

    /// The driver's failures keep what they are: the browser's refusal with its code, a timeout;
    /// the ones that mean the connection is gone are the browser's death.
    #[test]
    fn driver_errors_are_typed() {
        use chromiumoxide::error::CdpError;
        let refused = CdpError::Chrome(chromiumoxide::types::Error {
            code: -32000,
            message: "No target with given id found".into(),
        });
        assert_eq!(
            WebSdkError::from(refused),
            WebSdkError::Protocol(ProtocolError::Refused {
                code: -32000,
                message: "No target with given id found".into()
            })
        );
        assert_eq!(WebSdkError::from(CdpError::Timeout), WebSdkError::Protocol(ProtocolError::Timeout));
        assert!(matches!(WebSdkError::from(CdpError::NoResponse), WebSdkError::BrowserDied(_)));
        assert!(matches!(
            WebSdkError::from(CdpError::msg("odd")),
            WebSdkError::Protocol(ProtocolError::Unexpected(m)) if m.contains("odd")
        ));
    }

    #[test]
    fn the_bridge_classifies_as_what_it_is() {
        let retry = |e: WebSdkError| classify(&e, &Default::default()).retry;
        assert!(retry(WebSdkError::Timeout(Duration::from_secs(1))), "a timeout is transient");
        assert!(retry(WebSdkError::PageLoad("x".into())));
        assert!(retry(WebSdkError::unexpected("x")));
        assert!(!retry(WebSdkError::Closed), "a closed service takes nothing more");
        assert!(!retry(WebSdkError::BrowserGone("x".into())), "a new service is needed");
        assert!(retry(WebSdkError::BrowserDied("killed".into())), "the service restarts Chromium");
        assert!(retry(WebSdkError::PageGone("crashed".into())), "a new page is opened");
        assert!(retry(WebSdkError::NoBrowser("x".into())), "a browser found meanwhile takes it");
        assert!(!retry(WebSdkError::AgentGone("x".into())));
        assert!(!retry(WebSdkError::NotReady(4)));
        assert_eq!(
            WebSdkError::Timeout(Duration::from_millis(12_155)).to_string(),
            "agent creation did not settle within 12.2 s; its page was closed"
        );
        assert!(!retry(WebSdkError::Script { name: "Error".into(), message: "Invalid token".into() }));
        let sdk = CallAgentError::new(409, 40228, "exists").with_category_name("ExpectedError");
        assert!(!retry(WebSdkError::Sdk(sdk.clone())));
        assert_eq!(WebSdkError::Sdk(sdk).sub_code(), Some(40228));
    }
}
