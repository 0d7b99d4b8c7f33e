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

use callagent_retry::sim::{SoakConfig, soak};

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

fn main() {
    let calls: u64 = std::env::args().nth(1).map_or(1_000_000, |n| n.parse().expect("a number of calls"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let config = SoakConfig::standard(calls);
    rt.block_on(soak(&config)).expect("warm-up");
    let before = common::CountingAlloc::live_bytes();
    let wall = std::time::Instant::now();
    let report = rt.block_on(soak(&config)).expect("soak");
    let wall = wall.elapsed();
    let grown = common::CountingAlloc::live_bytes() - before;

    println!("{}", serde_json::to_string_pretty(&report).expect("report"));
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
    std::process::exit(if ok { 0 } else { 1 });
}
