//! How Chromium is started: its whole command line (nothing is added behind the service's back:
//! not by the driver, whose launcher is not used, nor by a distribution's wrapper script), its
//! environment, and the thread that starts it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::runtime::Handle;

use crate::config::WebSdkConfig;
use crate::error::WebSdkError;

/// Chromium's arguments for a browser whose profile is `profile`: `--name` or `--name=value`
/// each, exactly as Chromium reads them, then [`WebSdkConfig::extra_args`] as given.
pub(crate) fn chromium_args(config: &WebSdkConfig, profile: &Path, root: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        // DevTools over fds 3 and 4 (the service's relay), never a listening socket.
        "--remote-debugging-pipe",
        "--headless",
        // Nothing the browser does on its own leaves the machine: no update checks, component
        // downloads, sync, crash or metrics uploads, pings, Safe Browsing lookups or reporting.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--metrics-recording-only",
        "--no-pings",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        // The SDK's traffic over TCP only (TLS, WebSockets), as the service's measurements assume.
        "--disable-quic",
        // No GPU on a server; /dev/shm is small in containers.
        "--disable-gpu",
        "--disable-dev-shm-usage",
        // A bare profile: no extensions, apps, first-run or default-browser prompts, no keyring.
        "--disable-extensions",
        "--disable-component-extensions-with-background-pages",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--password-store=basic",
        // Pages are never visible: their timers (the SDK's) must not be throttled as background
        // tabs' are, and a busy page is not a hung one.
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-hang-monitor",
        "--disable-ipc-flooding-protection",
        // As every earlier measurement ran (the driver's default): the SDK sees
        // navigator.webdriver.
        "--enable-automation",
        "--lang=en-US",
        // Agents get fake media devices, granted without a prompt, and play nothing.
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ]
    .map(str::to_owned)
    .into();
    args.push(format!("--user-data-dir={}", profile.display()));
    if let Some(rules) = &config.host_resolver_rules {
        args.push(format!("--host-resolver-rules={rules}"));
    }
    if config.accept_invalid_certificates {
        args.push("--ignore-certificate-errors".to_owned());
    }
    // Chromium refuses to start as root with its sandbox on; as anyone else it stays on.
    if root {
        args.push("--no-sandbox".to_owned());
    }
    args.extend(config.extra_args.iter().cloned());
    // The first tab's URL (without one, Chromium opens its new-tab page, which fetches a search
    // engine's page); the service closes that tab once it is connected.
    args.push(FIRST_TAB.to_owned());
    args
}

/// The URL of the tab Chromium opens at start, always last on its command line.
pub(crate) const FIRST_TAB: &str = "about:blank";

/// Chromium's environment: nothing of the service's own (which may hold an access token), a
/// `HOME` of its own inside its private directory (its certificate database and caches go there
/// and are removed with it), a `TMPDIR` there too when it fits, and a search path.
///
/// `TMPDIR` is where Chromium makes its `org.chromium.Chromium.*` directories (its
/// process-singleton socket), which a killed Chromium leaves behind; inside the private
/// directory they go with it. A Unix socket's path has at most 107 bytes, and Chromium does not
/// start without that socket: a private directory too deep for it keeps the service's `TMPDIR`.
fn environment(home: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    environment_with(home, std::env::var_os("TMPDIR"))
}

/// [`environment`], with the service's own `TMPDIR` given.
fn environment_with(
    home: &Path,
    service_tmp: Option<std::ffi::OsString>,
) -> Vec<(&'static str, std::ffi::OsString)> {
    const SOCKET_TAIL: usize = "/org.chromium.Chromium.XXXXXX/SingletonSocket".len();
    let mut env =
        vec![("HOME", home.as_os_str().to_owned()), ("PATH", "/usr/local/bin:/usr/bin:/bin".into())];
    if home.as_os_str().len() + SOCKET_TAIL <= 107 {
        env.push(("TMPDIR", home.as_os_str().to_owned()));
    } else if let Some(tmp) = service_tmp {
        env.push(("TMPDIR", tmp));
    }
    env
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread that lives as long as the supervisor and starts every browser: the launcher script
/// sets a parent-death signal, which fires when the thread that forked ends, so it must not be a
/// runtime thread that may come and go.
pub(crate) struct Launcher {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl Launcher {
    pub(crate) fn start() -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("callagent-websdk-launcher".into())
            .spawn(move || rx.into_iter().for_each(|job| job()));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no launcher thread; browsers start on the runtime");
            return Self { jobs: None };
        }
        Self { jobs: Some(jobs) }
    }

    /// Starts `script` (the launcher script in the browser's directory) with `args`. Its stdin
    /// and stdout become Chromium's DevTools pipe; it is killed if the returned child is dropped.
    pub(crate) async fn spawn(&self, script: &Path, args: &[String]) -> io::Result<Child> {
        let home = script.parent().map_or_else(|| PathBuf::from("/"), Path::to_owned);
        let mut command = Command::new(script);
        command
            .args(args)
            .env_clear()
            .envs(environment(&home))
            .current_dir(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let Some(jobs) = &self.jobs else {
            return command.spawn();
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = Handle::current();
        let job: Job = Box::new(move || {
            let _runtime = handle.enter();
            // A launch nobody waits for any more: dropping the child kills it.
            let _ = tx.send(command.spawn());
        });
        jobs.send(job).map_err(|_| io::Error::other("the launcher thread is gone"))?;
        rx.await.unwrap_or_else(|_| Err(io::Error::other("the launcher thread dropped the launch")))
    }
}

/// Chromium's stderr: what it printed before it answered (why it did not start), kept for a
/// launch error; once the browser answers, the rest is read and discarded, never logged (it
/// could hold what a page printed).
pub(crate) struct Stderr(Arc<Mutex<Option<Vec<u8>>>>);

/// What is kept of a launch's stderr.
const STDERR_KEPT: usize = 8 * 1024;

impl Stderr {
    pub(crate) fn capture(stderr: Option<ChildStderr>) -> Self {
        let kept = Arc::new(Mutex::new(Some(Vec::new())));
        if let Some(mut stderr) = stderr {
            let sink = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                    let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(text) = kept.as_mut().filter(|t| t.len() < STDERR_KEPT) {
                        text.extend_from_slice(&chunk[..n.min(STDERR_KEPT - text.len())]);
                    }
                }
            });
        }
        Self(kept)
    }

    /// The browser answered: nothing more is kept.
    pub(crate) fn started(self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// A launch error: `what` went wrong, and the last lines Chromium printed.
    pub(crate) fn launch_error(&self, what: &str) -> WebSdkError {
        let text = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        // D-Bus complaints are Chromium's noise on any server; they say nothing of the failure.
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.contains("dbus")).collect();
        let last = lines[lines.len().saturating_sub(4)..].join(" | ");
        WebSdkError::BrowserGone(if last.is_empty() {
            format!("Chromium did not start: {what}")
        } else {
            format!("Chromium did not start: {what}; it printed: {last}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{REFUSED_FLAGS, refuse_extra_arg};

    #[test]
    fn every_argument_is_a_flag_as_chromium_reads_it() {
        let config =
            WebSdkConfig { extra_args: vec!["--window-size=800,600".into()], ..WebSdkConfig::isolated() };
        let args = chromium_args(&config, Path::new("/tmp/p"), false);
        assert_eq!(args.last().map(String::as_str), Some(FIRST_TAB));
        let args = &args[..args.len() - 1];
        for arg in args {
            assert!(arg.starts_with("--") && !arg.starts_with("---"), "{arg}");
            assert!(
                refuse_extra_arg(arg).is_none() || REFUSED_FLAGS.iter().any(|(f, _)| arg.starts_with(f)),
                "{arg}"
            );
        }
        assert!(args.contains(&"--remote-debugging-pipe".to_owned()));
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_owned()));
        assert!(args.contains(&format!("--host-resolver-rules={}", crate::NO_EXTERNAL_HOSTS)));
        assert_eq!(args.last().map(String::as_str), Some("--window-size=800,600"), "extra arguments last");
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--remote-debugging-port") || a == "--ignore-certificate-errors")
        );
        assert!(!args.contains(&"--no-sandbox".to_owned()), "the sandbox stays on when not root");
        assert!(chromium_args(&config, Path::new("/tmp/p"), true).contains(&"--no-sandbox".to_owned()));
        let rig = WebSdkConfig { accept_invalid_certificates: true, ..WebSdkConfig::default() };
        assert!(
            chromium_args(&rig, Path::new("/tmp/p"), false)
                .contains(&"--ignore-certificate-errors".to_owned())
        );
    }

    #[test]
    fn extra_arguments_that_undo_a_protection_are_refused() {
        assert_eq!(refuse_extra_arg("--window-size=1,1"), None);
        assert_eq!(refuse_extra_arg("--enable-features=A,B"), None);
        // Each protection's flag, written out here rather than read from REFUSED_FLAGS, so that
        // a flag dropped from that list fails this test.
        for bad in [
            "--remote-debugging-port=9222",
            "--remote-debugging-address=0.0.0.0",
            "--remote-debugging-pipe",
            "--user-data-dir=/x",
            "--ignore-certificate-errors",
            "--ignore-certificate-errors-spki-list=AAAA",
            "--no-sandbox",
            "--disable-setuid-sandbox",
            "--host-resolver-rules=MAP * 1.2.3.4",
            "--enable-logging=stderr",
        ] {
            let why = refuse_extra_arg(bad).unwrap_or_default();
            assert!(why.contains("not allowed"), "{bad}: {why}");
        }
        for malformed in ["window-size=1,1", "-v", "--", "--a b", "--a\0"] {
            assert!(refuse_extra_arg(malformed).is_some(), "{malformed}");
        }
    }

    #[test]
    fn chromium_keeps_its_temporary_files_in_its_own_directory_when_they_fit() {
        let tmp = |home: &str| {
            environment_with(Path::new(home), Some("/srv/tmp".into()))
                .into_iter()
                .find(|(k, _)| *k == "TMPDIR")
                .map(|(_, v)| v)
        };
        let short = "/tmp/callagent-websdk-vxVFLITCSljHMnZc/browser-1";
        assert_eq!(tmp(short), Some(short.into()));
        let deep = format!("/tmp/{}/callagent-websdk-vxVFLITCSljHMnZc/browser-1", "d".repeat(60));
        // A socket path over 107 bytes stops Chromium: the service's TMPDIR then.
        assert_eq!(tmp(&deep), Some("/srv/tmp".into()));
    }

    #[test]
    fn chromium_gets_none_of_the_service_environment() {
        let env = environment(Path::new("/tmp/b"));
        assert!(env.iter().all(|(k, _)| ["HOME", "PATH", "TMPDIR"].contains(k)), "{env:?}");
        assert!(env.contains(&("HOME", "/tmp/b".into())));
    }
}
