//! One HTTP/1.1 request per connection, for the identity client and the monitor's token
//! endpoint: TCP to the first address that answers, TLS (always verified, against the system's
//! roots plus an optional CA file) for `https`, plain `http` to loopback only; the whole
//! exchange bounded by a timeout; an answer's body limited to 1 MiB and wiped when dropped.
//!
//! No connection pool, proxy or redirect logic to audit, and nothing here logs: a caller logs
//! what it chooses (never a header or a body). Header values a caller marks sensitive stay so.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use zeroize::Zeroizing;

/// The largest answer read (a token answer is under 4 KiB).
pub(crate) const MAX_ANSWER: usize = 1024 * 1024;

/// Why an exchange failed. None holds a header's value or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// TLS could not be set up (no trusted root, an unreadable CA file), or the URL has no host.
    Setup(String),
    /// No connection, or no answer in time.
    Unreachable {
        /// The endpoint's `host:port`.
        host: String,
        /// What failed.
        cause: String,
    },
    /// The TLS handshake failed (the certificate was refused).
    Tls {
        /// The endpoint's `host:port`.
        host: String,
        /// What failed.
        cause: String,
    },
    /// The answer is not HTTP/1.1, or is larger than [`MAX_ANSWER`].
    Malformed {
        /// The status, 0 when there is none.
        status: u16,
        /// What is wrong (never the content).
        what: String,
    },
}

/// An answer: the status, the headers and the body (wiped when dropped: it may hold a token).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Requests to one origin (a scheme, a host and a port), one connection each.
pub(crate) struct Transport {
    endpoint: url::Url,
    /// `host:port`, for errors.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Transport {
    /// Requests to `endpoint`'s origin (its path and query are the request's business), each
    /// exchange bounded by `timeout`.
    pub(crate) fn new(
        endpoint: &url::Url,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let host = endpoint.host().ok_or_else(|| TransportError::Setup("the endpoint has no host".into()))?;
        let tls = match endpoint.scheme() {
            "https" => {
                let name = match host {
                    url::Host::Domain(d) => ServerName::try_from(d.to_owned()).map_err(|_| {
                        TransportError::Setup(format!("{d} is not a name a certificate can be for"))
                    })?,
                    url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                    url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                };
                Some((tokio_rustls::TlsConnector::from(tls_config(ca_file)?), name))
            }
            _ => None,
        };
        let authority = match endpoint.port_or_known_default() {
            Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
            None => host_header(endpoint),
        };
        Ok(Self { endpoint: endpoint.clone(), authority, tls, timeout })
    }

    /// `host:port`, as errors name the endpoint.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The longest one exchange may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` (its target a path and query; its `Host` header the caller's) on a new
    /// connection and reads the answer, all within the timeout.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, TransportError> {
        let exchange = async {
            let io = self.connect().await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                    .await
                    .map_err(|e| self.unreachable(format!("the HTTP handshake failed: {e}")))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let response = sender.send_request(request).await.map_err(|e| {
                if e.is_parse() {
                    malformed(0, "the answer is not HTTP/1.1")
                } else {
                    self.unreachable(format!("no answer: {e}"))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    malformed(parts.status.as_u16(), "larger than 1 MiB")
                } else {
                    self.unreachable("the connection was lost while reading the answer".into())
                }
            })?;
            Ok::<_, TransportError>((parts, Zeroizing::new(Vec::from(body.to_bytes()))))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            self.unreachable(format!("no answer within {}", humantime::format_duration(self.timeout)))
        })??;
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// A connection to the endpoint: TCP to the first address that answers, then TLS for
    /// `https`. Plain `http` connects to loopback addresses only.
    async fn connect(&self) -> Result<Box<dyn Io>, TransportError> {
        let port = self.endpoint.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> = match self.endpoint.host() {
            Some(url::Host::Ipv4(ip)) => vec![(ip, port).into()],
            Some(url::Host::Ipv6(ip)) => vec![(ip, port).into()],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| self.unreachable(format!("cannot resolve {name}: {e}")))?
                .collect(),
            None => Vec::new(),
        };
        let addresses: Vec<SocketAddr> = match self.tls {
            Some(_) => addresses,
            None => addresses.into_iter().filter(|a| a.ip().is_loopback()).collect(),
        };
        if addresses.is_empty() {
            let why = if self.tls.is_none() && !is_loopback(self.endpoint.host_str().unwrap_or_default()) {
                "plain http is allowed to loopback only"
            } else {
                "the name has no usable address"
            };
            return Err(self.unreachable(why.into()));
        }
        let mut last = None;
        let mut tcp = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(format!("cannot connect to {address}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| self.unreachable(last.unwrap_or_default()))?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else { return Ok(Box::new(tcp)) };
        match connector.connect(name.clone(), tcp).await {
            Ok(tls) => Ok(Box::new(tls)),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(TransportError::Tls { host: self.authority.clone(), cause: e.to_string() })
            }
            Err(e) => Err(self.unreachable(format!("the connection failed during the TLS handshake: {e}"))),
        }
    }

    fn unreachable(&self, cause: String) -> TransportError {
        TransportError::Unreachable { host: self.authority.clone(), cause }
    }
}

fn malformed(status: u16, what: &str) -> TransportError {
    TransportError::Malformed { status, what: what.into() }
}

/// The `Host` header (and the signed host): the endpoint's host, with its port when it is not
/// the scheme's default.
pub(crate) fn host_header(endpoint: &url::Url) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    match endpoint.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Whether `host` (as `url` writes it: IPv6 in brackets) is loopback: where plain `http` may go.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The certificates of a CA file (PEM): at least one, each one rustls can parse.
pub(crate) fn load_ca_file(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read the CA file {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("the CA file {} holds no certificate", file.display()));
    }
    Ok(certs)
}

/// TLS that checks the endpoint's certificate against the system's roots and `ca_file`'s.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    // A root the system ships that rustls cannot parse is skipped, as browsers do.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(file) = ca_file {
        for cert in load_ca_file(file).map_err(TransportError::Setup)? {
            roots
                .add(cert)
                .map_err(|e| TransportError::Setup(format!("the CA file {}: {e}", file.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(TransportError::Setup(
            "no trusted root: the system has none and no CA file is given".into(),
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Setup(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The wait a throttled answer asks for: `retry-after-ms`, `x-ms-retry-after-ms` (ms), or
/// `Retry-After` (seconds, or an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = text(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// ` (it last asked to wait 7s)`, or nothing: how an error says the `Retry-After` it gave up on.
pub(crate) struct Wait(pub(crate) Option<Duration>);

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, " (it last asked to wait {})", humantime::format_duration(d)),
            None => Ok(()),
        }
    }
}
