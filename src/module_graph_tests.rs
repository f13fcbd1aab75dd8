//! Sibling modules import each other one way only: a module that needs a
//! sibling's internals while the sibling needs its own is two modules that
//! should be one, or a third both build on (`service/changes.rs`,
//! `http.rs` with its areas). This reads the sources, so a circle added
//! tomorrow fails here instead of showing up as a tangle later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Directories whose modules are siblings of each other.
const DIRECTORIES: [&str; 7] = [
    "service",
    "graphql",
    "graphql/types",
    "mcp",
    "http",
    "storage",
    "webhooks",
];

/// The identifiers following `prefix` in `text` (`super::plans::x` → `plans`).
fn named_after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(prefix).map(move |(at, _)| {
        let rest = &text[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

/// Each module of `directory` with the siblings it imports, unit tests aside.
fn imports(directory: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(directory);
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&root).expect("a source directory") {
        let path = entry.expect("an entry").path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|extension| extension == "rs") && name != "mod" {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_owned();
            sources.insert(name.to_owned(), code);
        }
    }
    let absolute = format!("crate::{}::", directory.replace('/', "::"));
    sources
        .iter()
        .map(|(name, code)| {
            let siblings = named_after(code, "super::")
                .chain(named_after(code, &absolute))
                .filter(|other| *other != name && sources.contains_key(*other))
                .map(str::to_owned)
                .collect();
            (name.clone(), siblings)
        })
        .collect()
}

/// A path from `from` back to itself, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("a path is never empty");
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn sibling_modules_import_each_other_without_a_circle() {
    let mut circles = Vec::new();
    for directory in DIRECTORIES {
        let graph = imports(directory);
        assert!(graph.len() > 1, "{directory} has modules to check");
        for module in graph.keys() {
            if let Some(circle) = circle_through(&graph, module) {
                circles.push(format!("{directory}: {}", circle.join(" → ")));
            }
        }
    }
    assert!(circles.is_empty(), "circles: {circles:#?}");
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("plans", vec!["drift"]),
        ("drift", vec!["changes", "plans"]),
        ("changes", vec![]),
    ]
    .into_iter()
    .map(|(name, imports)| {
        let imports = imports.into_iter().map(str::to_owned).collect();
        (name.to_owned(), imports)
    })
    .collect();
    assert_eq!(
        circle_through(&graph, "plans"),
        Some(vec!["plans".into(), "drift".into(), "plans".into()])
    );
    assert_eq!(circle_through(&graph, "changes"), None);
    let code = "use super::changes::{a, b};\nuse super::{Services, now};";
    assert_eq!(
        named_after(code, "super::").collect::<Vec<_>>(),
        ["changes", ""]
    );
}
