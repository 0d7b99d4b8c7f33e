//! Loads a config file (`[retry]`, `[observe]`, `[remedy]`), validates it and builds the retry layer.
//!
//! ```text
//! cargo run --example load_config -- examples/retry.toml
//! ```
//!
//! An invalid file exits non-zero with the field and the reason.

use std::path::PathBuf;
use std::process::ExitCode;

use callagent_retry::{CallAgentRetryLayer, Config};
use clap::Parser;

/// Checks a callagent-retry config file and prints what the layer will run with.
#[derive(Parser, Debug)]
struct Args {
    /// The config file (TOML with [retry], [observe] and [remedy] sections)
    #[arg(default_value = "examples/retry.toml")]
    path: PathBuf,
}

fn main() -> ExitCode {
    let Args { path } = Args::parse();
    let shown = path.display();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Config::from_toml(&text).and_then(|config| CallAgentRetryLayer::from_config(&config)) {
        Ok(layer) => {
            println!("{shown}: valid");
            println!("{:#?}", layer.config());
            println!("{:#?}", layer.observe_config());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{shown}: {e}");
            ExitCode::FAILURE
        }
    }
}
