//! Every failure of CallAgent creation this crate knows, with what to do about it.
//!
//! Rows marked [`Source::SeedPage`] are the distinct rows of the SDK's troubleshooting page
//! ("Failed to create CallAgent"; the page lists 40114 and 40229 twice). Rows marked
//! [`Source::SdkBehaviour`] are thrown by the shipped SDK during CallAgent creation but are not on
//! that page. Notably the page's 400/44214 is thrown by the SDK as 400/40214: both are here, with
//! the same category and remedy.
//!
//! ```
//! use callagent_retry::sdk::{catalog, ErrorCategory};
//! let e = catalog::lookup(catalog::INFRASTRUCTURE_TIMEOUT).unwrap();
//! assert_eq!(e.code, 408);
//! assert_eq!(e.category, ErrorCategory::UnexpectedClientError);
//! assert!(catalog::entries().iter().all(|e| !e.remedy.is_empty()));
//! ```
//!
//! Over 500 lines: the catalog is data, one entry per subcode (67), generated into the docs.

use super::ErrorCategory;
use ErrorCategory::{
    ExpectedError as Expected, UnexpectedClientError as Client, UnexpectedServerError as Server,
};

/// Where a catalog row comes from.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A row of the SDK's troubleshooting page for CallAgent creation.
    SeedPage,
    /// Thrown by the shipped SDK during CallAgent creation (seen by the conformance suite or in
    /// the SDK's logs), not listed on that page.
    SdkBehaviour,
    /// Listed in the shipped SDK's own error table (npm 2.0.0) for the CallAgent-creation and
    /// token families; its code and category are checked against that table by the
    /// conformance suite, but it has not been seen thrown.
    SdkTable,
}

/// One known failure of CallAgent creation.
///
/// Read-only (`#[non_exhaustive]`): rows come from the catalog, never from users.
#[non_exhaustive]
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
    /// The same input fails the same way: a retry without a change (a fresh token) cannot
    /// succeed, whatever the category says. The retry layer stops on it (see
    /// [`classify`](crate::classify), rule 2).
    pub deterministic: bool,
}

// Named subcodes, so code reads `catalog::AGENT_EXISTS` instead of a bare 40228.
/// 40101 (408: the calling base stack timed out initializing.)
pub const BASE_STACK_INIT_TIMEOUT: u32 = 40101;
/// 40102 (500: the calling base stack failed to initialize.)
pub const BASE_STACK_INIT_FAILED: u32 = 40102;
/// 40103 (500: the calling user stack found no base stack.)
pub const NO_BASE_STACK: u32 = 40103;
/// 40104 (408: the calling user stack timed out initializing.)
pub const USER_STACK_INIT_TIMEOUT: u32 = 40104;
/// 40105 (500: the calling user stack failed to initialize.)
pub const USER_STACK_INIT_FAILED: u32 = 40105;
/// 40114 (408: connecting to the ACS infrastructure timed out.)
pub const INFRASTRUCTURE_TIMEOUT: u32 = 40114;
/// 40115 (412: the connection to the ACS infrastructure could not be initialized.)
pub const INFRASTRUCTURE_UNREACHABLE: u32 = 40115;
/// 40214 (400: a display name was given for a Teams user (as the SDK throws it).)
pub const TEAMS_DISPLAY_NAME: u32 = 40214;
/// 40216 (500: creation failed without a more specific reason.)
pub const CREATE_FAILED: u32 = 40216;
/// 40228 (409: a `CallAgent` for this identity already exists.)
pub const AGENT_EXISTS: u32 = 40228;
/// 40229 (403: a Teams user's token was used for a `CallAgent`.)
pub const ACS_AGENT_NEEDS_ACS_TOKEN: u32 = 40229;
/// 40230 (409: a `TeamsCallAgent` for this identity already exists.)
pub const TEAMS_AGENT_EXISTS: u32 = 40230;
/// 40231 (403: a Communication Services token was used for a `TeamsCallAgent`.)
pub const TEAMS_AGENT_NEEDS_TEAMS_TOKEN: u32 = 40231;
/// 40235 (401: the access token has expired.)
pub const TOKEN_EXPIRED: u32 = 40235;
/// 44108 (401: no token credential was given.)
pub const NO_CREDENTIAL: u32 = 44108;
/// 44109 (401: the access token is empty.)
pub const TOKEN_EMPTY: u32 = 44109;
/// 44110 (401: the credential could not get a token (its refresher failed).)
pub const TOKEN_FETCH_FAILED: u32 = 44110;
/// 44111 (401: the access token is not valid.)
pub const TOKEN_INVALID: u32 = 44111;
/// 44113 (401: the token's `acsScope` has neither `voip` nor `voip.join`.)
pub const TOKEN_SCOPE_WITHOUT_VOIP: u32 = 44113;
/// 44114 (401: the token's `acsScope` is not a string.)
pub const TOKEN_SCOPE_NOT_A_STRING: u32 = 44114;
/// 44115 (401: the token has no `resourceId`.)
pub const TOKEN_WITHOUT_RESOURCE_ID: u32 = 44115;
/// 44116 (401: the token has no `skypeid` (user id).)
pub const TOKEN_WITHOUT_USER_ID: u32 = 44116;
/// 44214 (400: the troubleshooting page's number for [`TEAMS_DISPLAY_NAME`].)
pub const TEAMS_DISPLAY_NAME_DOCUMENTED: u32 = 44214;

/// 40008 (400: the CallClient already holds an agent for another identity.)
pub const ONE_AGENT_PER_CALL_CLIENT: u32 = 40008;
/// 40012 (404: the CallClient was disposed.)
pub const CALL_CLIENT_DISPOSED: u32 = 40012;
/// 40110 (500: the calling stack got undefined configuration.)
pub const UNDEFINED_CONFIGS: u32 = 40110;
/// 40111 (500: creating the signaling connection failed.)
pub const SIGNALING_CREATE_FAILED: u32 = 40111;
/// 40112 (500: initializing the signaling connection failed.)
pub const SIGNALING_INIT_FAILED: u32 = 40112;
/// 40113 (500: the signaling connection was already initialized (an ExpectedError).)
pub const SIGNALING_ALREADY_INITIALIZED: u32 = 40113;
/// 40116 (500: media initialization of the user stack failed.)
pub const USER_STACK_MEDIA_INIT_FAILED: u32 = 40116;
/// 40117 (500: signaling initialization of the user stack failed.)
pub const USER_STACK_SIGNALING_INIT_FAILED: u32 = 40117;
/// 40118 (500: the user stack failed internally.)
pub const USER_STACK_INTERNAL_INIT_FAILED: u32 = 40118;
/// 40119 (400: the media stack does not support this platform (deterministic).)
pub const PLATFORM_NOT_SUPPORTED: u32 = 40119;
/// 40215 (400: the display name is longer than 256 characters.)
pub const DISPLAY_NAME_TOO_LONG: u32 = 40215;
/// 40217 (422: a token was asked for before the credential was ready.)
pub const TOKEN_BEFORE_INIT: u32 = 40217;
/// 44112 (401: no token text reached the SDK.)
pub const TOKEN_UNDEFINED: u32 = 44112;
/// 44117 (401: the token's payload is not base64url JSON (deterministic, though the SDK says UnexpectedClientError).)
pub const TOKEN_UNPARSABLE: u32 = 44117;
/// 44118 (408: an SDK operation timed out.)
pub const OPERATION_TIMED_OUT: u32 = 44118;

/// 44012 (409: the token's user id has no cloud prefix (seen by the conformance grid).)
pub const USER_ID_WITHOUT_CLOUD_PREFIX: u32 = 44012;
/// 40000 (500: the CallClient failed to initialize.)
pub const CALL_CLIENT_INIT_FAILED: u32 = 40000;
/// 40001 (409: createCallAgent failed unexpectedly (UnexpectedClientError despite the 409).)
pub const CREATE_CALL_AGENT_FAILED: u32 = 40001;
/// 40002 (409: createTeamsCallAgent failed unexpectedly (UnexpectedClientError despite the 409).)
pub const CREATE_TEAMS_CALL_AGENT_FAILED: u32 = 40002;
/// 40003 (400: an ICE server URL in the CallClient options is not a URL.)
pub const ICE_SERVER_URL_INVALID: u32 = 40003;
/// 40004 (400: an ICE server URL is not turn:, turns: or stun:.)
pub const ICE_SERVER_URL_SCHEME: u32 = 40004;
/// 40005 (400: the proxy URL in the CallClient options is too short.)
pub const PROXY_URL_TOO_SHORT: u32 = 40005;
/// 40006 (400: the proxy URL is not http: or https:.)
pub const PROXY_URL_SCHEME: u32 = 40006;
/// 40007 (400: the proxy URL is not a URL.)
pub const PROXY_URL_INVALID: u32 = 40007;
/// 40009 (400: the emergency country code is longer than 10 characters.)
pub const EMERGENCY_COUNTRY_CODE_TOO_LONG: u32 = 40009;
/// 40100 (400: the SDK runs on an https:, file: or localhost page only.)
pub const PAGE_PROTOCOL: u32 = 40100;
/// 40106 (500: failed to set the calling stack's configurations.)
pub const STACK_CONFIG_PARSE_FAILED: u32 = 40106;
/// 40107 (500: failed to set the calling stack's user configurations.)
pub const STACK_USER_CONFIG_FAILED: u32 = 40107;
/// 40108 (500: no calling stack to get the device manager from.)
pub const DEVICE_MANAGER_WITHOUT_STACK: u32 = 40108;
/// 40109 (500: failed to set the calling stack's parameters.)
pub const STACK_PARAMS_FAILED: u32 = 40109;
/// 40120 (500: failed to fetch the calling stack's configurations.)
pub const STACK_CONFIG_FETCH_FAILED: u32 = 40120;
/// 40201 (500: the agent failed to parse its token.)
pub const AGENT_TOKEN_PARSE_FAILED: u32 = 40201;
/// 40232 (409: failed to get a token from the credential (UnexpectedClientError despite the 409).)
pub const CREDENTIAL_TOKEN_FAILED: u32 = 40232;
/// 40233 (400: the token refresher returned another user's token.)
pub const REFRESHED_TOKEN_OTHER_USER: u32 = 40233;
/// 40234 (400: the token expired and the refresher gave no valid one after retries.)
pub const REFRESHED_TOKEN_RETRIES: u32 = 40234;
/// 40239 (500: setDeviceType conflicts with the acsDeviceType option.)
pub const DEVICE_TYPE_NOT_ALLOWED: u32 = 40239;
/// 44100 (500: the configuration fetched at start is empty (UnexpectedServerError).)
pub const CONFIG_EMPTY: u32 = 44100;
/// 44101 (500: the configuration fetched at start has no ACS key (UnexpectedServerError).)
pub const CONFIG_WITHOUT_ACS: u32 = 44101;
/// 44102 (500: error while merging the SDK's configuration.)
pub const CONFIG_MERGE_FAILED: u32 = 44102;
/// 44103 (500: telemetry failed to initialize: invalid cloud type.)
pub const TELEMETRY_CLOUD_TYPE: u32 = 44103;
/// 44104 (500: telemetry failed to initialize: already initialized.)
pub const TELEMETRY_ALREADY_INITIALIZED: u32 = 44104;
/// 44105 (500: failed to create and initialize the telemetry logger.)
pub const TELEMETRY_INIT_FAILED: u32 = 44105;
/// 44106 (500: failed to flush telemetry.)
pub const TELEMETRY_FLUSH_FAILED: u32 = 44106;
/// 44107 (500: failed to initialize the telemetry logger.)
pub const TELEMETRY_LOGGER_FAILED: u32 = 44107;

const fn row(
    code: u16,
    sub_code: u32,
    category: ErrorCategory,
    source: Source,
    message: &'static str,
    remedy: &'static str,
) -> Entry {
    Entry { code, sub_code, message, category, remedy, source, deterministic: false }
}

/// A row whose failure a retry with the same input cannot fix.
const fn deterministic(entry: Entry) -> Entry {
    Entry { deterministic: true, ..entry }
}

const TRANSIENT_NETWORK: &str = "Transient: a retry is expected to help; if it persists, check that the client can reach \
     Azure Communication Services (firewall, proxy, network).";

const TRANSIENT_RECREATE: &str = "Transient: a retry is expected to help; if it persists, create a new CallClient before \
     creating the agent.";

const DISPLAY_NAME_REMEDY: &str = "Do not pass a display name when creating an agent for a Teams user; \
     Teams users' names come from their Teams identity.";

use Source::{SdkBehaviour as Sdk, SdkTable as Table, SeedPage as Seed};

/// Sorted by subcode so [`lookup`] can binary-search.
static ENTRIES: [Entry; 67] = [
    row(
        500,
        40000,
        Client,
        Table,
        "Failed to initialize the CallClient.",
        "Transient: a retry is expected to help; if it persists, create a new CallClient and collect the SDK logs.",
    ),
    row(
        409,
        40001,
        Client,
        Table,
        "Failed to create CallAgent (an unexpected failure inside createCallAgent, wrapped by the CallClient).",
        "Transient: a retry is expected to help (the SDK marks it UnexpectedClientError, although its code is 409); if it persists, create a new CallClient and collect the SDK logs.",
    ),
    row(
        409,
        40002,
        Client,
        Table,
        "Failed to create TeamsCallAgent (an unexpected failure inside createTeamsCallAgent, wrapped by the CallClient).",
        "Transient: a retry is expected to help (the SDK marks it UnexpectedClientError, although its code is 409); if it persists, create a new CallClient and collect the SDK logs.",
    ),
    deterministic(row(
        400,
        40003,
        Expected,
        Table,
        "The ICE (TURN/STUN) server URL in the CallClient's network options is not a URL.",
        "Fix the custom TURN/STUN server URLs passed to the CallClient (networkConfiguration); a retry fails the same way.",
    )),
    deterministic(row(
        400,
        40004,
        Expected,
        Table,
        "An ICE server URL in the CallClient's network options is not turn:, turns: or stun:.",
        "Use turn:, turns: or stun: URLs for the custom ICE servers passed to the CallClient.",
    )),
    deterministic(row(
        400,
        40005,
        Expected,
        Table,
        "The proxy URL in the CallClient's network options is too short.",
        "Fix the proxy URL passed to the CallClient (networkConfiguration.proxy.url).",
    )),
    deterministic(row(
        400,
        40006,
        Expected,
        Table,
        "The proxy URL in the CallClient's network options is not http: or https:.",
        "Use an http: or https: proxy URL in the CallClient's network options.",
    )),
    deterministic(row(
        400,
        40007,
        Expected,
        Table,
        "The proxy URL in the CallClient's network options is not a URL.",
        "Fix the proxy URL passed to the CallClient (networkConfiguration.proxy.url).",
    )),
    row(
        400,
        40008,
        Expected,
        Sdk,
        "A CallClient holds one agent; this one already has an agent for another identity.",
        "Create a new CallClient for each agent; a CallClient cannot create agents for two identities.",
    ),
    deterministic(row(
        400,
        40009,
        Expected,
        Table,
        "The emergency country code in the agent options is longer than 10 characters.",
        "Pass a valid emergency country code (at most 10 characters) in emergencyCallOptions, or none.",
    )),
    row(
        404,
        40012,
        Expected,
        Table,
        "The CallClient was disposed.",
        "Create a new CallClient; a disposed one cannot create agents.",
    ),
    deterministic(row(
        400,
        40100,
        Expected,
        Table,
        "The Web Calling SDK must run on an https:, file: or localhost page.",
        "Serve the page that creates agents over https (or from localhost); a retry fails the same way.",
    )),
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
    row(500, 40106, Client, Table, "Failed to set configurations for the calling stack.", TRANSIENT_RECREATE),
    row(
        500,
        40107,
        Client,
        Table,
        "Failed to set user configurations for the calling stack.",
        TRANSIENT_RECREATE,
    ),
    row(
        500,
        40108,
        Client,
        Table,
        "Failed to get the device manager: the calling stack is not there.",
        TRANSIENT_RECREATE,
    ),
    row(
        500,
        40109,
        Client,
        Table,
        "Failed to set configuration parameters for the calling stack.",
        TRANSIENT_RECREATE,
    ),
    row(
        500,
        40110,
        Client,
        Table,
        "The calling stack received undefined configuration values.",
        TRANSIENT_RECREATE,
    ),
    row(
        500,
        40111,
        Client,
        Table,
        "Creating the signaling connection to Azure Communication Services failed.",
        TRANSIENT_NETWORK,
    ),
    row(
        500,
        40112,
        Client,
        Table,
        "Initializing the signaling connection to Azure Communication Services failed.",
        TRANSIENT_NETWORK,
    ),
    row(
        500,
        40113,
        Expected,
        Table,
        "The signaling connection was already initialized.",
        "Await a creation in flight (or dispose its agent) before creating again on the same CallClient.",
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
    row(
        500,
        40116,
        Client,
        Table,
        "Media initialization of the calling user stack failed.",
        "Transient: a retry is expected to help; if it persists, check the device's media devices and permissions.",
    ),
    row(
        500,
        40117,
        Client,
        Table,
        "Signaling initialization of the calling user stack failed.",
        TRANSIENT_NETWORK,
    ),
    row(
        500,
        40118,
        Client,
        Table,
        "The calling user stack failed internally while initializing.",
        TRANSIENT_RECREATE,
    ),
    deterministic(row(
        400,
        40119,
        Client,
        Table,
        "The media stack does not support this platform.",
        "Use a browser and platform the Calling SDK supports; a retry on this one fails the same way.",
    )),
    row(
        500,
        40120,
        Client,
        Table,
        "Failed to fetch configurations for the calling stack.",
        TRANSIENT_NETWORK,
    ),
    row(
        500,
        40201,
        Client,
        Table,
        "The agent failed to parse its access token.",
        "Transient by the SDK's category; if it persists, check the token (a fresh one from your token service) and collect the SDK logs.",
    ),
    row(400, 40214, Expected, Sdk, "Display name is not allowed for Teams users.", DISPLAY_NAME_REMEDY),
    row(
        400,
        40215,
        Expected,
        Sdk,
        "The display name is longer than 256 characters.",
        "Shorten the display name to at most 256 characters.",
    ),
    row(
        500,
        40216,
        Client,
        Seed,
        "Failed to create CallAgent.",
        "Transient: a retry is expected to help; if it persists, collect the SDK logs and open a support case.",
    ),
    row(
        422,
        40217,
        Client,
        Table,
        "A token was asked for before the credential finished initializing.",
        "Transient: a retry is expected to help; if it persists, create the credential before the agent and await its setup.",
    ),
    row(
        409,
        40228,
        Expected,
        Seed,
        "Failed to create CallAgent, an instance of CallAgent associated with this identity already exists.",
        "Another CallClient created an agent for this identity in the same tick: create once more (the SDK then hands back the agent that creation made) and serialize creations per identity (single flight) so they stop racing.",
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
        "Another CallClient created a TeamsCallAgent for this identity in the same tick: create once more (the SDK then hands back the agent that creation made) and serialize creations per identity (single flight).",
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
        409,
        40232,
        Client,
        Table,
        "Failed to get a token from the credential.",
        "Transient: a retry is expected to help (the SDK marks it UnexpectedClientError, although its code is 409); if it persists, check the credential's token refresher.",
    ),
    row(
        400,
        40233,
        Expected,
        Table,
        "The token refresher returned a token for a different user than the first one.",
        "Make the token refresher return tokens for the same identity the agent was created with.",
    ),
    row(
        400,
        40234,
        Expected,
        Table,
        "The token expired and the token refresher failed to give a valid one after retries.",
        "Fix the token refresher (it must return a fresh, unexpired token for the same identity), then create the agent again.",
    ),
    row(
        401,
        40235,
        Expected,
        Sdk,
        "Failed to create CallAgent, the access token has expired.",
        "Fetch a fresh access token from your token service (or give the credential a token refresher) and create the agent with it.",
    ),
    deterministic(row(
        500,
        40239,
        Client,
        Table,
        "setDeviceType is not allowed with the CallClient's first-party acsDeviceType option.",
        "Do not combine the first-party acsDeviceType option with setDeviceType; a retry fails the same way.",
    )),
    deterministic(row(
        409,
        44012,
        Expected,
        Sdk,
        "No cloud prefix found in identity: the token's user id (skypeid) has no `prefix:` form.",
        "Use an access token issued by Azure Communication Services (or for a Teams user through the token exchange); its user id has the form `acs:…` or `orgid:…`. A hand-made or foreign token fails the same way every time.",
    )),
    row(
        500,
        44100,
        Server,
        Table,
        "The configuration the SDK fetched at start is empty.",
        "Transient (a service-side failure): a retry is expected to help; if it persists, open a support case.",
    ),
    row(
        500,
        44101,
        Server,
        Table,
        "The configuration the SDK fetched at start has no ACS key.",
        "Transient (a service-side failure): a retry is expected to help; if it persists, open a support case.",
    ),
    row(500, 44102, Client, Table, "Error while merging the SDK's configuration.", TRANSIENT_RECREATE),
    row(500, 44103, Client, Table, "Failed to initialize telemetry: invalid cloud type.", TRANSIENT_RECREATE),
    row(
        500,
        44104,
        Client,
        Table,
        "Failed to initialize telemetry: already initialized.",
        TRANSIENT_RECREATE,
    ),
    row(
        500,
        44105,
        Client,
        Table,
        "Failed to create and initialize the telemetry logger.",
        TRANSIENT_RECREATE,
    ),
    row(500, 44106, Client, Table, "Failed to flush telemetry.", TRANSIENT_RECREATE),
    row(500, 44107, Client, Table, "Failed to initialize the telemetry logger.", TRANSIENT_RECREATE),
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
        44112,
        Expected,
        Table,
        "No access token text reached the SDK (it was undefined).",
        "Give the credential the user access token's text, not undefined or an object.",
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
    deterministic(row(
        401,
        44117,
        Client,
        Sdk,
        "The access token's payload could not be decoded (not base64url JSON).",
        "Pass the token exactly as the identity service issued it (it was truncated or altered), or fetch a fresh one; the SDK calls this transient, but the same token fails the same way every time.",
    )),
    row(
        408,
        44118,
        Client,
        Sdk,
        "An SDK operation (such as a configuration fetch) timed out.",
        TRANSIENT_NETWORK,
    ),
    row(400, 44214, Expected, Seed, "Teams users can't set display name.", DISPLAY_NAME_REMEDY),
];

/// The catalog row for `sub_code`, if any.
///
/// ```
/// assert!(callagent_retry::sdk::catalog::lookup(40228).is_some());
/// assert!(callagent_retry::sdk::catalog::lookup(1).is_none());
/// ```
pub fn lookup(sub_code: u32) -> Option<&'static Entry> {
    position(sub_code).map(|i| &ENTRIES[i])
}

/// The row's index in [`entries`]: metrics keep one series per row, indexed the same way.
/// One load on a retry's path, instead of a binary search (a third of classifying a failure).
pub(crate) fn position(sub_code: u32) -> Option<usize> {
    let slot = *INDEX.get(usize::try_from(sub_code.checked_sub(FIRST)?).ok()?)?;
    (slot != NONE).then_some(usize::from(slot))
}

/// The lowest catalogued subcode: [`INDEX`] starts there.
const FIRST: u32 = ENTRIES[0].sub_code;
/// An [`INDEX`] slot with no row.
const NONE: u8 = u8::MAX;
/// Row of each subcode from [`FIRST`] to the highest (4 KiB), built at compile time.
static INDEX: [u8; (ENTRIES[ENTRIES.len() - 1].sub_code - FIRST + 1) as usize] = {
    let mut index = [NONE; (ENTRIES[ENTRIES.len() - 1].sub_code - FIRST + 1) as usize];
    let mut row = 0;
    while row < ENTRIES.len() {
        // Fewer rows than `NONE`: checked by the `sorted_unique_and_complete` test.
        index[(ENTRIES[row].sub_code - FIRST) as usize] = row as u8;
        row += 1;
    }
    index
};

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
        assert!(ENTRIES.len() < usize::from(NONE), "INDEX holds rows as u8");
        for sub_code in [0, 1, FIRST - 1, 40_010, 44_215, u32::MAX] {
            assert_eq!(position(sub_code), ENTRIES.iter().position(|e| e.sub_code == sub_code), "{sub_code}");
        }
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
        let page = include_str!("../../tests/data/create-call-agent-errors.txt");
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

    #[test]
    fn every_named_subcode_is_a_row() {
        let named = [
            BASE_STACK_INIT_TIMEOUT,
            BASE_STACK_INIT_FAILED,
            NO_BASE_STACK,
            USER_STACK_INIT_TIMEOUT,
            USER_STACK_INIT_FAILED,
            INFRASTRUCTURE_TIMEOUT,
            INFRASTRUCTURE_UNREACHABLE,
            TEAMS_DISPLAY_NAME,
            CREATE_FAILED,
            AGENT_EXISTS,
            ACS_AGENT_NEEDS_ACS_TOKEN,
            TEAMS_AGENT_EXISTS,
            TEAMS_AGENT_NEEDS_TEAMS_TOKEN,
            TOKEN_EXPIRED,
            NO_CREDENTIAL,
            TOKEN_EMPTY,
            TOKEN_FETCH_FAILED,
            TOKEN_INVALID,
            TOKEN_SCOPE_WITHOUT_VOIP,
            TOKEN_SCOPE_NOT_A_STRING,
            TOKEN_WITHOUT_RESOURCE_ID,
            TOKEN_WITHOUT_USER_ID,
            TEAMS_DISPLAY_NAME_DOCUMENTED,
            ONE_AGENT_PER_CALL_CLIENT,
            CALL_CLIENT_DISPOSED,
            UNDEFINED_CONFIGS,
            SIGNALING_CREATE_FAILED,
            SIGNALING_INIT_FAILED,
            SIGNALING_ALREADY_INITIALIZED,
            USER_STACK_MEDIA_INIT_FAILED,
            USER_STACK_SIGNALING_INIT_FAILED,
            USER_STACK_INTERNAL_INIT_FAILED,
            PLATFORM_NOT_SUPPORTED,
            DISPLAY_NAME_TOO_LONG,
            TOKEN_BEFORE_INIT,
            TOKEN_UNDEFINED,
            TOKEN_UNPARSABLE,
            OPERATION_TIMED_OUT,
            CALL_CLIENT_INIT_FAILED,
            USER_ID_WITHOUT_CLOUD_PREFIX,
            CREATE_CALL_AGENT_FAILED,
            CREATE_TEAMS_CALL_AGENT_FAILED,
            ICE_SERVER_URL_INVALID,
            ICE_SERVER_URL_SCHEME,
            PROXY_URL_TOO_SHORT,
            PROXY_URL_SCHEME,
            PROXY_URL_INVALID,
            EMERGENCY_COUNTRY_CODE_TOO_LONG,
            PAGE_PROTOCOL,
            STACK_CONFIG_PARSE_FAILED,
            STACK_USER_CONFIG_FAILED,
            DEVICE_MANAGER_WITHOUT_STACK,
            STACK_PARAMS_FAILED,
            STACK_CONFIG_FETCH_FAILED,
            AGENT_TOKEN_PARSE_FAILED,
            CREDENTIAL_TOKEN_FAILED,
            REFRESHED_TOKEN_OTHER_USER,
            REFRESHED_TOKEN_RETRIES,
            DEVICE_TYPE_NOT_ALLOWED,
            CONFIG_EMPTY,
            CONFIG_WITHOUT_ACS,
            CONFIG_MERGE_FAILED,
            TELEMETRY_CLOUD_TYPE,
            TELEMETRY_ALREADY_INITIALIZED,
            TELEMETRY_INIT_FAILED,
            TELEMETRY_FLUSH_FAILED,
            TELEMETRY_LOGGER_FAILED,
        ];
        assert_eq!(named.len(), ENTRIES.len());
        assert!(named.iter().all(|&s| lookup(s).is_some()));
    }
}
