//! [`WebSdkConfig`]: how to run the browser and the SDK, and how much of the machine to use.
//!
//! Over 500 lines: every setting with its documentation and validation; over 200 lines are its
//! tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{WebSdkError, human};
use crate::remote::{Endpoint, EndpointError, Secret};

/// Host resolver rules that send every name but `localhost` nowhere: with them Chromium can
/// reach only this machine's own server, whatever the SDK tries.
pub const NO_EXTERNAL_HOSTS: &str = "MAP * ~NOTFOUND , EXCLUDE localhost";

/// How to run the browser and the SDK.
#[derive(Debug, Clone)]
pub struct WebSdkConfig {
    /// This browser's name: the `browser` label of every `callagent_websdk_*` series it records,
    /// and its name in [`Browsers`](crate::Browsers)' stats and logs. 1 to 64 of
    /// `A-Z a-z 0-9 _ . : - [ ]` (an address fits), so the label's values are as many as the
    /// browsers configured; `local` by default. Two services recording to one registry need
    /// different names (their gauges would overwrite each other's).
    pub name: String,
    /// The Chromium binary. Never downloaded. By default Debian's binary itself
    /// (`/usr/lib/chromium/chromium`), not its `/usr/bin/chromium` wrapper script, which adds
    /// flags of its own (`--enable-remote-extensions`, ...) from `/etc/chromium.d`; else
    /// `/usr/bin/chromium`. The service sets Chromium's whole command line (see
    /// `websdk/docs/security.md`).
    pub chromium: PathBuf,
    /// The built page (`websdk/page/dist`, made by `websdk/page/build.sh`).
    pub page_dir: PathBuf,
    /// How long the SDK may take to create one agent, once its page has loaded (which
    /// `launch_timeout` bounds), before the page is closed. The SDK resolves a creation
    /// whose service cannot be reached after ~14 s (ACS) to ~76 s (Teams, a network that never
    /// answers), so the default leaves room for those.
    pub create_timeout: Duration,
    /// How long the browser and a page may take to start.
    pub launch_timeout: Duration,
    /// Chromium's `--host-resolver-rules`; [`NO_EXTERNAL_HOSTS`] keeps every request on this
    /// machine (tests, and dry runs of a monitor).
    pub host_resolver_rules: Option<String>,
    /// More Chromium arguments, each `--name` or `--name=value`, passed as written after the
    /// service's own. Flags that would undo a protection (`--remote-debugging-port`,
    /// `--no-sandbox`, `--ignore-certificate-errors`, `--user-data-dir`, ...) are refused by
    /// [`validate`](Self::validate).
    pub extra_args: Vec<String>,
    /// **For test rigs only.** Accept any TLS certificate (Chromium's
    /// `--ignore-certificate-errors`), e.g. to point the SDK at a local server with a self-signed
    /// certificate. Off by default, and then certificates are always verified, for everything
    /// the pages and the SDK fetch. The service logs a warning at launch when it is on. Never
    /// use it with a real access token: anyone on the network path could impersonate Azure's
    /// services and read what the SDK sends them.
    pub accept_invalid_certificates: bool,
    /// Where the service's private directory (a random name, mode 0700) goes: each browser's
    /// profile and launcher. `std::env::temp_dir()` by default. At launch, this user's
    /// directories there of services no longer running are removed.
    pub temp_dir: PathBuf,
    /// Live agents plus creations in flight through the service. While it is reached,
    /// `poll_ready` is `Pending` (a slot is held from `call` until the agent is disposed or
    /// dropped). Each agent costs memory (~7–15 MiB PSS at 32 agents per page, ~46–52 MiB with
    /// a page each, SDK 2.0.0) and CPU (~1–3.5% of a core each while the service is unreachable):
    /// size it from the machine's memory and cores (see the density table in
    /// `websdk/docs/capacity.md`).
    pub max_agents: usize,
    /// Browser restarts allowed within `restart_window`; past them creations fail with
    /// [`WebSdkError::BrowserGone`] instead of restarting a browser that keeps dying.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub restart_window: Duration,
    /// The least time between two browser starts.
    pub restart_spacing: Duration,
    /// Agents one page hosts, each on its own `CallClient` (the page's SDK bundle, its memory
    /// and its renderer process are shared). 1 gives each agent a page of its own. The pool
    /// never places two creations for one identity on one page at once (the SDK races them,
    /// 40228/40230). A page closes when its last agent is gone; a page crash fails only its own
    /// agents.
    pub agents_per_page: usize,
    /// Pages kept open with the SDK loaded and no agent yet, so a creation need not wait for a
    /// page load; refilled in the background. 0 opens pages on demand only.
    pub warm_pages: usize,
    /// Keeps each tenant's identities on pages of their own: a page takes creations only for
    /// the tenant of the first identity placed on it, for the rest of its life. The identities
    /// on one page share its JavaScript realm: the SDK's module state, and `CallClient`s, which
    /// the page hands from a disposed agent to the next creation. `None` (the default): any
    /// identity may share a page with any other (see the threat model in
    /// `websdk/docs/security.md`). With `agents_per_page: 1` every agent has a page of its own
    /// whatever this says.
    pub tenant_of: Option<TenantOf>,
    /// A browser on another host to drive instead of launching Chromium here (`chromium`,
    /// `extra_args`, `host_resolver_rules` and `accept_invalid_certificates` are then that
    /// host's business). `None` (the default) launches Chromium on this machine.
    pub remote: Option<RemoteBrowser>,
}

/// Which tenant an identity belongs to ([`WebSdkConfig::tenant_of`]), given the identity a
/// creation names (`CreateAgentRequest::identity`): e.g. the customer an ACS identity was made
/// for, looked up in the application's own records.
///
/// ```
/// use callagent_websdk::{TenantOf, WebSdkConfig};
///
/// // Identities named `8:acs:RESOURCE_…`: one tenant per ACS resource.
/// let by_resource = TenantOf::new(|identity| identity.split('_').next().unwrap_or("").to_owned());
/// let config = WebSdkConfig { tenant_of: Some(by_resource), ..WebSdkConfig::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct TenantOf(std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>);

impl TenantOf {
    /// The tenant `of` says an identity belongs to.
    pub fn new(of: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(of))
    }

    /// `identity`'s tenant.
    pub(crate) fn of(&self, identity: &str) -> String {
        (self.0)(identity)
    }
}

impl std::fmt::Debug for TenantOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantOf(..)")
    }
}

/// A browser on another host, reached over its DevTools endpoint: a headless Chromium container,
/// a Kubernetes pod, browserless, a Selenium Grid node's CDP endpoint. The page needs nothing
/// from that host (it is served over DevTools) and tokens cross the link sealed to their page;
/// but whoever reaches a DevTools endpoint drives that browser, so keep it on a private network.
///
/// Its endpoint is given to [`new`](Self::new) and parsed there, once; [`authority`](Self::authority)
/// shows it.
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteBrowser {
    /// The endpoint, parsed where it was given; or why it does not parse, which
    /// [`WebSdkConfig::validate`] says.
    endpoint: Result<Endpoint, EndpointError>,
    /// A header sent with each request to the endpoint, e.g. `Authorization` for a proxy in
    /// front of the browser. Its value is never shown (`Debug`) nor logged.
    pub header: Option<(String, String)>,
    /// How long the browser may stay silent before it is taken as lost: the relay asks it to
    /// answer every 250 ms, because a link that drops sends nothing (without this a loss would
    /// show only after minutes), and a hung browser answers nothing either. 1.5 s by default, which a LAN carries the page's bundle (13 MB,
    /// sent to each new page) well within; raise it for a slower link.
    pub lost_after: Duration,
    /// PEM certificates trusted for `wss://`/`https://` besides the system's roots: a private
    /// CA. There is no way to accept an unverified certificate.
    pub ca_file: Option<PathBuf>,
    /// Connect to this address instead of resolving the endpoint's host (which still names the
    /// certificate for `wss`/`https`), as `curl --connect-to` does: how
    /// [`DnsBrowsers`](crate::DnsBrowsers) reaches each address behind one name over TLS.
    pub connect_to: Option<std::net::SocketAddr>,
    /// Send a header or a query (its credentials) over `ws://`/`http://` to a host other than
    /// this machine's loopback. Off by default, and then [`WebSdkConfig::validate`] refuses such
    /// an endpoint: anyone on the link would read the credential, and could answer as the
    /// browser (and so be sent every token, sealed to a key of its own). Turn it on only for a
    /// link nothing else shares (a pod's own network namespace, a veth pair).
    pub allow_plain_text_credentials: bool,
}

impl RemoteBrowser {
    /// The browser at `endpoint`: `ws://HOST:PORT/devtools/browser/ID` (the browser's WebSocket
    /// URL), or `http://HOST:PORT` (its DevTools HTTP endpoint, asked for that URL at each
    /// connection, so a restarted browser with a new ID is found); `wss://` and `https://` the
    /// same over TLS, through a TLS front (Chromium's DevTools speaks no TLS itself), its
    /// certificate verified against HOST. The port is 80 or 443 by default; an IPv6 address goes
    /// in brackets (`ws://[fd00::5]:9222/...`). A name is resolved at each connection and its
    /// address is used as `Host` (Chromium answers only an IP address or `localhost`). A query
    /// (browserless's `?token=`) goes with each request, and neither `Debug` nor an error shows
    /// it; `user:password@` is refused (use [`with_header`](Self::with_header)).
    ///
    /// The endpoint is parsed here, once; one that does not parse is refused by
    /// [`WebSdkConfig::validate`], which says why.
    pub fn new(endpoint: impl Into<String>) -> Self {
        // The text may hold a token (its query): wiped from memory once parsed.
        let text = Secret::new(endpoint.into());
        Self {
            endpoint: Endpoint::parse(text.expose()),
            header: None,
            lost_after: Duration::from_millis(1500),
            ca_file: None,
            connect_to: None,
            allow_plain_text_credentials: false,
        }
    }

    /// A [`DnsBrowsers`](crate::DnsBrowsers) template whose members are asked in plain text,
    /// each at its address (`http://ADDRESS`): for a network nothing else shares. Header,
    /// `lost_after` and the rest are set as for any browser; the endpoint is each member's.
    pub fn each_address() -> Self {
        Self::new("")
    }

    /// A [`DnsBrowsers`](crate::DnsBrowsers) template whose members are asked over TLS: the
    /// name (on the certificate, verified) at each address, as `curl --connect-to` does.
    pub fn each_address_over_tls() -> Self {
        Self::new("https://")
    }

    /// With [`allow_plain_text_credentials`](Self::allow_plain_text_credentials) on.
    pub fn with_plain_text_credentials(mut self) -> Self {
        self.allow_plain_text_credentials = true;
        self
    }

    /// With `name: value` sent to the endpoint (its value is never shown).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.header = Some((name.into(), value.into()));
        self
    }

    /// With the PEM certificates in `file` trusted for `wss://`/`https://` (a private CA).
    pub fn with_ca_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(file.into());
        self
    }

    /// The endpoint's scheme, host and port (`wss://browsers.example:443`), never its path or
    /// query (which may hold a token, as browserless's `?token=` does). An endpoint that does not
    /// parse is shown as why, never its text (`(not an endpoint: credentials in the URL ...)`);
    /// a [`DnsBrowsers`](crate::DnsBrowsers) template's as its scheme alone (`https://`).
    pub fn authority(&self) -> String {
        match &self.endpoint {
            Ok(endpoint) => endpoint.to_string(),
            Err(why) => format!("(not an endpoint: {why})"),
        }
    }

    /// The endpoint, parsed, or why it is not one.
    pub(crate) fn endpoint(&self) -> Result<&Endpoint, EndpointError> {
        self.endpoint.as_ref().map_err(Clone::clone)
    }

    /// This browser at `endpoint`, connected to `connect_to` in place of resolving its host
    /// (a [`DnsBrowsers`](crate::DnsBrowsers) member of this template).
    pub(crate) fn at(self, endpoint: Endpoint, connect_to: Option<std::net::SocketAddr>) -> Self {
        Self { endpoint: Ok(endpoint), connect_to, ..self }
    }

    /// Where its plain-text link (`ws://`, `http://`) leaves this machine, if it does: the host,
    /// or the `connect_to` address.
    pub(crate) fn plain_text_host(&self) -> Option<String> {
        self.endpoint.as_ref().ok()?.plain_text_host(self.connect_to)
    }

    pub(crate) fn header(&self) -> Option<(&str, &str)> {
        self.header.as_ref().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// [`RemoteBrowser::each_address`]: a [`DnsBrowsers`](crate::DnsBrowsers) template.
impl Default for RemoteBrowser {
    fn default() -> Self {
        Self::each_address()
    }
}

impl std::fmt::Debug for RemoteBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBrowser")
            .field("endpoint", &self.authority())
            .field("header", &self.header.as_ref().map(|(name, _)| name))
            .field("lost_after", &self.lost_after)
            .field("ca_file", &self.ca_file)
            .field("connect_to", &self.connect_to)
            .field("allow_plain_text_credentials", &self.allow_plain_text_credentials)
            .finish()
    }
}

/// Debian's Chromium binary, else its wrapper (whose absence `launch` reports).
fn default_chromium() -> PathBuf {
    let binary = PathBuf::from("/usr/lib/chromium/chromium");
    if binary.is_file() { binary } else { PathBuf::from("/usr/bin/chromium") }
}

/// The default [`WebSdkConfig::agents_per_page`] (see the density table in `websdk/docs/capacity.md`).
pub const DEFAULT_AGENTS_PER_PAGE: usize = 32;

impl Default for WebSdkConfig {
    fn default() -> Self {
        Self {
            name: "local".to_owned(),
            chromium: default_chromium(),
            page_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/page/dist")),
            create_timeout: Duration::from_secs(120),
            launch_timeout: Duration::from_secs(30),
            host_resolver_rules: None,
            extra_args: Vec::new(),
            accept_invalid_certificates: false,
            temp_dir: std::env::temp_dir(),
            max_agents: 16,
            max_restarts: 5,
            restart_window: Duration::from_secs(600),
            restart_spacing: Duration::from_secs(1),
            agents_per_page: DEFAULT_AGENTS_PER_PAGE,
            warm_pages: 1,
            tenant_of: None,
            remote: None,
        }
    }
}

impl WebSdkConfig {
    /// The default config with [`NO_EXTERNAL_HOSTS`]: nothing the browser resolves leaves the
    /// machine.
    pub fn isolated() -> Self {
        Self { host_resolver_rules: Some(NO_EXTERNAL_HOSTS.to_owned()), ..Self::default() }
    }

    /// Checks every setting; [`WebSdk::launch`](crate::WebSdk::launch) calls it.
    pub fn validate(&self) -> Result<(), WebSdkError> {
        let invalid = |field, reason: String| Err(WebSdkError::Config { field, reason });
        let label = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b'[' | b']');
        if !(1..=64).contains(&self.name.len()) || !self.name.bytes().all(label) {
            return invalid(
                "name",
                format!("must be 1 to 64 of A-Z a-z 0-9 _ . : - [ ] (a metric label), got {:?}", self.name),
            );
        }
        if self.max_agents == 0 {
            return invalid("max_agents", "must be at least 1".into());
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if self.max_agents > 1 << 20 {
            return invalid("max_agents", format!("must be at most 1048576, got {}", self.max_agents));
        }
        let bounded = |d: Duration| d >= Duration::from_millis(1) && d <= Duration::from_secs(24 * 3600);
        for (field, d) in [
            ("create_timeout", self.create_timeout),
            ("launch_timeout", self.launch_timeout),
            ("restart_window", self.restart_window),
        ] {
            if !bounded(d) {
                return invalid(field, format!("must be 1 ms to 24 h, got {}", human(d)));
            }
        }
        if !(1..=256).contains(&self.agents_per_page) {
            return invalid("agents_per_page", format!("must be 1 to 256, got {}", self.agents_per_page));
        }
        if self.warm_pages > 64 {
            return invalid("warm_pages", format!("must be at most 64, got {}", self.warm_pages));
        }
        if let Some(why) = self.extra_args.iter().find_map(|a| refuse_extra_arg(a)) {
            return invalid("extra_args", why);
        }
        if let Some(rules) = &self.host_resolver_rules
            && (rules.is_empty() || rules.contains(['\0', '\n']))
        {
            return invalid("host_resolver_rules", "must be one non-empty line".into());
        }
        if let Some(remote) = &self.remote {
            // A template's endpoint (no host) is not a browser's.
            let endpoint = match remote.endpoint().and_then(|e| e.browser().map(|_| e)) {
                Ok(endpoint) => endpoint,
                Err(why) => return invalid("remote.endpoint", why.to_string()),
            };
            if let Some(Err(why)) = remote.header().map(|(n, v)| crate::remote::check_header(n, v)) {
                return invalid("remote.header", why);
            }
            let credentials = remote.header.is_some() || endpoint.has_query();
            if let Some(host) = endpoint.plain_text_host(remote.connect_to)
                && credentials
                && !remote.allow_plain_text_credentials
            {
                return invalid(
                    "remote.endpoint",
                    format!(
                        "would send its credentials (a header or a query) in plain text to {host}: use \
                         wss:// or https://, or set RemoteBrowser::allow_plain_text_credentials for a \
                         link nothing else shares"
                    ),
                );
            }
            if let Some(Err(why)) = remote.ca_file.as_deref().map(crate::remote::load_ca) {
                return invalid("remote.ca_file", why);
            }
            if !(Duration::from_millis(300)..=Duration::from_secs(600)).contains(&remote.lost_after) {
                return invalid(
                    "remote.lost_after",
                    format!("must be 300 ms to 10 min, got {}", human(remote.lost_after)),
                );
            }
        }
        if self.restart_spacing > Duration::from_secs(3600) {
            return invalid(
                "restart_spacing",
                format!("must be at most 1 h, got {}", human(self.restart_spacing)),
            );
        }
        Ok(())
    }
}

/// Flags [`WebSdkConfig::extra_args`] may not set, and why: each would undo a protection the
/// service gives (or is a setting of its own).
pub(crate) const REFUSED_FLAGS: &[(&str, &str)] = &[
    ("--remote-debugging-port", "it would open DevTools to every local user; the service uses a pipe"),
    ("--remote-debugging-address", "it would open DevTools to the network; the service uses a pipe"),
    ("--remote-debugging-pipe", "the service sets it"),
    ("--user-data-dir", "the service gives each browser a private profile"),
    (
        "--ignore-certificate-errors",
        "certificates are always verified (see WebSdkConfig::accept_invalid_certificates)",
    ),
    ("--ignore-certificate-errors-spki-list", "certificates are always verified"),
    ("--no-sandbox", "the sandbox is off only as root, where Chromium requires it"),
    ("--disable-setuid-sandbox", "the sandbox is off only as root, where Chromium requires it"),
    ("--host-resolver-rules", "set WebSdkConfig::host_resolver_rules"),
    ("--enable-logging", "Chromium's log would carry what pages print"),
];

/// Why `arg` cannot be one of Chromium's extra arguments, if it cannot.
pub(crate) fn refuse_extra_arg(arg: &str) -> Option<String> {
    let Some(name) = arg.strip_prefix("--").map(|a| a.split_once('=').map_or(a, |(n, _)| n)) else {
        return Some(format!("`{arg}` must be written `--name` or `--name=value`"));
    };
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || arg.contains(['\0', '\n']) {
        return Some(format!("`{arg}` is not a Chromium flag (`--name` or `--name=value`)"));
    }
    REFUSED_FLAGS
        .iter()
        .find(|(flag, _)| flag[2..] == *name)
        .map(|(flag, why)| format!("`{flag}` is not allowed: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_maps_every_external_host_away() {
        assert_eq!(WebSdkConfig::isolated().host_resolver_rules.as_deref(), Some(NO_EXTERNAL_HOSTS));
        assert!(WebSdkConfig::default().host_resolver_rules.is_none());
    }

    #[test]
    fn out_of_range_settings_are_named() {
        assert!(WebSdkConfig::default().validate().is_ok());
        for name in ["", "a b", "é", &"x".repeat(65)] {
            let err = WebSdkConfig { name: name.into(), ..WebSdkConfig::default() }.validate().unwrap_err();
            assert!(err.to_string().contains("`name` must be 1 to 64"), "{name:?}: {err}");
        }
        assert!(
            WebSdkConfig { name: "pod-3.browsers:9222".into(), ..WebSdkConfig::default() }.validate().is_ok()
        );
        let err = WebSdkConfig { max_agents: 0, ..WebSdkConfig::default() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "invalid WebSdkConfig: `max_agents` must be at least 1");
        let err = WebSdkConfig { create_timeout: Duration::ZERO, ..WebSdkConfig::default() }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`create_timeout` must be 1 ms to 24 h, got 0 µs"), "{err}");
        let err = WebSdkConfig {
            extra_args: vec!["--remote-debugging-port=9222".into()],
            ..WebSdkConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("`extra_args` `--remote-debugging-port` is not allowed"), "{err}");
        let err = WebSdkConfig { extra_args: vec!["disable-gpu".into()], ..WebSdkConfig::default() }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("must be written `--name`"), "{err}");
        assert!(!WebSdkConfig::default().accept_invalid_certificates, "certificates are verified by default");
    }

    #[test]
    fn a_remote_browser_is_checked_and_its_secrets_never_shown() {
        let remote =
            |r: RemoteBrowser| WebSdkConfig { remote: Some(r), ..WebSdkConfig::default() }.validate();
        assert!(remote(RemoteBrowser::new("ws://10.0.0.2:9222/devtools/browser/x")).is_ok());
        assert!(remote(RemoteBrowser::new("http://browsers.default.svc:9222")).is_ok());
        assert!(remote(RemoteBrowser::new("wss://browserless.example/chromium?token=x")).is_ok());
        assert!(remote(RemoteBrowser::new("https://10.0.0.2:9443")).is_ok());
        for (endpoint, says) in [
            ("h:9222", "no scheme"),
            ("ftp://h", "is not ws://, wss://"),
            ("ws://me:pw@h:1/x", "credentials in the URL"),
        ] {
            let err = remote(RemoteBrowser::new(endpoint)).unwrap_err().to_string();
            assert!(err.contains("`remote.endpoint`") && err.contains(says), "{endpoint}: {err}");
        }
        let ca =
            RemoteBrowser { ca_file: Some("/nonexistent/ca.pem".into()), ..RemoteBrowser::new("https://h") };
        assert!(
            remote(ca).unwrap_err().to_string().contains("`remote.ca_file` cannot read /nonexistent/ca.pem")
        );
        let slow =
            RemoteBrowser { lost_after: Duration::from_millis(10), ..RemoteBrowser::new("ws://h:1/x") };
        assert!(remote(slow).unwrap_err().to_string().contains("`remote.lost_after`"));
        // A browserless-style token in the URL and a header's value stay out of Debug (and so
        // out of the config's Debug and every log of it).
        let secret = RemoteBrowser::new("ws://chrome.example:3000/chromium?token=s3cr3t")
            .with_header("Authorization", "Bearer hunter2");
        assert_eq!(secret.authority(), "ws://chrome.example:3000");
        let shown = format!("{:?}", WebSdkConfig { remote: Some(secret), ..WebSdkConfig::default() });
        assert!(shown.contains("ws://chrome.example:3000") && shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("hunter2"), "{shown}");
        // Nor a password in the URL (which validate() refuses, but Debug may come first): an
        // endpoint that does not parse is shown as why.
        let userinfo = RemoteBrowser::new("ws://bot:PASSWORD@10.0.0.2:9222/devtools/browser/x");
        assert_eq!(
            userinfo.authority(),
            "(not an endpoint: credentials in the URL (user:password@) are not supported: use \
             RemoteBrowser::with_header)"
        );
        assert!(!format!("{userinfo:?}").contains("PASSWORD"), "{userinfo:?}");
        let err = remote(userinfo).unwrap_err().to_string();
        assert!(err.contains("credentials in the URL") && !err.contains("PASSWORD"), "{err}");
        // The port shown is the one connected to, the default's too.
        assert_eq!(RemoteBrowser::new("https://h").authority(), "https://h:443");
        assert_eq!(RemoteBrowser::new("ws://[fd00::5]/x?t=1").authority(), "ws://[fd00::5]:80");
    }

    /// A DnsBrowsers template's endpoint (no host) is not a browser's; `Default` is one.
    #[test]
    fn a_template_is_not_a_browser() {
        let remote =
            |r: RemoteBrowser| WebSdkConfig { remote: Some(r), ..WebSdkConfig::default() }.validate();
        for template in [
            RemoteBrowser::each_address(),
            RemoteBrowser::each_address_over_tls(),
            RemoteBrowser::default(),
            RemoteBrowser::new("ws:///x"),
        ] {
            let err = remote(template.clone()).unwrap_err().to_string();
            assert!(
                err.contains("`remote.endpoint` no host") && err.contains("DnsBrowsers template"),
                "{template:?}: {err}"
            );
        }
        assert_eq!(RemoteBrowser::each_address_over_tls().authority(), "https://");
        assert_eq!(RemoteBrowser::default().lost_after, RemoteBrowser::new("ws://h").lost_after);
    }

    /// A header's name or value, or an endpoint, that would end a request's line (and so inject
    /// a header or a second request) is refused; so is a value read from a file with its newline.
    #[test]
    fn nothing_that_ends_a_request_line_is_sent() {
        let remote =
            |r: RemoteBrowser| WebSdkConfig { remote: Some(r), ..WebSdkConfig::default() }.validate();
        let tls = || RemoteBrowser::new("wss://browsers.example/x");
        for (name, value, says) in [
            ("X", "v\r\nX-Injected: yes", "control or space character '\\r'"),
            ("Authorization", "Bearer s3cr3t\n", "ends with a line break"),
            ("Authorization", " Bearer s3cr3t", "white space"),
            ("X", "a\u{7f}b", "control"),
            ("X\r\nY", "v", "not an HTTP token"),
            ("X Y", "v", "not an HTTP token"),
            ("", "v", "not an HTTP token"),
        ] {
            let err = remote(tls().with_header(name, value)).unwrap_err().to_string();
            assert!(err.contains("`remote.header`") && err.contains(says), "{name:?}: {value:?}: {err}");
            assert!(!err.contains("s3cr3t"), "the error shows no secret: {err}");
        }
        assert!(remote(tls().with_header("X-Api-Key", "a\tb c")).is_ok(), "a tab and spaces inside are fine");
        for endpoint in ["wss://h/x\r\nX: y", "wss://h/x y", "wss://h\n/x", "https://h/?t=a\0"] {
            let err = remote(RemoteBrowser::new(endpoint)).unwrap_err().to_string();
            assert!(
                err.contains("`remote.endpoint`") && err.contains("control or space"),
                "{endpoint:?}: {err}"
            );
        }
    }

    /// Credentials (a header or a query) in plain text only to this machine, or where a setting
    /// named for it allows.
    #[test]
    fn credentials_cross_a_link_only_over_tls() {
        let remote =
            |r: RemoteBrowser| WebSdkConfig { remote: Some(r), ..WebSdkConfig::default() }.validate();
        let header = |e: &str| RemoteBrowser::new(e).with_header("Authorization", "Bearer s3cr3t");
        for plain in [
            header("http://10.0.0.2:9222"),
            header("ws://browsers.example:9222/devtools/browser/x"),
            RemoteBrowser::new("ws://10.0.0.2:3000/chromium?token=s3cr3t"),
            RemoteBrowser {
                connect_to: Some("10.0.0.2:9222".parse().unwrap()),
                ..header("http://localhost:9222")
            },
        ] {
            let err = remote(plain.clone()).unwrap_err().to_string();
            assert!(err.contains("in plain text") && !err.contains("s3cr3t"), "{plain:?}: {err}");
            assert!(remote(plain.with_plain_text_credentials()).is_ok());
        }
        for fine in [
            header("https://10.0.0.2:9443"),
            header("wss://browsers.example/x?token=s3cr3t"),
            header("http://127.0.0.1:9222"),
            header("ws://[::1]:9222/devtools/browser/x"),
            header("http://localhost:9222"),
            RemoteBrowser::new("http://10.0.0.2:9222"), // no credential: a warning at launch
        ] {
            assert!(remote(fine.clone()).is_ok(), "{fine:?}: {:?}", remote(fine.clone()));
        }
    }
}

#[cfg(test)]
mod edge_cases {
    use super::*;
    fn remote(r: RemoteBrowser) -> Result<(), WebSdkError> {
        WebSdkConfig { remote: Some(r), ..WebSdkConfig::default() }.validate()
    }
    fn header(e: &str) -> RemoteBrowser {
        RemoteBrowser::new(e).with_header("Authorization", "Bearer s3cr3t")
    }

    /// only this machine's names count as loopback.
    #[test]
    fn s_loopback_is_exactly_loopback() {
        for plain in [
            "http://localhost.attacker.example:9222",
            "http://localhostx:9222",
            "http://127.0.0.1.nip.io:9222",
            "http://127.attacker.example:9222",
        ] {
            let err = remote(header(plain)).expect_err(plain).to_string();
            assert!(err.contains("in plain text"), "{plain}: {err}");
        }
        for fine in ["http://127.0.0.2:9222", "http://LOCALHOST:9222", "ws://[::1]:9222/x"] {
            assert!(remote(header(fine)).is_ok(), "{fine}");
        }
    }

    /// a header's value ending in white space is refused.
    #[test]
    fn s_trailing_space_is_refused() {
        let err = remote(RemoteBrowser::new("wss://h/x").with_header("Authorization", "Bearer s3cr3t "))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`remote.header`") && err.contains("white space"), "{err}");
    }

    /// a tab in the endpoint is refused.
    #[test]
    fn s_tab_in_endpoint_is_refused() {
        let err = remote(RemoteBrowser::new("wss://h/x\ty")).unwrap_err().to_string();
        assert!(err.contains("`remote.endpoint`"), "{err}");
    }

    /// no line break, no part of a password with an @.
    #[test]
    fn s_authority_shows_no_line_break_and_no_password() {
        let broken = RemoteBrowser::new("ws://h\r\nINJECTED:1/x").authority();
        assert!(!broken.contains(['\r', '\n']) && !broken.contains("INJECTED"), "{broken:?}");
        let at = RemoteBrowser::new("ws://bot:p@ss@10.0.0.2:9222/x");
        assert!(at.authority().contains("credentials in the URL"), "{}", at.authority());
        assert!(!format!("{at:?}").contains("ss@") && !format!("{at:?}").contains("bot"), "{at:?}");
    }
}
