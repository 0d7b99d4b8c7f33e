//! The prose that restates the catalog is rendered from it, and checked: the README's catalog
//! block (the counts by source and the category table) and the dashboard's legend of subcodes.
//! A new catalog row fails this test until both say it.
//!
//! ```sh
//! UPDATE_DOCS=1 cargo test --test docs   # rewrite both from the catalog
//! ```

use std::path::Path;

use callagent_retry::ErrorCategory;
use callagent_retry::sdk::catalog::{self, Entry, Source};

const START: &str = "<!-- catalog:start (rendered from sdk::catalog by tests/docs.rs) -->";
const END: &str = "<!-- catalog:end -->";

fn count(source: Source) -> usize {
    catalog::entries().iter().filter(|e| e.source == source).count()
}

fn subcodes(keep: impl Fn(&Entry) -> bool) -> Vec<u32> {
    catalog::entries().iter().filter(|e| keep(e)).map(|e| e.sub_code).collect()
}

fn joined(codes: &[u32]) -> String {
    codes.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// "40001, 40002 and 40232".
fn listed(codes: &[u32]) -> String {
    match codes {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => {
            format!("{} and {last}", rest.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The README's catalog block, from the catalog.
fn readme_block() -> String {
    use ErrorCategory::{ExpectedError, UnexpectedClientError, UnexpectedServerError};
    let all = catalog::entries().len();
    let (page, behaviour, table) =
        (count(Source::SeedPage), count(Source::SdkBehaviour), count(Source::SdkTable));
    let client = subcodes(|e| e.category == UnexpectedClientError && !e.deterministic);
    let conflicts = subcodes(|e| e.category == UnexpectedClientError && !e.deterministic && e.code == 409);
    let server = subcodes(|e| e.category == UnexpectedServerError);
    let deterministic = subcodes(|e| e.category != ExpectedError && e.deterministic);
    let expected = subcodes(|e| e.category == ExpectedError);
    let mut out = format!(
        "`sdk::catalog::lookup(sub_code)` gives the code, a message, the category and a remedy for each of\n\
         {all} failures: the {page} distinct rows of the SDK's troubleshooting page (`Source::SeedPage`), {behaviour}\n\
         the shipped SDK throws during creation (`Source::SdkBehaviour`, most seen by the conformance suite\n\
         against the real SDK), and {table} more from the SDK's own error table (`Source::SdkTable`).\n\n\
         | category | subcodes | a retry… |\n|---|---|---|\n"
    );
    out += &format!(
        "| UnexpectedClientError | {} | usually helps ({} are 409s the SDK marks retryable: the code alone would stop them) |\n",
        joined(&client),
        listed(&conflicts)
    );
    out += &format!("| UnexpectedServerError | {} | usually helps |\n", joined(&server));
    out += &format!(
        "| UnexpectedClientError, deterministic | {} | never helps with the same input: fix the platform or options, or the token (refresh it) |\n",
        joined(&deterministic)
    );
    out += &format!(
        "| ExpectedError | {} | never helps: fix the token or its refresher, the CallClient's network options, dispose the other agent, use a new CallClient, fix the display name |\n",
        joined(&expected)
    );
    out
}

/// The dashboard's legend of subcodes (the "Errors by subcode and category" panel's
/// description), from the catalog: each row's subcode, message and what to do.
fn dashboard_legend() -> String {
    let mut out = String::from(
        "Failed attempts per second by SDK subcode and category. UnexpectedClientError and UnexpectedServerError subcodes are retried (but for the deterministic ones); ExpectedError ones are rejected and need an application fix.\n",
    );
    for e in catalog::entries() {
        let action =
            if e.category == ErrorCategory::ExpectedError || e.deterministic { "fix" } else { "retry" };
        out += &format!("\n- **{}** ({}, {action}): {}", e.sub_code, e.code, e.message.trim_end_matches('.'));
    }
    out += "\n- **no_subcode**: an error without a subcode (old SDKs), classified by its code";
    out += "\n- **other**: subcodes outside the catalog beyond the configured bound";
    out += "\n- **timeout**: this layer's own attempt timeout (code none)";
    out += "\n- **not_connected**: the agent was created but never connected (the connect check): the client cannot reach ACS; disposed and retried";
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn update() -> bool {
    std::env::var_os("UPDATE_DOCS").is_some()
}

#[test]
fn the_readme_says_what_the_catalog_holds() {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        panic!("README.md has no {START} ... {END} block");
    };
    let want = format!("{START}\n{}{END}", readme_block());
    let have = &text[a..b + END.len()];
    if update() {
        std::fs::write(&path, text.replacen(have, &want, 1)).expect("README.md written");
        return;
    }
    assert_eq!(
        have, want,
        "README.md's catalog block is not the catalog's: run UPDATE_DOCS=1 cargo test --test docs"
    );
}

#[test]
fn the_dashboard_legend_lists_every_catalogued_subcode() {
    const PANEL: &str = "Errors by subcode and category";
    let path = root().join("dashboards/callagent-retry.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let panel = panels.iter().find(|p| p["title"] == PANEL).expect("the subcode panel");
    let have = panel["description"].as_str().expect("its description");
    let want = dashboard_legend();
    if update() {
        let encoded = |s: &str| serde_json::to_string(s).expect("a JSON string");
        let rewritten = text.replacen(&encoded(have), &encoded(&want), 1);
        assert_ne!(rewritten, text, "the description was not found as written");
        std::fs::write(&path, rewritten).expect("the dashboard written");
        return;
    }
    assert_eq!(
        have, want,
        "the dashboard's legend is not the catalog's: run UPDATE_DOCS=1 cargo test --test docs"
    );
}

/// The renderings themselves: every subcode in exactly one row of the table, counts that add up.
#[test]
fn the_rendering_places_every_row_once() {
    let block = readme_block();
    for e in catalog::entries() {
        let rows = block
            .lines()
            .filter(|l| l.starts_with('|') && l.split(' ').any(|w| w == e.sub_code.to_string()))
            .count();
        assert_eq!(rows, 1, "{} is in {rows} rows of the table", e.sub_code);
    }
    assert_eq!(
        count(Source::SeedPage) + count(Source::SdkBehaviour) + count(Source::SdkTable),
        catalog::entries().len()
    );
    let legend = dashboard_legend();
    assert!(catalog::entries().iter().all(|e| legend.contains(&format!("**{}**", e.sub_code))));
}
