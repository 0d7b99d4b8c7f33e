//! The browser and its supervision: one Chromium at a time, owned by one [`Instance`]; the
//! [`Supervisor`] notices its death, reaps it, removes its profile and starts the next one
//! (bounded and spaced) when a creation asks.
//!
//! Ownership: the supervisor's watcher task owns the running browser. It ends the browser when
//! the process exits, the DevTools connection ends, or the service is closed or dropped, and is
//! the only place that kills, reaps and cleans up. Everything else holds an `Arc<Instance>` and
//! races its calls against [`Instance::died`], so no call outlives the browser by more than a
//! poll.
//!
//! Split along chromiumoxide's handle/handler line: [`Instance`] (`instance`) is the handle every
//! caller holds; the watcher (`watch`) drives the connection and ends the browser; the
//! [`Supervisor`] (`supervisor`) starts, connects and replaces browsers, asking the restart
//! policy (`restart`: pure, time passed in) whether and when.

use std::path::Path;
use std::time::Duration;

mod instance;
mod restart;
mod supervisor;
mod watch;

pub(crate) use instance::Instance;
pub(crate) use supervisor::Supervisor;

/// How often the watcher looks at the browser process (besides the DevTools connection, which
/// usually tells first): a death is noticed within this.
const PROCESS_CHECK: Duration = Duration::from_millis(200);
/// How long a page close or a graceful browser close may take before it is given up on.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a browser ended: the `reason` label of `callagent_websdk_browser_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Death {
    /// The process exited (crashed, killed, out of memory).
    Exited,
    /// The DevTools connection ended while the process was still there.
    Disconnected,
    /// The service closed it.
    Closed,
}

impl Death {
    fn label(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Disconnected => "disconnected",
            Self::Closed => "closed",
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the browser's profile");
    }
}
