//! The crate's modules import one way: each names only modules of the layers below its own
//! (the crate docs' map, bottom first here), never a module above or beside it in a circle, and
//! never an item through the crate root (`crate::Config`), which would hide whose it is.
//! Doc comments may link anywhere, and a module's unit tests (its `#[cfg(test)]` module, last in
//! its file) may use any layer: only the code that ships is read.

use std::path::{Path, PathBuf};

// The reader both crates' layering tests use (websdk's unit test includes it too).
#[path = "support/imports.rs"]
mod imports;
use imports::{code, named};

/// Bottom first. A module may use the modules of the layers below its own.
const LAYERS: &[&[&str]] = &[
    // Vocabulary with no dependency: human-readable durations, config validation errors.
    &["human", "validate"],
    // The SDK's errors, catalog, tokens and requests.
    &["sdk"],
    // Pure rules over the SDK's vocabulary; the two layers that need nothing else.
    &["classify", "preflight", "single_flight"],
    // The connect check: judges an agent, classified as a failure of its own.
    &["connect"],
    // How a call ended (StopReason, Outcome): shared by the retry layer and its observers.
    &["outcome"],
    // Observers and the metrics adapter: they see what the retry layer decided.
    &["observe"],
    // The retry layer, and the remedy layer beside it.
    &["retry", "remedy"],
    // What reads the layer from outside: OpenTelemetry's adapter, the config file.
    &["otel", "config"],
    // The simulated backend and scenarios, which stack every layer.
    &["sim"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file of a module: its file, or all the files of its folder.
fn files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_owned()];
    }
    let mut all = Vec::new();
    for entry in std::fs::read_dir(path).expect("a module's folder") {
        all.extend(files(&entry.expect("an entry").path()));
    }
    all.retain(|f| f.extension().is_some_and(|e| e == "rs"));
    all
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("an entry").path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()).filter(|m| *m != "lib") else {
            continue;
        };
        let own = layer(module).unwrap_or_else(|| panic!("src/{module} is in no layer: add it to LAYERS"));
        for file in files(&path) {
            let source = std::fs::read_to_string(&file).expect("a source file");
            for name in named(&code(&source)) {
                let shown = file.strip_prefix(&src).unwrap_or(&file).display();
                if name == module {
                    continue;
                }
                match layer(&name) {
                    Some(theirs) if theirs < own => {}
                    Some(theirs) => wrong.push(format!("src/{shown} (layer {own}) uses `{name}` (layer {theirs})")),
                    None => wrong.push(format!(
                        "src/{shown} names `crate::{name}`: import an item from its module, not the crate root"
                    )),
                }
            }
        }
        seen += 1;
    }
    assert!(wrong.is_empty(), "modules import against the layers:\n{}", wrong.join("\n"));
    assert_eq!(
        seen,
        LAYERS.iter().map(|l| l.len()).sum::<usize>(),
        "a layer names a module that is not there"
    );
}

/// The reading itself: comments are skipped, groups and paths are split.
#[test]
fn the_reader_finds_what_code_names() {
    let source = "use crate::{retry::X, observe};\n/// [`y`](crate::sim)\nlet a = crate::Config::default(); // crate::sdk\n#[cfg(test)]\nmod tests { use crate::sim; }";
    assert_eq!(named(&code(source)), ["retry", "observe", "Config"]);
}
