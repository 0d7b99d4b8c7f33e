//! [`SimBackend`]: fails like the Calling SDK's `createCallAgent`, deterministically.
//!
//! Over 500 lines: the simulated SDK's rules in one place; about 130 lines are its tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SimError;
use crate::preflight;
use crate::sdk::catalog::{AGENT_EXISTS, TEAMS_AGENT_EXISTS};
use crate::sdk::{AccessToken, AgentKind, AgentRequest, CallAgentError, CreateAgentRequest};

/// The kind of token a simulated client holds; [`SimToken::mint`] makes an unsigned token of
/// that kind (never a real one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimToken {
    /// A valid Communication Services user token.
    #[default]
    Acs,
    /// A token exchanged for a Teams user (has a `tid`).
    Teams,
    /// A token whose scope is not a string (44114).
    BadScope,
    /// A token that expired long ago (40235).
    Expired,
}

impl SimToken {
    /// An unsigned token of this kind for `identity`, valid for a day unless `Expired`.
    pub fn mint(self, identity: &str) -> AccessToken {
        let day_ahead = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 86_400;
        let claims = match self {
            Self::Acs => {
                json!({"skypeid": format!("acs:{identity}"), "acsScope": "voip", "resourceId": "sim-resource", "exp": day_ahead})
            }
            Self::Teams => {
                json!({"skypeid": format!("orgid:{identity}"), "acsScope": "voip", "tid": "sim-tenant", "exp": day_ahead})
            }
            Self::BadScope => {
                json!({"skypeid": format!("acs:{identity}"), "acsScope": 7, "resourceId": "sim-resource", "exp": day_ahead})
            }
            Self::Expired => {
                json!({"skypeid": format!("acs:{identity}"), "acsScope": "voip", "resourceId": "sim-resource", "exp": 1_000})
            }
        };
        AccessToken::unsigned(&claims)
    }
}

/// A request for `identity` with a freshly minted token of kind `token`.
///
/// ```
/// use callagent_retry::sdk::AgentKind;
/// use callagent_retry::sim::{SimToken, request};
/// let r = request("alice", SimToken::Acs, AgentKind::Acs);
/// assert_eq!(r.identity, "alice");
/// ```
///
/// The request uses a token refresher (`token_refresher: true`), as the SDK's documentation
/// recommends, so the SDK (and the simulator) checks `exp` before creating the agent.
pub fn request(identity: &str, token: SimToken, kind: AgentKind) -> CreateAgentRequest {
    CreateAgentRequest {
        token_refresher: true,
        ..CreateAgentRequest::new(identity, token.mint(identity), kind)
    }
}

/// A created (fake) agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    /// The identity it belongs to.
    pub identity: String,
    /// A unique number.
    pub id: u64,
    /// Whether it connected. An agent created while the service is unreachable (an outage with
    /// `unreachable = true`) never does, as with the real SDK.
    pub connected: bool,
    backend: SimBackend,
}

impl PartialEq for SimAgent {
    fn eq(&self, other: &Self) -> bool {
        (&self.identity, self.id, self.connected) == (&other.identity, other.id, other.connected)
    }
}

impl Eq for SimAgent {}

/// How long a simulated agent's disposal takes.
const DISPOSE_TAKES: Duration = Duration::from_millis(50);

impl crate::connect::Connectable for SimAgent {
    fn connected_within(&mut self, within: Duration) -> crate::connect::BoxFuture<'_, bool> {
        let connected = self.connected;
        Box::pin(async move {
            if !connected {
                tokio::time::sleep(within).await;
            }
            connected
        })
    }

    fn dispose(self) -> crate::connect::BoxFuture<'static, ()> {
        // As the real SDK's `dispose()`: nothing happens until the future runs, and it takes a
        // while, so a caller that drops it unawaited meets the old agent on its next creation.
        Box::pin(async move {
            tokio::time::sleep(DISPOSE_TAKES).await;
            self.backend.dispose(&self.identity);
        })
    }
}

/// A window during which every call fails with one subcode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// Start, from the backend's creation.
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    /// Length.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The subcode every call fails with (e.g. 40114), unless `unreachable`.
    #[serde(default)]
    pub sub_code: u32,
    /// As the real SDK (2.x and the last 1.x, seen by the conformance suite) meets a service it
    /// cannot reach: the creation *resolves* after 13.5–16 s with an agent that never connects,
    /// instead of failing.
    #[serde(default)]
    pub unreachable: bool,
    /// With `unreachable`: as an old SDK (1.9.x) meets it instead: the creation *throws* 408
    /// "User stack init timeout" with no subcode (0) and no categories after 36–38 s.
    #[serde(default)]
    pub old_sdk: bool,
}

/// The error an old SDK (1.9.x) throws when the service cannot be reached.
fn old_sdk_timeout() -> CallAgentError {
    CallAgentError::new(408, 0, "User stack init timeout")
}

/// A concurrency limit past which calls time out, as an overloaded service does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Calls in flight the backend serves normally.
    pub max_concurrent: usize,
    /// The subcode an overloaded call fails with.
    #[serde(default = "default_overload_sub_code")]
    pub sub_code: u32,
    /// How long an overloaded call takes to fail (a timeout is slow).
    #[serde(default = "default_overload_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_overload_sub_code() -> u32 {
    40114
}

fn default_overload_timeout() -> Duration {
    Duration::from_secs(2)
}

/// How the backend behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Shortest time to answer.
    #[serde(with = "humantime_serde")]
    pub latency_min: Duration,
    /// Longest time to answer (uniform in between).
    #[serde(with = "humantime_serde")]
    pub latency_max: Duration,
    /// Per call, the probability of failing with each subcode (outside outages).
    #[serde(with = "crate::validate::subcode_keys")]
    pub failures: BTreeMap<u32, f64>,
    /// Windows of total failure.
    pub outages: Vec<Outage>,
    /// Overload behaviour, if any.
    pub capacity: Option<Capacity>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            latency_min: Duration::from_millis(50),
            latency_max: Duration::from_millis(250),
            failures: BTreeMap::new(),
            outages: Vec::new(),
            capacity: None,
        }
    }
}

impl BackendConfig {
    /// Checks probabilities and durations; names the field at fault.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.latency_max < self.latency_min {
            return Err(SimError::invalid("backend.latency_max", "must not be below latency_min"));
        }
        let mut total = 0.0;
        for (sub, p) in &self.failures {
            if !(0.0..=1.0).contains(p) {
                return Err(SimError::invalid(
                    format!("backend.failures.{sub}"),
                    format!("must be a probability in [0, 1], got {p}"),
                ));
            }
            total += p;
        }
        if total > 1.0 + 1e-9 {
            return Err(SimError::invalid("backend.failures", format!("add up to {total}, more than 1")));
        }
        if let Some(i) = self.outages.iter().position(|o| o.old_sdk && !o.unreachable) {
            return Err(SimError::invalid(
                format!("backend.outages[{i}].old_sdk"),
                "plays how an old SDK meets an unreachable service: set unreachable = true too",
            ));
        }
        if let Some(c) = &self.capacity
            && c.max_concurrent == 0
        {
            return Err(SimError::invalid("backend.capacity.max_concurrent", "must be at least 1"));
        }
        Ok(())
    }
}

/// What the backend has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Calls received.
    pub calls: u64,
    /// Agents created (those that never connected included).
    pub created: u64,
    /// Agents created that never connected (an unreachable outage).
    pub disconnected: u64,
    /// Creations answered with the identity's existing agent (as the SDK does for a creation
    /// that comes after another for the same identity).
    pub existing: u64,
    /// Failures by subcode (0: an old SDK's error without one).
    pub failures: BTreeMap<u32, u64>,
    /// Most calls in flight at once.
    pub peak_in_flight: usize,
}

/// The simulated backend: a `tower::Service` for any [`AgentRequest`]; clones share one state.
#[derive(Clone, Debug)]
pub struct SimBackend {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    config: BackendConfig,
    rng: SmallRng,
    epoch: Instant,
    // The agent alive for each identity: (id, connected).
    live: HashMap<String, (u64, bool)>,
    // The creation in flight for each identity: when it started, and a flag its waiters watch.
    pending: HashMap<String, (Instant, watch::Sender<bool>)>,
    in_flight: usize,
    next_id: u64,
    stats: SimStats,
}

/// What a call will do once its latency has passed.
enum Plan {
    Fail(u32),
    /// An old SDK's thrown timeout ([`Outage::old_sdk`]).
    OldSdkTimeout,
    Create,
    Disconnected,
    /// Another creation for the identity is in flight: hand back what it makes.
    Join(watch::Receiver<bool>),
}

impl SimBackend {
    /// A backend starting now (outage windows count from here).
    pub fn new(config: BackendConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: SmallRng::seed_from_u64(config.seed),
                config,
                epoch: Instant::now(),
                live: HashMap::new(),
                pending: HashMap::new(),
                in_flight: 0,
                next_id: 0,
                stats: SimStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Disposes the live agent of `identity`, so another can be created; `false` if none.
    pub fn dispose(&self, identity: &str) -> bool {
        self.lock().live.remove(identity).is_some()
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Agents currently alive.
    pub fn live_agents(&self) -> usize {
        self.lock().live.len()
    }
}

fn error(sub_code: u32) -> CallAgentError {
    CallAgentError::from_catalog(sub_code)
        .unwrap_or_else(|| CallAgentError::new(500, sub_code, "simulated failure outside the catalog"))
}

impl State {
    /// Decides a call's fate and latency at arrival: token checks first (the SDK makes them
    /// before any network traffic, as the preflight layer does), then outages, overload, random
    /// failures.
    fn plan<R: AgentRequest>(&mut self, req: &R) -> (Plan, Duration) {
        if let Err(e) = preflight::check(req, SystemTime::now()) {
            return (Plan::Fail(e.sub_code()), Duration::from_millis(1));
        }
        let (lo, hi) = (self.config.latency_min, self.config.latency_max);
        let latency = Duration::from_nanos(self.rng.gen_range(lo.as_nanos() as u64..=hi.as_nanos() as u64));
        let since = Instant::now() - self.epoch;
        if let Some(o) = self.config.outages.iter().find(|o| since >= o.start && since < o.start + o.duration)
        {
            if o.unreachable && o.old_sdk {
                let throw = Duration::from_millis(self.rng.gen_range(36_000..=38_000));
                return (Plan::OldSdkTimeout, throw);
            }
            if o.unreachable {
                // The real SDK resolves after ~14 s (ACS) to ~16 s (Teams) with no network.
                let resolve = Duration::from_millis(self.rng.gen_range(13_500..=16_000));
                return (Plan::Disconnected, resolve);
            }
            return (Plan::Fail(o.sub_code), latency);
        }
        if let Some(c) = &self.config.capacity
            && self.in_flight > c.max_concurrent
        {
            return (Plan::Fail(c.sub_code), c.timeout);
        }
        let mut roll: f64 = self.rng.r#gen();
        for (&sub, &p) in &self.config.failures {
            if roll < p {
                return (Plan::Fail(sub), latency);
            }
            roll -= p;
        }
        (Plan::Create, latency)
    }

    /// The SDK's identity rules (seen by the conformance suite), for a call that would create:
    /// another creation for the identity started in the same tick on another `CallClient` →
    /// 409/40228 (40230 for Teams); one started earlier and still in flight → its agent, once it
    /// resolves; otherwise this call is the identity's creation in flight.
    fn claim<R: AgentRequest>(&mut self, req: &R, plan: Plan) -> Plan {
        if !matches!(plan, Plan::Create | Plan::Disconnected) {
            return plan;
        }
        let now = Instant::now();
        match self.pending.get(req.identity()) {
            Some((started, _)) if *started == now => Plan::Fail(match req.kind() {
                AgentKind::Teams => TEAMS_AGENT_EXISTS,
                _ => AGENT_EXISTS,
            }),
            Some((_, done)) => Plan::Join(done.subscribe()),
            None => {
                let (done, _) = watch::channel(false);
                self.pending.insert(req.identity().to_owned(), (now, done));
                plan
            }
        }
    }

    fn fail(&mut self, sub_code: u32) -> CallAgentError {
        *self.stats.failures.entry(sub_code).or_default() += 1;
        error(sub_code)
    }
}

/// Clears an identity's creation in flight when it ends (or is dropped) and wakes its waiters.
struct PendingGuard {
    state: Arc<Mutex<State>>,
    identity: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, done)) = s.pending.remove(&self.identity) {
            let _ = done.send(true);
        }
    }
}

/// Keeps the in-flight count right even when a call is dropped (a retry layer's timeout).
struct InFlight(Arc<Mutex<State>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).in_flight -= 1;
    }
}

type BoxFuture = crate::connect::BoxFuture<'static, Result<SimAgent, CallAgentError>>;

impl<R: AgentRequest + Send + 'static> tower::Service<R> for SimBackend {
    type Response = SimAgent;
    type Error = CallAgentError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> BoxFuture {
        let (plan, latency) = {
            let mut s = self.lock();
            s.stats.calls += 1;
            s.in_flight += 1;
            s.stats.peak_in_flight = s.stats.peak_in_flight.max(s.in_flight);
            let (plan, latency) = s.plan(&req);
            (s.claim(&req, plan), latency)
        };
        let guard = InFlight(Arc::clone(&self.state));
        let backend = self.clone();
        let identity = req.identity().to_owned();
        // Registered as this identity's creation in flight (cleared however the call ends).
        let owner = matches!(plan, Plan::Create | Plan::Disconnected)
            .then(|| PendingGuard { state: Arc::clone(&self.state), identity: identity.clone() });
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            let plan = match plan {
                Plan::Join(mut done) => {
                    // The first creation's outcome decides: its agent, or our own if it failed.
                    let _ = done.wait_for(|d| *d).await;
                    Plan::Create
                }
                other => other,
            };
            let mut s = guard.0.lock().unwrap_or_else(PoisonError::into_inner);
            let result = match plan {
                Plan::Fail(sub) => Err(s.fail(sub)),
                Plan::OldSdkTimeout => {
                    *s.stats.failures.entry(0).or_default() += 1;
                    Err(old_sdk_timeout())
                }
                Plan::Create | Plan::Disconnected | Plan::Join(_) => {
                    if let Some(&(id, connected)) = s.live.get(&identity) {
                        // A later creation for a live identity gets the existing agent.
                        s.stats.existing += 1;
                        Ok(SimAgent { identity: identity.clone(), id, connected, backend })
                    } else {
                        let connected = matches!(plan, Plan::Create);
                        s.stats.created += 1;
                        s.stats.disconnected += u64::from(!connected);
                        s.next_id += 1;
                        let id = s.next_id;
                        s.live.insert(identity.clone(), (id, connected));
                        Ok(SimAgent { identity: identity.clone(), id, connected, backend })
                    }
                }
            };
            drop(s);
            drop(owner);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn req(token: SimToken, kind: AgentKind, name: Option<&str>) -> CreateAgentRequest {
        CreateAgentRequest { display_name: name.map(str::to_owned), ..request("u", token, kind) }
    }

    fn acs(identity: &str) -> CreateAgentRequest {
        request(identity, SimToken::Acs, AgentKind::Acs)
    }

    #[tokio::test(start_paused = true)]
    async fn token_checks_fail_like_the_sdk() {
        let b = SimBackend::new(BackendConfig::default());
        for (r, sub) in [
            (req(SimToken::Teams, AgentKind::Acs, None), 40229),
            (req(SimToken::Acs, AgentKind::Teams, None), 40231),
            (req(SimToken::BadScope, AgentKind::Acs, None), 44114),
            (req(SimToken::Teams, AgentKind::Teams, Some("Al")), 40214),
            (req(SimToken::Expired, AgentKind::Acs, None), 40235),
        ] {
            assert_eq!(b.clone().oneshot(r).await.unwrap_err().sub_code(), sub);
        }
        assert!(b.clone().oneshot(req(SimToken::Teams, AgentKind::Teams, None)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn one_agent_per_identity_as_the_sdk_rules_it() {
        let b = SimBackend::new(BackendConfig::default());
        // Two creations in the same tick (two CallClients): one agent, one 409/40228.
        let (x, y) = tokio::join!(b.clone().oneshot(acs("a")), b.clone().oneshot(acs("a")));
        let first = x.unwrap();
        assert_eq!(y.unwrap_err().sub_code(), 40228);
        // A later creation, the agent alive: the SDK hands back the existing agent.
        assert_eq!(b.clone().oneshot(acs("a")).await.unwrap().id, first.id);
        // One started while another is in flight (not the same tick): the agent that one makes.
        let late = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            b.clone().oneshot(acs("b")).await
        };
        let (x, y) = tokio::join!(b.clone().oneshot(acs("b")), late);
        assert_eq!(x.unwrap().id, y.unwrap().id);
        // Disposed: the next creation makes a new agent. Teams agents race to 40230.
        assert!(b.dispose("a"));
        assert_ne!(b.clone().oneshot(acs("a")).await.unwrap().id, first.id);
        let teams = || request("t", SimToken::Teams, AgentKind::Teams);
        let (x, y) = tokio::join!(b.clone().oneshot(teams()), b.clone().oneshot(teams()));
        assert!(x.is_ok());
        assert_eq!(y.unwrap_err().sub_code(), 40230);
        let stats = b.stats();
        assert_eq!((stats.failures[&40228], stats.existing, stats.created), (1, 2, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn outages_fail_every_call_then_recover() {
        let outage = Outage {
            start: Duration::from_secs(10),
            duration: Duration::from_secs(5),
            sub_code: 40114,
            unreachable: false,
            old_sdk: false,
        };
        let b = SimBackend::new(BackendConfig { outages: vec![outage], ..Default::default() });
        let mut results = vec![];
        for i in 0..20 {
            results.push(b.clone().oneshot(acs(&format!("u{i}"))).await.is_ok());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Each call takes up to 250 ms plus the 1 s pause: calls ~9-13 start inside the window.
        let failed: Vec<_> = results.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
        assert!(failed.len() >= 4 && failed.iter().all(|i| (7..=15).contains(i)), "{failed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_sdk_throws_a_408_without_a_subcode_after_about_37_s() {
        let outage = |old_sdk, unreachable| Outage {
            start: Duration::ZERO,
            duration: Duration::from_secs(600),
            sub_code: 0,
            unreachable,
            old_sdk,
        };
        let b = SimBackend::new(BackendConfig { outages: vec![outage(true, true)], ..Default::default() });
        let start = Instant::now();
        let e = b.clone().oneshot(acs("a")).await.unwrap_err();
        let took = start.elapsed();
        assert!((Duration::from_secs(36)..=Duration::from_secs(38)).contains(&took), "{took:?}");
        assert_eq!((e.code(), e.has_sub_code(), e.message()), (408, false, "User stack init timeout"));
        assert!(e.categories().is_empty());
        assert_eq!((b.stats().failures[&0], b.stats().created), (1, 0));
        // Only meaningful for an unreachable service: refused by name otherwise.
        let bad = BackendConfig { outages: vec![outage(true, false)], ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("outages[0].old_sdk"));
    }

    #[tokio::test(start_paused = true)]
    async fn overload_turns_into_timeouts() {
        let capacity = Capacity { max_concurrent: 10, sub_code: 40114, timeout: Duration::from_secs(2) };
        let b = SimBackend::new(BackendConfig { capacity: Some(capacity), ..Default::default() });
        let calls: Vec<_> = (0..30).map(|i| tokio::spawn(b.clone().oneshot(acs(&format!("u{i}"))))).collect();
        let mut failed = 0;
        for c in calls {
            failed += usize::from(c.await.unwrap().is_err());
        }
        assert_eq!(failed, 20);
        assert_eq!(b.stats().failures[&40114], 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_gives_the_same_run() {
        let run = || async {
            let b = SimBackend::new(BackendConfig {
                failures: [(40114, 0.3), (40104, 0.2)].into(),
                ..Default::default()
            });
            let mut out = vec![];
            for i in 0..50 {
                out.push(
                    b.clone().oneshot(acs(&format!("u{i}"))).await.map_err(|e| e.sub_code()).map(|a| a.id),
                );
            }
            out
        };
        assert_eq!(run().await, run().await);
    }
}
