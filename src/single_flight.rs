//! Per-identity single flight: creations for one identity never overlap, so an application can no
//! longer race itself into 40228 ("an agent for this identity already exists").
//!
//! A second creation for an identity waits until the first has finished, then proceeds (driving
//! the inner service to readiness only when its turn comes, so waiting holds no slot of it).
//! Different identities never wait on each other. An identity's entry is removed as soon as no
//! call holds or awaits it, so memory follows the identities in flight, not all ever seen.
//!
//! Each call through this layer is one boxed future (the wait for the identity's turn is
//! tokio's opaque `Mutex::lock` future, which cannot be named in a hand-written state machine);
//! the layer exists to serialize, so that cost is not on a hot path.
//!
//! ```
//! use callagent_retry::single_flight::SingleFlightLayer;
//! let layer = SingleFlightLayer::new();
//! assert_eq!(layer.identities_in_flight(), 0);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use crate::sdk::AgentRequest;

type Turns = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Builds [`SingleFlight`] services; every service from one layer (and their clones) shares the
/// per-identity turns.
#[derive(Clone, Default)]
pub struct SingleFlightLayer {
    turns: Turns,
}

impl SingleFlightLayer {
    /// A layer with no identity in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Identities with a creation running or waiting.
    pub fn identities_in_flight(&self) -> usize {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl fmt::Debug for SingleFlightLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlightLayer")
            .field("identities_in_flight", &self.identities_in_flight())
            .finish()
    }
}

impl<S> Layer<S> for SingleFlightLayer {
    type Service = SingleFlight<S>;

    fn layer(&self, inner: S) -> SingleFlight<S> {
        SingleFlight { inner, turns: Arc::clone(&self.turns) }
    }
}

/// The service [`SingleFlightLayer`] makes.
#[derive(Clone)]
pub struct SingleFlight<S> {
    inner: S,
    turns: Turns,
}

impl<S> fmt::Debug for SingleFlight<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

/// A place in an identity's queue; leaving it (done or dropped) frees the entry when it was the
/// last one.
struct Ticket {
    turns: Turns,
    identity: String,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this ticket's: nobody else holds or awaits the identity.
        if Arc::strong_count(&self.turn) == 2 {
            turns.remove(&self.identity);
        }
    }
}

impl<S, R> Service<R> for SingleFlight<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    S::Response: Send,
    R: AgentRequest + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    /// Always ready: the inner service is driven to readiness when the identity's turn comes.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let identity = request.identity().to_owned();
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(turns.entry(identity.clone()).or_default())
        };
        let ticket = Ticket { turns: Arc::clone(&self.turns), identity, turn };
        let inner = self.inner.clone();
        Box::pin(async move {
            // Borrowed, not cloned: only tickets count towards the entry's references, so the
            // last ticket to leave (finished or dropped mid-wait) removes it.
            let result = {
                let _turn = ticket.turn.lock().await;
                inner.oneshot(request).await
            };
            drop(ticket);
            result
        })
    }
}
