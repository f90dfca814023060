//! Keeps ARCHITECTURE.md true: every workspace crate has its paragraph in the
//! map, and the map names no crate that does not exist.

use std::path::Path;

#[test]
fn architecture_map_matches_the_workspace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let members: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"crates/"))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(members.len() >= 5, "found too few workspace members: {members:?}");
    // The crate paragraphs live in the "## Crates" section.
    let section = map.split("## Crates").nth(1).expect("a \"## Crates\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let described: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("- **"))
        .filter_map(|l| l.split("**").next())
        .map(str::to_string)
        .collect();
    for m in &members {
        assert!(described.contains(m), "crate {m} has no paragraph in ARCHITECTURE.md");
    }
    for d in &described {
        assert!(members.contains(d), "ARCHITECTURE.md describes {d}, which is not a workspace crate");
    }
}
