//! Judging the created agent, not only the error: the real SDK *resolves* a creation whose
//! service it cannot reach (no network, a firewall, every service answering 401 or 500) with an
//! agent whose `connectionState` is `Disconnected`, after ~14 s (ACS) or ~16 s (Teams), and
//! that agent never connects. For the caller that is a failure.
//!
//! [`ConnectLayer`] waits, after a creation succeeded, up to `timeout` for the agent to be
//! connected. An agent still not connected is disposed (awaited, so the next creation does not
//! find it alive) and the creation fails with [`ConnectError::NotConnected`], which the retry
//! layer classifies as retryable (rule 0 of [`classify`](crate::classify)) and counts under
//! `subcode="not_connected"`. Put it inside the retry layer:
//! `ServiceBuilder::new().layer(retry).layer(ConnectLayer::new(Some(timeout))).service(sdk)`.
//!
//! The response must implement [`Connectable`]; `callagent-websdk`'s agents and the
//! simulator's do. Off (`None`) it passes responses through untouched. It is a layer of its
//! own, not a retry setting, because only services whose responses can be judged can use it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use crate::classify::Classify;
use crate::sdk::ErrorCategory;

/// A boxed future, as [`Connectable`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A created agent whose connection can be judged.
pub trait Connectable: Send + Sized + 'static {
    /// Resolves `true` as soon as the agent is connected, `false` if it is not within `within`
    /// (on tokio's clock, so the simulator's agents run on paused time).
    fn connected_within(&mut self, within: Duration) -> BoxFuture<'_, bool>;
    /// Disposes the agent; the check awaits it before failing the creation.
    fn dispose(self) -> BoxFuture<'static, ()>;
}

/// The `[connect]` section of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    /// How long a created agent may take to connect; `"off"` (the default) skips the check.
    /// Leave room for the SDK's own connection (seconds on a healthy network).
    #[serde(with = "crate::validate::off_or_duration")]
    pub timeout: Option<Duration>,
}

/// Why a creation through [`Connect`] failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError<E> {
    /// The inner service failed.
    #[error(transparent)]
    Service(E),
    /// The agent was created but did not connect within the timeout; it was disposed.
    #[error("the agent was created but did not connect within {}; it was disposed", crate::human::HumanDuration(*after))]
    NotConnected {
        /// The timeout it was given.
        after: Duration,
    },
}

/// The SDK's own error, as the inner service's: what lets the preflight (which answers with the
/// SDK's errors) sit in front of the connect check.
impl<E: From<crate::sdk::CallAgentError>> From<crate::sdk::CallAgentError> for ConnectError<E> {
    fn from(e: crate::sdk::CallAgentError) -> Self {
        Self::Service(E::from(e))
    }
}

impl<E: Classify> Classify for ConnectError<E> {
    fn code(&self) -> Option<u16> {
        match self {
            Self::Service(e) => e.code(),
            Self::NotConnected { .. } => None,
        }
    }
    fn sub_code(&self) -> Option<u32> {
        match self {
            Self::Service(e) => e.sub_code(),
            Self::NotConnected { .. } => None,
        }
    }
    fn categories(&self) -> &[ErrorCategory] {
        match self {
            Self::Service(e) => e.categories(),
            Self::NotConnected { .. } => &[],
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Service(e) => e.retry_after(),
            Self::NotConnected { .. } => None,
        }
    }
    fn is_local_timeout(&self) -> bool {
        matches!(self, Self::Service(e) if e.is_local_timeout())
    }
    fn is_not_connected(&self) -> bool {
        match self {
            Self::Service(e) => e.is_not_connected(),
            Self::NotConnected { .. } => true,
        }
    }
}

/// Builds [`Connect`] services (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectLayer {
    timeout: Option<Duration>,
}

impl ConnectLayer {
    /// Checks agents with `timeout`; `None` passes responses through.
    pub fn new(timeout: Option<Duration>) -> Self {
        Self { timeout }
    }

    /// The layer a `[connect]` section describes.
    pub fn from_config(config: &ConnectConfig) -> Self {
        Self::new(config.timeout)
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Connect<S> {
        Connect { inner, timeout: self.timeout }
    }
}

/// Fails a creation whose agent does not connect in time (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Connect<S> {
    inner: S,
    timeout: Option<Duration>,
}

impl<S, R> Service<R> for Connect<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Connectable,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = ConnectError<S::Error>;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ConnectError::Service)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let future = self.inner.call(request);
        let state = match self.timeout {
            // Off: the inner future itself, no allocation.
            None => State::Off { future },
            // Boxed: the check awaits the agent's own futures, which are boxed anyway.
            Some(within) => State::On { future: Box::pin(check(future, within)) },
        };
        ResponseFuture { state }
    }
}

async fn check<F, A, E>(created: F, within: Duration) -> Result<A, ConnectError<E>>
where
    F: Future<Output = Result<A, E>>,
    A: Connectable,
{
    let mut agent = created.await.map_err(ConnectError::Service)?;
    if agent.connected_within(within).await {
        return Ok(agent);
    }
    tracing::debug!(timeout_ms = within.as_secs_f64() * 1e3, "agent created but not connected; disposing it");
    agent.dispose().await;
    Err(ConnectError::NotConnected { after: within })
}

pin_project! {
    /// The inner service's future when the check is off; the creation and the check, boxed,
    /// when it is on.
    pub struct ResponseFuture<F, A, E> {
        #[pin]
        state: State<F, A, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, A, E> {
        Off { #[pin] future: F },
        On { future: BoxFuture<'static, Result<A, ConnectError<E>>> },
    }
}

impl<F, A, E> fmt::Debug for ResponseFuture<F, A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checking = matches!(self.state, State::On { .. });
        f.debug_struct("ResponseFuture").field("checking", &checking).finish_non_exhaustive()
    }
}

impl<F, A, E> Future for ResponseFuture<F, A, E>
where
    F: Future<Output = Result<A, E>>,
{
    type Output = Result<A, ConnectError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Off { future } => future.poll(cx).map_err(ConnectError::Service),
            StateProj::On { future } => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Display for ConnectLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timeout {
            Some(t) => write!(f, "connect check within {t:?}"),
            None => f.write_str("connect check off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::classify::{Basis, classify};
    use crate::sdk::CallAgentError;
    use crate::{CallAgentRetryLayer, RetryConfig, StopReason};

    /// Connects after `after` (or never), and counts disposals.
    #[derive(Debug)]
    struct Agent {
        after: Option<Duration>,
        disposed: Arc<AtomicU32>,
    }

    impl Connectable for Agent {
        fn connected_within(&mut self, within: Duration) -> BoxFuture<'_, bool> {
            let after = self.after;
            Box::pin(async move {
                match after {
                    Some(a) if a <= within => {
                        tokio::time::sleep(a).await;
                        true
                    }
                    _ => {
                        tokio::time::sleep(within).await;
                        false
                    }
                }
            })
        }
        fn dispose(self) -> BoxFuture<'static, ()> {
            // Only when awaited, and after a while, as the real SDK's.
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.disposed.fetch_add(1, Ordering::SeqCst);
            })
        }
    }

    /// A service whose n-th agent connects after `plan[n]`. Every agent before the n-th never
    /// connected, so each creation asserts that all of them were disposed by then.
    fn sdk(
        plan: Vec<Option<Duration>>,
        disposed: Arc<AtomicU32>,
    ) -> impl Service<(), Response = Agent, Error = CallAgentError, Future: Send + 'static> + Clone {
        let n = Arc::new(AtomicU32::new(0));
        let plan = Arc::new(plan);
        service_fn(move |()| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            assert_eq!(disposed.load(Ordering::SeqCst), i, "creation {i} met an agent not yet disposed");
            let after = plan.get(i as usize).copied().flatten();
            let disposed = Arc::clone(&disposed);
            async move { Ok::<_, CallAgentError>(Agent { after, disposed }) }
        })
    }

    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_disconnected_agent_is_disposed_and_retried_until_one_connects() {
        let disposed = Arc::new(AtomicU32::new(0));
        let inner = sdk(vec![None, None, Some(S * 2)], Arc::clone(&disposed));
        let config = RetryConfig { budget: None, deadline: None, seed: Some(1), ..Default::default() };
        let svc =
            CallAgentRetryLayer::new(config).unwrap().layer(ConnectLayer::new(Some(S * 10)).layer(inner));
        let started = tokio::time::Instant::now();
        let agent = svc.oneshot(()).await.unwrap();
        assert_eq!(agent.after, Some(S * 2));
        assert_eq!(disposed.load(Ordering::SeqCst), 2, "each disconnected agent was disposed");
        assert!(started.elapsed() >= S * 22, "two full checks, then a connection after 2 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_creation_that_never_connects_ends_exhausted_with_its_own_reason() {
        let disposed = Arc::new(AtomicU32::new(0));
        let inner = sdk(vec![], Arc::clone(&disposed));
        let config = RetryConfig { budget: None, deadline: None, max_attempts: 2, ..Default::default() };
        let svc = CallAgentRetryLayer::new(config).unwrap().layer(ConnectLayer::new(Some(S)).layer(inner));
        let err = svc.oneshot(()).await.unwrap_err();
        // The last agent's disposal, too, finished before the error was returned.
        assert_eq!(disposed.load(Ordering::SeqCst), 2);
        assert_eq!((err.reason(), err.attempts()), (StopReason::Exhausted, 2));
        assert!(matches!(err.last_error(), Some(ConnectError::NotConnected { after }) if *after == S));
        assert!(err.remedy().unwrap().contains("never connected"));
        let v = classify(err.last_attempt(), &Default::default());
        assert_eq!((v.retry, v.basis), (true, Basis::NotConnected));
    }

    #[tokio::test(start_paused = true)]
    async fn off_it_passes_every_agent_through() {
        let disposed = Arc::new(AtomicU32::new(0));
        let svc = ConnectLayer::new(None).layer(sdk(vec![None], Arc::clone(&disposed)));
        let agent = svc.oneshot(()).await.unwrap();
        assert_eq!((agent.after, disposed.load(Ordering::SeqCst)), (None, 0));
    }
}
