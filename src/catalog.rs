//! Every failure of CallAgent creation this crate knows, with what to do about it.
//!
//! Rows marked [`Source::SeedPage`] are the distinct rows of the SDK's troubleshooting page
//! ("Failed to create CallAgent"; the page lists 40114 and 40229 twice). Rows marked
//! [`Source::SdkBehaviour`] are thrown by the shipped SDK during CallAgent creation but are not on
//! that page. Notably the page's 400/44214 is thrown by the SDK as 400/40214: both are here, with
//! the same category and remedy.
//!
//! ```
//! use callagent_retry::{catalog, ErrorCategory};
//! let e = catalog::lookup(40114).unwrap();
//! assert_eq!(e.code, 408);
//! assert_eq!(e.category, ErrorCategory::UnexpectedClientError);
//! assert!(catalog::entries().iter().all(|e| !e.remedy.is_empty()));
//! ```

use crate::ErrorCategory;
use ErrorCategory::{ExpectedError as Expected, UnexpectedClientError as Client};

/// Where a catalog row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A row of the SDK's troubleshooting page for CallAgent creation.
    SeedPage,
    /// Thrown by the shipped SDK during CallAgent creation, not listed on that page.
    SdkBehaviour,
}

/// One known failure of CallAgent creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// HTTP-like status code.
    pub code: u16,
    /// The SDK's subcode, unique within the catalog.
    pub sub_code: u32,
    /// The SDK's message (informative; never matched on).
    pub message: &'static str,
    /// The SDK's category.
    pub category: ErrorCategory,
    /// One sentence for the application developer: what to fix, or that a retry should help.
    pub remedy: &'static str,
    /// Where this row comes from.
    pub source: Source,
}

const fn row(
    code: u16,
    sub_code: u32,
    category: ErrorCategory,
    source: Source,
    message: &'static str,
    remedy: &'static str,
) -> Entry {
    Entry { code, sub_code, message, category, remedy, source }
}

const DISPLAY_NAME_REMEDY: &str = "Do not pass a display name when creating an agent for a Teams user; \
     Teams users' names come from their Teams identity.";

use Source::{SdkBehaviour as Sdk, SeedPage as Seed};

/// Sorted by subcode so [`lookup`] can binary-search.
static ENTRIES: [Entry; 23] = [
    row(
        408,
        40101,
        Client,
        Sdk,
        "Failed to create CallAgent, timeout during initialization of the calling base stack.",
        "Transient: a retry is expected to help; if it persists, check the device's CPU load and network.",
    ),
    row(
        500,
        40102,
        Client,
        Seed,
        "Failed to create CallAgent, failure during initialization of the calling base stack.",
        "Transient: a retry is expected to help; if it persists, reload the page or restart the app to reinitialize the SDK.",
    ),
    row(
        500,
        40103,
        Client,
        Sdk,
        "Failed to create CallAgent, the calling user stack found no base stack.",
        "Transient: a retry is expected to help; if it persists, recreate the CallClient before creating the agent.",
    ),
    row(
        408,
        40104,
        Client,
        Seed,
        "Failed to create CallAgent, timeout during initialization of the calling user stack.",
        "Transient: a retry is expected to help; if it persists, check the client's network and CPU load.",
    ),
    row(
        500,
        40105,
        Client,
        Sdk,
        "Failed to create CallAgent, initialization of the calling user stack failed.",
        "Transient: a retry is expected to help; if it persists, recreate the CallClient before creating the agent.",
    ),
    row(
        408,
        40114,
        Client,
        Seed,
        "Failed to connect to Azure Communication Services infrastructure, timeout during initialization.",
        "Transient: a retry is expected to help; if it persists, check that the client can reach Azure Communication Services (firewall, proxy, network).",
    ),
    row(
        412,
        40115,
        Client,
        Seed,
        "Failed to create CallAgent, unable to initialize connection to Azure Communication Services infrastructure.",
        "Transient: a retry is expected to help; if it persists, check that the client can reach Azure Communication Services (firewall, proxy, network).",
    ),
    row(400, 40214, Expected, Sdk, "Display name is not allowed for Teams users.", DISPLAY_NAME_REMEDY),
    row(
        500,
        40216,
        Client,
        Seed,
        "Failed to create CallAgent.",
        "Transient: a retry is expected to help; if it persists, collect the SDK logs and open a support case.",
    ),
    row(
        409,
        40228,
        Expected,
        Seed,
        "Failed to create CallAgent, an instance of CallAgent associated with this identity already exists.",
        "Dispose the existing CallAgent for this identity (or reuse it) before creating another; only one agent per identity is allowed.",
    ),
    row(
        403,
        40229,
        Expected,
        Seed,
        "CallAgent must be created only with ACS token",
        "Create a CallAgent with an Azure Communication Services user token; for a Teams user's token create a TeamsCallAgent instead.",
    ),
    row(
        409,
        40230,
        Expected,
        Sdk,
        "Failed to create TeamsCallAgent, an instance of TeamsCallAgent associated with this identity already exists.",
        "Dispose the existing TeamsCallAgent for this identity (or reuse it) before creating another; only one agent per identity is allowed.",
    ),
    row(
        403,
        40231,
        Expected,
        Seed,
        "TeamsCallAgent must be created only with Teams token",
        "Create a TeamsCallAgent with a token exchanged for a Teams user; for an Azure Communication Services user token create a CallAgent instead.",
    ),
    row(
        401,
        40235,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token has expired.",
        "Fetch a fresh access token from your token service (or give the credential a token refresher) and create the agent with it.",
    ),
    row(
        401,
        44108,
        Expected,
        Sdk,
        "Failed to create CallAgent, no token credential was provided.",
        "Pass a CommunicationTokenCredential built from a user access token when creating the agent.",
    ),
    row(
        401,
        44109,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token is empty.",
        "Make sure your token service returned a token and that the credential is built from it, not from an empty string.",
    ),
    row(
        401,
        44110,
        Client,
        Seed,
        "Failed to get AccessToken",
        "Transient: a retry is expected to help; if it persists, check that the credential's token refresher can reach your token service.",
    ),
    row(
        401,
        44111,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token is invalid.",
        "Pass a well-formed Azure Communication Services access token as issued by the identity service, unmodified.",
    ),
    row(
        401,
        44113,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token does not have the voip or voip.join scope.",
        "Issue the user's access token with the `voip` (or `voip.join`) scope.",
    ),
    row(
        401,
        44114,
        Expected,
        Seed,
        "Wrong AccessToken scope format. Scope is expected to be a string that contains voip",
        "Issue the access token with its scope as a string containing `voip`; check the token service's scope parameter.",
    ),
    row(
        401,
        44115,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token has no resource id.",
        "Issue the token from the Azure Communication Services resource the agent connects to; a token without a resource id is not an ACS user token.",
    ),
    row(
        401,
        44116,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token has no user id.",
        "Issue the token for a Communication Services user identity; a token without a user id cannot create an agent.",
    ),
    row(400, 44214, Expected, Seed, "Teams users can't set display name.", DISPLAY_NAME_REMEDY),
];

/// The catalog row for `sub_code`, if any.
///
/// ```
/// assert!(callagent_retry::catalog::lookup(40228).is_some());
/// assert!(callagent_retry::catalog::lookup(1).is_none());
/// ```
pub fn lookup(sub_code: u32) -> Option<&'static Entry> {
    ENTRIES.binary_search_by_key(&sub_code, |e| e.sub_code).ok().map(|i| &ENTRIES[i])
}

/// Every catalog row, sorted by subcode.
pub fn entries() -> &'static [Entry] {
    &ENTRIES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_complete() {
        assert!(ENTRIES.windows(2).all(|w| w[0].sub_code < w[1].sub_code));
        let seed = ENTRIES.iter().filter(|e| e.source == Source::SeedPage).count();
        assert_eq!(seed, 11, "the seed page has 11 distinct rows");
        for e in &ENTRIES {
            assert_eq!(lookup(e.sub_code), Some(e));
            assert!(!e.message.is_empty() && e.remedy.ends_with('.'));
        }
    }

    #[test]
    fn display_name_rows_agree() {
        let (a, b) = (lookup(40214).unwrap(), lookup(44214).unwrap());
        assert_eq!((a.code, a.category, a.remedy), (b.code, b.category, b.remedy));
    }

    #[test]
    fn seed_page_rows_match_the_page() {
        let page = include_str!("../tests/data/create-call-agent-errors.txt");
        for e in ENTRIES.iter().filter(|e| e.source == Source::SeedPage) {
            let line = page
                .lines()
                .find(|l| l.contains(&format!(" {} ", e.sub_code)))
                .unwrap_or_else(|| panic!("{} not on the page", e.sub_code));
            assert!(line.starts_with(&e.code.to_string()), "{line}");
            assert!(line.contains(e.message), "{line}");
            assert!(line.trim_end().ends_with(e.category.as_str()), "{line}");
        }
    }
}
