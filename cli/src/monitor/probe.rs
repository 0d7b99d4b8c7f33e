//! One probe: a token, an agent created with the real SDK through `retry ▸ connect ▸ preflight ▸
//! the browsers`, `Connected` waited for, the agent disposed; and what it found.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use callagent_retry::connect::{ConnectError, ConnectLayer};
use callagent_retry::preflight::PreflightLayer;
use callagent_retry::remedy::{BoxError, RemedyConfig, RemedyLayer};
use callagent_retry::retry::AttemptError;
use callagent_retry::sdk::{AgentKind, CreateAgentRequest, ErrorCategory};
use callagent_retry::{CallAgentRetryLayer, RetryConfig, RetryError};
use callagent_websdk::{Agent, Browsers, WebSdkError};
use serde::Serialize;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use super::tokens::{TokenFailure, Tokens};
use crate::watch::{Watch, Watched};

/// What a probe found: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeResult {
    /// An agent was created (and reached `Connected`, with the connect check on).
    Success,
    /// An `ExpectedError`: a configuration to fix.
    ExpectedError,
    /// Agents were created but none connected.
    NotConnected,
    /// Any other failure the retries did not fix.
    Failed,
    /// No token could be had.
    TokenError,
    /// The browser was lost during the probe (not an ACS failure).
    BrowserLost,
}

impl ProbeResult {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ExpectedError => "expected_error",
            Self::NotConnected => "not_connected",
            Self::Failed => "failed",
            Self::TokenError => "token_error",
            Self::BrowserLost => "browser_lost",
        }
    }
}

/// One probe's findings, as `/status` shows them (never a token).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// What it found.
    pub result: ProbeResult,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// How long it took, milliseconds.
    pub took_ms: u64,
    /// Creations made.
    pub attempts: u32,
    /// Time to the agent, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_agent_ms: Option<u64>,
    /// Time from the agent to `Connected`, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_connected_ms: Option<u64>,
    /// The SDK's code, when it failed with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The SDK's subcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<u32>,
    /// The failure's category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What happened, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do: the catalog's remedy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// For `not_connected`: the hosts the probe's page sent requests to that never answered, the
    /// ones to let through (hosts only, never a request; the page may be shared with other
    /// identities' probes, and so are its hosts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreached_hosts: Vec<String>,
}

type Stack = BoxCloneSyncService<CreateAgentRequest, Watched, RetryError<ConnectError<WebSdkError>>>;

/// Makes probes over one set of browsers.
#[derive(Clone)]
pub struct Prober {
    stack: Stack,
    log: Arc<Mutex<Vec<Watch>>>,
    tokens: Arc<Tokens>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// Probes through `browsers` with `tokens`; the retry layer resolves its metrics against the
    /// recorder installed now.
    pub fn new(
        browsers: Browsers,
        tokens: Arc<Tokens>,
        attempts: u32,
        connect_timeout: Option<Duration>,
    ) -> Result<Self, callagent_retry::ConfigError> {
        let retry = CallAgentRetryLayer::new(RetryConfig {
            max_attempts: attempts,
            // Each attempt is bounded by the creation and connect timeouts; a probe has no
            // budget to share with other callers.
            deadline: None,
            budget: None,
            ..RetryConfig::default()
        })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let watch_log = Arc::clone(&log);
        // The remedy layer's token refresh: on 44110, 40235 or 44117 (the token could not be
        // had, has expired, cannot be read) a fresh token, then one more call.
        let refresher = Arc::clone(&tokens);
        let remedy = RemedyLayer::builder(&RemedyConfig { refresh_token: true, ..RemedyConfig::default() })
            .token_source(move |identity: String| {
                let tokens = Arc::clone(&refresher);
                async move {
                    tokens.forget(&identity);
                    tokens.token(&identity).await.map_err(|e| Box::new(e) as BoxError)
                }
            })
            .build()?;
        // The order of docs/fixing-expected-errors.md: retry, remedy, preflight, connect, SDK.
        let stack = ServiceBuilder::new()
            .layer(retry)
            .layer(remedy)
            .layer(PreflightLayer::new())
            .layer(ConnectLayer::new(connect_timeout))
            .map_response(move |agent: Agent| Watched { agent, log: Arc::clone(&watch_log) })
            .service(browsers);
        Ok(Self { stack: BoxCloneSyncService::new(stack), log, tokens })
    }

    /// Probes `identity` once.
    pub async fn probe(&self, identity: &str) -> ProbeReport {
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let at = Instant::now();
        let mut report = ProbeReport {
            result: ProbeResult::Failed,
            started_at,
            took_ms: 0,
            attempts: 0,
            time_to_agent_ms: None,
            time_to_connected_ms: None,
            code: None,
            sub_code: None,
            category: None,
            message: None,
            remedy: None,
            unreached_hosts: Vec::new(),
        };
        let token = match self.tokens.token(identity).await {
            Ok(token) => token,
            Err(e) => {
                report.result = ProbeResult::TokenError;
                report.message = Some(token_message(&e));
                report.took_ms = ms(at.elapsed());
                return report;
            }
        };
        // With a token refresher, the SDK (and the preflight) check the token's expiry: an
        // expired token fails as 40235, which the remedy layer fixes with a fresh one.
        let request = CreateAgentRequest {
            token_refresher: true,
            ..CreateAgentRequest::new(identity, token, AgentKind::Acs)
        };
        let before = Watched::read(&self.log).len();
        let result = self.stack.clone().oneshot(request).await;
        report.took_ms = ms(at.elapsed());
        let watches: Vec<Watch> = Watched::read(&self.log).into_iter().skip(before).collect();
        match result {
            Ok(watched) => {
                report.result = ProbeResult::Success;
                report.attempts = u32::try_from(watches.len()).unwrap_or(u32::MAX).max(1);
                report.time_to_agent_ms = Some(ms(watched.agent.creation_time()));
                report.time_to_connected_ms = watches.last().and_then(|w| w.connected_after).map(ms);
                if let Err(e) = watched.agent.dispose().await {
                    tracing::debug!(error = %e, "disposing a probe's agent failed; its page is closed anyway");
                }
            }
            Err(e) => self.failed(identity, &e, &watches, &mut report),
        }
        report
    }

    fn failed(
        &self,
        identity: &str,
        e: &RetryError<ConnectError<WebSdkError>>,
        watches: &[Watch],
        report: &mut ProbeReport,
    ) {
        report.attempts = e.attempts();
        report.remedy = e.remedy().map(str::to_owned);
        report.category = Some(e.category().to_string());
        match e.last_attempt() {
            AttemptError::Service(ConnectError::NotConnected { after }) => {
                report.result = ProbeResult::NotConnected;
                report.time_to_agent_ms = watches.last().map(|w| ms(w.created_in));
                report.unreached_hosts = watches
                    .last()
                    .map(|w| w.hosts.iter().filter(|h| h.unreached()).map(|h| h.host.clone()).collect())
                    .unwrap_or_default();
                let unreached = if report.unreached_hosts.is_empty() {
                    String::new()
                } else {
                    format!("; the page could not reach {}", report.unreached_hosts.join(", "))
                };
                report.message = Some(format!(
                    "agents were created but none reached Connected within {after:?}: usually the network \
                     or a firewall between this host and Azure{unreached}"
                ));
            }
            AttemptError::Service(ConnectError::Service(WebSdkError::Sdk(sdk))) => {
                report.result = if e.category() == ErrorCategory::ExpectedError {
                    ProbeResult::ExpectedError
                } else {
                    ProbeResult::Failed
                };
                report.code = Some(sdk.code());
                report.sub_code = sdk.has_sub_code().then(|| sdk.sub_code());
                report.message = Some(sdk.message().to_owned());
                // A token the SDK refused (expired, unreadable, invalid) is replaced next time.
                if sdk.code() == 401 {
                    self.tokens.forget(identity);
                }
            }
            AttemptError::Service(ConnectError::Service(
                other @ (WebSdkError::BrowserDied(_)
                | WebSdkError::BrowserGone(_)
                | WebSdkError::NoBrowser(_)),
            )) => {
                report.result = ProbeResult::BrowserLost;
                report.message = Some(other.to_string());
                report.remedy = Some(
                    "The browser was lost mid-probe; it is being started again. Not an ACS failure.".into(),
                );
            }
            other => {
                report.result = ProbeResult::Failed;
                report.message = Some(other.to_string());
            }
        }
    }
}

fn token_message(e: &TokenFailure) -> String {
    format!("no token: {e}")
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
