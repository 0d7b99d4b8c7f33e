//! An agent whose connect check is recorded: the doctor lists what the check saw, the monitor
//! times the connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callagent_retry::connect::{BoxFuture, Connectable};
use callagent_websdk::{Agent, ConnectionState, HostReach, StateChange};
use tokio::time::Instant;

/// What the connect check saw of one created agent.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) created_in: Duration,
    pub(crate) initial: ConnectionState,
    pub(crate) changes: Vec<StateChange>,
    pub(crate) connected: bool,
    /// How long after the check began the agent was `Connected`.
    pub(crate) connected_after: Option<Duration>,
    /// The hosts its page had sent requests to when the check ended (hosts only).
    pub(crate) hosts: Vec<HostReach>,
}

/// A created agent, and where its connect check is recorded.
pub(crate) struct Watched {
    pub(crate) agent: Agent,
    pub(crate) log: Arc<Mutex<Vec<Watch>>>,
}

impl Watched {
    /// What was recorded of every agent the check judged, in order.
    pub(crate) fn read(log: &Mutex<Vec<Watch>>) -> Vec<Watch> {
        log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Connectable for Watched {
    fn connected_within(&mut self, within: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let began = Instant::now();
            let connected = Connectable::connected_within(&mut self.agent, within).await;
            let connected_after = connected.then(|| began.elapsed());
            let changes = self.agent.connection_state().await.map(|(_, c)| c).unwrap_or_default();
            let hosts = self.agent.tab().reach().await.unwrap_or_default();
            let watch = Watch {
                created_in: self.agent.creation_time(),
                initial: self.agent.initial_state().clone(),
                changes,
                connected,
                connected_after,
                hosts,
            };
            self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(watch);
            connected
        })
    }

    fn dispose(self) -> BoxFuture<'static, ()> {
        Connectable::dispose(self.agent)
    }
}

/// `Connected`, `Disconnected`, or the SDK's own word.
pub(crate) fn state_name(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected => "Connected".into(),
        ConnectionState::Disconnected => "Disconnected".into(),
        ConnectionState::Other(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
