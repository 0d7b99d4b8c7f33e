//! Per-call options of the layer, chosen by type so a layer that does not use them pays nothing:
//! attempt details on success ([`CallAgentRetryLayer::with_attempt_details`]) and limits the
//! request carries ([`CallAgentRetryLayer::with_request_limits`]).
//!
//! [`CallAgentRetryLayer::with_attempt_details`]: super::CallAgentRetryLayer::with_attempt_details
//! [`CallAgentRetryLayer::with_request_limits`]: super::CallAgentRetryLayer::with_request_limits

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::Verdict;

mod sealed {
    pub trait Sealed {}
}

/// How the layer answers a success: the inner response as it is ([`Plain`], the default) or
/// with how it was obtained ([`Detailed`]). Sealed: pick one of the two.
pub trait Answer: sealed::Sealed + Clone + Send + Sync + 'static {
    /// What a call keeps to answer with: nothing for [`Plain`].
    #[doc(hidden)]
    type Record: Default + fmt::Debug + Send;
    /// The layer's response for the inner service's `T`.
    type Output<T>;
    #[doc(hidden)]
    fn failed(record: &mut Self::Record, failure: &Verdict);
    #[doc(hidden)]
    fn waited(record: &mut Self::Record, delay: Duration);
    #[doc(hidden)]
    fn answer<T>(response: T, record: Self::Record, attempts: u32) -> Self::Output<T>;
}

/// The inner service's response, as it is (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl sealed::Sealed for Plain {}

impl Answer for Plain {
    type Record = ();
    type Output<T> = T;
    fn failed((): &mut (), _: &Verdict) {}
    fn waited((): &mut (), _: Duration) {}
    fn answer<T>(response: T, (): (), _: u32) -> T {
        response
    }
}

/// The inner service's response with its [`AttemptDetails`], as [`Attempted`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Detailed;

impl sealed::Sealed for Detailed {}

impl Answer for Detailed {
    type Record = AttemptDetails;
    type Output<T> = Attempted<T>;
    fn failed(record: &mut AttemptDetails, failure: &Verdict) {
        record.failures.push(*failure);
    }
    fn waited(record: &mut AttemptDetails, delay: Duration) {
        record.total_delay += delay;
    }
    fn answer<T>(response: T, mut details: AttemptDetails, attempts: u32) -> Attempted<T> {
        details.attempts = attempts;
        Attempted { response, details }
    }
}

/// How a successful call was obtained.
///
/// `#[non_exhaustive]`: more details may be added.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptDetails {
    /// Calls made to the inner service, the successful one included.
    pub attempts: u32,
    /// Time spent waiting between attempts (the backoff delays), on tokio's clock.
    pub total_delay: Duration,
    /// The failures before the success, in order: code, subcode, category, or this crate's own
    /// reason (`timeout`, `not_connected`; see [`Verdict::local_label`]).
    pub failures: Vec<Verdict>,
}

/// A response with the details of how it was obtained: what a layer built with
/// [`with_attempt_details`](super::CallAgentRetryLayer::with_attempt_details) answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted<T> {
    /// The inner service's response.
    pub response: T,
    /// How it was obtained.
    pub details: AttemptDetails,
}

/// Limits one call asks for: they tighten the layer's for that call only, never loosen them.
///
/// `#[non_exhaustive]`: build with [`CallLimits::none`] and the `with_` methods.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimits {
    /// No retry is started that could not end before this instant, and the call stops when it
    /// passes (the earlier of this and the layer's `deadline`).
    pub deadline: Option<Instant>,
    /// At most this many calls of the inner service (the lower of this and the layer's limit).
    pub max_attempts: Option<u32>,
}

impl CallLimits {
    /// No limits of the call's own: the layer's apply.
    pub const fn none() -> Self {
        Self { deadline: None, max_attempts: None }
    }

    /// With a deadline of the call's own.
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// With an attempt limit of the call's own.
    #[must_use]
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }
}

/// A request that carries [`CallLimits`], for a layer built with
/// [`with_request_limits`](super::CallAgentRetryLayer::with_request_limits).
///
/// The layer reads the limits once per call, then tells the request the call's effective
/// deadline (the earlier of the request's and the layer's) before the first attempt, so the inner
/// service sees it in every attempt's request and can bound its own work.
pub trait CarriesLimits {
    /// The limits this request asks for.
    fn limits(&self) -> CallLimits;
    /// The call's effective deadline, set by the layer before the first attempt (`None`: none).
    fn set_deadline(&mut self, deadline: Option<Instant>);
}

/// Where a call's own limits come from: nowhere ([`NoLimits`], the default) or the request
/// ([`PerRequest`]). Sealed: pick one of the two.
pub trait Limits<Req>: sealed::Sealed + Clone + Send + Sync + 'static {
    #[doc(hidden)]
    type Deadline: Copy + fmt::Debug + Send + Sync;
    #[doc(hidden)]
    fn read(request: &Req) -> (Self::Deadline, Option<u32>);
    #[doc(hidden)]
    fn deadline(deadline: Self::Deadline) -> Option<Instant>;
    #[doc(hidden)]
    fn tell(request: &mut Req, deadline: Option<Instant>);
    #[doc(hidden)]
    const PER_REQUEST: bool;
}

/// Only the layer's limits apply (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLimits;

impl sealed::Sealed for NoLimits {}

impl<Req> Limits<Req> for NoLimits {
    type Deadline = ();
    fn read(_: &Req) -> ((), Option<u32>) {
        ((), None)
    }
    fn deadline((): ()) -> Option<Instant> {
        None
    }
    fn tell(_: &mut Req, _: Option<Instant>) {}
    const PER_REQUEST: bool = false;
}

/// The request's [`CallLimits`] tighten the layer's ([`CarriesLimits`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest;

impl sealed::Sealed for PerRequest {}

impl<Req: CarriesLimits> Limits<Req> for PerRequest {
    type Deadline = Option<Instant>;
    fn read(request: &Req) -> (Option<Instant>, Option<u32>) {
        let limits = request.limits();
        (limits.deadline, limits.max_attempts)
    }
    fn deadline(deadline: Option<Instant>) -> Option<Instant> {
        deadline
    }
    fn tell(request: &mut Req, deadline: Option<Instant>) {
        request.set_deadline(deadline);
    }
    const PER_REQUEST: bool = true;
}
