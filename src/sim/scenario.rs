//! Scenarios: a backend, an offered load and a retry policy, run together on tokio's clock.
//!
//! Over 500 lines: the scenario file's types, their checks and the runner belong together; split,
//! each part would import the others.

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
use crate::classify::Verdict;
use crate::connect::{ConnectConfig, ConnectLayer};
use crate::observe::{Finished, ObserveConfig, RetryObserver};
use crate::retry::RetryBudget;
use crate::retry::{CallAgentRetryLayer, Outcome, RetryConfig};
use crate::sdk::{AgentKind, CreateAgentRequest, ErrorCategory};

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
    /// The connect check inside the retry layer (off by default).
    #[serde(default)]
    pub connect: ConnectConfig,
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
        crate::config::Config {
            retry: self.retry.clone(),
            observe: self.observe.clone(),
            ..Default::default()
        }
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

/// One row of the per-subcode table. Every failed attempt either caused a retry, stopped its call
/// as rejected, or stopped it as given up, so `errors = retries + rejected + gave_up`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
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
    /// Calls that gave up on it (attempts, deadline or budget ran out; or the service failed).
    pub gave_up: u64,
    /// The catalog's remedy.
    pub remedy: Option<&'static str>,
}

/// One second of a run, for plotting it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Tick {
    /// Seconds since the run started (this tick covers `[t, t + 1)`).
    pub t: u64,
    /// Calls the clients made.
    pub offered: u64,
    /// Calls of the backend (first attempts and retries).
    pub backend_calls: u64,
    /// Calls that got an agent.
    pub successes: u64,
    /// Calls that ended without one, by outcome label.
    pub gave_up: BTreeMap<String, u64>,
    /// Retries the budget would allow at the end of the second; `None` without a budget.
    pub budget_available: Option<u64>,
}

/// What a run did.
///
/// Two reports are equal when the runs did the same: `wall_seconds`, the one figure a seeded run
/// does not repeat, is left out of the comparison.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// What the scenario shows.
    pub description: String,
    /// Calls offered by the clients.
    pub offered: u64,
    /// Calls that reached the backend.
    pub backend_calls: u64,
    /// `backend_calls / offered`.
    pub amplification: f64,
    /// Calls by outcome label.
    pub outcomes: BTreeMap<String, u64>,
    /// Per-subcode errors, retries, rejections, give-ups and remedy.
    pub subcodes: Vec<SubcodeRow>,
    /// Median time from call to agent, successful calls only (seconds).
    pub time_to_agent_p50: Option<f64>,
    /// 99th percentile time from call to agent, successful calls only (seconds).
    pub time_to_agent_p99: Option<f64>,
    /// Time the run covered on its clock (seconds): simulated time on a paused clock.
    pub duration: f64,
    /// Wall-clock time the run took (seconds).
    pub wall_seconds: f64,
    /// Whether the connect check judged the agents (then a success is a connected agent).
    pub connect_check: bool,
    /// Backend calls the budget spared: for each call it stopped, the attempts its limit still
    /// allowed (an upper bound: the deadline might have stopped some of them).
    pub budget_spared_up_to: u64,
    /// The backend's outage windows, in seconds since the start.
    pub outages: Vec<(f64, f64)>,
    /// The run second by second.
    pub timeline: Vec<Tick>,
    /// The backend's own counters.
    pub backend: SimStats,
}

impl PartialEq for Report {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so a new field cannot be left out of the comparison by accident.
        let Report {
            scenario,
            description,
            offered,
            backend_calls,
            amplification,
            outcomes,
            subcodes,
            time_to_agent_p50,
            time_to_agent_p99,
            duration,
            wall_seconds: _,
            connect_check,
            budget_spared_up_to,
            outages,
            timeline,
            backend,
        } = self;
        (scenario, description, offered, backend_calls, amplification, outcomes, subcodes)
            == (
                &other.scenario,
                &other.description,
                &other.offered,
                &other.backend_calls,
                &other.amplification,
                &other.outcomes,
                &other.subcodes,
            )
            && (time_to_agent_p50, time_to_agent_p99, duration, connect_check, budget_spared_up_to)
                == (
                    &other.time_to_agent_p50,
                    &other.time_to_agent_p99,
                    &other.duration,
                    &other.connect_check,
                    &other.budget_spared_up_to,
                )
            && (outages, timeline, backend) == (&other.outages, &other.timeline, &other.backend)
    }
}

impl Report {
    /// Calls with this outcome.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome.as_str()).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Counts {
    // By subcode label (a number, `timeout`, `not_connected`) and code.
    rows: BTreeMap<(String, Option<u16>), SubcodeRow>,
    outcomes: BTreeMap<Outcome, u64>,
    timeline: Vec<Tick>,
    spared: u64,
}

impl Counts {
    fn tick(&mut self, t: u64) -> &mut Tick {
        let i = usize::try_from(t).unwrap_or(usize::MAX);
        if self.timeline.len() <= i {
            self.timeline.resize_with(i + 1, Tick::default);
        }
        &mut self.timeline[i]
    }
}

/// The per-subcode tally behind [`Report`], for any agent-creation service: give it to a layer
/// with [`CallAgentRetryLayer::with_observer`], run your calls, then [`report`](Tally::report).
/// [`run`] uses one; `callagent-websdk`'s `monitor` example prints the real SDK's failures this way.
#[derive(Debug)]
pub struct Tally {
    counts: Mutex<Counts>,
    done: Arc<AtomicU64>,
    started: Instant,
    max_attempts: u32,
}

impl Tally {
    /// A tally starting now; `max_attempts` is the layer's (for what an empty budget spared).
    pub fn new(max_attempts: u32) -> Arc<Self> {
        Self::counting(max_attempts, Arc::default())
    }

    fn counting(max_attempts: u32, done: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Self { counts: Mutex::default(), done, started: Instant::now(), max_attempts })
    }

    /// The report so far. `times` are the successful calls' times to an agent; the backend's
    /// own counters are left empty (the inner service is not the simulator).
    pub fn report(
        &self,
        scenario: &str,
        description: &str,
        mut times: Vec<Duration>,
        wall: std::time::Duration,
    ) -> Report {
        times.sort_unstable();
        let counts = std::mem::take(&mut *self.counts());
        let mut timeline = counts.timeline;
        for (t, tick) in timeline.iter_mut().enumerate() {
            tick.t = t as u64;
        }
        let offered: u64 = counts.outcomes.values().sum();
        let backend_calls: u64 = timeline.iter().map(|t| t.backend_calls).sum();
        Report {
            scenario: scenario.to_owned(),
            description: description.to_owned(),
            offered,
            backend_calls,
            amplification: backend_calls as f64 / offered.max(1) as f64,
            outcomes: counts.outcomes.into_iter().map(|(o, n)| (o.as_str().to_owned(), n)).collect(),
            subcodes: counts.rows.into_values().collect(),
            time_to_agent_p50: percentile(&times, 0.50),
            time_to_agent_p99: percentile(&times, 0.99),
            duration: self.started.elapsed().as_secs_f64(),
            wall_seconds: wall.as_secs_f64(),
            budget_spared_up_to: counts.spared,
            connect_check: false,
            outages: Vec::new(),
            timeline,
            backend: SimStats::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn row<R>(&self, v: &Verdict, f: impl FnOnce(&mut SubcodeRow) -> R) -> R {
        let mut c = self.counts();
        let label = match (v.local_label(), v.sub_code) {
            (Some(local), _) => local.to_owned(),
            (None, Some(s)) => s.to_string(),
            (None, None) => "none".into(),
        };
        let row = c.rows.entry((label.clone(), v.code)).or_insert_with(|| SubcodeRow {
            subcode: label,
            code: v.code,
            category: v.category,
            errors: 0,
            retries: 0,
            rejected: 0,
            gave_up: 0,
            remedy: v.remedy(),
        });
        f(row)
    }

    /// Counts a call offered by a client (for the timeline).
    pub fn offered(&self) {
        let t = self.second();
        self.counts().tick(t).offered += 1;
    }

    fn sample_budget(&self, budget: &RetryBudget) {
        let (t, available) = (self.second(), budget.available_at(Instant::now()));
        self.counts().tick(t).budget_available = Some(available);
    }
}

impl RetryObserver for Tally {
    fn on_attempt(&self) {
        let t = self.second();
        self.counts().tick(t).backend_calls += 1;
    }

    fn on_failure(&self, v: &Verdict) {
        self.row(v, |r| r.errors += 1);
    }

    fn on_retry(&self, v: &Verdict, _: Duration) {
        self.row(v, |r| r.retries += 1);
    }

    fn on_finish(&self, call: &Finished) {
        if let Some(v) = &call.stopped_by {
            let rejected = call.outcome == Outcome::Rejected;
            self.row(v, |r| if rejected { r.rejected += 1 } else { r.gave_up += 1 });
        }
        let t = self.second();
        let mut c = self.counts();
        *c.outcomes.entry(call.outcome).or_default() += 1;
        if call.outcome == Outcome::BudgetExhausted {
            c.spared += u64::from(self.max_attempts.saturating_sub(call.attempts));
        }
        let tick = c.tick(t);
        if call.outcome.is_success() {
            tick.successes += 1;
        } else {
            *tick.gave_up.entry(call.outcome.as_str().to_owned()).or_default() += 1;
        }
        drop(c);
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
    let wall = std::time::Instant::now();
    let started = Instant::now();
    let mut observe = scenario.observe.clone();
    if observe.name.is_empty() {
        observe.name = scenario.name.chars().take(64).collect();
    }
    let collector = Tally::counting(scenario.retry.max_attempts, progress.unwrap_or_default());
    let layer = CallAgentRetryLayer::new(scenario.retry.clone())?
        .with_observe(observe)?
        .with_observer(Arc::clone(&collector));
    let backend = SimBackend::new(scenario.backend.clone());
    let svc = layer.layer(ConnectLayer::from_config(&scenario.connect).layer(backend.clone()));
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

    // Samples the budget at the end of every second, for the plot.
    let sampler = layer.budget().cloned().map(|budget| {
        let collector = Arc::clone(&collector);
        tokio::spawn(async move {
            let mut second =
                tokio::time::interval_at(started + Duration::from_millis(999), Duration::from_secs(1));
            loop {
                second.tick().await;
                collector.sample_budget(&budget);
            }
        })
    });

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
        let (svc, backend, hold, collector) =
            (svc.clone(), backend.clone(), load.hold, Arc::clone(&collector));
        clients.spawn(async move {
            let mut times = Vec::with_capacity(gaps.len());
            for gap in gaps {
                tokio::time::sleep(gap).await;
                let t0 = Instant::now();
                collector.offered();
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
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let backend_stats = backend.stats();
    let tallied = collector.report(&scenario.name, &scenario.description, times, wall.elapsed());
    // Every offered call resolves once, so the tally's count is the scenario's; the backend's own
    // counter of calls is the figure of record for load.
    Ok(Report {
        offered: scenario.offered(),
        backend_calls: backend_stats.calls,
        amplification: backend_stats.calls as f64 / scenario.offered() as f64,
        duration: started.elapsed().as_secs_f64(),
        connect_check: scenario.connect.timeout.is_some(),
        outages: scenario
            .backend
            .outages
            .iter()
            .map(|o| (o.start.as_secs_f64(), (o.start + o.duration).as_secs_f64()))
            .collect(),
        backend: backend_stats,
        ..tallied
    })
}

/// Milliseconds with one decimal below 100 ms, whole ones to 10 s, then seconds.
fn ms(seconds: f64) -> String {
    let ms = seconds * 1e3;
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{seconds:.1} s")
    }
}

/// Words wrapped to `width` columns, each line after the first indented by `indent`.
pub(crate) fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let room = if lines.len() == 1 { width } else { width - indent };
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > room {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l } else { format!("{}{l}", " ".repeat(indent)) })
        .collect()
}

impl Report {
    /// One sentence on what the outcome mix means for this run.
    pub fn reading(&self) -> String {
        let n = |o| self.outcome(o);
        let not_connected = self.subcodes.iter().find(|r| r.subcode == "not_connected");
        let disconnected = not_connected.map_or(0, |r| r.errors);
        let connected = n(Outcome::Success) + n(Outcome::SuccessAfterRetry);
        let prefix = if disconnected > 0 {
            format!(
                "{disconnected} agents were created but never connected (the service was unreachable): \
                 each was disposed and {} creations were retried; {connected} calls got a connected agent. ",
                not_connected.map_or(0, |r| r.retries),
            )
        } else {
            String::new()
        };
        format!("{prefix}{}", self.outcome_reading())
    }

    fn outcome_reading(&self) -> String {
        let n = |o| self.outcome(o);
        let (budget, rejected) = (n(Outcome::BudgetExhausted), n(Outcome::Rejected));
        let (exhausted, deadline) = (n(Outcome::Exhausted), n(Outcome::DeadlineExceeded));
        let successes = n(Outcome::Success) + n(Outcome::SuccessAfterRetry);
        let pct = |k: u64| 100.0 * k as f64 / self.offered.max(1) as f64;
        if budget > 0 {
            let without = self.backend_calls + self.budget_spared_up_to;
            format!(
                "{budget} calls ({:.0}%) stopped on an empty retry budget: the intended fail-fast \
                 while failures pile up. It spared up to {} backend calls (load {:.2}x instead \
                 of up to {:.2}x).",
                pct(budget),
                self.budget_spared_up_to,
                self.amplification,
                without as f64 / self.offered.max(1) as f64
            )
        } else if rejected > 0 && rejected * 2 >= self.offered {
            format!(
                "{rejected} calls ({:.0}%) were rejected after one attempt each: an ExpectedError no \
                 retry can fix. Apply its remedy (above); the layer kept the backend load at {:.2}x.",
                pct(rejected),
                self.amplification
            )
        } else if exhausted + deadline > 0 {
            format!(
                "{} calls ({:.0}%) ran out of attempts or time: the failures lasted longer than \
                 the policy waits. Raise max_attempts or the deadline only if callers can wait.",
                exhausted + deadline,
                pct(exhausted + deadline)
            )
        } else if rejected > 0 {
            format!(
                "{rejected} calls were rejected (ExpectedError, one attempt each); every other call \
                 got an agent. Apply its remedy (above)."
            )
        } else {
            format!(
                "{successes} of {} calls got an agent; {} needed a retry.",
                self.offered,
                n(Outcome::SuccessAfterRetry)
            )
        }
    }
}

impl fmt::Display for Report {
    /// The report, in 80 columns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WIDTH: usize = 80;
        let clock = if self.duration > self.wall_seconds * 1.5 + 0.5 {
            format!("simulated {:.1} s in {:.2} s", self.duration, self.wall_seconds)
        } else {
            format!("ran {:.1} s in real time", self.duration)
        };
        if !self.description.is_empty() {
            writeln!(f, "{}", wrap(&self.description, WIDTH, 0).join("\n"))?;
            writeln!(f)?;
        }
        let head = format!("scenario {}: {} calls offered, {clock}", self.scenario, self.offered);
        writeln!(f, "{}", wrap(&head, WIDTH, 2).join("\n"))?;
        writeln!(f)?;
        // As wide as the longest label (`not_connected` is 13), at least `subcode`.
        let w = self.subcodes.iter().map(|r| r.subcode.len()).max().unwrap_or(0).max(8);
        writeln!(
            f,
            "{:<w$} {:>4}  {:<21} {:>7} {:>7} {:>8} {:>7}",
            "subcode", "code", "category", "errors", "retries", "rejected", "gave up"
        )?;
        if self.subcodes.is_empty() {
            writeln!(f, "(no failures)")?;
        }
        for r in &self.subcodes {
            let code = r.code.map_or_else(|| "-".into(), |c| c.to_string());
            writeln!(
                f,
                "{:<w$} {:>4}  {:<21} {:>7} {:>7} {:>8} {:>7}",
                r.subcode,
                code,
                r.category.as_str(),
                r.errors,
                r.retries,
                r.rejected,
                r.gave_up
            )?;
        }
        if !self.subcodes.is_empty() {
            writeln!(f, "(errors = retries + rejected + gave up)")?;
            writeln!(f)?;
            writeln!(f, "remedies:")?;
            for r in &self.subcodes {
                let remedy = r.remedy.unwrap_or("not in the catalog: see the error's code and message.");
                for (i, line) in wrap(remedy, WIDTH - w - 3, 0).iter().enumerate() {
                    let subcode = if i == 0 { r.subcode.as_str() } else { "" };
                    writeln!(f, "  {subcode:<w$} {line}")?;
                }
            }
        }
        writeln!(f)?;
        writeln!(f, "outcomes:")?;
        for o in Outcome::ALL.iter().filter(|o| self.outcome(**o) > 0) {
            let k = self.outcome(*o);
            writeln!(
                f,
                "  {:<22} {k:>8}  {:5.1}%",
                o.as_str(),
                100.0 * k as f64 / self.offered.max(1) as f64
            )?;
        }
        writeln!(
            f,
            "backend load:   {:.2}x ({} backend calls / {} offered)",
            self.amplification, self.backend_calls, self.offered
        )?;
        match (self.time_to_agent_p50, self.time_to_agent_p99) {
            (Some(p50), Some(p99)) => {
                let what = if self.connect_check { "connected agent" } else { "agent" };
                writeln!(f, "time to {what}:  p50 {}, p99 {} (successful calls only)", ms(p50), ms(p99))?
            }
            _ => writeln!(f, "time to agent:  - (no call got an agent)")?,
        }
        writeln!(f)?;
        let reading = wrap(&self.reading(), WIDTH, 0).join("\n");
        write!(f, "{reading}")
    }
}
