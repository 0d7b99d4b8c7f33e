//! Fixing ExpectedErrors before they happen: preflight, remedy hooks and single flight in front
//! of the simulated backend.
//!
//! ```text
//! cargo run --example fix_expected_errors
//! ```
//!
//! 1. A Teams token on an ACS agent is refused by preflight with 403/40229, before any backend call.
//! 2. An expired token (40235) is refreshed by the application's token source and the call made
//!    once more.
//! 3. An identity whose agent is alive: the simulator, as the real SDK, hands back that agent.
//! 4. Ten creations for one identity in the same tick: the SDK answers 409/40228 to all but one.
//!    The dispose hook disposes the winner's agent and creates another; `create_again_on_race`
//!    creates again and gets the winner's agent; single flight avoids the race.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use callagent_retry::preflight::PreflightLayer;
use callagent_retry::remedy::RemedyConfig;
use callagent_retry::remedy::RemedyLayer;
use callagent_retry::sdk::AgentKind;
use callagent_retry::sim::{BackendConfig, SimBackend, SimToken, request};
use callagent_retry::single_flight::SingleFlightLayer;
use callagent_retry::{CallAgentRetryLayer, Config};
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let backend = SimBackend::new(BackendConfig::default());
    let refreshes = Arc::new(AtomicU32::new(0));
    let (counter, to_dispose) = (refreshes.clone(), backend.clone());
    let config = Config {
        remedy: RemedyConfig { refresh_token: true, dispose_existing_agent: true, ..Default::default() },
        ..Config::default()
    };
    let remedy = RemedyLayer::builder(&config.remedy)
        .token_source(move |identity: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(SimToken::Acs.mint(&identity)) } // your token service goes here
        })
        .dispose(move |identity: String| {
            let backend = to_dispose.clone();
            async move {
                backend.dispose(&identity); // your CallAgent.dispose() goes here
                Ok(())
            }
        })
        .build()?; // refused if the config switches on a hook without its function
    let single_flight = SingleFlightLayer::new();
    // The order of docs/fixing-expected-errors.md ("The order of the layers"); the simulator's
    // agents connect at once, so the connect check is left out here.
    let svc = ServiceBuilder::new()
        .layer(CallAgentRetryLayer::from_config(&config)?)
        .layer(single_flight.clone())
        .layer(remedy)
        .layer(PreflightLayer::new())
        .service(backend.clone());

    let calls = || backend.stats().calls;
    let before = calls();
    match svc.clone().oneshot(request("8:acs:teams-user", SimToken::Teams, AgentKind::Acs)).await {
        Err(err) => println!("1. Teams token on an ACS agent: {err}"),
        Ok(_) => return Err("a Teams token on an ACS agent was accepted".into()),
    }
    println!("   backend calls made: {}\n", calls() - before);

    let before = calls();
    let agent = svc.clone().oneshot(request("8:acs:ann", SimToken::Expired, AgentKind::Acs)).await?;
    println!(
        "2. expired token: created agent {} after {} refresh; backend calls: {}",
        agent.id,
        refreshes.load(Ordering::SeqCst),
        calls() - before
    );
    println!("   (preflight caught the expiry, so the only backend call carried the fresh token)\n");

    let before = calls();
    let agent = svc.clone().oneshot(request("8:acs:ann", SimToken::Acs, AgentKind::Acs)).await?;
    println!(
        "3. ann already has an agent: the SDK hands back agent {}; backend calls: {}\n",
        agent.id,
        calls() - before
    );

    // 4. Ten creations for one identity in the same tick, three ways, each on a fresh backend.
    for way in ["the dispose hook", "create_again_on_race", "single flight"] {
        let backend = SimBackend::new(BackendConfig::default());
        let to_dispose = backend.clone();
        let config = RemedyConfig {
            dispose_existing_agent: way == "the dispose hook",
            create_again_on_race: way == "create_again_on_race",
            ..Default::default()
        };
        let remedy = RemedyLayer::builder(&config)
            .dispose(move |identity: String| {
                let backend = to_dispose.clone();
                async move {
                    backend.dispose(&identity);
                    Ok(())
                }
            })
            .build()?;
        let single_flight = SingleFlightLayer::new();
        let svc = ServiceBuilder::new()
            .option_layer((way == "single flight").then(|| single_flight.clone()))
            .layer(remedy)
            .service(backend.clone());
        let creations: Vec<_> = (0..10)
            .map(|_| tokio::spawn(svc.clone().oneshot(request("8:acs:bo", SimToken::Acs, AgentKind::Acs))))
            .collect();
        let mut ok = 0;
        for c in creations {
            ok += usize::from(c.await?.is_ok());
        }
        let stats = backend.stats();
        println!(
            "4. ten creations for bo in one tick, {way}: {ok} got an agent; 40228 {} times, agents \
             created {}, existing handed back {}",
            stats.failures.get(&40228).copied().unwrap_or(0),
            stats.created,
            stats.existing,
        );
    }
    Ok(())
}
