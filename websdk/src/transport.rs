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
//! - `Security.setIgnoreCertificateErrors` is refused: certificates are always verified (the
//!   test rig's exception is a Chromium flag, visible on its command line).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use futures::StreamExt;
use rand::Rng;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The page's origin (served through the `Fetch` domain by the service itself). `.invalid` never
/// resolves, so no server anywhere can answer for it.
pub(crate) const ORIGIN: &str = "https://callagent-websdk.invalid";

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

enum Tx {
    Pipe(Box<dyn AsyncWrite + Unpin + Send>),
    Socket(async_tungstenite::WebSocketSender<async_tungstenite::tokio::TokioAdapter<Link>>),
}

enum Rx {
    Pipe(BufReader<Box<dyn AsyncRead + Unpin + Send>>),
    Socket(async_tungstenite::WebSocketReceiver<async_tungstenite::tokio::TokioAdapter<Link>>),
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
    pub(crate) fn socket(
        tx: async_tungstenite::WebSocketSender<async_tungstenite::tokio::TokioAdapter<Link>>,
        rx: async_tungstenite::WebSocketReceiver<async_tungstenite::tokio::TokioAdapter<Link>>,
        lost_after: Duration,
    ) -> Self {
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
            Self::Socket(socket) => socket.send(Message::text(text)).await?,
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
                    Some(Ok(Message::Text(text))) => {
                        buf.extend_from_slice(text.as_bytes());
                        return Ok(true);
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(false),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }
}

/// No size limit on a message: the page's bundle crosses in one.
pub(crate) fn unlimited() -> async_tungstenite::tungstenite::protocol::WebSocketConfig {
    async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// Relays between the driver and a browser (`upstream`). The listener waits `within` for the
/// driver, then closes. The relay ends when either side does.
pub(crate) async fn relay(upstream: Upstream, within: Duration) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let path = format!("/devtools/browser/{}", random_hex(32));
    let url = format!("ws://127.0.0.1:{port}{path}");
    let task = tokio::spawn(async move {
        let Ok(Some(ws)) = tokio::time::timeout(within, accept_one(&listener, &path)).await else {
            tracing::debug!("the driver did not connect to the DevTools relay");
            return;
        };
        drop(listener);
        if let Err(e) = pump(ws, upstream).await {
            tracing::debug!(error = %e, "the DevTools relay ended");
        }
    });
    Ok(Endpoint { url, task })
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

type Ws = async_tungstenite::WebSocketStream<async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>>;

/// Accepts the first client that asks for `path` (others get 404 and are closed).
async fn accept_one(listener: &TcpListener, path: &str) -> Option<Ws> {
    loop {
        let (stream, _) = listener.accept().await.ok()?;
        // The callback's type is tungstenite's (`Callback`), large error and all.
        #[allow(clippy::result_large_err)]
        let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if request.uri().path() == path {
                Ok(response)
            } else {
                let mut refused = ErrorResponse::new(None);
                *refused.status_mut() = StatusCode::NOT_FOUND;
                Err(refused)
            }
        };
        if let Ok(ws) =
            async_tungstenite::tokio::accept_hdr_async_with_config(stream, check, Some(unlimited())).await
        {
            return Some(ws);
        }
    }
}

/// How often the relay asks a remote browser to answer while watching its link.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The ids of the relay's own probes (the driver counts its own up from 0): their answers are the
/// relay's, never passed on.
const PROBE_IDS: u64 = 1 << 50;

async fn pump(ws: Ws, upstream: Upstream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
    loop {
        tokio::select! {
            // What has arrived is read before the link is judged silent.
            biased;
            received = from_browser.recv(&mut buf) => {
                if !received? {
                    return Ok(()); // the browser's side ended: it exited, or its link closed
                }
                heard = tokio::time::Instant::now();
                if passes(&buf) {
                    let text = String::from_utf8(std::mem::take(&mut buf))?;
                    to_driver.send(Message::text(text)).await?;
                } else {
                    buf.clear();
                }
            }
            message = from_driver.next() => match message {
                Some(Ok(Message::Text(text))) => match command(text.as_str()) {
                    Verdict::Pass => to_browser.send(text.as_str()).await?,
                    Verdict::Answer(answer) => to_driver.send(Message::text(answer)).await?,
                    Verdict::Drop => {}
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
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
}

#[derive(Deserialize)]
struct Params {
    ignore: Option<bool>,
    /// `Fetch.enable`'s.
    patterns: Option<Vec<Pattern>>,
    #[serde(rename = "handleAuthRequests")]
    handle_auth_requests: Option<bool>,
    /// `Fetch.requestPaused`'s (any shape: other messages' `request` must not fail the parse).
    request: Option<serde_json::Value>,
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

/// Whether a message from Chromium may reach the driver: every answer to a command of the
/// driver's (the page's answers carry no token; the relay's probes' answers stay here), and events
/// only from the domains the driver needs.
fn passes(message: &[u8]) -> bool {
    let Ok(head) = serde_json::from_slice::<Head<'_>>(message) else {
        return false;
    };
    if let Some(id) = head.id {
        return id < PROBE_IDS; // the relay's own probes are answered to the relay alone
    }
    match head.method.as_deref() {
        Some("Fetch.requestPaused") => {
            let request = head.params.and_then(|p| p.request);
            request.as_ref().and_then(|r| r["url"].as_str()).is_some_and(ours)
        }
        Some(method) => event_passes(method),
        None => false,
    }
}

fn event_passes(method: &str) -> bool {
    let (domain, name) = method.split_once('.').unwrap_or((method, ""));
    match domain {
        "Target" | "Inspector" => true,
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

    #[test]
    fn ignoring_certificate_errors_is_refused() {
        let refused =
            command(r#"{"id":3,"method":"Security.setIgnoreCertificateErrors","params":{"ignore":true}}"#);
        let Verdict::Answer(reply) = refused else { panic!("forwarded: {refused:?}") };
        assert!(reply.contains("\"error\"") && reply.contains("always verified"), "{reply}");
        let allowed = r#"{"id":4,"method":"Security.setIgnoreCertificateErrors","params":{"ignore":false}}"#;
        assert_eq!(command(allowed), Verdict::Pass);
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
        assert!(passes(br#"{"id":1,"result":{"result":{"value":true}}}"#));
        assert!(
            !passes(format!(r#"{{"id":{},"result":{{}}}}"#, PROBE_IDS + 1).as_bytes()),
            "a probe's answer"
        );
        assert!(!passes(b"garbage"));
    }

    /// The relay end to end over in-memory pipes: a driver connects on the secret path (a wrong
    /// path is refused), its commands reach the "browser" NUL-terminated, and what the browser
    /// writes is filtered before the driver sees it.
    #[tokio::test]
    async fn the_relay_carries_filtered_messages_between_driver_and_pipe() {
        let (to_browser, mut browser_reads) = duplex(1 << 16);
        let (mut browser_writes, from_browser) = duplex(1 << 16);
        let endpoint = relay(Upstream::pipe(to_browser, from_browser), Duration::from_secs(5)).await.unwrap();
        let url = endpoint.url().to_owned();
        let wrong = url.rsplit_once('/').map(|(base, _)| format!("{base}/guess")).unwrap();
        assert!(async_tungstenite::tokio::connect_async(wrong).await.is_err(), "a wrong path is refused");
        let (mut driver, _) = async_tungstenite::tokio::connect_async(url.as_str()).await.unwrap();
        // The listener is gone once the driver is in.
        assert!(
            async_tungstenite::tokio::connect_async(url.as_str()).await.is_err(),
            "a second client is refused"
        );

        driver.send(Message::text(r#"{"id":1,"method":"Network.enable","params":{}}"#)).await.unwrap();
        let reply = driver.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(reply.contains(r#""id":1"#), "{reply}");
        driver.send(Message::text(r#"{"id":2,"method":"Browser.getVersion","params":{}}"#)).await.unwrap();
        let mut got = Vec::new();
        BufReader::new(&mut browser_reads).read_until(0, &mut got).await.unwrap();
        assert_eq!(got, b"{\"id\":2,\"method\":\"Browser.getVersion\",\"params\":{}}\0");

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
            matches!(driver.next().await, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
            "the relay ends with the browser's pipe"
        );
        drop(endpoint);
    }
}
