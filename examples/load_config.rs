//! Loads a config file (`[retry]`, `[observe]`, `[remedy]`), validates it and builds the retry layer.
//!
//! ```text
//! cargo run --example load_config -- examples/retry.toml
//! ```
//!
//! An invalid file exits non-zero with the field and the reason.

use callagent_retry::{CallAgentRetryLayer, Config};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "examples/retry.toml".to_owned());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2);
    });
    let layer = match Config::from_toml(&text).and_then(|config| CallAgentRetryLayer::from_config(&config)) {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    println!("{path}: valid");
    println!("{:#?}", layer.config());
    println!("{:#?}", layer.observe_config());
}
