//! Reaching a browser on another host: its DevTools endpoint (`ws://`, `wss://`, `http://`,
//! `https://`), its name resolved at each connection and the browser asked by address. `wss` and
//! `https` go over TLS (rustls, with the `ring` provider the token seal already builds), the
//! certificate verified against the endpoint's name (or IP address) and the system's roots plus
//! `RemoteBrowser::ca_file`; there is no way to skip the check.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    pub(crate) endpoint: &'a str,
    pub(crate) header: Option<(&'a str, &'a str)>,
    pub(crate) lost_after: Duration,
    pub(crate) ca_file: Option<&'a PathBuf>,
    pub(crate) connect_to: Option<SocketAddr>,
}

/// An endpoint, parsed.
#[derive(Debug, PartialEq)]
struct Target {
    tls: bool,
    /// `http(s)://`: the browser's WebSocket path is asked for (`/json/version`).
    discover: bool,
    host: String,
    port: u16,
    path: String,
}

/// A scheme: whether it is over TLS, and whether the browser's path is asked for.
fn scheme(scheme: &str) -> Result<(bool, bool, u16), String> {
    Ok(match scheme {
        "ws" => (false, false, 80),
        "wss" => (true, false, 443),
        "http" => (false, true, 80),
        "https" => (true, true, 443),
        _ => return Err(format!("the scheme {scheme}:// is not ws://, wss://, http:// or https://")),
    })
}

/// Refuses what would let a value end one line of a request and start another (CR, LF), or
/// garble it (any other control character, a space in a URL).
fn printable(what: &str, value: &str, space: bool) -> Result<(), String> {
    match value.chars().find(|c| (c.is_control() && *c != '\t') || (!space && c.is_whitespace())) {
        Some('\n' | '\r') if value.trim_end() != value => Err(format!(
            "{what} ends with a line break (read from a file? trim it): it would end the request's line"
        )),
        Some(c) => Err(format!(
            "{what} holds the control or space character {c:?}, which a request line cannot carry"
        )),
        None => Ok(()),
    }
}

fn parse(endpoint: &str) -> Result<Target, String> {
    printable("the endpoint", endpoint, false)?;
    let (scheme_name, rest) =
        endpoint.split_once("://").ok_or("no scheme (ws://, wss://, http:// or https://)")?;
    let (tls, discover, default_port) = scheme(scheme_name)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err("credentials in the URL are not supported: use RemoteBrowser::with_header".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => {
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("the port {p:?} is not a port"))?
        }
        None => default_port,
    };
    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    Ok(Target { tls, discover, host: host.to_owned(), port, path })
}

/// Whether `endpoint` is one this module can reach, and why not.
pub(crate) fn check(endpoint: &str) -> Result<(), String> {
    parse(endpoint).map(drop)
}

/// Whether a header may be sent: an HTTP token for its name, and a value with no control
/// character but a tab (a CR or LF would end the header and start another, or a second request).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err("the header's name is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)".into());
    }
    printable("the header's value", value, true)?;
    if value.trim() != value {
        return Err("the header's value starts or ends with white space (read from a file? trim it)".into());
    }
    Ok(())
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1 (what never crosses a link).
fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where a plain-text (`ws://`, `http://`) endpoint leaves this machine: the host (or
/// `connect_to` address) it crosses a link to. `None` over TLS, or for loopback.
pub(crate) fn plain_text_host(endpoint: &str, connect_to: Option<SocketAddr>) -> Option<String> {
    let target = parse(endpoint).ok()?;
    if target.tls {
        return None;
    }
    match connect_to {
        Some(address) if address.ip().is_loopback() => None,
        Some(address) => Some(address.to_string()),
        None if loopback(&target.host) => None,
        None => Some(target.host),
    }
}

/// Whether the endpoint carries a query (browserless's `?token=`): taken as a credential.
pub(crate) fn has_query(endpoint: &str) -> bool {
    parse(endpoint).is_ok_and(|t| t.path.contains('?'))
}

/// What a [`DnsBrowsers`](crate::DnsBrowsers) template's endpoint gives every member: TLS
/// (`wss://`, `https://`) or not (`ws://`, `http://`, or an empty endpoint), and its query
/// (with its `?`). Its host and path are each member's own.
pub(crate) fn template(endpoint: &str) -> Result<(bool, &str), String> {
    if endpoint.is_empty() {
        return Ok((false, ""));
    }
    printable("the endpoint", endpoint, false)?;
    let (name, rest) = endpoint.split_once("://").ok_or("no scheme (ws://, wss://, http:// or https://)")?;
    let (tls, _, _) = scheme(name)?;
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    Ok((tls, rest.find('?').map_or("", |i| &rest[i..])))
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

/// Connects to `address`, over TLS for `target.tls` (verified against `target.host`).
#[cfg(test)]
async fn open(target: &Target, address: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> Result<Link, String> {
    secure(target, address, tcp(address).await?, tls).await
}

/// `tcp` to `address`, over TLS for `target.tls` (verified against `target.host`).
async fn secure(
    target: &Target,
    address: SocketAddr,
    tcp: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Link, String> {
    let Some(config) = tls else { return Ok(Either::Left(tcp)) };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| format!("{:?} is not a name a certificate can be checked against", target.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("the TLS handshake with {} ({address}) failed: {e}", target.host))?;
    Ok(Either::Right(tls))
}

/// Connects to the remote browser's DevTools WebSocket: asked for its path first for an
/// `http(s)://` endpoint. The name is resolved at each connection, and the address connected to
/// is the `Host` of each request: Chromium refuses a `Host` that is a name (DNS rebinding), and
/// a name may stand for many browsers (a Kubernetes headless Service), this one being the
/// address connected. (A TLS front, the only way to `wss`, sees the name in SNI.)
pub(crate) async fn reach(remote: Reach<'_>) -> Result<Upstream, Unreached> {
    let silent = |why: String| Unreached { why, answered: false };
    let target = parse(remote.endpoint).map_err(|why| Unreached { why, answered: true })?;
    let address = match remote.connect_to {
        Some(address) => address,
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| silent(format!("cannot resolve {}: {e}", target.host)))?
            .next()
            .ok_or_else(|| silent(format!("{} has no address", target.host)))?,
    };
    let first = tcp(address).await.map_err(silent)?;
    reach_at(remote, &target, address, first).await.map_err(|why| Unreached { why, answered: true })
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

/// [`reach`] once `first`, a connection to `address`, is made.
async fn reach_at(
    remote: Reach<'_>,
    target: &Target,
    address: SocketAddr,
    first: TcpStream,
) -> Result<Upstream, String> {
    let tls = target.tls.then(|| tls_config(remote.ca_file)).transpose()?;
    let (path, second) = if target.discover {
        // A token in the endpoint's query (browserless's `?token=`) goes with both requests.
        let query = target.path.find('?').map_or("", |i| &target.path[i..]);
        let link = secure(target, address, first, tls.as_ref()).await?;
        (ask_path(link, address, remote.header, query).await?, tcp(address).await?)
    } else {
        (target.path.clone(), first)
    };
    let link = secure(target, address, second, tls.as_ref()).await?;
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

    #[test]
    fn endpoints_are_parsed_with_their_defaults() {
        let t = |tls, discover, host: &str, port, path: &str| Target {
            tls,
            discover,
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            parse("ws://10.0.0.2:9222/devtools/browser/x"),
            Ok(t(false, false, "10.0.0.2", 9222, "/devtools/browser/x"))
        );
        assert_eq!(parse("https://chromium.bots.svc"), Ok(t(true, true, "chromium.bots.svc", 443, "/")));
        assert_eq!(parse("wss://[fd00::5]:3000/?token=s"), Ok(t(true, false, "fd00::5", 3000, "/?token=s")));
        assert_eq!(parse("http://h:9223"), Ok(t(false, true, "h", 9223, "/")));
        for (bad, says) in [
            ("h:9222", "no scheme"),
            ("ftp://h", "is not ws://"),
            ("ws://user:pw@h:1/x", "credentials in the URL"),
            ("ws://h:0/x", "is not a port"),
            ("ws://h:99999", "is not a port"),
            ("ws://:1/x", "no host"),
            ("wss://[fd00::5:1", "unclosed"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
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
        endpoint: &'a str,
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
        let endpoint = format!("http://localhost:{}/?token=s3cr3t", address.port());
        let reached = reach(to(&endpoint, Some(("Authorization", "Bearer hunter2")), Some(address))).await;
        assert!(reached.is_ok(), "{:?}", reached.err());
        // Nothing listening: not answered, so asked again soon rather than backed off.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let endpoint = format!("http://127.0.0.1:{}", free.port());
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
        let endpoint = format!("http://localhost:{}/?token=QUERY-5c2a", address.port());
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
        let target = |host: &str| parse(&format!("https://{host}:{}", address.port())).unwrap();
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
        let endpoint = format!("ws://127.0.0.1:{}/devtools/browser/x", address.port());
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
        let endpoint = format!("http://127.0.0.1:{}", address.port());
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
