//! What pages, the pool and agents need of the service, without the pool: the browser's
//! supervisor, the page's files, the configuration and the service's private directory. Every
//! page handle holds it, so the browser lives while any page or agent does.

use std::sync::Arc;

use crate::browser::Supervisor;
use crate::config::WebSdkConfig;
use crate::origin::Site;
use crate::private::ServiceDir;

/// See the [module docs](self).
pub(crate) struct Context {
    pub(crate) supervisor: Supervisor,
    /// The page's files, served to each page as it loads.
    pub(crate) site: Site,
    pub(crate) config: Arc<WebSdkConfig>,
    /// This service's private directory (each browser's profile goes in it). Dropped after
    /// the supervisor, whose drop ends the browser (its watcher removes the browser's own
    /// directory); it removes what is left.
    pub(crate) dir: ServiceDir,
}
