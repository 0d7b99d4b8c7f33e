//! The main job over the real SDK: a token scenario through the retry layer over the web SDK
//! service, with the same per-subcode report as `simulate`.
//!
//! ```text
//! websdk/page/build.sh                  # once: npm ci + esbuild
//! unshare -n sh -c 'ip link set lo up && cargo run -p callagent-websdk --example monitor'
//! ```
//!
//! Each of five tokens (a valid ACS token, a Teams token on a CallAgent, a token without the
//! voip scope, a token whose payload cannot be decoded, an expired token with a token
//! refresher) is used for two creations. Without a network the valid one resolves to a
//! `Disconnected` agent after ~15 s, which the connect check catches (`not_connected`), disposes
//! and retries; the others fail in milliseconds with the SDK's own codes, which the layer
//! classifies and rejects. Refuses to run with a network unless given
//! `--allow-network` (then it talks to Azure with whatever tokens you change it to use).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callagent_retry::connect::ConnectLayer;
use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_retry::sim::Tally;
use callagent_retry::{CallAgentRetryLayer, RetryConfig};
use callagent_websdk::{WebSdk, WebSdkConfig};
use serde_json::json;
use tower::{Layer, ServiceExt};

fn isolated() -> bool {
    std::fs::read_to_string("/proc/self/net/dev")
        .map(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")))
        .unwrap_or(false)
}

fn requests() -> Vec<(&'static str, CreateAgentRequest)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let acs =
        json!({"skypeid": "acs:r_monitor", "acsScope": "chat,voip", "resourceId": "r", "exp": now + 3600});
    let teams = json!({"skypeid": "orgid:o", "acsScope": "voip", "tid": "t", "exp": now + 3600});
    let token = |c: &serde_json::Value| AccessToken::unsigned(c);
    let req = |c: &serde_json::Value, kind| CreateAgentRequest::new("8:acs:r_monitor", token(c), kind);
    let mut no_voip = acs.clone();
    no_voip["acsScope"] = json!("chat");
    let mut expired = acs.clone();
    expired["exp"] = json!(now - 60);
    vec![
        ("valid ACS token", req(&acs, AgentKind::Acs)),
        ("Teams token on a CallAgent", req(&teams, AgentKind::Acs)),
        ("no voip scope", req(&no_voip, AgentKind::Acs)),
        (
            "undecodable payload",
            CreateAgentRequest::new(
                "8:acs:r",
                AccessToken::new("eyJhbGciOiJub25lIn0.!!!.sig"),
                AgentKind::Acs,
            ),
        ),
        (
            "expired, token refresher",
            CreateAgentRequest { token_refresher: true, ..req(&expired, AgentKind::Acs) },
        ),
    ]
}

#[tokio::main]
async fn main() -> ExitCode {
    if !isolated() && !std::env::args().any(|a| a == "--allow-network") {
        eprintln!(
            "monitor: refusing to drive the real SDK with a network: run it inside a namespace with loopback alone:\n  \
             unshare -n sh -c 'ip link set lo up && cargo run -p callagent-websdk --example monitor'"
        );
        return ExitCode::FAILURE;
    }
    let sdk = match WebSdk::launch(WebSdkConfig::isolated()).await {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("monitor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Two attempts: with no network each valid creation takes ~15 s, then 5 s of connect check.
    let config =
        RetryConfig { max_attempts: 2, deadline: Some(Duration::from_secs(90)), ..RetryConfig::default() };
    let tally = Tally::new(config.max_attempts);
    let layer = match CallAgentRetryLayer::new(config) {
        Ok(layer) => layer.with_observer(Arc::clone(&tally)),
        Err(e) => {
            eprintln!("monitor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The connect check: an agent that has not connected 5 s after creation is disposed and the
    // creation retried (the SDK resolves, Disconnected, when it cannot reach the service).
    let svc = layer.layer(ConnectLayer::new(Some(Duration::from_secs(5))).layer(sdk.clone()));
    let wall = std::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for (what, request) in requests().into_iter().flat_map(|r| [r.clone(), r]) {
        let (svc, tally) = (svc.clone(), Arc::clone(&tally));
        calls.spawn(async move {
            tally.offered();
            let started = tokio::time::Instant::now();
            let result = svc.oneshot(request).await;
            let took = started.elapsed();
            match result {
                Ok(agent) => {
                    eprintln!("{what}: {:?} agent after {took:.1?}", agent.initial_state());
                    let _ = agent.dispose().await;
                    Some(took)
                }
                Err(e) => {
                    eprintln!("{what}: {e}");
                    None
                }
            }
        });
    }
    let mut times = vec![];
    while let Some(done) = calls.join_next().await {
        if let Ok(Some(t)) = done {
            times.push(t);
        }
    }
    let report = tally.report(
        "real-sdk-tokens",
        "Five tokens, two creations each, through the retry layer over the real Web Calling SDK 2.0.0 in headless Chromium, with no network.",
        times,
        wall.elapsed(),
    );
    println!("{report}");
    sdk.close().await;
    ExitCode::SUCCESS
}
