//! [`IdentityClient`]: create an identity with a token, issue a token, delete an identity.
//!
//! Over 500 lines: the client and its retry of 429/503 share their types; about 70 lines are
//! tests. The one-connection HTTP transport is [`crate::transport`]'s.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use callagent_retry::sdk::AccessToken;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use zeroize::Zeroizing;

use super::connection_string::{AccessKey, ConnectionString};
use super::error::{IdentityError, ServiceError};
use super::sign::sign;
pub(crate) use crate::transport::host_header;
use crate::transport::{Transport, TransportError, retry_after};

/// The identity API's version this client speaks.
pub const API_VERSION: &str = "2023-10-01";

/// An identity id as one path segment: everything but RFC 3986's unreserved characters
/// percent-encoded (`8:acs:…` → `8%3Aacs%3A…`, as Microsoft's clients send it).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What a token may be used for (`createTokenWithScopes`, `scopes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `voip`: calling (what a call agent needs).
    Voip,
    /// `chat`.
    Chat,
    /// `voip.join`: join existing calls only.
    VoipJoin,
    /// `chat.join`.
    ChatJoin,
    /// `chat.join.limited`.
    ChatJoinLimited,
}

impl Scope {
    /// The scope as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voip => "voip",
            Self::Chat => "chat",
            Self::VoipJoin => "voip.join",
            Self::ChatJoin => "chat.join",
            Self::ChatJoinLimited => "chat.join.limited",
        }
    }
}

/// An identity created with a token. `Debug` shows the id and expiry, never the token.
#[derive(Debug, Clone)]
pub struct CreatedIdentity {
    /// The identity (`8:acs:RESOURCE_…`).
    pub id: String,
    /// Its token.
    pub token: AccessToken,
    /// When the token expires, as the service says.
    pub expires_on: SystemTime,
}

/// A token issued for an identity. `Debug` shows the expiry, never the token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token.
    pub token: AccessToken,
    /// When it expires, as the service says.
    pub expires_on: SystemTime,
}

/// A client of a Communication Services resource's identity API
/// (`{endpoint}/identities…?api-version=2023-10-01`), each request signed with the resource's
/// access key (HMAC-SHA256).
///
/// One HTTP/1.1 connection per request, over TLS verified against the system's roots (plus
/// [`IdentityClientBuilder::ca_file`]); plain `http://` only to loopback. Each attempt is bounded
/// by [`timeout`](IdentityClientBuilder::timeout). A 429 or 503 is retried after the service's
/// `Retry-After` (`retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After`; else 1 s, 2 s, 4 s, …)
/// up to [`max_retries`](IdentityClientBuilder::max_retries) times, unless the wait asked for
/// is longer than [`max_retry_wait`](IdentityClientBuilder::max_retry_wait). Waits are on
/// tokio's clock. Nothing else is retried: creating an identity is not idempotent.
///
/// It logs (at DEBUG, target `callagent_cli::identity`) each request's method, path, status,
/// attempt and time, never a header or a body.
pub struct IdentityClient {
    endpoint: url::Url,
    base_path: String,
    host_header: String,
    key: AccessKey,
    transport: Transport,
    timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
}

/// Sets up an [`IdentityClient`].
pub struct IdentityClientBuilder {
    connection: ConnectionString,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
}

impl fmt::Debug for IdentityClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityClientBuilder")
            .field("connection", &self.connection)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish()
    }
}

impl IdentityClientBuilder {
    /// Also trusts the CA certificates in this PEM file (a test's, or a TLS-inspecting proxy's).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The longest one attempt may take, connection included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a 429 or 503 is retried (default 3).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The longest wait before a retry (default 60 s): a `Retry-After` longer than this ends
    /// the call with [`IdentityError::Throttled`] at once.
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// The client. Fails only when TLS cannot be set up (no trusted root at all, an unreadable
    /// CA file).
    pub fn build(self) -> Result<IdentityClient, IdentityError> {
        let endpoint = self.connection.endpoint().clone();
        let transport = Transport::new(&endpoint, self.ca_file.as_deref(), self.timeout)?;
        let host_header = host_header(&endpoint);
        let base_path = endpoint.path().trim_end_matches('/').to_owned();
        let key = self.connection.into_key();
        Ok(IdentityClient {
            endpoint,
            base_path,
            host_header,
            key,
            transport,
            timeout: self.timeout,
            max_retries: self.max_retries,
            max_retry_wait: self.max_retry_wait,
        })
    }
}

/// An answer: the status, the headers and the body (wiped when dropped: it may hold a token).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Zeroizing<Vec<u8>>,
    /// What the service said, for an error status.
    service: Option<ServiceError>,
}

impl From<TransportError> for IdentityError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Setup(why) => Self::Setup(why),
            TransportError::Unreachable { host, cause } => Self::Unreachable { host, cause },
            TransportError::Tls { host, cause } => Self::Tls { host, cause },
            TransportError::Malformed { status, what } => Self::Malformed { status, what },
        }
    }
}

impl fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    /// A client with the defaults (system roots, 30 s per attempt, 3 retries of a 429 or 503,
    /// waiting at most 60 s before each).
    pub fn new(connection: ConnectionString) -> Result<Self, IdentityError> {
        Self::builder(connection).build()
    }

    /// Sets up a client.
    pub fn builder(connection: ConnectionString) -> IdentityClientBuilder {
        IdentityClientBuilder {
            connection,
            ca_file: None,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
        }
    }

    /// The resource's endpoint.
    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    /// Creates an identity with a token for `scopes`, valid for `expires_in` (whole minutes,
    /// 1 to 24 hours): `POST /identities`, 201.
    pub async fn create_identity_with_token(
        &self,
        scopes: &[Scope],
        expires_in: Duration,
    ) -> Result<CreatedIdentity, IdentityError> {
        let body = serde_json::json!({
            "createTokenWithScopes": scope_names(scopes)?,
            "expiresInMinutes": minutes(expires_in)?,
        });
        let path = format!("{}/identities?api-version={API_VERSION}", self.base_path);
        let mut answer = self.call(Method::POST, &path, body.to_string().into_bytes(), None).await?;
        let status = answer.status.as_u16();
        let mut json = parse_json(&answer.body, status)?;
        answer.body = Zeroizing::new(Vec::new());
        let id = match json.pointer_mut("/identity/id").map(Value::take) {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => return Err(malformed(status, "no `identity.id` string")),
        };
        let (token, expires_on) = token_of(&mut json, "/accessToken", status)?;
        Ok(CreatedIdentity { id, token, expires_on })
    }

    /// Issues a token for the identity `id`, for `scopes`, valid for `expires_in` (whole
    /// minutes, 1 to 24 hours): `POST /identities/{id}/:issueAccessToken`, 200. An identity the
    /// resource does not have is [`IdentityError::NotFound`].
    pub async fn issue_token(
        &self,
        id: &str,
        scopes: &[Scope],
        expires_in: Duration,
    ) -> Result<IssuedToken, IdentityError> {
        let body = serde_json::json!({
            "scopes": scope_names(scopes)?,
            "expiresInMinutes": minutes(expires_in)?,
        });
        let path = format!(
            "{}/identities/{}/:issueAccessToken?api-version={API_VERSION}",
            self.base_path,
            segment(id)?
        );
        let answer = self.call(Method::POST, &path, body.to_string().into_bytes(), Some(id)).await?;
        let status = answer.status.as_u16();
        let mut json = parse_json(&answer.body, status)?;
        drop(answer);
        let (token, expires_on) = token_of(&mut json, "", status)?;
        Ok(IssuedToken { token, expires_on })
    }

    /// Deletes the identity `id` (and revokes its tokens): `DELETE /identities/{id}`, 204. An
    /// identity the resource does not have is [`IdentityError::NotFound`].
    pub async fn delete_identity(&self, id: &str) -> Result<(), IdentityError> {
        let path = format!("{}/identities/{}?api-version={API_VERSION}", self.base_path, segment(id)?);
        self.call(Method::DELETE, &path, Vec::new(), Some(id)).await.map(drop)
    }

    /// Sends the request, retrying a 429 or 503 as documented on the type; an error status
    /// becomes its [`IdentityError`].
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        id: Option<&str>,
    ) -> Result<Answer, IdentityError> {
        let body = Bytes::from(body);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = tokio::time::Instant::now();
            let answer = self.send_once(&method, path_and_query, body.clone()).await;
            let status = answer.as_ref().map_or(0, |a| a.status.as_u16());
            tracing::debug!(
                target: "callagent_cli::identity",
                method = %method,
                path = path_and_query,
                status,
                attempt = attempts,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "identity API request"
            );
            let answer = answer?;
            if answer.status.is_success() {
                return Ok(answer);
            }
            let service = answer.service;
            match answer.status.as_u16() {
                s @ (429 | 503) => {
                    let asked = retry_after(&answer.headers, SystemTime::now());
                    let wait = asked.unwrap_or_else(|| Duration::from_secs(1 << (attempts - 1).min(16)));
                    if attempts > self.max_retries || wait > self.max_retry_wait {
                        return Err(if s == 429 {
                            IdentityError::Throttled { attempts, retry_after: asked, service }
                        } else {
                            IdentityError::Server { status: s, attempts, service }
                        });
                    }
                    tracing::debug!(
                        target: "callagent_cli::identity",
                        status = s,
                        wait_ms = wait.as_millis() as u64,
                        "identity API asked to come back later; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
                400 => return Err(IdentityError::BadRequest { service }),
                401 => return Err(IdentityError::Unauthorized { service }),
                403 => return Err(IdentityError::Forbidden { service }),
                404 => return Err(IdentityError::NotFound { id: id.map(str::to_owned), service }),
                s @ 500..=599 => return Err(IdentityError::Server { status: s, attempts, service }),
                s => return Err(IdentityError::UnexpectedStatus { status: s, service }),
            }
        }
    }

    /// One signed request on a new connection, bounded by the timeout.
    async fn send_once(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Answer, IdentityError> {
        let signature =
            sign(&self.key, method.as_str(), path_and_query, &self.host_header, &body, SystemTime::now());
        let mut authorization = HeaderValue::from_str(&signature.authorization)
            .map_err(|_| IdentityError::Setup("the signature is not a header value".into()))?;
        authorization.set_sensitive(true);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(HOST, &self.host_header)
            .header("x-ms-date", &signature.date)
            .header("x-ms-content-sha256", &signature.content_hash)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("callagent-cli/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "close");
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| IdentityError::Setup("the request is not valid HTTP".into()))?;
        let answer = self.transport.send(request).await?;
        let service = (!answer.status.is_success())
            .then(|| service_error(&answer.body, &signature.authorization))
            .flatten();
        Ok(Answer { status: answer.status, headers: answer.headers, body: answer.body, service })
    }
}

fn malformed(status: u16, what: &str) -> IdentityError {
    IdentityError::Malformed { status, what: what.into() }
}

fn scope_names(scopes: &[Scope]) -> Result<Vec<&'static str>, IdentityError> {
    if scopes.is_empty() {
        return Err(IdentityError::InvalidArgument(
            "a token needs at least one scope (voip for calling)".into(),
        ));
    }
    Ok(scopes.iter().map(|s| s.as_str()).collect())
}

/// `expires_in` in minutes, as the API takes it: 60 to 1440, whole.
fn minutes(expires_in: Duration) -> Result<u64, IdentityError> {
    let secs = expires_in.as_secs();
    if expires_in.subsec_nanos() != 0 || !secs.is_multiple_of(60) || !(60..=1440).contains(&(secs / 60)) {
        return Err(IdentityError::InvalidArgument(format!(
            "a token lasts from 1 to 24 hours in whole minutes, not {}",
            humantime::format_duration(expires_in)
        )));
    }
    Ok(secs / 60)
}

/// `id` percent-encoded as one path segment.
fn segment(id: &str) -> Result<String, IdentityError> {
    if id.trim().is_empty() {
        return Err(IdentityError::InvalidArgument("the identity id is empty".into()));
    }
    Ok(percent_encoding::utf8_percent_encode(id, SEGMENT).to_string())
}

fn parse_json(body: &[u8], status: u16) -> Result<Value, IdentityError> {
    serde_json::from_slice(body).map_err(|_| malformed(status, "not JSON"))
}

/// The token and expiry at `at` (`{token, expiresOn}`), taken out of `json`.
fn token_of(json: &mut Value, at: &str, status: u16) -> Result<(AccessToken, SystemTime), IdentityError> {
    let token = match json.pointer_mut(&format!("{at}/token")).map(Value::take) {
        Some(Value::String(token)) if !token.is_empty() => AccessToken::new(token),
        _ => return Err(malformed(status, &format!("no `{}token` string", field_path(at)))),
    };
    let expires_on = json
        .pointer(&format!("{at}/expiresOn"))
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339(s.trim()).ok())
        .ok_or_else(|| {
            malformed(status, &format!("no `{}expiresOn` time (RFC 3339, UTC)", field_path(at)))
        })?;
    Ok((token, expires_on))
}

/// `/accessToken` → `accessToken.`
fn field_path(pointer: &str) -> String {
    pointer.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).map(|p| format!("{p}.")).collect()
}

/// `{"error":{"code","message"}}` from an error answer: the message shortened, and cleared of
/// the request's signature should the service quote it.
fn service_error(body: &[u8], authorization: &str) -> Option<ServiceError> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let error = json.get("error")?;
    let text = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default();
    let mut message = text("message").to_owned();
    if let Some((_, signature)) = authorization.split_once("Signature=") {
        message = message.replace(signature, "[redacted]");
    }
    if let Some((cut, _)) = message.char_indices().nth(300) {
        message.truncate(cut);
        message.push('…');
    }
    let code: String = text("code").chars().take(100).collect();
    (!code.is_empty() || !message.is_empty()).then_some(ServiceError { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7"), ("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "20")]), now),
            Some(Duration::from_millis(20))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn ids_are_one_encoded_segment() {
        assert_eq!(segment("8:acs:r_1").unwrap(), "8%3Aacs%3Ar_1");
        assert_eq!(segment("a/b?c#d e%").unwrap(), "a%2Fb%3Fc%23d%20e%25");
        assert!(matches!(segment(" "), Err(IdentityError::InvalidArgument(_))));
    }

    #[test]
    fn token_lifetimes_the_api_takes() {
        assert_eq!(minutes(Duration::from_secs(3600)).unwrap(), 60);
        assert_eq!(minutes(Duration::from_secs(86_400)).unwrap(), 1440);
        for bad in [59 * 60, 86_460, 3601] {
            assert!(minutes(Duration::from_secs(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_errors_are_read_and_cleared_of_the_signature() {
        let auth = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=SIG+abc=";
        let body = br#"{"error":{"code":"Denied","message":"signature SIG+abc= is wrong"}}"#;
        assert_eq!(
            service_error(body, auth),
            Some(ServiceError { code: "Denied".into(), message: "signature [redacted] is wrong".into() })
        );
        assert_eq!(service_error(b"<html>", auth), None);
        assert_eq!(service_error(br#"{"error":{}}"#, auth), None);
        let long = format!(r#"{{"error":{{"code":"X","message":"{}"}}}}"#, "é".repeat(400));
        assert_eq!(service_error(long.as_bytes(), auth).unwrap().message.chars().count(), 301);
    }

    #[test]
    fn expiry_as_the_service_writes_it() {
        let mut json =
            serde_json::json!({"token": "a.b.c", "expiresOn": "2023-10-10T21:39:39.3244584+00:00"});
        let (_, at) = token_of(&mut json, "", 200).unwrap();
        assert_eq!(humantime::format_rfc3339_seconds(at).to_string(), "2023-10-10T21:39:39Z");
        let mut json = serde_json::json!({"token": "a.b.c", "expiresOn": "2023-10-10T21:39:39+02:00"});
        assert!(matches!(token_of(&mut json, "", 200), Err(IdentityError::Malformed { .. })));
    }
}
