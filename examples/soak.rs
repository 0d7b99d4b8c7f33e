//! The million-creation soak on simulated time.
//!
//! ```text
//! cargo run --release --example soak                 # 1,000,000 creations, 1,000 concurrent
//! cargo run --release --example soak -- 100000       # CI's size
//! ```
//!
//! Checks, and prints: every call resolved exactly once; every outcome matches the
//! classification of its last failure; the errors the layer counted equal the failures the
//! backend produced (and its local timeouts equal the backend calls they cancelled); heap memory
//! after the run equals memory before it (after a warm-up run of the same size).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;

use callagent_retry::sim::{SoakConfig, SoakReport, soak};
use clap::Parser;

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

/// Soaks the retry layer with creations on simulated time and checks that every count adds up.
#[derive(Parser, Debug)]
struct Args {
    /// Creations in all (1,000 at a time)
    #[arg(default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    calls: u64,
}

fn main() -> ExitCode {
    let Args { calls } = Args::parse();
    match run(calls) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(calls: u64) -> Result<bool, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
    let config = SoakConfig::standard(calls);
    rt.block_on(soak(&config))?; // a warm-up run of the same size, so the heap is at its steady size
    let before = common::CountingAlloc::live_bytes();
    let wall = std::time::Instant::now();
    let report: SoakReport = rt.block_on(soak(&config))?;
    let wall = wall.elapsed();
    let grown = common::CountingAlloc::live_bytes() - before;

    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "wall time {wall:.1?} for {:.0} s of simulated traffic; heap growth {grown} bytes",
        report.simulated_seconds
    );
    let ok = report.resolved == calls
        && report.finished_events == calls
        && report.mismatches == 0
        && report.errors_counted == report.backend_failures
        && report.local_timeouts == report.backend_cancelled
        && grown.abs() < 64 * 1024;
    println!("{}", if ok { "soak: all invariants hold" } else { "soak: INVARIANT BROKEN" });
    Ok(ok)
}
