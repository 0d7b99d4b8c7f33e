//! The service driving a browser on another host. Each "host" is a Chromium in a network
//! namespace of its own, joined to the test's by a veth pair on private addresses that the test
//! creates and removes (10.231.N.0/30), with DevTools on its veth address through `socat`
//! (Chromium binds its port to loopback). The host resolves no name at all, and the test's side
//! serves nothing: the page reaches the browser over DevTools alone.
//!
//! `#[ignore]`d like the conformance suite: `websdk/conformance.sh` runs them, as root, in a
//! network namespace with loopback alone (`ip netns` and veth pairs need root).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callagent_retry::classify::classify;
use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_websdk::{
    AGENTS, BROWSER_LOST, Browsers, DnsBrowsers, RemoteBrowser, WebSdk, WebSdkConfig, WebSdkError,
};
use futures::StreamExt;
use serde_json::json;
use tower::ServiceExt;

#[path = "common/isolation.rs"]
mod isolation;
#[path = "common/trace.rs"]
mod trace;
use isolation::{acs_claims, alive, isolated, now};

/// One host at a time: each test creates and removes its own.
static HOSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// The service's pages' origin (`transport::ORIGIN`).
const ORIGIN: &str = "https://callagent-websdk.invalid";
const DEVTOOLS_PORT: u16 = 9223;

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().expect("runs");
    assert!(status.success(), "{args:?} failed: {status}");
}

/// A browser host: a network namespace, its veth link to this one, and (while running) its
/// Chromium and the relay that puts DevTools on the link.
struct Host {
    netns: String,
    ours: String,
    address: String,
    profile: tempfile::TempDir,
    chromium: Option<Child>,
    relay: Option<Child>,
}

impl Host {
    fn new(n: u8) -> Self {
        let netns = format!("cawr-h{n}-{}", std::process::id());
        let (ours, theirs) = (format!("cawr-s{n}"), format!("cawr-b{n}"));
        let (address, gateway) = (format!("10.231.{n}.2"), format!("10.231.{n}.1"));
        let _ = Command::new("ip").args(["netns", "del", &netns]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &ours]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &netns]);
        run(&["ip", "link", "add", &ours, "type", "veth", "peer", "name", &theirs, "netns", &netns]);
        run(&["ip", "addr", "add", &format!("{gateway}/30"), "dev", &ours]);
        run(&["ip", "link", "set", &ours, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", netns.as_str()];
            all.extend_from_slice(args);
            run(&all);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &format!("{address}/30"), "dev", &theirs]);
        inside(&["ip", "link", "set", &theirs, "up"]);
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut host = Self { netns, ours, address, profile, chromium: None, relay: None };
        host.start();
        host
    }

    fn endpoint(&self) -> String {
        format!("http://{}:{DEVTOOLS_PORT}", self.address)
    }

    /// Starts the host's Chromium (as a team's browser image would: headless, DevTools on its
    /// loopback, nothing resolvable) and the relay, and waits until DevTools answers.
    fn start(&mut self) {
        let profile = format!("--user-data-dir={}", self.profile.path().join("p").display());
        let chromium = Command::new("ip")
            .args(["netns", "exec", &self.netns, CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--remote-debugging-port=9222", "--host-resolver-rules=MAP * ~NOTFOUND", &profile])
            .args(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-first-run"])
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Chromium starts in the host");
        let listen = format!("TCP-LISTEN:{DEVTOOLS_PORT},bind={},fork,reuseaddr", self.address);
        let relay = Command::new("ip")
            .args(["netns", "exec", &self.netns, "socat", &listen, "TCP:127.0.0.1:9222"])
            .stderr(Stdio::null())
            .spawn()
            .expect("socat relays DevTools onto the link");
        self.chromium = Some(chromium);
        self.relay = Some(relay);
        let started = Instant::now();
        while !self.answers() {
            assert!(started.elapsed() < Duration::from_secs(30), "the host's DevTools did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether DevTools answers on the link.
    fn answers(&self) -> bool {
        self.version().is_some_and(|v| v.contains("webSocketDebuggerUrl"))
    }

    /// `/json/version` on the link, raw.
    fn version(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((self.address.as_str(), DEVTOOLS_PORT)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let ask = format!("GET /json/version HTTP/1.1\r\nHost: {}:{DEVTOOLS_PORT}\r\n\r\n", self.address);
        let mut answer = [0u8; 2048];
        s.write_all(ask.as_bytes()).ok()?;
        let n = s.read(&mut answer).ok()?;
        Some(String::from_utf8_lossy(&answer[..n]).into_owned())
    }

    /// The service's pages open in the host's browser, as the host lists them (its own
    /// `/json/list`, every browser context's targets, over the link): not the crate's count.
    fn service_pages(&self) -> usize {
        self.service_page_ids().len()
    }

    /// The target ids of [`Host::service_pages`].
    fn service_page_ids(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect((self.address.as_str(), DEVTOOLS_PORT)) else {
            panic!("the host's DevTools does not answer")
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let ask = format!("GET /json/list HTTP/1.1\r\nHost: {}:{DEVTOOLS_PORT}\r\n\r\n", self.address);
        s.write_all(ask.as_bytes()).expect("asks /json/list");
        // Chromium keeps the connection open: the body is as long as its Content-Length says.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16384];
        let body = loop {
            let n = s.read(&mut chunk).expect("the list");
            assert!(n > 0, "the list ended early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer);
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:")?.trim().parse().ok())
                .expect("a Content-Length");
            if body.len() >= length {
                break body.to_owned();
            }
        };
        let targets: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a JSON list");
        let ours = |t: &&serde_json::Value| {
            t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(ORIGIN))
        };
        targets.iter().filter(ours).filter_map(|t| t["id"].as_str().map(str::to_owned)).collect()
    }

    /// The browser's own WebSocket URL, pointed at its address on the link.
    fn websocket(&self) -> String {
        let version = self.version().expect("/json/version");
        let path =
            version.split("/devtools/browser/").nth(1).and_then(|r| r.split('"').next()).expect("its URL");
        format!("ws://{}:{DEVTOOLS_PORT}/devtools/browser/{path}", self.address)
    }

    /// Kills the host's Chromium and its relay (the host is killed).
    fn kill(&mut self) {
        for mut child in [self.chromium.take(), self.relay.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Its helpers follow the browser; none may be left when it restarts on the same profile.
        let _ = Command::new("pkill").args(["-9", "-f", &self.profile.path().display().to_string()]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(self.profile.path().join("p"));
    }

    /// Stops (or continues) the host's browser process: its link and relay stay up, it answers
    /// nothing (a hung browser).
    fn hang(&self, hung: bool) {
        let pid = self.chromium.as_ref().expect("running").id().to_string();
        run(&["kill", if hung { "-STOP" } else { "-CONT" }, &pid]);
    }

    /// Takes the link down (or up): the host is still running but unreachable, and sends nothing.
    fn link(&self, up: bool) {
        run(&["ip", "link", "set", &self.ours, if up { "up" } else { "down" }]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        let _ = Command::new("ip").args(["link", "del", &self.ours]).stderr(Stdio::null()).status();
    }
}

fn remote(host: &Host) -> WebSdkConfig {
    remote_at(host.endpoint())
}

fn remote_at(endpoint: String) -> WebSdkConfig {
    WebSdkConfig {
        remote: Some(RemoteBrowser::new(endpoint)),
        warm_pages: 0,
        restart_spacing: Duration::from_millis(200),
        create_timeout: Duration::from_secs(60),
        ..isolation::config()
    }
}

/// A token the SDK accepts locally: with no network it resolves a `Disconnected` agent (~14 s).
fn valid(i: usize) -> CreateAgentRequest {
    let mut claims = acs_claims();
    claims["skypeid"] = json!(format!("acs:remote_{i}"));
    CreateAgentRequest::new(format!("8:acs:remote-{i}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

/// A token the SDK rejects in milliseconds (no voip scope: 401/44113).
fn rejected(i: usize) -> CreateAgentRequest {
    let claims = json!({"skypeid": format!("acs:r_remote{i}"), "acsScope": "chat", "resourceId": "r", "exp": now() + 3600});
    CreateAgentRequest::new(format!("8:acs:r-remote-{i}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

fn sub_code(r: &Result<callagent_websdk::Agent, WebSdkError>) -> Option<u32> {
    r.as_ref().err().and_then(WebSdkError::sdk_error).map(|e| e.sub_code())
}

/// Creations succeed until one does (the service reconnects, spaced), within `bound`.
async fn readmitted(sdk: &WebSdk, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if sub_code(&sdk.create(&rejected(99)).await) == Some(44113) {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "the host was not re-admitted within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn agents_are_created_on_a_remote_host_that_reaches_no_server() {
    let _one = HOSTS.lock().await;
    isolated();
    let host = Host::new(1);
    // The driver's TRACE, at every level, holds no form of the token, though it crosses the link.
    let trace = trace::Trace::capture();
    // Its WebSocket URL this time (the other test finds it over HTTP), with a query token and a
    // header, as a proxy in front of the browser would take them (Chromium ignores both), in
    // plain text on this veth link nothing else shares.
    let (query, header) = ("QUERY-4f0e9a", "Bearer HEADER-77c2d1");
    let endpoint = format!("{}?token={query}", host.websocket());
    let browser =
        RemoteBrowser::new(endpoint).with_header("Authorization", header).with_plain_text_credentials();
    let config = WebSdkConfig { remote: Some(browser), ..remote(&host) };
    let sdk = WebSdk::launch(config).await.expect("the remote browser");
    // Nothing runs here: no local Chromium, no profile.
    let stats = sdk.stats().await.expect("stats");
    assert_eq!((stats.pid, stats.profile.as_ref()), (None, None), "a local browser: {stats:?}");
    assert!(sdk.chromium_processes().is_empty());
    // The SDK runs there: it judges tokens (a rejection in milliseconds) and, with a token sealed
    // across the link and opened in the page, makes an agent (Disconnected: nothing resolves).
    let rejected = sdk.create(&rejected(1)).await;
    assert_eq!(sub_code(&rejected), Some(44113), "{rejected:?}");
    let request = valid(1);
    let created = sdk.create(&request).await;
    let shown = match &created {
        Ok(agent) => format!("{agent:?}"),
        Err(e) => format!("{e:?} {e}"),
    };
    let agent = created.expect("an agent on the remote host");
    assert!(sdk.open_pages().await.expect("pages") >= 1);
    // The host has a link to this namespace, but nothing here listens on it: the page it loaded
    // came over DevTools, not from a server on the service's side.
    let listening = reachable_listeners();
    assert!(listening.is_empty(), "the host could reach a server here: {listening:?}");
    let state = agent.connection_state().await.expect("the remote page answers");
    // Two more pages: the bundle crossed the link once, for the connection's browser context,
    // not once per page.
    let timed = || async {
        let started = Instant::now();
        let tab = sdk.tab().await.expect("a page");
        (tab, started.elapsed())
    };
    let ((second, second_took), (third, third_took)) = (timed().await, timed().await);
    println!("later pages opened with the SDK started in {second_took:?} and {third_took:?}");
    // The host's Chromium runs without websdk's flags against throttling a hidden page's timers
    // (the SDK's, then at most once a second): each page is still visible, in a window of its own.
    for tab in [agent.tab(), &second, &third] {
        assert!(
            tab.is_visible().await.expect("the page answers"),
            "a page is hidden: its timers are throttled"
        );
    }
    let sent = sdk.stats().await.expect("stats").bundles_sent;
    assert_eq!(sent, 1, "the bundle was sent {sent} times for 3 pages of one browser");
    drop((second, third));
    println!("remote agent: {state:?}, created in {:?}", agent.creation_time());
    agent.dispose().await.expect("disposed");
    sdk.close().await;
    trace.assert_no_token(request.token.expose_secret(), &shown);
    trace.assert_none_of(&[query, header]);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn a_lost_host_fails_its_calls_within_2_s_and_is_readmitted_when_back() {
    let _one = HOSTS.lock().await;
    isolated();
    let mut host = Host::new(2);
    let sdk = WebSdk::launch(remote(&host)).await.expect("the remote browser");
    assert_eq!(sub_code(&sdk.create(&rejected(1)).await), Some(44113));

    // 1. The host's Chromium is killed mid-creation: the creation fails with the retryable
    //    BrowserDied within 2 s, a live agent's calls with AgentGone; it is re-admitted once back.
    for (round, how) in [(1, "killed"), (2, "link down"), (3, "hung")] {
        let agent = sdk.create(&valid(round * 10)).await.expect("an agent before the loss");
        let in_flight = {
            let sdk = sdk.clone();
            tokio::spawn(async move {
                let failed = sdk.create(&valid(round * 10 + 1)).await.err();
                (Instant::now(), failed)
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lost = Instant::now();
        match how {
            "killed" => host.kill(),
            "hung" => host.hang(true),
            _ => host.link(false),
        }
        let (ended, failed) = in_flight.await.expect("the creation task");
        let after = ended.saturating_duration_since(lost);
        let failed = failed.expect("the creation in flight fails");
        println!("{how}: the creation in flight failed {after:?} after the loss: {failed}");
        assert!(matches!(failed, WebSdkError::BrowserDied(_)), "{how}: {failed:?}");
        assert!(after < Duration::from_secs(2), "{how}: the creation failed {after:?} after the loss");
        let call = tokio::time::timeout(Duration::from_secs(2), agent.connection_state()).await;
        assert!(matches!(call, Ok(Err(WebSdkError::AgentGone(_)))), "{how}: a live agent's call: {call:?}");
        drop(agent);
        // While it is gone creations fail at once, retryably: the background reconnection is at
        // it, and a creation does not wait behind its attempt (a hung browser's relay still
        // accepts, and its endpoint is given 3 s to answer).
        for _ in 0..3 {
            let started = Instant::now();
            let refused = sdk.create(&rejected(2)).await.expect_err("no browser to create on");
            assert!(classify(&refused, &Default::default()).retry, "{how}: {refused:?}");
            let took = started.elapsed();
            assert!(took < Duration::from_secs(1), "{how}: a creation took {took:?} to fail: {refused}");
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        match how {
            "killed" => host.start(),
            "hung" => host.hang(false),
            _ => host.link(true),
        }
        let took = readmitted(&sdk, Duration::from_secs(40)).await;
        println!("{how}: re-admitted {took:?} after it came back");
    }
    sdk.close().await;
    drop(host);
}

/// The named browsers' `agents_and_creations`, in order, as `stats` reads them (over DevTools);
/// `Browsers::load` must say the same from its counters.
async fn load(browsers: &Browsers) -> Vec<(String, usize)> {
    let stats = browsers.stats().await;
    let read: Vec<_> = stats
        .into_iter()
        .map(|(name, s)| (name, s.map(|s| s.agents_and_creations).unwrap_or(usize::MAX)))
        .collect();
    assert_eq!(browsers.load(), read, "Browsers::load and the stats disagree");
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn browsers_on_two_hosts_and_this_one_share_creations_and_pass_over_a_lost_one() {
    let _one = HOSTS.lock().await;
    isolated();
    let (mut a, b) = (Host::new(3), Host::new(4));
    // The only test here that reads metrics (the recorder is the process's).
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("a Prometheus recorder");
    let value = |metric: &str, browser: &str| -> Option<f64> {
        let series = format!("{metric}{{browser=\"{browser}\"}} ");
        metrics.render().lines().find_map(|l| l.strip_prefix(&series)?.parse().ok())
    };
    let local = WebSdkConfig { name: "local".into(), warm_pages: 0, ..isolation::config() };
    let browsers = Browsers::launch(vec![
        WebSdkConfig { name: "a".into(), ..remote(&a) },
        WebSdkConfig { name: "b".into(), ..remote(&b) },
        local,
    ])
    .await
    .expect("two remote browsers and a local one");
    // The survivors' pages before any agent: what "no page leaked" is measured against (counted
    // while the agents lived, a page that never closed would pass).
    let idle_pages: Vec<usize> = {
        let mut pages = Vec::new();
        for (name, sdk) in browsers.members().into_iter().filter(|(n, _)| *n != "a") {
            pages.push(sdk.open_pages().await.unwrap_or_else(|e| panic!("{name}: {e}")));
        }
        pages
    };
    // Six agents asked for at once: each goes to the browser with the most free slots.
    let asked = (0..6).map(|i| browsers.clone().oneshot(valid(100 + i)));
    let agents: Vec<_> =
        futures::future::join_all(asked).await.into_iter().map(|r| r.expect("an agent")).collect();
    let spread = load(&browsers).await;
    println!("six agents over three browsers: {spread:?}");
    assert!(spread.iter().all(|(_, n)| *n == 2), "not spread by free capacity: {spread:?}");
    // Each agent says which browser it is on.
    let mut on: Vec<&str> = agents.iter().map(|a| a.browser()).collect();
    on.sort_unstable();
    assert_eq!(on, ["a", "a", "b", "b", "local", "local"], "the agents' browsers");
    // Each browser's own series: the gauges of one no longer overwrite another's.
    for name in ["a", "b", "local"] {
        assert_eq!(value(AGENTS, name), Some(2.0), "{name}'s agents gauge:\n{}", metrics.render());
        assert_eq!(value(BROWSER_LOST, name), Some(0.0), "{name} is not lost");
    }
    // Host a is killed: its agents' calls fail at once, and creations go to the others at once.
    a.kill();
    let lost = Instant::now();
    let mut gone = Vec::new();
    for agent in &agents {
        if let Ok(Err(WebSdkError::AgentGone(_))) =
            tokio::time::timeout(Duration::from_secs(2), agent.connection_state()).await
        {
            gone.push(agent.browser());
        }
    }
    assert_eq!(gone, ["a", "a"], "a's two agents, and only those, are gone");
    assert_eq!(value(BROWSER_LOST, "a"), Some(1.0), "a is lost on the dashboard");
    assert_eq!(value(BROWSER_LOST, "b"), Some(0.0), "b is not");
    assert!(lost.elapsed() < Duration::from_secs(3), "the calls took {:?}", lost.elapsed());
    for i in 0..4 {
        let started = Instant::now();
        let r = browsers.clone().oneshot(rejected(200 + i)).await;
        assert_eq!(sub_code(&r), Some(44113), "creation {i} after the loss: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "creation {i} took {:?}", started.elapsed());
    }
    drop(agents);
    // No page leaked on the survivors: the dropped agents' pages close with them, back to idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for ((name, sdk), idle) in browsers.members().into_iter().filter(|(n, _)| *n != "a").zip(idle_pages) {
        let now = sdk.open_pages().await.expect("pages");
        assert_eq!(now, idle, "{name}: {idle} pages before its agents, {now} after they were dropped");
    }

    // Back: re-admitted in the background, and placed on again (it has the most free slots).
    a.start();
    let back = Instant::now();
    let member = |name: &str| {
        browsers.members().into_iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone()).expect("member")
    };
    while !member("a").is_up() {
        assert!(back.elapsed() < Duration::from_secs(40), "a was not re-admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("a re-admitted {:?} after it came back", back.elapsed());
    assert_eq!(value(BROWSER_LOST, "a"), Some(0.0), "a is back on the dashboard");
    let agent = browsers.clone().oneshot(valid(300)).await.expect("an agent");
    let placed = load(&browsers).await;
    assert_eq!(placed[0], ("a".to_owned(), 1), "placed on the returned browser: {placed:?}");
    agent.dispose().await.expect("disposed");
    browsers.close().await;
    for (name, host) in [("a", &a), ("b", &b)] {
        // Checked on the host: its own list, every context's pages.
        assert_eq!(host.service_pages(), 0, "{name} still has pages of the closed service");
    }
    for name in ["a", "b", "local"] {
        // Closed is not lost: nothing for on-call to look at.
        assert_eq!(value(BROWSER_LOST, name), Some(0.0), "{name} closed");
    }
}

/// Chromium's processes on a host: those whose command line names its profile.
fn host_pids(host: &Host) -> Vec<u32> {
    let profile = host.profile.path().display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&profile))
        })
        .collect()
}

/// PSS summed over `pids`, in MiB, and their CPU time, in seconds.
fn pss_and_cpu(pids: &[u32]) -> (f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter().fold((0.0, 0.0), |(pss, cpu), pid| {
        let kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("Pss:"))?.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .unwrap_or(0.0);
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest: Vec<String> = s.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect();
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0);
        (pss + kib / 1024.0, cpu + ticks / tick)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

/// For 1, 2 and 3 hosts: creations per second and each creation's time (rejected tokens, which
/// the SDK answers in milliseconds: the rest is the bridge and the link), live agents per host,
/// and PSS and CPU per agent on each host. Then a soak over the three: `REMOTE_SOAK` creations
/// (1,000 by default) through the retry layer, one host killed a third of the way and back at two
/// thirds: every call resolves as the SDK answers, and every browser's pages return to idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn figures_for_one_to_three_hosts_and_a_soak_with_one_lost_and_back() {
    use callagent_retry::{CallAgentRetryLayer, RetryConfig, StopReason};
    use tower::Layer;
    let _one = HOSTS.lock().await;
    isolated();
    let mut hosts = [Host::new(5), Host::new(6), Host::new(7)];
    println!(
        "| hosts | creations/s | per creation p50 / p99 | agents per host | PSS per agent (MiB) | CPU per agent |"
    );
    println!("|---:|---:|---:|---|---|---|");
    for k in 1..=3 {
        // A warm page each, as a service runs: creations do not wait for page loads.
        let members = hosts[..k]
            .iter()
            .enumerate()
            .map(|(i, h)| WebSdkConfig { name: format!("h{i}"), warm_pages: 1, ..remote(h) })
            .collect();
        let browsers = Browsers::launch(members).await.expect("the hosts' browsers");
        for i in 0..k {
            let _ = browsers.clone().oneshot(rejected(1000 + i)).await; // each browser's first page
        }
        tokio::time::sleep(Duration::from_secs(3)).await; // the warm pages refilled
        let idle: Vec<(f64, f64)> = hosts[..k].iter().map(|h| pss_and_cpu(&host_pids(h))).collect();
        // Live agents, 4 per host, asked for at once; they keep their pages open meanwhile, as a
        // service's live agents do.
        let asked = (0..4 * k).map(|i| browsers.clone().oneshot(valid(3000 + i)));
        let agents: Vec<_> =
            futures::future::join_all(asked).await.into_iter().map(|r| r.expect("an agent")).collect();
        let spread: Vec<usize> = load(&browsers).await.into_iter().map(|(_, n)| n).collect();
        let before: Vec<f64> = hosts[..k].iter().map(|h| pss_and_cpu(&host_pids(h)).1).collect();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let per_host: Vec<(f64, f64)> = hosts[..k]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let (pss, cpu) = pss_and_cpu(&host_pids(h));
                let agents = spread[i].max(1) as f64;
                ((pss - idle[i].0) / agents, (cpu - before[i]) / 5.0 * 100.0 / agents)
            })
            .collect();
        // Creations beside them, 4 at a time.
        let n = 200;
        let started = Instant::now();
        let mut times = Vec::with_capacity(n);
        let mut calls = futures::stream::iter(0..n)
            .map(|i| {
                let svc = browsers.clone();
                async move {
                    let t = Instant::now();
                    let r = svc.oneshot(rejected(2000 + i)).await;
                    (t.elapsed(), sub_code(&r))
                }
            })
            .buffer_unordered(4);
        while let Some((took, code)) = calls.next().await {
            assert_eq!(code, Some(44113), "every creation is the SDK's rejection");
            times.push(took);
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        times.sort();
        let pss: Vec<String> = per_host.iter().map(|(p, _)| format!("{p:.1}")).collect();
        let cpu: Vec<String> = per_host.iter().map(|(_, c)| format!("{c:.1}%")).collect();
        println!(
            "| {k} | {rate:.0} | {:.0} / {:.0} ms | {spread:?} | {} | {} |",
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            pss.join(", "),
            cpu.join(", "),
        );
        assert!(spread.iter().all(|n| *n == 4), "4 agents per host: {spread:?}");
        for agent in agents {
            let _ = agent.dispose().await;
        }
        browsers.close().await;
    }

    // The soak: three hosts, one killed a third of the way and started again at two thirds.
    let total: usize = std::env::var("REMOTE_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let members =
        hosts.iter().enumerate().map(|(i, h)| WebSdkConfig { name: format!("h{i}"), ..remote(h) }).collect();
    let browsers = Browsers::launch(members).await.expect("the hosts' browsers");
    let retry = RetryConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        max_attempts: 6,
        budget: None,
        deadline: Some(Duration::from_secs(30)),
        ..RetryConfig::default()
    };
    let svc = CallAgentRetryLayer::new(retry).expect("config").layer(browsers.clone());
    let idle_pages = {
        let mut pages = Vec::new();
        for (_, sdk) in browsers.members() {
            pages.push(sdk.open_pages().await.expect("pages"));
        }
        pages
    };
    let started = Instant::now();
    let (mut rejected_n, mut other) = (0, Vec::new());
    let mut calls = futures::stream::iter(0..total)
        .map(|i| {
            let svc = svc.clone();
            async move { tokio::time::timeout(Duration::from_secs(60), svc.oneshot(rejected(5000 + i))).await }
        })
        .buffer_unordered(4);
    let mut done = 0;
    while let Some(result) = calls.next().await {
        done += 1;
        if done == total / 3 {
            hosts[1].kill();
            println!("soak: h1 killed after {done} calls");
        }
        if done == 2 * total / 3 {
            hosts[1].start();
            println!("soak: h1 started again after {done} calls");
        }
        match result {
            Err(_) => other.push("unresolved within 60 s".to_owned()),
            Ok(Err(e)) if e.reason() == StopReason::Rejected => rejected_n += 1,
            Ok(Err(e)) => other.push(format!("{:?}: {e}", e.reason())),
            Ok(Ok(_)) => other.push("an agent from a rejected token".to_owned()),
        }
    }
    println!(
        "soak: {total} calls over 3 hosts in {:.0} s: {rejected_n} rejected by the SDK, others: {other:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rejected_n, total, "every call resolved as the SDK answers it: {other:?}");
    let back = Instant::now();
    while !browsers.members().iter().all(|(_, s)| s.is_up()) {
        assert!(back.elapsed() < Duration::from_secs(40), "h1 was not re-admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Back to idle: no agent, creation or placed page of the service's left, and nothing new
    // open in any browser. (The browsers' own count also holds pages that earlier services
    // left there, issue 36, and a restarted one's has fewer: it is a bound, not the measure.)
    for ((name, sdk), idle) in browsers.members().into_iter().zip(idle_pages) {
        let stats = sdk.stats().await.expect("stats");
        assert_eq!(stats.agents_and_creations, 0, "{name}: {stats:?}");
        assert_eq!(stats.pool_pages, stats.warm_pages, "{name}: a page with no agent left open: {stats:?}");
        let pages = sdk.open_pages().await.expect("pages");
        assert!(pages <= idle, "{name}: {pages} pages open after the soak (idle {idle})");
    }
    browsers.close().await;
}

/// The listening TCP sockets of this (the service's) network namespace a host on a veth link
/// could reach: any not bound to loopback, from `/proc/net/tcp` and `tcp6`.
fn reachable_listeners() -> Vec<String> {
    let mut found = Vec::new();
    for (table, loopback) in [
        ("/proc/net/tcp", &["0100007F"][..]),
        ("/proc/net/tcp6", &["00000000000000000000000001000000", "0000000000000000FFFF00000100007F"][..]),
    ] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let address = local.split(':').next().unwrap_or("");
            if *state == "0A" && !loopback.contains(&address) {
                found.push(format!("{table} {local}"));
            }
        }
    }
    found
}

/// The names of the browsers placed on now.
fn names(browsers: &Browsers) -> Vec<String> {
    browsers.members().into_iter().map(|(n, _)| n).collect()
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Browsers found by DNS: the name's answer (the test's resolver, which it changes as a
/// headless Service's endpoints change) decides who takes creations, round by round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn browsers_found_by_dns_join_and_leave_as_the_name_lists_them() {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    let _one = HOSTS.lock().await;
    isolated();
    let (a, b) = (Host::new(8), Host::new(9));
    let at =
        |h: &Host| -> SocketAddr { format!("{}:{DEVTOOLS_PORT}", h.address).parse().expect("an address") };
    let (a_name, b_name) = (at(&a).to_string(), at(&b).to_string());
    let answer: Arc<Mutex<Result<Vec<SocketAddr>, &str>>> = Arc::new(Mutex::new(Ok(vec![at(&a)])));
    let resolver = {
        let answer = Arc::clone(&answer);
        tower::service_fn(move |name: String| {
            let now = answer.lock().unwrap().clone();
            async move {
                assert_eq!(name, "browsers.test:9223");
                now.map_err(std::io::Error::other)
            }
        })
    };
    let set = |now: Result<Vec<SocketAddr>, &'static str>| *answer.lock().unwrap() = now;
    // A warm page each, as a service runs: a retired browser must close it too.
    let template = WebSdkConfig { warm_pages: 1, ..remote(&a) };
    let dns =
        DnsBrowsers { every: Duration::from_secs(1), ..DnsBrowsers::new("browsers.test:9223", template) };
    let browsers = Browsers::discover_with(dns, resolver).await.expect("a's browser, found by its address");
    assert_eq!(names(&browsers), std::slice::from_ref(&a_name));
    let on_a = browsers.clone().oneshot(valid(400)).await.expect("an agent on a");

    // b is listed: it joins within a round, and takes the next creation (the most free slots).
    set(Ok(vec![at(&a), at(&b)]));
    let took = until("b joins", Duration::from_secs(10), || names(&browsers).len() == 2).await;
    println!("b joined {took:?} after the name listed it");
    let on_b = browsers.clone().oneshot(valid(401)).await.expect("an agent on b");
    let placed = load(&browsers).await;
    assert_eq!(placed, [(a_name.clone(), 1), (b_name.clone(), 1)], "placed on the new browser");

    // A failed resolution changes nothing.
    set(Err("SERVFAIL"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(names(&browsers).len(), 2, "a DNS hiccup dropped browsers");

    // a is no longer listed: it takes no creation, but its live agent is not cut off, and it is
    // closed once that agent is gone.
    let member_a = browsers.members().into_iter().find(|(n, _)| *n == a_name).expect("a").1;
    set(Ok(vec![at(&b)]));
    until("a leaves", Duration::from_secs(10), || names(&browsers) == [b_name.clone()]).await;
    for i in 0..3 {
        let r = browsers.clone().oneshot(rejected(410 + i)).await;
        assert_eq!(sub_code(&r), Some(44113), "on b: {r:?}");
    }
    assert!(member_a.is_up(), "a retired browser with an agent is kept");
    assert!(on_a.connection_state().await.is_ok(), "the agent on a retired browser still answers");
    on_a.dispose().await.expect("disposed");
    let took =
        until("a retired browser with no agent closes", Duration::from_secs(10), || !member_a.is_up()).await;
    println!("a closed {took:?} after its last agent went");
    assert_eq!(a.service_pages(), 0, "a retired browser keeps pages of the service's");

    // None listed: a creation fails at once, and retryably.
    set(Ok(Vec::new()));
    until("b leaves", Duration::from_secs(10), || names(&browsers).is_empty()).await;
    let started = Instant::now();
    let r = browsers.clone().oneshot(rejected(420)).await;
    assert!(matches!(r, Err(WebSdkError::NoBrowser(_))), "{r:?}");
    assert!(classify(r.as_ref().unwrap_err(), &Default::default()).retry, "retryable");
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());

    // Listed again: a joins anew.
    set(Ok(vec![at(&a)]));
    until("a joins again", Duration::from_secs(10), || names(&browsers) == [a_name.clone()]).await;
    let r = browsers.clone().oneshot(rejected(430)).await;
    assert_eq!(sub_code(&r), Some(44113), "on a again: {r:?}");
    on_b.dispose().await.expect("disposed");
    browsers.close().await;
}

/// A browser behind a TLS front (`socat OPENSSL-LISTEN`, as stunnel or an ingress would be; the
/// fixture certificate is for 10.231.10.2 and `browser.test`, issued by the fixture CA): reached
/// over `https://` and `wss://` with the certificate verified, and refused without the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn a_browser_behind_tls_is_reached_with_its_certificate_verified() {
    let _one = HOSTS.lock().await;
    isolated();
    let host = Host::new(10);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let listen = format!(
        "OPENSSL-LISTEN:9443,bind={},cert={},key={},verify=0,fork,reuseaddr",
        host.address,
        fixtures.join("remote-browser.crt").display(),
        fixtures.join("remote-browser.key").display()
    );
    let mut front = Command::new("ip")
        .args(["netns", "exec", &host.netns, "socat", &listen, "TCP:127.0.0.1:9222"])
        .stderr(Stdio::null())
        .spawn()
        .expect("socat puts TLS in front of DevTools");
    let started = Instant::now();
    while std::net::TcpStream::connect((host.address.as_str(), 9443)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "the TLS front did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let https = format!("https://{}:9443", host.address);
    let wss = host
        .websocket()
        .replace(&format!("ws://{}:{DEVTOOLS_PORT}", host.address), &format!("wss://{}:9443", host.address));
    let with_ca = |endpoint: &str| RemoteBrowser::new(endpoint).with_ca_file(fixtures.join("remote-ca.crt"));
    // Each service's pages are in a browser context of its connection's, with a Cache Storage
    // of its own: each sends the bundle once.
    for (endpoint, sends) in [(https.as_str(), 1), (wss.as_str(), 1)] {
        // The page (its bundle) and a sealed creation cross the TLS link; the SDK answers.
        let sdk = WebSdk::launch(WebSdkConfig { remote: Some(with_ca(endpoint)), ..remote(&host) })
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        let r = sdk.create(&rejected(500)).await;
        assert_eq!(sub_code(&r), Some(44113), "{endpoint}: {r:?}");
        assert_eq!(sdk.stats().await.expect("stats").bundles_sent, sends, "{endpoint}");
        sdk.close().await;
    }
    // The system's roots alone do not know the CA: refused at the handshake.
    let err = WebSdk::launch(WebSdkConfig { remote: Some(RemoteBrowser::new(&https)), ..remote(&host) })
        .await
        .expect_err("an unknown issuer is refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let _ = front.kill();
    let _ = front.wait();
}

/// Several local browsers (one per two cores, say) as one pool: each its own Chromium process,
/// creations spread by free slots, the pool's capacity the sum of theirs (backpressure in
/// `poll_ready` once all are full), and every process gone at close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn local_browsers_share_creations_each_in_its_own_process() {
    let _one = HOSTS.lock().await;
    isolated();
    let local =
        |name: &str| WebSdkConfig { name: name.into(), warm_pages: 0, max_agents: 2, ..isolation::config() };
    let browsers =
        Browsers::launch(vec![local("local-0"), local("local-1")]).await.expect("two local browsers");
    let mut pids = Vec::new();
    for (name, sdk) in browsers.members() {
        pids.push(sdk.stats().await.expect("stats").pid.unwrap_or_else(|| panic!("{name} runs here")));
    }
    assert_ne!(pids[0], pids[1], "one Chromium each");
    let agents: Vec<_> = futures::future::join_all((0..4).map(|i| browsers.clone().oneshot(valid(600 + i))))
        .await
        .into_iter()
        .map(|r| r.expect("an agent"))
        .collect();
    let spread = load(&browsers).await;
    assert_eq!(spread, [("local-0".to_owned(), 2), ("local-1".to_owned(), 2)], "spread by free slots");
    // Both full: the pool is not ready until an agent goes.
    let mut svc = browsers.clone();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), svc.ready()).await.is_err(),
        "ready with every browser full"
    );
    let mut agents = agents.into_iter();
    agents.next().expect("an agent").dispose().await.expect("disposed");
    tokio::time::timeout(Duration::from_secs(5), svc.ready())
        .await
        .expect("ready once a slot is free")
        .expect("not closed");
    drop(svc);
    drop(agents);
    // Each browser is asked to close and does: not left to its 5 s close timeout and a kill (as
    // when the close command went to a handler no one drove: 10.1 s for these two).
    let closing = Instant::now();
    browsers.close().await;
    let took = closing.elapsed();
    assert!(took < Duration::from_secs(4), "closing two idle browsers took {took:?}");
    for pid in pids {
        let gone = Instant::now();
        while alive(pid) {
            assert!(gone.elapsed() < Duration::from_secs(5), "Chromium {pid} outlived the pool");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Cache Storage name the page keeps its bundle under (`origin.rs`): the first 12 bytes of
/// the bundle's SHA-256.
fn bundle_cache() -> String {
    let bundle = std::fs::read(isolation::config().page_dir.join("bundle.js")).expect("the built page");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bundle);
    let hex: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("callagent-websdk-{hex}")
}

/// What someone who reaches a remote browser's DevTools while the service runs can do: open a
/// page in the service's browser context (`Target.getTargets` names it), on the service's origin
/// (served through `Fetch`, as the service serves it), and leave a bundle of their own in the
/// context's Cache Storage, under the name the page looks in.
async fn plant_a_bundle(host: &Host, cache: &str) {
    use base64::Engine;
    use chromiumoxide::cdp::browser_protocol::fetch::{
        EnableParams, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern,
    };
    let (browser, mut handler) =
        chromiumoxide::Browser::connect(host.websocket()).await.expect("the host's DevTools");
    let driving = tokio::spawn(async move { while handler.next().await.is_some() {} });
    use chromiumoxide::cdp::browser_protocol::target::{CreateTargetParams, GetTargetsParams};
    let targets = browser.execute(GetTargetsParams::default()).await.expect("the targets").result;
    let context = targets
        .target_infos
        .into_iter()
        .find(|t| t.url.starts_with(ORIGIN))
        .and_then(|t| t.browser_context_id)
        .expect("a page of the service's, in its context");
    let mut params = CreateTargetParams::new("about:blank");
    params.browser_context_id = Some(context);
    let page = browser.new_page(params).await.expect("a page in the service's context");
    let mut paused = page.event_listener::<EventRequestPaused>().await.expect("Fetch events");
    let pattern = RequestPattern { url_pattern: Some(format!("{ORIGIN}/*")), ..Default::default() };
    page.execute(EnableParams { patterns: Some(vec![pattern]), handle_auth_requests: None })
        .await
        .expect("Fetch.enable");
    let document = format!(
        r#"<script>caches.open("{cache}").then((c) => c.put("/bundle.js", new Response("window.planted = true;"))).then(() => {{ document.title = "planted"; }})</script>"#
    );
    let body = base64::engine::general_purpose::STANDARD.encode(document);
    let serve = async {
        while let Some(request) = paused.next().await {
            let html = HeaderEntry { name: "content-type".into(), value: "text/html".into() };
            let _ = page
                .execute(FulfillRequestParams {
                    request_id: request.request_id.clone(),
                    response_code: 200,
                    response_headers: Some(vec![html]),
                    binary_response_headers: None,
                    body: Some(body.clone().into()),
                    response_phrase: None,
                })
                .await;
        }
    };
    let planted = async {
        page.goto(format!("{ORIGIN}/")).await.expect("the origin");
        loop {
            let title: String = page.evaluate("document.title").await.expect("title").into_value().unwrap();
            if title == "planted" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = planted => {}
        () = serve => panic!("the attacker's page stopped loading"),
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("the bundle was not planted within 30 s"),
    }
    let _ = page.close().await;
    drop(browser);
    driving.abort();
}

/// A bundle planted in the Cache Storage of the service's context in a remote browser (by
/// anyone who reaches its DevTools while the service runs) never runs: the page checks the cached bundle's SHA-256, deletes one
/// that is not the service's, and fetches the service's own. (Without the check the planted
/// code runs instead of the SDK, and would receive every token; here it makes the page never
/// start, so `tab()` fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn a_bundle_planted_in_the_browsers_cache_never_runs() {
    let _one = HOSTS.lock().await;
    isolated();
    let host = Host::new(11);
    let sdk = WebSdk::launch(remote(&host)).await.expect("the remote browser");
    let sent = || async { sdk.stats().await.expect("stats").bundles_sent };
    let first = sdk.tab().await.expect("a page");
    let version = first.sdk_version().await.expect("the SDK's version");
    assert_eq!(sent().await, 1, "the bundle was sent once, and cached");
    plant_a_bundle(&host, &bundle_cache()).await;
    drop(first);
    let second = sdk.tab().await.expect("a page with the service's own bundle, not the planted one");
    assert_eq!(second.sdk_version().await.expect("the SDK's version"), version);
    assert_eq!(sent().await, 2, "the planted bundle was refused and the service's sent again");
    // The cache holds the service's bundle again: a third page takes it from there.
    let third = sdk.tab().await.expect("a page");
    assert_eq!(sent().await, 2, "the third page found the service's bundle in the cache");
    drop((second, third));
    sdk.close().await;
    drop(host);
}

/// A host gone a long time rejoins within seconds of answering again: while nothing answers at
/// its endpoint the service asks again every `restart_spacing` (one connection attempt), and
/// keeps its doubling backoff for an endpoint that answers and fails. (Backed off, it waited up
/// to 30 s after a long outage: 23–34 s in 5 of 7 cases after 35–40 s down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn a_host_gone_a_minute_rejoins_within_5_s_of_answering() {
    let _one = HOSTS.lock().await;
    isolated();
    let mut host = Host::new(12);
    // A lone WebSdk (a member of `Browsers` is kept up the same way): it reconnects in the
    // background, with no creation asking.
    let config = WebSdkConfig { name: "h".into(), restart_spacing: Duration::from_secs(1), ..remote(&host) };
    let member = WebSdk::launch(config).await.expect("the host's browser");
    host.kill();
    until("the browser is lost", Duration::from_secs(10), || !member.is_up()).await;
    let outage =
        Duration::from_secs(std::env::var("REMOTE_OUTAGE").ok().and_then(|s| s.parse().ok()).unwrap_or(60));
    tokio::time::sleep(outage).await;
    host.start(); // returns once DevTools answers on the link
    let rejoined = until("the host rejoined", Duration::from_secs(45), || member.is_up()).await;
    println!("a host gone {outage:?} rejoined {rejoined:?} after it answered again");
    assert!(rejoined <= Duration::from_secs(5), "rejoined {rejoined:?} after it answered");
    member.close().await;
    drop(host);
}

/// No page the service opened outlives its DevTools connection to a browser it does not own:
/// they are in a browser context of the connection's, made with `disposeOnDetach`. A link that
/// drops with an agent alive and comes back leaves none of the old connection's pages (before,
/// they stayed open with their agents, connected for an identity nothing owned), and close
/// leaves none at all, with the host's browser still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn no_page_of_the_service_outlives_its_connection() {
    let _one = HOSTS.lock().await;
    isolated();
    let host = Host::new(13);
    let sdk = WebSdk::launch(WebSdkConfig { warm_pages: 1, ..remote(&host) }).await.expect("the browser");
    let agent = sdk.create(&valid(700)).await.expect("an agent");
    let before = host.service_page_ids();
    assert!(!before.is_empty(), "the host lists none of the service's pages");
    host.link(false);
    until("the browser is lost", Duration::from_secs(10), || !sdk.is_up()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    host.link(true);
    let took = until("the old connection's pages are gone", Duration::from_secs(20), || {
        let now = host.service_page_ids();
        !before.iter().any(|id| now.contains(id))
    })
    .await;
    println!("the old connection's {} pages went {took:?} after the link came back", before.len());
    let call = agent.connection_state().await;
    assert!(matches!(call, Err(WebSdkError::AgentGone(_))), "{call:?}");
    drop(agent);
    readmitted(&sdk, Duration::from_secs(20)).await;
    let agent = sdk.create(&valid(701)).await.expect("an agent on the new connection");
    assert!(host.service_pages() >= 1);
    drop(agent);
    sdk.close().await;
    assert_eq!(host.service_pages(), 0, "close left pages of the service's in the host's browser");
    // Told apart by its type, not its text.
    let after = sdk.create(&rejected(702)).await;
    assert!(matches!(after, Err(WebSdkError::Closed)), "a creation after close: {after:?}");
    // A browser asked to close ends a moment after it answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(host.answers(), "the host's browser is not the service's to close");
    drop(host);
}

/// A service killed (SIGKILL: an OOM kill, a node lost) holding an agent leaves no page of its
/// own in the host's browser: its connection goes with the process, and the browser disposes
/// the connection's context. The service is this test run again as a child process, which
/// creates an agent, says so, and waits to be killed. Meanwhile a second service shares the
/// host's browser: its driver never hears of the first one's pages (the relay passes target
/// events of its own context only), it counts only its own, and its close leaves the first one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, socat and root in an isolated network namespace: run websdk/conformance.sh"]
async fn a_killed_service_leaves_no_page_on_the_host() {
    const CHILD: &str = "CALLAGENT_WEBSDK_TEST_CHILD_ENDPOINT";
    if let Ok(endpoint) = std::env::var(CHILD) {
        // The child: its parent checked the isolation (and made the veth link this sees).
        let sdk = WebSdk::launch(remote_at(endpoint)).await.expect("the remote browser");
        let agent = sdk.create(&valid(800)).await.expect("an agent");
        println!("HOLDING {}", agent.identity());
        tokio::time::sleep(Duration::from_secs(120)).await;
        panic!("the child was not killed");
    }
    use std::io::BufRead;
    let _one = HOSTS.lock().await;
    isolated();
    let host = Host::new(14);
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "a_killed_service_leaves_no_page_on_the_host", "--ignored", "--nocapture"])
        .env(CHILD, host.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child service");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let holding = tokio::task::spawn_blocking(move || {
        lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("HOLDING"))).is_some()
    });
    let holding = tokio::time::timeout(Duration::from_secs(90), holding).await;
    assert!(matches!(holding, Ok(Ok(true))), "the child created no agent");
    let theirs = host.service_page_ids();
    assert!(!theirs.is_empty(), "the host lists none of the child's pages");

    // A second service on the same browser, its driver traced.
    let trace = trace::Trace::capture();
    let other = WebSdk::launch(remote(&host)).await.expect("a second service on the host");
    let tab = other.tab().await.expect("a page of its own");
    let heard = trace.text();
    drop(trace);
    assert!(heard.contains("Received"), "the driver's TRACE was captured");
    for id in &theirs {
        let line = heard.lines().find(|l| l.contains(id.as_str()));
        assert!(line.is_none(), "the second service's driver heard of the first's page {id}: {line:?}");
    }
    assert_eq!(other.open_pages().await.expect("its pages"), 1, "it counts its own page only");
    assert_eq!(host.service_pages(), theirs.len() + 1, "both services' pages on the host");
    drop(tab);
    other.close().await;
    let left = host.service_page_ids();
    assert!(theirs.iter().all(|id| left.contains(id)), "closing the second service closed the first's pages");
    assert_eq!(left.len(), theirs.len(), "the second service left a page");

    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let took =
        until("the killed service's pages are gone", Duration::from_secs(10), || host.service_pages() == 0)
            .await;
    println!("a killed service's pages went {took:?} after the kill");
    drop(host);
}
