//! Every shipped scenario runs on paused time and its report makes sense.

use callagent_retry::Outcome;
use callagent_retry::sim::{Report, Scenario, run};

async fn run_file(name: &str) -> Report {
    let path = format!("{}/examples/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let report = run(&scenario, None).await.unwrap();
    // Conservation, whatever the scenario.
    assert_eq!(report.outcomes.values().sum::<u64>(), report.offered, "{name}: every call resolves once");
    let backend_failures: u64 = report.backend.failures.values().sum();
    let answered = report.backend.created + report.backend.existing + backend_failures;
    assert_eq!(report.backend_calls, answered, "{name}: each call creates, hands back or fails");
    // Every failed attempt is a backend failure, or an agent the connect check found disconnected.
    let not_connected =
        report.subcodes.iter().filter(|r| r.subcode == "not_connected").map(|r| r.errors).sum::<u64>();
    assert_eq!(not_connected, report.backend.disconnected, "{name}: each disconnected agent is caught");
    assert_eq!(
        report.subcodes.iter().map(|r| r.errors).sum::<u64>(),
        backend_failures + not_connected,
        "{name}"
    );
    let retries: u64 = report.subcodes.iter().map(|r| r.retries).sum();
    assert_eq!(report.backend_calls, report.offered + retries, "{name}: one backend call per attempt");
    // Each row balances on its own, and the give-ups add up to the outcomes that gave up.
    for r in &report.subcodes {
        assert_eq!(r.errors, r.retries + r.rejected + r.gave_up, "{name}: row {}", r.subcode);
    }
    let stopped: u64 = Outcome::ALL
        .iter()
        .filter(|o| !o.is_success() && **o != Outcome::Cancelled)
        .map(|o| report.outcome(*o))
        .sum();
    assert_eq!(report.subcodes.iter().map(|r| r.rejected + r.gave_up).sum::<u64>(), stopped, "{name}");
    // The timeline holds every call, second by second.
    let t = &report.timeline;
    assert_eq!(t.iter().map(|t| t.offered).sum::<u64>(), report.offered, "{name}");
    assert_eq!(t.iter().map(|t| t.backend_calls).sum::<u64>(), report.backend_calls, "{name}");
    assert_eq!(t.iter().map(|t| t.successes).sum::<u64>(), successes(&report), "{name}");
    // The text report reads in 80 columns.
    let text = report.to_string();
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{name}: {} columns: {line}", line.chars().count());
    }
    assert!(
        text.contains("simulated ") && text.contains("(successful calls only)") || successes(&report) == 0,
        "{text}"
    );
    report
}

fn successes(r: &Report) -> u64 {
    r.outcome(Outcome::Success) + r.outcome(Outcome::SuccessAfterRetry)
}

#[tokio::test(start_paused = true)]
async fn an_old_sdk_outage_is_counted_as_no_subcode_and_retried_under_the_budget() {
    let r = run_file("unreachable-old-sdk").await;
    assert!(r.subcodes.iter().all(|s| s.subcode == "no_subcode" && s.code == Some(408)), "{r}");
    let row = &r.subcodes[0];
    assert!(row.retries > 0 && row.rejected == 0, "408 is retried by its code: {r}");
    assert!(r.outcome(Outcome::BudgetExhausted) > 0, "the budget caps the retries: {r}");
    assert_eq!(r.backend.failures.keys().collect::<Vec<_>>(), [&0], "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn healthy() {
    let r = run_file("healthy").await;
    assert_eq!(successes(&r), r.offered);
    assert!(r.amplification < 1.02, "{r}");
}

#[tokio::test(start_paused = true)]
async fn flaky_network_recovers_almost_everything() {
    let r = run_file("flaky-network").await;
    assert!(successes(&r) as f64 >= 0.99 * r.offered as f64, "{r}");
    assert!(r.outcome(Outcome::SuccessAfterRetry) > 0);
    assert!(r.subcodes.iter().all(|s| s.rejected == 0 && s.retries > 0), "{r}");
}

#[tokio::test(start_paused = true)]
async fn outage_load_stays_within_the_budget() {
    let r = run_file("outage-and-recovery").await;
    assert!(r.outcome(Outcome::BudgetExhausted) > 0, "{r}");
    // retry_percent 0.1 plus a reserve of 1/s over the ten-second window.
    assert!(r.amplification < 1.12, "{r}");
    assert!(successes(&r) as f64 > 0.5 * r.offered as f64, "traffic recovers after the outage: {r}");
}

#[tokio::test(start_paused = true)]
async fn overload_recovers_with_the_budget() {
    let r = run_file("overload").await;
    assert!(r.backend.failures.contains_key(&40104), "the burst overloads the backend: {r}");
    assert!(r.amplification < 1.2, "{r}");
    assert!(successes(&r) as f64 > 0.8 * r.offered as f64, "{r}");
}

#[tokio::test(start_paused = true)]
async fn bad_token_costs_exactly_one_backend_call_per_request() {
    let r = run_file("bad-token").await;
    assert_eq!(r.backend_calls, r.offered);
    assert_eq!(r.outcome(Outcome::Rejected), r.offered);
    assert_eq!(r.subcodes.len(), 1);
    assert_eq!((r.subcodes[0].subcode.as_str(), r.subcodes[0].rejected), ("40229", r.offered));
    assert!(r.subcodes[0].remedy.unwrap().contains("TeamsCallAgent"));
}

#[tokio::test(start_paused = true)]
async fn duplicate_identity_is_rejected_not_retried() {
    let r = run_file("duplicate-identity").await;
    assert_eq!(r.backend_calls, r.offered);
    assert!(successes(&r) > 0 && r.outcome(Outcome::Rejected) > 0, "{r}");
    assert_eq!(successes(&r) + r.outcome(Outcome::Rejected), r.offered);
    assert!(r.subcodes.iter().all(|s| s.subcode == "40228"), "{r}");
    // As the SDK does: a creation after another for the identity gets the existing agent.
    assert!(r.backend.existing > 0, "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_scenario_repeats_exactly() {
    // Equal as they come: the wall-clock time it took is not part of the comparison.
    let (a, b) = (run_file("flaky-network").await, run_file("flaky-network").await);
    assert_eq!(a, b);
    let mut c = a.clone();
    c.offered += 1;
    assert_ne!(a, c, "a report that differs is not equal");
}

#[test]
fn bad_scenarios_are_clear_errors() {
    for (text, needle) in [
        ("name = 'x'\n[load]\nclients = 0", "clients"),
        ("name = 'x'\n[load]\n[backend]\nfailures = { 40114 = 1.5 }", "probability"),
        ("name = 'x'\n[load]\n[backend]\nfailures = { 40114 = 0.6, 40104 = 0.6 }", "add up"),
        ("name = 'x'\n[load]\n[retry]\nmax_attempts = 0", "max_attempts"),
        ("name = 'x'\n[load]\ncliens = 3", "cliens"),
    ] {
        let err = Scenario::from_toml(text).unwrap_err();
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_service_gives_disconnected_agents_that_are_disposed_and_retried() {
    let r = run_file("unreachable").await;
    let row = r.subcodes.iter().find(|s| s.subcode == "not_connected").expect("disconnected agents seen");
    assert!(row.errors > 100 && row.retries > 0, "{r}");
    // The check caught every agent that never connected.
    assert_eq!(r.backend.disconnected, row.errors);
    assert!(r.to_string().contains("time to connected agent"), "{r}");
    // The budget keeps the load near 1 + retry_percent while creations resolve to dead agents.
    assert!(r.amplification < 1.15, "{r}");
}
