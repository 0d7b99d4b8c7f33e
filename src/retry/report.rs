//! The private fan-out of what a call does: tracing (at the configured levels), the metrics
//! observer (always), and the user's observer (optional).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tracing::Level;

use super::Outcome;
use crate::classify::Verdict;
use crate::observe::{Finished, Metrics, ObserveConfig, RetryObserver};

/// A tracing event or span at a level chosen at run time: tracing's macros need a constant level,
/// so this expands the macro once per level.
macro_rules! at_level {
    ($level:expr, event!($($rest:tt)+)) => {
        at_level!(@each $level, |L| tracing::event!(L, $($rest)+))
    };
    ($level:expr, span!(parent: $parent:expr, $($rest:tt)+)) => {
        at_level!(@each $level, |L| tracing::span!(parent: $parent, L, $($rest)+))
    };
    ($level:expr, span!($($rest:tt)+)) => {
        at_level!(@each $level, |L| tracing::span!(L, $($rest)+))
    };
    (@each $level:expr, |$l:ident| $body:expr) => {
        match $level {
            Level::ERROR => { const $l: Level = Level::ERROR; $body }
            Level::WARN => { const $l: Level = Level::WARN; $body }
            Level::INFO => { const $l: Level = Level::INFO; $body }
            Level::DEBUG => { const $l: Level = Level::DEBUG; $body }
            _ => { const $l: Level = Level::TRACE; $body }
        }
    };
}

/// An optional number as a tracing field without allocating.
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// A failure's subcode as a field: the number, or `timeout` / `not_connected` for this crate's
/// own failures, or `none`.
struct Label<'a>(&'a Verdict);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.local_label() {
            Some(label) => f.write_str(label),
            None => Opt(self.0.sub_code).fmt(f),
        }
    }
}

/// The spans of a call that a subscriber records: the call's, and its attempt's while one is in
/// flight. Boxed, and built only when the call's span is enabled: a call nobody traces carries 8
/// bytes for it and allocates nothing.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) call: tracing::Span,
    pub(crate) attempt: tracing::Span,
}

/// What a call without a [`Trace`] reports to.
static UNTRACED: tracing::Span = tracing::Span::none();

/// The call's span, or a disabled one.
#[inline]
pub(crate) fn call_span(trace: Option<&Trace>) -> &tracing::Span {
    trace.map_or(&UNTRACED, |t| &t.call)
}

/// Everything a layer reports to.
pub(crate) struct Reporter {
    config: ObserveConfig,
    // `None` when no recorder was installed as the layer was built: every handle would be a
    // no-op, so a call skips the metrics altogether (each failure's series lookup included).
    metrics: Option<Metrics>,
    observer: Option<Arc<dyn RetryObserver>>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("config", &self.config)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// Resolves the metric handles against the recorder installed now.
    pub(crate) fn new(config: ObserveConfig, observer: Option<Arc<dyn RetryObserver>>) -> Self {
        Self { metrics: Metrics::resolve(&config), config, observer }
    }

    pub(crate) fn config(&self) -> &ObserveConfig {
        &self.config
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn RetryObserver>> {
        self.observer.as_ref()
    }

    /// Whether anything reads a successful call's duration: the duration histogram of a live
    /// recorder, or an observer. (Give-up events always get theirs.)
    pub(crate) fn needs_elapsed(&self) -> bool {
        self.metrics.is_some() || self.observer.is_some()
    }

    /// The span of one call through the layer.
    fn span(&self) -> tracing::Span {
        at_level!(
            self.config.span_level,
            span!(
                "callagent.create",
                layer = %self.config.name,
                attempts = tracing::field::Empty,
                outcome = tracing::field::Empty,
                subcode = tracing::field::Empty,
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        )
    }

    /// The spans of a new call, if a subscriber records its span; `None` (nothing allocated, no
    /// attempt spans) otherwise.
    #[inline(always)]
    pub(crate) fn trace(&self) -> Option<Box<Trace>> {
        // With no subscriber (or one filtering the level out) the global max level says so in
        // one load: the span's callsite is not even consulted.
        if self.config.span_level > tracing::level_filters::LevelFilter::current() {
            return None;
        }
        self.new_trace()
    }

    #[inline(never)]
    fn new_trace(&self) -> Option<Box<Trace>> {
        let call = self.span();
        (!call.is_disabled()).then(|| Box::new(Trace { call, attempt: tracing::Span::none() }))
    }

    /// Opens the span of attempt number `attempt` (a child of the call's), made `delay` after the
    /// failure before it (zero for the first).
    pub(crate) fn open_attempt(&self, trace: &mut Trace, attempt: u32, delay: Duration) {
        trace.attempt = at_level!(
            self.config.span_level,
            span!(
                parent: &trace.call,
                "callagent.attempt",
                // Signed: OpenTelemetry has no unsigned integers (tracing-opentelemetry turns a
                // u64 into a string).
                callagent.attempt = i64::from(attempt),
                callagent.retry.delay = delay.as_secs_f64(),
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                callagent.code = tracing::field::Empty,
                callagent.subcode = tracing::field::Empty,
                callagent.category = tracing::field::Empty,
                callagent.retryable = tracing::field::Empty,
            )
        );
    }

    /// The attempt in flight failed as `v`: recorded on its span, which then closes.
    pub(crate) fn close_failed_attempt(&self, trace: &mut Trace, v: &Verdict) {
        let span = std::mem::replace(&mut trace.attempt, tracing::Span::none());
        span.record("error.type", tracing::field::display(Label(v)));
        span.record("otel.status_code", "error");
        if let Some(code) = v.code {
            span.record("callagent.code", i64::from(code));
        }
        if let Some(sub_code) = v.sub_code {
            span.record("callagent.subcode", i64::from(sub_code));
        }
        span.record("callagent.category", v.category.as_str());
        span.record("callagent.retryable", v.retry);
    }

    /// The retry budget would allow `available` retries now.
    pub(crate) fn budget(&self, available: u64) {
        if let Some(m) = &self.metrics {
            m.on_budget(available);
        }
    }

    #[inline]
    pub(crate) fn attempt(&self) {
        if let Some(m) = &self.metrics {
            m.on_attempt();
        }
        if let Some(o) = &self.observer {
            o.on_attempt();
        }
    }

    #[inline]
    pub(crate) fn failure(&self, v: &Verdict) {
        if let Some(m) = &self.metrics {
            m.on_failure(v);
        }
        if let Some(o) = &self.observer {
            o.on_failure(v);
        }
    }

    /// A retry was decided after attempt number `attempt`.
    // Always inlined: tracing's level check is a load and a compare, cheaper than the call.
    #[inline(always)]
    pub(crate) fn retry_scheduled(&self, v: &Verdict, attempt: u32, delay: Duration) {
        tracing::debug!(
            attempt,
            delay_ms = delay.as_secs_f64() * 1e3,
            code = %Opt(v.code),
            subcode = %Label(v),
            category = v.category.as_str(),
            "call agent creation failed; retrying",
        );
        if let Some(o) = &self.observer {
            o.on_retry_scheduled(v, delay);
        }
    }

    /// The retry's call is being made, `delay` after the failure in `v`.
    #[inline]
    pub(crate) fn retried(&self, v: &Verdict, delay: Duration) {
        if let Some(m) = &self.metrics {
            m.on_retry(v, delay);
        }
        if let Some(o) = &self.observer {
            o.on_retry(v, delay);
        }
    }

    /// The call succeeded: the hot path, with nothing to record on a span when there is none.
    #[inline]
    pub(crate) fn succeeded(&self, trace: Option<&Trace>, attempts: u32, elapsed: Duration) {
        let outcome = Outcome::success_at(attempts);
        if let Some(t) = trace {
            return self.finish(&t.call, outcome, None, attempts, elapsed);
        }
        self.publish(&Finished::new(outcome, attempts, elapsed, None));
    }

    /// Tells the metrics and the observer how a call ended.
    #[inline]
    fn publish(&self, call: &Finished) {
        if let Some(m) = &self.metrics {
            m.on_finish(call);
        }
        if let Some(o) = &self.observer {
            o.on_finish(call);
        }
    }

    /// The call ended; `failure` is the last failure's verdict, if there was one. `span` is the
    /// call's span (or `Span::none()`).
    pub(crate) fn finish(
        &self,
        span: &tracing::Span,
        outcome: Outcome,
        failure: Option<&Verdict>,
        attempts: u32,
        elapsed: Duration,
    ) {
        let recording = !span.is_disabled();
        if recording {
            span.record("attempts", i64::from(attempts));
            span.record("outcome", outcome.as_str());
            if !matches!(outcome, Outcome::Success | Outcome::SuccessAfterRetry) {
                span.record("error.type", outcome.as_str());
                span.record("otel.status_code", "error");
            }
        }
        if let Some(v) = failure {
            if recording {
                span.record("subcode", tracing::field::display(Label(v)));
            }
            let (code, subcode, category) = (Opt(v.code), Label(v), v.category.as_str());
            let remedy = v.remedy().unwrap_or("unknown subcode: see the error's code and message");
            if outcome == Outcome::Rejected {
                at_level!(
                    self.config.rejected_level,
                    event!(%code, %subcode, category, remedy, attempts,
                    "call agent creation rejected: not retryable")
                );
            } else {
                let elapsed_ms = elapsed.as_secs_f64() * 1e3;
                at_level!(
                    self.config.gave_up_level,
                    event!(%code, %subcode, category, remedy, attempts,
                    elapsed_ms, outcome = outcome.as_str(), "call agent creation gave up")
                );
            }
        } else if outcome == Outcome::Cancelled {
            tracing::debug!(attempts, "call agent creation cancelled by the caller");
        }
        self.publish(&Finished::new(outcome, attempts, elapsed, failure));
    }

    /// The inner service failed `poll_ready` before a call started: counted as a call that
    /// ended `service_failed` with no attempt (no duration or attempts sample: there was no call).
    pub(crate) fn not_ready(&self, failure: &Verdict) {
        let (code, subcode) = (Opt(failure.code), Label(failure));
        at_level!(
            self.config.gave_up_level,
            event!(%code, %subcode, category = failure.category.as_str(),
            outcome = Outcome::ServiceFailed.as_str(), "the inner service failed while becoming ready")
        );
        if let Some(m) = &self.metrics {
            m.on_not_ready();
        }
        if let Some(o) = &self.observer {
            o.on_finish(&Finished::new(Outcome::ServiceFailed, 0, Duration::ZERO, Some(failure)));
        }
    }
}
