//! Property tests of the retry decisions (through the layer, on paused time), classification,
//! serde and validation.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use callagent_retry::classify::{Basis, classify};
use callagent_retry::retry::Jitter;
use callagent_retry::sdk::catalog;
use callagent_retry::{CallAgentError, CallAgentRetryLayer, ErrorCategory, RetryConfig, StopReason};
use callagent_retry::{classify::SubcodeOverride, retry::BudgetConfig};
use common::{Scripted, Step};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        Just(Jitter::Proportional),
        Just(Jitter::None)
    ]
}

fn category() -> impl Strategy<Value = ErrorCategory> {
    prop_oneof![
        Just(ErrorCategory::ExpectedError),
        Just(ErrorCategory::UnexpectedClientError),
        Just(ErrorCategory::UnexpectedServerError),
        Just(ErrorCategory::Unknown)
    ]
}

/// Subcodes from the catalog half the time, anything otherwise.
fn sub_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        proptest::sample::select(catalog::entries().iter().map(|e| e.sub_code).collect::<Vec<_>>()),
        any::<u32>()
    ]
}

/// A code and subcode: a catalog row's own pair a third of the time (rules 2 and 4 need the
/// row's code and subcode together), an HTTP code the code rule decides on (408, 429, 5xx, or
/// another 4xx) with any subcode a third, anything otherwise.
fn code_and_sub() -> impl Strategy<Value = (u16, u32)> {
    let rows: Vec<(u16, u32)> = catalog::entries().iter().map(|e| (e.code, e.sub_code)).collect();
    prop_oneof![
        proptest::sample::select(rows),
        (prop_oneof![Just(408u16), Just(429u16), 500u16..600, 400u16..500], sub_code()),
        (any::<u16>(), any::<u32>()),
    ]
}

fn ms(range: std::ops::Range<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

/// Valid configs (budget off unless asked: property 1 looks at delays alone).
fn valid_config() -> impl Strategy<Value = RetryConfig> {
    (
        1u32..=12,
        ms(0..2_000),
        ms(0..20_000),
        1.0f64..5.0,
        jitter(),
        0.0f64..=1.0,
        proptest::option::of(ms(1..120_000)),
        any::<u64>(),
    )
        .prop_map(|(max_attempts, initial, extra, multiplier, jitter, rf, deadline, seed)| RetryConfig {
            max_attempts,
            initial_backoff: initial,
            max_backoff: initial + extra,
            multiplier,
            jitter,
            randomization_factor: rf,
            deadline,
            budget: None,
            seed: Some(seed),
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every delay the layer waits lies in its jitter kind's bounds, never past the cap, and a
    /// retry always starts before the deadline; attempts never pass the limit. Each attempt takes
    /// its own time (`attempt_times`), so the delay is the gap from one failure to the next call.
    #[test]
    fn delays_stay_in_bounds(config in valid_config(), attempt_times in proptest::collection::vec(ms(0..5_000), 12)) {
        let steps = attempt_times.iter().map(|t| Step::After(*t, Box::new(common::fail(40114))));
        let svc = Scripted::new(steps);
        let layer = CallAgentRetryLayer::new(config.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (t0, result) = rt.block_on(async {
            let t0 = Instant::now();
            (t0, layer.layer(svc.clone()).oneshot(()).await)
        });
        let calls = svc.call_times();
        prop_assert!(calls.len() as u32 <= config.max_attempts);
        let (init, cap, f) = (config.initial_backoff, config.max_backoff, config.randomization_factor);
        let mut nominal = init;
        let mut prev = init;
        for (i, pair) in calls.windows(2).enumerate() {
            let delay = pair[1] - (pair[0] + attempt_times[i]);
            prop_assert!(delay <= cap + Duration::from_millis(1));
            // tokio's timer fires on whole milliseconds: a wait ends up to 1 ms after it was asked to.
            let tick = Duration::from_millis(1);
            if let Some(deadline) = config.deadline {
                prop_assert!(pair[1] - t0 < deadline + tick);
            }
            // The schedule is stepped in f64 nanoseconds with truncation; over a dozen steps
            // that drifts by at most a few ns per ms of delay from this test's own stepping.
            let tol = Duration::from_micros(1) + nominal.mul_f64(1e-5);
            let (lo, hi) = match config.jitter {
                Jitter::None => (nominal, nominal),
                Jitter::Full => (Duration::ZERO, nominal),
                Jitter::Equal => (nominal / 2, nominal),
                Jitter::Proportional => (nominal.mul_f64(1.0 - f), nominal.mul_f64(1.0 + f).min(cap)),
                Jitter::Decorrelated => (init, (prev * 3).min(cap).max(init)),
                _ => unreachable!("a jitter kind this test does not generate"),
            };
            prop_assert!(delay + tol >= lo && delay <= hi + tol + tick, "{:?}: {:?} not in [{:?}, {:?}]", config.jitter, delay, lo, hi);
            prev = delay;
            nominal = nominal.mul_f64(config.multiplier).min(cap);
        }
        let reason = result.unwrap_err().reason();
        prop_assert!(matches!(reason, StopReason::Exhausted | StopReason::DeadlineExceeded), "{:?}", reason);
        if reason == StopReason::Exhausted {
            prop_assert_eq!(calls.len() as u32, config.max_attempts);
        }
    }

    /// Any code, subcode and categories give a decision, by the documented rules.
    #[test]
    fn classification_is_total_and_follows_the_rules(
        (code, sub) in code_and_sub(),
        categories in proptest::collection::vec(category(), 0..4),
        override_retry in proptest::option::of(any::<bool>()),
    ) {
        let mut e = CallAgentError::new(code, sub, "");
        for c in &categories {
            e = e.with_category(*c);
        }
        let overrides: BTreeMap<u32, SubcodeOverride> =
            override_retry.map(|retry| (sub, SubcodeOverride { retry, max_attempts: None })).into_iter().collect();
        let v = classify(&e, &overrides);
        let known = categories.iter().copied().find(|c| *c != ErrorCategory::Unknown);
        let entry = catalog::lookup(sub);
        let expected = if let Some(retry) = override_retry {
            (retry, Basis::Override)
        } else if entry.is_some_and(|e| e.deterministic && e.code == code) {
            (false, Basis::Deterministic)
        } else if categories.contains(&ErrorCategory::ExpectedError) {
            (false, Basis::Carried)
        } else if known.is_some() {
            (true, Basis::Carried)
        } else if let Some(retry) = entry.and_then(|e| e.category.is_retryable()) {
            (retry, Basis::Catalog)
        } else {
            (matches!(code, 408 | 429 | 500..=599), Basis::Code)
        };
        prop_assert_eq!((v.retry, v.basis), expected);
    }

    /// The SDK's error survives JSON both ways.
    #[test]
    fn call_agent_errors_round_trip(code in any::<u16>(), sub in any::<u32>(), message in ".{0,40}",
                                   categories in proptest::collection::vec(category(), 0..3)) {
        let mut e = CallAgentError::new(code, sub, message);
        for c in categories {
            e = e.with_category(c);
        }
        let json = serde_json::to_string(&e).unwrap();
        prop_assert_eq!(serde_json::from_str::<CallAgentError>(&json).unwrap(), e);
    }

    /// Configs survive JSON and TOML both ways.
    #[test]
    fn configs_round_trip(mut config in valid_config(), budget in proptest::option::of((1u64..=60, 0u32..100, 0.0f64..10.0)),
                          overrides in proptest::collection::btree_map(sub_code(), (any::<bool>(), 1u32..10), 0..4)) {
        config.budget = budget.map(|(ttl, min_per_sec, retry_percent)| BudgetConfig { ttl: Duration::from_secs(ttl), min_per_sec, retry_percent });
        config.overrides = overrides.into_iter().map(|(s, (retry, n))| (s, SubcodeOverride { retry, max_attempts: retry.then_some(n) })).collect();
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        prop_assert_eq!(&serde_json::from_str::<RetryConfig>(&json).unwrap(), &config);
        let toml_text = toml::to_string(&config).unwrap();
        prop_assert_eq!(&RetryConfig::from_toml(&toml_text).unwrap(), &config);
    }
}

/// Anything, valid or not: zeros, huge values, NaN, inverted ranges.
fn any_config() -> impl Strategy<Value = RetryConfig> {
    let float = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(0.5),
        Just(1.0),
        Just(2.0),
        -10.0f64..10.0
    ];
    let dur = prop_oneof![
        Just(Duration::ZERO),
        ms(0..5_000),
        Just(Duration::from_secs(200_000)),
        Just(Duration::MAX)
    ];
    (
        prop_oneof![Just(0u32), 1u32..8, Just(101), Just(u32::MAX)],
        (dur.clone(), dur.clone(), float.clone(), float.clone()),
        (proptest::option::of(dur.clone()), proptest::option::of(dur.clone())),
        proptest::option::of((dur, any::<u32>(), float)),
        proptest::collection::btree_map(
            sub_code(),
            (any::<bool>(), proptest::option::of(prop_oneof![Just(0u32), 1u32..5, Just(1000)])),
            0..3,
        ),
        jitter(),
    )
        .prop_map(
            |(
                max_attempts,
                (initial, max, multiplier, rf),
                (deadline, attempt_timeout),
                budget,
                overrides,
                jitter,
            )| RetryConfig {
                max_attempts,
                initial_backoff: initial,
                max_backoff: max,
                multiplier,
                randomization_factor: rf,
                jitter,
                deadline,
                attempt_timeout,
                budget: budget.map(|(ttl, min_per_sec, retry_percent)| BudgetConfig {
                    ttl,
                    min_per_sec,
                    retry_percent,
                }),
                overrides: overrides
                    .into_iter()
                    .map(|(s, (retry, max_attempts))| (s, SubcodeOverride { retry, max_attempts }))
                    .collect(),
                seed: Some(1),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `validate()` accepts exactly what the layer builds, and what it accepts runs: a call that
    /// always fails, on paused time, ends within the limits without a panic.
    #[test]
    fn validate_accepts_exactly_the_configs_the_layer_can_run(config in any_config()) {
        let verdict = config.validate();
        let layer = CallAgentRetryLayer::new(config.clone());
        prop_assert_eq!(verdict.is_ok(), layer.is_ok());
        if let Ok(layer) = layer {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let svc = Scripted::always(Step::Fail(CallAgentError::from_catalog(40114).unwrap()));
            let err = rt.block_on(layer.layer(svc.clone()).oneshot(())).unwrap_err();
            let limit = config.overrides.get(&40114).and_then(|o| o.max_attempts).unwrap_or(config.max_attempts);
            prop_assert!(svc.calls() as u32 <= limit.max(1));
            prop_assert!(err.reason() != StopReason::ServiceFailed);
        }
    }
}
