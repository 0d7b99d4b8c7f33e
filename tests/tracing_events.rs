//! What the layer tells `tracing`: the report an on-call engineer reads.

mod common;

use callagent_retry::observe::ObserveConfig;
use callagent_retry::retry::Jitter;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use common::{Captured, Scripted, fail};
use tower::{Layer, ServiceExt};
use tracing::Level;

fn logged(out: &Captured) -> Vec<String> {
    out.text().lines().map(str::to_owned).collect()
}

const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN-PAYLOAD";

#[tokio::test(start_paused = true)]
async fn one_warning_per_rejection_debug_per_retry_warning_on_exhaustion() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(out.subscriber());
    let config = RetryConfig { jitter: Jitter::None, budget: None, max_attempts: 3, ..Default::default() };
    let layer = CallAgentRetryLayer::new(config).unwrap();

    // The request is a token: it must not show up anywhere.
    layer.layer(Scripted::always(fail(40229))).oneshot(SECRET.to_owned()).await.unwrap_err();
    let lines = logged(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let warn = &lines[0];
    for needle in [
        "WARN",
        "code=403",
        "subcode=40229",
        "category=\"ExpectedError\"",
        "remedy=\"Create a CallAgent with an Azure",
    ] {
        assert!(warn.contains(needle), "{needle} missing from {warn}");
    }

    layer.layer(Scripted::always(fail(40114))).oneshot(SECRET.to_owned()).await.unwrap_err();
    let lines = logged(&out);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (line, delay) in lines[1..3].iter().zip(["500", "1000"]) {
        assert!(line.contains("DEBUG") && line.contains("subcode=40114"), "{line}");
        assert!(line.contains(&format!("delay_ms={delay}")), "{line}");
    }
    // A give-up is a warning by default: in a storm every call gives up.
    let exhausted = &lines[3];
    assert!(exhausted.contains(" WARN ") && exhausted.contains("outcome=\"exhausted\""), "{exhausted}");
    assert!(exhausted.contains("attempts=3") && exhausted.contains("remedy=\"Transient"), "{exhausted}");
    // Every line is inside the call's span (DEBUG by default, enabled here).
    assert!(lines.iter().all(|l| l.contains("callagent.create{")), "{lines:#?}");

    assert!(lines.iter().all(|l| !l.contains("SECRET")), "{lines:#?}");
}

#[tokio::test(start_paused = true)]
async fn levels_follow_the_observe_config() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(out.subscriber_at(Level::INFO));
    let config = RetryConfig { jitter: Jitter::None, budget: None, max_attempts: 2, ..Default::default() };
    let observe = ObserveConfig {
        gave_up_level: Level::ERROR,
        rejected_level: Level::INFO,
        span_level: Level::TRACE,
        ..Default::default()
    };
    let layer = CallAgentRetryLayer::new(config).unwrap().with_observe(observe).unwrap();
    layer.layer(Scripted::always(fail(40114))).oneshot(()).await.unwrap_err();
    layer.layer(Scripted::always(fail(40229))).oneshot(()).await.unwrap_err();
    let lines = logged(&out);
    assert_eq!(lines.len(), 2, "the DEBUG retry event is filtered out: {lines:#?}");
    assert!(lines[0].contains("ERROR") && lines[0].contains("outcome=\"exhausted\""), "{}", lines[0]);
    assert!(lines[1].contains(" INFO ") && lines[1].contains("subcode=40229"), "{}", lines[1]);
    assert!(
        lines.iter().all(|l| !l.contains("callagent.create")),
        "a TRACE span is filtered out: {lines:#?}"
    );
}
