//! The monitor's own metric names (beside the retry layer's `callagent_create_*` and
//! `callagent_retry_*` series and websdk's `callagent_websdk_*`), and its label values. Alert
//! rules (`cli/monitor/alerts.yml`) and the dashboard's monitor row read these names.

/// Probes by `identity` and `result` ([`RESULTS`]). Counter.
pub const PROBES: &str = "callagent_monitor_probes_total";
/// Time from a probe's start to its agent (the creation, retries included), seconds. Histogram.
pub const TIME_TO_AGENT: &str = "callagent_monitor_time_to_agent_seconds";
/// Time from an agent's creation to `Connected`, seconds. Histogram.
pub const TIME_TO_CONNECTED: &str = "callagent_monitor_time_to_connected_seconds";
/// When the last successful probe of an `identity` ended, Unix seconds. Gauge.
pub const LAST_SUCCESS: &str = "callagent_monitor_last_success_timestamp_seconds";
/// The probe interval, seconds (alerts count missed intervals with it). Gauge.
pub const INTERVAL: &str = "callagent_monitor_interval_seconds";
/// Identities probed. Gauge.
pub const IDENTITIES: &str = "callagent_monitor_identities";
/// Tokens obtained, by `source` ([`SOURCES`]). Counter.
pub const TOKENS_MINTED: &str = "callagent_monitor_tokens_minted_total";
/// Token fetches or refreshes that failed, by `source`. Counter.
pub const TOKEN_FAILURES: &str = "callagent_monitor_token_refresh_failures_total";
/// Agents the monitor holds now (never more than its identities). Gauge.
pub const AGENTS_HELD: &str = "callagent_monitor_agents_held";
/// Config reloads (SIGHUP) by `result`: `applied` or `rejected` (a bad file, or a field that
/// takes a restart; the monitor runs on as before). Counter.
pub const CONFIG_RELOADS: &str = "callagent_monitor_config_reloads_total";
/// Whether the last reload was applied (1, and at start) or rejected (0), as Prometheus's own
/// `prometheus_config_last_reload_successful`. Gauge.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "callagent_monitor_config_last_reload_successful";

/// Buckets for [`TIME_TO_AGENT`] and [`TIME_TO_CONNECTED`], seconds: the SDK's offline creation
/// takes ~14 s, a healthy one about 1 s.
pub const BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];

/// The `result` label's values.
pub const RESULTS: &[&str] =
    &["success", "expected_error", "not_connected", "failed", "token_error", "browser_lost"];

/// The `source` label's values.
pub const SOURCES: &[&str] = &["connection_string", "command", "endpoint"];

/// Describes every series (their `# HELP`), and registers the counters each identity and the
/// token source will have at zero: a counter first seen at 1 is no `increase()` to Prometheus,
/// so the first failure would go unseen by the alert rules.
pub(crate) fn register(identities: &[String], source: &'static str) {
    use metrics::Unit;
    metrics::describe_counter!(PROBES, Unit::Count, "Probes by identity and result.");
    metrics::describe_histogram!(
        TIME_TO_AGENT,
        Unit::Seconds,
        "Time from a probe's start to its agent, retries included."
    );
    metrics::describe_histogram!(
        TIME_TO_CONNECTED,
        Unit::Seconds,
        "Time from an agent's creation to Connected."
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "When the last successful probe of an identity ended (Unix time)."
    );
    metrics::describe_gauge!(INTERVAL, Unit::Seconds, "The probe interval.");
    metrics::describe_gauge!(IDENTITIES, Unit::Count, "Identities probed.");
    metrics::describe_counter!(TOKENS_MINTED, Unit::Count, "Tokens obtained, by source.");
    metrics::describe_counter!(
        TOKEN_FAILURES,
        Unit::Count,
        "Token fetches or refreshes that failed, by source."
    );
    metrics::describe_gauge!(
        AGENTS_HELD,
        Unit::Count,
        "Probes in flight: agents the monitor holds or is creating."
    );
    metrics::describe_counter!(CONFIG_RELOADS, Unit::Count, "Config reloads (SIGHUP), applied or rejected.");
    metrics::describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        "Whether the last config reload was applied (1) or rejected (0)."
    );
    for identity in identities {
        for result in RESULTS {
            metrics::counter!(PROBES, "identity" => identity.clone(), "result" => *result).absolute(0);
        }
    }
    metrics::counter!(TOKENS_MINTED, "source" => source).absolute(0);
    metrics::counter!(TOKEN_FAILURES, "source" => source).absolute(0);
    metrics::gauge!(AGENTS_HELD).set(0.0);
    for result in ["applied", "rejected"] {
        metrics::counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    metrics::gauge!(CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
    // Registered now, so the series exist before the first sample.
    let _ = (metrics::histogram!(TIME_TO_AGENT), metrics::histogram!(TIME_TO_CONNECTED));
}
