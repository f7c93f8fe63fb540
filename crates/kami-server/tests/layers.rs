//! The shape of the code, checked: the layering ARCHITECTURE.md describes is a test, not a
//! hope. Reads the workspace's sources as text (no build of other crates needed).
//!
//! - no import cycle between the top-level modules of any crate;
//! - in kami-server, services never reach up into `http`, `jobs` or `app`; `jobs` never into
//!   `http`; `state` and the building blocks never into `services`, `http`, `jobs` or `app`;
//! - the production server does not link the simulators (kami-sim only as a dev-dependency);
//! - no source file over 1,000 lines outside tests;
//! - `orders.status` is written by one module (the store's transitions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crate's top-level module a source file belongs to (`None` for lib.rs / main.rs).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// `crate::x` references, by top-level module, in code and comments alike, ignoring test
/// modules' lines after `#[cfg(test)]`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = top_module(src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = graph.entry(from.clone()).or_default();
        // Comments count too: a doc link to `crate::x` is a dependency on x for the reader.
        for line in code.lines() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                // `crate::{a, b}` names several modules.
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect()
                } else {
                    vec![rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")]
                };
                for n in names {
                    if !n.is_empty()
                        && n != from
                        && n.chars().next().is_some_and(char::is_lowercase)
                    {
                        deps.insert(n.to_owned());
                    }
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() {
    let mut checked = 0;
    for krate in crates() {
        let graph = module_graph(&krate.join("src"));
        checked += graph.len();
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{}: module cycle {}", krate.display(), cycle.join(" → "));
        }
    }
    assert!(
        checked > 20,
        "only {checked} modules found: is the scan broken?"
    );
}

#[test]
fn server_layers_depend_inward() {
    let graph = module_graph(&workspace().join("crates/kami-server/src"));
    let uses = |m: &str| graph.get(m).cloned().unwrap_or_default();
    let upper = ["app", "http", "jobs"];
    for m in ["services"] {
        for u in upper {
            assert!(!uses(m).contains(u), "{m} must not use {u}: {:?}", uses(m));
        }
    }
    assert!(!uses("jobs").contains("http"), "jobs must not use http");
    for (m, deps) in &graph {
        if ["app", "http", "jobs", "services"].contains(&m.as_str()) {
            continue;
        }
        for u in ["app", "http", "jobs", "services"] {
            assert!(
                !deps.contains(u),
                "building block `{m}` must not use `{u}` (uses {deps:?})"
            );
        }
    }
    // The scan itself works: the known edges are seen.
    assert!(uses("http").contains("services"));
    assert!(uses("jobs").contains("services"));
    assert!(uses("services").contains("state"));
}

#[test]
fn the_production_server_does_not_link_the_simulators() {
    let manifest =
        std::fs::read_to_string(workspace().join("crates/kami-server/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap();
    assert!(!deps.contains("kami-sim"), "kami-sim in [dependencies]");
    assert!(manifest.contains("[dev-dependencies]"));
}

#[test]
fn no_source_file_over_1000_lines_outside_tests() {
    let mut files = Vec::new();
    for krate in crates() {
        rust_files(&krate.join("src"), &mut files);
    }
    assert!(files.len() > 50);
    let long: Vec<String> = files
        .iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !(name == "tests.rs"
                || name == "vectors.rs"
                || f.components().any(|c| c.as_os_str() == "tests"))
        })
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 1000).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 1,000 lines: {long:#?}");
}

#[test]
fn order_status_is_written_in_one_module() {
    let mut files = Vec::new();
    for krate in crates() {
        rust_files(&krate.join("src"), &mut files);
    }
    let writers: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            code.contains("UPDATE orders SET status")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert_eq!(
        writers.len(),
        1,
        "`UPDATE orders SET status` must appear in exactly one module: {writers:#?}"
    );
    assert!(
        writers[0].ends_with("kami-store/src/transitions.rs"),
        "{writers:?}"
    );
}
