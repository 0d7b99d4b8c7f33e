//! The driver's TRACE, captured from every target while a token is used, the `log` crate's
//! records included (as `tracing_subscriber::fmt().init()`, which the README tells users to call,
//! forwards them), and the checks that no form of the token is in it (tests/security.rs for a
//! local browser, tests/remote.rs for one on another host).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing_subscriber::Layer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything traced, at every level, from every thread (the driver logs on the runtime's
/// workers), from [`capture`](Self::capture) on. The process's global subscriber is installed by
/// the first capture; a later one (another test of the binary, run after) starts from empty.
/// Recording stops when it is dropped, so the binary's later tests are not traced.
pub(crate) struct Trace {
    out: Captured,
}

/// Whether a [`Trace`] is recording.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// Where the global subscriber writes, once installed.
static OUT: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();

impl Trace {
    pub(crate) fn capture() -> Self {
        let out = OUT
            .get_or_init(|| {
                use tracing_subscriber::layer::SubscriberExt;
                let out = Captured::default();
                let writer = out.clone();
                let recording = tracing_subscriber::filter::filter_fn(|_| RECORDING.load(Ordering::Relaxed));
                let layer = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .with_filter(recording);
                let subscriber = tracing_subscriber::registry().with(layer);
                // `try_init`, not `set_global_default`: it also forwards the `log` crate's
                // records (tungstenite's, rustls's), as users' `fmt().init()` does.
                tracing_subscriber::util::SubscriberInitExt::try_init(subscriber)
                    .expect("the test binary's only subscriber");
                out
            })
            .clone();
        out.0.lock().unwrap().clear();
        RECORDING.store(true, Ordering::Relaxed);
        Self { out }
    }

    /// Asserts the trace holds the driver's traffic, the sealed creation, and no form of `token`
    /// (as written, its claims segment, base64 of it at each alignment), and that `shown` (what
    /// the caller printed of the result) holds none either.
    pub(crate) fn assert_no_token(&self, token: &str, shown: &str) {
        let text = self.text();
        assert!(text.contains("Sending") && text.contains("Received"), "the driver's TRACE was captured");
        // The driver's WebSocket crate logs through `log`: its records were forwarded here.
        assert!(text.contains("tungstenite"), "the dependencies' `log` records were captured");
        // The creation, its token sealed, did cross the traced channel.
        assert!(text.contains("callagent.create") && text.contains("sealed"), "the creation was traced");
        let payload = token.split('.').nth(1).unwrap();
        for (what, secret) in [("the token", token), ("its claims", payload)] {
            assert!(!text.contains(secret), "{what} leaked into the trace");
            assert!(!shown.contains(secret), "{what} leaked into the result's Debug or Display");
        }
        // Nor base64 of it (as a body or a byte string would carry it), at each alignment.
        use base64::Engine;
        for skip in 0..3 {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&token.as_bytes()[skip..]);
            let stable = &encoded[..encoded.len() - 4];
            assert!(!text.contains(stable), "the token leaked into the trace as base64");
        }
    }
}

impl Trace {
    /// What was captured so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().unwrap()).into_owned()
    }

    /// Asserts that none of `secrets` (a header's value, a query token) is in the trace.
    #[allow(dead_code, reason = "tests/remote.rs's; each test binary compiles this file")]
    pub(crate) fn assert_none_of(&self, secrets: &[&str]) {
        let text = self.text();
        for secret in secrets {
            let line = text.lines().find(|l| l.contains(secret));
            assert!(line.is_none(), "a secret reached the trace: {line:?}");
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        RECORDING.store(false, Ordering::Relaxed);
    }
}
