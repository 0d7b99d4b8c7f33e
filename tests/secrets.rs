//! No token text anywhere: tracing output, metric names and labels, Debug and Display.

mod common;

use callagent_retry::preflight::PreflightLayer;
use callagent_retry::remedy::RemedyConfig;
use callagent_retry::remedy::RemedyLayer;
use callagent_retry::retry::Jitter;
use callagent_retry::sdk::AccessToken;
use callagent_retry::sdk::{AgentKind, CreateAgentRequest};
use callagent_retry::sim::{BackendConfig, SimBackend, SimToken};
use callagent_retry::single_flight::SingleFlightLayer;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use metrics_util::debugging::DebuggingRecorder;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn no_token_text_in_logs_metrics_debug_or_display() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let out = common::Captured::default();
    let _guard = tracing::subscriber::set_default(out.subscriber());

    let backend = SimBackend::new(BackendConfig {
        failures: [(40114, 0.3), (44110, 0.1)].into(),
        ..Default::default()
    });
    let remedies = RemedyConfig { refresh_token: true, dispose_existing_agent: true, ..Default::default() };
    let dispose_backend = backend.clone();
    let remedy = RemedyLayer::builder(&remedies)
        .token_source(|identity: String| async move { Ok(SimToken::Acs.mint(&identity)) })
        .dispose(move |identity: String| {
            let b = dispose_backend.clone();
            async move {
                b.dispose(&identity);
                Ok(())
            }
        })
        .build()
        .unwrap();
    let retry =
        CallAgentRetryLayer::new(RetryConfig { jitter: Jitter::Full, seed: Some(9), ..Default::default() })
            .unwrap();
    let svc = ServiceBuilder::new()
        .layer(retry)
        .layer(SingleFlightLayer::new())
        .layer(remedy)
        .layer(PreflightLayer::new())
        .service(backend.clone());

    let mut seen_tokens = Vec::new();
    let mut rendered = String::new();
    let kinds = [SimToken::Acs, SimToken::Expired, SimToken::Teams, SimToken::BadScope, SimToken::Acs];
    for (i, kind) in kinds.iter().cycle().take(200).enumerate() {
        let identity = format!("8:acs:user-{}", i % 7);
        let token = kind.mint(&identity);
        seen_tokens.push(token.expose_secret().to_owned());
        let request = CreateAgentRequest::new(identity, token.clone(), AgentKind::Acs);
        rendered += &format!("{request:?} {token} {token:?}\n");
        match svc.clone().oneshot(request).await {
            Ok(agent) => rendered += &format!("{agent:?}\n"),
            Err(e) => rendered += &format!("{e} {e:?}\n"),
        }
    }
    // And a token that is not a JWT at all.
    let opaque = AccessToken::new("opaque-secret-token-text");
    seen_tokens.push(opaque.expose_secret().to_owned());
    let r = CreateAgentRequest::new("8:acs:x", opaque, AgentKind::Acs);
    rendered += &format!("{r:?}\n");
    rendered += &format!("{:?}\n", svc.clone().oneshot(r).await);

    let logs = out.text();
    assert!(logs.contains("rejected") && logs.contains("remedy hook ran"), "the suite exercised the paths");
    let mut labels = String::new();
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        labels += key.key().name();
        for l in key.key().labels() {
            labels += &format!(" {}={}", l.key(), l.value());
        }
        labels.push('\n');
    }
    assert!(labels.contains("callagent_remedy_hooks_total"));
    for token in &seen_tokens {
        // The whole token, and its payload segment (the claims), must appear nowhere.
        let payload = token.split('.').nth(1).unwrap_or(token);
        for (what, text) in
            [("tracing output", &logs), ("metric labels", &labels), ("Debug/Display", &rendered)]
        {
            assert!(!text.contains(token.as_str()), "a token appeared in the {what}");
            assert!(!text.contains(payload), "a token's payload appeared in the {what}");
        }
    }
}
