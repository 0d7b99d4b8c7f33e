//! The localhost server: the page and its bundle (tower-http's `ServeDir`), and the one-time
//! token handoff that keeps tokens off the DevTools protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use callagent_retry::sdk::AccessToken;
use rand::Rng;
use tokio::task::JoinHandle;
use tower_http::services::ServeDir;

/// Tokens waiting for their page, by one-time key.
#[derive(Clone, Default)]
pub(crate) struct Tokens(Arc<Mutex<HashMap<String, AccessToken>>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("waiting", &self.lock().len()).finish()
    }
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AccessToken>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `token` behind a fresh random key; the page takes it once with `POST /token/{key}`.
    pub(crate) fn offer(&self, token: AccessToken) -> Key {
        let key: String = (0..32).map(|_| format!("{:x}", rand::thread_rng().r#gen::<u8>() & 0xf)).collect();
        self.lock().insert(key.clone(), token);
        Key { key, tokens: self.clone() }
    }

    fn take(&self, key: &str) -> Option<AccessToken> {
        self.lock().remove(key)
    }
}

/// A token's one-time key; dropping it withdraws a token the page never took.
#[derive(Debug)]
pub(crate) struct Key {
    key: String,
    tokens: Tokens,
}

impl Key {
    pub(crate) fn as_str(&self) -> &str {
        &self.key
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.tokens.take(&self.key);
    }
}

async fn hand_over(State(tokens): State<Tokens>, Path(key): Path<String>) -> Result<String, StatusCode> {
    tokens.take(&key).map(|t| t.expose_secret().to_owned()).ok_or(StatusCode::NOT_FOUND)
}

/// The running server.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) tokens: Tokens,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `dir` and the token handoff on 127.0.0.1, on a free port.
    pub(crate) async fn start(dir: PathBuf) -> std::io::Result<Self> {
        let tokens = Tokens::default();
        let app = Router::new()
            .route("/token/{key}", post(hand_over))
            .with_state(tokens.clone())
            .fallback_service(ServeDir::new(dir));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the websdk page server stopped");
            }
        });
        Ok(Self { addr, tokens, task })
    }

    /// The page's URL. `localhost`, not `127.0.0.1`: the SDK refuses plain-http origins other
    /// than localhost.
    pub(crate) fn page_url(&self) -> String {
        format!("http://localhost:{}/index.html", self.addr.port())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
