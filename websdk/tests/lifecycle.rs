//! The service's lifecycle against the real SDK in headless Chromium: whatever a caller does
//! (drop a creation at any point, time attempts out through the retry layer, drop agents
//! undisposed, kill Chromium), the pages open and Chromium's processes return to their idle
//! counts, every call ends promptly, and capacity is backpressure.
//!
//! `#[ignore]`d like the conformance suite: `websdk/conformance.sh` runs them in a network
//! namespace with loopback alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callagent_retry::classify::classify;
use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_retry::{CallAgentRetryLayer, RetryConfig, StopReason};
use callagent_websdk::{Agent, BrowserStats, WebSdk, WebSdkConfig, WebSdkError};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[path = "common/isolation.rs"]
mod isolation;
use isolation::{acs_claims, alive, isolated, now};

/// A token the SDK accepts locally: with no network it resolves a `Disconnected` agent (~14 s).
fn valid() -> CreateAgentRequest {
    CreateAgentRequest::new("8:acs:lifecycle", AccessToken::unsigned(&acs_claims()), AgentKind::Acs)
}

/// Like [`valid`], for another identity (two agents of one identity never share a page).
fn valid_other() -> CreateAgentRequest {
    let mut claims = acs_claims();
    claims["skypeid"] = json!("acs:11111111-2222_00000002");
    CreateAgentRequest::new("8:acs:lifecycle-2", AccessToken::unsigned(&claims), AgentKind::Acs)
}

/// Like [`valid`], for identity `i` of `tag` (a token of its own user: the SDK knows users by the
/// token's user id). Different identities share pages.
fn valid_for(tag: &str, i: usize) -> CreateAgentRequest {
    let mut claims = acs_claims();
    claims["skypeid"] = json!(format!("acs:11111111-2222_{tag}{i}"));
    CreateAgentRequest::new(format!("8:acs:{tag}-{i}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

/// Waits up to `within` for every one of `pids` to be gone (exited and reaped); those left.
async fn still_running(pids: &[u32], within: Duration) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || started.elapsed() > within {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A token the SDK rejects in milliseconds (no voip scope: 401/44113).
fn rejected() -> CreateAgentRequest {
    let claims =
        json!({"skypeid": "acs:r_lifecycle", "acsScope": "chat", "resourceId": "r", "exp": now() + 3600});
    CreateAgentRequest::new("8:acs:lifecycle", AccessToken::unsigned(&claims), AgentKind::Acs)
}

/// Like [`rejected`], for identity `i` (different identities share a page).
fn rejected_for(i: usize) -> CreateAgentRequest {
    let claims = json!({"skypeid": format!("acs:r_lifecycle{i}"), "acsScope": "chat", "resourceId": "r", "exp": now() + 3600});
    CreateAgentRequest::new(format!("8:acs:lifecycle-{i}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

async fn launch(config: WebSdkConfig) -> WebSdk {
    isolated();
    WebSdk::launch(config).await.expect("Chromium and the built page (websdk/conformance.sh)")
}

/// The idle figures once the browser has made one agent and settled: with its first agent
/// Chromium starts an audio service process and keeps it for the browser's life, and after its
/// first page closes it keeps a spare renderer for the next, so idle is a browser that has
/// served one creation, not one just started.
async fn idle(sdk: &WebSdk) -> BrowserStats {
    let warm_up = sdk.clone().oneshot(valid()).await.expect("a warm-up agent");
    warm_up.dispose().await.expect("dispose");
    tokio::time::sleep(Duration::from_secs(2)).await;
    sdk.stats().await.expect("stats")
}

/// Waits up to 5 s for the pages, slots and processes to return to `idle`'s; the last reading.
async fn back_to_idle(sdk: &WebSdk, idle: &BrowserStats) -> BrowserStats {
    let started = Instant::now();
    loop {
        let now = sdk.stats().await.expect("stats");
        let settled = now.pages == idle.pages
            && now.agents_and_creations == 0
            && now.page_processes() <= idle.page_processes()
            && sdk.chromium_processes().len() == now.processes;
        if settled || started.elapsed() > Duration::from_secs(5) {
            if !settled {
                println!("not back to idle: {:?}; idle: {:?}", now.process_kinds, idle.process_kinds);
            }
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_idle(now: &BrowserStats, idle: &BrowserStats, what: &str) {
    assert_eq!(now.pages, idle.pages, "{what}: pages open {now:?}, idle {idle:?}");
    assert_eq!(now.agents_and_creations, 0, "{what}: slots still held {now:?}");
    assert!(
        now.page_processes() <= idle.page_processes(),
        "{what}: Chromium processes {now:?}, idle {idle:?}"
    );
}

/// Creations dropped at seeded random points (before the page is ready, while the bundle
/// starts, while the SDK creates), mixed with ones the SDK rejects: every page is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn creations_dropped_at_any_point_close_their_pages() {
    let sdk = launch(WebSdkConfig { max_agents: 4, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    let seed = std::env::var("LIFECYCLE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(18);
    let mut rng = StdRng::seed_from_u64(seed);
    let plan: Vec<(bool, Duration)> =
        (0..56).map(|_| (rng.gen_bool(0.25), Duration::from_millis(rng.gen_range(0..4_000)))).collect();
    let (mut dropped, mut rejected_ok, mut made) = (0, 0, 0);
    for wave in plan.chunks(4) {
        let calls = wave.iter().map(|&(reject, after)| {
            let svc = sdk.clone();
            async move {
                let request = if reject { rejected() } else { valid() };
                tokio::time::timeout(after, svc.oneshot(request)).await
            }
        });
        for result in futures::future::join_all(calls).await {
            match result {
                Err(_) => dropped += 1,
                Ok(Err(WebSdkError::Sdk(e))) if e.sub_code() == 44113 => rejected_ok += 1,
                // On a page that already served a creation the SDK can resolve within the
                // bound; the agent is dropped here (disposed in the background).
                Ok(Ok(agent)) => {
                    made += 1;
                    drop(agent);
                }
                Ok(other) => panic!("seed {seed}: unexpected {other:?}"),
            }
        }
    }
    let now = back_to_idle(&sdk, &idle).await;
    println!(
        "seed {seed}: {dropped} dropped, {rejected_ok} rejected by the SDK, {made} made and dropped; idle {idle:?}, after {now:?}"
    );
    assert!(dropped >= 20, "many creations were dropped mid-way ({dropped})");
    assert_idle(&now, &idle, &format!("seed {seed}"));
    sdk.close().await;
}

/// The retry layer cancels attempts by dropping them: with an `attempt_timeout` under the time a
/// page and the SDK take, and with a deadline, no attempt's page outlives its attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn the_retry_layer_cancelling_attempts_leaves_no_page() {
    // A page per creation: each attempt takes a page of its own (warm, or opened for it).
    let sdk = launch(WebSdkConfig { agents_per_page: 1, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    // Short enough that attempts are cut off while their page loads or the SDK creates.
    let timeouts = RetryConfig {
        attempt_timeout: Some(Duration::from_millis(200)),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        deadline: None,
        budget: None,
        ..RetryConfig::default()
    };
    let svc = CallAgentRetryLayer::new(timeouts).expect("config").layer(sdk.clone());
    let started = Instant::now();
    // An attempt that makes its agent within 200 ms anyway ends its call (the agent is dropped,
    // so disposed). Every call that gave up gave up on timed-out attempts.
    let calls = (0..3).map(|_| svc.clone().oneshot(valid()));
    let mut gave_up = 0;
    for result in futures::future::join_all(calls).await {
        match result {
            Err(err) => {
                assert_eq!(err.reason(), StopReason::Exhausted, "{err}");
                assert_eq!(err.attempts(), 3);
                gave_up += 1;
            }
            Ok(agent) => drop(agent),
        }
    }
    assert!(gave_up >= 1, "at least one call's attempts all timed out (dropped by the layer)");
    println!("attempt_timeout: {gave_up} of 3 calls gave up after {:?}", started.elapsed());
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "attempt_timeout");

    let deadline =
        RetryConfig { deadline: Some(Duration::from_secs(5)), budget: None, ..RetryConfig::default() };
    let svc = CallAgentRetryLayer::new(deadline).expect("config").layer(sdk.clone());
    match svc.oneshot(valid()).await {
        Err(err) => assert_eq!(err.reason(), StopReason::DeadlineExceeded, "{err}"),
        Ok(agent) => drop(agent), // made within the deadline: dropped, so disposed
    }
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "deadline");
    sdk.close().await;
}

/// Agents the caller drops without `dispose` are disposed in their page, while the page lives on
/// with its other agents (pages are shared: an agent left alive there would never be noticed by
/// a page count), and the page closes with its last one; so is an agent a caller never takes
/// from a finished creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn agents_dropped_undisposed_are_disposed_and_their_pages_closed() {
    let sdk = launch(isolation::config()).await;
    let idle = idle(&sdk).await;
    // Four identities: one shared page.
    let calls = (0..4).map(|i| sdk.clone().oneshot(valid_for("undisposed", i)));
    let mut agents: Vec<Agent> =
        futures::future::join_all(calls).await.into_iter().map(|r| r.expect("agent")).collect();
    let stats = sdk.stats().await.expect("stats");
    assert_eq!(stats.pool_pages, 1, "four identities share a page: {stats:?}");
    assert_eq!(stats.agents_and_creations, 4);
    let keeper = agents.pop().expect("four agents");
    assert_eq!(keeper.tab().census().await.expect("census"), (4, 0), "four agents on the page");
    drop(agents);
    // The three dropped are disposed in the page; the page and the fourth live on.
    let started = Instant::now();
    loop {
        let census = keeper.tab().census().await.expect("the page lives on");
        if census == (1, 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dropped agents still alive in the page: {census:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keeper.connection_state().await.expect("the kept agent lives on");
    assert_eq!(
        sdk.stats().await.expect("stats").agents_and_creations,
        1,
        "the dropped agents' slots are free"
    );
    drop(keeper);
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "dropped agents");
    // A finished creation whose agent the caller never takes.
    let _ = sdk.clone().oneshot(valid()).await;
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "an agent never taken");
    sdk.close().await;
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// Chromium killed by its pid mid-creation: every creation ends within 2 s with a retryable
/// error; then, while idle with a live agent: the agent's calls end within 2 s. Each time the
/// next creation starts Chromium again and succeeds, the dead one is reaped and its profile
/// removed, and the processes return to their idle count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn a_killed_browser_fails_every_call_at_once_and_is_started_again() {
    // A page per creation and no warm page: three creations are three fresh pages, each taking
    // the SDK's ~14 s (on a page that has made an agent before, the SDK answers sooner).
    let config = WebSdkConfig {
        restart_spacing: Duration::from_millis(100),
        agents_per_page: 1,
        warm_pages: 0,
        ..isolation::config()
    };
    let sdk = launch(config).await;
    let idle = idle(&sdk).await;
    let first = idle.pid.expect("a browser pid");

    // Mid-creation: three creations waiting on the SDK.
    let calls: Vec<_> = (0..3).map(|_| tokio::spawn(sdk.clone().oneshot(valid()))).collect();
    let started = Instant::now();
    while sdk.stats().await.expect("stats").pages < idle.pages + 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "three pages open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_processes = sdk.chromium_processes();
    assert!(first_processes.len() > 3, "the browser and its helpers: {first_processes:?}");
    let killed = Instant::now();
    kill(first);
    for call in calls {
        let err = call.await.expect("task").expect_err("the browser died under it");
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "ended {:?} after the kill: {err}",
            killed.elapsed()
        );
        assert!(matches!(err, WebSdkError::BrowserDied(_)), "{err}");
        assert!(classify(&err, &Default::default()).retry, "a creation the browser died under is retryable");
    }
    let agent = sdk.create(&valid()).await.expect("the next creation starts Chromium again and succeeds");
    let second = sdk.stats().await.expect("stats");
    assert_eq!(second.restarts, 1);
    assert_ne!(second.pid, Some(first));
    assert!(!std::path::Path::new(&format!("/proc/{first}")).exists(), "the killed browser was reaped");
    let left = still_running(&first_processes, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "processes of the killed browser left: {left:?}");
    let profile = idle.profile.as_ref().expect("a profile");
    assert!(!profile.exists(), "the dead browser's profile {} was removed", profile.display());

    // Idle, with a live agent on it.
    let second_processes = sdk.chromium_processes();
    let killed = Instant::now();
    kill(second.pid.expect("pid"));
    let err = agent.connection_state().await.expect_err("the agent went with its browser");
    assert!(killed.elapsed() < Duration::from_secs(2), "ended {:?} after the kill", killed.elapsed());
    assert!(matches!(err, WebSdkError::AgentGone(_)), "{err}");
    drop(agent);
    let err = sdk.clone().oneshot(rejected()).await.expect_err("the SDK answers again");
    assert_eq!(err.sdk_error().map(|e| e.sub_code()), Some(44113), "{err}");
    let third = back_to_idle(&sdk, &idle).await;
    assert_eq!(third.restarts, 2);
    assert_idle(&third, &idle, "after two kills");
    let left = still_running(&second_processes, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "processes of the second killed browser left: {left:?}");
    let third_processes = sdk.chromium_processes();
    sdk.close().await;
    let left = still_running(&third_processes, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "closed: Chromium processes left {left:?}");
}

/// `max_agents = 4` with 6 callers: two wait in `poll_ready` until an agent is disposed, and
/// `load_shed` turns the full service into `Overloaded` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn max_agents_is_backpressure_in_poll_ready() {
    let sdk = launch(WebSdkConfig { max_agents: 4, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    let called = Arc::new(AtomicUsize::new(0));
    let (tx, mut agents) = tokio::sync::mpsc::unbounded_channel::<Agent>();
    let callers: Vec<_> = (0..6)
        .map(|_| {
            let (mut svc, called, tx) = (sdk.clone(), Arc::clone(&called), tx.clone());
            tokio::spawn(async move {
                svc.ready().await.expect("ready");
                called.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(svc.call(valid()).await.expect("agent"));
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(called.load(Ordering::SeqCst), 4, "four callers got a slot, two wait");
    let shed = ServiceBuilder::new().load_shed().service(sdk.clone()).oneshot(valid()).await;
    let shed = shed.expect_err("full");
    assert!(shed.is::<tower::load_shed::error::Overloaded>(), "{shed}");
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(agents.recv().await.expect("an agent"));
    }
    assert_eq!(called.load(Ordering::SeqCst), 4, "still two waiting while four agents live");
    live.pop().expect("agent").dispose().await.expect("dispose");
    let started = Instant::now();
    while called.load(Ordering::SeqCst) < 5 {
        assert!(started.elapsed() < Duration::from_secs(2), "a dispose lets one more caller in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(called.load(Ordering::SeqCst), 5, "exactly one");
    drop(live);
    for caller in callers {
        caller.await.expect("caller");
    }
    drop(tx);
    while let Some(agent) = agents.recv().await {
        agent.dispose().await.expect("dispose");
    }
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "after the burst");
    sdk.close().await;
}

/// Several agents share a page (`agents_per_page`), each on its own `CallClient`; a page closes
/// with its last agent; a creation dropped on a shared page is abandoned (its agent disposed in
/// the page as soon as the SDK makes it) while the other agents on the page live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn shared_pages_keep_one_owner_per_agent() {
    let config = WebSdkConfig { max_agents: 8, agents_per_page: 4, warm_pages: 1, ..isolation::config() };
    let sdk = launch(config).await;
    let idle = idle(&sdk).await;
    // Six agents for six identities: two pages (4 + 2).
    // Each identity with a token of its own user: the SDK knows users by the token's user id.
    let request = |i: usize| valid_for("density", i);
    let made = futures::future::join_all((0..6).map(|i| sdk.clone().oneshot(request(i)))).await;
    let agents: Vec<Agent> = made.into_iter().map(|r| r.expect("an agent")).collect();
    let stats = sdk.stats().await.expect("stats");
    assert_eq!(stats.pool_pages, 2, "six agents on pages of four: {stats:?}");
    // A creation dropped mid-way on the fuller page with room: the others there live on.
    let mut page = None;
    for agent in &agents {
        let census = agent.tab().census().await.expect("census");
        if census.0 < 4 {
            page = Some((agent.tab().clone(), census));
        }
    }
    let (page, before) = page.expect("a page with room");
    // Dropped (the task aborted) once the page shows the creation in flight; on a page that
    // has already made agents the SDK can be quick, so a creation that beat the census is tried
    // again with the next identity.
    let mut abandoned = false;
    for i in 6..12 {
        let task = tokio::spawn(sdk.clone().oneshot(request(i)));
        while !task.is_finished() {
            if page.census().await.expect("census").1 > 0 {
                task.abort();
                abandoned = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if abandoned {
            break;
        }
        drop(task.await);
    }
    assert!(abandoned, "a creation was dropped while the page was making it");
    let started = Instant::now();
    loop {
        let (agents_now, creating) = page.census().await.expect("census");
        if (agents_now, creating) == (before.0, 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the abandoned creation's agent was not disposed: {agents_now} agents, {creating} creating, before {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for agent in &agents {
        agent.connection_state().await.expect("the other agents live on");
    }
    drop(page);
    drop(agents);
    let now = back_to_idle(&sdk, &idle).await;
    assert_idle(&now, &idle, "after the shared pages' agents are gone");
    assert_eq!(now.pool_pages, 0, "{now:?}");
    sdk.close().await;
}

/// An agent whose page is closed under it (another agent's `dispose_and_close`, a
/// `Tab::close`) fails every call at once with `AgentGone`, its dispose included, and gives
/// its slot back: the browser answers nothing more for a closed page, and such calls used to wait
/// for the DevTools request timeout (minutes), holding the slot all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn an_agent_whose_page_was_closed_fails_at_once() {
    let sdk = launch(WebSdkConfig { max_agents: 2, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    let (a, b) = tokio::join!(sdk.clone().oneshot(valid()), sdk.clone().oneshot(valid_other()));
    let (a, b) = (a.expect("an agent"), b.expect("another agent"));
    assert_eq!(a.tab().census().await.expect("census").0, 2, "both agents on one page");
    a.dispose_and_close().await.expect("dispose and close");
    let bound = Duration::from_secs(2);
    let state = tokio::time::timeout(bound, b.connection_state()).await.expect("fails at once");
    assert!(matches!(state, Err(WebSdkError::AgentGone(_))), "{state:?}");
    let disposed = tokio::time::timeout(bound, b.dispose()).await.expect("fails at once");
    assert!(matches!(disposed, Err(WebSdkError::AgentGone(_))), "{disposed:?}");
    let mut svc = sdk.clone();
    tokio::time::timeout(bound, svc.ready()).await.expect("both slots free at once").expect("ready");
    drop(svc);
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "after the closed page");
    sdk.close().await;
}

/// The connect check disposes an agent that never connected and nothing else: pages are shared,
/// and it used to close the agent's page with every other caller's agent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn the_connect_check_disposes_its_agent_alone() {
    use callagent_retry::connect::{ConnectError, ConnectLayer};
    let sdk = launch(WebSdkConfig { max_agents: 2, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    // The check outlasts the neighbour's creation, so both are on the page when it disposes.
    let checked = ConnectLayer::new(Some(Duration::from_secs(5))).layer(sdk.clone());
    let neighbour = async {
        let neighbour = sdk.clone().oneshot(valid_other()).await.expect("an agent");
        (neighbour, sdk.stats().await.expect("stats"))
    };
    let (checked, (neighbour, shared)) = tokio::join!(checked.oneshot(valid()), neighbour);
    assert_eq!((shared.agents_and_creations, shared.pool_pages), (2, 1), "one page for both: {shared:?}");
    let err = checked.expect_err("no network: the agent never connects");
    assert!(matches!(err, ConnectError::NotConnected { .. }), "{err}");
    let bound = Duration::from_secs(2);
    let census = tokio::time::timeout(bound, neighbour.tab().census()).await.expect("the page answers");
    assert_eq!(census.expect("its page is open").0, 1, "the neighbour alone is left on the page");
    let state = tokio::time::timeout(bound, neighbour.connection_state()).await.expect("answers");
    assert!(state.is_ok(), "the neighbour lives on: {state:?}");
    neighbour.dispose().await.expect("dispose");
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "after the connect check");
    sdk.close().await;
}

/// A long-lived shared page makes creation after creation at the same speed: it reuses each
/// `CallClient` (one whose creation failed, or whose agent was disposed). The SDK keeps a
/// `CallClient`'s background work after `dispose()`, and a page that made a new one per creation
/// slowed with each: its 60th rejection took 10 s and the next ones 20–35 s, so every creation
/// on a shared page ran into its deadline. Also: an agent made on a reused client is sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn a_shared_page_reuses_its_call_clients() {
    let sdk = launch(WebSdkConfig { max_agents: 5, ..isolation::config() }).await;
    let idle = idle(&sdk).await;
    // The keeper holds the page; every creation below shares it (the fullest page with room).
    let keeper = sdk.clone().oneshot(valid_for("reuse", 0)).await.expect("the keeper");
    let page = keeper.tab().clone();
    // 200 rejections, four at a time.
    let started = Instant::now();
    let rejections = futures::stream::iter(0..200)
        .map(|i| {
            let sdk = sdk.clone();
            async move {
                let began = Instant::now();
                // Bounded: on a page that slows down, the later ones take minutes.
                let result = tokio::time::timeout(Duration::from_secs(5), sdk.oneshot(rejected_for(i))).await;
                (result, began.elapsed())
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let slowest = rejections.iter().map(|(_, took)| *took).max().unwrap_or_default();
    for (result, took) in &rejections {
        let result =
            result.as_ref().unwrap_or_else(|_| panic!("a rejection took {took:?}: the page slowed down"));
        let err = result.as_ref().map(drop).expect_err("a token without voip is rejected");
        let sdk_error = err.sdk_error().expect("the SDK's own error");
        assert_eq!((sdk_error.code(), sdk_error.sub_code()), (401, 44113), "{err}");
    }
    println!("200 rejections on one page in {:?}, slowest {slowest:?}", started.elapsed());
    // They ran on the keeper's page (beside its one client, up to four at once), not elsewhere.
    let made = page.call_clients().await.expect("the page's CallClients");
    assert!((2..=5).contains(&made), "{made} CallClients on the keeper's page after 200 rejections");
    assert!(slowest < Duration::from_secs(2), "a rejection took {slowest:?}: the page slowed down");
    // An agent on a client another creation used, disposed, then one more on the same client.
    for i in 1..=2 {
        let agent = sdk.clone().oneshot(valid_for("reuse", i)).await.expect("an agent on a reused client");
        assert_eq!(format!("{:?}", agent.tab()), format!("{page:?}"), "on the keeper's page");
        agent.connection_state().await.expect("alive");
        agent.dispose().await.expect("disposed");
    }
    let clients = page.call_clients().await.expect("the page's CallClients");
    // The keeper's, and at most one per creation in flight at once.
    assert!(clients <= 5, "{clients} CallClients made for 203 creations, at most 5 at once");
    assert_eq!(page.census().await.expect("census"), (1, 0), "only the keeper is left");
    drop((keeper, page));
    assert_idle(&back_to_idle(&sdk, &idle).await, &idle, "after the reuse");
    sdk.close().await;
}
