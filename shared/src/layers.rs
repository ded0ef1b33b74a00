//! The crate's layers, and the test that keeps them: a module imports only
//! modules of a lower layer (`crate::x` in its code, tests included), so
//! the rules at the bottom know nothing of the engines and services that use
//! them. A new top-level module gets a layer here before the test passes.
//!
//! The test reads the sources (no parsing beyond `crate::` paths, comment
//! lines skipped), so it costs nothing to run and names the file and line of
//! each edge that points up or sideways.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. Modules of one layer do not
/// import each other.
const LAYERS: &[&[&str]] = &[
    // Test support: skip loudly or fail (test builds only).
    &["test_support"],
    // Identifiers, the retry policy, AWS SDK set-up, the clock, small
    // generic helpers (error chains, a TTL cache, request pacing, inert text).
    &["ids", "retry", "aws", "clock", "errors", "ttl_cache", "pacing", "text"],
    // Which process holds a run; the `Secret` type and its resolvers; where
    // a deployed config is kept.
    &["liveness", "secrets", "config_store"],
    // The configuration (cron and time zone reading included); HTTP support.
    &["config", "http"],
    // Reading the Memory API (and its model of a memory); schedules.
    &["memory_api", "schedule"],
    // The state stores (the ledger remembers where a memory was recorded);
    // memory -> document (pure).
    &["state", "transform"],
    // Logs, metrics, alerts; enrichment services; the LightRAG sinks.
    &["telemetry", "enrich", "lightrag"],
    // From a LightRAG answer back to the memories (provenance, `ask`).
    &["provenance"],
    // The use-cases: one sync run; status snapshots; an operator's reset,
    // pause and retry; deploying a config.
    &["sync", "status", "admin", "deploy"],
    // The management API; the adapters a config asks for, built once.
    &["api", "wiring"],
    // The long-running service and the Lambda wiring.
    &["service", "serverless"],
];

/// Files that are not a module's code.
const NOT_MODULES: &[&str] = &["lib", "layers"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`state/json/tests.rs` -> `state`).
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap_or(file);
    let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Every top-level module a line names through `crate::` (`crate::a::X`,
/// `crate::{a::X, b}`).
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // `connector_core::...` in a log target, `my_crate::`.
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(leading_ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(leading_ident(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

fn leading_ident(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// (file, line number, importing module, imported module) for every `crate::` path.
fn edges() -> Vec<(PathBuf, usize, String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut edges = Vec::new();
    for file in files {
        let from = module_of(&file);
        if NOT_MODULES.contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in crate_paths(line) {
                if to != from {
                    edges.push((file.clone(), n + 1, from.clone(), to));
                }
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| !NOT_MODULES.contains(&m.as_str()) && layer_of(m).is_none())
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "modules without a layer (add them to LAYERS in shared/src/layers.rs): {missing:?}");
}

#[test]
fn imports_point_down() {
    let mut wrong: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (file, line, from, to) in edges() {
        let (Some(from_layer), Some(to_layer)) = (layer_of(&from), layer_of(&to)) else { continue };
        if to_layer >= from_layer {
            let at = format!("{}:{line}", file.strip_prefix(src()).unwrap_or(&file).display());
            wrong.entry((from, to)).or_default().push(at);
        }
    }
    let report: Vec<String> = wrong
        .iter()
        .map(|((from, to), places)| format!("{from} -> {to} (a layer not below it) at {}", places.join(", ")))
        .collect();
    assert!(report.is_empty(), "imports that do not point down (shared/src/layers.rs):\n{}", report.join("\n"));
}

/// Modules of `state/` that implement [`crate::state::StateStore`] as a
/// decorator forwarding to another store (which runs the suite itself).
/// Empty: a decorator passing the suite is the better proof.
const STORE_DECORATORS: &[&str] = &[];

/// Every state store (a module of `state/` with `impl StateStore for` in
/// any of its files) runs the one conformance suite in its tests, so a store
/// added later cannot skip it.
#[test]
fn every_store_runs_the_conformance_suite() {
    let state = src().join("state");
    let mut stores = Vec::new();
    for entry in std::fs::read_dir(&state).expect("src/state") {
        let path = entry.expect("src/state entry").path();
        let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A module is `x.rs` and/or the folder `x/`.
        let (file, folder) = if path.is_dir() {
            (path.with_extension("rs"), path.clone())
        } else {
            (path.clone(), path.with_extension(""))
        };
        if stores.iter().any(|(n, _)| *n == name) || name == "mod" {
            continue;
        }
        let mut files = Vec::new();
        if file.is_file() {
            files.push(file);
        }
        if folder.is_dir() {
            rust_files(&folder, &mut files);
        }
        let texts: Vec<String> = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
        if !texts.iter().any(|t| t.contains("impl StateStore for")) || STORE_DECORATORS.contains(&name.as_str()) {
            continue;
        }
        let runs = texts.iter().any(|t| t.contains("conformance::run_all("));
        stores.push((name, runs));
    }
    let names: Vec<&str> = stores.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"json") && names.contains(&"sqlite") && names.contains(&"dynamodb"), "{names:?}");
    let skipping: Vec<&str> = stores.iter().filter(|(_, runs)| !runs).map(|(n, _)| n.as_str()).collect();
    assert!(skipping.is_empty(), "stores whose tests do not call conformance::run_all: {skipping:?}");
}

#[test]
fn the_path_reader_sees_single_and_grouped_paths() {
    assert_eq!(crate_paths("use crate::config::{A, B};"), ["config"]);
    assert_eq!(crate_paths("use crate::{ids::X, sync::{Y, Z}, state};"), ["ids", "sync", "state"]);
    assert_eq!(crate_paths("let a = crate::x::f(crate::y::g());"), ["x", "y"]);
    assert_eq!(crate_paths(r#"&["connector_core::sync"]"#), Vec::<String>::new());
    assert!(layer_of("ids") < layer_of("sync"));
    // The scan sees the crate's real imports (an empty scan would pass anything).
    assert!(edges().iter().any(|(_, _, from, to)| from == "sync" && to == "state"));
}
