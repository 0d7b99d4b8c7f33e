//! `monitor.toml`: what the monitor probes, how often, with which tokens and browsers. Every field
//! is checked before anything starts; a bad one is named ([`ConfigError`]), and the process
//! exits 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::tokens::endpoint;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` and `/status` are served.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How often each identity is probed; probes are spread over it.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Creations the retry layer may make per probe.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// How long a created agent has to reach `Connected`; `"off"`: a created agent is a success.
    #[serde(default = "default_connect_timeout", with = "off_or_duration")]
    pub connect_timeout: Option<Duration>,
    /// How long one creation may take.
    #[serde(default = "default_create_timeout", with = "humantime_serde")]
    pub create_timeout: Duration,
    /// How long SIGTERM may take: probes in flight are ended, agents disposed, identities the
    /// monitor created deleted, browsers closed.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Which identities.
    pub identities: IdentitiesConfig,
    /// Where their tokens come from.
    pub token: TokenConfig,
    /// Which browsers.
    #[serde(default)]
    pub browser: BrowserConfig,
}

impl MonitorConfig {
    /// The first field of `new` that a reload (SIGHUP) cannot apply, if `new` changes one: a
    /// reload applies `interval`, `attempts`, `connect_timeout` and `shutdown_timeout`; the
    /// address, the creation timeout, the identities, the token source and the browsers are set
    /// up once, at start.
    pub fn needs_restart(&self, new: &Self) -> Option<&'static str> {
        [
            ("listen", self.listen != new.listen),
            ("create_timeout", self.create_timeout != new.create_timeout),
            ("identities", self.identities != new.identities),
            ("token", self.token != new.token),
            ("browser", self.browser != new.browser),
        ]
        .into_iter()
        .find_map(|(field, changed)| changed.then_some(field))
    }
}

/// `[identities]`: created in the resource at start (`create`), or listed (`list`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitiesConfig {
    /// Identities to create at start and reuse (needs the connection string).
    pub create: Option<u32>,
    /// Identities to probe (`8:acs:…`).
    #[serde(default)]
    pub list: Vec<String>,
    /// Delete the identities the monitor created when it stops.
    #[serde(default = "yes")]
    pub delete_on_exit: bool,
}

/// Where tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSourceKind {
    /// Minted with the resource's connection string (the identity API).
    ConnectionString,
    /// A command the user names, run per token (as kubectl's credential plugins are).
    Command,
    /// The user's own token endpoint: an HTTP GET with a header, answering
    /// `{"token": …, "expiresOn": …}`.
    Endpoint,
}

impl TokenSourceKind {
    /// The `source` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectionString => "connection_string",
            Self::Command => "command",
            Self::Endpoint => "endpoint",
        }
    }
}

/// `[token]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `connection_string`, `command` or `endpoint`.
    pub source: TokenSourceKind,
    /// A file holding the connection string (else `ACS_CONNECTION_STRING`).
    pub connection_string_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) for the identity API or the token endpoint.
    pub ca_file: Option<PathBuf>,
    /// The token endpoint's URL (`https://…`; plain `http://` to loopback only); `{identity}` is
    /// replaced by the identity, percent-encoded. It answers a GET with
    /// `{"token": …, "expiresOn": RFC 3339}` (without `expiresOn`, the token's `exp` counts).
    pub url: Option<String>,
    /// The header sent to the token endpoint.
    #[serde(default = "default_header_name")]
    pub header_name: String,
    /// A file holding that header's value (a secret: never in this file or on a command line).
    /// Read at start; surrounding whitespace is trimmed.
    pub header_value_file: Option<PathBuf>,
    /// How long one request to the token endpoint may take, connection included.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How many times a 429 or 503 from the token endpoint is retried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The longest wait before such a retry: a longer `Retry-After` ends the fetch at once.
    #[serde(default = "default_max_retry_wait", with = "humantime_serde")]
    pub max_retry_wait: Duration,
    /// The command and its arguments; `{identity}` in an argument is replaced by the identity.
    /// It prints the token, or `{"token": …, "expiresOn": …}`, on stdout.
    #[serde(default)]
    pub command: Vec<String>,
    /// How long a minted token lives (the identity API takes 1 h to 24 h).
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
    /// A token is replaced when it has less than this left.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
    /// How long the command may run.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
}

/// `[browser]`: local by default, a list of remote DevTools endpoints, or a DNS name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserConfig {
    /// The Chromium binary, for a local browser (default: Debian's).
    pub chromium: Option<PathBuf>,
    /// The built page (`websdk/page/build.sh`).
    pub page_dir: Option<PathBuf>,
    /// Remote browsers' DevTools endpoints (`wss://HOST:PORT`), instead of a local one.
    #[serde(default)]
    pub remote: Vec<String>,
    /// The browsers a name resolves to (`HOST:PORT`, e.g. a Kubernetes headless Service's name),
    /// found again as the name's records change (websdk's `DnsBrowsers`), instead of a list.
    pub dns: Option<String>,
    /// With `dns`: reach each browser over TLS (`https://NAME`, connected by address, the
    /// certificate checked for the name) instead of plain `http://ADDRESS`.
    #[serde(default)]
    pub dns_tls: bool,
    /// Map every host but loopback away in the browser (tests in an isolated network).
    #[serde(default)]
    pub no_external_hosts: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_attempts() -> u32 {
    2
}
#[allow(clippy::unnecessary_wraps)] // serde's default for an Option field
fn default_connect_timeout() -> Option<Duration> {
    Some(Duration::from_secs(10))
}
fn default_create_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_refresh_before() -> Duration {
    Duration::from_secs(600)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_name() -> String {
    "Authorization".into()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_retries() -> u32 {
    2
}
fn default_max_retry_wait() -> Duration {
    Duration::from_secs(30)
}
fn yes() -> bool {
    true
}

mod off_or_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        if text == "off" {
            return Ok(None);
        }
        humantime::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// A field that is not right, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("monitor config: `{field}` {reason}")]
pub struct ConfigError {
    /// The field, dotted (`token.lifetime`); `file` for the file as a whole.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn invalid<T>(field: &str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError { field: field.to_owned(), reason: reason.into() })
}

impl MonitorConfig {
    /// Reads and checks `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            field: "file".into(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks a config's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            // toml names the key it refused; say which, without the file's other text.
            ConfigError { field: "file".into(), reason: e.message().to_owned() }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(Duration::from_secs(5)..=Duration::from_secs(24 * 3600)).contains(&self.interval) {
            return invalid("interval", "must be from 5s to 24h");
        }
        if !(1..=10).contains(&self.attempts) {
            return invalid("attempts", "must be from 1 to 10");
        }
        if let Some(t) = self.connect_timeout
            && !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&t)
        {
            return invalid("connect_timeout", "must be from 100ms to 10m, or \"off\"");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.create_timeout) {
            return invalid("create_timeout", "must be from 1s to 10m");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.shutdown_timeout) {
            return invalid("shutdown_timeout", "must be from 1s to 10m");
        }
        let ids = &self.identities;
        match (ids.create, ids.list.is_empty()) {
            (Some(_), false) => return invalid("identities", "give `create` or `list`, not both"),
            (None, true) => return invalid("identities", "give `create = N` or `list = [\"8:acs:…\"]`"),
            (Some(n), true) if !(1..=1000).contains(&n) => {
                return invalid("identities.create", "must be from 1 to 1000");
            }
            _ => {}
        }
        for (i, id) in ids.list.iter().enumerate() {
            if !id.starts_with("8:") || id.len() > 256 || id.chars().any(char::is_control) {
                return invalid(
                    &format!("identities.list[{i}]"),
                    "must be a Communication Services identity, 8:acs:…",
                );
            }
        }
        let token = &self.token;
        if !(Duration::from_secs(3600)..=Duration::from_secs(24 * 3600)).contains(&token.lifetime) {
            return invalid("token.lifetime", "must be from 1h to 24h (what the identity API issues)");
        }
        if token.refresh_before >= token.lifetime {
            return invalid("token.refresh_before", "must be less than `token.lifetime`");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&token.command_timeout) {
            return invalid("token.command_timeout", "must be from 1s to 5m");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&token.request_timeout) {
            return invalid("token.request_timeout", "must be from 1s to 5m");
        }
        if token.max_retries > 10 {
            return invalid("token.max_retries", "must be from 0 to 10");
        }
        if token.max_retry_wait > Duration::from_secs(600) {
            return invalid("token.max_retry_wait", "must be at most 10m");
        }
        if let Some(ca) = &token.ca_file
            && let Err(e) = crate::transport::load_ca_file(ca)
        {
            return invalid("token.ca_file", e);
        }
        if token.source != TokenSourceKind::Command && !token.command.is_empty() {
            return invalid("token.command", "is for `source = \"command\"`");
        }
        if token.source != TokenSourceKind::Endpoint {
            if token.url.is_some() {
                return invalid("token.url", "is for `source = \"endpoint\"`");
            }
            if token.header_value_file.is_some() {
                return invalid("token.header_value_file", "is for `source = \"endpoint\"`");
            }
        }
        match token.source {
            TokenSourceKind::ConnectionString => {}
            TokenSourceKind::Endpoint => {
                let Some(url) = &token.url else {
                    return invalid("token.url", "must be the token endpoint's: \"https://…/{identity}\"");
                };
                if let Err(e) = endpoint::check_url(url) {
                    return invalid("token.url", e);
                }
                if self.identity_count() > 1 && !url.contains(endpoint::PLACEHOLDER) {
                    return invalid(
                        "token.url",
                        "must contain `{identity}`: each identity needs its own token",
                    );
                }
                if let Err(e) = endpoint::check_header_name(&token.header_name) {
                    return invalid("token.header_name", e);
                }
                let Some(file) = &token.header_value_file else {
                    return invalid(
                        "token.header_value_file",
                        "must name the file holding the header's value (a secret: not in this file)",
                    );
                };
                // Read now, so a missing or unreadable file stops the monitor before it starts
                // (and `--check` says so); the value is wiped at once.
                if let Err(e) = endpoint::read_header_value(file) {
                    return invalid("token.header_value_file", e);
                }
                if ids.create.is_some() {
                    return invalid("identities.create", "needs `token.source = \"connection_string\"`");
                }
            }
            TokenSourceKind::Command => {
                if token.command.is_empty() {
                    return invalid(
                        "token.command",
                        "must name the command: [\"/path/to/program\", \"{identity}\"]",
                    );
                }
                if ids.create.is_some() {
                    return invalid("identities.create", "needs `token.source = \"connection_string\"`");
                }
            }
        }
        if self.browser.chromium.is_some() && !self.browser.remote.is_empty() {
            return invalid("browser.chromium", "is for a local browser; `browser.remote` is set");
        }
        if let Some(dns) = &self.browser.dns {
            if !self.browser.remote.is_empty() {
                return invalid("browser.dns", "give `dns` or `remote`, not both");
            }
            if self.browser.chromium.is_some() {
                return invalid("browser.chromium", "is for a local browser; `browser.dns` is set");
            }
            let port = dns.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) || dns.contains('/') {
                return invalid(
                    "browser.dns",
                    "must be HOST:PORT, e.g. chromium.bots.svc.cluster.local:9443",
                );
            }
        } else if self.browser.dns_tls {
            return invalid("browser.dns_tls", "goes with `browser.dns`");
        }
        for (i, endpoint) in self.browser.remote.iter().enumerate() {
            let remote = callagent_websdk::RemoteBrowser::new(endpoint.clone());
            let config = callagent_websdk::WebSdkConfig { remote: Some(remote), ..Default::default() };
            if let Err(e) = config.validate() {
                return invalid(&format!("browser.remote[{i}]"), e.to_string());
            }
        }
        Ok(())
    }

    /// The identities to probe: as many as `create`, or the list.
    pub fn identity_count(&self) -> usize {
        self.identities.create.map_or(self.identities.list.len(), |n| n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[identities]\ncreate = 2\n[token]\nsource = \"connection_string\"\n";

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = MonitorConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.identity_count(), 2);
        assert!(c.identities.delete_on_exit);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            ("interval = \"1s\"\n", "interval"),
            ("attempts = 0\n", "attempts"),
            ("connect_timeout = \"never\"\n", "file"),
            ("connect_timeout = \"20m\"\n", "connect_timeout"),
            ("listen = \"nowhere\"\n", "file"),
            ("surprise = 1\n", "file"),
            ("attempts = 11\n", "attempts"),
            ("create_timeout = \"0s\"\n", "create_timeout"),
            ("create_timeout = \"11m\"\n", "create_timeout"),
            ("shutdown_timeout = \"0s\"\n", "shutdown_timeout"),
        ];
        for (line, field) in cases {
            let err = MonitorConfig::from_toml(&format!("{line}{MINIMAL}")).unwrap_err();
            assert_eq!(err.field, field, "{line}: {err}");
        }
        let token = |extra: &str| {
            format!("[identities]\ncreate = 1\n[token]\nsource = \"connection_string\"\n{extra}")
        };
        let err = MonitorConfig::from_toml(&token("lifetime = \"10m\"\n")).unwrap_err();
        assert_eq!(err.field, "token.lifetime");
        let err = MonitorConfig::from_toml(&token("refresh_before = \"2h\"\n")).unwrap_err();
        assert_eq!(err.field, "token.refresh_before");
        let err = MonitorConfig::from_toml(
            "[identities]\ncreate = 1\nlist = [\"8:acs:x\"]\n[token]\nsource = \"connection_string\"\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "identities");
        let err = MonitorConfig::from_toml(
            "[identities]\nlist = [\"alice\"]\n[token]\nsource = \"connection_string\"\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "identities.list[0]");
        let identities =
            |ids: &str| format!("[identities]\n{ids}\n[token]\nsource = \"connection_string\"\n");
        let long = format!("list = [\"8:acs:{}\"]", "x".repeat(260));
        for (ids, field) in [
            ("", "identities"),
            ("create = 0", "identities.create"),
            ("create = 1001", "identities.create"),
            (long.as_str(), "identities.list[0]"),
            ("list = [\"8:acs:x\\ny\"]", "identities.list[0]"),
        ] {
            let err = MonitorConfig::from_toml(&identities(ids)).unwrap_err();
            assert_eq!(err.field, field, "{ids}: {err}");
        }
        let err = MonitorConfig::from_toml(&token("command_timeout = \"0s\"\n")).unwrap_err();
        assert_eq!(err.field, "token.command_timeout");
        let err = MonitorConfig::from_toml(
            "[identities]\ncreate = 1\n[token]\nsource = \"command\"\ncommand = [\"get-token\"]\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "identities.create", "a command cannot create identities");
        for browser in [
            "chromium = \"/c\"\nremote = [\"http://127.0.0.1:9222\"]\n",
            "chromium = \"/c\"\ndns = \"c:9443\"\n",
        ] {
            let err = MonitorConfig::from_toml(&format!("{MINIMAL}[browser]\n{browser}")).unwrap_err();
            assert_eq!(err.field, "browser.chromium", "{browser}: {err}");
        }
        let err =
            MonitorConfig::from_toml("[identities]\nlist = [\"8:acs:x\"]\n[token]\nsource = \"command\"\n")
                .unwrap_err();
        assert_eq!(err.field, "token.command");
        let err =
            MonitorConfig::from_toml(&format!("{MINIMAL}[browser]\nremote = [\"ftp://x\"]\n")).unwrap_err();
        assert_eq!(err.field, "browser.remote[0]");
        for (browser, field) in [
            ("dns = \"chromium\"\n", "browser.dns"),
            ("dns = \"https://chromium:9443\"\n", "browser.dns"),
            ("dns = \"c:9443\"\nremote = [\"http://127.0.0.1:9222\"]\n", "browser.dns"),
            ("dns_tls = true\n", "browser.dns_tls"),
        ] {
            let err = MonitorConfig::from_toml(&format!("{MINIMAL}[browser]\n{browser}")).unwrap_err();
            assert_eq!(err.field, field, "{browser}: {err}");
        }
        MonitorConfig::from_toml(&format!(
            "{MINIMAL}[browser]\ndns = \"chromium.bots.svc:9443\"\ndns_tls = true\n"
        ))
        .expect("a DNS name and TLS");
    }

    #[test]
    fn the_endpoint_source_and_its_fields_are_checked() {
        let dir = std::env::temp_dir().join(format!("callagent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let value = dir.join("value");
        std::fs::write(&value, "Bearer s3cr3t-value\n").unwrap();
        let endpoint = |ids: &str, extra: &str| {
            format!(
                "[identities]\n{ids}\n[token]\nsource = \"endpoint\"\n\
                 url = \"https://tokens.example/acs/{{identity}}\"\nheader_value_file = \"{}\"\n{extra}",
                value.display()
            )
        };
        let two = "list = [\"8:acs:a\", \"8:acs:b\"]";
        let c = MonitorConfig::from_toml(&endpoint(two, "")).unwrap();
        assert_eq!(c.token.source.label(), "endpoint");
        assert_eq!(c.token.header_name, "Authorization");
        assert_eq!(c.token.request_timeout, Duration::from_secs(10));
        assert_eq!((c.token.max_retries, c.token.max_retry_wait), (2, Duration::from_secs(30)));
        assert!(!format!("{c:?}").contains("s3cr3t"), "the config holds the file's name only");
        let loopback = endpoint(two, "").replace("https://tokens.example", "http://127.0.0.1:8080");
        MonitorConfig::from_toml(&loopback).unwrap();

        let cases = [
            (endpoint(two, "").replace("https://tokens.example", "http://tokens.example"), "token.url"),
            (endpoint(two, "").replace("/acs/{identity}", "/acs"), "token.url"),
            (endpoint(two, "").replace("url = ", "nourl = "), "file"),
            (endpoint(two, "").replace("url = \"https://tokens.example/acs/{identity}\"\n", ""), "token.url"),
            (endpoint(two, "header_name = \"Bad Name\"\n"), "token.header_name"),
            (endpoint(two, "header_name = \"Host\"\n"), "token.header_name"),
            (endpoint(two, "").replace("value\"", "missing\""), "token.header_value_file"),
            (
                endpoint(two, "").replace(&format!("header_value_file = \"{}\"\n", value.display()), ""),
                "token.header_value_file",
            ),
            (endpoint(two, "request_timeout = \"0s\"\n"), "token.request_timeout"),
            (endpoint(two, "max_retries = 11\n"), "token.max_retries"),
            (endpoint(two, "max_retry_wait = \"1h\"\n"), "token.max_retry_wait"),
            (endpoint(two, "ca_file = \"/nonexistent/ca.pem\"\n"), "token.ca_file"),
            (endpoint(two, "command = [\"x\"]\n"), "token.command"),
            (endpoint("create = 2", ""), "identities.create"),
            (format!("{MINIMAL}url = \"https://tokens.example/\"\n"), "token.url"),
            (format!("{MINIMAL}header_value_file = \"{}\"\n", value.display()), "token.header_value_file"),
        ];
        for (text, field) in cases {
            let err = MonitorConfig::from_toml(&text).unwrap_err();
            assert_eq!(err.field, field, "{text}\n{err}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
        // One identity needs no `{identity}` in the URL.
        MonitorConfig::from_toml(&endpoint("list = [\"8:acs:a\"]", "").replace("/acs/{identity}", "/acs"))
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_connect_check_can_be_off() {
        let c = MonitorConfig::from_toml(&format!("connect_timeout = \"off\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.connect_timeout, None);
    }

    #[test]
    fn a_reload_may_change_the_schedule_and_checks_but_not_what_is_set_up_at_start() {
        let current: MonitorConfig = toml::from_str(
            "interval = \"60s\"\n[identities]\nlist = [\"8:acs:r_1\"]\n\
             [token]\nsource = \"command\"\ncommand = [\"t\", \"{identity}\"]\n",
        )
        .unwrap();
        assert_eq!(current.needs_restart(&current), None);
        let mut live = current.clone();
        live.interval = Duration::from_secs(30);
        live.attempts = 3;
        live.connect_timeout = None;
        live.shutdown_timeout = Duration::from_secs(5);
        assert_eq!(current.needs_restart(&live), None);
        type Change = fn(&mut MonitorConfig);
        let changes: [(&str, Change); 5] = [
            ("listen", |c| c.listen = "127.0.0.1:1".parse().unwrap()),
            ("create_timeout", |c| c.create_timeout = Duration::from_secs(1)),
            ("identities", |c| c.identities.list.push("8:acs:r_2".into())),
            ("token", |c| c.token.command_timeout = Duration::from_secs(1)),
            ("browser", |c| c.browser.no_external_hosts = !c.browser.no_external_hosts),
        ];
        for (field, change) in changes {
            let mut new = live.clone();
            change(&mut new);
            assert_eq!(current.needs_restart(&new), Some(field));
        }
    }
}
