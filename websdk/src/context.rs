//! What pages, the pool and agents need of the service, without the pool: the browser's
//! supervisor, the page server, the configuration and the service's private directory. Every
//! page handle holds it, so the browser lives while any page or agent does.

use std::sync::Arc;

use crate::browser::Supervisor;
use crate::config::WebSdkConfig;
use crate::private::ServiceDir;
use crate::server::Server;

/// See the [module docs](self).
pub(crate) struct Context {
    pub(crate) supervisor: Supervisor,
    pub(crate) server: Server,
    pub(crate) config: Arc<WebSdkConfig>,
    /// This service's private directory (each browser's profile goes in it). Dropped after
    /// the supervisor, whose drop ends the browser (its watcher removes the browser's own
    /// directory); it removes what is left.
    pub(crate) dir: ServiceDir,
}
