//! Deciding whether a failure is worth retrying.
//!
//! The first rule that gives an answer decides:
//!
//! | # | rule | retry when |
//! |---|---|---|
//! | 0 | the attempt hit this layer's own `attempt_timeout`, or the agent was created but did not connect ([`connect`](crate::connect)) | always (transient; a disconnected agent was disposed first) |
//! | 1 | a per-subcode override in the config (`overrides.<subcode>.retry`) | the override says so |
//! | 2 | the catalog marks the subcode deterministic: the same input fails the same way (44117, an undecodable token, which the SDK calls `UnexpectedClientError`; 40119) | never: fix the input (the remedy layer's token refresh applies to 44117) |
//! | 3 | a category the error carries (`resultCategories`) | `UnexpectedClientError` or `UnexpectedServerError`; any `ExpectedError` among them stops |
//! | 4 | the catalog's category for the subcode | as rule 3 |
//! | 5 | the code | 408, 429 or 5xx; any other code (or none) stops |
//!
//! `Unknown` categories give no answer and fall through. Classification never looks at the
//! message: its text changes between SDK versions.
//!
//! ```
//! use std::collections::BTreeMap;
//! use callagent_retry::sdk::{CallAgentError, ErrorCategory};
//! use callagent_retry::classify::{classify, Basis};
//! // 40228 is an ExpectedError in the catalog: stop.
//! let v = classify(&CallAgentError::new(409, 40228, "exists"), &BTreeMap::new());
//! assert!(!v.retry);
//! assert_eq!(v.basis, Basis::Catalog);
//! // An unknown subcode with a 503 falls back to the code: retry.
//! let v = classify(&CallAgentError::new(503, 99999, ""), &BTreeMap::new());
//! assert!(v.retry);
//! assert_eq!((v.basis, v.category), (Basis::Code, ErrorCategory::Unknown));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sdk::{CallAgentError, ErrorCategory, catalog};

/// An operator's decision for one subcode (rule 1): it beats every other rule but a local timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubcodeOverride {
    /// Retry this subcode (`true`) or stop on it (`false`), whatever the error says.
    pub retry: bool,
    /// A tighter (or looser) attempt limit when this subcode is the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// What the layer needs to know about an inner service's error.
///
/// Implemented for [`CallAgentError`]; implement it for your own error type to wrap a service
/// whose errors carry the SDK's code and subcode in another shape.
///
/// ```
/// use callagent_retry::classify::Classify;
/// struct BridgeError { status: u16, sub: u32 }
/// impl Classify for BridgeError {
///     fn code(&self) -> Option<u16> { Some(self.status) }
///     fn sub_code(&self) -> Option<u32> { Some(self.sub) }
/// }
/// ```
pub trait Classify {
    /// The HTTP-like code, if the failure has one.
    fn code(&self) -> Option<u16>;
    /// The SDK subcode, if the failure has one.
    fn sub_code(&self) -> Option<u32>;
    /// Categories the error carries; empty when it carries none.
    fn categories(&self) -> &[ErrorCategory] {
        &[]
    }
    /// A delay the failure asks for (a `Retry-After`); honored, capped at `max_backoff`.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// `true` when this layer's own attempt timeout produced the failure (always retryable).
    fn is_local_timeout(&self) -> bool {
        false
    }
    /// `true` when the agent was created but did not connect in time (always retryable).
    fn is_not_connected(&self) -> bool {
        false
    }
}

impl Classify for CallAgentError {
    fn code(&self) -> Option<u16> {
        Some(CallAgentError::code(self))
    }
    fn sub_code(&self) -> Option<u32> {
        // Subcode 0 (old SDKs) is no subcode: the code decides.
        self.has_sub_code().then(|| CallAgentError::sub_code(self))
    }
    fn categories(&self) -> &[ErrorCategory] {
        CallAgentError::categories(self)
    }
}

/// Which rule decided (see the [module docs](self)). `#[non_exhaustive]`: a new rule may be added.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basis {
    /// Rule 0: this layer's attempt timeout.
    LocalTimeout,
    /// Rule 0: the agent was created but did not connect (the [`connect`](crate::connect) check).
    NotConnected,
    /// Rule 1: a per-subcode override.
    Override,
    /// Rule 2: the catalog marks the subcode deterministic.
    Deterministic,
    /// Rule 3: a category carried by the error.
    Carried,
    /// Rule 4: the catalog's category.
    Catalog,
    /// Rule 5: the code.
    Code,
}

/// The classification of one failure, made once per failure and shared by the decision, the
/// error returned, tracing and metrics. `#[non_exhaustive]`: only [`classify`] makes one.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether a retry can help.
    pub retry: bool,
    /// The rule that decided.
    pub basis: Basis,
    /// The failure's code, if any.
    pub code: Option<u16>,
    /// The failure's subcode, if any.
    pub sub_code: Option<u32>,
    /// The category to report: the carried one, else the catalog's, else `Unknown`.
    pub category: ErrorCategory,
    /// An override's attempt limit for this subcode.
    pub max_attempts: Option<u32>,
    // The catalog row (index into `catalog::entries()`) when the subcode is catalogued: the one
    // lookup every later reader (remedy, metric series) reuses.
    row: Option<u16>,
}

impl Verdict {
    /// The catalog's row for the failure's subcode, if the catalog knows it.
    pub fn entry(&self) -> Option<&'static catalog::Entry> {
        self.row.map(|i| &catalog::entries()[usize::from(i)])
    }

    /// What to do about the failure: the catalog's remedy, or for a failure without a subcode
    /// (an agent that never connected, this layer's own timeout, an old SDK's error) what it
    /// means.
    pub fn remedy(&self) -> Option<&'static str> {
        match self.basis {
            Basis::NotConnected => Some(NOT_CONNECTED_REMEDY),
            Basis::LocalTimeout => Some(LOCAL_TIMEOUT_REMEDY),
            _ if self.sub_code.is_none() => Some(NO_SUBCODE_REMEDY),
            _ => self.entry().map(|e| e.remedy),
        }
    }

    /// The subcode label of a failure without an SDK subcode: `timeout` (this crate's attempt
    /// timeout), `not_connected` (the connect check), or `no_subcode` (an SDK error without one,
    /// as old SDKs throw every error: subcode 0). `None` when the failure has a subcode. Metrics,
    /// tracing and the simulator's report use it.
    pub fn local_label(&self) -> Option<&'static str> {
        match self.basis {
            Basis::LocalTimeout => Some("timeout"),
            Basis::NotConnected => Some("not_connected"),
            _ if self.sub_code.is_none() => Some(NO_SUBCODE),
            _ => None,
        }
    }

    /// The row's index in `catalog::entries()`.
    pub(crate) fn catalog_row(&self) -> Option<usize> {
        self.row.map(usize::from)
    }
}

/// The subcode label of an SDK error that carries no subcode.
pub(crate) const NO_SUBCODE: &str = "no_subcode";

const LOCAL_TIMEOUT_REMEDY: &str = "The attempt did not finish within attempt_timeout or the call's deadline: \
     the SDK or the network is slow; it was dropped and retried while attempts, budget and deadline allowed.";

const NO_SUBCODE_REMEDY: &str = "An SDK error without a subcode (old SDKs, 1.9.x, throw every error with subcode 0 \
     and no category): decided by its code (408, 429, 5xx retried; other 4xx stopped). Upgrade the SDK to get \
     subcodes, categories and remedies.";

const NOT_CONNECTED_REMEDY: &str = "The agent was created but never connected: the client cannot reach Azure \
     Communication Services (network, firewall, proxy) or the service refused it; it was disposed and retried.";

/// Classifies `failure` by the rules in the [module docs](self).
pub fn classify<F: Classify + ?Sized>(failure: &F, overrides: &BTreeMap<u32, SubcodeOverride>) -> Verdict {
    let code = failure.code();
    let sub_code = failure.sub_code();
    let row = sub_code.and_then(catalog::position);
    let entry = row.map(|i| &catalog::entries()[i]);
    let carried = carried(failure.categories());
    let category = carried.or(entry.map(|e| e.category)).unwrap_or(ErrorCategory::Unknown);
    // The catalog holds far fewer than 65,536 rows.
    let row = row.and_then(|i| u16::try_from(i).ok());
    let verdict = |retry, basis| Verdict { retry, basis, code, sub_code, category, max_attempts: None, row };

    if failure.is_local_timeout() {
        return verdict(true, Basis::LocalTimeout);
    }
    if failure.is_not_connected() {
        return verdict(true, Basis::NotConnected);
    }
    if let Some(o) = sub_code.and_then(|s| overrides.get(&s)) {
        return Verdict { max_attempts: o.max_attempts, ..verdict(o.retry, Basis::Override) };
    }
    if entry.is_some_and(|e| e.deterministic && code == Some(e.code)) {
        return verdict(false, Basis::Deterministic);
    }
    if let Some(retry) = carried.and_then(ErrorCategory::is_retryable) {
        return verdict(retry, Basis::Carried);
    }
    if let Some(retry) = entry.and_then(|e| e.category.is_retryable()) {
        return verdict(retry, Basis::Catalog);
    }
    let retry = matches!(code, Some(408 | 429 | 500..=599));
    verdict(retry, Basis::Code)
}

/// The deciding carried category: any `ExpectedError` wins (never blindly retry a broken
/// precondition), then the first retryable one; `Unknown` only when nothing else is there.
#[inline]
fn carried(categories: &[ErrorCategory]) -> Option<ErrorCategory> {
    if categories.contains(&ErrorCategory::ExpectedError) {
        return Some(ErrorCategory::ExpectedError);
    }
    categories.iter().copied().find(|c| c.is_retryable().is_some()).or_else(|| categories.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCategory::*;

    fn none() -> BTreeMap<u32, SubcodeOverride> {
        BTreeMap::new()
    }

    #[test]
    fn every_catalog_row_follows_its_category() {
        for e in catalog::entries().iter().filter(|e| !e.deterministic) {
            let v = classify(&CallAgentError::new(e.code, e.sub_code, ""), &none());
            assert_eq!(v.retry, e.category.is_retryable() == Some(true), "{}", e.sub_code);
            assert_eq!((v.basis, v.category), (Basis::Catalog, e.category));
        }
    }

    #[test]
    fn an_old_sdk_error_without_a_subcode_is_decided_by_its_code() {
        // SDK 1.9.1 throws every error with subcode 0 and no categories.
        for (code, retry) in
            [(408, true), (429, true), (500, true), (503, true), (401, false), (403, false), (409, false)]
        {
            let v = classify(&CallAgentError::new(code, 0, "old"), &none());
            assert_eq!((v.retry, v.basis, v.sub_code, v.entry()), (retry, Basis::Code, None, None), "{code}");
            assert_eq!(v.local_label(), Some("no_subcode"));
        }
        assert_eq!(classify(&CallAgentError::new(408, 40114, ""), &none()).local_label(), None);
    }

    #[test]
    fn a_deterministic_failure_stops_whatever_its_category_says() {
        // What the real SDK 2.0.0 throws for a token whose payload is not base64url JSON.
        let e = CallAgentError::new(401, 44117, "Failed to parse AccessToken")
            .with_category(UnexpectedClientError);
        let v = classify(&e, &none());
        assert_eq!((v.retry, v.basis, v.category), (false, Basis::Deterministic, UnexpectedClientError));
        // An operator can still decide otherwise.
        let o = [(44117, SubcodeOverride { retry: true, max_attempts: Some(2) })].into();
        assert!(classify(&e, &o).retry);
    }

    #[test]
    fn a_carried_category_beats_the_catalog() {
        let e = CallAgentError::new(409, 40228, "").with_category(UnexpectedClientError);
        assert!(classify(&e, &none()).retry);
        let e = CallAgentError::new(408, 40114, "").with_category(ExpectedError);
        let v = classify(&e, &none());
        assert_eq!((v.retry, v.basis, v.category), (false, Basis::Carried, ExpectedError));
        let e = CallAgentError::new(408, 40114, "")
            .with_category(UnexpectedServerError)
            .with_category(ExpectedError);
        assert!(!classify(&e, &none()).retry, "ExpectedError among several wins");
        let e = CallAgentError::new(400, 1, "").with_category(UnexpectedServerError);
        assert!(classify(&e, &none()).retry, "UnexpectedServerError retries");
    }

    #[test]
    fn an_override_beats_everything_but_a_local_timeout() {
        let o = [(40114, SubcodeOverride { retry: false, max_attempts: None })].into();
        let e = CallAgentError::new(408, 40114, "").with_category(UnexpectedClientError);
        let v = classify(&e, &o);
        assert_eq!((v.retry, v.basis), (false, Basis::Override));
        let o = [(40228, SubcodeOverride { retry: true, max_attempts: Some(2) })].into();
        let v = classify(&CallAgentError::from_catalog(40228).unwrap(), &o);
        assert_eq!((v.retry, v.basis, v.max_attempts), (true, Basis::Override, Some(2)));
    }

    #[test]
    fn unknown_subcodes_fall_back_to_the_code() {
        for (code, retry) in [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (599, true),
            (400, false),
            (401, false),
            (404, false),
            (409, false),
            (600, false),
            (0, false),
        ] {
            let e = CallAgentError::new(code, 12345, "").with_category(Unknown);
            let v = classify(&e, &none());
            assert_eq!((v.retry, v.basis), (retry, Basis::Code), "{code}");
        }
    }

    #[test]
    fn failures_without_a_subcode_say_what_they_were() {
        struct Local(bool);
        impl Classify for Local {
            fn code(&self) -> Option<u16> {
                None
            }
            fn sub_code(&self) -> Option<u32> {
                None
            }
            fn is_local_timeout(&self) -> bool {
                self.0
            }
            fn is_not_connected(&self) -> bool {
                !self.0
            }
        }
        let timeout = classify(&Local(true), &none());
        assert_eq!((timeout.local_label(), timeout.remedy()), (Some("timeout"), Some(LOCAL_TIMEOUT_REMEDY)));
        let dead = classify(&Local(false), &none());
        assert_eq!((dead.local_label(), dead.remedy()), (Some("not_connected"), Some(NOT_CONNECTED_REMEDY)));
        let old = classify(&CallAgentError::new(500, 0, "old"), &none());
        assert_eq!((old.local_label(), old.remedy()), (Some(NO_SUBCODE), Some(NO_SUBCODE_REMEDY)));
        // A catalogued subcode: its row's remedy, no local label.
        let known = classify(&CallAgentError::new(408, 40114, ""), &none());
        let row = known.entry().expect("40114 is catalogued");
        assert_eq!((known.local_label(), known.remedy()), (None, Some(row.remedy)));
    }

    #[test]
    fn a_failure_with_nothing_stops() {
        struct Bare;
        impl Classify for Bare {
            fn code(&self) -> Option<u16> {
                None
            }
            fn sub_code(&self) -> Option<u32> {
                None
            }
        }
        assert!(!classify(&Bare, &none()).retry);
    }
}
