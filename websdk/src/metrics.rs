//! The service's metric names (a leaf: every module that records imports them from here).
//! Every series carries [`BROWSER`], the browser's configured name.

/// The label every series carries: [`WebSdkConfig::name`](crate::WebSdkConfig::name).
pub const BROWSER: &str = "browser";
/// 1 while the browser is lost (its process ended, its link dropped or it hung) and is being
/// started again or reconnected; 0 while it runs, and once the service closed it (a browser
/// retired from DNS is not a problem to look at).
pub const BROWSER_LOST: &str = "callagent_websdk_browser_lost";

/// Pages live with the pool (placed or warm).
pub const PAGES: &str = "callagent_websdk_pages";
/// Warm pages: the SDK loaded, no agent yet.
pub const WARM_PAGES: &str = "callagent_websdk_warm_pages";
/// Live agents created through the service.
pub const AGENTS: &str = "callagent_websdk_agents";
/// Creations in flight through the service.
pub const CREATIONS: &str = "callagent_websdk_creations_in_flight";
/// Time to open a page and start the SDK bundle in it.
pub const PAGE_LOAD: &str = "callagent_websdk_page_load_seconds";
/// Browser restarts, by `reason` (`exited`, `disconnected`).
pub const RESTARTS: &str = "callagent_websdk_browser_restarts_total";
/// Suggested buckets for [`PAGE_LOAD`], in seconds (configure them on your Prometheus recorder).
pub const PAGE_LOAD_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0];
