//! Renders the conformance suite's last results (`target/conformance/sdk-VERSION/*.json`, written
//! by `websdk/conformance.sh` for each SDK version) into `docs/real-sdk.md`'s
//! tables, between the `<!-- conformance:start -->` and `<!-- conformance:end -->` markers: the
//! token grid per rule family and version, the hand-picked cases, no network and racing
//! creations.
//!
//! ```text
//! cargo run -p callagent-websdk --example conformance_table             # rewrite docs/real-sdk.md
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

/// A grid row, as `tests/grid.rs` writes it.
#[derive(serde::Deserialize)]
struct GridRow {
    family: String,
    agrees: bool,
    #[serde(default)]
    note: String,
}

/// The SDK versions with results, newest first (`target/conformance/sdk-VERSION/`).
fn versions() -> Result<Vec<String>, String> {
    let dir = root().join("target/conformance");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e} (run websdk/conformance.sh first)", dir.display()))?;
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("sdk-").map(str::to_owned))
        .collect();
    let key = |v: &String| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    versions.sort_by_key(|v| std::cmp::Reverse(key(v)));
    if versions.is_empty() {
        return Err(format!("no results in {} (run websdk/conformance.sh first)", dir.display()));
    }
    Ok(versions)
}

fn load<T: serde::de::DeserializeOwned>(version: &str, part: &str) -> Result<Vec<T>, String> {
    let path = root().join("target/conformance").join(format!("sdk-{version}")).join(format!("{part}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e} (run websdk/conformance.sh first)", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn table() -> Result<String, String> {
    let versions = versions()?;
    let latest = &versions[0];
    let mut out = String::new();
    out.push_str(&format!("SDK versions run: {} (newest first).\n\n", versions.join(", ")));
    out.push_str("The generated token grid (`tests/grid.rs`), per rule family: cases run and cases where the preflight predicts the SDK exactly or as the one deliberate difference.\n\n");
    out.push_str("| family |");
    for v in &versions {
        out.push_str(&format!(" SDK {v}: cases | agree |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|---:|".repeat(versions.len()));
    out.push('\n');
    let grids: Vec<Vec<GridRow>> = versions.iter().map(|v| load(v, "grid")).collect::<Result<_, _>>()?;
    let mut families: Vec<&str> = grids.iter().flatten().map(|r| r.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    for family in families.iter().copied().chain(["all"]) {
        out.push_str(&format!("| {family} |"));
        for grid in &grids {
            let rows: Vec<&GridRow> = grid.iter().filter(|r| family == "all" || r.family == family).collect();
            out.push_str(&format!(" {} | {} |", rows.len(), rows.iter().filter(|r| r.agrees).count()));
        }
        out.push('\n');
    }
    let mut notes: Vec<&str> =
        grids.iter().flatten().filter(|r| !r.note.is_empty()).map(|r| r.note.as_str()).collect();
    notes.sort_unstable();
    notes.dedup();
    for note in notes {
        out.push_str(&format!("\nDeliberate: {note}.\n"));
    }
    out.push_str("\nHand-picked cases, per version:");
    for v in &versions {
        let rows: Vec<Row> = load(v, "tokens")?;
        let agree = rows.iter().filter(|r| r.agrees && r.note.is_empty()).count();
        let deliberate = rows.iter().filter(|r| !r.note.is_empty()).count();
        out.push_str(&format!(
            " SDK {v}: {} cases, {agree} agree, {deliberate} deliberate differences;",
            rows.len()
        ));
    }
    out.pop();
    out.push_str(".\n\n");
    out.push_str(&format!("Local token checks, SDK {latest} (each answers in well under a second; a token that passes them reaches for the network):\n\n"));
    out.push_str("| case | agent | the SDK says | category | ms | preflight |\n|---|---|---|---|---:|---|\n");
    for r in load::<Row>(latest, "tokens")? {
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
    for v in &versions {
        out.push_str(&format!(
            "\nNo network (the isolated namespace), and creations that race, SDK {v}:\n\n"
        ));
        out.push_str("| case | agent | the SDK does | ms |\n|---|---|---|---:|\n");
        for r in load::<Row>(v, "unreachable")?.into_iter().chain(load::<Row>(v, "concurrency")?) {
            out.push_str(&format!("| {} ({}) | {} | {} | {} |\n", r.case, r.what, r.agent, r.sdk, r.took_ms));
        }
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
    let readme = root().join("docs/real-sdk.md");
    let text = match std::fs::read_to_string(&readme) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance_table: cannot read {}: {e}", readme.display());
            return ExitCode::FAILURE;
        }
    };
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        eprintln!("conformance_table: {} has no {START} ... {END} markers", readme.display());
        return ExitCode::FAILURE;
    };
    let updated = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    if let Err(e) = std::fs::write(&readme, updated) {
        eprintln!("conformance_table: cannot write {}: {e}", readme.display());
        return ExitCode::FAILURE;
    }
    println!("docs/real-sdk.md: conformance table updated");
    ExitCode::SUCCESS
}
