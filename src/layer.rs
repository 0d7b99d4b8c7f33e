//! The tower [`Layer`] and [`Service`]: the adapter that waits on tokio's clock.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use crate::classify::Classify;
use crate::config::{ConfigError, RetryConfig};
use crate::decide::Decider;
use crate::future::ResponseFuture;
use crate::metrics::Metrics;
use crate::observe::{Report, RetryObserver};
use crate::outcome::{AttemptError, Failed, RetryError};
use crate::policy::CallAgentRetryPolicy;

/// What every clone of a layer and its services share: the decision core (with its budget) and
/// the observer.
pub(crate) struct Shared {
    pub(crate) decider: Arc<Decider>,
    pub(crate) report: Report,
}

/// Retries failed call-agent creations of the wrapped service (see the [crate docs](crate)).
///
/// Every service this layer makes, and every clone of them, shares one retry budget.
///
/// ```
/// use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = CallAgentRetryLayer::new(RetryConfig::default()).expect("valid config");
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|identity: String| async move {
///         Ok::<_, CallAgentError>(format!("agent for {identity}"))
///     }));
/// let agent = svc.oneshot("alice".to_string()).await.unwrap();
/// assert_eq!(agent, "agent for alice");
/// # }
/// ```
#[derive(Clone)]
pub struct CallAgentRetryLayer {
    shared: Arc<Shared>,
}

impl CallAgentRetryLayer {
    /// Validates `config` and builds the layer; an invalid config never builds one.
    ///
    /// Resolves the layer's metric handles against the recorder installed now: install yours
    /// first (see [`metrics`](crate::metrics)).
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        let decider = Decider::new(config)?;
        let metrics = Metrics::new(&decider.config().name, decider.config().max_unknown_subcodes);
        Ok(Self {
            shared: Arc::new(Shared {
                decider: Arc::new(decider),
                report: Report { metrics: Arc::new(metrics), observer: None },
            }),
        })
    }

    /// Also sends the layer's events to `observer` (a test recorder, an alerting hook); metrics
    /// and tracing carry on as before. Replaces an observer set earlier; combine several as a
    /// tuple `(a, b)`.
    #[must_use]
    pub fn with_observer(self, observer: impl RetryObserver) -> Self {
        Self {
            shared: Arc::new(Shared {
                decider: Arc::clone(&self.shared.decider),
                report: Report {
                    metrics: Arc::clone(&self.shared.report.metrics),
                    observer: Some(Arc::new(observer)),
                },
            }),
        }
    }

    /// The validated config.
    pub fn config(&self) -> &RetryConfig {
        self.shared.decider.config()
    }

    /// The shared retry budget, if one is configured.
    pub fn budget(&self) -> Option<&Arc<crate::budget::RetryBudget>> {
        self.shared.decider.budget()
    }

    /// A [`tower::retry::Policy`] making the same decisions, sharing this layer's budget and
    /// observer, for use with tower's own `Retry`.
    pub fn policy(&self) -> CallAgentRetryPolicy {
        CallAgentRetryPolicy::new(Arc::clone(&self.shared))
    }
}

impl fmt::Debug for CallAgentRetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallAgentRetryLayer").field("config", self.config()).finish_non_exhaustive()
    }
}

impl<S> Layer<S> for CallAgentRetryLayer {
    type Service = CallAgentRetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallAgentRetry { inner, shared: Arc::clone(&self.shared) }
    }
}

/// The service [`CallAgentRetryLayer`] makes.
#[derive(Clone)]
pub struct CallAgentRetry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CallAgentRetry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for CallAgentRetry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallAgentRetry").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for CallAgentRetry<S>
where
    S: Service<Req> + Clone,
    S::Error: Classify,
    Req: Clone,
{
    type Response = S::Response;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| RetryError::ServiceFailed(Failed::new(AttemptError::Service(e), 0, Duration::ZERO)))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let now = Instant::now();
        let mut call = shared.decider.begin(now);
        call.start_attempt();
        shared.report.attempt();
        let span = tracing::info_span!(
            "callagent.create",
            layer = %shared.decider.config().name,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            subcode = tracing::field::Empty,
        );
        // As tower's Retry: the ready instance takes this call; a clone, driven to readiness
        // again, takes the retries. Skipped when no failure could be retried.
        let retry_with = shared.decider.may_retry().then(|| (self.inner.clone(), request.clone()));
        let future = self.inner.call(request);
        ResponseFuture::new(shared, span, future, retry_with, call, now)
    }
}
