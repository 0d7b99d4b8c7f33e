//! The retry-storm study: how much extra load retries put on a backend that is down or contended.
//!
//! ```text
//! cargo run --release --example storm
//! ```
//!
//! Everything runs on tokio's paused clock (minutes of simulated time in about a second) and is
//! deterministic. Two tables:
//!
//! (a) A total outage (every call fails with 408/40114) under a fixed offered load: backend calls
//!     per offered call, without retries, with retries and no budget, and with budgets of 10% and
//!     20%. The SRE book's target for a well-behaved client is 1.1x.
//!
//! (b) The contention model of AWS's backoff simulator (Exponential Backoff And Jitter): N clients
//!     each make one optimistic-concurrency write to one row; a write conflicts when the row
//!     changed since the client read it; network 10±2 ms; backoff base 5 ms, cap 2 s. Total calls
//!     and the time until every client has written, per jitter kind, averaged over 20 seeds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::classify::Classify;
use callagent_retry::retry::BudgetConfig;
use callagent_retry::retry::Jitter;
use callagent_retry::sim::{BackendConfig, Load, Outage, Scenario, run};
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

async fn outage_table() {
    println!("(a) total outage, 100 clients x 30 calls, one call per client per second\n");
    println!("{:<34} {:>14} {:>12}", "policy", "backend calls", "per offered");
    let budget =
        |p: f64| Some(BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 1, retry_percent: p });
    let policies = [
        (
            "no retries (max_attempts = 1)",
            RetryConfig { max_attempts: 1, budget: None, ..Default::default() },
        ),
        ("4 attempts, no budget", RetryConfig { budget: None, ..Default::default() }),
        ("4 attempts, budget 10%", RetryConfig { budget: budget(0.1), ..Default::default() }),
        ("4 attempts, budget 20% (default)", RetryConfig::default()),
    ];
    for (name, retry) in policies {
        let scenario = Scenario {
            name: "storm-outage".into(),
            description: String::new(),
            observe: Default::default(),
            backend: BackendConfig {
                outages: vec![Outage {
                    start: Duration::ZERO,
                    duration: Duration::from_secs(3600),
                    sub_code: 40114,
                }],
                ..Default::default()
            },
            load: Load {
                clients: 100,
                calls_per_client: 30,
                interval: Duration::from_secs(1),
                ..Default::default()
            },
            retry: RetryConfig { seed: Some(1), ..retry },
        };
        let report = run(&scenario, None).await.expect("valid scenario");
        println!("{name:<34} {:>14} {:>11.2}x", report.backend_calls, report.amplification);
    }
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

/// One contention run: returns (total calls, time until the last client wrote).
async fn contention(clients: usize, jitter: Jitter, seed: u64) -> (u64, Duration) {
    let row = Arc::new(Mutex::new((0u64, 0u64, SmallRng::seed_from_u64(seed)))); // (version, calls, rng)
    let write = {
        let row = Arc::clone(&row);
        service_fn(move |()| {
            let row = Arc::clone(&row);
            async move {
                let (read, latency) = {
                    let mut r = row.lock().unwrap();
                    r.1 += 1;
                    let latency = Duration::from_micros(r.2.gen_range(8_000..=12_000));
                    (r.0, latency)
                };
                tokio::time::sleep(latency).await; // the conditional write travels to the row
                let mut r = row.lock().unwrap();
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
        max_attempts: 10_000,
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
    let svc = CallAgentRetryLayer::new(config).expect("valid").layer(write);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(svc.clone().oneshot(()));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("every client writes eventually");
    }
    let calls = row.lock().unwrap().1;
    (calls, start.elapsed())
}

async fn contention_table() {
    println!("\n(b) contention: N clients, one optimistic write each to one row (mean of 20 seeds)\n");
    println!("{:<14} {:>8} {:>12} {:>14}", "jitter", "clients", "total calls", "completion");
    for clients in [50, 100] {
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated, Jitter::Proportional]
        {
            let runs = 20;
            let (mut calls, mut time) = (0, Duration::ZERO);
            for seed in 0..runs {
                let (c, t) = contention(clients, jitter, seed).await;
                calls += c;
                time += t;
            }
            let mean = time / runs as u32;
            println!(
                "{:<14} {:>8} {:>12} {:>13.2}s",
                jitter.as_str(),
                clients,
                calls / runs,
                mean.as_secs_f64()
            );
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    outage_table().await;
    contention_table().await;
}
