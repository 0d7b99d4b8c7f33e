//! Exact metric counts for scripted runs, through `metrics-util`'s debugging recorder.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::observe::ObserveConfig;
use callagent_retry::observe::{
    ATTEMPTS, ATTEMPTS_PER_CALL, BUDGET_AVAILABLE, CALLS, DELAY, DURATION, ERRORS, RETRIES,
};
use callagent_retry::retry::{BudgetConfig, Jitter, StopReason};
use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
use common::{Scripted, Step, fail};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt};

/// A recorder of a test's own, installed for that test's thread only
/// (`metrics::with_local_recorder`): tests run in parallel and a snapshot resets gauges and
/// drains histograms, so a shared recorder let one test's snapshot steal another's values.
#[derive(Clone)]
struct Probe {
    snapshotter: Arc<Snapshotter>,
    /// Everything taken so far: a snapshot resets counters and drains histograms.
    store: Arc<Mutex<Vec<Entry>>>,
}

type Entry = (String, Vec<(String, String)>, bool, DebugValue);

/// Runs `test` on a paused current-thread runtime with a recorder of its own.
fn run<F, Fut>(test: F)
where
    F: FnOnce(Probe) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let probe = Probe { snapshotter: Arc::new(recorder.snapshotter()), store: Arc::default() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    // Every task of a current-thread runtime runs on this thread, so spawned ones (the budget
    // gauge's refresher) record here too.
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(probe)));
}

#[derive(Debug, Default)]
struct Seen {
    /// (metric, sorted labels without `layer`) -> counter value
    counters: BTreeMap<(String, Vec<(String, String)>), u64>,
    histograms: BTreeMap<String, Vec<f64>>,
    /// metric -> last value set
    gauges: BTreeMap<String, f64>,
    described: BTreeMap<String, bool>,
}

impl Seen {
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut labels: Vec<_> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.sort();
        let key = (name.to_owned(), labels);
        self.counters.get(&key).copied().unwrap_or_else(|| panic!("no series {key:?}"))
    }

    fn sum(&self, name: &str) -> u64 {
        self.counters.iter().filter(|((n, _), _)| n == name).map(|(_, v)| v).sum()
    }

    fn label_values(&self, name: &str, label: &str) -> std::collections::BTreeSet<String> {
        self.counters
            .keys()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, ls)| ls.iter().filter(|(k, _)| k == label).map(|(_, v)| v.clone()))
            .collect()
    }
}

impl Probe {
    /// What layer `layer` recorded, after taking a snapshot into the store.
    fn seen(&self, layer: &str) -> Seen {
        let mut store = self.store.lock().unwrap();
        for (key, unit, description, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<_> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            store.push((key.name().to_owned(), labels, unit.is_some() && description.is_some(), value));
        }
        let mut out = Seen::default();
        for (name, labels, described, value) in store.iter() {
            if !labels.iter().any(|(k, v)| k == "layer" && v == layer) {
                continue;
            }
            let mut labels: Vec<_> = labels.iter().filter(|(k, _)| k != "layer").cloned().collect();
            labels.sort();
            *out.described.entry(name.clone()).or_default() |= described;
            match value {
                DebugValue::Counter(v) => *out.counters.entry((name.clone(), labels)).or_default() += v,
                DebugValue::Histogram(v) => {
                    out.histograms.entry(name.clone()).or_default().extend(v.iter().map(|f| f.0))
                }
                DebugValue::Gauge(v) => {
                    out.gauges.insert(name.clone(), v.0);
                }
            }
        }
        out
    }
}

/// A layer labelled `name`.
fn named(name: &str, config: RetryConfig) -> CallAgentRetryLayer {
    let observe = ObserveConfig { name: name.to_owned(), ..Default::default() };
    CallAgentRetryLayer::new(config).unwrap().with_observe(observe).unwrap()
}

fn config() -> RetryConfig {
    RetryConfig {
        jitter: Jitter::None,
        budget: None,
        deadline: Some(Duration::from_secs(10)),
        ..Default::default()
    }
}

#[test]
fn every_counter_matches_the_script_and_conservation_holds() {
    run(|m| async move {
        let layer = named("scripted", config());
        let unknown = || Step::Fail(CallAgentError::new(503, 77_777, "not in the catalog"));
        let scripts = [
            Scripted::new([fail(40114), fail(40104)]), // success after retry, 3 attempts
            Scripted::new([fail(40229)]),              // rejected, 1
            Scripted::always(fail(40114)),             // exhausted, 4
            Scripted::new([]),                         // success, 1
            Scripted::new([unknown()]),                // success after retry, 2
            Scripted::always(Step::Hang),              // deadline exceeded, 1 (timed out at 10 s)
        ];
        for s in &scripts {
            let _ = layer.layer(s.clone()).oneshot(()).await;
        }
        // A call the caller abandons mid-wait.
        let abandoned = Scripted::always(fail(40104));
        let _ = tokio::time::timeout(Duration::from_millis(100), layer.layer(abandoned.clone()).oneshot(()))
            .await;

        let m = m.seen("scripted");
        let calls = |o| m.counter(CALLS, &[("outcome", o)]);
        assert_eq!(
            [
                "success",
                "success_after_retry",
                "rejected",
                "exhausted",
                "deadline_exceeded",
                "budget_exhausted",
                "service_failed",
                "cancelled"
            ]
            .map(calls),
            [1, 2, 1, 1, 1, 0, 0, 1]
        );
        assert_eq!(m.counter(ATTEMPTS, &[]), 13);
        let errors =
            |code, sub, cat| m.counter(ERRORS, &[("code", code), ("subcode", sub), ("category", cat)]);
        assert_eq!(errors("408", "40114", "UnexpectedClientError"), 5);
        assert_eq!(errors("408", "40104", "UnexpectedClientError"), 2);
        assert_eq!(errors("403", "40229", "ExpectedError"), 1);
        assert_eq!(errors("503", "77777", "Unknown"), 1);
        assert_eq!(errors("none", "timeout", "Unknown"), 1);
        assert_eq!(errors("409", "40228", "ExpectedError"), 0, "catalog series exist at zero");
        let retries = |sub| m.counter(RETRIES, &[("subcode", sub)]);
        // The abandoned call's retry was decided but never made: it is not counted.
        assert_eq!([retries("40114"), retries("40104"), retries("77777"), retries("40229")], [4, 1, 1, 0]);

        // Conservation: a retry is counted when its call is made, so retries = attempts - calls.
        let (attempts, calls_total, successes) = (m.sum(ATTEMPTS), m.sum(CALLS), 3);
        assert_eq!(m.sum(ERRORS), attempts - successes);
        assert_eq!(m.sum(RETRIES), attempts - calls_total);

        let mut per_call = m.histograms[ATTEMPTS_PER_CALL].clone();
        per_call.sort_by(f64::total_cmp);
        // Every finished call but the one first-attempt success (counted by calls_total instead).
        assert_eq!(m.counter(CALLS, &[("outcome", "success")]), 1);
        assert_eq!(per_call, [1.0, 1.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.histograms[DELAY], [0.5, 1.0, 0.5, 1.0, 2.0, 0.5], "waits of retries that were made");
        assert_eq!(m.histograms[DURATION].len(), 7);
        assert!(m.histograms[DURATION].contains(&10.0), "the deadline call took exactly 10 s");
        for name in [CALLS, ATTEMPTS, ERRORS, RETRIES, DURATION, ATTEMPTS_PER_CALL, DELAY] {
            assert_eq!(m.described.get(name), Some(&true), "{name} has a unit and a description");
        }
    });
}

#[test]
fn ten_thousand_unknown_subcodes_stay_within_the_bound() {
    run(|m| async move {
        let layer = named("flood", RetryConfig { max_attempts: 1, ..config() });
        for i in 0..10_000u32 {
            let svc = Scripted::new([Step::Fail(CallAgentError::new(500, 1_000_000 + i, ""))]);
            layer.layer(svc).oneshot(()).await.unwrap_err();
        }
        // Past the bound, a catalogued subcode still has a series of its own.
        layer.layer(Scripted::new([fail(40114)])).oneshot(()).await.unwrap_err();
        let m = m.seen("flood");
        assert_eq!(
            m.counter(
                ERRORS,
                &[("code", "408"), ("subcode", "40114"), ("category", "UnexpectedClientError")]
            ),
            1,
            "40114 in its own series"
        );
        let subcodes = m.label_values(ERRORS, "subcode");
        // Every catalog subcode, `other`, and the first 10 unknown ones.
        let catalogued = callagent_retry::sdk::catalog::entries().len();
        assert_eq!(subcodes.len(), catalogued + 1 + 10, "{subcodes:?}");
        assert!(subcodes.contains("1000009") && !subcodes.contains("1000010"));
        assert_eq!(
            m.counter(ERRORS, &[("code", "other"), ("subcode", "other"), ("category", "Unknown")]),
            9_990
        );
        assert_eq!(m.sum(ERRORS), 10_001);
        assert!(m.label_values(ERRORS, "code").len() <= 10, "codes are bounded too");
    });
}

#[test]
fn an_old_sdk_error_without_a_subcode_is_counted_as_no_subcode() {
    run(|m| async move {
        let layer = named("old-sdk", RetryConfig { max_attempts: 2, ..config() });
        // SDK 1.9.1's network fault: 408, subcode 0, retried by its code; then a 403 stops.
        let old = |code| Step::Fail(CallAgentError::new(code, 0, "User stack init timeout"));
        layer.layer(Scripted::new([old(408)])).oneshot(()).await.unwrap();
        layer.layer(Scripted::new([old(403)])).oneshot(()).await.unwrap_err();
        let m = m.seen("old-sdk");
        let errors =
            |code| m.counter(ERRORS, &[("code", code), ("subcode", "no_subcode"), ("category", "Unknown")]);
        assert_eq!([errors("408"), errors("403")], [1, 1]);
        assert_eq!(m.counter(RETRIES, &[("subcode", "no_subcode")]), 1);
        assert!(!m.label_values(ERRORS, "subcode").contains("0"), "never a bare 0");
    });
}

#[test]
fn two_layers_in_one_process_are_told_apart() {
    run(|m| async move {
        let a = named("layer-a", config());
        let b = named("layer-b", config());
        a.layer(Scripted::new([])).oneshot(()).await.unwrap();
        for _ in 0..2 {
            b.layer(Scripted::new([])).oneshot(()).await.unwrap();
        }
        assert_eq!(m.seen("layer-a").counter(CALLS, &[("outcome", "success")]), 1);
        assert_eq!(m.seen("layer-b").counter(CALLS, &[("outcome", "success")]), 2);
    });
}

#[test]
fn every_remedy_hook_use_is_counted_by_outcome() {
    run(|m| async move {
        use callagent_retry::remedy::RemedyConfig;
        use callagent_retry::remedy::{HOOKS, RemedyLayer};
        use callagent_retry::sdk::AccessToken;
        use callagent_retry::sdk::{AgentKind, CreateAgentRequest};

        let config = RemedyConfig { refresh_token: true, dispose_existing_agent: true, ..Default::default() };
        let layer = RemedyLayer::builder(&config)
            .token_source(|_| async { Ok(AccessToken::new("fresh")) })
            .dispose(|identity: String| async move {
                if identity == "stuck" { Err("cannot dispose".into()) } else { Ok(()) }
            })
            .build()
            .unwrap();
        let req = |id: &str| CreateAgentRequest::new(id, AccessToken::new("old"), AgentKind::Acs);
        let script = |subs: &[u32]| Scripted::new(subs.iter().map(|s| fail(*s)));
        let _ = tower::Layer::layer(&layer, script(&[40235])).oneshot(req("a")).await; // fixed
        let _ = tower::Layer::layer(&layer, script(&[44110, 44110])).oneshot(req("a")).await; // still failing
        let _ = tower::Layer::layer(&layer, script(&[40228])).oneshot(req("a")).await; // fixed
        let _ = tower::Layer::layer(&layer, script(&[40228])).oneshot(req("stuck")).await; // hook failed
        let _ = tower::Layer::layer(&layer, script(&[40114])).oneshot(req("a")).await; // no hook

        let _ = m.seen("");
        let store = m.store.lock().unwrap();
        let count = |hook: &str, outcome: &str| -> u64 {
            store
                .iter()
                .filter(|(name, labels, _, _)| {
                    name == HOOKS
                        && labels.contains(&("hook".to_owned(), hook.to_owned()))
                        && labels.contains(&("outcome".to_owned(), outcome.to_owned()))
                })
                .map(|(_, _, _, v)| if let DebugValue::Counter(n) = v { *n } else { 0 })
                .sum()
        };
        assert_eq!(
            [
                count("refresh_token", "fixed"),
                count("refresh_token", "still_failing"),
                count("refresh_token", "hook_failed")
            ],
            [1, 1, 0]
        );
        assert_eq!(
            [
                count("dispose_existing_agent", "fixed"),
                count("dispose_existing_agent", "still_failing"),
                count("dispose_existing_agent", "hook_failed")
            ],
            [1, 0, 1]
        );
    });
}

/// A service that fails `poll_ready` at once.
#[derive(Clone)]
struct Broken;

impl tower::Service<()> for Broken {
    type Response = ();
    type Error = CallAgentError;
    type Future = std::future::Ready<Result<(), CallAgentError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), CallAgentError>> {
        std::task::Poll::Ready(Err(CallAgentError::new(503, 0, "backend gone")))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        unreachable!("never ready")
    }
}

#[test]
fn a_service_failing_before_its_first_call_is_counted_once_with_no_attempt() {
    run(|m| async move {
        let layer = named("broken", config());
        for _ in 0..3 {
            layer.layer(Broken).oneshot(()).await.unwrap_err();
        }
        let m = m.seen("broken");
        assert_eq!(m.counter(CALLS, &[("outcome", "service_failed")]), 3);
        assert_eq!(m.sum(ATTEMPTS), 0);
        assert_eq!(m.sum(ERRORS), 0, "not a failed attempt: no attempt was made");
        assert!(m.histograms.get(ATTEMPTS_PER_CALL).is_none_or(Vec::is_empty), "no call, so no sample");
    });
}

#[test]
fn the_budget_gauge_follows_failures_and_the_moving_window() {
    run(|m| async move {
        // Each call deposits two retries; nothing in reserve. (Whole values that are never 0:
        // the recorder's snapshot resets a gauge to 0, so 0 would be seen with no update at all.)
        let budget = BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 0, retry_percent: 2.0 };
        let layer = named("budget-gauge", RetryConfig { budget: Some(budget), ..config() });
        for _ in 0..4 {
            layer.layer(Scripted::new([])).oneshot(0u32).await.unwrap();
        }
        // Five deposits (10 retries), one retry taken: 9 left.
        layer.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap();
        assert_eq!(m.seen("budget-gauge").gauges.get(BUDGET_AVAILABLE), Some(&9.0), "set after the failure");
        // Past ttl everything has expired; the next call moves the window and reports what is left
        // (its own deposit: 2 retries).
        tokio::time::advance(Duration::from_secs(11)).await;
        layer.layer(Scripted::new([])).oneshot(0u32).await.unwrap();
        assert_eq!(
            m.seen("budget-gauge").gauges.get(BUDGET_AVAILABLE),
            Some(&2.0),
            "set when the window moved"
        );
        assert_eq!(m.seen("budget-gauge").described.get(BUDGET_AVAILABLE), Some(&true));
    });
}

#[test]
fn a_layer_without_a_budget_has_no_budget_gauge() {
    run(|m| async move {
        let layer = named("no-budget-gauge", config());
        layer.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap();
        assert!(!m.seen("no-budget-gauge").gauges.contains_key(BUDGET_AVAILABLE));
    });
}

#[test]
fn the_budget_gauge_refresher_shows_a_quiet_budget_refilling_and_ends_with_the_layer() {
    run(|m| async move {
        // A reserve of 10 retries (1 a second over 10 s) and no share of calls.
        let budget = BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 1, retry_percent: 0.0 };
        let layer = named("budget-refresh", RetryConfig { budget: Some(budget), ..config() });
        // A storm: every call fails once; ten retries empty the reserve, the eleventh is refused.
        for _ in 0..10 {
            layer.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap();
        }
        let refused = layer.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap_err();
        assert_eq!(refused.reason(), StopReason::BudgetExhausted);
        assert_eq!(m.seen("budget-refresh").gauges.get(BUDGET_AVAILABLE), Some(&0.0));

        // Then silence: without the refresher the gauge would read 0 for ever.
        let refresher = tokio::spawn(layer.refresh_budget_gauge(Duration::from_secs(1)).unwrap());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            m.seen("budget-refresh").gauges.get(BUDGET_AVAILABLE),
            Some(&0.0),
            "withdrawals still in the window"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(m.seen("budget-refresh").gauges.get(BUDGET_AVAILABLE), Some(&10.0), "the reserve is back");

        // It holds no strong reference: dropping the layer (no services are left) ends it.
        assert!(!refresher.is_finished());
        drop(layer);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(refresher.is_finished(), "ends once the layer and its services are gone");
        refresher.await.unwrap();
    });
}

#[test]
fn a_budget_gauge_period_out_of_range_is_refused_by_name() {
    let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
    for period in [Duration::ZERO, Duration::from_micros(999), Duration::from_secs(25 * 3600)] {
        let err = layer.refresh_budget_gauge(period).err().expect("refused");
        assert_eq!(err.field(), Some("budget_gauge_period"), "{err}");
    }
}

#[test]
fn without_a_budget_the_refresher_ends_at_once() {
    run(|m| async move {
        let layer = named("no-budget-refresh", config());
        layer.refresh_budget_gauge(Duration::from_secs(1)).unwrap().await;
        assert!(!m.seen("no-budget-refresh").gauges.contains_key(BUDGET_AVAILABLE));
    });
}

#[test]
fn the_budget_gauge_moves_under_towers_retry_with_the_layers_policy_too() {
    run(|m| async move {
        let budget = BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 0, retry_percent: 1.0 };
        let layer = named("budget-policy", RetryConfig { budget: Some(budget), ..config() });
        let retry = tower::retry::RetryLayer::new(layer.policy());
        for _ in 0..3 {
            retry.layer(Scripted::new([])).oneshot(0u32).await.unwrap();
        }
        // A fourth deposit, then one retry taken: 3 left.
        retry.layer(Scripted::new([fail(40114)])).oneshot(0u32).await.unwrap();
        assert_eq!(m.seen("budget-policy").gauges.get(BUDGET_AVAILABLE), Some(&3.0));
    });
}
