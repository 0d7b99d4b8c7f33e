//! Runs a scenario against the simulated ACS backend and shows what the retry policy did.
//!
//! ```text
//! cargo run --release --example simulate                       # the default scenario
//! cargo run --release --example simulate -- overload           # a shipped scenario by name
//! cargo run --release --example simulate -- examples/scenarios/overload.toml
//! cargo run --release --example simulate -- SCENARIO --json    # machine-readable report
//! cargo run --release --example simulate -- SCENARIO --plot run.svg
//! cargo run --release --example simulate -- SCENARIO --real-time --metrics-addr 127.0.0.1:9898
//! cargo run --release --example simulate -- --help
//! ```
//!
//! By default the run uses tokio's paused clock: waits and outages take no real time, so minutes
//! of simulated traffic finish in a fraction of a second, and the same scenario gives the same
//! report.

mod cli;
mod plot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use callagent_retry::sim::{Scenario, run};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// The scenarios shipped in `examples/scenarios/`, by name; the first is the default.
const SHIPPED: [(&str, &str); 8] = [
    ("unreachable", include_str!("scenarios/unreachable.toml")),
    ("outage-and-recovery", include_str!("scenarios/outage-and-recovery.toml")),
    ("unreachable-old-sdk", include_str!("scenarios/unreachable-old-sdk.toml")),
    ("healthy", include_str!("scenarios/healthy.toml")),
    ("flaky-network", include_str!("scenarios/flaky-network.toml")),
    ("overload", include_str!("scenarios/overload.toml")),
    ("bad-token", include_str!("scenarios/bad-token.toml")),
    ("duplicate-identity", include_str!("scenarios/duplicate-identity.toml")),
];

fn shipped_list() -> String {
    let mut out = String::from("Shipped scenarios (pass the name, or the path of your own TOML file):\n");
    for (name, text) in SHIPPED {
        let about = Scenario::from_toml(text).map(|s| s.description).unwrap_or_default();
        let first = about.split(". ").next().unwrap_or_default().trim_end_matches('.');
        out.push_str(&format!("  {name:<20} {first}\n"));
    }
    out
}

/// Runs a scenario against the simulated ACS backend and prints, per SDK subcode, what the retry
/// layer did.
#[derive(Parser, Debug)]
#[command(after_help = shipped_list())]
struct Args {
    /// A shipped scenario's name or a scenario file [default: unreachable]
    scenario: Option<String>,
    /// Print the report as JSON (including the second-by-second timeline)
    #[arg(long)]
    json: bool,
    /// Draw the run over time into an SVG file
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Run on the wall clock instead of tokio's paused clock (the outage scenario takes ~2.5 min)
    #[arg(long)]
    real_time: bool,
    /// Stop a --real-time run after this long (e.g. "10s"), for a short demo
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "real_time")]
    stop_after: Option<Duration>,
    /// Serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9898 or localhost:9898)
    #[arg(long, value_name = "ADDR", value_parser = cli::loopback)]
    metrics_addr: Option<SocketAddr>,
    /// With --metrics-addr: keep serving this long after the run, so a scraper sees the end
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    linger: Duration,
}

/// A runtime failure: the message says what went wrong and how to fix it.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("simulate: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (source, text) = match args.scenario.as_deref() {
        None => (SHIPPED[0].0.to_owned(), SHIPPED[0].1.to_owned()),
        Some(name) => match SHIPPED.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => ((*n).to_owned(), (*text).to_owned()),
            None => match std::fs::read_to_string(name) {
                Ok(text) => (name.to_owned(), text),
                Err(e) => {
                    return fail(format_args!(
                        "cannot read {name}: {e}\n(give a scenario file, or one of: {})",
                        SHIPPED.map(|s| s.0).join(", ")
                    ));
                }
            },
        },
    };
    let scenario = match Scenario::from_toml(&text) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("{source}: {e}")),
    };

    // Before the layer is built (inside `run`), and outside the paused runtime: the exporter
    // serves on its own thread, in real time.
    if let Some(addr) = args.metrics_addr {
        if let Err(e) = cli::serve_metrics(addr) {
            return fail(e);
        }
        eprintln!("serving metrics on http://{addr}/metrics");
    }

    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all();
    if !args.real_time {
        rt.start_paused(true);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => return fail(format_args!("cannot start the tokio runtime: {e}")),
    };

    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let bar = ProgressBar::new(scenario.offered());
    // Fits 80 columns with a 20-character scenario name.
    let style = ProgressStyle::with_template("{msg:.20} [{bar:30}] {pos:>7}/{len:7} calls {elapsed:>4}")
        .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(scenario.name.clone());
    let ticker = {
        let (bar, done, finished) = (bar.clone(), done.clone(), finished.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                bar.set_position(done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let report = rt.block_on(async {
        match args.stop_after {
            Some(limit) => tokio::time::timeout(limit, run(&scenario, Some(done.clone()))).await.ok(),
            None => Some(run(&scenario, Some(done.clone())).await),
        }
    });
    finished.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    // Left on screen: on paused time the whole run can take less than one redraw.
    bar.set_position(done.load(Ordering::Relaxed));
    bar.finish();

    let report = match report {
        None => {
            eprintln!(
                "stopped after {:?} (--stop-after), before the scenario ended: no report",
                args.stop_after.unwrap_or_default()
            );
            return ExitCode::SUCCESS;
        }
        Some(Err(e)) => return fail(format_args!("{source}: {e}")),
        Some(Ok(report)) => report,
    };
    if args.json {
        // Machine-readable output stays clean of the terminal bar (indicatif draws to stderr).
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => return fail(format_args!("cannot write the report as JSON: {e}")),
        }
    } else {
        println!("{report}");
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot::run(&report, path) {
            return fail(format_args!("cannot draw {}: {e}", path.display()));
        }
        eprintln!("plot written to {}", path.display());
    }
    if args.metrics_addr.is_some() && !args.linger.is_zero() {
        eprintln!("serving the final metrics for {:?} more (--linger)", args.linger);
        std::thread::sleep(args.linger);
    }
    ExitCode::SUCCESS
}
