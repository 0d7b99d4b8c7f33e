//! How a call through the retry layer ended: [`StopReason`] (why it gave up, decided by the
//! core), [`RetryError`] (what the caller gets), [`Outcome`] (the metric label). The last two
//! derive from the first, in one place each.

use std::fmt;
use std::time::Duration;

use crate::classify::{Classify, Verdict};
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
    #[error("attempt timed out after {} and was cancelled", crate::HumanDuration(*after))]
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

/// Why the layer gave up: the one type the decision core, [`RetryError`] and [`Outcome`] share.
///
/// `#[non_exhaustive]`: a new way to stop (a new limit) may be added; match with a `_` arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StopReason {
    /// Not retryable (an `ExpectedError`, an override, or a code that never retries): the
    /// application must fix something; see [`RetryError::remedy`].
    Rejected,
    /// Every allowed attempt failed with a retryable error.
    Exhausted,
    /// The next retry could not finish before the call's `deadline` (or the deadline passed).
    DeadlineExceeded,
    /// The shared retry budget is empty: too many retries across all calls recently.
    BudgetExhausted,
    /// The inner service failed `poll_ready`; a tower service that did so must not be called again.
    ServiceFailed,
}

impl StopReason {
    /// Every reason, in declaration order.
    pub const ALL: [StopReason; 5] =
        [Self::Rejected, Self::Exhausted, Self::DeadlineExceeded, Self::BudgetExhausted, Self::ServiceFailed];

    /// The snake_case label (also the `outcome` metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Exhausted => "exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::BudgetExhausted => "budget_exhausted",
            Self::ServiceFailed => "service_failed",
        }
    }

    /// What happened, in words, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Rejected => "call agent creation rejected (not retryable)",
            Self::Exhausted => "call agent creation failed on every allowed attempt",
            Self::DeadlineExceeded => "call agent creation ran out of time (deadline)",
            Self::BudgetExhausted => {
                "call agent creation stopped: retry budget exhausted (too many retries across all calls)"
            }
            Self::ServiceFailed => {
                "call agent creation stopped: the inner service failed while becoming ready"
            }
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryError<E> {
    reason: StopReason,
    last: AttemptError<E>,
    attempts: u32,
    elapsed: Duration,
    category: ErrorCategory,
    remedy: Option<&'static str>,
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
        Self { reason, last, attempts, elapsed, category: verdict.category, remedy: verdict.remedy() }
    }

    /// Why the layer gave up.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// Calls made to the inner service (0 when it failed `poll_ready` before the first).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent on the call, on tokio's clock.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The last attempt's failure (an inner error or a timeout).
    pub fn last_attempt(&self) -> &AttemptError<E> {
        &self.last
    }

    /// The last inner error; `None` when the last attempt timed out instead.
    pub fn last_error(&self) -> Option<&E> {
        self.last.service_error()
    }

    /// The last inner error, by value; `None` when the last attempt timed out instead.
    pub fn into_inner(self) -> Option<E> {
        self.last.into_service_error()
    }

    /// The last failure's category: carried by the error, else the catalog's, else `Unknown`.
    pub fn category(&self) -> ErrorCategory {
        self.category
    }

    /// What the application should do, from the catalog, when the last subcode is known.
    pub fn remedy(&self) -> Option<&'static str> {
        self.remedy
    }

    /// The outcome this error reports (also the `outcome` metric label).
    pub fn outcome(&self) -> Outcome {
        self.reason.into()
    }
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} after {} attempt{plural} in {}",
            self.reason.describe(),
            self.attempts,
            crate::HumanDuration(self.elapsed)
        )?;
        if let Some(remedy) = self.remedy {
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
        Some(&self.last)
    }
}

/// How a call ended: the `outcome` label of `callagent_create_calls_total`.
///
/// `#[non_exhaustive]`, as [`StopReason`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The first attempt succeeded.
    Success,
    /// An attempt after at least one retry succeeded.
    SuccessAfterRetry,
    /// Stopped on a failure a retry cannot fix ([`StopReason::Rejected`]).
    Rejected,
    /// Every allowed attempt failed ([`StopReason::Exhausted`]).
    Exhausted,
    /// The deadline ran out ([`StopReason::DeadlineExceeded`]).
    DeadlineExceeded,
    /// The retry budget ran out ([`StopReason::BudgetExhausted`]).
    BudgetExhausted,
    /// The inner service failed `poll_ready` ([`StopReason::ServiceFailed`]).
    ServiceFailed,
    /// The caller dropped the call before it finished.
    Cancelled,
}

impl From<StopReason> for Outcome {
    fn from(reason: StopReason) -> Self {
        match reason {
            StopReason::Rejected => Self::Rejected,
            StopReason::Exhausted => Self::Exhausted,
            StopReason::DeadlineExceeded => Self::DeadlineExceeded,
            StopReason::BudgetExhausted => Self::BudgetExhausted,
            StopReason::ServiceFailed => Self::ServiceFailed,
        }
    }
}

impl Outcome {
    /// Every outcome, for pre-registering metric series.
    pub const ALL: [Outcome; 8] = [
        Self::Success,
        Self::SuccessAfterRetry,
        Self::Rejected,
        Self::Exhausted,
        Self::DeadlineExceeded,
        Self::BudgetExhausted,
        Self::ServiceFailed,
        Self::Cancelled,
    ];

    /// The reason, for an outcome that gave up.
    pub const fn stop_reason(self) -> Option<StopReason> {
        match self {
            Self::Rejected => Some(StopReason::Rejected),
            Self::Exhausted => Some(StopReason::Exhausted),
            Self::DeadlineExceeded => Some(StopReason::DeadlineExceeded),
            Self::BudgetExhausted => Some(StopReason::BudgetExhausted),
            Self::ServiceFailed => Some(StopReason::ServiceFailed),
            Self::Success | Self::SuccessAfterRetry | Self::Cancelled => None,
        }
    }

    /// The snake_case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::SuccessAfterRetry => "success_after_retry",
            Self::Cancelled => "cancelled",
            Self::Rejected => StopReason::Rejected.as_str(),
            Self::Exhausted => StopReason::Exhausted.as_str(),
            Self::DeadlineExceeded => StopReason::DeadlineExceeded.as_str(),
            Self::BudgetExhausted => StopReason::BudgetExhausted.as_str(),
            Self::ServiceFailed => StopReason::ServiceFailed.as_str(),
        }
    }

    /// The outcome of a call that succeeded on attempt number `attempts`.
    pub(crate) const fn success_at(attempts: u32) -> Self {
        if attempts > 1 { Self::SuccessAfterRetry } else { Self::Success }
    }

    /// Whether the call produced an agent.
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success | Self::SuccessAfterRetry)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order() {
        // Metrics index their per-outcome handles by `outcome as usize`.
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn outcome_and_reason_agree() {
        for reason in StopReason::ALL {
            let outcome = Outcome::from(reason);
            assert_eq!(outcome.stop_reason(), Some(reason));
            assert_eq!(outcome.as_str(), reason.as_str());
        }
        let stopped = Outcome::ALL.iter().filter(|o| o.stop_reason().is_some()).count();
        assert_eq!(stopped, StopReason::ALL.len());
    }
}
