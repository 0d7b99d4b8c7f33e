//! The watcher: the task that owns a running browser, drives its DevTools connection (the
//! driver's handler), notices its death, and ends it: the only place that kills, reaps and
//! cleans up.

use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::Handler;
use chromiumoxide::cdp::browser_protocol::target::{
    DisposeBrowserContextParams, EventTargetCrashed, EventTargetDestroyed,
};
use chromiumoxide::error::CdpError;
use futures::StreamExt;
use tokio::process::Child;
use tokio::time::Instant;

use super::instance::Instance;
use super::{CLOSE_TIMEOUT, Death, PROCESS_CHECK, remove_dir};
use crate::{procfs, transport};

/// The watcher: drives the DevTools connection and ends the browser when it dies or is asked to.
pub(super) async fn watch(
    instance: Arc<Instance>,
    mut handler: Handler,
    mut child: Option<Child>,
    relay: transport::Endpoint,
) {
    // Listening goes through the handler, so it is driven while the listeners are registered.
    let listen = async {
        let guard = instance.browser.read().await;
        let browser = guard.as_ref()?;
        let crashed = browser.event_listener::<EventTargetCrashed>().await.ok();
        let destroyed = browser.event_listener::<EventTargetDestroyed>().await.ok();
        Some((crashed, destroyed))
    };
    tokio::pin!(listen);
    let (mut crashed, mut destroyed) = loop {
        tokio::select! {
            listening = &mut listen => break listening.unwrap_or((None, None)),
            event = handler.next() => if event.is_none() { break (None, None) },
        }
    };
    let mut check = tokio::time::interval(PROCESS_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (death, why) = loop {
        tokio::select! {
            event = handler.next() => match event {
                None => break (Death::Disconnected, "the DevTools connection closed".to_owned()),
                Some(Ok(())) => {}
                // An event this driver cannot decode is not the end of the connection.
                Some(Err(CdpError::InvalidMessage(..))) => {}
                Some(Err(e @ (CdpError::Ws(_) | CdpError::Io(_) | CdpError::ChannelSendError(_)))) => {
                    break match instance.pid.filter(|p| !procfs::alive(*p)) {
                        Some(pid) => (Death::Exited, format!("the Chromium process (pid {pid}) exited")),
                        None => (Death::Disconnected, format!("the DevTools connection failed: {e}")),
                    };
                }
                Some(Err(e)) => tracing::trace!(error = %e, "DevTools event not understood; ignored"),
            },
            _ = check.tick() => if let Some(pid) = instance.pid.filter(|p| !procfs::alive(*p)) {
                break (Death::Exited, format!("the Chromium process (pid {pid}) exited"));
            },
            Some(event) = next(&mut crashed) => {
                tracing::warn!(target_id = ?event.target_id, "a page crashed; its agents are gone");
                instance.page_gone(&event.target_id);
            },
            Some(event) = next(&mut destroyed) => instance.page_gone(&event.target_id),
            _ = instance.shutdown.cancelled() => break (Death::Closed, "closed".to_owned()),
        }
    };
    instance.die(death, why.clone());
    if death == Death::Closed {
        tracing::debug!(pid = instance.pid, "closing Chromium");
    } else {
        tracing::warn!(pid = instance.pid, cause = %why, "Chromium is gone; creations in flight fail");
    }
    // Every reader races `died`, so the write lock comes at once.
    let browser = instance.browser.write().await.take();
    if let Some(mut browser) = browser
        && death == Death::Closed
    {
        let closing = async {
            let ask = async {
                match instance.context.get() {
                    // A remote browser is not ours to close: what the service opened in it goes,
                    // now rather than when it notices the connection gone.
                    Some(context) if instance.remote => {
                        let _ = browser.execute(DisposeBrowserContextParams::new(context.clone())).await;
                    }
                    _ if instance.remote => {}
                    _ => {
                        let _ = browser.close().await;
                    }
                }
            };
            tokio::pin!(ask);
            // The handler carries the command and its answer.
            loop {
                tokio::select! {
                    _ = &mut ask => break,
                    event = handler.next() => if event.is_none() { return },
                }
            }
            if !instance.remote {
                while handler.next().await.is_some() {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
    drop(relay);
    if let Some(child) = child.as_mut() {
        // Kill (a no-op on an exited process) and reap: no zombie.
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if let (Some(dir), Some(profile)) = (&instance.dir, instance.profile()) {
        // Its helpers (network service, renderers) end a moment after it, and may write into
        // the profile as they go: the profile is removed once none is left.
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while !procfs::processes_of(&profile).is_empty() {
            if Instant::now() >= deadline {
                tracing::warn!(profile = %profile.display(), "Chromium helpers outlived their browser");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remove_dir(dir);
        // The service's own directory goes with its last browser (not while another is in it).
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    instance.ended.cancel();
}

async fn next<T>(stream: &mut Option<chromiumoxide::listeners::EventStream<T>>) -> Option<Arc<T>>
where
    T: chromiumoxide::cdp::IntoEventKind + Unpin,
{
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
