//! The soak at CI size (100,000 creations, 1,000 concurrent) on paused time. The full million is
//! `cargo run --release --example soak` (see docs/hardening.md for its figures).

mod common;

use callagent_retry::observe::ERRORS;
use callagent_retry::sim::{SoakConfig, soak};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

#[test]
fn one_hundred_thousand_creations_resolve_once_and_add_up() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();

    // Warm up at full size (metric series, the recorder's sample buffers, the timer wheel), then
    // measure around an identical run: the layer itself keeps nothing (a probe without a recorder
    // measured 0 bytes of growth between 100k runs).
    rt.block_on(soak(&SoakConfig::standard(100_000))).unwrap();
    let _ = snapshotter.snapshot();
    let before = common::CountingAlloc::live_bytes();
    let report = rt.block_on(soak(&SoakConfig::standard(100_000))).unwrap();
    // The debugging recorder keeps every histogram sample until a snapshot drains it.
    let metric_errors: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == ERRORS)
        .map(|(.., v)| if let DebugValue::Counter(n) = v { n } else { 0 })
        .sum();
    let after = common::CountingAlloc::live_bytes();

    assert_eq!(report.resolved, 100_000, "every call returned");
    assert_eq!(report.finished_events, 100_000, "and finished exactly once");
    assert_eq!(report.mismatches, 0, "every outcome matches its classification: {report:?}");
    assert_eq!(report.outcomes.values().sum::<u64>(), 100_000);
    assert_eq!(report.errors_counted, report.backend_failures, "{report:?}");
    assert_eq!(report.local_timeouts, report.backend_cancelled, "{report:?}");
    assert_eq!(metric_errors, report.backend_failures + report.local_timeouts, "per-subcode counters add up");
    // The run exercised every path.
    for outcome in ["success", "rejected", "exhausted", "budget_exhausted"] {
        assert!(
            report.outcomes.get(outcome).copied().unwrap_or(0) > 0,
            "{outcome} never happened: {report:?}"
        );
    }
    assert!(report.local_timeouts > 0);
    let grown = after - before;
    assert!(grown.abs() < 64 * 1024, "memory after a 100k run differs by {grown} bytes");
}
