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

/// Buckets for [`TIME_TO_AGENT`] and [`TIME_TO_CONNECTED`], seconds: the SDK's offline creation
/// takes ~14 s, a healthy one about 1 s.
pub const BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];

/// The `result` label's values.
pub const RESULTS: &[&str] =
    &["success", "expected_error", "not_connected", "failed", "token_error", "browser_lost"];

/// The `source` label's values.
pub const SOURCES: &[&str] = &["connection_string", "command", "endpoint"];
