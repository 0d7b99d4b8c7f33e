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
//! - events pass only from the domains the driver needs to track targets, frames and execution
//!   contexts; everything else (console, exceptions, network, fetch, ...) is dropped here;
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

/// Relays between the driver and a browser's pipe (`to_browser` is its fd 3, `from_browser` its
/// fd 4). The listener waits `within` for the driver, then closes. The relay ends when either
/// side does; Chromium ends its pipe when it exits.
pub(crate) async fn relay<W, R>(to_browser: W, from_browser: R, within: Duration) -> std::io::Result<Endpoint>
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
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
        if let Err(e) = pump(ws, to_browser, from_browser).await {
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
        let config = async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        if let Ok(ws) =
            async_tungstenite::tokio::accept_hdr_async_with_config(stream, check, Some(config)).await
        {
            return Some(ws);
        }
    }
}

async fn pump<W, R>(
    ws: Ws,
    mut to_browser: W,
    from_browser: R,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let (mut to_driver, mut from_driver) = ws.split();
    let mut from_browser = BufReader::with_capacity(64 * 1024, from_browser);
    // Kept across iterations: `read_until` leaves what it read so far here when the other branch
    // wins the select.
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            message = from_driver.next() => match message {
                Some(Ok(Message::Text(text))) => match command(text.as_str()) {
                    Verdict::Pass => {
                        to_browser.write_all(text.as_bytes()).await?;
                        to_browser.write_all(b"\0").await?;
                    }
                    Verdict::Answer(answer) => to_driver.send(Message::text(answer)).await?,
                    Verdict::Drop => {}
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
            read = from_browser.read_until(0, &mut buf) => {
                if read? == 0 || buf.last() != Some(&0) {
                    return Ok(()); // Chromium closed its end: it exited.
                }
                buf.pop();
                if passes(&buf) {
                    let text = String::from_utf8(std::mem::take(&mut buf))?;
                    to_driver.send(Message::text(text)).await?;
                } else {
                    buf.clear();
                }
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
const NEVER_ENABLED: &[&str] = &["Network.enable", "Log.enable", "Fetch.enable", "Console.enable"];

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

/// Whether a message from Chromium may reach the driver: every answer to a command (the driver
/// sent it, and the page's answers carry no token), and events only from the domains the driver
/// needs.
fn passes(message: &[u8]) -> bool {
    let Ok(head) = serde_json::from_slice::<Head<'_>>(message) else {
        return false;
    };
    if head.id.is_some() {
        return true;
    }
    head.method.as_deref().is_some_and(event_passes)
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
        assert!(!passes(b"garbage"));
    }

    /// The relay end to end over in-memory pipes: a driver connects on the secret path (a wrong
    /// path is refused), its commands reach the "browser" NUL-terminated, and what the browser
    /// writes is filtered before the driver sees it.
    #[tokio::test]
    async fn the_relay_carries_filtered_messages_between_driver_and_pipe() {
        let (to_browser, mut browser_reads) = duplex(1 << 16);
        let (mut browser_writes, from_browser) = duplex(1 << 16);
        let endpoint = relay(to_browser, from_browser, Duration::from_secs(5)).await.unwrap();
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
