//! The localhost server: each page's document, the SDK bundle, and the one-time token handoff
//! that keeps tokens off the DevTools protocol. Nothing else: no directory listing, no other
//! file, and no answer to a request whose `Host` is not `localhost:PORT` (a page of another
//! origin that rebinds a name of its own to 127.0.0.1 gets nothing).
//!
//! A token is handed over once, and only to the page it was offered for: each page's document
//! carries a secret of its own, minted when the page first loads it (the document is served once)
//! and never sent over DevTools, and the page must present it with the one-time key. A key read
//! from a log is worth nothing without it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use callagent_retry::sdk::AccessToken;
use rand::Rng;
use tokio::task::JoinHandle;

/// The header a page presents its secret in.
const PAGE_SECRET: &str = "x-callagent-page";

fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

/// Pages and the tokens offered to them.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    next_page: u64,
    pages: HashMap<u64, Document>,
    offers: HashMap<String, Offer>,
}

enum Document {
    /// Issued to a page that has not loaded it yet.
    Issued,
    /// Served once, with this secret.
    Served(String),
}

struct Offer {
    page: u64,
    token: AccessToken,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page's document, the first time it is asked for: its secret is minted now.
    fn serve(&self, page: u64) -> Option<String> {
        let mut inner = self.lock();
        let document = inner.pages.get_mut(&page)?;
        if !matches!(document, Document::Issued) {
            return None;
        }
        let secret = random_hex(32);
        *document = Document::Served(secret.clone());
        Some(secret)
    }

    /// The token behind `key`, if it was offered to `page` and `secret` is that page's. The key
    /// is spent either way.
    fn take(&self, page: u64, key: &str, secret: &[u8]) -> Option<AccessToken> {
        let mut inner = self.lock();
        let offer = inner.offers.remove(key)?;
        let Some(Document::Served(expected)) = inner.pages.get(&offer.page) else {
            return None;
        };
        (offer.page == page && same(expected.as_bytes(), secret)).then_some(offer.token)
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Registry")
            .field("pages", &inner.pages.len())
            .field("offers", &inner.offers.len())
            .finish()
    }
}

/// One page's place on the server: its URL, and the tokens offered to it. Dropping it forgets
/// the page and withdraws its offers.
#[derive(Debug)]
pub(crate) struct PageTicket {
    page: u64,
    url: String,
    registry: Registry,
}

impl PageTicket {
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Puts `token` behind a fresh random key for this page alone; the page takes it once with
    /// `POST token/{key}` and its secret.
    pub(crate) fn offer(&self, token: AccessToken) -> Key {
        let key = random_hex(32);
        self.registry.lock().offers.insert(key.clone(), Offer { page: self.page, token });
        Key { key, registry: self.registry.clone() }
    }
}

impl Drop for PageTicket {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.pages.remove(&self.page);
        inner.offers.retain(|_, o| o.page != self.page);
    }
}

/// A token's one-time key; dropping it withdraws a token the page never took.
#[derive(Debug)]
pub(crate) struct Key {
    key: String,
    registry: Registry,
}

impl Key {
    pub(crate) fn as_str(&self) -> &str {
        &self.key
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.registry.lock().offers.remove(&self.key);
    }
}

/// A file of the built page, held in memory.
struct File {
    body: axum::body::Bytes,
    content_type: &'static str,
}

#[derive(Clone)]
struct App {
    registry: Registry,
    files: Arc<HashMap<String, File>>,
    /// `localhost:PORT`: the only `Host` answered.
    host: Arc<str>,
}

impl App {
    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers.get(header::HOST).is_some_and(|h| h.as_bytes() == self.host.as_bytes())
    }
}

fn misdirected() -> Response {
    StatusCode::MISDIRECTED_REQUEST.into_response()
}

fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn document(State(app): State<App>, UrlPath(page): UrlPath<u64>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return misdirected();
    }
    let Some(secret) = app.registry.serve(page) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"callagent-page\" content=\"{secret}\">\n\
         <title>callagent-websdk</title>\n<script src=\"/bundle.js\"></script>\n"
    );
    private(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn hand_over(
    State(app): State<App>,
    UrlPath((page, key)): UrlPath<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    if !app.host_ok(&headers) {
        return misdirected();
    }
    let secret = headers.get(PAGE_SECRET).map_or(&b""[..], HeaderValue::as_bytes);
    match app.registry.take(page, &key, secret) {
        Some(token) => private(token.expose_secret().to_owned().into_response()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn file(State(app): State<App>, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    if !app.host_ok(&headers) {
        return misdirected();
    }
    match app.files.get(&name) {
        // Fixed for the server's life: cached once per browser, so each new page reuses the
        // bundle and its compiled code instead of fetching and compiling megabytes again.
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            file.body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The built page's files (its top level, but `index.html`, which the server writes per page).
fn read_files(dir: &Path) -> std::io::Result<HashMap<String, File>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name == "index.html" || !entry.file_type()?.is_file() {
            continue;
        }
        let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("map" | "json") => "application/json",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css; charset=utf-8",
            _ => "application/octet-stream",
        };
        files.insert(name, File { body: std::fs::read(entry.path())?.into(), content_type });
    }
    Ok(files)
}

/// The running server.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    registry: Registry,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves the page built in `dir`, and the token handoff, on 127.0.0.1, on a free port.
    pub(crate) async fn start(dir: &Path) -> std::io::Result<Self> {
        let files = Arc::new(read_files(dir)?);
        let registry = Registry::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app =
            App { registry: registry.clone(), files, host: format!("localhost:{}", addr.port()).into() };
        let router = Router::new()
            .route("/p/{page}/", get(document))
            .route("/p/{page}/token/{key}", post(hand_over))
            .route("/{file}", get(file))
            .with_state(app);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "the websdk page server stopped");
            }
        });
        Ok(Self { addr, registry, task })
    }

    /// A place for a new page: its URL (`localhost`, not `127.0.0.1`: the SDK refuses
    /// plain-http origins other than localhost) and its token offers.
    pub(crate) fn page(&self) -> PageTicket {
        let page = {
            let mut inner = self.registry.lock();
            inner.next_page += 1;
            let page = inner.next_page;
            inner.pages.insert(page, Document::Issued);
            page
        };
        let url = format!("http://localhost:{}/p/{page}/", self.addr.port());
        PageTicket { page, url, registry: self.registry.clone() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 exchange: the status and the body.
    async fn request(server: &Server, method: &str, path: &str, host: &str, extra: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let text = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
        );
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    async fn server() -> (Server, tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.js"), "window.x = 1;").unwrap();
        std::fs::write(dir.path().join("index.html"), "template").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/secret.txt"), "no").unwrap();
        let server = Server::start(dir.path()).await.unwrap();
        let host = format!("localhost:{}", server.addr.port());
        (server, dir, host)
    }

    fn secret_of(html: &str) -> String {
        html.split("content=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned()
    }

    #[tokio::test]
    async fn only_the_pages_files_are_served_and_only_to_localhost() {
        let (server, _dir, host) = server().await;
        assert_eq!(request(&server, "GET", "/bundle.js", &host, "").await, (200, "window.x = 1;".into()));
        for path in
            ["/index.html", "/sub/secret.txt", "/sub/", "/", "/../Cargo.toml", "/%2e%2e/Cargo.toml", "/p/1/"]
        {
            assert_eq!(request(&server, "GET", path, &host, "").await.0, 404, "{path}");
        }
        // DNS rebinding: a page of another origin reaching 127.0.0.1 by a name of its own.
        let port = server.addr.port();
        for other in [
            format!("127.0.0.1:{port}"),
            format!("evil.example:{port}"),
            "localhost".into(),
            format!("localhost:{}", port + 1),
        ] {
            assert_eq!(request(&server, "GET", "/bundle.js", &other, "").await.0, 421, "{other}");
        }
    }

    #[tokio::test]
    async fn a_page_document_is_served_once_with_a_secret_of_its_own() {
        let (server, _dir, host) = server().await;
        let (a, b) = (server.page(), server.page());
        let path = |t: &PageTicket| t.url().split_once(&host).unwrap().1.to_owned();
        let (status, html) = request(&server, "GET", &path(&a), &host, "").await;
        assert_eq!(status, 200);
        assert!(html.contains("<script src=\"/bundle.js\">"), "{html}");
        let (_, other) = request(&server, "GET", &path(&b), &host, "").await;
        assert_ne!(secret_of(&html), secret_of(&other));
        assert_eq!(request(&server, "GET", &path(&a), &host, "").await.0, 404, "served once");
        let forgotten = path(&a);
        drop(a);
        assert_eq!(request(&server, "GET", &forgotten, &host, "").await.0, 404);
    }

    #[tokio::test]
    async fn a_token_goes_once_and_only_to_its_own_page() {
        let (server, _dir, host) = server().await;
        let (a, b) = (server.page(), server.page());
        let path = |t: &PageTicket| t.url().split_once(&host).unwrap().1.to_owned();
        let secret_a = secret_of(&request(&server, "GET", &path(&a), &host, "").await.1);
        let secret_b = secret_of(&request(&server, "GET", &path(&b), &host, "").await.1);
        let token = || AccessToken::new("header.payload.signature");
        let with = |s: &str| format!("{PAGE_SECRET}: {s}\r\n");

        let key = a.offer(token());
        let take = |page: &PageTicket, key: &Key| format!("{}token/{}", path(page), key.as_str());
        // Another page, even with its own secret, gets nothing, and spends the key.
        assert_eq!(request(&server, "POST", &take(&b, &key), &host, &with(&secret_b)).await.0, 404);
        assert_eq!(request(&server, "POST", &take(&a, &key), &host, &with(&secret_a)).await.0, 404, "spent");

        let key = a.offer(token());
        assert_eq!(request(&server, "POST", &take(&a, &key), &host, "").await.0, 404, "no secret");
        let key = a.offer(token());
        assert_eq!(
            request(&server, "POST", &take(&a, &key), &host, &with(&secret_b)).await.0,
            404,
            "b's secret"
        );
        let key = a.offer(token());
        assert_eq!(request(&server, "GET", &take(&a, &key), &host, &with(&secret_a)).await.0, 405);
        let wrong_host = format!("127.0.0.1:{}", server.addr.port());
        assert_eq!(request(&server, "POST", &take(&a, &key), &wrong_host, &with(&secret_a)).await.0, 421);
        let (status, body) = request(&server, "POST", &take(&a, &key), &host, &with(&secret_a)).await;
        assert_eq!((status, body.as_str()), (200, "header.payload.signature"));
        assert_eq!(request(&server, "POST", &take(&a, &key), &host, &with(&secret_a)).await.0, 404, "once");

        // A key withdrawn (its creation ended) or whose page is gone is worth nothing.
        let key = a.offer(token());
        let url = take(&a, &key);
        drop(key);
        assert_eq!(request(&server, "POST", &url, &host, &with(&secret_a)).await.0, 404);
        let key = a.offer(token());
        let url = take(&a, &key);
        drop(a);
        assert_eq!(request(&server, "POST", &url, &host, &with(&secret_a)).await.0, 404);
    }
}
