//! Renders the conformance suite's last results (`target/conformance/*.json`, written by
//! `websdk/conformance.sh`) into the README's "What the real SDK does" table, between the
//! `<!-- conformance:start -->` and `<!-- conformance:end -->` markers.
//!
//! ```text
//! cargo run -p callagent-websdk --example conformance_table             # rewrite README.md
//! cargo run -p callagent-websdk --example conformance_table -- --print  # print the table only
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

#[path = "../tests/common/row.rs"]
mod row;
use row::Row;

const START: &str = "<!-- conformance:start -->";
const END: &str = "<!-- conformance:end -->";

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn load(part: &str) -> Result<Vec<Row>, String> {
    let path = root().join("target/conformance").join(format!("{part}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e} (run websdk/conformance.sh first)", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn table() -> Result<String, String> {
    let mut out = String::new();
    out.push_str("Local token checks (each answers in well under a second; a token that passes them reaches for the network):\n\n");
    out.push_str("| case | agent | the SDK says | category | ms | preflight |\n|---|---|---|---|---:|---|\n");
    for r in load("tokens")? {
        let verdict = if r.agrees {
            format!("{} ✓", r.preflight)
        } else {
            format!("{} (deliberate: {})", r.preflight, r.note)
        };
        out.push_str(&format!(
            "| {} ({}) | {} | {} | {} | {} | {} |\n",
            r.case,
            r.what,
            r.agent,
            r.sdk.replace('|', "\\|"),
            r.category,
            r.took_ms,
            verdict
        ));
    }
    out.push_str("\nNo network (the isolated namespace), and creations that race:\n\n");
    out.push_str("| case | agent | the SDK does | ms |\n|---|---|---|---:|\n");
    for r in load("unreachable")?.into_iter().chain(load("concurrency")?) {
        out.push_str(&format!("| {} ({}) | {} | {} | {} |\n", r.case, r.what, r.agent, r.sdk, r.took_ms));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let table = match table() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance_table: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().any(|a| a == "--print") {
        print!("{table}");
        return ExitCode::SUCCESS;
    }
    let readme = root().join("README.md");
    let text = match std::fs::read_to_string(&readme) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance_table: cannot read {}: {e}", readme.display());
            return ExitCode::FAILURE;
        }
    };
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        eprintln!("conformance_table: README.md has no {START} ... {END} markers");
        return ExitCode::FAILURE;
    };
    let updated = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    if let Err(e) = std::fs::write(&readme, updated) {
        eprintln!("conformance_table: cannot write {}: {e}", readme.display());
        return ExitCode::FAILURE;
    }
    println!("README.md: conformance table updated");
    ExitCode::SUCCESS
}
