//! What keeps a real access token safe, checked in the running browser, not in the code that
//! starts it: Chromium's own command line (`/proc/PID/cmdline`), the sockets its processes own,
//! what a local https server with an untrusted certificate sees of the SDK, the driver's TRACE
//! with a token the SDK sends, the modes of the service's files, and the sandbox as an
//! unprivileged user.
//!
//! `#[ignore]`d like the conformance suite: `websdk/conformance.sh` runs them (as root) in a
//! network namespace with loopback alone, where port 443 of 127.0.0.1 is free for the stand-in
//! server.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_websdk::{TenantOf, WebSdk, WebSdkConfig};

#[path = "common/isolation.rs"]
mod isolation;
#[path = "common/trace.rs"]
mod trace;
use isolation::{acs_claims, isolated};
use trace::Trace;

fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

async fn launch(config: WebSdkConfig) -> WebSdk {
    isolated();
    WebSdk::launch(config).await.expect("Chromium and the built page (websdk/conformance.sh)")
}

/// A token the SDK accepts locally, so it goes on to send it to Azure's hosts.
fn valid(identity: &str) -> (CreateAgentRequest, String) {
    let token = AccessToken::unsigned(&acs_claims());
    let raw = token.expose_secret().to_owned();
    (CreateAgentRequest::new(identity, token, AgentKind::Acs), raw)
}

/// The flags `websdk/docs/security.md` documents in its command-line table, each as Chromium must
/// see it: every `--flag` in the table's first column, but rows that apply "only" in some case and
/// placeholders (`<…>`, `…`), which the test checks on their own.
fn documented_flags() -> Vec<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/security.md"))
        .expect("websdk/docs/security.md");
    let table = doc.split("## Chromium's command line").nth(1).expect("the command-line section");
    let mut flags = Vec::new();
    for row in table.lines().take_while(|l| !l.starts_with("## ")).filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        if cells.get(1).is_some_and(|why| why.starts_with("only")) {
            continue;
        }
        for span in cells[0].split('`').skip(1).step_by(2) {
            flags.extend(
                span.split_whitespace()
                    .filter(|f| f.starts_with("--") && !f.contains(['<', '…']))
                    .map(str::to_owned),
            );
        }
    }
    assert!(flags.len() > 20, "docs/security.md's table was read: {flags:?}");
    flags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn chromium_runs_with_every_flag_as_written() {
    let config = WebSdkConfig {
        extra_args: vec!["--window-size=640,480".into(), "--force-device-scale-factor=1".into()],
        warm_pages: 0,
        ..isolation::config()
    };
    let sdk = launch(config).await;
    let stats = sdk.stats().await.expect("stats");
    let pid = stats.pid.expect("a running browser");
    let args = cmdline(pid);
    let profile = stats.profile.expect("its profile");
    assert!(args[0].ends_with("/chromium"), "{args:?}");
    // Then the flags, and last the first tab's URL (not the new-tab page).
    assert_eq!(args.last().map(String::as_str), Some("about:blank"), "{args:?}");
    // Its effect: that tab is closed once connected, so with no warm pages the browser lists none.
    assert_eq!(sdk.open_pages().await.expect("pages"), 0, "the first tab is still open");
    let flags = &args[1..args.len() - 1];
    for flag in flags {
        assert!(flag.starts_with("--") && !flag.starts_with("---"), "a mangled flag {flag:?} in {args:?}");
    }
    let mut expected = documented_flags();
    expected.push(format!("--host-resolver-rules={}", callagent_websdk::NO_EXTERNAL_HOSTS));
    expected.push(format!("--user-data-dir={}", profile.display()));
    for flag in &expected {
        assert!(flags.contains(flag), "{flag} is not on Chromium's command line: {flags:?}");
    }
    // The extra arguments, as written and in order, last.
    assert_eq!(flags[flags.len() - 2..], ["--window-size=640,480", "--force-device-scale-factor=1"]);
    assert_eq!(
        flags.contains(&"--no-sandbox".to_owned()),
        running_as_root(),
        "the sandbox is off only as root"
    );
    for never in [
        "--remote-debugging-port",
        "--remote-debugging-address",
        "--ignore-certificate-errors",
        "--enable-remote-extensions",
        "--load-extension",
        "--enable-logging",
    ] {
        assert!(!flags.iter().any(|f| f.starts_with(never)), "{never} in {flags:?}");
    }
    // Nothing of the service's environment reaches Chromium.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| kv.split(|b| *b == b'=').next())
        .filter(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(names.iter().all(|k| ["HOME", "PATH", "TMPDIR", "PWD"].contains(&k.as_str())), "{names:?}");
    // Its temporary files (the org.chromium.Chromium.* directories a killed Chromium leaves
    // behind) go in its own directory, removed with it: TMPDIR is its HOME, under the service's.
    let var = |name: &str| {
        environ.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.strip_prefix(&format!("{name}=")).map(str::to_owned)
        })
    };
    let (home, tmp) = (var("HOME").expect("a HOME"), var("TMPDIR").expect("a TMPDIR"));
    assert_eq!(tmp, home, "Chromium's TMPDIR is its own directory");
    assert!(home.contains("callagent-websdk-"), "{home}");
    sdk.close().await;
}

/// Listening TCP sockets in this namespace: (inode, port).
fn listening() -> Vec<(u64, u16)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                continue;
            }
            let port = fields[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Some(Ok(inode))) = (port, fields.get(9).map(|i| i.parse::<u64>())) {
                found.push((inode, port));
            }
        }
    }
    found
}

fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// `GET path` on 127.0.0.1:`port`, as a local user would try it: the raw answer.
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn devtools_answers_no_local_client() {
    let sdk = launch(WebSdkConfig { warm_pages: 1, ..isolation::config() }).await;
    let tab = sdk.tab().await.expect("a page with the SDK");
    let pids = sdk.chromium_processes();
    assert!(pids.len() >= 3, "the browser and its helpers: {pids:?}");
    let browser = sdk.stats().await.expect("stats").pid.expect("a browser");
    assert!(cmdline(browser).contains(&"--remote-debugging-pipe".to_owned()));
    let listeners = listening();
    let chromium_sockets: HashSet<u64> = pids.iter().flat_map(|p| socket_inodes(*p)).collect();
    let owned: Vec<_> = listeners.iter().filter(|(inode, _)| chromium_sockets.contains(inode)).collect();
    assert!(owned.is_empty(), "Chromium listens on {owned:?}");
    // Nor does the service: the page is served over DevTools, and the relay stopped listening
    // once the driver connected.
    let ours = socket_inodes(std::process::id());
    let serving: Vec<_> = listeners.iter().filter(|(inode, _)| ours.contains(inode)).collect();
    assert!(serving.is_empty(), "the service listens on {serving:?}");
    // Whatever else listens in this namespace (another test's), none is DevTools.
    for (_, port) in &listeners {
        for path in ["/json/version", "/json/list", "/json", "/devtools/browser"] {
            let answer = get(*port, path);
            assert!(
                !answer.contains("webSocketDebuggerUrl") && !answer.starts_with("HTTP/1.1 200"),
                "port {port} answers {path}: {answer}"
            );
        }
    }
    // The browser is still driven (over its pipe).
    assert!(sdk.open_pages().await.expect("pages") >= 1);
    drop(tab);
    sdk.close().await;
}

/// The stand-in for every Azure host (fixtures/tls_server.py) on 127.0.0.1:443, and what it has
/// reported so far.
struct Stand {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// One stand-in at a time: they all need port 443.
    _port: std::sync::MutexGuard<'static, ()>,
}

static PORT_443: Mutex<()> = Mutex::new(());

impl Stand {
    fn start() -> Self {
        let port = PORT_443.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("443")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in https server");
        let mut out = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("the server starts");
        assert_eq!(first.trim(), "listening", "the stand-in server listens on 127.0.0.1:443");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines, _port: port }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    /// Waits until a reported line satisfies `found` or `bound` has passed: a loaded machine
    /// can take many seconds to get the SDK's requests out (a CI run saw none in 1 s).
    async fn wait_for(&self, bound: Duration, found: impl Fn(&str) -> bool) {
        let start = std::time::Instant::now();
        while start.elapsed() < bound && !self.lines.lock().unwrap().iter().any(|l| found(l)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

/// Chromium 142 and later keep a public origin's requests from reaching loopback and private
/// addresses (Local Network Access).
const LOCAL_NETWORK_ACCESS_OFF: &str = "--disable-features=LocalNetworkAccessChecks";

/// Every name but localhost resolves to the stand-in server.
const TO_THE_STAND_IN: &str = "MAP * 127.0.0.1, EXCLUDE localhost";

/// Every name the SDK asks for resolves to the stand-in, nothing else stops it from reaching it
/// but the certificate.
fn to_the_stand_in() -> WebSdkConfig {
    WebSdkConfig {
        host_resolver_rules: Some(TO_THE_STAND_IN.into()),
        create_timeout: Duration::from_secs(60),
        warm_pages: 0,
        // The stand-in is on loopback, which Chromium's Local Network Access keeps the page's
        // public origin from reaching; the SDK's real hosts are public. Off here, so that only
        // the certificate stands between the SDK and the stand-in.
        extra_args: vec![LOCAL_NETWORK_ACCESS_OFF.into()],
        ..isolation::config()
    }
}

/// Creates one agent with a token the SDK sends, and says how that ended (for a failure's
/// message: an agent or an error are both fine here).
async fn create_one(sdk: &WebSdk, identity: &str) -> String {
    let (request, _) = valid(identity);
    let started = std::time::Instant::now();
    let created = sdk.create(&request).await;
    let took = started.elapsed();
    match created {
        Ok(agent) => format!("an agent, {:?}, after {took:?}", agent.initial_state()),
        Err(e) => format!("{e} after {took:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn certificates_are_verified() {
    isolated();
    let stand = Stand::start();
    let rules = to_the_stand_in();
    // The SDK's own hosts, not only Chromium's background requests.
    let sdk_host = |l: &str| ["microsoft.com", "azure.com", "skype.com"].iter().any(|h| l.contains(h));
    let sdk = launch(rules.clone()).await;
    let pid = sdk.stats().await.expect("stats").pid.expect("a browser");
    let args = cmdline(pid);
    assert!(args.contains(&LOCAL_NETWORK_ACCESS_OFF.to_owned()), "the rig's flag reached Chromium: {args:?}");
    assert!(!args.contains(&"--ignore-certificate-errors".to_owned()), "{args:?}");
    create_one(&sdk, "8:acs:certificates").await;
    // Until the SDK has offered a TLS handshake to one of its own hosts (so there was a request
    // the certificate could stop), and a moment for that handshake to end.
    stand.wait_for(Duration::from_secs(30), |l| l.starts_with("hello") && sdk_host(l)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sdk.close().await;
    let verified = stand.take();
    assert!(
        verified.iter().any(|l| l.starts_with("hello") && sdk_host(l)),
        "the SDK offered a handshake to its hosts: {verified:?}"
    );
    // The host-resolver rules took effect (the SDK's hosts reached this server), and no request
    // went through: every handshake failed on the certificate.
    assert!(count(&verified, "accept") > 0, "external names resolved to the stand-in: {verified:?}");
    assert_eq!(
        verified.iter().filter(|l| *l == "handshake").count(),
        0,
        "completed handshakes: {verified:?}"
    );
    assert_eq!(count(&verified, "request"), 0, "requests through an untrusted certificate: {verified:?}");

    // The test rig's exception: the same server now sees the SDK's requests, token and all (so
    // the check above can fail).
    let rig = launch(WebSdkConfig { accept_invalid_certificates: true, ..rules }).await;
    let pid = rig.stats().await.expect("stats").pid.expect("a browser");
    let args = cmdline(pid);
    assert!(args.contains(&"--ignore-certificate-errors".to_owned()), "{args:?}");
    assert!(args.contains(&LOCAL_NETWORK_ACCESS_OFF.to_owned()), "{args:?}");
    let created = create_one(&rig, "8:acs:certificates-rig").await;
    let sdk_request = |l: &str| l.starts_with("request") && sdk_host(l);
    // Bounded by a minute: beside the suite's other test on 2 cores the SDK's first request has
    // come later than 30 s once.
    stand.wait_for(Duration::from_secs(60), sdk_request).await;
    rig.close().await;
    let accepted = stand.take();
    assert!(
        accepted.iter().any(|l| sdk_request(l)),
        "the SDK's requests reach the stand-in (the creation: {created}): {accepted:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn the_token_never_reaches_a_log() {
    isolated();
    let trace = Trace::capture();
    // As a monitor's dry run: every external name fails to resolve. The SDK still announces its
    // requests, token in their headers, before DNS fails them (what the Network domain's
    // events carried into the driver's trace, 5 times a creation).
    let config =
        WebSdkConfig { create_timeout: Duration::from_secs(60), warm_pages: 0, ..isolation::config() };
    let sdk = WebSdk::launch(config).await.expect("Chromium and the built page");
    let (request, token) = valid("8:acs:token-log");
    let result = sdk.create(&request).await;
    let shown = match &result {
        Ok(agent) => format!("{agent:?}"),
        Err(e) => format!("{e:?} {e}"),
    };
    // The token reached the SDK and passed its local checks: it made an agent (Disconnected,
    // no network) or failed as the SDK fails on the network, not on the token. A creation that
    // failed before the SDK had the token (a page that cannot open the seal) proves nothing
    // about what the SDK sends, so it fails this test.
    if let Err(e) = &result {
        let sdk = e.sdk_error().unwrap_or_else(|| panic!("the creation failed before the SDK: {shown}"));
        assert!(!(44000..45000).contains(&sdk.sub_code()), "the SDK refused the token locally: {shown}");
    }
    if let Ok(agent) = result {
        let _ = agent.dispose().await;
    }
    let sent = sdk.stats().await.expect("stats").bundles_sent;
    assert!(sent >= 1, "the page's bundle was served");
    sdk.close().await;
    trace.assert_no_token(&token, &shown);
    // Nor the page's bundle, in any form the driver's records take (its message trace, its
    // WebSocket crate's hex of each frame): the relay puts it in, the driver sends a marker.
    use base64::Engine;
    let bundle = std::fs::read(isolation::config().page_dir.join("bundle.js")).expect("the built page");
    let chunk = base64::engine::general_purpose::STANDARD.encode(&bundle[3000..3000 + 3 * 32]);
    let hex: String = chunk.bytes().map(|b| format!("{b:02x}")).collect();
    let text = trace.text();
    assert!(!text.contains(&chunk) && !text.contains(&hex), "the bundle's bytes reached the trace");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn the_service_files_are_private_and_nothing_planted_is_used() {
    let temp = tempfile::tempdir().expect("a temp dir");
    // What a local attacker plants at the names an earlier version used: a directory of their
    // own, open to all, and a symlink to somewhere they want written. As root, they are another
    // user's (65534) and named for a process that is gone, as a dead service's would be, so only
    // their owner spares them from the clean-up of dead services' directories; otherwise they
    // are this user's, and named for this live process, as a dead one of ours is rightly removed.
    let root = running_as_root();
    let pid = if root { u32::MAX - 1 } else { std::process::id() };
    let planted = temp.path().join(format!("callagent-websdk-{pid}-0"));
    std::fs::create_dir(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = temp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = temp.path().join(format!("callagent-websdk-{pid}-1"));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    if root {
        let status = Command::new("chown").args(["-h", "65534:65534"]).arg(&planted).arg(&link).status();
        assert!(status.is_ok_and(|s| s.success()), "chown of what was planted to 65534");
    }
    let sdk = launch(WebSdkConfig { temp_dir: temp.path().to_owned(), ..isolation::config() }).await;
    let stats = sdk.stats().await.expect("stats");
    let profile = stats.profile.expect("a profile");
    let browser_dir = profile.parent().expect("the browser's directory").to_owned();
    let service_dir = browser_dir.parent().expect("the service's directory").to_owned();
    assert_eq!(service_dir.parent(), Some(temp.path()));
    assert!(service_dir != planted && service_dir != link, "{}", service_dir.display());
    assert!(planted.is_dir() && link.is_symlink() && target.is_dir(), "what was planted is left alone");
    for dir in [&service_dir, &browser_dir, &profile] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&browser_dir.join("chromium")), 0o700, "the launcher script");
    let owner = std::fs::metadata(&service_dir).unwrap().uid();
    assert_eq!(std::fs::metadata(&profile).unwrap().uid(), owner);
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0, "the planted directory was not used");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "the symlink was not followed");
    assert!(cmdline(stats.pid.unwrap()).contains(&format!("--user-data-dir={}", profile.display())));
    let tab = sdk.tab().await.expect("a page");
    drop(tab);
    sdk.close().await;
    assert!(!service_dir.exists(), "everything is removed at close");
    assert!(planted.exists() && link.exists(), "what others planted is left alone");
}

/// Runs `sandbox_probe` as an unprivileged user (uid 65534) in this network namespace: with
/// Chromium's sandbox on, its renderers are in a user namespace of their own under a seccomp
/// filter. Skipped, saying why, when this kernel does not let an unprivileged user make user
/// namespaces.
#[test]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
fn the_sandbox_is_on_for_an_unprivileged_user() {
    isolated();
    if !running_as_root() {
        // Not root: the suite itself runs unprivileged, and the probe is this process's job.
        return sandbox_probe();
    }
    let home = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The checkout may be where uid 65534 cannot reach (a root-only home): the probe runs from
    // copies of this binary and of the built page in its own directory.
    let exe = home.path().join("probe");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &exe).expect("a copy of this binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let page = home.path().join("page");
    std::fs::create_dir(&page).unwrap();
    for entry in
        std::fs::read_dir(isolation::config().page_dir).expect("the built page").filter_map(Result::ok)
    {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), page.join(entry.file_name())).expect("a copy of the page");
        }
    }
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .env("CALLAGENT_WEBSDK_PAGE", &page)
        .args(["--ignored", "--exact", "sandbox_probe_as_this_user", "--nocapture", "--test-threads", "1"])
        .env("CALLAGENT_SANDBOX_PROBE", "1")
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .output()
        .expect("setpriv (util-linux) runs the probe as uid 65534");
    let out =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if out.contains("SANDBOX UNAVAILABLE") {
        eprintln!("skipped: this kernel gives an unprivileged user no sandbox for Chromium:\n{out}");
        return;
    }
    assert!(output.status.success() && out.contains("1 passed"), "the probe as uid 65534:\n{out}");
}

/// The half of [`the_sandbox_is_on_for_an_unprivileged_user`] that runs as the unprivileged user.
#[test]
#[ignore = "run by the_sandbox_is_on_for_an_unprivileged_user"]
fn sandbox_probe_as_this_user() {
    if std::env::var_os("CALLAGENT_SANDBOX_PROBE").is_none() {
        return; // Only as the child of the test above.
    }
    sandbox_probe();
}

fn sandbox_probe() {
    isolated();
    assert!(!running_as_root());
    // Whether this kernel lets this user make a user namespace (what Chromium's sandbox needs),
    // asked of the kernel itself: a launch error is never taken for its answer, so a sandbox
    // the service turned off cannot pass for one the kernel does not offer.
    let offered = Command::new("unshare").args(["--user", "true"]).status();
    let offered = offered.as_ref().is_ok_and(|s| s.success());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let sdk = match WebSdk::launch(WebSdkConfig { warm_pages: 0, ..isolation::config() }).await {
            Ok(sdk) => sdk,
            Err(e) if !offered => {
                println!("SANDBOX UNAVAILABLE: `unshare --user` fails for this user; Chromium: {e}");
                return;
            }
            Err(e) => panic!("Chromium as an unprivileged user: {e}"),
        };
        let tab = sdk.tab().await.expect("a page with the SDK, sandboxed");
        let stats = sdk.stats().await.expect("stats");
        let browser = stats.pid.expect("a browser");
        assert!(!cmdline(browser).iter().any(|a| a == "--no-sandbox"), "{:?}", cmdline(browser));
        let renderers: Vec<u32> = sdk
            .chromium_processes()
            .into_iter()
            .filter(|p| cmdline(*p).iter().any(|a| a.contains("--type=renderer")))
            .collect();
        assert!(!renderers.is_empty(), "a renderer runs the page");
        let user_ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        for renderer in renderers {
            let status = std::fs::read_to_string(format!("/proc/{renderer}/status")).unwrap_or_default();
            assert!(status.lines().any(|l| l == "Seccomp:\t2"), "renderer {renderer} has no seccomp filter");
            assert_ne!(
                user_ns(renderer),
                user_ns(browser),
                "renderer {renderer} shares the browser's user namespace"
            );
        }
        drop(tab);
        sdk.close().await;
    });
}

/// The stand-in's tag for a credential (`fixtures/tls_server.py`): the first 12 hex digits of
/// its SHA-256.
fn tag(credential: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, credential.as_bytes());
    digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A token the SDK sends, for an identity of its own.
fn token_of(identity: &str, skype_id: &str) -> (CreateAgentRequest, String) {
    let mut claims = acs_claims();
    claims["skypeid"] = skype_id.into();
    let token = AccessToken::unsigned(&claims);
    let raw = token.expose_secret().to_owned();
    (CreateAgentRequest::new(identity, token, AgentKind::Acs), raw)
}

/// Identities on one page, with the certificate rig's stand-in answering for every Azure host
/// and reporting whose token (by digest) each request carried.
///
/// 1. What the real SDK does (recorded, not the service's to change): the page hands the
///    `CallClient` that made A's agent (disposed) to B's creation, and B's requests carry B's
///    token; but the SDK goes on sending A's token from that page after A's agent is disposed
///    (its configuration fetches), also while B is created on A's old client. Seen here: 2 to 3
///    requests with A's token after B's creation began; 1 in 30 s with no B at all.
/// 2. What the service gives against it: with `WebSdkConfig::tenant_of`, a creation for another
///    tenant never lands on a page that held A's identity, even while another agent of A's
///    tenant keeps that page open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn identities_on_a_page_and_tenants_on_pages_of_their_own() {
    isolated();
    let stand = Stand::start();
    let rig = WebSdkConfig { accept_invalid_certificates: true, ..to_the_stand_in() };
    let sdk = launch(rig.clone()).await;
    let tab = sdk.tab().await.expect("a page");
    let (a, token_a) = token_of("8:acs:a/1", "acs:11111111-2222_0000000a");
    let (b, token_b) = token_of("8:acs:b/1", "acs:11111111-2222_0000000b");
    let (tag_a, tag_b) = (format!("auth:{}", tag(&token_a)), format!("auth:{}", tag(&token_b)));
    let carried = |lines: &[String], tag: &str| lines.iter().filter(|l| l.ends_with(tag)).count();
    if let Ok(agent) = tab.create(&a).await {
        stand.wait_for(Duration::from_secs(30), |l| l.ends_with(&tag_a)).await;
        agent.dispose().await.expect("A's agent disposed");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = stand.take();
    assert!(carried(&before, &tag_a) > 0, "A's token reached the stand-in (the tags work): {before:?}");
    let second = tab.create(&b).await;
    assert_eq!(tab.call_clients().await.expect("the page's CallClients"), 1, "B reused A's CallClient");
    stand.wait_for(Duration::from_secs(30), |l| l.ends_with(&tag_b)).await;
    if let Ok(agent) = second {
        let _ = agent.dispose().await;
    }
    drop(tab);
    sdk.close().await;
    let after = stand.take();
    assert!(carried(&after, &tag_b) > 0, "B's requests carry B's token: {after:?}");
    println!(
        "after B's creation on A's old CallClient: {} requests with B's token, {} with A's (disposed)",
        carried(&after, &tag_b),
        carried(&after, &tag_a)
    );

    // Tenants: A's tenant keeps its page open (K); B, of another tenant, gets a page of its own.
    let tenant = TenantOf::new(|identity| identity.split_once('/').map_or(identity, |(t, _)| t).to_owned());
    let sdk = launch(WebSdkConfig { tenant_of: Some(tenant), agents_per_page: 4, ..rig }).await;
    let (keeper, _) = token_of("8:acs:a/keeper", "acs:11111111-2222_0000000c");
    let keeper = sdk.create(&keeper).await.expect("an agent of tenant a");
    let agent_a = sdk.create(&a).await.expect("A's agent");
    assert_eq!(sdk.open_pages().await.expect("pages"), 1, "one tenant's identities share a page");
    agent_a.dispose().await.expect("A's agent disposed");
    let agent_b = sdk.create(&b).await.expect("B's agent");
    assert_eq!(sdk.open_pages().await.expect("pages"), 2, "B, of another tenant, got a page of its own");
    for agent in [agent_b, keeper] {
        let _ = agent.dispose().await;
    }
    sdk.close().await;
}
