//! Reaching a browser on another host: its DevTools endpoint (`ws://`, `wss://`, `http://`,
//! `https://`), parsed once into an [`Endpoint`] where it is given (`RemoteBrowser::new`), its
//! name resolved at each connection and the browser asked by address. `wss` and `https` go over
//! TLS (rustls, with the `ring` provider the token seal already builds), the certificate verified
//! against the endpoint's name (or IP address) and the system's roots plus
//! `RemoteBrowser::ca_file`; there is no way to skip the check.
//!
//! Over 500 lines: more than half is its tests (the endpoint parser's cases and the TLS link's).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callagent_retry::sdk::AccessToken;
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::either::Either;

use crate::transport::{Link, Upstream, unlimited};

/// A remote browser's DevTools endpoint and how to reach it (`RemoteBrowser`'s fields).
#[derive(Clone, Copy)]
pub(crate) struct Reach<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) header: Option<(&'a str, &'a str)>,
    pub(crate) lost_after: Duration,
    pub(crate) ca_file: Option<&'a PathBuf>,
    pub(crate) connect_to: Option<SocketAddr>,
}

/// Text that may be a credential (an endpoint, its query): never shown (`Debug` prints
/// `[redacted]`), and wiped from memory when dropped, held as an [`AccessToken`] is (the tree's
/// one zeroizing string).
#[derive(Clone, PartialEq)]
pub(crate) struct Secret(AccessToken);

impl Secret {
    pub(crate) fn new(text: String) -> Self {
        Self(AccessToken::new(text))
    }

    /// The text, for the request that carries it. Never log it.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A remote browser's DevTools endpoint, parsed once, by [`Endpoint::parse`] (at
/// `RemoteBrowser::new`), and read wherever it is needed: the connection ([`reach`]: TLS, the
/// name for SNI and the certificate, the port, the path, the query), `WebSdkConfig::validate`
/// (whether a credential would cross a link in plain text), `RemoteBrowser::authority` and
/// `Debug`, and a `DnsBrowsers` template ([`member`](Self::member): TLS and the query each
/// member gets). `Debug` and `Display` show its scheme, host and port only: never its path nor
/// its query, which may hold a token.
#[derive(Clone, PartialEq)]
pub(crate) struct Endpoint {
    /// `wss://`, `https://`.
    tls: bool,
    /// `http(s)://`: the browser's WebSocket path is asked for (`/json/version`).
    discover: bool,
    /// `None`: no host, each address being its own (a `DnsBrowsers` template: `""`, `https://`).
    at: Option<HostPort>,
    /// Starts with `/`; neither the query nor the fragment (the client's own, never sent).
    path: String,
    /// The query, with its `?` (browserless's `?token=`): taken as a credential.
    query: Option<Secret>,
}

/// A host and its port: an endpoint's, or a `DnsBrowsers` name (`HOST:PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// A name (letters, digits, `-`, `.`, `_`) or an IP address, an IPv6 one without its `[ ]`.
    host: String,
    port: u16,
}

/// Why an endpoint (or a `DnsBrowsers` name) is not one this module can reach. What it shows
/// of the text is only what cannot be a secret: a scheme's name, a port's digits, one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointError {
    /// A character that would end a request's line (CR, LF) or garble it.
    Unprintable(Unprintable),
    NoScheme,
    /// Not `ws`, `wss`, `http` or `https`: its name, when it is one (letters, digits, `+-.`).
    Scheme(Option<String>),
    /// `user:password@` in the authority.
    Credentials,
    NoHost,
    /// `[` with no `]`.
    Unclosed,
    /// Neither a DNS name nor an IP address (an IPv6 one in brackets).
    Host,
    /// Not 1 to 65535: its text, when it is digits.
    Port(Option<String>),
    /// A `HOST:PORT` with no port.
    NoPort,
    /// No host where a browser's endpoint needs one: a `DnsBrowsers` template's form.
    EachAddress,
}

/// A character a request line cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unprintable {
    /// CR or LF at the end (a value read from a file with its newline).
    LineBreak,
    /// A control character (or, in a URL, white space).
    Char(char),
}

impl Unprintable {
    /// What is wrong with `what` (the endpoint, the header's value).
    fn say(self, what: &str) -> String {
        match self {
            Self::LineBreak => format!(
                "{what} ends with a line break (read from a file? trim it): it would end the request's line"
            ),
            Self::Char(c) => {
                format!(
                    "{what} holds the control or space character {c:?}, which a request line cannot carry"
                )
            }
        }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SCHEMES: &str = "ws://, wss://, http:// or https://";
        match self {
            Self::Unprintable(u) => f.write_str(&u.say("the endpoint")),
            Self::NoScheme => write!(f, "no scheme ({SCHEMES})"),
            Self::Scheme(Some(name)) => write!(f, "the scheme {name}:// is not {SCHEMES}"),
            Self::Scheme(None) => write!(f, "the scheme is not {SCHEMES}"),
            Self::Credentials => f.write_str(
                "credentials in the URL (user:password@) are not supported: use RemoteBrowser::with_header",
            ),
            Self::NoHost => f.write_str("no host"),
            Self::Unclosed => f.write_str("an unclosed [ in the host"),
            Self::Host => f.write_str(
                "the host is not a DNS name or an IP address (letters, digits, -, . and _; an IPv6 \
                 address in brackets, [::1]:9222)",
            ),
            Self::Port(Some(digits)) => write!(f, "the port {digits:?} is not a port (1 to 65535)"),
            Self::Port(None) => f.write_str("the port is not a port (digits, 1 to 65535)"),
            Self::NoPort => f.write_str("no port (HOST:PORT)"),
            Self::EachAddress => f.write_str(
                "no host: an endpoint without one (RemoteBrowser::each_address, each_address_over_tls) \
                 is a DnsBrowsers template, not a browser",
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Refuses what would let a value end one line of a request and start another (CR, LF), or
/// garble it (any other control character, a space in a URL).
fn printable(value: &str, space: bool) -> Result<(), Unprintable> {
    match value.chars().find(|c| (c.is_control() && *c != '\t') || (!space && c.is_whitespace())) {
        Some('\n' | '\r') if value.trim_end() != value => Err(Unprintable::LineBreak),
        Some(c) => Err(Unprintable::Char(c)),
        None => Ok(()),
    }
}

impl HostPort {
    /// A `HOST:PORT` (a `DnsBrowsers` name): its port is required.
    pub(crate) fn parse(authority: &str) -> Result<Self, EndpointError> {
        printable(authority, false).map_err(EndpointError::Unprintable)?;
        Self::parse_or(authority, None)
    }

    /// `HOST[:PORT]`, `[IPV6][:PORT]`; `default_port` when it names none.
    fn parse_or(authority: &str, default_port: Option<u16>) -> Result<Self, EndpointError> {
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or(EndpointError::Unclosed)?;
                if host.parse::<Ipv6Addr>().is_err() {
                    return Err(EndpointError::Host);
                }
                let port = match after {
                    "" => None,
                    after => Some(after.strip_prefix(':').ok_or(EndpointError::Host)?),
                };
                (host, port)
            }
            None => {
                let (host, port) =
                    authority.rsplit_once(':').map_or((authority, None), |(h, p)| (h, Some(p)));
                let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
                if host.is_empty() {
                    return Err(EndpointError::NoHost);
                }
                // An IPv6 address unbracketed (`::1:9222`) is refused here, not misread.
                if !host.bytes().all(name) {
                    return Err(EndpointError::Host);
                }
                (host, port)
            }
        };
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                // `+80` parses, but is not a port's text.
                Ok(port) if port > 0 && digits(p) => port,
                _ => return Err(EndpointError::Port((p.len() <= 20 && digits(p)).then(|| p.to_owned()))),
            },
            None => default_port.ok_or(EndpointError::NoPort)?,
        };
        Ok(Self { host: host.to_owned(), port })
    }

    /// The name or address, an IPv6 one without its brackets (as SNI and a resolver take it).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether the host is this machine: `localhost`, 127.0.0.0/8 or ::1 (what never crosses a
    /// link).
    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Endpoint {
    /// Parses an endpoint: `SCHEME://HOST[:PORT][/PATH][?QUERY][#FRAGMENT]`, the scheme `ws`,
    /// `wss`, `http` or `https` (any case), the port 80 or 443 by default; or, as a
    /// `DnsBrowsers` template only, no host (`https://`), or nothing at all (`""`, plain text).
    /// The one place an endpoint's text is read.
    pub(crate) fn parse(endpoint: &str) -> Result<Self, EndpointError> {
        if endpoint.is_empty() {
            return Ok(Self { tls: false, discover: true, at: None, path: "/".to_owned(), query: None });
        }
        printable(endpoint, false).map_err(EndpointError::Unprintable)?;
        let (name, rest) = endpoint.split_once("://").ok_or(EndpointError::NoScheme)?;
        let (tls, discover, default_port) = match name.to_ascii_lowercase().as_str() {
            "ws" => (false, false, 80),
            "wss" => (true, false, 443),
            "http" => (false, true, 80),
            "https" => (true, true, 443),
            _ => {
                let shown = !name.is_empty()
                    && name.len() <= 16
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
                return Err(EndpointError::Scheme(shown.then(|| name.to_owned())));
            }
        };
        // The fragment is the client's own: never sent.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(EndpointError::Credentials);
        }
        let at = match authority {
            "" => None,
            authority => Some(HostPort::parse_or(authority, Some(default_port))?),
        };
        Ok(Self {
            tls,
            discover,
            at,
            path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
            query: (!query.is_empty()).then(|| Secret::new(format!("?{query}"))),
        })
    }

    /// The host and port a browser's endpoint names; a template's (no host) is refused.
    pub(crate) fn browser(&self) -> Result<&HostPort, EndpointError> {
        self.at.as_ref().ok_or(EndpointError::EachAddress)
    }

    /// Whether it carries a query (browserless's `?token=`): taken as a credential.
    pub(crate) fn has_query(&self) -> bool {
        self.query.is_some()
    }

    /// The query with its `?`, or nothing: for the requests that carry it. Never log it.
    fn query(&self) -> &str {
        self.query.as_ref().map_or("", Secret::expose)
    }

    fn scheme(&self) -> &'static str {
        match (self.tls, self.discover) {
            (false, false) => "ws",
            (true, false) => "wss",
            (false, true) => "http",
            (true, true) => "https",
        }
    }

    /// Where a plain-text (`ws://`, `http://`) endpoint leaves this machine: the host (or
    /// `connect_to` address) it crosses a link to. `None` over TLS, or for loopback.
    pub(crate) fn plain_text_host(&self, connect_to: Option<SocketAddr>) -> Option<String> {
        if self.tls {
            return None;
        }
        match (connect_to, &self.at) {
            (Some(address), _) if address.ip().is_loopback() => None,
            (Some(address), _) => Some(address.to_string()),
            (None, Some(at)) if !at.is_loopback() => Some(at.host.clone()),
            (None, _) => None,
        }
    }

    /// The endpoint of the `DnsBrowsers` member at `address`, this endpoint its template, and
    /// the address to connect to in place of resolving it: over TLS (`wss://`, `https://`)
    /// `https://NAME` (on the certificate) connected to the address, else `http://ADDRESS`;
    /// each with this endpoint's query. Its host and path are not the members'.
    pub(crate) fn member(&self, name: &HostPort, address: SocketAddr) -> (Self, Option<SocketAddr>) {
        let (at, connect_to) = if self.tls {
            (name.clone(), Some(address))
        } else {
            (HostPort { host: address.ip().to_string(), port: address.port() }, None)
        };
        let endpoint = Self {
            tls: self.tls,
            discover: true,
            at: Some(at),
            path: "/".to_owned(),
            query: self.query.clone(),
        };
        (endpoint, connect_to)
    }
}

/// `SCHEME://HOST:PORT`: never the path nor the query.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{}://{at}", self.scheme()),
            None => write!(f, "{}://", self.scheme()),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("at", &format_args!("{self}"))
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// Whether a header may be sent: an HTTP token for its name, and a value with no control
/// character but a tab (a CR or LF would end the header and start another, or a second request).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err("the header's name is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)".into());
    }
    printable(value, true).map_err(|u| u.say("the header's value"))?;
    if value.trim() != value {
        return Err("the header's value starts or ends with white space (read from a file? trim it)".into());
    }
    Ok(())
}

/// The certificates in a PEM file (a private CA), for `RemoteBrowser::ca_file`.
pub(crate) fn load_ca(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", file.display()));
    }
    Ok(certs)
}

/// TLS as the endpoint's certificate is checked: the system's roots and `ca_file`'s.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    // A root the system ships that rustls cannot parse is skipped, as browsers do.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(file) = ca_file {
        for cert in load_ca(file)? {
            roots.add(cert).map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted root: the system has none and RemoteBrowser::ca_file is not set".into());
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP connection to `address`.
async fn tcp(address: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(address).await.map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Connects to `address`, over TLS for a `wss`/`https` `endpoint` (verified against its host).
#[cfg(test)]
async fn open(
    endpoint: &Endpoint,
    address: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Link, String> {
    let host = endpoint.browser().map_err(|e| e.to_string())?.host();
    secure(host, address, tcp(address).await?, tls).await
}

/// `tcp` to `address`, over TLS when `tls` is given (the certificate verified against `host`).
async fn secure(
    host: &str,
    address: SocketAddr,
    tcp: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Link, String> {
    let Some(config) = tls else { return Ok(Either::Left(tcp)) };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a name a certificate can be checked against"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("the TLS handshake with {host} ({address}) failed: {e}"))?;
    Ok(Either::Right(tls))
}

/// Connects to the remote browser's DevTools WebSocket: asked for its path first for an
/// `http(s)://` endpoint. The name is resolved at each connection, and the address connected to
/// is the `Host` of each request: Chromium refuses a `Host` that is a name (DNS rebinding), and
/// a name may stand for many browsers (a Kubernetes headless Service), this one being the
/// address connected. (A TLS front, the only way to `wss`, sees the name in SNI.)
pub(crate) async fn reach(remote: Reach<'_>) -> Result<Upstream, Unreached> {
    let silent = |why: String| Unreached { why, answered: false };
    let at = remote.endpoint.browser().map_err(|e| Unreached { why: e.to_string(), answered: true })?;
    let address = match remote.connect_to {
        Some(address) => address,
        None => tokio::net::lookup_host((at.host(), at.port))
            .await
            .map_err(|e| silent(format!("cannot resolve {}: {e}", at.host())))?
            .next()
            .ok_or_else(|| silent(format!("{} has no address", at.host())))?,
    };
    let first = tcp(address).await.map_err(silent)?;
    reach_at(remote, at.host(), address, first).await.map_err(|why| Unreached { why, answered: true })
}

/// Why a remote browser could not be reached, and whether its endpoint answered at all: one
/// that did not (nothing listens there, no route, no name) is asked again soon, a connection
/// attempt being cheap, so a host that comes back rejoins at once however long it was gone;
/// one that answered and failed (TLS, HTTP, the WebSocket handshake) is backed off.
#[derive(Debug)]
pub(crate) struct Unreached {
    pub(crate) why: String,
    pub(crate) answered: bool,
}

/// [`reach`] once `first`, a connection to `address` (`host`'s), is made.
async fn reach_at(
    remote: Reach<'_>,
    host: &str,
    address: SocketAddr,
    first: TcpStream,
) -> Result<Upstream, String> {
    let endpoint = remote.endpoint;
    let tls = endpoint.tls.then(|| tls_config(remote.ca_file)).transpose()?;
    // A token in the endpoint's query (browserless's `?token=`) goes with both requests.
    let (path, second) = if endpoint.discover {
        let link = secure(host, address, first, tls.as_ref()).await?;
        (ask_path(link, address, remote.header, endpoint.query()).await?, tcp(address).await?)
    } else {
        (format!("{}{}", endpoint.path, endpoint.query()), first)
    };
    let link = secure(host, address, second, tls.as_ref()).await?;
    // The URL's scheme only shapes the request line (its host, the address, is the `Host`): the
    // link is already TLS where it must be. Errors name neither the path nor its query.
    let mut client = tokio_websockets::ClientBuilder::new()
        .uri(&format!("ws://{address}{path}"))
        .map_err(|_| format!("{address}'s WebSocket path is not a valid URL path"))?
        .limits(unlimited());
    if let Some((name, value)) = remote.header {
        check_header(name, value)?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "the header's name is not a valid HTTP header name".to_owned())?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| "the header's value is not a valid HTTP header value".to_owned())?;
        client = client.add_header(name, value).map_err(|e| format!("the header: {e}"))?;
    }
    let (ws, _) = client
        .connect_on(link)
        .await
        .map_err(|e| format!("the DevTools WebSocket handshake with {address} failed: {e}"))?;
    Ok(Upstream::socket(ws, remote.lost_after))
}

/// Asks a DevTools HTTP endpoint for its browser's WebSocket path (`/json/version`): the URL it
/// gives names its own loopback address behind a relay or a port mapping, so only the path is
/// kept.
async fn ask_path(
    mut link: impl AsyncRead + AsyncWrite + Unpin,
    address: SocketAddr,
    header: Option<(&str, &str)>,
    query: &str,
) -> Result<String, String> {
    // validate() refused any header that would end the line; checked again where it is written.
    if let Some(Err(why)) = header.map(|(n, v)| check_header(n, v)) {
        return Err(why);
    }
    let extra = header.map(|(n, v)| format!("{n}: {v}\r\n")).unwrap_or_default();
    let ask =
        format!("GET /json/version{query} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n");
    link.write_all(ask.as_bytes()).await.map_err(|e| format!("cannot ask {address}: {e}"))?;
    // Chromium keeps the connection open whatever `Connection` says: read the head, then the
    // body's `Content-Length`.
    let mut reader = BufReader::new(link.take(1 << 20));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.map_err(|e| format!("no answer from {address}: {e}"))? == 0 {
            return Err(format!("{address} closed the connection mid-answer"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(format!("{address} answered /json/version with {status}"));
    }
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("{address}'s answer has no Content-Length"))?;
    let mut body = vec![0; length.min(1 << 16)];
    reader.read_exact(&mut body).await.map_err(|e| format!("{address}'s answer ended early: {e}"))?;
    let body = String::from_utf8_lossy(&body);
    let version: serde_json::Value = serde_json::from_str(body.trim())
        .map_err(|e| format!("{address}'s /json/version is not JSON: {e}"))?;
    let url = version["webSocketDebuggerUrl"]
        .as_str()
        .ok_or_else(|| format!("{address}'s /json/version has no webSocketDebuggerUrl"))?;
    let path = url.split_once("://").and_then(|(_, r)| r.find('/').map(|i| &r[i..])).unwrap_or("/");
    // The browser's URL carries no token of the proxy's: the endpoint's goes on.
    Ok(if path.contains('?') { path.to_owned() } else { format!("{path}{query}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// What an endpoint parses to: TLS, `/json/version` asked, host, port, path, query.
    type Parts = (bool, bool, Option<String>, Option<u16>, String, String);

    fn parts(endpoint: &str) -> Result<Parts, EndpointError> {
        Endpoint::parse(endpoint).map(|e| {
            let (host, port) = e.at.as_ref().map(|a| (a.host.clone(), a.port)).unzip();
            (e.tls, e.discover, host, port, e.path.clone(), e.query().to_owned())
        })
    }

    fn p(tls: bool, discover: bool, host: Option<&str>, port: Option<u16>, path: &str, query: &str) -> Parts {
        (tls, discover, host.map(str::to_owned), port, path.to_owned(), query.to_owned())
    }

    #[test]
    fn endpoints_are_parsed_with_their_defaults() {
        for (endpoint, parsed) in [
            // Each scheme, its port by default.
            (
                "ws://10.0.0.2:9222/devtools/browser/x",
                p(false, false, Some("10.0.0.2"), Some(9222), "/devtools/browser/x", ""),
            ),
            ("ws://h", p(false, false, Some("h"), Some(80), "/", "")),
            ("wss://h", p(true, false, Some("h"), Some(443), "/", "")),
            ("http://h:9223", p(false, true, Some("h"), Some(9223), "/", "")),
            ("http://h", p(false, true, Some("h"), Some(80), "/", "")),
            ("https://chromium.bots.svc", p(true, true, Some("chromium.bots.svc"), Some(443), "/", "")),
            ("WSS://H:1", p(true, false, Some("H"), Some(1), "/", "")),
            // IPv6 literals, bracketed; the brackets are not the host's (SNI, the resolver).
            ("ws://[::1]:9222", p(false, false, Some("::1"), Some(9222), "/", "")),
            ("https://[fd00::5]", p(true, true, Some("fd00::5"), Some(443), "/", "")),
            ("wss://[fd00::5]:3000/?token=s", p(true, false, Some("fd00::5"), Some(3000), "/", "?token=s")),
            // The path, the query (its own, not the path's), and no fragment.
            (
                "wss://h/chromium?token=s3cr3t#top",
                p(true, false, Some("h"), Some(443), "/chromium", "?token=s3cr3t"),
            ),
            ("ws://h?a/b", p(false, false, Some("h"), Some(80), "/", "?a/b")),
            ("ws://h:1/x?", p(false, false, Some("h"), Some(1), "/x", "")),
            ("ws://h/x#y?z", p(false, false, Some("h"), Some(80), "/x", "")),
            ("ws://h/a@b?u@v", p(false, false, Some("h"), Some(80), "/a@b", "?u@v")),
            // A DnsBrowsers template's forms: no host.
            ("", p(false, true, None, None, "/", "")),
            ("https://", p(true, true, None, None, "/", "")),
            ("wss://?token=t", p(true, false, None, None, "/", "?token=t")),
        ] {
            assert_eq!(parts(endpoint), Ok(parsed), "{endpoint}");
        }
        assert_eq!(Endpoint::parse("").unwrap().browser(), Err(EndpointError::EachAddress));
        let at = Endpoint::parse("ws://[::1]:9222/x").unwrap();
        assert_eq!((at.browser().unwrap().host(), at.browser().unwrap().port), ("::1", 9222));
        // A DnsBrowsers name: HOST:PORT, parsed as an endpoint's host and port are.
        assert_eq!(HostPort::parse("[fd00::5]:9223"), Ok(HostPort { host: "fd00::5".into(), port: 9223 }));
        assert_eq!(HostPort::parse("h.svc:1"), Ok(HostPort { host: "h.svc".into(), port: 1 }));
        for (bad, why) in [
            ("h", EndpointError::NoPort),
            (":1", EndpointError::NoHost),
            ("http://h:1", EndpointError::Host),
            ("h:1\n", EndpointError::Unprintable(Unprintable::LineBreak)),
        ] {
            assert_eq!(HostPort::parse(bad), Err(why), "{bad:?}");
        }
    }

    /// Bad input is named by what is wrong with it, never a panic, and the error shows none of
    /// the text that could be a secret (a password, a token, a scheme or port that is not one).
    #[test]
    fn a_bad_endpoint_is_named_and_its_secrets_never_shown() {
        use EndpointError::*;
        for (bad, why, says) in [
            ("h:9222", NoScheme, "no scheme (ws://, wss://, http:// or https://)"),
            ("//h:9222", NoScheme, "no scheme"),
            ("ftp://h", Scheme(Some("ftp".into())), "the scheme ftp:// is not ws://"),
            ("s3cr3t!://h", Scheme(None), "the scheme is not ws://"),
            ("://h", Scheme(None), "the scheme is not"),
            ("ws://bot:s3cr3t@h:1/x", Credentials, "credentials in the URL"),
            ("wss://s3cr3t@h", Credentials, "use RemoteBrowser::with_header"),
            ("ws://h:0/x", Port(Some("0".into())), "the port \"0\" is not a port"),
            ("ws://h:99999", Port(Some("99999".into())), "is not a port"),
            ("ws://h:", Port(Some(String::new())), "is not a port"),
            ("ws://h:+80", Port(None), "is not a port"),
            ("ws://h:s3cr3t/x", Port(None), "is not a port"),
            ("ws://:1/x", NoHost, "no host"),
            ("wss://[fd00::5:1", Unclosed, "unclosed"),
            ("ws://[::1]x", Host, "not a DNS name or an IP address"),
            ("ws://[s3cr3t]:1", Host, "an IPv6 address in brackets"),
            ("ws://[]:1", Host, "not a DNS name"),
            ("ws://::1:9222", Host, "not a DNS name"),
            ("ws://b\u{fc}cher.example", Host, "not a DNS name"),
            ("ws://h\\x/y", Host, "not a DNS name"),
            (
                "ws://h/x y",
                Unprintable(super::Unprintable::Char(' ')),
                "the endpoint holds the control or space character ' '",
            ),
            (
                "ws://h/?t=s3cr3t\n",
                Unprintable(super::Unprintable::LineBreak),
                "the endpoint ends with a line break",
            ),
            ("ws://h\r\nX: y/", Unprintable(super::Unprintable::Char('\r')), "'\\r'"),
        ] {
            let err = Endpoint::parse(bad).expect_err(bad);
            assert_eq!(err, why, "{bad:?}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(says), "{bad:?}: {shown}");
            assert!(!shown.contains("s3cr3t") && !shown.contains("bot"), "{bad:?}: {shown}");
        }
    }

    /// Every prefix and suffix of some endpoints (multi-byte characters, brackets, `@`, `?`
    /// and `#` included) parses or is refused, never panics, and shows no secret either way.
    #[test]
    fn any_text_parses_or_is_refused_without_a_panic() {
        let endpoints = [
            "wss://bot:s3cr3t@[fd00::5]:3000/chr\u{f6}mium?token=s3cr3t#fr\u{e4}g",
            "https://h\u{e9}st.example:65535/?s3cr3t=1&x=[::1]:9222",
            "http://[::ffff:10.0.0.2]:9222/json?token=s3cr3t@x",
        ];
        for endpoint in endpoints {
            let cuts = endpoint.char_indices().map(|(i, _)| i).chain([endpoint.len()]);
            for i in cuts {
                for text in [&endpoint[..i], &endpoint[i..]] {
                    let shown = match Endpoint::parse(text) {
                        Ok(e) => {
                            let _ = (e.plain_text_host(None), e.browser().map(ToString::to_string));
                            format!("{e} {e:?}")
                        }
                        Err(e) => format!("{e} {e:?}"),
                    };
                    assert!(!shown.contains("s3cr3t"), "{text:?}: {shown}");
                }
            }
        }
    }

    /// `Display` and `Debug` are the scheme, host and port: never the path, nor the query.
    #[test]
    fn an_endpoint_shows_neither_its_path_nor_its_query() {
        let e = Endpoint::parse("wss://h.example:3000/chromium/PATH-7f3a?token=QUERY-5c2a#FRAGMENT").unwrap();
        assert_eq!(e.to_string(), "wss://h.example:3000");
        let debug = format!("{e:?}");
        assert_eq!(debug, "Endpoint { at: wss://h.example:3000, query: Some([redacted]), .. }");
        assert_eq!(Endpoint::parse("http://[fd00::5]").unwrap().to_string(), "http://[fd00::5]:80");
        assert_eq!(Endpoint::parse("").unwrap().to_string(), "http://");
        assert_eq!(format!("{:?}", Secret::new("QUERY-5c2a".into())), "[redacted]");
    }

    /// Where plain text would cross a link: not over TLS, not to loopback (named or by address,
    /// or connected to), else the host or the address connected to.
    #[test]
    fn plain_text_leaves_the_machine_only_to_another_host() {
        let host = |e: &str, to: Option<&str>| {
            Endpoint::parse(e).unwrap().plain_text_host(to.map(|a| a.parse().unwrap()))
        };
        assert_eq!(host("ws://10.0.0.2:9222/x", None).as_deref(), Some("10.0.0.2"));
        assert_eq!(host("http://[fd00::5]:9222", None).as_deref(), Some("fd00::5"));
        assert_eq!(host("http://localhost:9222", Some("10.0.0.2:9222")).as_deref(), Some("10.0.0.2:9222"));
        for (e, to) in [
            ("wss://10.0.0.2/x", None),
            ("https://10.0.0.2", Some("10.0.0.2:9222")),
            ("ws://LOCALHOST:9222", None),
            ("http://127.0.0.2:9222", None),
            ("ws://[::1]:9222/x", None),
            ("http://browsers.example", Some("127.0.0.1:9222")),
        ] {
            assert_eq!(host(e, to), None, "{e} {to:?}");
        }
    }

    /// A DnsBrowsers template's member: over TLS the name at the address, else the address;
    /// the template's query kept, its host and path not.
    #[test]
    fn a_template_gives_each_member_its_tls_and_its_query() {
        let name = HostPort::parse("browsers.example:9443").unwrap();
        let address: SocketAddr = "[fd00::5]:9223".parse().unwrap();
        let member = |template: &str| {
            let (e, to) = Endpoint::parse(template).unwrap().member(&name, address);
            (e.to_string(), e.query().to_owned(), e.path.clone(), to)
        };
        let tls = |q: &str| {
            ("https://browsers.example:9443".to_owned(), q.to_owned(), "/".to_owned(), Some(address))
        };
        assert_eq!(member("wss://other/x?token=t#f"), tls("?token=t"));
        assert_eq!(member("https://"), tls(""));
        let plain = |q: &str| ("http://[fd00::5]:9223".to_owned(), q.to_owned(), "/".to_owned(), None);
        assert_eq!(member(""), plain(""));
        assert_eq!(member("ws://x/y?token=t"), plain("?token=t"));
    }

    #[test]
    fn a_private_ca_is_loaded_and_a_bad_file_named() {
        assert_eq!(load_ca(&fixture("remote-ca.crt")).map(|c| c.len()), Ok(1));
        let err = load_ca(&fixture("remote-browser.key")).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        let err = load_ca(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.contains("cannot read /nonexistent/ca.pem"), "{err}");
        assert!(tls_config(Some(&fixture("remote-ca.crt"))).is_ok());
    }

    /// Debian's bundle of the system's roots (the `ca-certificates` package).
    const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

    /// A TLS server on loopback with the fixture certificate (for 10.231.10.2 and
    /// `browser.test`), answering `/json/version` as Chromium does.
    async fn tls_server() -> SocketAddr {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        let certs = load_ca(&fixture("remote-browser.crt")).unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture("remote-browser.key")).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
                let mut buf = [0; 1024];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"webSocketDebuggerUrl": "ws://127.0.0.1:9222/devtools/browser/abc"}"#;
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        address
    }

    /// A stand-in DevTools endpoint on loopback: answers `/json/version`, then the WebSocket
    /// upgrade, and hands back the head of each request; then, as a browser, answers each
    /// message with `says` and the message's id.
    async fn stand_in(says: &'static str) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<String>>) {
        let (heads_tx, heads_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut heads = Vec::new();
            let mut socket = None;
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut reader = BufReader::new(tcp);
                let mut head = String::new();
                while !head.ends_with("\r\n\r\n") {
                    assert!(reader.read_line(&mut head).await.unwrap() > 0, "{head}");
                }
                let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).map(str::to_owned);
                let answer = match key {
                    None => {
                        let body = r#"{"webSocketDebuggerUrl": "ws://127.0.0.1:3000/devtools/browser/abc"}"#;
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    }
                    Some(key) => {
                        use base64::Engine;
                        let digest = ring::digest::digest(
                            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                            format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
                        );
                        let accept = base64::engine::general_purpose::STANDARD.encode(digest);
                        format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                        )
                    }
                };
                reader.get_mut().write_all(answer.as_bytes()).await.unwrap();
                heads.push(head);
                socket = Some(tokio_websockets::ServerBuilder::new().serve(reader.into_inner()));
            }
            let _ = heads_tx.send(heads);
            let Some(mut socket) = socket else { return };
            use futures::{SinkExt, StreamExt};
            while let Some(Ok(message)) = socket.next().await {
                let Some(text) = message.as_text() else { continue };
                let id = serde_json::from_str::<serde_json::Value>(text).unwrap()["id"].clone();
                let event = format!(
                    r#"{{"method":"Runtime.consoleAPICalled","params":{{"args":[{{"value":"{says}"}}]}}}}"#
                );
                let _ = socket.send(tokio_websockets::Message::text(event)).await;
                let _ = socket
                    .send(tokio_websockets::Message::text(format!(r#"{{"id":{id},"result":{{}}}}"#)))
                    .await;
            }
        });
        (address, heads_rx)
    }

    /// How the tests reach `endpoint`.
    fn to<'a>(
        endpoint: &'a Endpoint,
        header: Option<(&'a str, &'a str)>,
        connect_to: Option<SocketAddr>,
    ) -> Reach<'a> {
        Reach { endpoint, header, lost_after: Duration::from_secs(5), ca_file: None, connect_to }
    }

    /// What `reach` sends, as the endpoint sees it: the endpoint's query and the header go with
    /// both requests (`/json/version` and the WebSocket's), and the `Host` is the address.
    #[tokio::test]
    async fn the_query_and_the_header_go_with_both_requests() {
        let (address, heads) = stand_in("hello").await;
        let endpoint =
            Endpoint::parse(&format!("http://localhost:{}/?token=s3cr3t", address.port())).unwrap();
        let reached = reach(to(&endpoint, Some(("Authorization", "Bearer hunter2")), Some(address))).await;
        assert!(reached.is_ok(), "{:?}", reached.err());
        // Nothing listening: not answered, so asked again soon rather than backed off.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{}", free.port())).unwrap();
        let silent = reach(to(&endpoint, None, None)).await.expect_err("nothing listens");
        assert!(!silent.answered && silent.why.contains("cannot connect"), "{silent:?}");
        let heads = heads.await.unwrap();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(heads[0].starts_with("GET /json/version?token=s3cr3t HTTP/1.1\r\n"), "{}", heads[0]);
        assert!(heads[1].starts_with("GET /devtools/browser/abc?token=s3cr3t HTTP/1.1\r\n"), "{}", heads[1]);
        for head in &heads {
            assert!(
                head.contains("\r\nAuthorization: Bearer hunter2\r\n")
                    || head.contains("\r\nauthorization: Bearer hunter2\r\n"),
                "{head}"
            );
            assert!(head.contains(&format!("\r\nHost: {address}\r\n")), "{head}");
        }
    }

    /// A remote browser reached with a header and a query token, relayed to a driver, with the
    /// users' subscriber at TRACE: neither credential, nor what the page prints (the console
    /// event the relay drops), is in any log record, the dependencies' included. (With
    /// tungstenite on the remote link, its `Request:` record carried both, and its frame records
    /// the console text.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_credential_and_no_page_text_reaches_any_log() {
        use futures::StreamExt;
        let logs = crate::tests::logs();
        let (address, _heads) = stand_in("PAGESAYS-b7e1").await;
        let endpoint =
            Endpoint::parse(&format!("http://localhost:{}/?token=QUERY-5c2a", address.port())).unwrap();
        let upstream = reach(to(&endpoint, Some(("Authorization", "Bearer HEADER-91d4")), Some(address)))
            .await
            .expect("reached");
        let relay =
            crate::transport::relay(upstream, Duration::from_secs(5), Default::default()).await.unwrap();
        let (mut driver, _) = async_tungstenite::tokio::connect_async(relay.url()).await.unwrap();
        let ask = r#"{"id":1,"method":"Browser.getVersion"}"#;
        driver.send(async_tungstenite::tungstenite::Message::text(ask)).await.unwrap();
        let answer = driver.next().await.unwrap().unwrap().into_text().unwrap();
        assert_eq!(answer.as_str(), r#"{"id":1,"result":{}}"#, "the console event was dropped");
        drop((driver, relay));
        let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        // The driver's own WebSocket (tungstenite, as chromiumoxide's) logged: `log` records
        // are forwarded.
        assert!(logs.contains("tungstenite"), "no log record was captured:\n{logs}");
        for secret in ["QUERY-5c2a", "HEADER-91d4", "PAGESAYS-b7e1"] {
            let line = logs.lines().find(|l| l.contains(secret));
            assert!(line.is_none(), "{secret} reached a log: {line:?}");
        }
    }

    #[tokio::test]
    async fn a_token_in_the_query_goes_with_both_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let asked = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0; 1024];
            let n = tcp.read(&mut buf).await.unwrap();
            let body = r#"{"webSocketDebuggerUrl": "ws://127.0.0.1:3000/devtools/browser/abc"}"#;
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            tcp.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
        });
        let link = TcpStream::connect(address).await.unwrap();
        let path = ask_path(link, address, None, "?token=s3cr3t").await;
        assert_eq!(path, Ok("/devtools/browser/abc?token=s3cr3t".into()));
        assert_eq!(asked.await.unwrap(), "GET /json/version?token=s3cr3t HTTP/1.1");
    }

    #[tokio::test]
    async fn the_certificate_is_verified_against_the_name_asked() {
        let address = tls_server().await;
        let config = tls_config(Some(&fixture("remote-ca.crt"))).unwrap();
        let target = |host: &str| Endpoint::parse(&format!("https://{host}:{}", address.port())).unwrap();
        // The name on the certificate, trusted through the private CA: the path comes back.
        let link = open(&target("browser.test"), address, Some(&config)).await.expect("a verified link");
        assert_eq!(ask_path(link, address, None, "").await, Ok("/devtools/browser/abc".into()));
        // Another name: refused, though the CA is trusted.
        let err = open(&target("other.test"), address, Some(&config)).await.unwrap_err();
        assert!(err.contains("TLS handshake") && err.contains("not valid for name \"other.test\""), "{err}");
        // The system's roots alone do not know the private CA. Skipped, saying why, only on a
        // machine with no roots installed at all; where they are, they must load.
        match tls_config(None) {
            Ok(system) => {
                let err = open(&target("browser.test"), address, Some(&system)).await.unwrap_err();
                assert!(err.contains("UnknownIssuer"), "{err}");
            }
            Err(e) if !Path::new(SYSTEM_ROOTS).exists() => {
                eprintln!("skipped the system roots' half: this machine has none ({SYSTEM_ROOTS}): {e}");
            }
            Err(e) => panic!("the system's roots are installed ({SYSTEM_ROOTS}) but none loaded: {e}"),
        }
    }
}

#[cfg(test)]
mod edge_cases {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// a header that would end the line is refused by ask_path itself, before a byte is written.
    #[tokio::test]
    async fn s_askpath_refuses_a_line_break_before_writing() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let asked = tokio::time::timeout(
            Duration::from_secs(2),
            ask_path(client, address, Some(("X", "v\r\nX-Injected: yes")), ""),
        )
        .await
        .expect("refused at once, not sent and waited on");
        assert!(asked.unwrap_err().contains("control"));
        let mut sent = Vec::new();
        server.read_to_end(&mut sent).await.unwrap();
        assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    }

    /// reach_at checks the header itself (ws://, no discovery), before the upgrade.
    #[tokio::test]
    async fn s_reachat_refuses_a_padded_header() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let endpoint =
            Endpoint::parse(&format!("ws://127.0.0.1:{}/devtools/browser/x", address.port())).unwrap();
        let reached = tokio::time::timeout(
            Duration::from_secs(2),
            reach(Reach {
                endpoint: &endpoint,
                header: Some(("Authorization", "Bearer s3cr3t ")),
                lost_after: Duration::from_secs(5),
                ca_file: None,
                connect_to: None,
            }),
        )
        .await
        .expect("refused before the handshake");
        let err = reached.expect_err("refused");
        assert!(err.answered && err.why.contains("white space"), "{err:?}");
        drop(listener);
    }

    /// an endpoint that answers and fails is `answered` (backed off).
    #[tokio::test]
    async fn s_an_endpoint_that_answers_404_is_answered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            tcp.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{}", address.port())).unwrap();
        let err = reach(Reach {
            endpoint: &endpoint,
            header: None,
            lost_after: Duration::from_secs(5),
            ca_file: None,
            connect_to: None,
        })
        .await
        .expect_err("404");
        assert!(err.answered && err.why.contains("404"), "{err:?}");
    }
}
