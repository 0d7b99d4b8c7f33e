//! How a call through the retry layer ended: [`StopReason`] (why it gave up, decided by the
//! core) and [`Outcome`] (the metric label), which derives from it in one place. Below both the
//! retry layer and its observers, which share them (public as `retry::{StopReason, Outcome}`).

use std::fmt;

/// Why the layer gave up: the one type the decision core, [`RetryError`](crate::retry::RetryError) and [`Outcome`] share.
///
/// `#[non_exhaustive]`: a new way to stop (a new limit) may be added; match with a `_` arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StopReason {
    /// Not retryable (an `ExpectedError`, an override, or a code that never retries): the
    /// application must fix something; see [`RetryError::remedy`](crate::retry::RetryError::remedy).
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
