//! A scripted flaky agent-creation service behind the retry layer.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Each identity's creation fails the way the Calling SDK fails: some with transient
//! `UnexpectedClientError`s that a retry fixes, one with a Teams token on an ACS agent (an
//! `ExpectedError` that no retry fixes), one that never recovers. The table shows what the layer
//! did with each, and the remedy it reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig, StopReason};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The failures each identity's creation meets, in order, before it succeeds.
fn script() -> HashMap<&'static str, Vec<u32>> {
    HashMap::from([
        ("alice", vec![]),
        ("bob", vec![40114]),          // connection timeout, then fine
        ("carol", vec![40104, 40216]), // two transient failures
        ("dave", vec![40229]),         // Teams token for an ACS agent
        ("erin", vec![40114; 10]),     // ACS unreachable for good
        ("frank", vec![40228]),        // a second agent for the same identity
    ])
}

#[tokio::main]
async fn main() -> Result<(), callagent_retry::ConfigError> {
    let remaining = Arc::new(Mutex::new(script()));
    let calls = Arc::new(Mutex::new(HashMap::<&str, u32>::new()));
    let (remaining2, calls2) = (remaining.clone(), calls.clone());
    let sdk = service_fn(move |identity: &'static str| {
        *calls2.lock().unwrap().entry(identity).or_default() += 1;
        let failure = {
            let mut r = remaining2.lock().unwrap();
            r.get_mut(identity).filter(|q| !q.is_empty()).map(|q| q.remove(0))
        };
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await; // the SDK's own work
            match failure {
                Some(sub_code) => Err(CallAgentError::from_catalog(sub_code)
                    .unwrap_or_else(|| CallAgentError::new(500, sub_code, "scripted failure"))),
                None => Ok(format!("CallAgent({identity})")),
            }
        }
    });

    // Short waits so the demo finishes in a moment; real defaults start at 500 ms.
    let config = RetryConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..RetryConfig::default()
    };
    let svc = ServiceBuilder::new().layer(CallAgentRetryLayer::new(config)?).service(sdk);

    println!("{:<7} {:<40} {:>8} {:>9}", "user", "result", "attempts", "time");
    let mut names: Vec<_> = script().into_keys().collect();
    names.sort_unstable();
    for identity in names {
        let started = tokio::time::Instant::now();
        let result = svc.clone().oneshot(identity).await;
        let made = calls.lock().unwrap()[identity];
        let took = format!("{:.0?}", started.elapsed());
        match result {
            Ok(agent) => println!("{identity:<7} {:<40} {made:>8} {took:>9}", format!("created {agent}")),
            Err(err) => {
                let what = match err.reason() {
                    StopReason::Rejected => "rejected (not retryable)",
                    StopReason::Exhausted => "gave up: attempts exhausted",
                    StopReason::DeadlineExceeded => "gave up: deadline",
                    StopReason::BudgetExhausted => "gave up: retry budget empty",
                    _ => "gave up: the service failed",
                };
                let last =
                    err.last_error().map(|e| format!(" {}/{}", e.code(), e.sub_code())).unwrap_or_default();
                println!("{identity:<7} {:<40} {made:>8} {took:>9}", format!("{what}{last}"));
                if let Some(remedy) = err.remedy() {
                    println!("        remedy: {remedy}");
                }
            }
        }
    }
    Ok(())
}
