//! [`DnsBrowsers`]: the browsers a name's A/AAAA records list, as a Kubernetes headless Service
//! lists its pods, kept up to date by a background task.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tower::{Service, ServiceExt};

use super::{Browsers, Roster, launch_member};
use crate::config::{RemoteBrowser, WebSdkConfig};
use crate::error::{WebSdkError, human};
use crate::remote::HostPort;

/// Browsers found by DNS ([`Browsers::discover`]): every address `name` resolves to is a browser's
/// DevTools HTTP endpoint, asked by address (Chromium answers only an IP address or `localhost`
/// as `Host`). The name is resolved again every `every`:
///
/// - an address that appears is connected to (a member from then on, once it answers);
/// - an address that is gone from a successful answer takes no more creations, and is closed
///   once its last agent is gone (or at once if it is lost);
/// - a failed resolution changes nothing (a DNS hiccup must not drop every browser).
///
/// Each member is [`template`](Self::template) with `remote` pointed at `http://ADDRESS`
/// ([`RemoteBrowser::each_address`], or no `remote`), or at `https://NAME` connected to the
/// address ([`RemoteBrowser::each_address_over_tls`]: the certificate is for the name); the
/// template's `RemoteBrowser` gives the header, `lost_after` and `ca_file`. Its `name` is the address, the `browser` label of its metrics: at most
/// `max_browsers` values at a time.
#[derive(Debug, Clone)]
pub struct DnsBrowsers {
    /// `HOST:PORT`, e.g. `chromium.bots.svc.cluster.local:9223`.
    pub name: String,
    /// How often the name is resolved again. 10 s by default.
    pub every: Duration,
    /// At most this many browsers at a time (the first addresses in sorted order). 64 by default.
    pub max_browsers: usize,
    /// What each browser is, but for `name` and its remote's endpoint.
    pub template: WebSdkConfig,
}

impl DnsBrowsers {
    /// The browsers `name` (`HOST:PORT`) resolves to, each configured as `template`.
    pub fn new(name: impl Into<String>, template: WebSdkConfig) -> Self {
        Self { name: name.into(), every: Duration::from_secs(10), max_browsers: 64, template }
    }

    fn validate(&self) -> Result<(), WebSdkError> {
        let invalid = |field, reason: String| Err(WebSdkError::Config { field, reason });
        self.host_port()?;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.every) {
            return invalid("dns.every", format!("must be 1 s to 1 h, got {}", human(self.every)));
        }
        if !(1..=1024).contains(&self.max_browsers) {
            return invalid("dns.max_browsers", format!("must be 1 to 1024, got {}", self.max_browsers));
        }
        self.member(SocketAddr::from(([192, 0, 2, 1], 9222)))?.validate()
    }

    /// `name`, parsed as an endpoint's host and port are.
    fn host_port(&self) -> Result<HostPort, WebSdkError> {
        HostPort::parse(&self.name).map_err(|why| WebSdkError::Config {
            field: "dns.name",
            reason: format!("must be HOST:PORT, got {:?}: {why}", self.name),
        })
    }

    /// The config of the browser at `address`: over TLS the name (on the certificate) asked at
    /// the address, else the address itself; the template's query, header and settings kept.
    /// A template whose endpoint does not parse (a scheme not `ws`, `wss`, `http` or `https`)
    /// is refused, never taken as plain text.
    fn member(&self, address: SocketAddr) -> Result<WebSdkConfig, WebSdkError> {
        let remote = self.template.remote.clone().unwrap_or_else(RemoteBrowser::each_address);
        let template = remote.endpoint().map_err(|why| WebSdkError::Config {
            field: "dns.template.remote.endpoint",
            reason: why.to_string(),
        })?;
        let (endpoint, connect_to) = template.member(&self.host_port()?, address);
        Ok(WebSdkConfig {
            name: address.to_string(),
            remote: Some(remote.at(endpoint, connect_to)),
            ..self.template.clone()
        })
    }
}

/// Resolves a `HOST:PORT` to its addresses (`tokio::net::lookup_host`, the system's resolver).
fn system_resolver() -> impl Service<
    String,
    Response = Vec<SocketAddr>,
    Error = std::io::Error,
    Future = BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>,
> + Send
+ 'static {
    tower::service_fn(|name: String| -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host(name).await?.collect()) })
    })
}

impl Browsers {
    /// The browsers `dns.name` resolves to, kept up to date in the background (see
    /// [`DnsBrowsers`]). Waits until one answers, for at most the template's `launch_timeout`.
    pub async fn discover(dns: DnsBrowsers) -> Result<Self, WebSdkError> {
        Self::discover_with(dns, system_resolver()).await
    }

    /// [`discover`](Self::discover) with a resolver of your own: a `tower::Service` from
    /// `HOST:PORT` to its addresses (a DNS client that asks a given server, a service registry).
    pub async fn discover_with<R>(dns: DnsBrowsers, resolver: R) -> Result<Self, WebSdkError>
    where
        R: Service<String, Response = Vec<SocketAddr>, Error = std::io::Error> + Send + 'static,
        R::Future: Send,
    {
        dns.validate()?;
        let roster = Arc::new(Roster::new(Vec::new(), dns.name.clone(), true));
        let mut finder = Finder { dns, resolver, retired: Vec::new(), last: String::new() };
        let within = finder.dns.template.launch_timeout;
        let first = async {
            loop {
                finder.round(&roster).await;
                if !roster.snapshot().is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1).min(finder.dns.every)).await;
            }
        };
        if tokio::time::timeout(within, first).await.is_err() {
            let why = std::mem::take(&mut finder.last);
            return Err(WebSdkError::BrowserGone(format!(
                "no browser answered at {} within {} ({why}); check the name and that its browsers run",
                finder.dns.name,
                human(within)
            )));
        }
        tokio::spawn(finder.run(Arc::downgrade(&roster)));
        Ok(Self::over(roster))
    }
}

/// The background task's state: resolves, connects, retires.
struct Finder<R> {
    dns: DnsBrowsers,
    resolver: R,
    /// Members no longer listed, closed once their last agent is gone.
    retired: Vec<(String, crate::WebSdk)>,
    /// What the last round found wrong, for the error of a first round that found nothing.
    last: String,
}

impl<R> Finder<R>
where
    R: Service<String, Response = Vec<SocketAddr>, Error = std::io::Error> + Send + 'static,
    R::Future: Send,
{
    /// Resolves the name every `every` until the service is closed or every handle is gone.
    async fn run(mut self, roster: Weak<Roster>) {
        let mut tick = tokio::time::interval(self.dns.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let Some(closed) = roster.upgrade().map(|r| r.closed.clone()) else { break };
            tokio::select! {
                _ = closed.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some(roster) = roster.upgrade() else { break };
            self.round(&roster).await;
        }
        for (_, sdk) in self.retired.drain(..) {
            sdk.close().await;
        }
    }

    /// One resolution and what follows from it.
    async fn round(&mut self, roster: &Roster) {
        let answer = match self.resolver.ready().await {
            Ok(resolver) => resolver.call(self.dns.name.clone()).await,
            Err(e) => Err(e),
        };
        match answer {
            Err(e) => {
                self.last = format!("resolving it failed: {e}");
                tracing::warn!(name = %self.dns.name, error = %e, "resolving the browsers' name failed; kept the browsers as they are");
            }
            Ok(mut addresses) => {
                addresses.sort();
                addresses.dedup();
                addresses.truncate(self.dns.max_browsers);
                self.update(roster, &addresses).await;
            }
        }
        self.retire().await;
    }

    async fn update(&mut self, roster: &Roster, addresses: &[SocketAddr]) {
        let current = roster.snapshot();
        let listed = |name: &str| addresses.iter().any(|a| a.to_string() == name);
        let (kept, gone): (Vec<_>, Vec<_>) = current.iter().cloned().partition(|(name, _)| listed(name));
        let mut members = kept;
        let mut failed = Vec::new();
        for address in addresses {
            let name = address.to_string();
            if members.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let member = match self.dns.member(*address) {
                Ok(member) => member,
                Err(e) => {
                    failed.push(format!("{name}: {e}"));
                    continue;
                }
            };
            match launch_member(member).await {
                Ok(sdk) if roster.closed.is_cancelled() => sdk.close().await,
                Ok(sdk) => {
                    tracing::info!(browser = %name, "a browser found by DNS joined");
                    members.push((name, sdk));
                }
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        if !failed.is_empty() {
            self.last = failed.join("; ");
            tracing::debug!(name = %self.dns.name, failed = %self.last, "listed browsers that did not answer; tried again next round");
        } else if addresses.is_empty() {
            self.last = "it lists no address".into();
        }
        let changed = !gone.is_empty() || members.len() != current.len();
        if changed {
            for (name, _) in &gone {
                tracing::info!(browser = %name, "a browser is no longer listed; it takes no more creations");
            }
            self.retired.extend(gone);
            roster.replace(members);
        }
    }

    /// Closes retired browsers that hold no agent (or are lost).
    async fn retire(&mut self) {
        let max = self.dns.template.max_agents;
        let mut keep = Vec::with_capacity(self.retired.len());
        for (name, sdk) in self.retired.drain(..) {
            if sdk.is_up() && sdk.free_slots() < max {
                keep.push((name, sdk));
            } else {
                tracing::debug!(browser = %name, "a retired browser holds no agent; closed");
                sdk.close().await;
            }
        }
        self.retired = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Endpoint;

    #[tokio::test]
    async fn a_bad_name_or_setting_is_refused_before_any_lookup() {
        let template = WebSdkConfig::default();
        for (name, says) in [
            ("chromium.bots.svc", "must be HOST:PORT"),
            (":9223", "must be HOST:PORT"),
            ("h:0", "must be HOST:PORT"),
            ("http://h:9223", "must be HOST:PORT"),
        ] {
            let err = Browsers::discover(DnsBrowsers::new(name, template.clone())).await.unwrap_err();
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
        let rare =
            DnsBrowsers { every: Duration::from_millis(10), ..DnsBrowsers::new("h:1", template.clone()) };
        assert!(Browsers::discover(rare).await.unwrap_err().to_string().contains("`dns.every`"));
        let none = DnsBrowsers { max_browsers: 0, ..DnsBrowsers::new("h:1", template) };
        assert!(Browsers::discover(none).await.unwrap_err().to_string().contains("`dns.max_browsers`"));
    }

    #[test]
    fn each_address_is_a_browser_named_by_it() {
        let template = WebSdkConfig {
            remote: Some(RemoteBrowser::each_address().with_header("Authorization", "Bearer x")),
            ..WebSdkConfig::default()
        };
        let dns = DnsBrowsers::new("chromium.bots.svc:9223", template);
        let v6 = dns.member("[fd00::5]:9223".parse().unwrap()).unwrap();
        assert_eq!(v6.name, "[fd00::5]:9223");
        let remote = v6.remote.as_ref().unwrap();
        assert_eq!(remote.authority(), "http://[fd00::5]:9223");
        assert!(remote.header.is_some(), "the template's header is kept");
        // A header in plain text to another host is refused unless the template allows it.
        let err = v6.validate().unwrap_err().to_string();
        assert!(err.contains("in plain text to fd00::5"), "{err}");
        let allowed = DnsBrowsers {
            template: WebSdkConfig {
                remote: Some(remote.clone().with_plain_text_credentials()),
                ..WebSdkConfig::default()
            },
            ..dns.clone()
        };
        let member = allowed.member("[fd00::5]:9223".parse().unwrap()).unwrap();
        assert!(member.validate().is_ok(), "{:?}", member.validate());
        // Over TLS: the name (on the certificate) is asked, at each address.
        let tls = DnsBrowsers {
            template: WebSdkConfig {
                remote: Some(RemoteBrowser::each_address_over_tls()),
                ..WebSdkConfig::default()
            },
            ..dns
        };
        let member = tls.member("10.0.3.7:9443".parse().unwrap()).unwrap();
        let remote = member.remote.as_ref().unwrap();
        assert_eq!(remote.authority(), "https://chromium.bots.svc:9223");
        assert_eq!(remote.connect_to, Some("10.0.3.7:9443".parse().unwrap()));
    }

    /// A `wss://` template stays TLS (it once became `http://ADDRESS`, sending its header in
    /// plain text), its query goes with every member, and a scheme that is not one of the four
    /// is refused rather than taken as plain text.
    #[tokio::test]
    async fn a_template_keeps_its_tls_and_its_query() {
        let with = |endpoint: &str| {
            let remote = RemoteBrowser::new(endpoint).with_header("Authorization", "Bearer s3cr3t");
            DnsBrowsers::new(
                "browsers.example:9443",
                WebSdkConfig { remote: Some(remote), ..WebSdkConfig::default() },
            )
        };
        let at: SocketAddr = "10.0.3.7:9443".parse().unwrap();
        for (template, endpoint) in [
            ("wss://browsers.example:9443/?token=s3cr3t", "https://browsers.example:9443/?token=s3cr3t"),
            ("https://ignored/x?token=s3cr3t", "https://browsers.example:9443/?token=s3cr3t"),
            ("wss://", "https://browsers.example:9443"),
        ] {
            let member = with(template).member(at).unwrap();
            let remote = member.remote.as_ref().unwrap();
            assert_eq!(remote.endpoint(), Ok(&Endpoint::parse(endpoint).unwrap()), "{template}");
            assert_eq!(remote.connect_to, Some(at), "{template}: connected by address");
            assert!(member.validate().is_ok(), "{template}: {:?}", member.validate());
        }
        let plain = with("ws://x/?token=s3cr3t").member(at).unwrap();
        let parsed = Endpoint::parse("http://10.0.3.7:9443/?token=s3cr3t").unwrap();
        assert_eq!(plain.remote.as_ref().unwrap().endpoint(), Ok(&parsed));
        assert!(plain.validate().unwrap_err().to_string().contains("in plain text to 10.0.3.7"));
        for bad in ["ftp://browsers.example/", "browsers.example:9443", "wss://h/\r\nX: y"] {
            let err = Browsers::discover(with(bad)).await.unwrap_err().to_string();
            assert!(err.contains("`dns.template.remote.endpoint`"), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn the_system_resolver_lists_a_name_by_address() {
        let addresses =
            system_resolver().oneshot("localhost:9223".to_owned()).await.expect("localhost resolves");
        assert!(addresses.contains(&SocketAddr::from(([127, 0, 0, 1], 9223))), "{addresses:?}");
    }

    /// At most `max_browsers` of the addresses a name lists are tried, the first in sorted
    /// order: the `browser` label's values stay bounded whatever DNS answers.
    #[tokio::test]
    async fn at_most_max_browsers_of_the_listed_addresses_are_tried() {
        // Loopback ports nothing listens on: each is tried and refuses at once.
        let ports: Vec<u16> = (0..4)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
            .collect();
        let listed: Vec<SocketAddr> =
            ports.iter().rev().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))).collect();
        let mut sorted = listed.clone();
        sorted.sort();
        let answer = listed.clone();
        let resolver = tower::service_fn(move |_: String| {
            let answer = answer.clone();
            async move { Ok::<_, std::io::Error>(answer) }
        });
        let template = WebSdkConfig { launch_timeout: Duration::from_secs(2), ..WebSdkConfig::default() };
        let dns = DnsBrowsers { max_browsers: 2, ..DnsBrowsers::new("h:9223", template) };
        let err = Browsers::discover_with(dns, resolver).await.unwrap_err().to_string();
        for tried in &sorted[..2] {
            assert!(err.contains(&format!("{tried}:")), "{tried} was tried: {err}");
        }
        for left in &sorted[2..] {
            assert!(!err.contains(&left.to_string()), "{left} is past max_browsers: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_lists_nothing_fails_within_the_launch_timeout() {
        let template = WebSdkConfig { launch_timeout: Duration::from_secs(5), ..WebSdkConfig::default() };
        let empty = tower::service_fn(|_: String| async { Ok::<_, std::io::Error>(Vec::new()) });
        let err =
            Browsers::discover_with(DnsBrowsers::new("h:9223", template.clone()), empty).await.unwrap_err();
        assert!(
            err.to_string().contains("no browser answered at h:9223 within 5 s (it lists no address)"),
            "{err}"
        );
        let failing = tower::service_fn(|_: String| async {
            Err::<Vec<SocketAddr>, _>(std::io::Error::other("SERVFAIL"))
        });
        let err = Browsers::discover_with(DnsBrowsers::new("h:9223", template), failing).await.unwrap_err();
        assert!(err.to_string().contains("resolving it failed: SERVFAIL"), "{err}");
    }
}

#[cfg(test)]
mod edge_cases {
    use super::*;
    /// a template's fragment is not part of its query.
    #[test]
    fn s_a_templates_fragment_stays_behind() {
        let remote = RemoteBrowser::new("wss://browsers.example:9443/?token=s3cr3t#top")
            .with_header("Authorization", "Bearer s3cr3t");
        let dns = DnsBrowsers::new(
            "browsers.example:9443",
            WebSdkConfig { remote: Some(remote), ..WebSdkConfig::default() },
        );
        let member = dns.member("10.0.3.7:9443".parse().unwrap()).unwrap();
        let parsed = crate::remote::Endpoint::parse("https://browsers.example:9443/?token=s3cr3t").unwrap();
        assert_eq!(member.remote.as_ref().unwrap().endpoint(), Ok(&parsed));
    }
}
