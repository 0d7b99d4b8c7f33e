//! The DevTools transport: Chromium speaks the protocol over a pipe (`--remote-debugging-pipe`,
//! its fds 3 and 4), never over a socket of its own, so no other local user can find and drive
//! it. The driver (`chromiumoxide` 0.9, which speaks WebSocket only; upstream
//! mattsse/chromiumoxide#325) reaches the pipe through a relay: a loopback WebSocket on an
//! unguessable path that accepts exactly one connection and then stops listening, with no
//! discovery endpoints (`/json/version`, `/json/list`).
//!
//! The relay also decides what the driver sees, because the driver traces every message it
//! receives at TRACE (and an unparsable one at DEBUG):
//! - `Network.enable` and `Log.enable` (which the driver sends for every page) are answered here
//!   and never reach Chromium: those domains' events carry request headers (`Authorization`,
//!   `X-Skypetoken`), URLs and console text, and the service reads none of them;
//! - `Fetch.enable` reaches Chromium only for the page's own origin ([`ORIGIN`], which the
//!   service serves while a page loads): the SDK's requests are never paused, so never seen;
//! - events pass only from the domains the driver needs to track targets, frames and execution
//!   contexts, and `Fetch.requestPaused` for [`ORIGIN`]; everything else (console, exceptions,
//!   network, other requests, ...) is dropped here;
//! - target events (`Target.targetCreated`, `targetInfoChanged`, `attachedToTarget`) pass only for
//!   the service's own browser context, which the relay learns from the answer to the driver's
//!   `Target.createBrowserContext` (none before it): the driver, which attaches to every target
//!   it hears of, never attaches to another service's pages in a browser they share;
//! - `Security.setIgnoreCertificateErrors` is refused: certificates are always verified (the
//!   test rig's exception is a Chromium flag, visible on its command line);
//! - no command reaches Chromium wrapped in another, where the relay could not read it:
//!   `Target.sendMessageToTarget`, an attach or auto-attach that is not flattened (its session's
//!   messages would travel wrapped), and `Target.exposeDevToolsProtocol` (a page that speaks
//!   the protocol itself) are refused, and `Target.receivedMessageFromTarget` never passes.
//!
//! Both of the relay's WebSockets (the driver's, a remote browser's) are tokio-websockets, which
//! logs nothing: no request head, header or frame of theirs reaches any log. The driver's
//! handshake is bounded ([`HANDSHAKE_WITHIN`]) and each connection's runs on its own, so a client
//! that connects and says nothing holds up no one. A connection from another user's socket is
//! closed before a byte of it is read (`/proc/net/tcp` names each loopback socket's owner): the
//! path is not the only thing between another local user and the browser, which matters because
//! the driver's own WebSocket crate logs its request line, path and all, at TRACE.
//!
//! Over 500 lines: the relay is one state machine of two WebSockets; about 440 lines are its tests.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use futures::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_websockets::{Limits, Message, ServerBuilder, WebSocketStream};

/// The page's origin (served through the `Fetch` domain by the service itself). `.invalid` never
/// resolves, so no server anywhere can answer for it.
pub(crate) const ORIGIN: &str = "https://callagent-websdk.invalid";

/// The page's files as `Fetch.fulfillRequest` takes a body (base64), by path: the relay puts
/// them into the driver's `Fetch.fulfillRequest`s, which carry a [`body_marker`] instead. So the
/// page's 13 MB bundle never passes through the driver, which logs every message it sends at
/// TRACE (its own record, and its WebSocket crate's hex of each frame), and is not encoded as
/// JSON and masked on the way for each browser.
pub(crate) type Bodies = std::sync::Arc<std::collections::HashMap<String, String>>;

/// What the driver sends as the body of the file at `path` (not base64, so never a real body).
pub(crate) fn body_marker(path: &str) -> String {
    format!("{MARKER}{path}")
}

const MARKER: &str = "callagent-websdk-body:";

/// The relay's WebSocket URL, for the driver alone. Its path is the only secret that lets a
/// client in, so `Debug` does not show it.
pub(crate) struct Endpoint {
    url: String,
    task: JoinHandle<()>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

impl Endpoint {
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The browser's side of the relay: a local Chromium's pipe, or a remote browser's DevTools
/// WebSocket.
pub(crate) struct Upstream {
    tx: Tx,
    rx: Rx,
    /// For a link that can drop silently (a remote browser's): how long it may stay silent, the
    /// relay probing it, before the browser is taken as lost.
    lost_after: Option<Duration>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// A remote browser's DevTools WebSocket.
pub(crate) type RemoteSocket = WebSocketStream<Link>;

enum Tx {
    Pipe(Box<dyn AsyncWrite + Unpin + Send>),
    Socket(SplitSink<RemoteSocket, Message>),
}

enum Rx {
    Pipe(BufReader<Box<dyn AsyncRead + Unpin + Send>>),
    Socket(SplitStream<RemoteSocket>),
}

impl Upstream {
    /// A local Chromium's pipe: `to_browser` is its fd 3, `from_browser` its fd 4.
    pub(crate) fn pipe(
        to_browser: impl AsyncWrite + Unpin + Send + 'static,
        from_browser: impl AsyncRead + Unpin + Send + 'static,
    ) -> Self {
        let from: Box<dyn AsyncRead + Unpin + Send> = Box::new(from_browser);
        let rx = Rx::Pipe(BufReader::with_capacity(64 * 1024, from));
        Self { tx: Tx::Pipe(Box::new(to_browser)), rx, lost_after: None }
    }

    /// A remote browser's DevTools WebSocket, which may go silent after `lost_after`.
    pub(crate) fn socket(socket: RemoteSocket, lost_after: Duration) -> Self {
        let (tx, rx) = socket.split();
        Self { tx: Tx::Socket(tx), rx: Rx::Socket(rx), lost_after: Some(lost_after) }
    }
}

/// The link to a remote browser: plain TCP (`ws`, `http`) or TLS over it (`wss`, `https`).
pub(crate) type Link =
    tokio_util::either::Either<tokio::net::TcpStream, tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl Tx {
    async fn send(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Self::Pipe(pipe) => {
                pipe.write_all(text.as_bytes()).await?;
                pipe.write_all(b"\0").await?;
            }
            Self::Socket(socket) => socket.send(Message::text(text.to_owned())).await?,
        }
        Ok(())
    }
}

impl Rx {
    /// The next message into `buf` (which keeps a partial one across a cancelled call); `false`
    /// once the browser's side has ended.
    async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Self::Pipe(pipe) => {
                // Chromium closes its end when it exits.
                if pipe.read_until(0, buf).await? == 0 || buf.last() != Some(&0) {
                    return Ok(false);
                }
                buf.pop();
                Ok(true)
            }
            Self::Socket(socket) => loop {
                match socket.next().await {
                    Some(Ok(message)) => match message.as_text() {
                        Some(text) => {
                            buf.extend_from_slice(text.as_bytes());
                            return Ok(true);
                        }
                        None if message.is_close() => return Ok(false),
                        None => {} // pings are answered by the socket itself
                    },
                    None => return Ok(false),
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }
}

/// No size limit on a message: the page's bundle crosses in one.
pub(crate) fn unlimited() -> Limits {
    Limits::unlimited()
}

/// Relays between the driver and a browser (`upstream`). The listener waits `within` for the
/// driver, then closes. The relay ends when either side does.
pub(crate) async fn relay(upstream: Upstream, within: Duration, bodies: Bodies) -> std::io::Result<Endpoint> {
    relay_bounded(upstream, within, HANDSHAKE_WITHIN, bodies).await
}

/// [`relay`] with each connection's handshake bounded by `handshake_within`.
async fn relay_bounded(
    upstream: Upstream,
    within: Duration,
    handshake_within: Duration,
    bodies: Bodies,
) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let path = format!("/devtools/browser/{}", random_hex(32));
    let url = format!("ws://127.0.0.1:{port}{path}");
    let task = tokio::spawn(async move {
        let Ok(Some(ws)) = tokio::time::timeout(within, accept_one(&listener, &path, handshake_within)).await
        else {
            tracing::debug!("the driver did not connect to the DevTools relay");
            return;
        };
        drop(listener);
        if let Err(e) = pump(ws, upstream, &bodies).await {
            tracing::debug!(error = %e, "the DevTools relay ended");
        }
    });
    Ok(Endpoint { url, task })
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

type Ws = WebSocketStream<TcpStream>;

/// How long a client that connected to the relay may take to ask for its WebSocket.
pub(crate) const HANDSHAKE_WITHIN: Duration = Duration::from_secs(2);
/// Handshakes under way at once; connections past them are closed at once.
const HANDSHAKES: usize = 16;

/// Accepts the first client that asks for `path`; others get 404 and are closed. Each
/// connection's handshake runs beside the others', bounded by [`HANDSHAKE_WITHIN`], so one that
/// connects first and says nothing does not keep the driver out.
async fn accept_one(listener: &TcpListener, path: &str, handshake_within: Duration) -> Option<Ws> {
    let mut handshakes = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.ok()?;
                if handshakes.len() < HANDSHAKES {
                    handshakes.push(tokio::time::timeout(handshake_within, handshake(stream, path)));
                }
            }
            Some(done) = handshakes.next(), if !handshakes.is_empty() => {
                if let Ok(Ok(ws)) = done {
                    return Some(ws);
                }
            }
        }
    }
}

/// The WebSocket handshake's server side (RFC 6455, section 4.2), written here so that the path
/// is checked before anything is upgraded and nothing of the request is logged.
async fn handshake(stream: TcpStream, path: &str) -> std::io::Result<Ws> {
    const MAX_HEAD: u64 = 8 * 1024;
    let refused = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    if !same_user(stream.peer_addr()?, stream.local_addr()?) {
        return Err(refused("another user's connection"));
    }
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while !(head.ends_with("\r\n\r\n") || head.ends_with("\n\n")) {
        let room = MAX_HEAD.saturating_sub(head.len() as u64);
        if room == 0 || (&mut reader).take(room).read_line(&mut head).await? == 0 {
            return Err(refused("the request's head ended early or is too long"));
        }
    }
    let mut lines = head.lines();
    let asked = lines.next().and_then(|line| line.strip_prefix("GET ")?.strip_suffix(" HTTP/1.1"));
    let key = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, key)| key.trim());
    let (Some(asked), Some(key)) = (asked, key) else {
        reader.get_mut().write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await?;
        return Err(refused("not a WebSocket request"));
    };
    if asked != path {
        reader.get_mut().write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await?;
        return Err(refused("another path"));
    }
    // A client sends nothing more before it is answered.
    if !reader.buffer().is_empty() {
        return Err(refused("data before the handshake's answer"));
    }
    let mut stream = reader.into_inner();
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest);
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(answer.as_bytes()).await?;
    Ok(ServerBuilder::new().limits(unlimited()).serve(stream))
}

/// Whether the client at `peer`, connected to the relay at `relay`, is a socket of this
/// process's user: `/proc/net/tcp` lists both ends of a loopback connection, each with its
/// owner's uid (the socket's credentials, as `SO_PEERCRED` gives them for a Unix socket). A
/// connection it cannot find there is another user's. On a system with no such table (some
/// sandboxed kernels) the path alone is the gate, as it was before this check, and the service
/// says so once.
fn same_user(peer: SocketAddr, relay: SocketAddr) -> bool {
    use std::os::unix::fs::MetadataExt;
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let (Ok(me), Ok(table)) =
        (std::fs::metadata("/proc/self").map(|m| m.uid()), std::fs::read_to_string("/proc/net/tcp"))
    else {
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "no /proc/net/tcp: the DevTools relay cannot tell another local user's connection from \
                 the driver's; its unguessable path is the only gate"
            );
        }
        return true;
    };
    table.lines().skip(1).find_map(|line| owner(line, peer, relay)) == Some(me)
}

/// The owner's uid of `/proc/net/tcp`'s `line`, if it is the socket at `local` connected to
/// `remote` (IPv4: the address as the kernel's little-endian hex, the port big-endian).
fn owner(line: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let hex = |address: SocketAddr| match address {
        SocketAddr::V4(v4) => Some(format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port())),
        SocketAddr::V6(_) => None,
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (&ours, &theirs, &uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
    (ours == hex(local)? && theirs == hex(remote)?).then(|| uid.parse().ok()).flatten()
}

/// How often the relay asks a remote browser to answer while watching its link.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The ids of the relay's own probes (the driver counts its own up from 0): their answers are the
/// relay's, never passed on.
const PROBE_IDS: u64 = 1 << 50;

async fn pump(
    ws: Ws,
    upstream: Upstream,
    bodies: &Bodies,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut to_driver, mut from_driver) = ws.split();
    let Upstream { tx: mut to_browser, rx: mut from_browser, lost_after } = upstream;
    // Kept across iterations: a pipe's read leaves what it read so far here when the other
    // branch wins the select.
    let mut buf = Vec::new();
    // A link that drops sends nothing, not even a reset: the relay probes the browser and ends
    // when it has heard nothing for `lost_after` (the driver, and so the service, see the end).
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut heard, mut probes) = (tokio::time::Instant::now(), PROBE_IDS);
    let mut scope = Scope::default();
    loop {
        tokio::select! {
            // What has arrived is read before the link is judged silent.
            biased;
            received = from_browser.recv(&mut buf) => {
                if !received? {
                    return Ok(()); // the browser's side ended: it exited, or its link closed
                }
                heard = tokio::time::Instant::now();
                if scope.passes(&buf) {
                    let text = String::from_utf8(std::mem::take(&mut buf))?;
                    to_driver.send(Message::text(text)).await?;
                } else {
                    buf.clear();
                }
            }
            message = from_driver.next() => match message {
                Some(Ok(message)) => match message.as_text().map(command) {
                    Some(Verdict::Pass) => to_browser.send(message.as_text().unwrap_or_default()).await?,
                    Some(Verdict::Context(id)) => {
                        scope.asked = Some(id);
                        to_browser.send(message.as_text().unwrap_or_default()).await?;
                    }
                    Some(Verdict::Fill) => to_browser.send(&fill(message.as_text().unwrap_or_default(), bodies)).await?,
                    Some(Verdict::Answer(answer)) => to_driver.send(Message::text(answer)).await?,
                    Some(Verdict::Drop) => {}
                    None if message.is_close() => return Ok(()),
                    None => {}
                },
                None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
            },
            _ = probe.tick(), if lost_after.is_some() => {
                let silent = heard.elapsed();
                if lost_after.is_some_and(|lost| silent >= lost) {
                    return Err(format!("the link went silent for {} ms", silent.as_millis()).into());
                }
                probes += 1;
                to_browser.send(&format!(r#"{{"id":{probes},"method":"Browser.getVersion"}}"#)).await?;
            }
        }
    }
}

/// The parts of a DevTools message the relay looks at.
#[derive(Deserialize)]
struct Head<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    params: Option<Params>,
    /// An answer's (`Target.createBrowserContext`'s names the context).
    result: Option<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "browserContextId")]
    browser_context_id: Option<String>,
}

#[derive(Deserialize)]
struct Params {
    ignore: Option<bool>,
    /// `Target.attachToTarget`'s and `Target.setAutoAttach`'s.
    flatten: Option<bool>,
    /// `Fetch.enable`'s.
    patterns: Option<Vec<Pattern>>,
    #[serde(rename = "handleAuthRequests")]
    handle_auth_requests: Option<bool>,
    /// `Fetch.requestPaused`'s (any shape: other messages' `request` must not fail the parse).
    request: Option<serde_json::Value>,
    /// Target events' (any shape, for the same reason).
    #[serde(rename = "targetInfo")]
    target_info: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Pattern {
    #[serde(rename = "urlPattern")]
    url_pattern: Option<String>,
}

/// Whether `url` (or a `Fetch` URL pattern) is on the page's own origin.
fn ours(url: &str) -> bool {
    url.strip_prefix(ORIGIN).is_some_and(|rest| rest.starts_with('/'))
}

/// What the relay does with a message from the driver.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    /// Sent on with the body its [`body_marker`] names ([`fill`]).
    Fill,
    /// Sent on; its answer, with this id, names the service's browser context ([`Scope`]).
    Context(u64),
    /// Answered here, never sent to Chromium.
    Answer(String),
    Drop,
}

/// Domains whose events carry what pages send and print (headers, URLs, bodies, console text):
/// never enabled in Chromium, their `enable` answered here.
const NEVER_ENABLED: &[&str] = &["Network.enable", "Log.enable", "Console.enable"];

fn command(text: &str) -> Verdict {
    let Ok(head) = serde_json::from_str::<Head<'_>>(text) else {
        return Verdict::Drop; // the driver sends only JSON; nothing else reaches Chromium
    };
    let (Some(id), Some(method)) = (head.id, head.method.as_deref()) else {
        return Verdict::Drop;
    };
    let session = head.session_id.as_deref();
    if NEVER_ENABLED.contains(&method) {
        return Verdict::Answer(answer(id, session, Ok(())));
    }
    if method == "Fetch.enable" {
        // Only the page's own origin, and no credentials: otherwise answered here, never enabled.
        let params = head.params;
        let ours_only = params.as_ref().is_some_and(|p| {
            p.handle_auth_requests != Some(true)
                && p.patterns.as_ref().is_some_and(|patterns| {
                    !patterns.is_empty()
                        && patterns.iter().all(|p| p.url_pattern.as_deref().is_some_and(ours))
                })
        });
        return if ours_only { Verdict::Pass } else { Verdict::Answer(answer(id, session, Ok(()))) };
    }
    if method == "Fetch.fulfillRequest" {
        return Verdict::Fill;
    }
    if method == "Target.createBrowserContext" && session.is_none() {
        return Verdict::Context(id);
    }
    if let Some(why) = wrapped(method, head.params.as_ref()) {
        tracing::warn!(method, "refused a DevTools command the relay could not inspect");
        return Verdict::Answer(answer(id, session, Err(why)));
    }
    if method == "Security.setIgnoreCertificateErrors" && head.params.and_then(|p| p.ignore) != Some(false) {
        tracing::warn!("refused a request to ignore certificate errors: certificates are always verified");
        return Verdict::Answer(answer(
            id,
            session,
            Err("refused by callagent-websdk: certificates are always verified"),
        ));
    }
    Verdict::Pass
}

/// Why `method` would carry commands or events the relay cannot read, if it would: every
/// session's messages must travel flat, where [`command`] and [`passes`] see them.
fn wrapped(method: &str, params: Option<&Params>) -> Option<&'static str> {
    let flat = params.and_then(|p| p.flatten) == Some(true);
    match method {
        "Target.sendMessageToTarget" => {
            Some("refused by callagent-websdk: send commands flat, with a sessionId")
        }
        "Target.attachToTarget" | "Target.setAutoAttach" if !flat => {
            Some("refused by callagent-websdk: attach with flatten: true")
        }
        "Target.exposeDevToolsProtocol" => Some("refused by callagent-websdk: pages do not speak DevTools"),
        _ => None,
    }
}

/// `text` (a `Fetch.fulfillRequest`) with its [`body_marker`] replaced by the body it names; as
/// it is when it names none (Chromium then refuses a body that is not base64).
fn fill<'a>(text: &'a str, bodies: &Bodies) -> Cow<'a, str> {
    let at = format!("\"body\":\"{MARKER}");
    let Some(start) = text.find(&at) else { return Cow::Borrowed(text) };
    let path_at = start + at.len();
    let Some(length) = text[path_at..].find('"') else { return Cow::Borrowed(text) };
    let Some(body) = bodies.get(&text[path_at..path_at + length]) else { return Cow::Borrowed(text) };
    let rest = &text[path_at + length..];
    let mut filled = String::with_capacity(text.len() + body.len());
    filled.push_str(&text[..start]);
    filled.push_str("\"body\":\"");
    filled.push_str(body);
    filled.push_str(rest);
    Cow::Owned(filled)
}

fn answer(id: u64, session: Option<&str>, outcome: Result<(), &str>) -> String {
    let mut reply = match outcome {
        Ok(()) => serde_json::json!({"id": id, "result": {}}),
        Err(message) => serde_json::json!({"id": id, "error": {"code": -32000, "message": message}}),
    };
    if let Some(session) = session {
        reply["sessionId"] = session.into();
    }
    reply.to_string()
}

/// The service's own browser context, as the relay learns it: the answer to the driver's
/// `Target.createBrowserContext`. Chromium tells a connection of every target in the browser,
/// and the driver attaches to each one it hears of; in a browser several services share, that
/// would be the others' pages too.
#[derive(Debug, Default)]
struct Scope {
    /// The id of the driver's `Target.createBrowserContext`, until it is answered.
    asked: Option<u64>,
    /// The context, once answered.
    context: Option<String>,
}

impl Scope {
    /// Whether a message from Chromium may reach the driver: every answer to a command of the
    /// driver's (the page's answers carry no token; the relay's probes' answers stay here),
    /// events only from the domains the driver needs, and target events only of targets in the
    /// service's own context (or in none).
    fn passes(&mut self, message: &[u8]) -> bool {
        let Ok(head) = serde_json::from_slice::<Head<'_>>(message) else {
            return false;
        };
        if let Some(id) = head.id {
            if self.asked == Some(id) {
                self.asked = None;
                self.context = head.result.and_then(|r| r.browser_context_id);
            }
            return id < PROBE_IDS; // the relay's own probes are answered to the relay alone
        }
        match head.method.as_deref() {
            Some("Fetch.requestPaused") => {
                let request = head.params.and_then(|p| p.request);
                request.as_ref().and_then(|r| r["url"].as_str()).is_some_and(ours)
            }
            Some("Target.targetCreated" | "Target.targetInfoChanged" | "Target.attachedToTarget") => {
                let info = head.params.and_then(|p| p.target_info);
                match info.as_ref().map(|i| &i["browserContextId"]) {
                    Some(serde_json::Value::String(context)) => {
                        self.context.as_deref() == Some(context.as_str())
                    }
                    _ => true,
                }
            }
            Some(method) => event_passes(method),
            None => false,
        }
    }
}

/// [`Scope::passes`] for a relay that has learned no context (the tests' shorthand).
#[cfg(test)]
fn passes(message: &[u8]) -> bool {
    Scope::default().passes(message)
}

fn event_passes(method: &str) -> bool {
    let (domain, name) = method.split_once('.').unwrap_or((method, ""));
    match domain {
        // Not `receivedMessageFromTarget`: a wrapped message, unread by `passes`.
        "Target" => name != "receivedMessageFromTarget",
        "Inspector" => true,
        // Frames and their lifecycle; not dialogs, downloads or file choosers, which carry page text.
        "Page" => {
            name.starts_with("frame")
                || name.starts_with("lifecycle")
                || name.ends_with("EventFired")
                || name == "navigatedWithinDocument"
        }
        // Execution contexts; not console calls, exceptions or bindings.
        "Runtime" => name.starts_with("executionContext"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::tungstenite::Message as DriverMessage;
    use tokio::io::duplex;

    #[test]
    fn domains_that_carry_what_pages_send_are_answered_here() {
        let answered = command(r#"{"id":7,"method":"Network.enable","sessionId":"S1","params":{}}"#);
        let Verdict::Answer(reply) = answered else { panic!("forwarded: {answered:?}") };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&reply).unwrap(),
            serde_json::json!({"id": 7, "result": {}, "sessionId": "S1"})
        );
        assert!(matches!(command(r#"{"id":8,"method":"Log.enable","params":{}}"#), Verdict::Answer(_)));
        assert_eq!(
            command(r#"{"id":9,"method":"Runtime.evaluate","params":{"expression":"1"}}"#),
            Verdict::Pass
        );
        assert_eq!(command("not json"), Verdict::Drop);
    }

    #[test]
    fn fetch_is_enabled_for_the_pages_own_origin_only() {
        let enable =
            |params: &str| command(&format!(r#"{{"id":5,"method":"Fetch.enable","params":{params}}}"#));
        let ours = format!(r#"{{"patterns":[{{"urlPattern":"{ORIGIN}/*","requestStage":"Request"}}]}}"#);
        assert_eq!(enable(&ours), Verdict::Pass);
        for refused in [
            "{}".to_owned(),
            r#"{"patterns":[]}"#.to_owned(),
            r#"{"patterns":[{"urlPattern":"*"}]}"#.to_owned(),
            format!(r#"{{"patterns":[{{"urlPattern":"{ORIGIN}/*"}},{{"urlPattern":"https://*"}}]}}"#),
            format!(r#"{{"patterns":[{{"urlPattern":"{ORIGIN}.evil.example/*"}}]}}"#),
            format!(r#"{{"patterns":[{{"urlPattern":"{ORIGIN}/*"}}],"handleAuthRequests":true}}"#),
        ] {
            assert!(matches!(enable(&refused), Verdict::Answer(_)), "{refused}");
        }
        let paused = |url: &str| {
            passes(
                format!(r#"{{"method":"Fetch.requestPaused","params":{{"request":{{"url":"{url}"}}}}}}"#)
                    .as_bytes(),
            )
        };
        assert!(paused(&format!("{ORIGIN}/bundle.js")));
        assert!(!paused("https://global.gateway.example/token"));
        assert!(!paused(&format!("{ORIGIN}.evil.example/")));
    }

    /// The driver hears of targets in the service's own context only: not of another service's
    /// pages in a browser they share, before the context is made or after.
    #[test]
    fn only_the_services_own_targets_reach_the_driver() {
        let event = |method: &str, context: &str| {
            format!(
                r#"{{"method":"{method}","params":{{"targetInfo":{{"targetId":"T","type":"page","browserContextId":"{context}"}}}}}}"#
            )
        };
        let mut scope = Scope::default();
        assert!(!scope.passes(event("Target.targetCreated", "THEIRS").as_bytes()), "before ours is made");
        let asked =
            command(r#"{"id":4,"method":"Target.createBrowserContext","params":{"disposeOnDetach":true}}"#);
        assert_eq!(asked, Verdict::Context(4));
        scope.asked = Some(4);
        assert!(
            scope.passes(br#"{"id":4,"result":{"browserContextId":"OURS"}}"#),
            "the answer reaches the driver"
        );
        for method in ["Target.targetCreated", "Target.targetInfoChanged", "Target.attachedToTarget"] {
            assert!(scope.passes(event(method, "OURS").as_bytes()), "{method} of ours");
            assert!(!scope.passes(event(method, "THEIRS").as_bytes()), "{method} of another context");
        }
        // Another answer does not change it; a target in no context (the browser) passes.
        assert!(scope.passes(br#"{"id":5,"result":{"browserContextId":"THEIRS"}}"#));
        assert!(scope.passes(event("Target.targetCreated", "OURS").as_bytes()));
        assert!(scope.passes(
            br#"{"method":"Target.targetCreated","params":{"targetInfo":{"targetId":"B","type":"browser"}}}"#
        ));
        // Destroyed and detached carry no context: harmless for a target the driver never knew.
        assert!(scope.passes(br#"{"method":"Target.targetDestroyed","params":{"targetId":"T"}}"#));
    }

    #[test]
    fn ignoring_certificate_errors_is_refused() {
        let refused =
            command(r#"{"id":3,"method":"Security.setIgnoreCertificateErrors","params":{"ignore":true}}"#);
        let Verdict::Answer(reply) = refused else { panic!("forwarded: {refused:?}") };
        assert!(reply.contains("\"error\"") && reply.contains("always verified"), "{reply}");
        let allowed = r#"{"id":4,"method":"Security.setIgnoreCertificateErrors","params":{"ignore":false}}"#;
        assert_eq!(command(allowed), Verdict::Pass);
    }

    /// Commands wrapped where the filter cannot read them (reproduced: a non-flattened attach
    /// then a wrapped `Network.enable` delivered a request's `Authorization` to the client, and
    /// a wrapped `Security.setIgnoreCertificateErrors` was answered `{}`).
    #[test]
    fn no_command_passes_wrapped() {
        let refused = |text: &str| match command(text) {
            Verdict::Answer(reply) => {
                assert!(reply.contains("\"error\"") && reply.contains("refused"), "{reply}")
            }
            other => panic!("{text}: {other:?}"),
        };
        refused(
            r#"{"id":3,"method":"Target.sendMessageToTarget","params":{"sessionId":"S","message":"{\"id\":1,\"method\":\"Network.enable\"}"}}"#,
        );
        refused(r#"{"id":4,"method":"Target.attachToTarget","params":{"targetId":"T"}}"#);
        refused(r#"{"id":5,"method":"Target.attachToTarget","params":{"targetId":"T","flatten":false}}"#);
        refused(
            r#"{"id":6,"method":"Target.setAutoAttach","params":{"autoAttach":true,"waitForDebuggerOnStart":false}}"#,
        );
        refused(r#"{"id":7,"method":"Target.exposeDevToolsProtocol","params":{"targetId":"T"}}"#);
        // What the driver sends: flattened.
        for flat in [
            r#"{"id":8,"method":"Target.attachToTarget","params":{"targetId":"T","flatten":true}}"#,
            r#"{"id":9,"method":"Target.setAutoAttach","params":{"autoAttach":true,"waitForDebuggerOnStart":false,"flatten":true}}"#,
        ] {
            assert_eq!(command(flat), Verdict::Pass, "{flat}");
        }
    }

    #[test]
    fn only_the_events_the_driver_needs_pass() {
        for kept in [
            "Target.attachedToTarget",
            "Page.frameNavigated",
            "Page.lifecycleEvent",
            "Page.loadEventFired",
            "Runtime.executionContextCreated",
            "Inspector.targetCrashed",
        ] {
            assert!(passes(format!(r#"{{"method":"{kept}","params":{{}}}}"#).as_bytes()), "{kept}");
        }
        for dropped in [
            "Network.requestWillBeSent",
            "Network.webSocketFrameSent",
            "Runtime.consoleAPICalled",
            "Runtime.exceptionThrown",
            "Log.entryAdded",
            "Fetch.requestPaused",
            "Page.javascriptDialogOpening",
            "Runtime.bindingCalled",
        ] {
            assert!(!passes(format!(r#"{{"method":"{dropped}","params":{{}}}}"#).as_bytes()), "{dropped}");
        }
        // A wrapped message could carry any of the above, unread.
        assert!(!passes(
            br#"{"method":"Target.receivedMessageFromTarget","params":{"sessionId":"S","message":"{\"method\":\"Network.requestWillBeSent\"}"}}"#
        ));
        assert!(passes(br#"{"id":1,"result":{"result":{"value":true}}}"#));
        assert!(
            !passes(format!(r#"{{"id":{},"result":{{}}}}"#, PROBE_IDS + 1).as_bytes()),
            "a probe's answer"
        );
        assert!(!passes(b"garbage"));
    }

    /// The relay end to end over in-memory pipes: a driver connects on the secret path (a wrong
    /// path, or one of the same shape, is refused; two relays' paths differ), its commands reach
    /// the "browser" NUL-terminated, and what the browser writes is filtered before the driver
    /// sees it.
    #[tokio::test]
    async fn the_relay_carries_filtered_messages_between_driver_and_pipe() {
        use async_tungstenite::tokio::connect_async;
        let (to_browser, mut browser_reads) = duplex(1 << 16);
        let (mut browser_writes, from_browser) = duplex(1 << 16);
        let bodies: Bodies = std::sync::Arc::new([("/bundle.js".to_owned(), "QlVORExF".to_owned())].into());
        let endpoint =
            relay(Upstream::pipe(to_browser, from_browser), Duration::from_secs(5), bodies.clone())
                .await
                .unwrap();
        let url = endpoint.url().to_owned();
        let (base, secret) = url.rsplit_once('/').unwrap();
        assert_eq!(secret.len(), 32, "{url}");
        let other =
            relay(Upstream::pipe(duplex(1).0, duplex(1).1), Duration::from_secs(5), bodies).await.unwrap();
        assert_ne!(other.url().rsplit_once('/').unwrap().1, secret, "each relay's path is its own");
        for wrong in ["guess".to_owned(), "0".repeat(32), format!("{secret}x"), secret[..31].to_owned()] {
            assert!(connect_async(format!("{base}/{wrong}")).await.is_err(), "{wrong} is refused");
        }
        let (mut driver, _) = connect_async(url.as_str()).await.unwrap();
        // The listener is gone once the driver is in.
        assert!(connect_async(url.as_str()).await.is_err(), "a second client is refused");

        driver.send(DriverMessage::text(r#"{"id":1,"method":"Network.enable","params":{}}"#)).await.unwrap();
        let reply = driver.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(reply.contains(r#""id":1"#), "{reply}");
        driver
            .send(DriverMessage::text(r#"{"id":2,"method":"Browser.getVersion","params":{}}"#))
            .await
            .unwrap();
        let mut got = Vec::new();
        BufReader::new(&mut browser_reads).read_until(0, &mut got).await.unwrap();
        assert_eq!(got, b"{\"id\":2,\"method\":\"Browser.getVersion\",\"params\":{}}\0");
        // A file's body is put in here: the driver sends only its marker.
        let fulfil = format!(
            r#"{{"id":3,"method":"Fetch.fulfillRequest","sessionId":"S","params":{{"requestId":"r","responseCode":200,"body":"{}"}}}}"#,
            body_marker("/bundle.js")
        );
        driver.send(DriverMessage::text(fulfil)).await.unwrap();
        got.clear();
        BufReader::new(&mut browser_reads).read_until(0, &mut got).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "{\"id\":3,\"method\":\"Fetch.fulfillRequest\",\"sessionId\":\"S\",\"params\":{\"requestId\":\"r\",\"responseCode\":200,\"body\":\"QlVORExF\"}}\0"
        );

        browser_writes
            .write_all(b"{\"method\":\"Network.requestWillBeSent\",\"params\":{\"x\":\"SECRET\"}}\0")
            .await
            .unwrap();
        browser_writes.write_all(b"{\"id\":2,\"result\":{\"product\":\"x\"}}\0").await.unwrap();
        let next = driver.next().await.unwrap().unwrap().into_text().unwrap();
        assert_eq!(next.as_str(), r#"{"id":2,"result":{"product":"x"}}"#, "the network event was dropped");
        drop(browser_writes);
        drop(browser_reads);
        assert!(
            matches!(driver.next().await, None | Some(Ok(DriverMessage::Close(_))) | Some(Err(_))),
            "the relay ends with the browser's pipe"
        );
        drop(endpoint);
    }

    /// Clients that connect first and say nothing do not keep the driver out: each handshake
    /// runs on its own. (With handshakes one at a time, the driver would wait the silent ones'
    /// whole minute.)
    #[tokio::test]
    async fn a_silent_client_does_not_block_the_driver() {
        let (to_browser, _browser_reads) = duplex(1 << 16);
        let (_browser_writes, from_browser) = duplex(1 << 16);
        let minute = Duration::from_secs(60);
        let endpoint =
            relay_bounded(Upstream::pipe(to_browser, from_browser), minute, minute, Bodies::default())
                .await
                .unwrap();
        let url = endpoint.url().to_owned();
        let address = url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(TcpStream::connect(&address).await.unwrap());
        }
        let mut half = TcpStream::connect(&address).await.unwrap();
        half.write_all(b"GET /devtools/browser/x HTTP/1.1\r\n").await.unwrap();
        let driver =
            tokio::time::timeout(Duration::from_secs(20), async_tungstenite::tokio::connect_async(url))
                .await
                .expect("the driver got in while the silent clients waited");
        assert!(driver.is_ok(), "{driver:?}");
        drop((silent, half, endpoint));
    }

    #[test]
    fn a_sockets_owner_is_read_from_proc_net_tcp() {
        let line = "   3: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 4242 1";
        let (client, relay): (SocketAddr, SocketAddr) =
            ("127.0.0.1:41394".parse().unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(owner(line, client, relay), Some(65534));
        assert_eq!(owner(line, relay, client), None, "the other end's socket");
        assert_eq!(owner(line, "127.0.0.2:41394".parse().unwrap(), relay), None);
        assert_eq!(owner("garbage", client, relay), None);
    }

    /// A client of another local user (uid 65534, through `setpriv`) that knows the path is
    /// closed before its request is read; the driver (this user) still gets in afterwards.
    #[tokio::test]
    async fn another_users_client_is_refused_even_with_the_path() {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("skipped: acting as another user takes root (setpriv)");
            return;
        }
        let (to_browser, _browser_reads) = duplex(1 << 16);
        let (_browser_writes, from_browser) = duplex(1 << 16);
        let endpoint =
            relay(Upstream::pipe(to_browser, from_browser), Duration::from_secs(30), Bodies::default())
                .await
                .unwrap();
        let url = endpoint.url().to_owned();
        let (address, path) = url.trim_start_matches("ws://").split_once('/').unwrap();
        let (host, port) = address.split_once(':').unwrap();
        // bash's /dev/tcp: nothing the other user needs to reach in this user's home (a
        // Python under /root is not theirs to run).
        let script = format!(
            "trap '' PIPE; exec 3<>/dev/tcp/{host}/{port}; echo connected; printf 'GET /{path} HTTP/1.1\\r\\nHost: x\\r\\n\
             Upgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\
             Sec-WebSocket-Version: 13\\r\\n\\r\\n' >&3; timeout 5 head -c 64 <&3; true"
        );
        let other = tokio::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/bash", "-c", &script])
            .output()
            .await
            .expect("setpriv (util-linux) runs a client as uid 65534");
        let said = String::from_utf8_lossy(&other.stdout);
        // It connected (loopback is open to every user), and was answered nothing.
        assert!(said.contains("connected"), "{said}{}", String::from_utf8_lossy(&other.stderr));
        assert!(!said.contains("HTTP/1.1"), "another user's client was answered: {said}");
        let driver = async_tungstenite::tokio::connect_async(url.as_str()).await;
        assert!(driver.is_ok(), "the driver gets in: {:?}", driver.err());
    }

    /// The handshake's answer is RFC 6455's (section 1.3's example key and answer).
    #[tokio::test]
    async fn the_handshake_answers_as_the_rfc_says() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(address).await.unwrap();
            tcp.write_all(b"GET /p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
            let mut answer = vec![0; 512];
            let n = tcp.read(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer[..n]).into_owned()
        });
        let (stream, _) = listener.accept().await.unwrap();
        let _ws = handshake(stream, "/p").await.unwrap();
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{answer}");
    }
}

#[cfg(test)]
mod edge_cases {
    use super::*;
    use tokio::io::duplex;

    fn address(url: &str) -> String {
        url.trim_start_matches("ws://").split('/').next().unwrap().to_owned()
    }

    /// past HANDSHAKES silent clients, the next connection is closed at once.
    #[tokio::test]
    async fn s_connections_past_the_cap_are_closed_at_once() {
        let (to_browser, _r) = duplex(1 << 16);
        let (_w, from_browser) = duplex(1 << 16);
        let minute = Duration::from_secs(60);
        let endpoint =
            relay_bounded(Upstream::pipe(to_browser, from_browser), minute, minute, Bodies::default())
                .await
                .unwrap();
        let address = address(endpoint.url());
        let mut silent = Vec::new();
        for _ in 0..HANDSHAKES {
            silent.push(TcpStream::connect(&address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut past = TcpStream::connect(&address).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), past.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the 17th was held: {read:?}");
        drop((silent, endpoint));
    }

    /// a silent client is closed after HANDSHAKE_WITHIN.
    #[tokio::test]
    async fn s_a_silent_client_is_closed_after_handshake_within() {
        let (to_browser, _r) = duplex(1 << 16);
        let (_w, from_browser) = duplex(1 << 16);
        let endpoint =
            relay(Upstream::pipe(to_browser, from_browser), Duration::from_secs(60), Bodies::default())
                .await
                .unwrap();
        let mut silent = TcpStream::connect(address(endpoint.url())).await.unwrap();
        let mut byte = [0u8; 1];
        let read =
            tokio::time::timeout(HANDSHAKE_WITHIN + Duration::from_secs(2), silent.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(HANDSHAKE_WITHIN <= Duration::from_secs(5));
        drop(endpoint);
    }

    /// a client that sends a frame before it is answered is refused.
    #[tokio::test]
    async fn s_data_before_the_answer_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        client.write_all(b"GET /p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (stream, _) = listener.accept().await.unwrap();
        let err = handshake(stream, "/p").await.expect_err("refused");
        assert!(err.to_string().contains("before the handshake"), "{err}");
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        assert!(!String::from_utf8_lossy(&answer).contains("101"), "answered");
    }

    /// a head past 8 KiB is refused without waiting for its end.
    #[tokio::test]
    async fn s_a_long_head_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut head = b"GET /p HTTP/1.1\r\nX-Pad: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 9000));
        head.extend_from_slice(b"\r\n");
        client.write_all(&head).await.unwrap();
        let done = tokio::time::timeout(Duration::from_secs(2), handshake(stream, "/p"))
            .await
            .expect("not waited on");
        assert!(done.expect_err("refused").to_string().contains("too long"));
        drop(client);
    }

    /// Page events that carry page text never pass.
    #[test]
    fn s_page_events_with_page_text_are_dropped() {
        for dropped in [
            "Page.fileChooserOpened",
            "Page.downloadWillBegin",
            "Page.windowOpen",
            "Page.screencastFrame",
            "Page.javascriptDialogClosed",
        ] {
            assert!(!passes(format!(r#"{{"method":"{dropped}","params":{{}}}}"#).as_bytes()), "{dropped}");
        }
    }
}
