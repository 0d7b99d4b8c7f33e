//! Scenarios: a backend, an offered load and a retry policy, run together on tokio's clock.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::SimError;
use super::backend::{BackendConfig, SimBackend, SimStats, SimToken};
use crate::classify::{Basis, Verdict};
use crate::observe::{ObserveConfig, RetryObserver};
use crate::sdk::{AgentKind, CreateAgentRequest, ErrorCategory};
use crate::{CallAgentRetryLayer, Outcome, RetryConfig};

/// A scenario file: what the backend does, what load is offered, and the retry policy under test.
///
/// ```
/// let s = callagent_retry::sim::Scenario::from_toml(r#"
///     name = "tiny"
///     [load]
///     clients = 2
///     calls_per_client = 1
/// "#).unwrap();
/// assert_eq!(s.load.clients, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (also the `layer` metric label unless `observe.name` is set).
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The simulated backend.
    #[serde(default)]
    pub backend: BackendConfig,
    /// The offered load.
    pub load: Load,
    /// The retry policy under test.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The layer's metric label and tracing levels.
    #[serde(default)]
    pub observe: ObserveConfig,
}

/// How calls arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Clients start spread evenly over one `interval` and then call every `interval`.
    #[default]
    Uniform,
    /// Gaps are exponential with mean `interval` (a Poisson process per client).
    Poisson,
    /// Every client starts at once, then calls every `interval`.
    Burst,
}

/// Which identities the clients create agents for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identities {
    /// One identity per client.
    #[default]
    PerClient,
    /// One identity for everybody (a race for 40228).
    Shared,
}

/// The offered load: `clients` each make `calls_per_client` creations, one after another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Load {
    /// Concurrent clients.
    pub clients: usize,
    /// Creations per client.
    pub calls_per_client: usize,
    /// How calls arrive.
    pub arrival: Arrival,
    /// Mean gap between a client's calls.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a created agent lives before the client disposes it.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Whose agents are created.
    pub identities: Identities,
    /// The token every request carries.
    pub token: SimToken,
    /// The agent every request creates.
    pub agent: AgentKind,
    /// A display name every request sets.
    pub display_name: Option<String>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            clients: 10,
            calls_per_client: 10,
            arrival: Arrival::Uniform,
            interval: Duration::from_secs(1),
            hold: Duration::ZERO,
            identities: Identities::PerClient,
            token: SimToken::Acs,
            agent: AgentKind::Acs,
            display_name: None,
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario file.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        let s: Self = toml::from_str(text).map_err(|e| SimError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the backend, the load and the retry config.
    pub fn validate(&self) -> Result<(), SimError> {
        self.backend.validate()?;
        crate::Config { retry: self.retry.clone(), observe: self.observe.clone(), ..Default::default() }
            .validate()?;
        if self.load.clients == 0 {
            return Err(SimError::invalid("load.clients", "must be at least 1"));
        }
        if self.load.calls_per_client == 0 {
            return Err(SimError::invalid("load.calls_per_client", "must be at least 1"));
        }
        if self.load.clients.saturating_mul(self.load.calls_per_client) > 10_000_000 {
            return Err(SimError::invalid("load", "at most 10,000,000 calls per run"));
        }
        Ok(())
    }

    /// Calls offered in all.
    pub fn offered(&self) -> u64 {
        (self.load.clients * self.load.calls_per_client) as u64
    }
}

/// One row of the per-subcode table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubcodeRow {
    /// The subcode, or `timeout` for this layer's attempt timeout.
    pub subcode: String,
    /// The code, when there is one.
    pub code: Option<u16>,
    /// The category reported.
    pub category: ErrorCategory,
    /// Failed attempts.
    pub errors: u64,
    /// Retries caused.
    pub retries: u64,
    /// Calls rejected on it (not retryable).
    pub rejected: u64,
    /// The catalog's remedy.
    pub remedy: Option<&'static str>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Calls offered by the clients.
    pub offered: u64,
    /// Calls that reached the backend.
    pub backend_calls: u64,
    /// `backend_calls / offered`.
    pub amplification: f64,
    /// Calls by outcome label.
    pub outcomes: BTreeMap<String, u64>,
    /// Per-subcode errors, retries, rejections and remedy.
    pub subcodes: Vec<SubcodeRow>,
    /// Median time from call to agent, successful calls only (seconds).
    pub time_to_agent_p50: Option<f64>,
    /// 99th percentile time from call to agent (seconds).
    pub time_to_agent_p99: Option<f64>,
    /// Time the run took on the clock it ran on (seconds).
    pub duration: f64,
    /// The backend's own counters.
    pub backend: SimStats,
}

impl Report {
    /// Calls with this outcome.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome.as_str()).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Counts {
    rows: BTreeMap<(Option<u32>, Option<u16>), SubcodeRow>,
    outcomes: BTreeMap<Outcome, u64>,
}

/// Counts per subcode for the report, and the progress of the run.
#[derive(Debug, Default)]
struct Collector {
    counts: Mutex<Counts>,
    done: Arc<AtomicU64>,
}

impl Collector {
    fn row<R>(&self, v: &Verdict, f: impl FnOnce(&mut SubcodeRow) -> R) -> R {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = v.basis == Basis::LocalTimeout;
        let row = c.rows.entry((v.sub_code, v.code)).or_insert_with(|| SubcodeRow {
            subcode: match v.sub_code {
                Some(s) => s.to_string(),
                None if timeout => "timeout".into(),
                None => "none".into(),
            },
            code: v.code,
            category: v.category,
            errors: 0,
            retries: 0,
            rejected: 0,
            remedy: v.remedy(),
        });
        f(row)
    }
}

impl RetryObserver for Collector {
    fn on_failure(&self, v: &Verdict) {
        self.row(v, |r| {
            r.errors += 1;
            // A failure that is not retryable always ends its call as rejected.
            r.rejected += u64::from(!v.retry);
        });
    }

    fn on_retry(&self, v: &Verdict, _: Duration) {
        self.row(v, |r| r.retries += 1);
    }

    fn on_finish(&self, outcome: Outcome, _: u32, _: Duration) {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner).outcomes.entry(outcome).or_default() += 1;
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i].as_secs_f64())
}

/// Runs `scenario` on the current tokio runtime (paused or not) and reports. `progress` counts
/// finished calls as they finish, for a progress display.
///
/// Builds the layer inside, so install a metrics recorder first to export the run's metrics.
pub async fn run(scenario: &Scenario, progress: Option<Arc<AtomicU64>>) -> Result<Report, SimError> {
    scenario.validate()?;
    let started = Instant::now();
    let mut observe = scenario.observe.clone();
    if observe.name.is_empty() {
        observe.name = scenario.name.chars().take(64).collect();
    }
    let collector = Arc::new(Collector { done: progress.unwrap_or_default(), ..Default::default() });
    let layer = CallAgentRetryLayer::new(scenario.retry.clone())?
        .with_observe(observe)?
        .with_observer(Arc::clone(&collector));
    let backend = SimBackend::new(scenario.backend.clone());
    let svc = layer.layer(backend.clone());
    let load = &scenario.load;
    let mut rng = SmallRng::seed_from_u64(scenario.backend.seed.wrapping_add(0x5eed));
    let mut gap = move |first: bool, client: usize| -> Duration {
        match (load.arrival, first) {
            (Arrival::Burst, true) => Duration::ZERO,
            (Arrival::Uniform, true) => load.interval.mul_f64(client as f64 / load.clients as f64),
            (Arrival::Poisson, _) => load.interval.mul_f64(-(1.0 - rng.r#gen::<f64>()).ln()),
            (_, false) => load.interval,
        }
    };

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..load.clients {
        let gaps: Vec<Duration> = (0..load.calls_per_client).map(|i| gap(i == 0, client)).collect();
        let identity = match load.identities {
            Identities::PerClient => format!("8:acs:sim-user-{client}"),
            Identities::Shared => "8:acs:sim-shared-user".to_owned(),
        };
        let request = CreateAgentRequest {
            display_name: load.display_name.clone(),
            ..super::request(&identity, load.token, load.agent)
        };
        let (svc, backend, hold) = (svc.clone(), backend.clone(), load.hold);
        clients.spawn(async move {
            let mut times = Vec::with_capacity(gaps.len());
            for gap in gaps {
                tokio::time::sleep(gap).await;
                let t0 = Instant::now();
                if svc.clone().oneshot(request.clone()).await.is_ok() {
                    times.push(t0.elapsed());
                    tokio::time::sleep(hold).await;
                    backend.dispose(&identity);
                }
            }
            times
        });
    }
    let mut times = Vec::new();
    while let Some(done) = clients.join_next().await {
        times.extend(done?);
    }
    times.sort_unstable();

    let backend_stats = backend.stats();
    let counts = std::mem::take(&mut *collector.counts.lock().unwrap_or_else(PoisonError::into_inner));
    let offered = scenario.offered();
    Ok(Report {
        scenario: scenario.name.clone(),
        offered,
        backend_calls: backend_stats.calls,
        amplification: backend_stats.calls as f64 / offered as f64,
        outcomes: counts.outcomes.into_iter().map(|(o, n)| (o.as_str().to_owned(), n)).collect(),
        subcodes: counts.rows.into_values().collect(),
        time_to_agent_p50: percentile(&times, 0.50),
        time_to_agent_p99: percentile(&times, 0.99),
        duration: started.elapsed().as_secs_f64(),
        backend: backend_stats,
    })
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{:.0?}", Duration::from_secs_f64(s)))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {}: {} calls offered, {:.1?} on the run's clock",
            self.scenario,
            self.offered,
            Duration::from_secs_f64(self.duration)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<8} {:>4}  {:<22} {:>8} {:>8} {:>9}  remedy",
            "subcode", "code", "category", "errors", "retries", "rejected"
        )?;
        if self.subcodes.is_empty() {
            writeln!(f, "(no failures)")?;
        }
        for r in &self.subcodes {
            let code = r.code.map_or_else(|| "-".into(), |c| c.to_string());
            let remedy = r.remedy.unwrap_or("not in the catalog: see the code");
            writeln!(
                f,
                "{:<8} {:>4}  {:<22} {:>8} {:>8} {:>9}  {}",
                r.subcode,
                code,
                r.category.as_str(),
                r.errors,
                r.retries,
                r.rejected,
                remedy
            )?;
        }
        writeln!(f)?;
        let outcomes: Vec<String> = Outcome::ALL
            .iter()
            .map(|o| (o, self.outcome(*o)))
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        writeln!(f, "outcomes:            {}", outcomes.join(", "))?;
        writeln!(
            f,
            "backend load:        {:.2}x ({} backend calls / {} offered)",
            self.amplification, self.backend_calls, self.offered
        )?;
        write!(
            f,
            "time to agent:       p50 {}, p99 {}",
            secs(self.time_to_agent_p50),
            secs(self.time_to_agent_p99)
        )
    }
}
