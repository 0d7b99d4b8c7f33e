//! [`Browsers`]: several browsers behind one `tower::Service`, local or on other hosts.

use std::fmt;
use std::task::{Context, Poll};

use callagent_retry::sdk::CreateAgentRequest;

use crate::agent::Agent;
use crate::config::WebSdkConfig;
use crate::error::WebSdkError;
use crate::service::{BrowserStats, ResponseFuture, WebSdk};

/// Several browsers behind one `tower::Service`: each a [`WebSdk`] of its own (its own
/// `max_agents`, pages, warm pages and restarts), local or remote ([`WebSdkConfig::remote`]).
///
/// - **Placement**: each creation goes to the browser with the most `max_agents` slots free among
///   those running; `poll_ready` is `Pending` only when none has a slot.
/// - **A lost browser** fails its own creations in flight ([`WebSdkError::BrowserDied`]) and its
///   agents' calls ([`WebSdkError::AgentGone`]); new creations go to the others at once. It is
///   started again, or reconnected, in the background (spaced as its config says) and placed on
///   again once it runs.
/// - Clones share the browsers; each reserves its own slot, as [`WebSdk`]'s clones do.
/// - **Metrics**: each browser's series carry its [`WebSdkConfig::name`] as the `browser` label.
#[derive(Clone)]
pub struct Browsers {
    members: Vec<(String, WebSdk)>,
    /// The member `poll_ready` reserved a slot on, for the next `call`.
    ready: Option<usize>,
}

impl fmt::Debug for Browsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.members.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Browsers").field("members", &names).field("ready", &self.ready).finish()
    }
}

impl Browsers {
    /// Launches (or connects to) each browser, known by its [`WebSdkConfig::name`] in `stats`,
    /// logs and metrics (the names must differ). Fails if any cannot start: a browser that is
    /// down at launch is a configuration to look at, not to route around.
    pub async fn launch(browsers: Vec<WebSdkConfig>) -> Result<Self, WebSdkError> {
        if browsers.is_empty() {
            return Err(WebSdkError::Config { field: "browsers", reason: "at least one browser".into() });
        }
        for (i, config) in browsers.iter().enumerate() {
            if browsers[..i].iter().any(|c| c.name == config.name) {
                return Err(WebSdkError::Config {
                    field: "name",
                    reason: format!(
                        "{:?} names two browsers; each needs its own (its metrics' `browser` label)",
                        config.name
                    ),
                });
            }
        }
        let mut members = Vec::with_capacity(browsers.len());
        for config in browsers {
            let name = config.name.clone();
            let sdk = WebSdk::launch(config).await.map_err(|e| match e {
                WebSdkError::Config { field, reason } => {
                    WebSdkError::Config { field, reason: format!("browser {name:?}: {reason}") }
                }
                other => other,
            })?;
            sdk.keep_up();
            members.push((name, sdk));
        }
        Ok(Self { members, ready: None })
    }

    /// Each browser's name and what it looks like now.
    pub async fn stats(&self) -> Vec<(String, Result<BrowserStats, WebSdkError>)> {
        let mut all = Vec::with_capacity(self.members.len());
        for (name, sdk) in &self.members {
            all.push((name.clone(), sdk.stats().await));
        }
        all
    }

    /// The browsers, by name.
    pub fn members(&self) -> impl Iterator<Item = (&str, &WebSdk)> {
        self.members.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Closes every browser.
    pub async fn close(&self) {
        for (_, sdk) in &self.members {
            sdk.close().await;
        }
    }

    /// The order to try members in: running ones first, most free slots first (ties in
    /// configured order); then the others, whose creations fail fast and retryably.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.sort_by_key(|&i| {
            let sdk = &self.members[i].1;
            (!sdk.is_up(), std::cmp::Reverse(sdk.free_slots()))
        });
        order
    }
}

impl tower::Service<CreateAgentRequest> for Browsers {
    type Response = Agent;
    type Error = WebSdkError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WebSdkError>> {
        if self.ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut closed = 0;
        for i in self.order() {
            // Stops at the first with a slot: only that one holds a reservation. (A member that
            // was Pending keeps its place in its slots' queue, as tower's ready caches do: a slot
            // freed there waits for this handle's next poll.)
            match self.members[i].1.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.ready = Some(i);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(_)) => closed += 1,
                Poll::Pending => {}
            }
        }
        if closed == self.members.len() {
            return Poll::Ready(Err(WebSdkError::closed()));
        }
        Poll::Pending
    }

    fn call(&mut self, request: CreateAgentRequest) -> ResponseFuture {
        // Without a reservation, the member `poll_ready` would have tried first (its call
        // answers `NotReady` if it has no slot either).
        let i = self.ready.take().unwrap_or_else(|| self.order()[0]);
        self.members[i].1.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_browsers_of_one_name_are_refused_before_any_starts() {
        // A Chromium that does not exist: the names are checked before anything launches.
        let config = WebSdkConfig { chromium: "/nonexistent/chromium".into(), ..WebSdkConfig::default() };
        let other = WebSdkConfig { name: "pod-1".into(), ..config.clone() };
        let err = Browsers::launch(vec![config.clone(), other, config]).await.unwrap_err();
        assert!(err.to_string().contains("\"local\" names two browsers"), "{err}");
        let err = Browsers::launch(Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("at least one browser"), "{err}");
    }
}
