//! A soak of the real path: many creations through the retry and connect layers over the web
//! SDK service, in the isolated namespace, with random drops and one browser kill in the middle.
//!
//! ```text
//! websdk/page/build.sh                  # once: npm ci + esbuild
//! unshare -n sh -c 'ip link set lo up && cargo run --release -p callagent-websdk --example soak'
//! ```
//!
//! Most tokens are ones the SDK rejects in milliseconds (no voip scope); every `--valid-every`th
//! is valid, which with no network resolves a `Disconnected` agent after ~14 s that the connect
//! check disposes and retries. The creations come from `--identities` users, so they share pages,
//! where `--residents` agents stay alive all run (made again after the kill): at the end each of
//! their pages must hold its residents and nothing else, so a leak inside a long-lived shared
//! page shows. `--drop-percent` of the calls are dropped after a random time
//! (a caller going away). At the middle, Chromium is killed by its pid. Prints creations,
//! outcomes, restarts, pages and Chromium's PSS before and after; exits non-zero unless every
//! call ended, the pages and processes are back to idle, and PSS is within 10% of before.
//! `SOAK_TRACE=1` logs the service at DEBUG to stderr.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callagent_retry::connect::{ConnectError, ConnectLayer};
use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use callagent_websdk::{Agent, BrowserStats, WebSdk, WebSdkConfig};
use clap::Parser;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

#[derive(Parser, Debug)]
#[command(
    about = "Soak the web SDK service: creations, drops and a browser kill; pages and memory must return"
)]
struct Args {
    /// Creations in all.
    #[arg(long, default_value_t = 1000)]
    creations: usize,
    /// Every Nth creation uses a valid token (the rest are rejected by the SDK at once).
    #[arg(long, default_value_t = 100)]
    valid_every: usize,
    /// Percent of calls dropped after a random time up to 3 s.
    #[arg(long, default_value_t = 10)]
    drop_percent: u32,
    /// Creations at once (also `max_agents`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Users the creations come from, in turn: different users share a page, so pages live long
    /// and host thousands of creations each (1: each creation on a page of its own).
    #[arg(long, default_value_t = 64)]
    identities: usize,
    /// Agents kept alive on the shared pages for the whole run (outside `--concurrency`; made
    /// again after the kill), whose pages' census is checked at the end: a leak inside a
    /// long-lived shared page shows there.
    #[arg(long, default_value_t = 4)]
    residents: usize,
    /// Seed of the drops.
    #[arg(long, default_value_t = 18)]
    seed: u64,
    /// Run even with a network (the browser still resolves no host but localhost).
    #[arg(long)]
    allow_network: bool,
    /// Write what the service's metrics recorded (Prometheus text) here at the end; the
    /// dashboard check serves it to Prometheus.
    #[arg(long)]
    metrics_out: Option<std::path::PathBuf>,
}

fn isolated() -> bool {
    std::fs::read_to_string("/proc/self/net/dev")
        .map(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")))
        .unwrap_or(false)
}

fn request(valid: bool, user: &str) -> CreateAgentRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let scope = if valid { "chat,voip" } else { "chat" };
    let claims = json!({"skypeid": format!("acs:r_soak_{user}"), "acsScope": scope, "resourceId": "r", "exp": now + 3600});
    CreateAgentRequest::new(format!("8:acs:soak-{user}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

/// `n` agents that stay alive (valid tokens: `Disconnected` with no network, but alive), made
/// through the retry layer without the connect check (which would dispose them): right after the
/// kill, a creation may still meet the dying browser (`BrowserDied`, retried).
async fn residents(sdk: &WebSdk, n: usize, generation: &str) -> Vec<Agent> {
    let retry = RetryConfig { max_attempts: 4, ..RetryConfig::default() };
    let Ok(layer) = CallAgentRetryLayer::new(retry) else { return Vec::new() };
    let made = futures::future::join_all((0..n).map(|i| {
        let request = request(true, &format!("resident-{generation}-{i}"));
        tower::Layer::layer(&layer, sdk.clone()).oneshot(request)
    }))
    .await;
    made.into_iter()
        .filter_map(|r| r.map_err(|e| eprintln!("resident {generation} failed: {e}")).ok())
        .collect()
}

/// Each resident page's census against the residents on it: a page holding more agents than its
/// residents, or creations still in flight after the run, leaked. Waits up to 30 s for creations
/// abandoned late (their agent is disposed when the SDK makes it).
async fn leaks(residents: &[Agent]) -> Vec<String> {
    let mut pages: BTreeMap<String, (usize, &Agent)> = BTreeMap::new();
    for agent in residents {
        // A tab's Debug names its page's target.
        pages.entry(format!("{:?}", agent.tab())).or_insert((0, agent)).0 += 1;
    }
    let started = Instant::now();
    loop {
        let mut found = Vec::new();
        for (page, (expected, agent)) in &pages {
            match agent.tab().census().await {
                Ok((agents, creating)) if agents == *expected && creating == 0 => {}
                Ok((agents, creating)) => found.push(format!(
                    "{page}: {agents} agents (residents {expected}), {creating} creations in flight"
                )),
                Err(e) => found.push(format!("{page}: census failed: {e}")),
            }
        }
        if found.is_empty() || started.elapsed() > Duration::from_secs(30) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `pid` runs (not a zombie), from `/proc` itself.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with(['Z', 'X']))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn settled(sdk: &WebSdk, idle: &BrowserStats) -> Result<BrowserStats, String> {
    let started = Instant::now();
    loop {
        let now = sdk.stats().await.map_err(|e| format!("stats: {e}"))?;
        if (now.pages == idle.pages
            && now.agents_and_creations == 0
            && now.page_processes() <= idle.page_processes())
            || started.elapsed() > Duration::from_secs(30)
        {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("SOAK_TRACE").is_some() {
        tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG).with_writer(std::io::stderr).init();
    }
    if !isolated() && !args.allow_network {
        eprintln!(
            "refusing to run with a network: run it under `unshare -n` (see the doc comment), or pass --allow-network"
        );
        return ExitCode::from(2);
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.concurrency == 0 || args.valid_every == 0 || args.identities == 0 {
        return Err("--concurrency, --valid-every and --identities must be at least 1".into());
    }
    // The recorder first: the service resolves its metric handles when it starts.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(callagent_websdk::PAGE_LOAD.into()),
            callagent_websdk::PAGE_LOAD_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let config = WebSdkConfig { max_agents: args.concurrency + args.residents, ..WebSdkConfig::isolated() };
    let warm_pages = config.warm_pages;
    let sdk = WebSdk::launch(config).await.map_err(|e| e.to_string())?;
    // Idle is a browser that has made one agent: Chromium starts its audio service with the
    // first agent and keeps it, and keeps a spare renderer once it has closed a page.
    if let Ok(agent) = sdk.clone().oneshot(request(true, "warm-up")).await {
        let _ = agent.dispose().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // And its warm page loaded: read while the pool still refills it (slow on a busy machine),
    // idle lacked that page's ~100 MiB and the PSS check failed on a sound run.
    let started = Instant::now();
    let before = loop {
        let stats = sdk.stats().await.map_err(|e| e.to_string())?;
        if stats.warm_pages >= warm_pages || started.elapsed() > Duration::from_secs(30) {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let retry = RetryConfig {
        max_attempts: 2,
        deadline: Some(Duration::from_secs(45)),
        seed: Some(args.seed),
        ..RetryConfig::default()
    };
    let svc = ServiceBuilder::new()
        .layer(CallAgentRetryLayer::new(retry).map_err(|e| e.to_string())?)
        .layer(ConnectLayer::new(Some(Duration::from_secs(1))))
        .service(sdk.clone());
    let kept = std::sync::Arc::new(tokio::sync::Mutex::new(residents(&sdk, args.residents, "a").await));
    println!("{} residents alive on the shared pages", kept.lock().await.len());
    let killed_processes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rng = StdRng::seed_from_u64(args.seed);
    let plan: Vec<(bool, Option<Duration>)> = (0..args.creations)
        .map(|i| {
            let drop = rng.gen_range(0..100) < args.drop_percent;
            (
                i % args.valid_every == args.valid_every - 1,
                drop.then(|| Duration::from_millis(rng.gen_range(0..3000))),
            )
        })
        .collect();
    let kill_at = args.creations / 2;
    let started = Instant::now();
    let outcomes: Vec<String> = futures::stream::iter(plan.into_iter().enumerate())
        .map(|(i, (valid, drop_after))| {
            let (svc, sdk) = (svc.clone(), sdk.clone());
            let (kept, killed_processes) = (kept.clone(), killed_processes.clone());
            let identities = args.identities;
            let residents_n = args.residents;
            async move {
                if i == kill_at
                    && let Ok(BrowserStats { pid: Some(pid), .. }) = sdk.stats().await
                {
                    *killed_processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        sdk.chromium_processes();
                    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                    println!("killed Chromium (pid {pid}) at creation {i}");
                    // The residents went with it: new ones, on the next browser's pages.
                    let mut kept = kept.lock().await;
                    kept.clear();
                    *kept = residents(&sdk, residents_n, "b").await;
                }
                let call = svc.oneshot(request(valid, &format!("u{}", i % identities)));
                let result = match drop_after {
                    Some(after) => match tokio::time::timeout(after, call).await {
                        Ok(r) => r,
                        Err(_) => return "dropped".to_owned(),
                    },
                    None => call.await,
                };
                match result {
                    Ok(agent) => {
                        let _ = agent.dispose().await;
                        "created".to_owned()
                    }
                    Err(e) => {
                        let sdk = match e.last_error() {
                            Some(ConnectError::Service(inner)) => inner.sdk_error(),
                            _ => None,
                        };
                        match sdk {
                            Some(sdk) => format!("{:?} {}/{}", e.reason(), sdk.code(), sdk.sub_code()),
                            None => format!("{:?}: {}", e.reason(), e.last_attempt()),
                        }
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let took = started.elapsed();
    let mut failures = Vec::new();
    let kept = std::mem::take(&mut *kept.lock().await);
    if kept.len() != args.residents {
        failures.push(format!("{} of {} residents made after the kill", kept.len(), args.residents));
    }
    for agent in &kept {
        if let Err(e) = agent.connection_state().await {
            failures.push(format!("a resident died during the run: {e}"));
        }
    }
    let leaked = leaks(&kept).await;
    println!("resident pages checked: {}", if leaked.is_empty() { "no leak" } else { "LEAKED" });
    failures.extend(leaked);
    for agent in kept {
        let _ = agent.dispose().await;
    }
    let after = settled(&sdk, &before).await?;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in &outcomes {
        let key: String = outcome.chars().take(100).collect();
        *tally.entry(key).or_default() += 1;
    }
    println!("{} creations in {:.0} s ({} ended)", args.creations, took.as_secs_f64(), outcomes.len());
    for (outcome, n) in &tally {
        println!("  {n:>5}  {outcome}");
    }
    println!("browser restarts: {}", after.restarts);
    println!("pages open:        before {:>4}  after {:>4}", before.pages, after.pages);
    println!("Chromium processes: before {:>3}  after {:>4}", before.processes, after.processes);
    println!(
        "Chromium PSS:      before {:>6.0} MiB  after {:>6.0} MiB",
        mib(before.pss_bytes),
        mib(after.pss_bytes)
    );
    if outcomes.len() != args.creations {
        failures.push(format!("{} of {} calls ended", outcomes.len(), args.creations));
    }
    if after.pages != before.pages || after.agents_and_creations != 0 {
        failures.push(format!(
            "pages {} (idle {}), slots held {}",
            after.pages, before.pages, after.agents_and_creations
        ));
    }
    // Nothing of the killed browser may be left: each of its processes, recorded before the kill,
    // is read from /proc itself.
    let dead: Vec<u32> = killed_processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if args.creations > 1 && dead.is_empty() {
        failures.push("the killed browser's processes were not recorded".into());
    }
    let left: Vec<u32> = dead.into_iter().filter(|pid| alive(*pid)).collect();
    if !left.is_empty() {
        failures.push(format!("processes of the killed browser left: {left:?}"));
    }
    if after.page_processes() > before.page_processes() {
        failures.push(format!("{} Chromium processes (idle {})", after.processes, before.processes));
    }
    if after.process_kinds != before.process_kinds {
        println!("process kinds before: {:?}", before.process_kinds);
        println!("process kinds after:  {:?}", after.process_kinds);
    }
    if after.pss_bytes as f64 > before.pss_bytes as f64 * 1.10 {
        failures.push(format!(
            "PSS {:.0} MiB, more than 10% over {:.0} MiB",
            mib(after.pss_bytes),
            mib(before.pss_bytes)
        ));
    }
    if args.creations > 1 && after.restarts != 1 {
        failures.push(format!("{} restarts (one kill)", after.restarts));
    }
    sdk.close().await;
    if let Some(path) = &args.metrics_out {
        std::fs::write(path, recorder.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("metrics written to {}", path.display());
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}
