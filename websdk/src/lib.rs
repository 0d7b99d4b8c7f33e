//! Creates Azure Communication Services call agents with the real Web Calling SDK
//! (`@azure/communication-calling`, pinned in `page/package.json`) in headless Chromium, driven
//! from Rust over the DevTools protocol: a [`tower::Service`] for the
//! [`callagent_retry`] layer to wrap, for bots, load testers and synthetic monitors of ACS.
//!
//! ```text
//!  WebSdk (tower::Service<CreateAgentRequest>)              Chromium (headless, its own command line)
//!    ├─ pooled pages, agents_per_page each                   fds 3/4: --remote-debugging-pipe
//!    ├─ chromiumoxide ── loopback WebSocket ── relay ── pipe ─▶ (no DevTools socket)
//!    │     (one client, unguessable path; the relay drops the events that carry what pages send)
//!    └─ https://callagent-websdk.invalid/ served over DevTools (Fetch.fulfillRequest) as each
//!       page loads; tokens sealed to their page (ECDH P-256 + AES-256-GCM), opened in it
//! ```
//!
//! Who owns what (each rule lives in one module):
//!
//! | module | owns | released when |
//! |---|---|---|
//! | `browser` | the Chromium process, its DevTools connection, its directory | it dies (noticed at once, reaped, directory removed; the next creation starts another) or the service is closed or dropped |
//! | `chromium` | nothing: Chromium's command line and environment, the launcher thread | |
//! | `transport` | the relay between the driver and a browser's pipe or remote link | its browser ends |
//! | `remote` | nothing: reaching a remote browser's endpoint (resolved, TLS verified) and handing the link to the relay | |
//! | `private` | the service's private directory and its lock | the service is closed or dropped |
//! | `page` | a page ([`Tab`] handles and agents share it) | the last handle is dropped, at any await point |
//! | `pool` | warm pages (until a creation takes one); a creation's or agent's place on a page (one identity once per page) | the service is closed; a place when its creation or agent is dropped (a creation dropped mid-way is abandoned in the page: its agent disposed as soon as it exists) |
//! | `agent` | an [`Agent`] and its `max_agents` slot | [`Agent::dispose`], or a drop (disposed in the background) |
//! | `service` | [`WebSdk`]: slots (`poll_ready`), the shared state | the last clone, page and agent are dropped |
//! | `browsers` | [`Browsers`]: its members, a reserved slot on one of them; for [`DnsBrowsers`], the task that resolves the name and the retired members it closes | the last clone is dropped (each member as a `WebSdk`); the task at its next round after that, or at [`Browsers::close`] |
//! | `origin` | the page's files, in memory; serving a page while it loads | the service is dropped; a page's serving when it has loaded |
//! | `seal` | nothing: a token sealed to one page's public key | |
//! | `protocol` | nothing: the shapes of the page's answers | |
//!
//! The access token never crosses the DevTools protocol readable (`chromiumoxide` traces every
//! message): each page makes a key pair as it loads, and each token is sealed to its page's
//! public key (a fresh ECDH P-256 key of the service's, HKDF-SHA256, AES-256-GCM); only that
//! page can open it. The page needs no server: its origin is served over DevTools, so it loads on
//! any browser the service can drive. The events that would carry it once the SDK sends it (request
//! headers, WebSocket frames, console text) never reach the driver. It never appears in `Debug`,
//! errors, tracing fields or the page's console. Certificates are always verified. The threat
//! model and how each part is tested: `websdk/docs/security.md`.
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

//! # Layout
//!
//! Each module imports only the ones below it (a unit test checks it):
//!
//! 1. leaves: `error`, `metrics` (the metric names), `procfs`, `seal` (tokens sealed to a page),
//!    `transport` (the DevTools relay);
//! 2. `remote` (a remote browser's endpoint reached, over TLS for `wss`/`https`);
//! 3. `config`, `origin` (the page's files, served over DevTools), `protocol` (the page's
//!    JavaScript calls), `private` (the service's files);
//! 4. `chromium` (its command line and process), then `browser` (the supervisor);
//! 5. `context`: the supervisor, the site and the config, which pages and agents hold;
//! 6. `page`, then `pool` (which page a creation runs on), then `agent`;
//! 7. `service`: the `tower::Service`, the only module that sees the pool and the context;
//! 8. `browsers`: several services (browsers) behind one, listed or found by DNS (`browsers/dns.rs`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub, clippy::all)]

mod agent;
mod browser;
mod browsers;
mod chromium;
mod config;
mod context;
mod error;
mod metrics;
mod origin;
mod page;
mod pool;
mod private;
mod procfs;
mod protocol;
mod remote;
mod seal;
mod service;
mod transport;

pub use agent::{Agent, ConnectionState, Race, StateChange};
pub use browsers::{Browsers, DnsBrowsers};
pub use config::{DEFAULT_AGENTS_PER_PAGE, NO_EXTERNAL_HOSTS, RemoteBrowser, TenantOf, WebSdkConfig};
pub use error::{ProtocolError, WebSdkError};
pub use metrics::{
    AGENTS, BROWSER, BROWSER_LOST, CREATIONS, PAGE_LOAD, PAGE_LOAD_BUCKETS, PAGES, RESTARTS, WARM_PAGES,
};
pub use page::{Channel, Failure, HostReach, Tab};
pub use service::{BrowserStats, ResponseFuture, WebSdk};

// The layering test's reader, shared with the root crate's (`tests/layering.rs`).
#[cfg(test)]
#[path = "../../tests/support/imports.rs"]
mod imports;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Everything logged from here on, at every level, `log` records included: the subscriber
    /// users set up (`tracing_subscriber::fmt().init()`, which forwards the `log` crate's records).
    pub(crate) fn logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
        static LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
            std::sync::OnceLock::new();
        std::sync::Arc::clone(LOGS.get_or_init(|| {
            use tracing_subscriber::util::SubscriberInitExt;
            let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = std::sync::Arc::clone(&logs);
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || Sink(std::sync::Arc::clone(&sink)))
                .finish()
                .try_init()
                .expect("the only subscriber of this test binary");
            logs
        }))
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The layers of the module docs' Layout, bottom first.
    const LAYERS: &[&[&str]] = &[
        &["error", "metrics", "procfs", "seal", "transport"],
        &["remote"],
        &["config", "origin", "protocol", "private"],
        &["chromium"],
        &["browser"],
        &["context"],
        &["page"],
        &["pool"],
        &["agent"],
        &["service"],
        &["browsers"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    // The reader the root crate's layering test uses: code only (doc links, comments and unit
    // tests skipped), every name taken through `crate::`.
    use super::imports::{code, named};

    #[test]
    fn each_module_imports_only_the_layers_below_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut seen = 0;
        for entry in std::fs::read_dir(&src).expect("src/") {
            let path = entry.expect("an entry").path();
            let Some(module) = path.file_stem().and_then(|s| s.to_str()).filter(|m| *m != "lib") else {
                continue;
            };
            let own = layer(module).unwrap_or_else(|| panic!("src/{module}.rs is in no layer of the Layout"));
            // A module in a folder (`browsers/`) is all its files.
            let files = if path.is_dir() {
                std::fs::read_dir(&path)
                    .expect("a module's folder")
                    .map(|e| e.expect("an entry").path())
                    .collect()
            } else {
                vec![path.clone()]
            };
            // Each file's shipped code (a file's unit tests are skipped, not the files after it).
            let source: Vec<String> =
                files.iter().map(|f| code(&std::fs::read_to_string(f).expect("a source file"))).collect();
            for name in named(&source.join("\n")) {
                // Items re-exported at the root (`crate::NO_EXTERNAL_HOSTS`) are not modules.
                let Some(theirs) = layer(&name) else { continue };
                assert!(theirs < own, "src/{module}.rs (layer {own}) uses `{name}` (layer {theirs})");
            }
            seen += 1;
        }
        assert_eq!(seen, LAYERS.iter().map(|l| l.len()).sum::<usize>(), "every module has a layer");
    }
    use std::path::PathBuf;

    #[tokio::test]
    async fn a_missing_page_or_browser_is_a_clear_error() {
        let config = WebSdkConfig { page_dir: PathBuf::from("/nonexistent"), ..WebSdkConfig::isolated() };
        let err = WebSdk::launch(config).await.unwrap_err().to_string();
        assert!(err.contains("websdk/page/build.sh"), "{err}");
        // A page of its own, so this runs before (and without) websdk/page/build.sh.
        let page = tempfile::tempdir().expect("a temp dir");
        std::fs::write(page.path().join("bundle.js"), "").expect("a stand-in bundle");
        let config = WebSdkConfig {
            chromium: PathBuf::from("/nonexistent/chromium"),
            page_dir: page.path().to_owned(),
            ..WebSdkConfig::isolated()
        };
        let err = WebSdk::launch(config).await.unwrap_err().to_string();
        assert!(err.contains("apt-get install chromium"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_setting_is_refused_before_anything_starts() {
        let config = WebSdkConfig { max_agents: 0, ..WebSdkConfig::isolated() };
        let err = WebSdk::launch(config).await.unwrap_err();
        assert!(matches!(err, WebSdkError::Config { field: "max_agents", .. }), "{err}");
    }
}
