//! Serves the layer's Prometheus metrics while driving it with a mixed stream of successes and
//! failures of several subcodes.
//!
//! ```text
//! cargo run --example serve_metrics -- 127.0.0.1:9898            # until Ctrl-C
//! cargo run --example serve_metrics -- localhost:9898 --seconds 60
//! curl -s 127.0.0.1:9898/metrics | grep callagent_
//! ```
//!
//! Point a Prometheus at it and import `dashboards/callagent-retry.json` into Grafana to watch the
//! dashboard move (see `dashboards/README.md`).

mod cli;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use callagent_retry::observe::ObserveConfig;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
use clap::Parser;
use rand::Rng;
use tower::{ServiceExt, service_fn};

/// Per attempt: the chance of each failure (the rest succeed).
const FAILURES: &[(f64, u16, u32)] = &[
    (0.12, 408, 40114), // ACS connection timeout (retryable)
    (0.06, 408, 40104), // user stack init timeout (retryable)
    (0.03, 500, 40216), // generic failure (retryable)
    (0.02, 401, 44114), // token scope format (expected: rejected)
    (0.01, 409, 40228), // agent already exists (expected: rejected)
    (0.01, 503, 55555), // a subcode outside the catalog (falls back to the code: retried)
];

/// Serves the retry layer's Prometheus metrics while driving it with a mixed stream of
/// successes and failures (about 50 creations a second).
#[derive(Parser, Debug)]
struct Args {
    /// Where to serve /metrics: a loopback address with a port (127.0.0.1:9898, localhost:9898)
    #[arg(value_parser = cli::loopback)]
    addr: SocketAddr,
    /// Stop after this many seconds instead of at Ctrl-C
    #[arg(long)]
    seconds: Option<u64>,
}

async fn attempt(n: u64, latency_ms: u64, mut roll: f64) -> Result<String, CallAgentError> {
    tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    for &(p, code, sub_code) in FAILURES {
        if roll < p {
            let err = CallAgentError::from_catalog(sub_code)
                .unwrap_or_else(|| CallAgentError::new(code, sub_code, "simulated"));
            return Err(err);
        }
        roll -= p;
    }
    Ok(format!("agent-{n}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serve_metrics: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_metrics: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(Args { addr, seconds }: Args) -> Result<(), String> {
    // Before the layer is built: it resolves its metric handles against this recorder.
    cli::serve_metrics(addr)?;
    let config = RetryConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        ..RetryConfig::default()
    };
    let observe = ObserveConfig { name: "demo".into(), ..Default::default() };
    let layer =
        CallAgentRetryLayer::new(config).and_then(|l| l.with_observe(observe)).map_err(|e| e.to_string())?;
    let backend = service_fn(|n: u64| {
        let (latency, roll): (u64, f64) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(2..15), rng.r#gen())
        };
        attempt(n, latency, roll)
    });
    // Keeps the budget gauge current through quiet spells, which the traffic here never has;
    // it ends with the layer.
    tokio::spawn(layer.refresh_budget_gauge(Duration::from_secs(5)).map_err(|e| e.to_string())?);
    let svc = tower::Layer::layer(&layer, backend);
    eprintln!("serving http://{addr}/metrics (layer=\"demo\"); Ctrl-C to stop");

    let drive = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20)); // ~50 creations a second
        for n in 0.. {
            tick.tick().await;
            tokio::spawn(svc.clone().oneshot(n));
        }
    };
    let stop = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        () = drive => {}
        () = stop => eprintln!("stopping"),
    }
    Ok(())
}
