//! Creates one agent with a crafted token through the real web SDK and prints what happened.
//!
//! ```text
//! websdk/page/build.sh                                       # once: npm ci + esbuild
//! unshare -n sh -c 'ip link set lo up && cargo run -p callagent-websdk --example smoke -- acs'
//! ```

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use callagent_retry::sdk::{AccessToken, AgentKind, CreateAgentRequest};
use callagent_websdk::{WebSdk, WebSdkConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "chat".into());
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 3600;
    let scope = if which == "chat" { "chat" } else { "voip" };
    let claims = serde_json::json!({"skypeid": "acs:r_u", "acsScope": scope, "resourceId": "r", "exp": exp});
    let request = CreateAgentRequest::new("8:acs:r_u", AccessToken::unsigned(&claims), AgentKind::Acs);
    let sdk = match WebSdk::launch(WebSdkConfig::isolated()).await {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("smoke: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match sdk.create(&request).await {
        Ok(agent) => {
            println!("created: {agent:?} in {:?}", started.elapsed());
            println!("state now: {:?}", agent.connection_state().await);
            println!("dispose: {:?}", agent.dispose_and_close().await);
        }
        Err(e) => println!("failed in {:?}: {e} ({e:?})", started.elapsed()),
    }
    sdk.close().await;
    ExitCode::SUCCESS
}
