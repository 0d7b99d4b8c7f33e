//! Services and a baseline policy shared by the benches.
#![allow(dead_code)]

use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use callagent_retry::CallAgentError;
use tower::Service;
use tower::retry::Policy;

/// Creates an "agent" at once.
#[derive(Clone)]
pub struct Succeed;

impl Service<u32> for Succeed {
    type Response = u32;
    type Error = CallAgentError;
    type Future = Ready<Result<u32, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        ready(Ok(n))
    }
}

/// Fails every other call with 408/40114 (retryable): each call through a retry layer makes
/// exactly one retry.
#[derive(Clone, Default)]
pub struct FailEveryOther(Arc<AtomicU64>);

impl Service<u32> for FailEveryOther {
    type Response = u32;
    type Error = CallAgentError;
    type Future = Ready<Result<u32, CallAgentError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallAgentError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        if self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            ready(Err(CallAgentError::new(408, 40114, "timeout")))
        } else {
            ready(Ok(n))
        }
    }
}

/// The simplest useful tower policy: up to `n` retries, no delay, no classification. The
/// baseline for what retrying costs in tower itself.
#[derive(Clone)]
pub struct Attempts(pub usize);

impl<Req: Clone, Res, E> Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
}
