//! What a Rust source file imports from its own crate, read as text: the shared reader of the
//! layering tests (`tests/layering.rs`, and `websdk/src/lib.rs`'s unit test, which includes this
//! file by path).

/// `source` without its comments (line comments, doc comments included) and its unit tests
/// (a `#[cfg(test)]` module, last in its file): the code that ships.
pub(crate) fn code(source: &str) -> String {
    let shipped = source.find("#[cfg(test)]\nmod ").map_or(source, |at| &source[..at]);
    shipped
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a source file names through `crate::` (`crate::x::y`, `crate::{x, y::z}`): each name's
/// first segment, modules and root items alike.
pub(crate) fn named(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in source.match_indices("crate::") {
        let rest = &source[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|n| n.trim().split("::").next().unwrap_or("").to_owned()));
        } else {
            names.push(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
        }
    }
    names.retain(|n| !n.is_empty());
    names
}
