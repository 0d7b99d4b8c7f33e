//! `[token] source = "endpoint"`: the user's own token endpoint. A GET of `token.url` (with
//! `{identity}` replaced by the identity, percent-encoded) carrying one header whose value is read
//! from `token.header_value_file` at start and on each reload (SIGHUP), answered by `{"token": …, "expiresOn": RFC 3339}`.
//!
//! Over [`crate::transport`]: one connection per request, TLS always verified (system roots plus
//! `token.ca_file`), plain `http` to loopback only, each request bounded by
//! `token.request_timeout`. A 429 or 503 is retried after its `Retry-After` (else 1 s, 2 s, …)
//! up to `token.max_retries` times, unless it asks for more than `token.max_retry_wait`; waits
//! are on tokio's clock. Every other failure is an [`EndpointError`] at once: the probe reports
//! it and the next probe asks again.
//!
//! The header's value is kept in memory wiped on drop, marked sensitive in the request, and is
//! in no error, `Debug` or log record; neither is an answer's body. Logged (DEBUG, target
//! `callagent_cli::monitor::tokens`): each request's host, path (never the query), status,
//! attempt and time. Not wiped: the copies hyper makes (the request's header, the read buffer).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use callagent_retry::sdk::AccessToken;
use http::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use super::super::config::TokenConfig;
use crate::transport::{Answer, Transport, TransportError, Wait, host_header, is_loopback, retry_after};

/// What `token.url` has in place of the identity.
pub(crate) const PLACEHOLDER: &str = "{identity}";

/// The identity as it goes in the URL: everything but RFC 3986's unreserved characters
/// percent-encoded (`8:acs:…` → `8%3Aacs%3A…`), so it is one path segment or one query value.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The largest header value file read.
const MAX_HEADER_FILE: u64 = 64 * 1024;

/// Headers the monitor sets itself, which `token.header_name` may not name.
const RESERVED: &[&str] =
    &["host", "connection", "content-length", "transfer-encoding", "te", "upgrade", "accept", "user-agent"];

/// Why the token endpoint gave no token, and what to do. None holds the header's value, a token
/// or an answer's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The endpoint could not be set up (the header value file, TLS roots, the CA file).
    #[error("cannot set up the token endpoint: {0}")]
    Setup(String),
    /// No connection, or no answer within `token.request_timeout`.
    #[error(
        "cannot reach the token endpoint at {host}: {cause}; check `token.url`, that the endpoint \
         is up, and that this machine can reach it (`token.request_timeout` bounds each request)"
    )]
    Unreachable {
        /// The endpoint's `host:port`.
        host: String,
        /// What failed.
        cause: String,
    },
    /// The TLS handshake failed (the certificate is checked, always).
    #[error(
        "the TLS handshake with the token endpoint at {host} failed: {cause}; its certificate must \
         be valid for its name and issued by a CA this system trusts, or one in `token.ca_file`"
    )]
    Tls {
        /// The endpoint's `host:port`.
        host: String,
        /// What failed.
        cause: String,
    },
    /// 401 or 403: the header was refused.
    #[error(
        "the token endpoint refused the `{header}` header ({status}): the value in \
         `token.header_value_file` is wrong, expired or not allowed tokens for this identity; put \
         the current one in the file and send the monitor SIGHUP (it reads the file again)"
    )]
    Refused {
        /// 401 or 403.
        status: u16,
        /// The header's name (never its value).
        header: String,
    },
    /// 404.
    #[error(
        "the token endpoint at {host} has nothing at {path} (404 Not Found): check `token.url`, \
         and that the endpoint knows this identity"
    )]
    NotFound {
        /// The endpoint's `host:port`.
        host: String,
        /// The path asked for (never the query).
        path: String,
    },
    /// 429 after every retry allowed, or with a `Retry-After` longer than `token.max_retry_wait`.
    #[error(
        "the token endpoint is throttling the monitor (429 Too Many Requests) after {attempts} \
         attempt(s){}: probe less often (`interval`) or raise the endpoint's limit; \
         `token.max_retries` and `token.max_retry_wait` bound the waiting",
        Wait(*retry_after)
    )]
    Throttled {
        /// Requests sent.
        attempts: u32,
        /// The last `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 5xx (a 503 after every retry allowed).
    #[error(
        "the token endpoint failed ({status} after {attempts} attempt(s)): a fault on its side, \
         see its own logs; the next probe asks again"
    )]
    Server {
        /// The status.
        status: u16,
        /// Requests sent.
        attempts: u32,
    },
    /// Another status.
    #[error(
        "the token endpoint answered {status}, not 200: it must answer a GET with 200 and \
         {{\"token\": …, \"expiresOn\": …}}; check `token.url`"
    )]
    UnexpectedStatus {
        /// The status.
        status: u16,
    },
    /// An answer that is not `{"token": …, "expiresOn": …}`.
    #[error(
        "the token endpoint's answer ({status}) could not be read: {what}; it must be \
         {{\"token\": \"…\", \"expiresOn\": \"RFC 3339\"}} (without `expiresOn`, the token's `exp` \
         counts)"
    )]
    Malformed {
        /// The status (0: not HTTP).
        status: u16,
        /// What is wrong with it (never its content).
        what: String,
    },
}

impl From<TransportError> for EndpointError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Setup(why) => Self::Setup(why),
            TransportError::Unreachable { host, cause } => Self::Unreachable { host, cause },
            TransportError::Tls { host, cause } => Self::Tls { host, cause },
            TransportError::Malformed { status, what } => Self::Malformed { status, what },
        }
    }
}

/// The token endpoint, set up from `[token]`.
pub(crate) struct Endpoint {
    /// `token.url`, `{identity}` still in it.
    template: String,
    transport: Transport,
    host_header: String,
    header_name: HeaderName,
    /// The header's value: wiped when dropped.
    header_value: Zeroizing<Vec<u8>>,
    max_retries: u32,
    max_retry_wait: Duration,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.transport.authority())
            .field("header_name", &self.header_name.as_str())
            .field("timeout", &self.transport.timeout())
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Reads the header's value and sets up TLS.
    pub(crate) fn new(config: &TokenConfig) -> Result<Self, EndpointError> {
        let setup = |field: &str, why: String| EndpointError::Setup(format!("`token.{field}` {why}"));
        let template = config.url.clone().ok_or_else(|| setup("url", "is not set".into()))?;
        check_url(&template).map_err(|e| setup("url", e))?;
        let header_name = check_header_name(&config.header_name).map_err(|e| setup("header_name", e))?;
        let file = config
            .header_value_file
            .as_deref()
            .ok_or_else(|| setup("header_value_file", "is not set".into()))?;
        let header_value = read_header_value(file).map_err(|e| setup("header_value_file", e))?;
        let origin = url_for(&template, "x").map_err(|e| setup("url", e))?;
        let transport = Transport::new(&origin, config.ca_file.as_deref(), config.request_timeout)?;
        Ok(Self {
            template,
            transport,
            host_header: host_header(&origin),
            header_name,
            header_value,
            max_retries: config.max_retries,
            max_retry_wait: config.max_retry_wait,
        })
    }

    /// A token for `identity`, and when it expires.
    pub(crate) async fn fetch(&self, identity: &str) -> Result<(AccessToken, SystemTime), EndpointError> {
        let url = url_for(&self.template, identity).map_err(EndpointError::Setup)?;
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = tokio::time::Instant::now();
            let answer = self.get_once(&target).await;
            tracing::debug!(
                target: "callagent_cli::monitor::tokens",
                host = self.transport.authority(),
                path = url.path(),
                status = answer.as_ref().map_or(0, |a| a.status.as_u16()),
                attempt = attempts,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "token endpoint request"
            );
            let answer = answer?;
            let status = answer.status.as_u16();
            match status {
                200..=299 => {
                    return super::parse_token_object(&answer.body)
                        .map_err(|what| EndpointError::Malformed { status, what: what.into() });
                }
                429 | 503 => {
                    let asked = retry_after(&answer.headers, SystemTime::now());
                    let wait = asked.unwrap_or_else(|| Duration::from_secs(1 << (attempts - 1).min(16)));
                    if attempts > self.max_retries || wait > self.max_retry_wait {
                        return Err(if status == 429 {
                            EndpointError::Throttled { attempts, retry_after: asked }
                        } else {
                            EndpointError::Server { status, attempts }
                        });
                    }
                    tracing::debug!(
                        target: "callagent_cli::monitor::tokens",
                        status,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "the token endpoint asked to come back later; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
                401 | 403 => {
                    return Err(EndpointError::Refused { status, header: self.header_name.to_string() });
                }
                404 => {
                    return Err(EndpointError::NotFound {
                        host: self.transport.authority().to_owned(),
                        path: url.path().to_owned(),
                    });
                }
                500..=599 => return Err(EndpointError::Server { status, attempts }),
                _ => return Err(EndpointError::UnexpectedStatus { status }),
            }
        }
    }

    /// One GET on a new connection, bounded by `token.request_timeout`.
    async fn get_once(&self, target: &str) -> Result<Answer, EndpointError> {
        let mut value = HeaderValue::from_bytes(&self.header_value)
            .map_err(|_| EndpointError::Setup("the header's value is not a header value".into()))?;
        value.set_sensitive(true);
        let request = Request::builder()
            .method(Method::GET)
            .uri(target)
            .header(HOST, &self.host_header)
            .header(&self.header_name, value)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("callagent-cli/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "close")
            .body(Full::new(Bytes::new()))
            .map_err(|_| EndpointError::Setup("the request is not valid HTTP".into()))?;
        Ok(self.transport.send(request).await?)
    }
}

/// `template` with `{identity}` replaced by `identity`, percent-encoded.
pub(crate) fn url_for(template: &str, identity: &str) -> Result<url::Url, String> {
    let encoded = percent_encoding::utf8_percent_encode(identity, ENCODE).to_string();
    url::Url::parse(&template.replace(PLACEHOLDER, &encoded)).map_err(|e| format!("is not a URL: {e}"))
}

/// `token.url`: a URL (with any identity in it), `https` or `http` to loopback, with no
/// credentials, and `{identity}` (if any) in its path or query, not its host.
pub(crate) fn check_url(template: &str) -> Result<(), String> {
    let (a, b) = (url_for(template, "a"), url_for(template, "b"));
    if let (Ok(a), Ok(b)) = (&a, &b)
        && a.origin() != b.origin()
    {
        return Err("may have `{identity}` in its path or query, not its host or port".into());
    }
    let a = url_for(template, "8:acs:a")?;
    let host = a.host_str().unwrap_or_default();
    match a.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => return Err(format!("must be https: plain http is allowed to loopback only, not {host}")),
        other => return Err(format!("must be https (or http to loopback), not {other}")),
    }
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !a.username().is_empty() || a.password().is_some() {
        return Err("must not hold credentials: put them in `token.header_value_file`".into());
    }
    Ok(())
}

/// `token.header_name`: a header name the monitor does not set itself.
pub(crate) fn check_header_name(name: &str) -> Result<HeaderName, String> {
    let header =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    if RESERVED.contains(&header.as_str()) {
        return Err(format!("{name} is set by the monitor itself"));
    }
    Ok(header)
}

/// The header's value from `file`: at most 64 KiB, surrounding whitespace trimmed, not empty,
/// no control character. Errors never quote it.
pub(crate) fn read_header_value(file: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    // Room for all of it up front: a reallocation would leave a copy behind, unwiped.
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_HEADER_FILE as usize + 1));
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_HEADER_FILE + 1).read_to_end(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if text.len() as u64 > MAX_HEADER_FILE {
        return Err(format!("{} is larger than 64 KiB", file.display()));
    }
    let value = Zeroizing::new(text.trim_ascii().to_vec());
    if value.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "{} holds a control character or a line break inside the value: one line is one header value",
            file.display()
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
