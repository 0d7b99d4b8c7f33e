//! Creates Azure Communication Services call agents with the real Web Calling SDK
//! (`@azure/communication-calling`, pinned in `page/package.json`) in headless Chromium, driven
//! from Rust over the DevTools protocol: a [`tower::Service`] for the
//! [`callagent_retry`] layer to wrap, for bots, load testers and synthetic monitors of ACS.
//!
//! ```text
//!  WebSdk (tower::Service<CreateAgentRequest>)            Chromium (headless, /usr/bin/chromium)
//!    ├─ pooled pages, agents_per_page each ── DevTools ──▶  http://localhost:PORT/index.html
//!    │                                                       └─ the SDK bundle (page/dist)
//!    └─ localhost server: ServeDir(page/dist), POST /token/{one-time key} ◀── the page's fetch
//! ```
//!
//! Who owns what (each rule lives in one module):
//!
//! | module | owns | released when |
//! |---|---|---|
//! | `browser` | the Chromium process, its DevTools connection, its profile | it dies (noticed at once, reaped, profile removed; the next creation starts another) or the service is closed or dropped |
//! | `page` | a page ([`Session`] handles and agents share it) | the last handle is dropped, at any await point |
//! | `pool` | warm pages (until a creation takes one); a creation's or agent's place on a page (one identity once per page) | the service is closed; a place when its creation or agent is dropped (a creation dropped mid-way is abandoned in the page: its agent disposed as soon as it exists) |
//! | `agent` | an [`Agent`] and its `max_agents` slot | [`Agent::dispose`], or a drop (disposed in the background) |
//! | `service` | [`WebSdk`]: slots (`poll_ready`), the shared state | the last clone, page and agent are dropped |
//! | `server` | the localhost server and the one-time token keys | the service is dropped; a key when its creation ends |
//! | `protocol` | nothing: the shapes of the page's answers | |
//!
//! The access token never crosses the DevTools protocol (whose messages `chromiumoxide` traces):
//! the service puts it behind a one-time random key on its own localhost server and the page
//! fetches it. It never appears in `Debug`, errors, tracing fields or the page's console.
//!
//! Set-up: `websdk/page/build.sh` (npm ci + esbuild) builds the page once; Chromium comes from
//! Debian (`apt-get install chromium`). No Node.js runs on the request path.
//!
//! ```no_run
//! use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
//! use callagent_retry::{CallAgentRetryLayer, RetryConfig};
//! use callagent_websdk::{WebSdk, WebSdkConfig};
//! use tower::{Layer, ServiceExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let sdk = WebSdk::launch(WebSdkConfig::default()).await?;
//! let svc = CallAgentRetryLayer::new(RetryConfig::default())?.layer(sdk.clone());
//! let token = AccessToken::new(std::env::var("ACS_TOKEN")?);
//! let agent = svc.oneshot(CreateAgentRequest::new("8:acs:probe", token, AgentKind::Acs)).await?;
//! println!("{:?}", agent.connection_state().await?);
//! agent.dispose().await?; // its page closes with its last agent
//! # Ok(()) }
//! ```

mod agent;
mod browser;
mod chromium;
mod config;
mod error;
mod page;
mod pool;
mod private;
mod procfs;
mod protocol;
mod server;
mod service;
mod transport;

pub use agent::{Agent, ConnectionState, StateChange};
pub use config::{DEFAULT_AGENTS_PER_PAGE, NO_EXTERNAL_HOSTS, WebSdkConfig};
pub use error::WebSdkError;
pub use page::{Failure, Race, Session};
pub use pool::{AGENTS, CREATIONS, PAGE_LOAD, PAGE_LOAD_BUCKETS, PAGES, RESTARTS, WARM_PAGES};
pub use service::{BrowserStats, ResponseFuture, WebSdk};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[tokio::test]
    async fn a_missing_page_or_browser_is_a_clear_error() {
        let config = WebSdkConfig { page_dir: PathBuf::from("/nonexistent"), ..WebSdkConfig::isolated() };
        let err = WebSdk::launch(config).await.unwrap_err().to_string();
        assert!(err.contains("websdk/page/build.sh"), "{err}");
        let config =
            WebSdkConfig { chromium: PathBuf::from("/nonexistent/chromium"), ..WebSdkConfig::isolated() };
        if config.page_dir.join("bundle.js").is_file() {
            let err = WebSdk::launch(config).await.unwrap_err().to_string();
            assert!(err.contains("apt-get install chromium"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_bad_setting_is_refused_before_anything_starts() {
        let config = WebSdkConfig { max_agents: 0, ..WebSdkConfig::isolated() };
        let err = WebSdk::launch(config).await.unwrap_err();
        assert!(matches!(err, WebSdkError::Config { field: "max_agents", .. }), "{err}");
    }
}
