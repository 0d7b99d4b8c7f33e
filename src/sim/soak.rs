//! A long run through one layer against the simulated backend, checking the invariants a retry
//! layer must keep: every call resolves exactly once, each outcome matches its classification,
//! and the errors counted equal the failures the backend produced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::SimError;
use super::backend::{BackendConfig, SimBackend, SimToken};
use crate::classify::{Verdict, classify};
use crate::observe::{Finished, ObserveConfig, RetryObserver};
use crate::retry::{CallAgentRetryLayer, Outcome, RetryConfig, StopReason};
use crate::sdk::{AgentKind, CreateAgentRequest, catalog};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Creations in all.
    pub calls: u64,
    /// Workers calling one after another, each with its own identity.
    pub concurrency: usize,
    /// Seeds the backend and the jitter.
    pub seed: u64,
    /// The policy under test.
    pub retry: RetryConfig,
}

impl SoakConfig {
    /// The standard soak: `calls` creations, 1,000 at a time, against a 28% fault mix over every
    /// catalog subcode plus five outside it, with attempt timeouts, a deadline and the budget on.
    pub fn standard(calls: u64) -> Self {
        Self {
            calls,
            concurrency: 1_000,
            seed: 7,
            retry: RetryConfig {
                attempt_timeout: Some(Duration::from_millis(400)),
                deadline: Some(Duration::from_secs(10)),
                seed: Some(7),
                ..RetryConfig::default()
            },
        }
    }

    /// The backend the standard soak runs against.
    pub fn backend(&self) -> BackendConfig {
        let mut failures: BTreeMap<u32, f64> =
            catalog::entries().iter().map(|e| (e.sub_code, 0.01)).collect();
        failures.extend((0..5).map(|i| (99_000 + i, 0.01)));
        BackendConfig {
            seed: self.seed,
            latency_min: Duration::from_millis(20),
            latency_max: Duration::from_millis(500),
            failures,
            ..BackendConfig::default()
        }
    }
}

/// What a soak found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SoakReport {
    /// Creations offered.
    pub calls: u64,
    /// Results returned to callers.
    pub resolved: u64,
    /// `on_finish` events seen (must equal `calls`: once each).
    pub finished_events: u64,
    /// Results whose outcome contradicts the classification of their last failure.
    pub mismatches: u64,
    /// Calls by outcome label; `success` counts every call that got an agent (first try or after
    /// retries).
    pub outcomes: BTreeMap<String, u64>,
    /// Calls the backend received.
    pub backend_calls: u64,
    /// Calls the backend failed (per its own counters).
    pub backend_failures: u64,
    /// Failures the layer counted (its per-subcode error events), excluding attempts it timed
    /// out itself (those never reach the backend's counters).
    pub errors_counted: u64,
    /// Attempts the layer timed out.
    pub local_timeouts: u64,
    /// Backend calls cancelled by an attempt timeout (neither succeeded nor failed there).
    pub backend_cancelled: u64,
    /// Simulated time the run took (seconds).
    pub simulated_seconds: f64,
}

#[derive(Default)]
struct Counter {
    finished: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

impl RetryObserver for Counter {
    fn on_failure(&self, v: &Verdict) {
        if v.basis == crate::classify::Basis::LocalTimeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn on_finish(&self, _: &Finished) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the soak on the current runtime (paused, for a fast and exact run).
pub async fn soak(config: &SoakConfig) -> Result<SoakReport, SimError> {
    let counter = Arc::new(Counter::default());
    let observe = ObserveConfig { name: "soak".into(), ..Default::default() };
    let layer = CallAgentRetryLayer::new(config.retry.clone())?
        .with_observe(observe)?
        .with_observer(Arc::clone(&counter));
    let backend = SimBackend::new(config.backend());
    let svc = layer.layer(backend.clone());
    let overrides = config.retry.overrides.clone();
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let workers = config.concurrency.max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let n = config.calls / workers + u64::from(w < config.calls % workers);
        let (svc, backend, outcomes, overrides) =
            (svc.clone(), backend.clone(), outcomes.clone(), overrides.clone());
        tasks.spawn(async move {
            let identity = format!("8:acs:soak-{w}");
            let token = SimToken::Acs.mint(&identity);
            let (mut resolved, mut mismatches) = (0u64, 0u64);
            let mut local: BTreeMap<&'static str, u64> = BTreeMap::new();
            for _ in 0..n {
                let request = CreateAgentRequest::new(identity.clone(), token.clone(), AgentKind::Acs);
                let result = svc.clone().oneshot(request).await;
                resolved += 1;
                let outcome = match &result {
                    Ok(_) => {
                        backend.dispose(&identity);
                        Outcome::Success.as_str()
                    }
                    Err(e) => {
                        let retryable = classify(e.last_attempt(), &overrides).retry;
                        let consistent = match e.reason() {
                            StopReason::Rejected => !retryable,
                            StopReason::ServiceFailed => false,
                            _ => retryable,
                        };
                        mismatches += u64::from(!consistent);
                        e.outcome().as_str()
                    }
                };
                *local.entry(outcome).or_default() += 1;
            }
            let mut all = outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, v) in local {
                *all.entry(k.to_owned()).or_default() += v;
            }
            (resolved, mismatches)
        });
    }
    let (mut resolved, mut mismatches) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (r, m) = done?;
        resolved += r;
        mismatches += m;
    }
    let stats = backend.stats();
    let backend_failures: u64 = stats.failures.values().sum();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(SoakReport {
        calls: config.calls,
        resolved,
        finished_events: counter.finished.load(Ordering::Relaxed),
        mismatches,
        outcomes,
        backend_calls: stats.calls,
        backend_failures,
        errors_counted: counter.errors.load(Ordering::Relaxed),
        local_timeouts: counter.timeouts.load(Ordering::Relaxed),
        backend_cancelled: stats.calls - stats.created - backend_failures,
        simulated_seconds: started.elapsed().as_secs_f64(),
    })
}
