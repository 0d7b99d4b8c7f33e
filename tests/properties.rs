//! Property tests of the decision core, classification, serde and validation.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use callagent_retry::backoff::Jitter;
use callagent_retry::classify::{Basis, classify};
use callagent_retry::config::{BudgetConfig, SubcodeOverride};
use callagent_retry::decide::{Decider, Decision, Stop};
use callagent_retry::{CallAgentError, CallAgentRetryLayer, ErrorCategory, RetryConfig, RetryError, catalog};
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

    /// Every delay the core hands out lies in its jitter kind's bounds, never past the cap, and a
    /// retry's wait always ends before the deadline; attempts never pass the limit.
    #[test]
    fn delays_stay_in_bounds(config in valid_config(), now_offsets in proptest::collection::vec(ms(0..5_000), 12)) {
        let d = Decider::new(config.clone()).unwrap();
        let t0 = Instant::now();
        let mut now = t0;
        let mut call = d.begin(now);
        let failure = CallAgentError::from_catalog(40114).unwrap();
        let (init, cap, f) = (config.initial_backoff, config.max_backoff, config.randomization_factor);
        let mut nominal = init;
        let mut prev = init;
        for offset in now_offsets {
            call.start_attempt();
            now += offset; // the attempt took this long
            match d.decide(&mut call, &failure, t0, now).1 {
                Decision::Retry { delay } => {
                    prop_assert!(call.attempts() < config.max_attempts);
                    prop_assert!(delay <= cap);
                    if let Some(deadline) = config.deadline {
                        prop_assert!(now - t0 + delay < deadline);
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
                    };
                    prop_assert!(delay + tol >= lo && delay <= hi + tol, "{:?}: {:?} not in [{:?}, {:?}]", config.jitter, delay, lo, hi);
                    prev = delay;
                    nominal = nominal.mul_f64(config.multiplier).min(cap);
                    now += delay;
                }
                Decision::Stop(stop) => {
                    prop_assert!(matches!(stop, Stop::Exhausted | Stop::DeadlineExceeded));
                    if stop == Stop::Exhausted {
                        prop_assert_eq!(call.attempts(), config.max_attempts);
                    }
                    break;
                }
            }
        }
    }

    /// Any code, subcode and categories give a decision, by the documented rules.
    #[test]
    fn classification_is_total_and_follows_the_rules(
        code in any::<u16>(),
        sub in sub_code(),
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
        let expected = if let Some(retry) = override_retry {
            (retry, Basis::Override)
        } else if categories.contains(&ErrorCategory::ExpectedError) {
            (false, Basis::Carried)
        } else if known.is_some() {
            (true, Basis::Carried)
        } else if let Some(entry) = catalog::lookup(sub) {
            (entry.category != ErrorCategory::ExpectedError, Basis::Catalog)
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
                          name in "[a-z-]{0,12}", overrides in proptest::collection::btree_map(sub_code(), (any::<bool>(), 1u32..10), 0..4)) {
        config.budget = budget.map(|(ttl, min_per_sec, retry_percent)| BudgetConfig { ttl: Duration::from_secs(ttl), min_per_sec, retry_percent });
        config.name = name;
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
                ..Default::default()
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
            prop_assert!(!matches!(err, RetryError::ServiceFailed(_)));
        }
    }
}
