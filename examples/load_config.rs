//! Loads a retry policy from a TOML file, validates it and builds the layer.
//!
//! ```text
//! cargo run --example load_config -- examples/retry.toml
//! ```
//!
//! An invalid file exits non-zero with the field and the reason.

use callagent_retry::{CallAgentRetryLayer, RetryConfig};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "examples/retry.toml".to_owned());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2);
    });
    let config = match RetryConfig::from_toml(&text) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let layer = CallAgentRetryLayer::new(config).expect("from_toml already validated");
    println!("{path}: valid");
    println!("{:#?}", layer.config());
}
