//! Keeps ARCHITECTURE.md true: every workspace crate has its paragraph in the
//! map and the map names no crate that does not exist; no crate depends on
//! one its paragraph says it never depends on; every workspace crate a crate
//! declares as a dependency is used; every file the map names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace's crates, as the root manifest lists them.
fn members() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(&read(&root().join("Cargo.toml"))).expect("root Cargo.toml");
    let members = manifest["workspace"]["members"].as_array().expect("workspace.members");
    let names: Vec<String> =
        members.iter().filter_map(|m| m.as_str()?.strip_prefix("crates/").map(str::to_string)).collect();
    assert!(names.len() >= 5, "found too few workspace members: {names:?}");
    names
}

/// The map's crate paragraphs, (crate, text), from its "## Crates" section.
fn paragraphs() -> Vec<(String, String)> {
    let map = read(&root().join("ARCHITECTURE.md"));
    let section = map.split("\n## Crates").nth(1).expect("a \"## Crates\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("- **") {
            let name = rest.split("**").next().unwrap_or_default().to_string();
            out.push((name, String::new()));
        }
        if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The workspace crates among `krate`'s `[dependencies]` (not its tests').
fn workspace_dependencies(krate: &str, members: &[String]) -> Vec<String> {
    let manifest: toml::Table =
        toml::from_str(&read(&root().join("crates").join(krate).join("Cargo.toml"))).expect("crate manifest");
    let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
    deps.keys().filter(|d| members.contains(d)).cloned().collect()
}

/// The names in backquotes after "Never depends on:" in a paragraph.
fn never(paragraph: &str) -> Option<Vec<String>> {
    let flat = paragraph.replace('\n', " ");
    let rest = flat.split("Never depends on:").nth(1)?;
    let list = rest.split('.').next().unwrap_or_default();
    Some(list.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

#[test]
fn architecture_map_matches_the_workspace() {
    let members = members();
    let described: Vec<String> = paragraphs().into_iter().map(|(name, _)| name).collect();
    for m in &members {
        assert!(described.contains(m), "crate {m} has no paragraph in ARCHITECTURE.md");
    }
    for d in &described {
        assert!(members.contains(d), "ARCHITECTURE.md describes {d}, which is not a workspace crate");
    }
}

#[test]
fn no_crate_depends_on_what_the_map_forbids() {
    let members = members();
    let mut broken = Vec::new();
    for (krate, text) in paragraphs() {
        // The binary composes everything; every library crate has its rule.
        let Some(never) = never(&text) else {
            assert_eq!(krate, "sluice", "the paragraph of {krate} says nothing it never depends on");
            continue;
        };
        for n in &never {
            assert!(members.contains(n), "{krate}'s rule names {n}, which is not a workspace crate");
        }
        for dep in workspace_dependencies(&krate, &members) {
            if never.contains(&dep) {
                broken.push(format!("{krate} depends on {dep}, which ARCHITECTURE.md says it never does"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Every `.rs` file under `dir`, read.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(read(&path));
        }
    }
}

/// `name::` as a path's first segment somewhere in `text`.
fn mentions(text: &str, name: &str) -> bool {
    let needle = format!("{}::", name.replace('-', "_"));
    text.match_indices(&needle).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

#[test]
fn every_declared_workspace_dependency_is_used() {
    let members = members();
    let mut unused = Vec::new();
    for krate in &members {
        let mut code = Vec::new();
        sources(&root().join("crates").join(krate).join("src"), &mut code);
        for dep in workspace_dependencies(krate, &members) {
            if !code.iter().any(|text| mentions(text, &dep)) {
                unused.push(format!("{krate} declares {dep} in [dependencies] and never uses it"));
            }
        }
    }
    assert!(unused.is_empty(), "{}", unused.join("\n"));
}

/// Every file and directory of the repository, relative to its root
/// ("crates/queue/src/lane.rs"), without build output and VCS data.
fn tree(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "target" | ".git" | "node_modules") {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if entry.path().is_dir() {
            tree(&entry.path(), &format!("{rel}/"), out);
        }
        out.insert(rel);
    }
}

/// A backquoted name in the map that is a file or directory path.
fn is_path(token: &str) -> bool {
    const EXTENSIONS: [&str; 9] = ["rs", "toml", "py", "md", "sh", "json", "tsv", "txt", "pl"];
    !token.is_empty()
        && !token.starts_with('/')
        && token.chars().all(|c| c.is_alphanumeric() || "._-/".contains(c))
        && (token.ends_with('/') || token.rsplit_once('.').is_some_and(|(_, ext)| EXTENSIONS.contains(&ext)))
}

#[test]
fn every_file_the_map_names_exists() {
    let map = read(&root().join("ARCHITECTURE.md"));
    let mut files = BTreeSet::new();
    tree(&root(), "", &mut files);
    let named: BTreeSet<&str> = map.split('`').skip(1).step_by(2).filter(|t| is_path(t)).collect();
    assert!(named.len() >= 20, "found too few file names in ARCHITECTURE.md: {named:?}");
    // A name may be given from the root or from any directory down
    // ("queue/src/lane.rs", "rules/reasons.toml", "dsn.rs").
    let missing: Vec<&&str> = named
        .iter()
        .filter(|t| {
            let t = t.trim_end_matches('/');
            !files.iter().any(|f| f == t || f.ends_with(&format!("/{t}")))
        })
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names files that do not exist: {missing:?}");
}

/// Every `.rs` file under `dir` with its path, read.
fn sources_at(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources_at(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = read(&path);
            out.push((path, text));
        }
    }
}

/// Storage is behind traits: only `record` speaks to a database (sqlx),
/// and within it only a backend's own module names its database, so a
/// second backend implements the traits and changes nothing else.
#[test]
fn only_a_backend_module_speaks_its_database() {
    let crates = root().join("crates");
    let mut files = Vec::new();
    sources_at(&crates, &mut files);
    assert!(files.len() > 50, "found too few sources: {}", files.len());
    let record = crates.join("record");
    // Each backend's module, and the names only it may use.
    let backends = [
        (
            record.join("src/sqlite"),
            "SQLite",
            &["SqlitePool", "SqliteConnection", "SqliteRow", "sqlx::sqlite"][..],
        ),
        (
            record.join("src/postgres"),
            "PostgreSQL",
            &["PgPool", "PgConnection", "PgRow", "sqlx::postgres"][..],
        ),
    ];
    let mut broken = Vec::new();
    // This file names what it looks for.
    for (path, text) in files.iter().filter(|(p, _)| !p.ends_with("sluice/tests/architecture.rs")) {
        if !path.starts_with(&record) {
            if mentions(text, "sqlx") {
                broken.push(format!("{} uses sqlx: storage belongs in record", path.display()));
            }
            continue;
        }
        if path.starts_with(record.join("tests")) {
            continue;
        }
        let home = backends.iter().find(|(dir, ..)| path.starts_with(dir)).map(|(_, name, _)| *name);
        if home.is_none() && ["sqlx::query", "sqlx::raw_sql"].iter().any(|n| text.contains(n)) {
            broken.push(format!("{} runs SQL outside a backend's module", path.display()));
        }
        for (_, name, words) in &backends {
            if home != Some(*name) && words.iter().any(|w| text.contains(w)) {
                broken.push(format!("{} speaks {name} outside its backend's module", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The queue runs routes by their descriptors (`queue/src/routes.rs`):
/// no code of it branches on a particular route.
#[test]
fn the_queue_names_no_route() {
    let mut files = Vec::new();
    sources_at(&root().join("crates/queue/src"), &mut files);
    assert!(files.len() >= 5, "found too few queue sources");
    let naming: Vec<String> = files
        .iter()
        .filter(|(_, text)| text.contains("Route::") || text.contains("RouteKind::"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(naming.is_empty(), "the queue branches on a route in: {naming:?}");
}
