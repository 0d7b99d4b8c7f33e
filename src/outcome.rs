//! How a call through the layer ended.

use std::fmt;
use std::time::Duration;

use crate::classify::Classify;
use crate::{ErrorCategory, catalog};

/// The failure of one attempt: the inner service's error, or this layer's attempt timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError<E> {
    /// The inner service failed.
    #[error("{0}")]
    Service(#[source] E),
    /// The attempt ran past `attempt_timeout` (or the call's deadline) and was cancelled.
    #[error("attempt timed out after {after:?} and was cancelled")]
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
}

/// What a failed call carries, whatever stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed<E> {
    /// The last attempt's failure.
    pub last: AttemptError<E>,
    /// Calls made to the inner service.
    pub attempts: u32,
    /// Time from the call to the failure, on tokio's clock.
    pub elapsed: Duration,
    /// The last failure's category: carried by the error, else the catalog's, else `Unknown`.
    pub category: ErrorCategory,
    /// What to do about the last failure, from the catalog, when its subcode is known.
    pub remedy: Option<&'static str>,
}

impl<E: Classify> Failed<E> {
    /// Records a failure, looking up its category and remedy.
    pub fn new(last: AttemptError<E>, attempts: u32, elapsed: Duration) -> Self {
        let category = crate::classify::classify(&last, &Default::default()).category;
        let remedy = last.sub_code().and_then(catalog::lookup).map(|e| e.remedy);
        Self { last, attempts, elapsed, category, remedy }
    }
}

/// Why the layer gave up; every variant keeps the last failure whole.
///
/// `Display` says what happened, how many attempts it took and, when the catalog knows the
/// subcode, what to do; `source()` is the last attempt's failure (and through it the inner error).
///
/// ```
/// use std::time::Duration;
/// use callagent_retry::{CallAgentError, RetryError, ErrorCategory};
/// use callagent_retry::outcome::{AttemptError, Failed};
/// let last = AttemptError::Service(CallAgentError::from_catalog(40229).unwrap());
/// let err = RetryError::Rejected(Failed::new(last, 1, Duration::ZERO));
/// assert_eq!(err.category(), ErrorCategory::ExpectedError);
/// assert!(err.remedy().unwrap().contains("Azure Communication Services user token"));
/// assert!(err.to_string().starts_with("call agent creation rejected (not retryable) after 1 attempt"));
/// assert_eq!(err.into_inner().unwrap().sub_code(), 40229);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// Not retryable (an `ExpectedError`, an override, or a code that never retries): no retry
    /// was made. The application must fix something; see [`RetryError::remedy`].
    Rejected(Failed<E>),
    /// Every allowed attempt failed with a retryable error.
    Exhausted(Failed<E>),
    /// The next retry could not finish before the call's `deadline` (or the deadline passed).
    DeadlineExceeded(Failed<E>),
    /// The shared retry budget is empty: too many retries across all calls recently.
    BudgetExhausted(Failed<E>),
    /// The inner service failed `poll_ready`; a tower service that did so must not be called again.
    ServiceFailed(Failed<E>),
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Rejected(_) => "call agent creation rejected (not retryable)",
            Self::Exhausted(_) => "call agent creation failed on every allowed attempt",
            Self::DeadlineExceeded(_) => "call agent creation ran out of time (deadline)",
            Self::BudgetExhausted(_) => {
                "call agent creation stopped: retry budget exhausted (too many retries across all calls)"
            }
            Self::ServiceFailed(_) => {
                "call agent creation stopped: the inner service failed while becoming ready"
            }
        };
        let d = self.failed();
        let plural = if d.attempts == 1 { "" } else { "s" };
        write!(f, "{what} after {} attempt{plural} in {:?}: {}", d.attempts, d.elapsed, d.last)?;
        if let Some(remedy) = d.remedy {
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
        Some(&self.failed().last)
    }
}

impl<E> RetryError<E> {
    /// The common part of every variant.
    pub fn failed(&self) -> &Failed<E> {
        match self {
            Self::Rejected(f)
            | Self::Exhausted(f)
            | Self::DeadlineExceeded(f)
            | Self::BudgetExhausted(f)
            | Self::ServiceFailed(f) => f,
        }
    }

    fn into_failed(self) -> Failed<E> {
        match self {
            Self::Rejected(f)
            | Self::Exhausted(f)
            | Self::DeadlineExceeded(f)
            | Self::BudgetExhausted(f)
            | Self::ServiceFailed(f) => f,
        }
    }

    /// Calls made to the inner service.
    pub fn attempts(&self) -> u32 {
        self.failed().attempts
    }

    /// Time spent on the call.
    pub fn elapsed(&self) -> Duration {
        self.failed().elapsed
    }

    /// The last attempt's failure (an inner error or a timeout).
    pub fn last_attempt(&self) -> &AttemptError<E> {
        &self.failed().last
    }

    /// The last inner error; `None` when the last attempt timed out instead.
    pub fn last_error(&self) -> Option<&E> {
        self.failed().last.service_error()
    }

    /// The last inner error, by value; `None` when the last attempt timed out instead.
    pub fn into_inner(self) -> Option<E> {
        self.into_failed().last.into_service_error()
    }

    /// The last failure's category: carried by the error, else the catalog's, else `Unknown`.
    pub fn category(&self) -> ErrorCategory {
        self.failed().category
    }

    /// What the application should do, from the catalog, when the last subcode is known.
    pub fn remedy(&self) -> Option<&'static str> {
        self.failed().remedy
    }

    /// The outcome this error reports (also the `outcome` metric label).
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Rejected(_) => Outcome::Rejected,
            Self::Exhausted(_) => Outcome::Exhausted,
            Self::DeadlineExceeded(_) => Outcome::DeadlineExceeded,
            Self::BudgetExhausted(_) => Outcome::BudgetExhausted,
            Self::ServiceFailed(_) => Outcome::ServiceFailed,
        }
    }
}

/// How a call ended: the `outcome` label of `callagent_create_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The first attempt succeeded.
    Success,
    /// An attempt after at least one retry succeeded.
    SuccessAfterRetry,
    /// Stopped on a failure a retry cannot fix.
    Rejected,
    /// Every allowed attempt failed.
    Exhausted,
    /// The deadline ran out.
    DeadlineExceeded,
    /// The retry budget ran out.
    BudgetExhausted,
    /// The inner service failed `poll_ready`.
    ServiceFailed,
    /// The caller dropped the call before it finished.
    Cancelled,
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

    /// The snake_case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::SuccessAfterRetry => "success_after_retry",
            Self::Rejected => "rejected",
            Self::Exhausted => "exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::BudgetExhausted => "budget_exhausted",
            Self::ServiceFailed => "service_failed",
            Self::Cancelled => "cancelled",
        }
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

impl<E> RetryError<E> {
    pub(crate) fn from_stop(stop: crate::decide::Stop, failed: Failed<E>) -> Self {
        use crate::decide::Stop;
        match stop {
            Stop::Rejected => Self::Rejected(failed),
            Stop::Exhausted => Self::Exhausted(failed),
            Stop::DeadlineExceeded => Self::DeadlineExceeded(failed),
            Stop::BudgetExhausted => Self::BudgetExhausted(failed),
        }
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
}
