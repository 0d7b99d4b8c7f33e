//! [`CallAgentRetryLayer`]: builds the retry service and shares its core, budget and reports.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tower::Layer;

use super::decide::Decider;
use super::per_call::{Detailed, NoLimits, PerRequest, Plain};
use super::policy::CallAgentRetryPolicy;
use super::report::Reporter;
use super::service::CallAgentRetry;
use super::shared::Shared;
use super::{RetryBudget, RetryConfig};
use crate::observe::{ObserveConfig, RetryObserver};
use crate::validate::{ConfigError, MAX_DURATION};

/// Retries failed call-agent creations of the wrapped service (see the [crate docs](crate)).
///
/// Every service this layer makes, and every clone of them, shares one retry budget.
///
/// The two type parameters are per-call options, off by default and free when off: `D` is how a
/// success is answered ([`Plain`], or [`Detailed`] with
/// [`with_attempt_details`](Self::with_attempt_details)), `L` where a call's own limits come
/// from ([`NoLimits`], or the request with [`with_request_limits`](Self::with_request_limits)).
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
pub struct CallAgentRetryLayer<D = Plain, L = NoLimits> {
    shared: Arc<Shared>,
    mode: PhantomData<fn() -> (D, L)>,
}

impl<D, L> Clone for CallAgentRetryLayer<D, L> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), mode: PhantomData }
    }
}

impl CallAgentRetryLayer {
    /// Validates `config` and builds the layer, with the default [`ObserveConfig`]; an invalid
    /// config never builds one.
    ///
    /// Resolves the layer's metric handles against the recorder installed now: install yours
    /// first (see [`observe`](crate::observe)).
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        let decider = Decider::new(config)?;
        let report = Reporter::new(ObserveConfig::default(), None);
        Ok(Self { shared: Arc::new(Shared::new(Arc::new(decider), report)), mode: PhantomData })
    }
}

impl<D, L> CallAgentRetryLayer<D, L> {
    /// Answers a success with how it was obtained: the layer's response becomes
    /// [`Attempted<T>`](super::Attempted) (the inner response and its
    /// [`AttemptDetails`](super::AttemptDetails): attempts, total delay, the failures before it).
    /// Off by default, so the response type of a layer that does not ask is the inner one. Shares
    /// the budget and reports with `self`.
    ///
    /// ```
    /// use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// let failed_once = Arc::new(AtomicBool::new(false));
    /// let svc = ServiceBuilder::new()
    ///     .layer(CallAgentRetryLayer::new(RetryConfig::default()).unwrap().with_attempt_details())
    ///     .service_fn(move |_: ()| {
    ///         let again = failed_once.swap(true, Ordering::Relaxed);
    ///         async move { if again { Ok("agent") } else { Err(CallAgentError::from_catalog(40114).unwrap()) } }
    ///     });
    /// let got = svc.oneshot(()).await.unwrap();
    /// assert_eq!((got.response, got.details.attempts), ("agent", 2));
    /// assert_eq!(got.details.failures[0].sub_code, Some(40114));
    /// # }
    /// ```
    pub fn with_attempt_details(self) -> CallAgentRetryLayer<Detailed, L> {
        CallAgentRetryLayer { shared: self.shared, mode: PhantomData }
    }

    /// Lets each request tighten the layer's limits for its own call: the request type
    /// implements [`CarriesLimits`](super::CarriesLimits), whose deadline and attempt limit
    /// lower the layer's (never raise them), and which learns the call's effective deadline
    /// before the first attempt, so the inner service can bound its own work. Shares the budget
    /// and reports with `self`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use callagent_retry::{CallAgentError, CallAgentRetryLayer, RetryConfig};
    /// use callagent_retry::retry::{CallLimits, CarriesLimits};
    /// use tokio::time::Instant;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// /// A creation for a VoIP push: the phone gives the handler a few seconds.
    /// #[derive(Clone)]
    /// struct PushCreation { respond_by: Instant, deadline: Option<Instant> }
    ///
    /// impl CarriesLimits for PushCreation {
    ///     fn limits(&self) -> CallLimits { CallLimits::none().with_deadline(self.respond_by) }
    ///     fn set_deadline(&mut self, deadline: Option<Instant>) { self.deadline = deadline; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap().with_request_limits();
    /// let svc = layer.layer(service_fn(|req: PushCreation| async move {
    ///     // The inner service sees the call's deadline: the earlier of the request's and the layer's.
    ///     let left = req.deadline.unwrap().saturating_duration_since(Instant::now());
    ///     Ok::<_, CallAgentError>(left)
    /// }));
    /// let respond_by = Instant::now() + Duration::from_secs(5);
    /// let left = svc.oneshot(PushCreation { respond_by, deadline: None }).await.unwrap();
    /// assert_eq!(left, Duration::from_secs(5)); // not the layer's 30 s
    /// # }
    /// ```
    pub fn with_request_limits(self) -> CallAgentRetryLayer<D, PerRequest> {
        CallAgentRetryLayer { shared: self.shared, mode: PhantomData }
    }

    /// Labels the metrics and sets the tracing levels (re-resolving the metric handles against
    /// the recorder installed now). The budget stays shared with the layer this came from.
    pub fn with_observe(self, config: ObserveConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let observer = self.shared.report.observer().cloned();
        Ok(self.rebuild(Reporter::new(config, observer)))
    }

    /// Also sends the layer's events to `observer` (a test recorder, an alerting hook); metrics
    /// and tracing carry on as before. Replaces an observer set earlier; combine several as a
    /// tuple `(a, b)`, and pass an `Arc` to keep a handle of your own.
    #[must_use]
    pub fn with_observer(self, observer: impl RetryObserver) -> Self {
        let config = self.shared.report.config().clone();
        self.rebuild(Reporter::new(config, Some(Arc::new(observer))))
    }

    fn rebuild(&self, report: Reporter) -> Self {
        Self { shared: Arc::new(Shared::new(Arc::clone(&self.shared.decider), report)), mode: PhantomData }
    }

    /// The validated retry config.
    pub fn config(&self) -> &RetryConfig {
        self.shared.decider.config()
    }

    /// The validated metric and tracing settings.
    pub fn observe_config(&self) -> &ObserveConfig {
        self.shared.report.config()
    }

    /// The shared retry budget, if one is configured.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.decider.budget()
    }

    /// A task that keeps the `callagent_retry_budget_available` gauge current while no calls
    /// arrive, by setting it every `period`; spawn it on the runtime that serves the metrics.
    ///
    /// Under traffic the gauge follows the budget by itself (it is set when the budget's window
    /// moves and after each failure); with no calls it would keep its last value, so a storm that
    /// ended and went quiet would still read 0. The task holds no strong reference: it ends once
    /// this layer, its clones and every service they made are dropped, and at once if there is no
    /// budget. `period` must be 1 ms to 24 h; anything else is a
    /// [`ConfigError`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use callagent_retry::{CallAgentRetryLayer, RetryConfig};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = CallAgentRetryLayer::new(RetryConfig::default()).expect("valid config");
    /// tokio::spawn(layer.refresh_budget_gauge(Duration::from_secs(15)).expect("valid period"));
    /// # }
    /// ```
    pub fn refresh_budget_gauge(
        &self,
        period: Duration,
    ) -> Result<impl Future<Output = ()> + Send + 'static, ConfigError> {
        if !(Duration::from_millis(1)..=MAX_DURATION).contains(&period) {
            let reason = format!("must be 1ms to 24h, got {period:?}");
            return Err(ConfigError::invalid("budget_gauge_period", reason));
        }
        let shared = self.budget().is_some().then(|| Arc::downgrade(&self.shared));
        Ok(async move {
            let Some(shared) = shared else { return };
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(shared) = shared.upgrade() else { return };
                shared.report_budget(Instant::now());
            }
        })
    }

    /// A [`tower::retry::Policy`] making the same decisions, sharing this layer's budget and
    /// reports, for use with tower's own `Retry`.
    pub fn policy(&self) -> CallAgentRetryPolicy {
        CallAgentRetryPolicy::new(Arc::clone(&self.shared))
    }
}

impl<D, L> fmt::Debug for CallAgentRetryLayer<D, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallAgentRetryLayer")
            .field("config", self.config())
            .field("observe", self.observe_config())
            .finish_non_exhaustive()
    }
}

impl<S, D, L> Layer<S> for CallAgentRetryLayer<D, L> {
    type Service = CallAgentRetry<S, D, L>;

    fn layer(&self, inner: S) -> Self::Service {
        CallAgentRetry::new(inner, Arc::clone(&self.shared))
    }
}
