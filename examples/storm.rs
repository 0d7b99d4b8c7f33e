//! The retry-storm study: how much extra load retries put on a backend that is down or contended.
//!
//! ```text
//! cargo run --release --example storm
//! cargo run --release --example storm -- --plot storm.svg   # backend calls per second, per policy
//! cargo run --release --example storm -- --seeds 3          # a quick run of table (c)
//! ```
//!
//! Everything runs on tokio's paused clock (minutes of simulated time in about a second) and is
//! deterministic. Two tables:
//!
//! (a) A total outage (every call fails with 408/40114) under a fixed offered load: backend calls
//!     per offered call, without retries, with retries and no budget, and with budgets (tower's
//!     values, 10%, and the default 8% + 1/s at 100 and 1,000 calls a second). The SRE book's
//!     target for a well-behaved client is 1.1x.
//!
//! (b) The same outage for one client making one creation a minute: the default budget still
//!     grants every retry.
//!
//! (c) The contention model of AWS's backoff simulator (Exponential Backoff And Jitter): N clients
//!     each make one optimistic-concurrency write to one row; a write conflicts when the row
//!     changed since the client read it; network 10±2 ms; backoff base 5 ms, cap 2 s. Total calls
//!     and the time until every client has written, per jitter kind, averaged over 20 seeds.

mod plot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use callagent_retry::classify::Classify;
use callagent_retry::retry::BudgetConfig;
use callagent_retry::retry::{Jitter, MAX_ATTEMPTS};
use callagent_retry::sim::{BackendConfig, Load, Outage, Report, Scenario, run};
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// The retry-storm study: extra load from retries on a backend that is down or contended.
#[derive(Parser, Debug)]
struct Args {
    /// Draw table (a)'s runs (backend calls per second, per policy) into an SVG file
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Seeds averaged per row of table (c); fewer is quicker and noisier
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
}

type BoxError = Box<dyn std::error::Error>;

/// One run of a total outage (every call fails with 408/40114): `clients` clients each calling
/// `calls` times, one call every `interval`.
async fn outage(
    retry: RetryConfig,
    clients: usize,
    calls: usize,
    interval: Duration,
) -> Result<Report, BoxError> {
    let scenario = Scenario {
        name: "storm-outage".into(),
        description: String::new(),
        observe: Default::default(),
        connect: Default::default(),
        backend: BackendConfig {
            outages: vec![Outage {
                start: Duration::ZERO,
                duration: Duration::from_secs(86_400),
                sub_code: 40114,
                unreachable: false,
                old_sdk: false,
            }],
            ..Default::default()
        },
        load: Load { clients, calls_per_client: calls, interval, ..Default::default() },
        retry: RetryConfig { seed: Some(1), ..retry },
    };
    Ok(run(&scenario, None).await?)
}

async fn outage_table() -> Result<Vec<(String, Report)>, BoxError> {
    println!("(a) total outage, 30 calls per client, one call per client per second\n");
    println!("{:<40} {:>9} {:>14} {:>12}", "policy", "calls/s", "backend calls", "per offered");
    let budget = |min_per_sec, retry_percent| {
        Some(BudgetConfig { ttl: Duration::from_secs(10), min_per_sec, retry_percent })
    };
    let policies = [
        (
            "no retries (max_attempts = 1)",
            RetryConfig { max_attempts: 1, budget: None, ..Default::default() },
            100,
        ),
        ("4 attempts, no budget", RetryConfig { budget: None, ..Default::default() }, 100),
        (
            "4 attempts, 20% + 10/s (tower's values)",
            RetryConfig { budget: budget(10, 0.2), ..Default::default() },
            100,
        ),
        ("4 attempts, 10% + 1/s", RetryConfig { budget: budget(1, 0.1), ..Default::default() }, 100),
        ("4 attempts, 8% + 1/s (default)", RetryConfig::default(), 100),
        ("4 attempts, 8% + 1/s (default)", RetryConfig::default(), 1000),
    ];
    let mut runs = Vec::new();
    for (name, retry, clients) in policies {
        let report = outage(retry, clients, 30, Duration::from_secs(1)).await?;
        println!("{name:<40} {clients:>9} {:>14} {:>11.2}x", report.backend_calls, report.amplification);
        if clients == 100 {
            runs.push((name.to_owned(), report));
        }
    }
    // A client that creates an agent once a minute must still get its retries: the reserve
    // (min_per_sec x ttl) is what it lives on.
    let lone = outage(RetryConfig::default(), 1, 10, Duration::from_secs(60)).await?;
    println!(
        "\n(b) the same outage, one client making one creation a minute (10 calls), default budget:\n    \
         {} backend calls for {} calls ({:.2} attempts each; 4 = every retry granted)",
        lone.backend_calls, lone.offered, lone.amplification
    );
    Ok(runs)
}

/// A conditional write that lost the race: retryable, like a 429.
#[derive(Debug)]
struct Conflict;

impl Classify for Conflict {
    fn code(&self) -> Option<u16> {
        Some(429)
    }
    fn sub_code(&self) -> Option<u32> {
        None
    }
}

/// One contention run: returns (total calls, time until the last client finished, clients that
/// gave up after `MAX_ATTEMPTS` attempts).
async fn contention(clients: usize, jitter: Jitter, seed: u64) -> Result<(u64, Duration, u64), BoxError> {
    let row = Arc::new(Mutex::new((0u64, 0u64, SmallRng::seed_from_u64(seed)))); // (version, calls, rng)
    let write = {
        let row = Arc::clone(&row);
        service_fn(move |()| {
            let row = Arc::clone(&row);
            async move {
                let (read, latency) = {
                    let mut r = row.lock().unwrap_or_else(PoisonError::into_inner);
                    r.1 += 1;
                    let latency = Duration::from_micros(r.2.gen_range(8_000..=12_000));
                    (r.0, latency)
                };
                tokio::time::sleep(latency).await; // the conditional write travels to the row
                let mut r = row.lock().unwrap_or_else(PoisonError::into_inner);
                if r.0 == read {
                    r.0 += 1;
                    Ok(())
                } else {
                    Err(Conflict)
                }
            }
        })
    };
    let config = RetryConfig {
        // The most any policy may make; a client still conflicting then gives up (counted).
        max_attempts: MAX_ATTEMPTS,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_secs(2),
        multiplier: 2.0,
        jitter,
        randomization_factor: 0.5,
        deadline: None,
        budget: None,
        seed: Some(seed),
        ..Default::default()
    };
    let svc = CallAgentRetryLayer::new(config)?.layer(write);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(svc.clone().oneshot(()));
    }
    let mut gave_up = 0;
    while let Some(done) = tasks.join_next().await {
        gave_up += u64::from(done?.is_err());
    }
    let calls = row.lock().unwrap_or_else(PoisonError::into_inner).1;
    Ok((calls, start.elapsed(), gave_up))
}

async fn contention_table(runs: u64) -> Result<(), BoxError> {
    println!("\n(c) contention: N clients, one optimistic write each to one row (mean of {runs} seeds)\n");
    println!("{:<14} {:>8} {:>12} {:>14} {:>8}", "jitter", "clients", "total calls", "completion", "gave up");
    for clients in [50, 100] {
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated, Jitter::Proportional]
        {
            let (mut calls, mut time, mut gave_up) = (0, Duration::ZERO, 0);
            for seed in 0..runs {
                let (c, t, g) = contention(clients, jitter, seed).await?;
                calls += c;
                time += t;
                gave_up += g;
            }
            let mean = time / u32::try_from(runs)?;
            println!(
                "{:<14} {:>8} {:>12} {:>13.2}s {:>8}",
                jitter.as_str(),
                clients,
                calls / runs,
                mean.as_secs_f64(),
                gave_up / runs
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storm: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let runs = outage_table().await?;
        contention_table(args.seeds).await?;
        if let Some(path) = &args.plot {
            plot::policies(&runs, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))?;
            eprintln!("plot written to {}", path.display());
        }
        Ok::<_, BoxError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::FAILURE
        }
    }
}
