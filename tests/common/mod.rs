//! Test doubles shared by the integration tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use callagent_retry::classify::Verdict;
use callagent_retry::observe::{Finished, RetryObserver};
use callagent_retry::{CallAgentError, Outcome};
use tokio::time::Instant;
use tower::Service;

/// What one call of [`Scripted`] does.
#[derive(Clone, Debug)]
pub enum Step {
    Ok,
    Fail(CallAgentError),
    /// Never completes.
    Hang,
    /// Waits on tokio's clock, then does the step.
    After(Duration, Box<Step>),
}

pub fn fail(sub_code: u32) -> Step {
    Step::Fail(CallAgentError::from_catalog(sub_code).expect("catalog subcode"))
}

/// A service that plays a script, one step per call, then succeeds; it records when it was called.
#[derive(Clone, Default)]
pub struct Scripted {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    steps: VecDeque<Step>,
    /// Played once the script runs out; `None` means succeed.
    then: Option<Step>,
    calls: Vec<Instant>,
    in_flight: usize,
}

impl Scripted {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let s = Self::default();
        s.state.lock().unwrap().steps = steps.into_iter().collect();
        s
    }

    /// Fails `n` times with `sub_code`, then succeeds.
    pub fn failing(sub_code: u32, n: usize) -> Self {
        Self::new(std::iter::repeat_n(fail(sub_code), n))
    }

    /// Plays `step` for every call.
    pub fn always(step: Step) -> Self {
        let s = Self::default();
        s.state.lock().unwrap().then = Some(step);
        s
    }

    /// Calls whose future has not completed or been dropped.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }

    /// When each call was made.
    pub fn call_times(&self) -> Vec<Instant> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Gaps between consecutive calls: the waits, when calls complete instantly.
    pub fn gaps(&self) -> Vec<Duration> {
        let calls = &self.state.lock().unwrap().calls;
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<String, CallAgentError>> + Send>>;

fn play(step: Step) -> BoxFuture {
    Box::pin(async move {
        match step {
            Step::Ok => Ok("agent".to_owned()),
            Step::Fail(e) => Err(e),
            Step::Hang => std::future::pending().await,
            Step::After(d, next) => {
                tokio::time::sleep(d).await;
                play(*next).await
            }
        }
    })
}

impl<R> Service<R> for Scripted {
    type Response = String;
    type Error = CallAgentError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> BoxFuture {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Instant::now());
        s.in_flight += 1;
        let step = s.steps.pop_front().or_else(|| s.then.clone()).unwrap_or(Step::Ok);
        let guard = InFlight(self.state.clone());
        let fut = play(step);
        Box::pin(async move {
            let _guard = guard;
            fut.await
        })
    }
}

struct InFlight(Arc<Mutex<State>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

/// An observer that remembers everything it was told.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Events>>);

#[derive(Default, Debug)]
pub struct Events {
    pub attempts: u32,
    pub failures: Vec<Verdict>,
    pub retries: Vec<(Option<u32>, Duration)>,
    pub finished: Vec<(Outcome, u32)>,
}

impl Recorder {
    pub fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        self.0.lock().unwrap()
    }
}

impl RetryObserver for Recorder {
    fn on_attempt(&self) {
        self.0.lock().unwrap().attempts += 1;
    }
    fn on_failure(&self, verdict: &Verdict) {
        self.0.lock().unwrap().failures.push(*verdict);
    }
    fn on_retry(&self, verdict: &Verdict, delay: Duration) {
        self.0.lock().unwrap().retries.push((verdict.sub_code, delay));
    }
    fn on_finish(&self, call: &Finished) {
        self.0.lock().unwrap().finished.push((call.outcome, call.attempts));
    }
}

/// A global allocator that tracks live heap bytes, for memory-before-and-after checks. A test
/// binary opts in with `#[global_allocator] static A: common::CountingAlloc = common::CountingAlloc;`.
pub struct CountingAlloc;

static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

impl CountingAlloc {
    /// Heap bytes currently allocated.
    pub fn live_bytes() -> isize {
        LIVE.load(std::sync::atomic::Ordering::SeqCst)
    }
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// A `tracing` writer that keeps everything written, for asserting on log output.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// A subscriber writing every level into this buffer, without colours.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        self.subscriber_at(tracing::Level::TRACE)
    }

    /// A subscriber writing `level` and above into this buffer, without colours.
    pub fn subscriber_at(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }
}
