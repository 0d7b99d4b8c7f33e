//! The page pool: which page a creation runs on. A page hosts up to `agents_per_page` agents
//! (each on its own `CallClient`); `warm_pages` pages wait with the SDK loaded and no agent yet.
//!
//! Ownership stays the page module's: a page with agents is owned by them (the pool only holds a
//! weak reference, so the page closes when its last agent is gone); a warm page is owned by the
//! pool until a creation takes it. A [`Place`] is a creation's (then its agent's) share of a
//! page, given back when dropped at any await point.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use metrics::{Gauge, Histogram, Unit};
use tokio::sync::Semaphore;

use crate::context::Context;
use crate::error::WebSdkError;
use crate::metrics::{AGENTS, BROWSER, CREATIONS, PAGE_LOAD, PAGES, WARM_PAGES};
use crate::page::{PageHandle, Tab, open_ready};

/// Pages that may load at once. One: loading is CPU-bound (parsing the SDK bundle), so more
/// only slow each other down on a small machine, and a burst of creations that found no room
/// must not each open a page before any could share one: the next in turn looks again first.
const CONCURRENT_LOADS: usize = 1;

/// The pool's metric handles, resolved once (against the recorder installed at launch), each
/// labelled with the browser's name: several services' gauges must not overwrite each other.
#[derive(Debug)]
pub(crate) struct PoolMetrics {
    pages: Gauge,
    warm: Gauge,
    agents: Gauge,
    creations: Gauge,
    load: Histogram,
}

impl PoolMetrics {
    fn new(name: &str) -> Self {
        metrics::describe_gauge!(
            PAGES,
            Unit::Count,
            "Browser pages the call-agent service holds (with agents, or warm)."
        );
        metrics::describe_gauge!(
            WARM_PAGES,
            Unit::Count,
            "Pages with the SDK loaded waiting for a creation."
        );
        metrics::describe_gauge!(AGENTS, Unit::Count, "Live call agents created through the service.");
        metrics::describe_gauge!(
            CREATIONS,
            Unit::Count,
            "Call-agent creations in flight through the service."
        );
        metrics::describe_histogram!(
            PAGE_LOAD,
            Unit::Seconds,
            "Time to open a page and start the SDK bundle in it."
        );
        let name = name.to_owned();
        Self {
            pages: metrics::gauge!(PAGES, BROWSER => name.clone()),
            warm: metrics::gauge!(WARM_PAGES, BROWSER => name.clone()),
            agents: metrics::gauge!(AGENTS, BROWSER => name.clone()),
            creations: metrics::gauge!(CREATIONS, BROWSER => name.clone()),
            load: metrics::histogram!(PAGE_LOAD, BROWSER => name),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Owned by the pool until a creation takes one.
    warm: Vec<Arc<PageHandle>>,
    /// Owned by their agents and creations.
    placed: Vec<Weak<PageHandle>>,
    closed: bool,
}

/// What the pool and every [`Place`] share: the pages and the metrics.
struct Core {
    inner: Mutex<Inner>,
    metrics: PoolMetrics,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the page gauges from the pages alive now.
    fn publish(&self, inner: &mut Inner) {
        inner.placed.retain(|w| w.strong_count() > 0);
        self.metrics.pages.set((inner.placed.len() + inner.warm.len()) as f64);
        self.metrics.warm.set(inner.warm.len() as f64);
    }
}

/// See the [module docs](self).
pub(crate) struct Pool {
    ctx: Arc<Context>,
    agents_per_page: usize,
    warm_pages: usize,
    core: Arc<Core>,
    loads: Semaphore,
    refilling: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (warm, placed) = self.counts();
        f.debug_struct("Pool").field("warm", &warm).field("placed", &placed).finish_non_exhaustive()
    }
}

/// A creation's share of a page, then its agent's; given back when dropped.
pub(crate) struct Place {
    /// `None` once given back.
    page: Option<Arc<PageHandle>>,
    identity: String,
    creating: bool,
    core: Arc<Core>,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place").field("creating", &self.creating).finish_non_exhaustive()
    }
}

impl Place {
    fn new(page: Arc<PageHandle>, identity: &str, core: &Arc<Core>) -> Self {
        core.metrics.creations.increment(1.0);
        Self { page: Some(page), identity: identity.to_owned(), creating: true, core: Arc::clone(core) }
    }

    /// The creation made an agent, which keeps the place.
    pub(crate) fn created(&mut self) {
        if self.page.is_some() && std::mem::replace(&mut self.creating, false) {
            self.core.metrics.creations.decrement(1.0);
            self.core.metrics.agents.increment(1.0);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(page) = self.page.take() else { return };
        if self.creating {
            self.core.metrics.creations.decrement(1.0);
        } else {
            self.core.metrics.agents.decrement(1.0);
        }
        page.load.release(&self.identity);
        // The page closes if this was its last user (the agent's tab goes with it).
        drop(page);
        self.core.publish(&mut self.core.lock());
    }
}

impl Pool {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        let metrics = PoolMetrics::new(&ctx.config.name);
        Self {
            agents_per_page: ctx.config.agents_per_page,
            warm_pages: ctx.config.warm_pages,
            ctx,
            core: Arc::new(Core { inner: Mutex::default(), metrics }),
            loads: Semaphore::new(CONCURRENT_LOADS),
            refilling: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.core.lock()
    }

    fn publish(&self, inner: &mut Inner) {
        self.core.publish(inner);
    }

    /// Warm pages and pages with agents or creations, alive now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.warm.len(), inner.placed.iter().filter(|w| w.strong_count() > 0).count())
    }

    /// A page with room for a creation of `identity` (of `tenant`, with tenants: on a page of its
    /// tenant's or a fresh one), and the place taken on it: the fullest page
    /// with room (fewer pages, less memory), else a warm page, else a page opened now (at most
    /// [`CONCURRENT_LOADS`] at once; once its turn comes a creation looks again, as another one's
    /// new page may have room). Starts refilling the warm pages.
    pub(crate) async fn place(
        &self,
        identity: &str,
        tenant: Option<&str>,
    ) -> Result<(Tab, Place), WebSdkError> {
        let placed = match self.take(identity, tenant) {
            Some(page) => page,
            None => {
                let _turn = self.loads.acquire().await.map_err(|_| WebSdkError::closed())?;
                match self.take(identity, tenant) {
                    Some(page) => page,
                    None => {
                        let page = self.load().await?;
                        self.adopt(&page, identity, tenant)?;
                        page
                    }
                }
            }
        };
        let place = Place::new(Arc::clone(&placed), identity, &self.core);
        Ok((Tab::on(placed, &self.ctx), place))
    }

    /// A place on a page the pool has, if one has room.
    fn take(&self, identity: &str, tenant: Option<&str>) -> Option<Arc<PageHandle>> {
        let mut inner = self.lock();
        if inner.closed {
            return None;
        }
        inner.placed.retain(|w| w.upgrade().is_some_and(|p| !p.is_gone()));
        let mut candidates: Vec<Arc<PageHandle>> = inner.placed.iter().filter_map(Weak::upgrade).collect();
        candidates.sort_by_cached_key(|p| std::cmp::Reverse(p.load.places()));
        let found = candidates.into_iter().find(|p| p.load.try_take(identity, tenant, self.agents_per_page));
        let found = found.or_else(|| {
            while let Some(page) = inner.warm.pop() {
                if !page.is_gone() && page.load.try_take(identity, tenant, self.agents_per_page) {
                    inner.placed.push(Arc::downgrade(&page));
                    return Some(page);
                }
            }
            None
        });
        self.publish(&mut inner);
        found
    }

    /// Registers a page just opened for a creation of `identity`.
    fn adopt(&self, page: &Arc<PageHandle>, identity: &str, tenant: Option<&str>) -> Result<(), WebSdkError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(WebSdkError::closed());
        }
        // A fresh page has room for anyone.
        page.load.try_take(identity, tenant, self.agents_per_page);
        inner.placed.push(Arc::downgrade(page));
        self.publish(&mut inner);
        Ok(())
    }

    /// Opens a page with the SDK started, timing it.
    async fn load(&self) -> Result<Arc<PageHandle>, WebSdkError> {
        let started = Instant::now();
        let page = open_ready(&self.ctx).await?;
        self.core.metrics.load.record(started.elapsed().as_secs_f64());
        Ok(page)
    }

    /// Tops the warm pages up to `warm_pages` in the background, while the browser runs (a
    /// dead browser is started again by the next creation, not by the pool). Called once a
    /// creation has settled, so loading a page (CPU-bound) does not slow the creation down.
    pub(crate) fn refill(self: &Arc<Self>) {
        // A creation dropped outside a runtime (at the end of a program) refills nothing.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.warm_pages == 0 || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            // Holds the pool weakly: a refill never keeps a dropped service alive.
            while let Some(pool) = weak.upgrade() {
                let wanted = {
                    let inner = pool.lock();
                    !inner.closed && inner.warm.len() < pool.warm_pages
                };
                let running = pool.ctx.supervisor.running().await.is_some_and(|i| !i.is_dead());
                if !wanted || !running {
                    break;
                }
                let Ok(_turn) = pool.loads.acquire().await else { break };
                match pool.load().await {
                    Ok(page) => {
                        let mut inner = pool.lock();
                        if inner.closed {
                            break;
                        }
                        inner.warm.push(page);
                        pool.publish(&mut inner);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "a warm page did not open; the next creation opens its own");
                        break;
                    }
                }
            }
            if let Some(pool) = weak.upgrade() {
                pool.refilling.store(false, Ordering::Release);
            }
        });
    }

    /// Closes the warm pages and takes no more creations.
    pub(crate) fn close(&self) {
        let warm = {
            let mut inner = self.lock();
            inner.closed = true;
            let warm = std::mem::take(&mut inner.warm);
            self.publish(&mut inner);
            warm
        };
        drop(warm);
        self.loads.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_browser_records_its_own_series() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let (a, b) = (PoolMetrics::new("pod-0"), PoolMetrics::new("pod-1"));
            a.pages.set(3.0);
            b.pages.set(1.0);
            a.agents.increment(2.0);
            b.load.record(0.5);
        });
        let shown = handle.render();
        // Before the label, the second `set` overwrote the first: one series said 1 page.
        for series in [
            r#"callagent_websdk_pages{browser="pod-0"} 3"#,
            r#"callagent_websdk_pages{browser="pod-1"} 1"#,
            r#"callagent_websdk_agents{browser="pod-0"} 2"#,
            r#"callagent_websdk_page_load_seconds_count{browser="pod-1"} 1"#,
        ] {
            assert!(shown.lines().any(|l| l == series), "no `{series}` in:\n{shown}");
        }
    }
}
