//! How a call through the retry layer failed: [`AttemptError`] (one attempt) and [`RetryError`]
//! (what the caller gets), which derives from [`StopReason`] (`crate::outcome`, below both this
//! module and the observers that label [`Outcome`]s).

use std::fmt;
use std::time::Duration;

use crate::classify::{Classify, Verdict};
pub use crate::outcome::{Outcome, StopReason};
use crate::sdk::ErrorCategory;

/// The failure of one attempt: the inner service's error, or this layer's attempt timeout.
///
/// `#[non_exhaustive]`: another local reason for an attempt to fail may be added.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError<E> {
    /// The inner service failed. Displays as the inner error and passes its `source()` through:
    /// in an error chain the inner error appears once.
    #[error(transparent)]
    Service(E),
    /// The attempt ran past `attempt_timeout` (or the call's deadline) and was cancelled.
    #[error("attempt timed out after {} and was cancelled", crate::human::HumanDuration(*after))]
    TimedOut {
        /// How long the attempt ran.
        after: Duration,
    },
}

impl<E> AttemptError<E> {
    /// The inner service's error, if this was one.
    pub fn service_error(&self) -> Option<&E> {
        match self {
            Self::Service(e) => Some(e),
            Self::TimedOut { .. } => None,
        }
    }

    /// The inner service's error, if this was one.
    pub fn into_service_error(self) -> Option<E> {
        match self {
            Self::Service(e) => Some(e),
            Self::TimedOut { .. } => None,
        }
    }
}

impl<E: Classify> Classify for AttemptError<E> {
    fn code(&self) -> Option<u16> {
        self.service_error().and_then(Classify::code)
    }
    fn sub_code(&self) -> Option<u32> {
        self.service_error().and_then(Classify::sub_code)
    }
    fn categories(&self) -> &[ErrorCategory] {
        self.service_error().map_or(&[], Classify::categories)
    }
    fn retry_after(&self) -> Option<Duration> {
        self.service_error().and_then(Classify::retry_after)
    }
    fn is_local_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }
    fn is_not_connected(&self) -> bool {
        self.service_error().is_some_and(Classify::is_not_connected)
    }
}

/// Why the layer gave up, with the last failure kept whole.
///
/// `Display` says what happened, how many attempts it took and, when the catalog knows the
/// subcode, what to do. It does not repeat the last failure: that is [`source()`], so a report
/// that walks the chain (`anyhow`'s `{:#}`, `eyre`) prints each level once.
///
/// [`source()`]: std::error::Error::source
///
/// ```
/// use std::error::Error as _;
/// use callagent_retry::{CallAgentError, CallAgentRetryLayer, ErrorCategory, RetryConfig, StopReason};
/// use callagent_retry::sdk::catalog;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let teams_token = service_fn(|_: ()| async {
///     Err::<(), _>(CallAgentError::from_catalog(catalog::ACS_AGENT_NEEDS_ACS_TOKEN).unwrap())
/// });
/// let layer = CallAgentRetryLayer::new(RetryConfig::default()).unwrap();
/// let err = layer.layer(teams_token).oneshot(()).await.unwrap_err();
/// assert_eq!(err.reason(), StopReason::Rejected);
/// assert_eq!(err.category(), ErrorCategory::ExpectedError);
/// assert!(err.remedy().unwrap().contains("Azure Communication Services user token"));
/// assert!(err.to_string().starts_with("call agent creation rejected (not retryable) after 1 attempt"));
/// assert!(!err.to_string().contains("403/40229"), "the inner error is the source, not repeated");
/// assert!(err.source().unwrap().to_string().contains("403/40229"));
/// assert_eq!(err.into_inner().unwrap().sub_code(), 40229);
/// # }
/// ```
// Boxed: an error is rare and already costly, while every caller moves the `Result` it sits in,
// success or not; unboxed it made `Result<_, RetryError<_>>` too large to move inline (a
// `memcpy` call on every success path, docs/performance.md).
#[derive(Clone, PartialEq, Eq)]
pub struct RetryError<E>(Box<Stopped<E>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stopped<E> {
    reason: StopReason,
    last: AttemptError<E>,
    attempts: u32,
    elapsed: Duration,
    category: ErrorCategory,
    remedy: Option<&'static str>,
}

impl<E: fmt::Debug> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Stopped { reason, last, attempts, elapsed, category, remedy } = &*self.0;
        f.debug_struct("RetryError")
            .field("reason", reason)
            .field("last", last)
            .field("attempts", attempts)
            .field("elapsed", elapsed)
            .field("category", category)
            .field("remedy", remedy)
            .finish()
    }
}

impl<E> RetryError<E> {
    /// The call stopped for `reason` after `attempts` calls of the inner service; `verdict` is
    /// the last failure's classification (made once, by the core).
    pub(crate) fn new(
        reason: StopReason,
        last: AttemptError<E>,
        verdict: &Verdict,
        attempts: u32,
        elapsed: Duration,
    ) -> Self {
        Self(Box::new(Stopped {
            reason,
            last,
            attempts,
            elapsed,
            category: verdict.category,
            remedy: verdict.remedy(),
        }))
    }

    /// Why the layer gave up.
    pub fn reason(&self) -> StopReason {
        self.0.reason
    }

    /// Calls made to the inner service (0 when it failed `poll_ready` before the first).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Time spent on the call, on tokio's clock.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed
    }

    /// The last attempt's failure (an inner error or a timeout).
    pub fn last_attempt(&self) -> &AttemptError<E> {
        &self.0.last
    }

    /// The last inner error; `None` when the last attempt timed out instead.
    pub fn last_error(&self) -> Option<&E> {
        self.0.last.service_error()
    }

    /// The last inner error, by value; `None` when the last attempt timed out instead.
    pub fn into_inner(self) -> Option<E> {
        self.0.last.into_service_error()
    }

    /// The last failure's category: carried by the error, else the catalog's, else `Unknown`.
    pub fn category(&self) -> ErrorCategory {
        self.0.category
    }

    /// What the application should do, from the catalog, when the last subcode is known.
    pub fn remedy(&self) -> Option<&'static str> {
        self.0.remedy
    }

    /// The outcome this error reports (also the `outcome` metric label).
    pub fn outcome(&self) -> Outcome {
        self.0.reason.into()
    }
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.0.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} after {} attempt{plural} in {}",
            self.0.reason.describe(),
            self.0.attempts,
            crate::human::HumanDuration(self.0.elapsed)
        )?;
        if let Some(remedy) = self.0.remedy {
            write!(f, ". Remedy: {remedy}")?;
        }
        Ok(())
    }
}

impl<E> std::error::Error for RetryError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.last)
    }
}
