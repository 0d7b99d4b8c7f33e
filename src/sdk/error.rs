//! The error the Calling SDK throws when it cannot create a call agent.
//!
//! [`CallAgentError`] keeps everything the SDK said (code, subcode, message, categories) and
//! (de)serializes to the SDK's own JSON shape, so an error that crossed a process boundary (an HTTP
//! bridge, a sidecar) arrives whole.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The SDK's `resultCategories` value: whether a retry can help.
///
/// Spelled as the SDK spells it in JSON. A category string this crate does not know (a newer SDK)
/// deserializes to [`ErrorCategory::Unknown`], so classification falls through to the catalog and
/// the code instead of failing to parse; [`CallAgentError`] still keeps the original string
/// ([`CallAgentError::category_names`]) and serializes it back unchanged.
///
/// ```
/// use callagent_retry::sdk::ErrorCategory;
/// let c: ErrorCategory = serde_json::from_str("\"ExpectedError\"").unwrap();
/// assert_eq!(c, ErrorCategory::ExpectedError);
/// assert!(!c.is_retryable().unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorCategory {
    /// A precondition is wrong (token type, duplicate agent, display name); a retry will fail the
    /// same way until the application fixes it.
    ExpectedError,
    /// A transient failure on the client side (network, initialization timeout); a retry usually
    /// succeeds.
    UnexpectedClientError,
    /// A transient failure on the service side; retried by default.
    UnexpectedServerError,
    /// No category, or one this crate does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCategory {
    /// Parses the SDK's spelling; anything else is [`ErrorCategory::Unknown`].
    pub fn parse(name: &str) -> Self {
        match name {
            "ExpectedError" => Self::ExpectedError,
            "UnexpectedClientError" => Self::UnexpectedClientError,
            "UnexpectedServerError" => Self::UnexpectedServerError,
            _ => Self::Unknown,
        }
    }

    /// The SDK's spelling, also used as a bounded metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExpectedError => "ExpectedError",
            Self::UnexpectedClientError => "UnexpectedClientError",
            Self::UnexpectedServerError => "UnexpectedServerError",
            Self::Unknown => "Unknown",
        }
    }

    /// `Some(true)` when a retry can help, `Some(false)` when it cannot, `None` for
    /// [`ErrorCategory::Unknown`] (the decision falls through to the next rule).
    pub const fn is_retryable(self) -> Option<bool> {
        match self {
            Self::ExpectedError => Some(false),
            Self::UnexpectedClientError | Self::UnexpectedServerError => Some(true),
            Self::Unknown => None,
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure to create a call agent, as the Calling SDK reports it.
///
/// Deserializes from (and serializes to) the object the SDK throws; `name` and
/// `resultCategories` are optional and unknown fields are ignored:
///
/// ```
/// use callagent_retry::sdk::{CallAgentError, ErrorCategory};
/// let json = r#"{"name":"CallingCommunicationError","code":409,"subCode":40228,
///   "message":"Failed to create CallAgent, an instance of CallAgent associated with this identity already exists.",
///   "resultCategories":["ExpectedError"]}"#;
/// let err: CallAgentError = serde_json::from_str(json).unwrap();
/// assert_eq!((err.code(), err.sub_code()), (409, 40228));
/// assert_eq!(err.categories(), &[ErrorCategory::ExpectedError]);
///
/// let built = CallAgentError::new(408, 40114, "timeout")
///     .with_category(ErrorCategory::UnexpectedClientError);
/// assert_eq!(built.to_string(),
///     "call agent creation failed: 408/40114 (UnexpectedClientError): timeout");
/// ```
///
/// Match on `(code, sub_code)`, never on the message: message texts change between SDK versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAgentError {
    #[serde(default = "default_name")]
    name: String,
    // `_code`, `_subCode`, `_resultCategories`: what `JSON.stringify(error)` gives, since the
    // SDK's `code`, `subCode` and `resultCategories` are getters over these fields.
    #[serde(alias = "_code")]
    code: u16,
    // Old SDKs (1.9.x) throw every error with subcode 0: it means "none" (see `has_sub_code`).
    #[serde(alias = "_subCode")]
    sub_code: u32,
    #[serde(default)]
    message: String,
    #[serde(default, alias = "_resultCategories", skip_serializing_if = "Categories::is_empty")]
    result_categories: Categories,
}

/// The carried categories, parsed, plus the SDK's own strings: a category this crate does not
/// know is `Unknown` to classification but serializes back exactly as it came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Categories {
    parsed: Vec<ErrorCategory>,
    raw: Vec<String>,
}

impl Categories {
    fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    fn push(&mut self, category: ErrorCategory) {
        self.parsed.push(category);
        self.raw.push(category.as_str().to_owned());
    }

    fn push_name(&mut self, name: String) {
        self.parsed.push(ErrorCategory::parse(&name));
        self.raw.push(name);
    }
}

impl Serialize for Categories {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Old SDKs (1.9.x) give `resultCategories: null`: no category, as if absent.
        let raw = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
        let parsed = raw.iter().map(|c| ErrorCategory::parse(c)).collect();
        Ok(Self { parsed, raw })
    }
}

fn default_name() -> String {
    CallAgentError::SDK_NAME.to_owned()
}

impl CallAgentError {
    /// The `name` the SDK gives its errors, used when a payload has none.
    pub const SDK_NAME: &'static str = "CallingCommunicationError";

    /// An error with no carried category (classification then uses the catalog).
    pub fn new(code: u16, sub_code: u32, message: impl Into<String>) -> Self {
        Self {
            name: default_name(),
            code,
            sub_code,
            message: message.into(),
            result_categories: Categories::default(),
        }
    }

    /// Adds a category the SDK carried with the error.
    #[must_use]
    pub fn with_category(mut self, category: ErrorCategory) -> Self {
        self.result_categories.push(category);
        self
    }

    /// Adds a category as the SDK spelled it (kept as is, even when this crate does not know it).
    #[must_use]
    pub fn with_category_name(mut self, name: impl Into<String>) -> Self {
        self.result_categories.push_name(name.into());
        self
    }

    /// Sets the error's `name` (the SDK's is `CallingCommunicationError`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The error the catalog describes for `sub_code`, with the SDK's code, message and category,
    /// or `None` for a subcode the catalog does not know. Handy in test doubles.
    ///
    /// ```
    /// let e = callagent_retry::sdk::CallAgentError::from_catalog(40228).unwrap();
    /// assert_eq!(e.code(), 409);
    /// ```
    pub fn from_catalog(sub_code: u32) -> Option<Self> {
        super::catalog::lookup(sub_code)
            .map(|entry| Self::new(entry.code, entry.sub_code, entry.message).with_category(entry.category))
    }

    /// The HTTP-like status code (e.g. 408).
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The SDK's subcode (e.g. 40114): the identity of the failure. `0` when the SDK gave none
    /// (old SDKs, 1.9.x, throw every error with subcode 0); [`has_sub_code`](Self::has_sub_code)
    /// says which.
    pub fn sub_code(&self) -> u32 {
        self.sub_code
    }

    /// Whether the SDK gave a subcode: `false` for subcode 0 (old SDKs), which classification
    /// then treats as absent (the code decides: 408, 429 and 5xx are retried, other 4xx stop)
    /// and metrics label `no_subcode`.
    pub fn has_sub_code(&self) -> bool {
        self.sub_code != 0
    }

    /// The SDK's message; informative only, never used to decide.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error's `name` (normally `CallingCommunicationError`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The categories the SDK carried (`resultCategories`), possibly empty.
    pub fn categories(&self) -> &[ErrorCategory] {
        &self.result_categories.parsed
    }

    /// The categories exactly as the SDK spelled them, including ones this crate does not know.
    pub fn category_names(&self) -> &[String] {
        &self.result_categories.raw
    }
}

impl fmt::Display for CallAgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_sub_code() {
            write!(f, "call agent creation failed: {}/{}", self.code, self.sub_code)?;
        } else {
            write!(f, "call agent creation failed: {} (no subcode)", self.code)?;
        }
        if !self.result_categories.is_empty() {
            write!(f, " ({})", self.result_categories.raw.join(", "))?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for CallAgentError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_sdk_shape() {
        let json = r#"{"name":"CallingCommunicationError","code":409,"subCode":40228,"message":"m","resultCategories":["ExpectedError"]}"#;
        let e: CallAgentError = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
    }

    #[test]
    fn parses_what_json_stringify_gives() {
        // The SDK's getters are over `_code`, `_subCode` and `_resultCategories`; this is the
        // exact text JSON.stringify produced for a real 401/44117 in SDK 2.0.0.
        let json = r#"{"_code":401,"_subCode":44117,"_resultCategories":["UnexpectedClientError"],"name":"CallingCommunicationError","message":"Failed to parse AccessToken"}"#;
        let e: CallAgentError = serde_json::from_str(json).unwrap();
        assert_eq!(
            (e.code(), e.sub_code(), e.categories()),
            (401, 44117, &[ErrorCategory::UnexpectedClientError][..])
        );
        assert_eq!((e.name(), e.message()), ("CallingCommunicationError", "Failed to parse AccessToken"));
        // Serialized back in the getter shape, which parses the same.
        let again: CallAgentError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(again, e);
        // Unknown extra fields (a stack, a future field) are ignored in both shapes.
        let extra =
            r#"{"_code":409,"_subCode":40228,"_resultCategories":["ExpectedError"],"stack":"at x","_new":1}"#;
        assert_eq!(serde_json::from_str::<CallAgentError>(extra).unwrap().sub_code(), 40228);
    }

    #[test]
    fn optional_fields_and_unknown_ones() {
        let e: CallAgentError =
            serde_json::from_str(r#"{"code":408,"subCode":40114,"message":"x","stack":"at foo"}"#).unwrap();
        assert_eq!(e.name(), CallAgentError::SDK_NAME);
        assert!(e.categories().is_empty());
        let e: CallAgentError = serde_json::from_str(
            r#"{"code":500,"subCode":1,"resultCategories":["SomethingNew","UnexpectedServerError"]}"#,
        )
        .unwrap();
        assert_eq!(e.categories(), &[ErrorCategory::Unknown, ErrorCategory::UnexpectedServerError]);
        assert_eq!(e.message(), "");
    }

    #[test]
    fn old_sdk_shapes_parse() {
        // SDK 1.9.1: subcode 0 and a `resultCategories` getter that gives null, in the getter
        // shape and in what JSON.stringify gives; and with the categories absent.
        for json in [
            r#"{"name":"CallingCommunicationError","code":408,"subCode":0,"message":"User stack init timeout","resultCategories":null}"#,
            r#"{"_code":408,"_subCode":0,"_resultCategories":null,"name":"CallingCommunicationError","message":"User stack init timeout"}"#,
            r#"{"_code":408,"_subCode":0,"message":"User stack init timeout"}"#,
        ] {
            let e: CallAgentError = serde_json::from_str(json).unwrap_or_else(|err| panic!("{json}: {err}"));
            assert_eq!((e.code(), e.sub_code(), e.has_sub_code()), (408, 0, false), "{json}");
            assert!(e.categories().is_empty(), "{json}");
            assert_eq!(
                e.to_string(),
                "call agent creation failed: 408 (no subcode): User stack init timeout"
            );
        }
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for bad in [
            r#"{"code":"409","subCode":40228}"#,
            r#"{"code":70000,"subCode":40228}"#,
            r#"{"code":409,"subCode":-1}"#,
            r#"{"subCode":40228}"#,
            r#"{"code":null,"subCode":0}"#,
            r#"[1,2]"#,
            r#"{"code":409,"subCode":40228,"resultCategories":"ExpectedError"}"#,
        ] {
            assert!(serde_json::from_str::<CallAgentError>(bad).is_err(), "{bad}");
        }
    }
}
