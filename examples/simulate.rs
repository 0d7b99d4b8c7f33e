//! Runs a scenario against the simulated ACS backend and shows what the retry policy did.
//!
//! ```text
//! cargo run --release --example simulate                       # the default scenario
//! cargo run --release --example simulate -- examples/scenarios/overload.toml
//! cargo run --release --example simulate -- SCENARIO --json    # machine-readable report
//! cargo run --release --example simulate -- SCENARIO --real-time
//! cargo run --release --example simulate -- SCENARIO --metrics-addr 127.0.0.1:9898
//! ```
//!
//! By default the run uses tokio's paused clock: waits and outages take no real time, so minutes
//! of simulated traffic finish in seconds, and the same scenario gives the same report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use callagent_retry::observe::HISTOGRAM_BUCKETS;
use callagent_retry::sim::{Scenario, run};
use indicatif::{ProgressBar, ProgressStyle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

const DEFAULT: (&str, &str) =
    ("examples/scenarios/outage-and-recovery.toml", include_str!("scenarios/outage-and-recovery.toml"));

struct Args {
    path: Option<String>,
    json: bool,
    real_time: bool,
    metrics_addr: Option<std::net::SocketAddr>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: simulate [SCENARIO.toml] [--json] [--real-time] [--metrics-addr 127.0.0.1:PORT]"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut a = Args { path: None, json: false, real_time: false, metrics_addr: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--real-time" => a.real_time = true,
            "--metrics-addr" => {
                let addr = it.next().unwrap_or_else(|| usage("--metrics-addr needs an address"));
                let addr: std::net::SocketAddr = addr.parse().unwrap_or_else(|_| usage("bad --metrics-addr"));
                if !addr.ip().is_loopback() {
                    usage("--metrics-addr must be a loopback address");
                }
                a.metrics_addr = Some(addr);
            }
            "-h" | "--help" => usage("Runs a scenario against the simulated backend."),
            other if other.starts_with('-') => usage(&format!("unknown option {other}")),
            path if a.path.is_none() => a.path = Some(path.to_owned()),
            _ => usage("one scenario at a time"),
        }
    }
    a
}

fn main() {
    let args = args();
    let (path, text) = match &args.path {
        Some(p) => (
            p.clone(),
            std::fs::read_to_string(p).unwrap_or_else(|e| usage(&format!("cannot read {p}: {e}"))),
        ),
        None => (DEFAULT.0.to_owned(), DEFAULT.1.to_owned()),
    };
    let scenario = Scenario::from_toml(&text).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });

    // Before the layer is built (inside `run`), and outside the paused runtime: the exporter
    // serves on its own thread, in real time.
    if let Some(addr) = args.metrics_addr {
        HISTOGRAM_BUCKETS
            .into_iter()
            .try_fold(PrometheusBuilder::new().with_http_listener(addr), |b, (name, buckets)| {
                b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            })
            .and_then(|b| b.install())
            .unwrap_or_else(|e| usage(&format!("cannot serve metrics on {addr}: {e}")));
        eprintln!("serving metrics on http://{addr}/metrics");
    }

    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all();
    if !args.real_time {
        rt.start_paused(true);
    }
    let rt = rt.build().expect("tokio runtime");

    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let bar = ProgressBar::new(scenario.offered());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} calls ({elapsed})")
            .expect("template")
            .progress_chars("=> "),
    );
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
    let report = rt.block_on(run(&scenario, Some(done.clone())));
    finished.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    // Left on screen: on paused time the whole run can take less than one redraw.
    bar.set_position(done.load(Ordering::Relaxed));
    bar.finish();

    let report = report.unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    if args.json {
        // Machine-readable output stays clean of the terminal bar (indicatif draws to stderr).
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        if !scenario.description.is_empty() {
            println!("{}\n", scenario.description);
        }
        println!("{report}");
    }
}
