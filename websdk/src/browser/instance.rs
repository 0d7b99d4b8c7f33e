//! One running browser, as every caller holds it: its DevTools calls, its pages, its death.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, CreateTargetParams, TargetId};
use chromiumoxide::error::CdpError;
use chromiumoxide::{Browser, Page};
use tokio::runtime::Handle;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::{CLOSE_TIMEOUT, Death};
use crate::error::{WebSdkError, human};

/// One running Chromium.
pub(crate) struct Instance {
    /// `None` once the watcher has taken it to end it.
    pub(super) browser: RwLock<Option<Browser>>,
    pub(super) pid: Option<u32>,
    pub(super) generation: u64,
    /// This browser's own directory: its profile and its launcher script. Removed at its end.
    /// `None` for a remote browser.
    pub(super) dir: Option<PathBuf>,
    /// The browser context the service's pages open in, made for this connection with
    /// `disposeOnDetach`: when the connection goes, however it goes (closed, the link lost, the
    /// service killed), Chromium disposes the context with every page in it. So no page of the
    /// service outlives its connection in a browser it does not own. Set once the browser answers.
    pub(super) context: OnceLock<BrowserContextId>,
    /// Whether this is a remote browser (shared, not the service's to close).
    pub(super) remote: bool,
    pub(super) died: CancellationToken,
    pub(super) cause: OnceLock<(Death, String)>,
    /// Set when the browser is reaped and its directory removed.
    pub(super) ended: CancellationToken,
    /// The service asks the watcher to end the browser.
    pub(super) shutdown: CancellationToken,
    /// Each open page's "gone" signal, fired when the browser reports it crashed or closed.
    pub(super) pages: Mutex<HashMap<TargetId, CancellationToken>>,
    pub(super) handle: Handle,
    /// The service's `callagent_websdk_browser_lost`, set when this browser dies.
    pub(super) lost: metrics::Gauge,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("pid", &self.pid)
            .field("generation", &self.generation)
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// The service's browser context in this browser (see the field), once made.
    pub(crate) fn context(&self) -> Option<&BrowserContextId> {
        self.context.get()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// A local browser's profile directory (`None` for a remote one).
    pub(crate) fn profile(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("profile"))
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.died.is_cancelled()
    }

    /// Resolves when the browser is dead (or being ended).
    pub(crate) fn died(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.died.cancelled()
    }

    /// The error a call gets when the browser died under it.
    pub(crate) fn died_error(&self) -> WebSdkError {
        match self.cause.get() {
            Some((Death::Closed, _)) => WebSdkError::closed(),
            Some((_, why)) => WebSdkError::BrowserDied(why.clone()),
            None => WebSdkError::BrowserDied("the browser is ending".into()),
        }
    }

    /// A remote browser that could not be reached: dead from the start, so the next creation
    /// connects again (spaced).
    pub(super) fn unreachable(
        generation: u64,
        why: String,
        closed: &CancellationToken,
        lost: metrics::Gauge,
    ) -> Arc<Self> {
        let instance = Self {
            browser: RwLock::new(None),
            pid: None,
            generation,
            dir: None,
            context: OnceLock::new(),
            remote: true,
            died: CancellationToken::new(),
            cause: OnceLock::new(),
            ended: CancellationToken::new(),
            shutdown: closed.child_token(),
            pages: Mutex::new(HashMap::new()),
            handle: Handle::current(),
            lost,
        };
        instance.die(Death::Disconnected, why);
        instance.ended.cancel();
        Arc::new(instance)
    }

    pub(super) fn die(&self, death: Death, why: String) {
        let _ = self.cause.set((death, why));
        // Before `died`: whoever sees a call fail on the loss sees the browser lost too.
        self.lost.set(if death == Death::Closed { 0.0 } else { 1.0 });
        self.died.cancel();
        for (_, gone) in self.pages.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            gone.cancel();
        }
    }

    /// The browser, shared; an error as soon as it dies (the watcher takes it then).
    async fn browser(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Option<Browser>>, WebSdkError> {
        tokio::select! {
            biased;
            _ = self.died.cancelled() => Err(self.died_error()),
            guard = self.browser.read() => Ok(guard),
        }
    }

    /// A DevTools call to the browser, failing as soon as the browser dies.
    pub(crate) async fn execute<C>(&self, cmd: C) -> Result<C::Response, WebSdkError>
    where
        C: chromiumoxide::types::Command,
    {
        let guard = self.browser().await?;
        let browser = guard.as_ref().ok_or_else(|| self.died_error())?;
        tokio::select! {
            biased;
            _ = self.died.cancelled() => Err(self.died_error()),
            r = browser.execute(cmd) => r.map(|r| r.result).map_err(|e| self.cdp_error(e)),
        }
    }

    /// Opens a page at `url`, in the service's browser context, and registers its "gone" signal.
    /// Fails as soon as the browser dies.
    pub(crate) async fn new_page(&self, url: &str) -> Result<(Page, CancellationToken), WebSdkError> {
        let guard = self.browser().await?;
        let browser = guard.as_ref().ok_or_else(|| self.died_error())?;
        let mut params = CreateTargetParams::new(url);
        // On a remote browser, each page in a window of its own, so that it is the visible page
        // there. Tabs sharing a window are hidden but for one, and Chromium runs a hidden page's
        // timers (the SDK's) at most once a second unless started with the flags a local browser
        // gets from this crate (`chromium.rs`), which a remote host's may lack: there, three tabs'
        // chains of five 10 ms timers took 4.9 s in the two hidden ones and 52 ms in the visible
        // one, and a monitor's creations over three such hosts hit their 60 s timeout from 120
        // identities a minute (docs/monitor.md, "Scale"). A local browser keeps tabs: a window
        // costs about 10 MiB more per page (websdk/docs/capacity.md).
        params.new_window = self.remote.then_some(true);
        params.browser_context_id =
            Some(self.context.get().cloned().ok_or_else(|| {
                WebSdkError::BrowserDied("the browser has no context for pages yet".into())
            })?);
        let page = tokio::select! {
            biased;
            _ = self.died.cancelled() => return Err(self.died_error()),
            r = browser.new_page(params) => r.map_err(|e| self.cdp_error(e))?,
        };
        let gone = CancellationToken::new();
        self.pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(page.target_id().clone(), gone.clone());
        if self.is_dead() {
            gone.cancel();
        }
        Ok((page, gone))
    }

    /// Closes a page through the browser (`Target.closeTarget` works while the page is busy
    /// awaiting the SDK). Nothing to do once the browser is dead: its pages went with it.
    pub(crate) async fn close_page(&self, target: TargetId) {
        self.forget_page(&target);
        if self.is_dead() {
            return;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, self.execute(CloseTargetParams::new(target))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if self.is_dead() => tracing::trace!(error = %e, "page went with its browser"),
            Ok(Err(e)) => tracing::debug!(error = %e, "closing a page failed"),
            Err(_) => tracing::warn!("closing a page did not finish within {}", human(CLOSE_TIMEOUT)),
        }
    }

    pub(super) fn forget_page(&self, target: &TargetId) {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner).remove(target);
    }

    pub(super) fn page_gone(&self, target: &TargetId) {
        if let Some(gone) = self.pages.lock().unwrap_or_else(PoisonError::into_inner).remove(target) {
            gone.cancel();
        }
    }

    pub(super) fn cdp_error(&self, e: CdpError) -> WebSdkError {
        if self.is_dead() {
            return self.died_error();
        }
        WebSdkError::from(e)
    }
}
