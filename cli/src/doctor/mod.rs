//! `callagent doctor`: why a call agent is not created, step by step, with the real SDK.
//!
//! The stages ([`Stage`]): a token (minted from the connection string, or read), the token read
//! offline with the SDK's local checks (the crate's preflight), the browser, the creation with
//! the real Web Calling SDK through the retry layer and the connect check, the agent's
//! connection, and the disposal. Each gives a [`Step`]; the [`Report`] adds them up to a
//! [`Verdict`], the exit code. Remedies come from the crate's catalog, never from here.
//!
//! Over 500 lines: each stage is a function here, and about 90 lines are its tests.

mod report;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callagent_retry::connect::{ConnectError, ConnectLayer};
use callagent_retry::retry::AttemptError;
use callagent_retry::sdk::{
    AccessToken, AgentKind, CallAgentError, CreateAgentRequest, ErrorCategory, catalog,
};
use callagent_retry::{CallAgentRetryLayer, RetryConfig, RetryError};
use callagent_websdk::{Agent, WebSdk, WebSdkConfig, WebSdkError};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

pub use report::{Report, SdkFailure, Stage, Status, Step, Verdict};

use crate::identity::{ConnectionString, IdentityClient, Scope};
use crate::watch::{Watch, Watched, state_name};
use callagent_websdk::HostReach;

/// Where the doctor's token comes from.
#[derive(Debug)]
pub enum Credential {
    /// A token someone has (read with [`TokenSource::read`](crate::token::TokenSource::read)),
    /// and the identity it is for (else the token's own `skypeid`).
    Token {
        /// The token.
        token: AccessToken,
        /// `--identity`.
        identity: Option<String>,
    },
    /// Minted from the resource: for a new identity (deleted at the end) or for `identity`.
    Resource {
        /// The resource's connection string.
        connection: ConnectionString,
        /// `--identity`: issue a token for it instead of creating one.
        identity: Option<String>,
        /// Extra CA certificates for the identity API (tests).
        ca_file: Option<PathBuf>,
    },
}

/// What to diagnose with.
#[derive(Debug)]
pub struct Options {
    /// A Teams user's agent (`TeamsCallAgent`) instead of an ACS one.
    pub kind: AgentKind,
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// The built page (`websdk/page/dist`).
    pub page_dir: PathBuf,
    /// Creations the retry layer may make.
    pub attempts: u32,
    /// How long a created agent has to reach `Connected` (the connect check).
    pub connect_timeout: Duration,
    /// How long one creation may take before its page is closed.
    pub create_timeout: Duration,
    /// Chromium's `--host-resolver-rules` (tests map every external host away).
    pub host_resolver_rules: Option<String>,
}

/// Told when a step starts to wait, so a terminal can show it.
pub trait Progress {
    /// A step started: `what` is waited for (creation can take 15 s).
    fn waiting(&self, what: &str);
    /// The step ended.
    fn done(&self);
}

/// No progress shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn waiting(&self, _: &str) {}
    fn done(&self) {}
}

/// `12.3 s`, `450 ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Runs every stage with `credential` and reports. Never panics on what it finds: each failure
/// is a step.
pub async fn run(credential: Credential, options: &Options, progress: &dyn Progress) -> Report {
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut created_identity = None;
    let (identity, token) = match credential {
        Credential::Token { token, identity } => (identity, token),
        Credential::Resource { connection, identity, ca_file } => {
            let at = Instant::now();
            progress.waiting("minting a token from the resource's identity API");
            let endpoint = connection.endpoint().to_string();
            let minted = mint(connection, identity.as_deref(), ca_file).await;
            progress.done();
            match minted {
                Ok(Minted { client, id, token, created }) => {
                    let summary = if created {
                        format!("created {id} in {endpoint} (deleted at the end)")
                    } else {
                        format!("issued a voip token for {id}")
                    };
                    steps.push(
                        Step::ok(Stage::Identity, summary)
                            .fact("identity", id.clone())
                            .fact("created", created)
                            .took(at.elapsed()),
                    );
                    if created {
                        created_identity = Some((client, id.clone()));
                    }
                    (Some(id), token)
                }
                Err(e) => {
                    steps.push(
                        Step::failed(Stage::Identity, Verdict::CouldNotRun, e.to_string()).took(at.elapsed()),
                    );
                    return finish(steps, started);
                }
            }
        }
    };

    let (step, request, creation_useful) = token_step(&token, identity, options.kind);
    steps.push(step);

    let mut agent = None;
    let browser = browser_step(options, progress).await;
    let sdk = match browser {
        Ok((step, sdk)) => {
            steps.push(step);
            Some(sdk)
        }
        Err(step) => {
            steps.push(step);
            None
        }
    };
    match (&sdk, creation_useful) {
        (Some(sdk), Ok(())) => {
            let (creation, connection, created) = creation_steps(sdk, options, request, progress).await;
            steps.push(creation);
            steps.push(connection);
            agent = created;
        }
        (None, _) => {
            steps.push(Step::skipped(Stage::Creation, "no browser to create the agent in"));
            steps.push(Step::skipped(Stage::Connection, "no agent"));
        }
        (Some(_), Err(why)) => {
            steps.push(Step::skipped(Stage::Creation, why));
            steps.push(Step::skipped(Stage::Connection, "no agent"));
        }
    }
    steps.push(disposal_step(agent, sdk, created_identity, progress).await);
    finish(steps, started)
}

fn finish(steps: Vec<Step>, started: Instant) -> Report {
    Report::new(steps, started.elapsed())
}

struct Minted {
    client: IdentityClient,
    id: String,
    token: AccessToken,
    created: bool,
}

async fn mint(
    connection: ConnectionString,
    identity: Option<&str>,
    ca_file: Option<PathBuf>,
) -> Result<Minted, crate::identity::IdentityError> {
    let mut builder = IdentityClient::builder(connection);
    if let Some(ca) = ca_file {
        builder = builder.ca_file(ca);
    }
    let client = builder.build()?;
    let hour = Duration::from_secs(3600);
    match identity {
        Some(id) => {
            let issued = client.issue_token(id, &[Scope::Voip], hour).await?;
            Ok(Minted { client, id: id.to_owned(), token: issued.token, created: false })
        }
        None => {
            let created = client.create_identity_with_token(&[Scope::Voip], hour).await?;
            Ok(Minted { client, id: created.id, token: created.token, created: true })
        }
    }
}

/// The token read offline: whose it is, for which resource, its scopes and expiry, and the SDK's
/// local checks. Also the request to create with, and whether creating is worth it (not for an
/// expired token: SDK 2.0.0 does not check expiry, and would create an agent that never
/// connects).
fn token_step(
    token: &AccessToken,
    identity: Option<String>,
    kind: AgentKind,
) -> (Step, CreateAgentRequest, Result<(), String>) {
    let now = SystemTime::now();
    let claims = token.claims();
    let (user, resource, scopes, exp) = match &claims {
        Ok(c) => (
            c.skypeid().map(str::to_owned),
            c.get("resourceId").and_then(|v| v.as_str()).map(str::to_owned),
            c.acs_scope().and_then(|v| v.as_str()).map(str::to_owned),
            c.exp(),
        ),
        Err(_) => (None, None, None, None),
    };
    let identity = identity.or_else(|| user.as_ref().map(|u| format!("8:{u}"))).unwrap_or_default();
    let request = CreateAgentRequest::new(identity.clone(), token.clone(), kind);
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let expiry = exp.map(|exp| {
        let at = UNIX_EPOCH + Duration::from_secs_f64(exp.max(0.0));
        let utc = humantime::format_rfc3339_seconds(at).to_string().replace('T', " ").replace('Z', " UTC");
        let left = exp - now_secs;
        let words = if left > 0.0 {
            format!("expires in {} ({utc})", in_words(left))
        } else {
            format!("expired {} ago ({utc})", in_words(-left))
        };
        (words, left > 0.0, utc)
    });
    let summary = format!(
        "for {}, resource {}, scopes {}; {}",
        if identity.is_empty() { "no identity" } else { &identity },
        resource.as_deref().unwrap_or("none"),
        scopes.as_deref().unwrap_or("none"),
        expiry.as_ref().map_or("no expiry", |(w, _, _)| w),
    );
    let facts = |step: Step| {
        step.fact("identity", identity.clone())
            .fact("resource", resource.clone())
            .fact("scopes", scopes.clone())
            .fact("expires_at", expiry.as_ref().map(|(_, _, utc)| utc.clone()))
            .fact("expires_in_s", exp.map(|e| (e - now_secs).round()))
    };
    if let Some((words, false, _)) = &expiry {
        let entry = catalog::lookup(catalog::TOKEN_EXPIRED);
        let step = facts(Step::failed(Stage::Token, Verdict::MustFix, summary))
            .detail(format!(
                "the token {words}: the SDK will not check it, and the agent it creates never connects"
            ))
            .remedy(entry.map_or("Get a fresh token.", |e| e.remedy));
        return (step, request, Err("the token has expired: fix it first".into()));
    }
    match callagent_retry::preflight::check(&request, now) {
        Ok(()) => {
            let step = facts(Step::ok(Stage::Token, summary))
                .detail("passes the SDK's local checks (a JWT, its payload, scope, identity, agent kind)")
                .fact("local_checks", "pass");
            (step, request, Ok(()))
        }
        Err(e) => {
            let verdict = verdict_of(&e);
            let remedy = catalog::lookup(e.sub_code()).map(|entry| entry.remedy);
            let mut step = facts(Step::failed(Stage::Token, verdict, summary))
                .detail(format!("fails the SDK's local checks with {}/{}", e.code(), e.sub_code()))
                .fact("local_checks", "fail")
                .error(failure(&e));
            if let Some(remedy) = remedy {
                step = step.remedy(remedy);
            }
            // The real SDK answers these in milliseconds: ask it, to show its own answer.
            (step, request, Ok(()))
        }
    }
}

/// `59 min`, `3 h 5 min`, `2 days`.
fn in_words(secs: f64) -> String {
    let mins = (secs / 60.0).round() as u64;
    match mins {
        0 => format!("{} s", secs.round() as u64),
        1..=119 => format!("{mins} min"),
        120..=2879 => format!("{} h {} min", mins / 60, mins % 60),
        _ => format!("{} days", mins / 1440),
    }
}

fn failure(e: &CallAgentError) -> SdkFailure {
    SdkFailure {
        code: e.code(),
        sub_code: e.has_sub_code().then(|| e.sub_code()),
        category: e.category_names().first().cloned().unwrap_or_else(|| category(e).to_string()),
        message: e.message().to_owned(),
    }
}

/// The error's category: carried, else the catalog's.
fn category(e: &CallAgentError) -> ErrorCategory {
    e.categories()
        .first()
        .copied()
        .or_else(|| catalog::lookup(e.sub_code()).map(|entry| entry.category))
        .unwrap_or(ErrorCategory::Unknown)
}

fn verdict_of(e: &CallAgentError) -> Verdict {
    if category(e) == ErrorCategory::ExpectedError { Verdict::MustFix } else { Verdict::NotFixed }
}

/// Chromium found, its version, the sandbox, the page built; the browser launched and the SDK's
/// version read from a page.
async fn browser_step(options: &Options, progress: &dyn Progress) -> Result<(Step, WebSdk), Step> {
    let at = Instant::now();
    let fail =
        |summary: String| Step::failed(Stage::Browser, Verdict::CouldNotRun, summary).took(at.elapsed());
    if !options.chromium.is_file() {
        return Err(fail(format!(
            "no Chromium at {}: install Debian's (`apt-get install chromium`) or pass --chromium PATH",
            options.chromium.display()
        )));
    }
    let version = chromium_version(&options.chromium).await;
    let root = effective_uid() == Some(0);
    let sandbox = if root {
        "sandbox off: running as root, where Chromium refuses its sandbox (run as another user to keep it)"
    } else {
        "sandbox on"
    };
    if !options.page_dir.join("bundle.js").is_file() {
        return Err(fail(format!(
            "the page is not built in {}: run websdk/page/build.sh (needs Node.js and npm), or pass --page-dir",
            options.page_dir.display()
        )));
    }
    let config = WebSdkConfig {
        chromium: options.chromium.clone(),
        page_dir: options.page_dir.clone(),
        create_timeout: options.create_timeout,
        host_resolver_rules: options.host_resolver_rules.clone(),
        max_agents: 1,
        ..WebSdkConfig::default()
    };
    progress.waiting("starting Chromium and loading the SDK");
    let launched = WebSdk::launch(config).await;
    let sdk = match launched {
        Ok(sdk) => sdk,
        Err(e) => {
            progress.done();
            return Err(fail(format!("Chromium did not start: {e}")));
        }
    };
    let sdk_version = match sdk.tab().await {
        Ok(tab) => {
            let v = tab.sdk_version().await;
            tab.close().await;
            v
        }
        Err(e) => Err(e),
    };
    progress.done();
    let sdk_version = match sdk_version {
        Ok(v) => v,
        Err(e) => {
            sdk.close().await;
            return Err(fail(format!("the page did not load the SDK: {e}")));
        }
    };
    let step = Step::ok(
        Stage::Browser,
        format!("{}, {sandbox}, page built with SDK {sdk_version}", version.as_deref().unwrap_or("Chromium")),
    )
    .fact("chromium", options.chromium.display().to_string())
    .fact("chromium_version", version)
    .fact("sandbox", !root)
    .fact("page_dir", options.page_dir.display().to_string())
    .fact("sdk_version", sdk_version)
    .took(at.elapsed());
    Ok((step, sdk))
}

/// `chromium --version`, bounded.
async fn chromium_version(chromium: &std::path::Path) -> Option<String> {
    let run = tokio::process::Command::new(chromium)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The creation through `retry ▸ connect ▸ the SDK`, and what the connect check saw.
async fn creation_steps(
    sdk: &WebSdk,
    options: &Options,
    request: CreateAgentRequest,
    progress: &dyn Progress,
) -> (Step, Step, Option<Agent>) {
    let at = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = RetryConfig {
        max_attempts: options.attempts,
        // Bounded by the attempts, each by the creation and connect timeouts; one call has no
        // budget to share.
        deadline: None,
        budget: None,
        ..RetryConfig::default()
    };
    let retry = match CallAgentRetryLayer::new(config) {
        Ok(layer) => layer,
        Err(e) => {
            let step =
                Step::failed(Stage::Creation, Verdict::CouldNotRun, format!("bad retry settings: {e}"));
            return (step, Step::skipped(Stage::Connection, "no agent"), None);
        }
    };
    let watch_log = Arc::clone(&log);
    let svc = ServiceBuilder::new()
        .layer(retry)
        .layer(ConnectLayer::new(Some(options.connect_timeout)))
        .map_response(move |agent: Agent| Watched { agent, log: Arc::clone(&watch_log) })
        .service(sdk.clone());
    progress.waiting("creating an agent with the real SDK (up to 15 s), then waiting for Connected");
    let result = svc.oneshot(request).await;
    progress.done();
    let took = at.elapsed();
    let watches = Watched::read(&log);
    let connection = connection_step(&watches, options.connect_timeout);
    match result {
        Ok(watched) => {
            let attempts = watches.len().max(1);
            let step = Step::ok(
                Stage::Creation,
                format!(
                    "agent created in {} (attempt {attempts} of {}), {} in all",
                    seconds(watched.agent.creation_time()),
                    options.attempts,
                    seconds(took)
                ),
            )
            .fact("attempts", attempts)
            .fact("time_to_agent_ms", ms(watched.agent.creation_time()))
            .took(took);
            (step, connection, Some(watched.agent))
        }
        Err(e) => (creation_failed(&e, &watches, options, took), connection, None),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn creation_failed(
    e: &RetryError<ConnectError<WebSdkError>>,
    watches: &[Watch],
    options: &Options,
    took: Duration,
) -> Step {
    let attempts = e.attempts();
    let base = |step: Step| step.fact("attempts", attempts).fact("reason", e.reason().to_string()).took(took);
    match e.last_attempt() {
        AttemptError::Service(ConnectError::NotConnected { .. }) => {
            let created_in = watches.last().map_or(Duration::ZERO, |w| w.created_in);
            // The agent was created: the failure is the connection's (that step says so).
            base(Step::ok(
                Stage::Creation,
                format!(
                    "agent created in {} each time, but none connected ({attempts} of {} attempts)",
                    seconds(created_in),
                    options.attempts
                ),
            ))
            .fact("time_to_agent_ms", ms(created_in))
        }
        AttemptError::Service(ConnectError::Service(WebSdkError::Sdk(sdk))) => {
            let verdict = verdict_of(sdk);
            let what = if verdict == Verdict::MustFix {
                "the SDK refused the creation: a retry cannot fix this"
            } else {
                "the SDK failed the creation, and retries did not fix it"
            };
            let mut step = base(Step::failed(
                Stage::Creation,
                verdict,
                format!("{what} ({attempts} attempt{})", if attempts == 1 { "" } else { "s" }),
            ))
            .error(failure(sdk));
            if let Some(remedy) = e.remedy() {
                step = step.remedy(remedy);
            }
            step
        }
        AttemptError::Service(ConnectError::Service(other)) => {
            let verdict = match other {
                WebSdkError::PageLoad(_)
                | WebSdkError::BrowserGone(_)
                | WebSdkError::BrowserDied(_)
                | WebSdkError::Closed
                | WebSdkError::Config { .. } => Verdict::CouldNotRun,
                _ => Verdict::NotFixed,
            };
            base(Step::failed(Stage::Creation, verdict, format!("the creation failed: {other}")))
        }
        AttemptError::TimedOut { after } => base(Step::failed(
            Stage::Creation,
            Verdict::NotFixed,
            format!("the creation timed out after {}", seconds(*after)),
        )),
        other => {
            base(Step::failed(Stage::Creation, Verdict::NotFixed, format!("the creation failed: {other}")))
        }
    }
}

/// One line of what the page's requests to `host` got.
fn host_line(host: &HostReach) -> String {
    let via: Vec<&str> = host.via.iter().map(|v| v.as_str()).collect();
    let what = match (host.answered, host.failed) {
        (0, 1) => "no answer to its 1 request".to_owned(),
        (0, failed) => format!("no answer to any of {failed} requests"),
        (answered, 0) => format!("answered {answered} request{}", plural(answered)),
        (answered, failed) => format!("answered {answered}, no answer to {failed}"),
    };
    format!("{}: {what} ({})", host.host, via.join(", "))
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What to do about an agent that never connected, naming the hosts its page could not reach.
fn unreached_remedy(unreached: &[&str]) -> String {
    const WHY: &str = "The SDK created the agent but could not reach the Communication Services \
                       signaling service. That is usually the network between this host and Azure: \
                       a firewall or proxy that blocks outbound HTTPS and WebSockets";
    if unreached.is_empty() {
        format!(
            "{WHY} to *.communication.azure.com, *.skype.com and *.microsoft.com on port 443. No \
             request of the page went unanswered, so the block is on a request the page does not \
             see (the SDK's workers) or after an answer."
        )
    } else {
        format!(
            "{WHY}. This page could not reach {}: let this host reach {} on port 443 (HTTPS and \
             WebSockets).",
            unreached.join(", "),
            if unreached.len() == 1 { "it" } else { "them" }
        )
    }
}

/// What the connect check saw: each agent's initial state and `connectionStateChanged` events,
/// and whether one reached `Connected` within the timeout.
fn connection_step(watches: &[Watch], timeout: Duration) -> Step {
    let Some(last) = watches.last() else {
        return Step::skipped(Stage::Connection, "no agent was created");
    };
    let mut details = Vec::new();
    for (i, w) in watches.iter().enumerate() {
        let first = w.changes.first().map_or(0.0, |c| c.at_ms);
        let changes: Vec<String> = w
            .changes
            .iter()
            .map(|c| {
                let reason = c.reason.as_deref().map_or_else(String::new, |r| format!(" ({r})"));
                format!("+{:.1} s {}{reason}", (c.at_ms - first) / 1000.0, state_name(&c.state))
            })
            .collect();
        details.push(format!(
            "agent {}: created {} after {}; then {}",
            i + 1,
            state_name(&w.initial),
            seconds(w.created_in),
            if changes.is_empty() { "no connectionStateChanged".to_owned() } else { changes.join(", ") }
        ));
    }
    let facts = |step: Step| {
        let agents: Vec<serde_json::Value> = watches
            .iter()
            .map(|w| {
                serde_json::json!({
                    "initial_state": state_name(&w.initial),
                    "created_in_ms": ms(w.created_in),
                    "connected": w.connected,
                    "changes": w.changes.iter().map(|c| serde_json::json!({
                        "state": state_name(&c.state),
                        "reason": c.reason,
                        "at_ms": c.at_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let hosts: Vec<serde_json::Value> = last
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.host,
                    "answered": h.answered,
                    "failed": h.failed,
                    "via": h.via.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        step.fact("connected", last.connected)
            .fact("timeout_ms", ms(timeout))
            .fact("agents", agents)
            .fact("hosts", hosts)
    };
    details.extend(last.hosts.iter().map(host_line));
    let unreached: Vec<&str> = last.hosts.iter().filter(|h| h.unreached()).map(|h| h.host.as_str()).collect();
    let mut step = if last.connected {
        facts(Step::ok(Stage::Connection, format!("Connected within {}", seconds(timeout))))
    } else {
        facts(Step::failed(
            Stage::Connection,
            Verdict::NotFixed,
            format!("no agent reached Connected within {} of its creation", seconds(timeout)),
        ))
        .remedy(unreached_remedy(&unreached))
    };
    step.details = details;
    step
}

/// The agent disposed, the identity deleted if the doctor created it, the browser closed.
async fn disposal_step(
    agent: Option<Agent>,
    sdk: Option<WebSdk>,
    created: Option<(IdentityClient, String)>,
    progress: &dyn Progress,
) -> Step {
    let at = Instant::now();
    progress.waiting("disposing the agent and cleaning up");
    let mut said = Vec::new();
    let mut failed = None;
    match agent {
        Some(agent) => match agent.dispose().await {
            Ok(()) => said.push("agent disposed".to_owned()),
            Err(e) => failed = Some(format!("the agent's dispose() failed: {e}")),
        },
        None => said
            .push("no agent left to dispose (the connect check disposes one that never connects)".to_owned()),
    }
    let mut identity_deleted = None;
    if let Some((client, id)) = created {
        match client.delete_identity(&id).await {
            Ok(()) => {
                said.push(format!("identity {id} deleted"));
                identity_deleted = Some(true);
            }
            Err(e) => {
                failed = Some(format!("could not delete identity {id}, which the doctor created: {e}"));
                identity_deleted = Some(false);
            }
        }
    }
    if let Some(sdk) = sdk {
        sdk.close().await;
        said.push("browser closed".to_owned());
    }
    progress.done();
    let step = match failed {
        None => Step::ok(Stage::Disposal, said.join("; ")),
        Some(why) => Step::failed(Stage::Disposal, Verdict::NotFixed, why).detail(said.join("; ")),
    };
    step.fact("identity_deleted", identity_deleted).took(at.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> AccessToken {
        AccessToken::unsigned(&claims)
    }

    fn in_an_hour() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600
    }

    #[test]
    fn a_good_token_is_described_and_passes() {
        let t = token(serde_json::json!({
            "skypeid": "acs:r_u", "acsScope": "chat,voip", "resourceId": "r", "exp": in_an_hour()
        }));
        let (step, request, go) = token_step(&t, None, AgentKind::Acs);
        assert_eq!(step.status, Status::Ok, "{step:?}");
        assert!(
            step.summary.contains("for 8:acs:r_u, resource r, scopes chat,voip; expires in 60 min"),
            "{}",
            step.summary
        );
        assert!(step.summary.contains(" UTC)"), "{}", step.summary);
        assert_eq!(request.identity, "8:acs:r_u");
        assert!(go.is_ok());
    }

    #[test]
    fn an_expired_token_is_diagnosed_and_not_created_with() {
        let t = token(
            serde_json::json!({"skypeid": "acs:r_u", "acsScope": "voip", "resourceId": "r", "exp": 1_000_000_000}),
        );
        let (step, _, go) = token_step(&t, None, AgentKind::Acs);
        assert_eq!(step.verdict, Some(Verdict::MustFix));
        assert!(
            step.summary.contains("expired") && step.summary.contains("2001-09-09 01:46:40 UTC"),
            "{}",
            step.summary
        );
        assert!(step.remedy.is_some());
        assert!(go.is_err());
    }

    #[test]
    fn a_token_without_voip_fails_the_local_checks_with_the_sdks_subcode() {
        let t = token(
            serde_json::json!({"skypeid": "acs:r_u", "acsScope": "chat", "resourceId": "r", "exp": in_an_hour()}),
        );
        let (step, _, go) = token_step(&t, None, AgentKind::Acs);
        assert_eq!(step.verdict, Some(Verdict::MustFix));
        assert_eq!(step.error.as_ref().map(|e| (e.code, e.sub_code)), Some((401, Some(44113))));
        assert_eq!(step.remedy.as_deref(), catalog::lookup(44113).map(|e| e.remedy));
        assert!(go.is_ok(), "the real SDK is asked too");
    }

    #[test]
    fn a_teams_token_on_an_acs_agent_is_expected_error_40229() {
        let t = token(
            serde_json::json!({"skypeid": "orgid:o", "acsScope": "voip", "tid": "t", "exp": in_an_hour()}),
        );
        let (step, _, _) = token_step(&t, None, AgentKind::Acs);
        assert_eq!(step.error.as_ref().and_then(|e| e.sub_code), Some(40229));
        assert_eq!(step.verdict, Some(Verdict::MustFix));
    }

    #[test]
    fn durations_read_in_words() {
        assert_eq!(in_words(59.0 * 60.0), "59 min");
        assert_eq!(in_words(3.0 * 3600.0 + 300.0), "3 h 5 min");
        assert_eq!(in_words(3.0 * 86_400.0), "3 days");
        assert_eq!(in_words(20.0), "20 s");
    }

    #[test]
    fn a_never_connected_agent_is_the_networks_failure() {
        let watch = Watch {
            created_in: Duration::from_millis(14_200),
            initial: callagent_websdk::ConnectionState::Disconnected,
            changes: vec![],
            connected: false,
            connected_after: None,
            hosts: Vec::new(),
        };
        let step = connection_step(&[watch], Duration::from_secs(5));
        assert_eq!(step.verdict, Some(Verdict::NotFixed));
        assert!(step.remedy.as_deref().unwrap().contains("firewall"));
        assert!(
            step.details[0].contains("created Disconnected after 14.2 s; then no connectionStateChanged"),
            "{:?}",
            step.details
        );
    }

    #[test]
    fn the_remedy_names_the_hosts_the_page_could_not_reach_or_says_it_saw_none() {
        let named = unreached_remedy(&["ecs.communication.microsoft.com", "edge.skype.com"]);
        assert!(
            named.contains("could not reach ecs.communication.microsoft.com, edge.skype.com: let"),
            "{named}"
        );
        assert!(named.contains("them on port 443"), "{named}");
        assert!(unreached_remedy(&["edge.skype.com"]).contains("reach it on port 443"));
        let none = unreached_remedy(&[]);
        assert!(
            none.contains("*.communication.azure.com") && none.contains("No request of the page"),
            "{none}"
        );
    }
}
