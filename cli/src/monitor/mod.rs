//! `callagent monitor`: a synthetic monitor of call-agent creation.
//!
//! Every `interval`, each identity is probed once (`probe.rs`): a token (`tokens.rs`), an agent
//! created with the real SDK through the retry, remedy, preflight and connect-check layers, its
//! `Connected` waited for, the agent disposed. The identities' probes are spread over the
//! interval, never in a burst, and one identity has at most one probe in flight, so the monitor
//! never holds more agents than it has identities. What the probes find is served on one
//! address (`http.rs`): the layer's per-subcode series and the monitor's own ([`metrics`]), and
//! the last probe per identity. SIGTERM or SIGINT ends it: probes in flight are dropped (their
//! agents disposed), the identities it created deleted, the browsers closed. A reload (SIGHUP:
//! the file read again and sent to [`run`]) applies a new interval, attempts, connect and
//! shutdown timeouts from each identity's next probe; a bad file, or one that changes what is set
//! up at start ([`MonitorConfig::needs_restart`]), is rejected and the monitor runs on as before.

pub mod config;
mod http;
pub mod metrics;
mod probe;
mod tokens;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callagent_websdk::{Browsers, DnsBrowsers, NO_EXTERNAL_HOSTS, RemoteBrowser, WebSdkConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use config::{ConfigError, MonitorConfig, TokenSourceKind};
pub use probe::{ProbeReport, ProbeResult};
pub use tokens::EndpointError;

use crate::identity::{ConnectionString, IdentityClient, Scope};
use probe::Prober;
use tokens::Tokens;

/// Why the monitor could not start (after the config was found good).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The connection string could not be read.
    #[error("the connection string: {0}")]
    ConnectionString(#[from] crate::identity::ConnectionStringError),
    /// The identity API refused.
    #[error("the identity API: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    /// No browser.
    #[error("the browsers: {0}")]
    Browsers(#[from] callagent_websdk::WebSdkError),
    /// The address is taken, or the metrics recorder could not be installed.
    #[error("{0}")]
    Serve(String),
}

/// `/status`: the last probe per identity.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The probe interval, seconds.
    pub interval_s: u64,
    /// Per identity, in the config's order.
    pub identities: Vec<IdentityStatus>,
}

/// One identity's probes.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityStatus {
    /// The identity (`8:acs:…`).
    pub identity: String,
    /// Probes made.
    pub probes: u64,
    /// The last probe, once one ended.
    pub last: Option<ProbeReport>,
    /// When the last successful probe started, RFC 3339.
    pub last_success_at: Option<String>,
}

/// Why a reload was not applied; the monitor runs on as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file is not a good config.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// It changes what is set up at start.
    #[error("`{field}` changed: that takes a restart")]
    NeedsRestart {
        /// The field (or section).
        field: &'static str,
    },
    /// The retry layer refused the new settings.
    #[error("the retry layer: {0}")]
    Retry(#[from] callagent_retry::ConfigError),
    /// The token endpoint's header value file (or CA file) could not be read again.
    #[error("the token endpoint: {0}")]
    TokenEndpoint(#[from] tokens::EndpointError),
}

/// What a reload can change while the probes run: each probe loop reads it before each probe.
#[derive(Debug, Clone)]
struct Live {
    prober: Prober,
    interval: Duration,
}

/// Runs until `shutdown` resolves, then stops within `shutdown_timeout`; applies each config
/// that `reloads` sends (SIGHUP's: the file read again) that it can.
pub async fn run(
    config: MonitorConfig,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Result<MonitorConfig, ConfigError>>,
) -> Result<(), StartError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("callagent_monitor_".into()), metrics::BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(callagent_websdk::PAGE_LOAD.into()),
                callagent_websdk::PAGE_LOAD_BUCKETS,
            )
        })
        .map_err(|e| StartError::Serve(format!("the metrics recorder: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder)
        .map_err(|e| StartError::Serve(format!("the metrics recorder: {e}")))?;

    let client = match config.token.source {
        TokenSourceKind::ConnectionString => {
            let connection = match &config.token.connection_string_file {
                Some(path) => ConnectionString::from_file(path)?,
                None => ConnectionString::from_env()?,
            };
            let mut builder = IdentityClient::builder(connection);
            if let Some(ca) = &config.token.ca_file {
                builder = builder.ca_file(ca.clone());
            }
            Some(Arc::new(builder.build()?))
        }
        TokenSourceKind::Command | TokenSourceKind::Endpoint => None,
    };
    // Before the first token is minted: the counters start at zero.
    metrics::register(&[], config.token.source.label());
    let tokens = Arc::new(Tokens::new(&config.token, client.clone()));
    let mut created = Vec::new();
    let identities = match config.identities.create {
        Some(n) => {
            let client = client.as_ref().expect("validated: creating identities needs the connection string");
            for _ in 0..n {
                match client.create_identity_with_token(&[Scope::Voip], config.token.lifetime).await {
                    Ok(identity) => {
                        tokens.keep(&identity.id, identity.token, identity.expires_on);
                        created.push(identity.id);
                    }
                    Err(e) => {
                        delete_identities(client, &created).await;
                        return Err(e.into());
                    }
                }
            }
            created.clone()
        }
        None => config.identities.list.clone(),
    };
    let delete_on_exit = config.identities.delete_on_exit;
    let delete_created = || async {
        if delete_on_exit && let Some(client) = &client {
            delete_identities(client, &created).await;
        }
    };

    let launched = match &config.browser.dns {
        Some(name) => Browsers::discover(dns_browsers(&config, name, identities.len())).await,
        None => Browsers::launch(browser_configs(&config, identities.len())).await,
    };
    let browsers = match launched {
        Ok(b) => b,
        Err(e) => {
            delete_created().await;
            return Err(e.into());
        }
    };
    let prober =
        match Prober::new(browsers.clone(), Arc::clone(&tokens), config.attempts, config.connect_timeout) {
            Ok(p) => p,
            Err(e) => {
                browsers.close().await;
                delete_created().await;
                return Err(StartError::Serve(format!("the retry layer: {e}")));
            }
        };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            browsers.close().await;
            delete_created().await;
            return Err(StartError::Serve(format!("cannot listen on {}: {e}", config.listen)));
        }
    };
    metrics::register(&identities, config.token.source.label());
    ::metrics::gauge!(metrics::INTERVAL).set(config.interval.as_secs_f64());
    ::metrics::gauge!(metrics::IDENTITIES).set(identities.len() as f64);
    let status = Arc::new(Mutex::new(Status {
        interval_s: config.interval.as_secs(),
        identities: identities
            .iter()
            .map(|id| IdentityStatus { identity: id.clone(), probes: 0, last: None, last_success_at: None })
            .collect(),
    }));
    let (stop, stopped) = watch::channel(false);
    let endpoints = Arc::new(http::Endpoints {
        metrics: handle,
        status: Arc::clone(&status),
        browsers: browsers.clone(),
    });
    let server = tokio::spawn(http::serve(listener, endpoints, stopped.clone()));
    tracing::info!(identities = identities.len(), interval = ?config.interval, listen = %config.listen, "monitor started");

    let mut probes = tokio::task::JoinSet::new();
    let n = identities.len();
    let (live, watching) = watch::channel(Live { prober, interval: config.interval });
    for (i, identity) in identities.iter().enumerate() {
        let offset = spread(config.interval, i, n);
        let (live, status, stopped) = (watching.clone(), Arc::clone(&status), stopped.clone());
        probes.spawn(probe_loop(identity.clone(), i, offset, live, status, stopped));
    }

    let mut config = config;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(read) = reloads.recv() => match reload(&config, read, &browsers, &tokens) {
                Ok((new, prober)) => {
                    tracing::info!(interval = ?new.interval, attempts = new.attempts, "config reloaded");
                    live.send_replace(Live { prober, interval: new.interval });
                    status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).interval_s =
                        new.interval.as_secs();
                    ::metrics::gauge!(metrics::INTERVAL).set(new.interval.as_secs_f64());
                    ::metrics::counter!(metrics::CONFIG_RELOADS, "result" => "applied").increment(1);
                    ::metrics::gauge!(metrics::CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
                    config = new;
                }
                Err(e) => {
                    tracing::error!("config reload rejected, running on as before: {e}");
                    ::metrics::counter!(metrics::CONFIG_RELOADS, "result" => "rejected").increment(1);
                    ::metrics::gauge!(metrics::CONFIG_LAST_RELOAD_SUCCESSFUL).set(0.0);
                }
            },
        }
    }
    tracing::info!("monitor stopping");
    let _ = stop.send(true);
    // All of it within `shutdown_timeout`: half for the probes in flight, which are dropped
    // where they wait (their agents disposed as they go), the rest for the browsers and the
    // identities.
    let deadline = Instant::now() + config.shutdown_timeout;
    let probes_end = Instant::now() + config.shutdown_timeout / 2;
    let ended = tokio::time::timeout_at(probes_end, async { while probes.join_next().await.is_some() {} });
    if ended.await.is_err() {
        probes.abort_all();
    }
    let cleanup = async {
        browsers.close().await;
        delete_created().await;
    };
    if tokio::time::timeout_at(deadline, cleanup).await.is_err() {
        tracing::warn!(timeout = ?config.shutdown_timeout, "the browsers or the identity API did not finish in time");
    }
    server.abort();
    tracing::info!("monitor stopped");
    Ok(())
}

/// What a reload applies: `read` checked against `current` (only what the probe loops read may
/// change), a prober with its settings, and the token endpoint's files read again.
fn reload(
    current: &MonitorConfig,
    read: Result<MonitorConfig, ConfigError>,
    browsers: &Browsers,
    tokens: &Arc<Tokens>,
) -> Result<(MonitorConfig, Prober), ReloadError> {
    let new = read?;
    if let Some(field) = current.needs_restart(&new) {
        return Err(ReloadError::NeedsRestart { field });
    }
    let prober = Prober::new(browsers.clone(), Arc::clone(tokens), new.attempts, new.connect_timeout)?;
    tokens.reread(&new.token)?;
    Ok((new, prober))
}

/// The browsers' configs: one local Chromium, or one per remote endpoint.
fn browser_configs(config: &MonitorConfig, identities: usize) -> Vec<WebSdkConfig> {
    let defaults = WebSdkConfig::default();
    let base = WebSdkConfig {
        // Each identity has at most one probe in flight.
        max_agents: identities.max(1),
        create_timeout: config.create_timeout,
        host_resolver_rules: config.browser.no_external_hosts.then(|| NO_EXTERNAL_HOSTS.to_owned()),
        page_dir: config.browser.page_dir.clone().unwrap_or(defaults.page_dir),
        chromium: config.browser.chromium.clone().unwrap_or(defaults.chromium),
        ..WebSdkConfig::default()
    };
    if config.browser.remote.is_empty() {
        return vec![base];
    }
    config
        .browser
        .remote
        .iter()
        .enumerate()
        .map(|(i, endpoint)| WebSdkConfig {
            name: format!("remote-{i}"),
            remote: Some(RemoteBrowser::new(endpoint.clone())),
            ..base.clone()
        })
        .collect()
}

/// The browsers `name` resolves to, each a remote browser of the same settings.
fn dns_browsers(config: &MonitorConfig, name: &str, identities: usize) -> DnsBrowsers {
    let remote = if config.browser.dns_tls {
        RemoteBrowser::each_address_over_tls()
    } else {
        RemoteBrowser::each_address()
    };
    let template = WebSdkConfig { remote: Some(remote), ..browser_configs(config, identities).remove(0) };
    DnsBrowsers::new(name, template)
}

/// Where identity `i` of `n` first probes: its share of the interval, plus a jitter within it, so
/// probes never come in a burst.
fn spread(interval: Duration, i: usize, n: usize) -> Duration {
    let share = interval / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let jitter = share.mul_f64(rand::random::<f64>() * 0.5);
    share * u32::try_from(i).unwrap_or(u32::MAX) + jitter
}

async fn probe_loop(
    identity: String,
    index: usize,
    offset: Duration,
    mut live: watch::Receiver<Live>,
    status: Arc<Mutex<Status>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = Instant::now() + offset;
    // When the last probe was due: a reloaded interval counts from there.
    let mut last_due: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            Ok(()) = live.changed() => {
                if let Some(due) = last_due {
                    next = (due + live.borrow().interval).max(Instant::now());
                }
                continue;
            }
            _ = stopped.wait_for(|s| *s) => return,
        }
        let Live { prober, interval } = live.borrow_and_update().clone();
        ::metrics::gauge!(metrics::AGENTS_HELD).increment(1.0);
        let report = tokio::select! {
            report = prober.probe(&identity) => Some(report),
            _ = stopped.wait_for(|s| *s) => None,
        };
        ::metrics::gauge!(metrics::AGENTS_HELD).decrement(1.0);
        let Some(report) = report else { return };
        record(&identity, index, report, &status);
        // The next probe one interval after this one was due; a probe that ran past it starts the
        // next at once, never two at a time.
        last_due = Some(next);
        next = (next + interval).max(Instant::now());
    }
}

fn record(identity: &str, index: usize, report: ProbeReport, status: &Mutex<Status>) {
    let label = report.result.label();
    tracing::info!(identity, result = label, took_ms = report.took_ms, sub_code = report.sub_code, "probe");
    ::metrics::counter!(metrics::PROBES, "identity" => identity.to_owned(), "result" => label).increment(1);
    if let Some(ms) = report.time_to_agent_ms {
        ::metrics::histogram!(metrics::TIME_TO_AGENT).record(ms as f64 / 1000.0);
    }
    if let Some(ms) = report.time_to_connected_ms {
        ::metrics::histogram!(metrics::TIME_TO_CONNECTED).record(ms as f64 / 1000.0);
    }
    let mut status = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(entry) = status.identities.get_mut(index) else { return };
    entry.probes += 1;
    if report.result == ProbeResult::Success {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        ::metrics::gauge!(metrics::LAST_SUCCESS, "identity" => identity.to_owned()).set(now);
        entry.last_success_at = Some(report.started_at.clone());
    }
    entry.last = Some(report);
}

async fn delete_identities(client: &IdentityClient, ids: &[String]) {
    for id in ids {
        match client.delete_identity(id).await {
            Ok(()) => tracing::info!(identity = %id, "identity deleted"),
            Err(e) => {
                tracing::warn!(identity = %id, error = %e, "could not delete an identity the monitor created")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_spread_over_the_interval() {
        let interval = Duration::from_secs(60);
        for i in 0..4 {
            let at = spread(interval, i, 4);
            assert!(at >= Duration::from_secs(15 * i as u64), "{i}: {at:?}");
            assert!(at < Duration::from_secs(15 * i as u64 + 8), "{i}: {at:?}");
        }
    }
}
