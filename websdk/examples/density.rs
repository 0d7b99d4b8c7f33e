//! What live agents cost on this machine, side by side in one run: Chromium's memory (PSS summed
//! over its processes) and CPU per live agent at several agent counts and `agents_per_page`
//! values, the time for N concurrent creations to resolve, and the bridge's own overhead per
//! creation (the time the caller sees minus the SDK's own time inside the page) with and without
//! a warm page. Prints a table and writes the figures as JSON (`--json`).
//!
//! ```text
//! websdk/page/build.sh     # once: npm ci + esbuild
//! unshare -n sh -c 'ip link set lo up && cargo run --release -p callagent-websdk --example density'
//! unshare -n sh -c 'ip link set lo up && cargo run --release -p callagent-websdk --example density -- --agents 8 --per-page 4 --json /tmp/density.json'
//! ```
//!
//! With no network (the isolated namespace) every agent resolves `Disconnected` and its SDK keeps
//! trying to connect, so the CPU figures are an agent's cost while the service is unreachable:
//! an upper bound of its idle cost.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_websdk::{Agent, BrowserStats, WebSdk, WebSdkConfig};
use clap::Parser;
use serde::Serialize;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Measure the web SDK service's memory, CPU and overhead per live agent")]
struct Args {
    /// Agent counts to measure (each from an idle browser, created all at once).
    #[arg(long, value_delimiter = ',', default_value = "8,32,64")]
    agents: Vec<usize>,
    /// `agents_per_page` values to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
    per_page: Vec<usize>,
    /// How long N concurrent creations may take before the run gives up on that row.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    within: Duration,
    /// How long CPU is sampled once the agents are alive.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    cpu_window: Duration,
    /// Sequential creations timed for the bridge's overhead (each with and without a warm page).
    #[arg(long, default_value_t = 12)]
    overhead_samples: usize,
    /// Write the figures here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Row {
    agents_per_page: usize,
    agents: usize,
    created: usize,
    all_created_s: Option<f64>,
    pages: usize,
    pss_idle_mib: f64,
    pss_mib: f64,
    /// `None` when not every creation resolved within the bound (the row is then not a density).
    pss_per_agent_mib: Option<f64>,
    cpu_per_agent_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Overhead {
    warm: bool,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn request(i: usize) -> CreateAgentRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = json!({"skypeid": format!("acs:11111111-2222_{i:08}"), "acsScope": "voip",
        "resourceId": "11111111-2222-3333-4444-555555555555", "exp": now + 3600, "iat": now});
    CreateAgentRequest::new(format!("8:acs:density-{i}"), AccessToken::unsigned(&claims), AgentKind::Acs)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn launch(per_page: usize, warm: usize, max_agents: usize) -> Result<WebSdk, String> {
    let config =
        WebSdkConfig { agents_per_page: per_page, warm_pages: warm, max_agents, ..WebSdkConfig::isolated() };
    WebSdk::launch(config).await.map_err(|e| format!("cannot start the service: {e}"))
}

/// Idle: after one agent made and disposed (Chromium keeps an audio service and a spare
/// renderer after its first), the warm pages refilled.
async fn idle(sdk: &WebSdk) -> Result<BrowserStats, String> {
    let agent = sdk.create(&request(usize::MAX / 2)).await.map_err(|e| format!("warm-up agent: {e}"))?;
    let _ = agent.dispose().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sdk.stats().await.map_err(|e| format!("stats: {e}"))
}

async fn row(args: &Args, per_page: usize, n: usize) -> Result<Row, String> {
    let sdk = launch(per_page, 1, n + 1).await?;
    let idle = idle(&sdk).await?;
    let started = Instant::now();
    let creations = (0..n).map(|i| {
        let sdk = sdk.clone();
        async move { sdk.create(&request(i)).await }
    });
    let made = tokio::time::timeout(args.within, futures::future::join_all(creations)).await;
    let (agents, all_created): (Vec<Agent>, Option<f64>) = match made {
        Ok(results) => {
            let took = started.elapsed().as_secs_f64();
            let agents: Vec<Agent> = results.into_iter().filter_map(Result::ok).collect();
            let all = (agents.len() == n).then_some(took);
            (agents, all)
        }
        Err(_) => (Vec::new(), None),
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = sdk.stats().await.map_err(|e| e.to_string())?;
    tokio::time::sleep(args.cpu_window).await;
    let after = sdk.stats().await.map_err(|e| e.to_string())?;
    let live = agents.len() as f64;
    let complete = all_created.is_some() && n > 0;
    let cpu = (after.cpu_seconds - before.cpu_seconds) / args.cpu_window.as_secs_f64() * 100.0;
    let row = Row {
        agents_per_page: per_page,
        agents: n,
        created: agents.len(),
        all_created_s: all_created,
        pages: after.pool_pages,
        pss_idle_mib: mib(idle.pss_bytes),
        pss_mib: mib(after.pss_bytes),
        pss_per_agent_mib: complete.then(|| (mib(after.pss_bytes) - mib(idle.pss_bytes)) / live),
        cpu_per_agent_percent: complete.then(|| cpu / live),
    };
    drop(agents);
    sdk.close().await;
    Ok(row)
}

/// The bridge's own time per creation: what the caller waited minus what the SDK took in the
/// page, over sequential creations (a warm page ready before each, or none).
async fn overhead(args: &Args, warm: bool) -> Result<Overhead, String> {
    let sdk = launch(1, usize::from(warm), 4).await?;
    let _ = idle(&sdk).await?;
    let mut samples = Vec::new();
    for i in 0..args.overhead_samples {
        if warm {
            // Let the pool put a warm page back first.
            let ready = Instant::now();
            while sdk.stats().await.map_err(|e| e.to_string())?.warm_pages == 0
                && ready.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let started = Instant::now();
        let agent = sdk.create(&request(1_000_000 + i)).await.map_err(|e| format!("creation: {e}"))?;
        let caller = started.elapsed();
        samples.push((caller.saturating_sub(agent.creation_time())).as_secs_f64() * 1e3);
        let _ = agent.dispose().await;
    }
    sdk.close().await;
    samples.sort_by(f64::total_cmp);
    Ok(Overhead {
        warm,
        samples: samples.len(),
        p50_ms: percentile(&samples, 0.5),
        p99_ms: percentile(&samples, 0.99),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let isolated = std::fs::read_to_string("/proc/self/net/dev")
        .map(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")))
        .unwrap_or(false);
    if !isolated {
        eprintln!(
            "density: run it in a network namespace with loopback alone: unshare -n sh -c 'ip link set lo up && …'"
        );
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    println!(
        "| agents_per_page | agents | created | all created in | pages | PSS idle | PSS | PSS per agent | CPU per agent |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &per_page in &args.per_page {
        for &n in &args.agents {
            match row(&args, per_page, n).await {
                Ok(r) => {
                    let or_dash =
                        |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.1}{unit}"));
                    println!(
                        "| {} | {} | {} | {} | {} | {:.0} MiB | {:.0} MiB | {} | {} |",
                        r.agents_per_page,
                        r.agents,
                        r.created,
                        r.all_created_s.map_or("not within the bound".into(), |s| format!("{s:.1} s")),
                        r.pages,
                        r.pss_idle_mib,
                        r.pss_mib,
                        or_dash(r.pss_per_agent_mib, " MiB"),
                        or_dash(r.cpu_per_agent_percent, "%")
                    );
                    rows.push(r);
                }
                Err(e) => {
                    eprintln!("density: agents_per_page {per_page}, {n} agents: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let mut overheads = Vec::new();
    for warm in [true, false] {
        match overhead(&args, warm).await {
            Ok(o) => {
                println!(
                    "bridge overhead per creation, {} page: p50 {:.1} ms, p99 {:.1} ms ({} creations)",
                    if o.warm { "warm" } else { "cold (opened for it)" },
                    o.p50_ms,
                    o.p99_ms,
                    o.samples
                );
                overheads.push(o);
            }
            Err(e) => {
                eprintln!("density: overhead: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({"rows": rows, "overhead": overheads});
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap_or_default()) {
            eprintln!("density: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
