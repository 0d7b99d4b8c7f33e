//! 100,000 calls dropped mid-wait and mid-attempt leave nothing behind: no live tasks, no heap,
//! and a budget whose balance is exactly deposits minus the retries that were charged.
//!
//! Timers: tokio's timer metrics exist only under `--cfg tokio_unstable`, so they are checked
//! through their owner. A call's one timer is a `tokio::time::Sleep` stored inside its response
//! future, which tokio deregisters when it is dropped; the layer spawns no task and allocates no
//! timer elsewhere. So a timer outlives its call only if the future does, and the checks below
//! (no task left alive, heap back to its size) show no future does.

mod common;

use std::time::Duration;

use callagent_retry::CallAgentError;
use callagent_retry::Outcome;
use callagent_retry::classify::Verdict;
use callagent_retry::observe::{Finished, RetryObserver};
use callagent_retry::retry::BudgetConfig;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};

fn timeout() -> CallAgentError {
    CallAgentError::from_catalog(40114).unwrap()
}
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

/// Counts without storing, so the heap check sees only what the layer keeps.
#[derive(Default)]
struct Counts {
    cancelled: AtomicU64,
    finished: AtomicU64,
    retries: AtomicU64,
}

#[derive(Clone, Default)]
struct Counter(Arc<Counts>);

impl RetryObserver for Counter {
    // Charged to the budget when decided, whether or not the call is then made.
    fn on_retry_scheduled(&self, _: &Verdict, _: Duration) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
    }
    fn on_finish(&self, call: &Finished) {
        let outcome = call.outcome;
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        self.0.cancelled.fetch_add(u64::from(outcome == Outcome::Cancelled), Ordering::Relaxed);
    }
}

#[test]
fn dropped_calls_leave_no_tasks_no_timers_and_a_consistent_budget() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let recorder = Counter::default();
        let config = RetryConfig {
            // Deposits live 60 s; the whole run takes 10 s of paused time, so none expire.
            budget: Some(BudgetConfig { ttl: Duration::from_secs(60), min_per_sec: 0, retry_percent: 1.0 }),
            attempt_timeout: Some(Duration::from_secs(5)),
            // The first wait is exactly 500 ms, so a call dropped at 100 ms is always mid-wait.
            jitter: callagent_retry::retry::Jitter::None,
            deadline: None,
            ..RetryConfig::default()
        };
        let layer = CallAgentRetryLayer::new(config).unwrap().with_observer(recorder.clone());
        // Even calls fail at once and wait to retry; odd calls hang in their attempt.
        // Services that keep no record of their calls, so the heap check sees the layer alone.
        let waiting = layer.layer(tower::service_fn(|()| std::future::ready(Err::<(), _>(timeout()))));
        let hanging =
            layer.layer(tower::service_fn(|()| std::future::pending::<Result<(), CallAgentError>>()));
        let budget = layer.budget().unwrap().clone();

        let run_batch = |batch: u32| {
            let (waiting, hanging) = (waiting.clone(), hanging.clone());
            async move {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..1_000u32 {
                    let limit = Duration::from_millis(100);
                    if (batch * 1_000 + i).is_multiple_of(2) {
                        let call = tokio::time::timeout(limit, waiting.clone().oneshot(()));
                        tasks.spawn(async move { call.await.is_err() });
                    } else {
                        let call = tokio::time::timeout(limit, hanging.clone().oneshot(()));
                        tasks.spawn(async move { call.await.is_err() });
                    }
                }
                let mut dropped = 0;
                while let Some(t) = tasks.join_next().await {
                    dropped += u32::from(t.unwrap());
                }
                dropped
            }
        };
        // Warm up the runtime's and allocator's buffers.
        run_batch(0).await;
        let before = common::CountingAlloc::live_bytes();
        let tasks_before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let counts = &recorder.0;
        let (finished_before, retries_before, t0) =
            (counts.finished.load(Ordering::Relaxed), counts.retries.load(Ordering::Relaxed), Instant::now());

        let mut dropped = 0;
        for batch in 1..=100 {
            dropped += run_batch(batch).await;
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        assert_eq!(dropped, 100_000, "every call was dropped, mid-wait or mid-attempt");
        assert_eq!(counts.finished.load(Ordering::Relaxed) - finished_before, 100_000, "each reported once");
        assert_eq!(counts.cancelled.load(Ordering::Relaxed), 101_000, "as cancelled");
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), tasks_before);
        // Every call deposited one retry; every waiting call was charged one.
        let charged = counts.retries.load(Ordering::Relaxed);
        assert_eq!(charged - retries_before, 50_000);
        assert_eq!(budget.available_at(Instant::now()), 101_000 - charged);
        let grown = common::CountingAlloc::live_bytes() - before;
        assert!(grown.abs() < 64 * 1024, "heap grew by {grown} bytes");
    });
}
