//! Golden tests: every `.eml` under `fixtures/` has the expected
//! classification in a `.json` beside it. A mismatch writes `.actual.json`
//! next to the fixture for diffing; `UPDATE_GOLDEN=1` rewrites the expected
//! files. Each folder also states its verdict, and the bounce fixtures are
//! scored against their labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn emls(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("fixture dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(emls(&p));
        } else if p.extension().is_some_and(|x| x == "eml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn golden_classifications() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = emls(&fixtures_dir());
    let mut mismatches = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("fixture");
        let actual = serde_json::to_string_pretty(&decide::classify(&bytes)).expect("json") + "\n";
        let expected_path = path.with_extension("json");
        let actual_path = path.with_extension("actual.json");
        if update {
            std::fs::write(&expected_path, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            std::fs::write(&actual_path, &actual).expect("write actual");
            mismatches.push(path.display().to_string());
        } else {
            let _ = std::fs::remove_file(&actual_path);
        }
    }
    assert!(files.len() > 50, "only {} fixtures ran", files.len());
    assert!(mismatches.is_empty(), "classification changed for (see *.actual.json): {mismatches:#?}");
}

#[test]
fn folders_have_their_verdicts() {
    let root = fixtures_dir();
    let mut checked = 0;
    for (folder, allowed) in [
        ("complaints", &["complaint"][..]),
        ("autoreplies", &["autoreply"][..]),
        ("not-bounces", &["human", "unsubscribe", "challenge"][..]),
        ("ham", &["human", "unsubscribe", "challenge"][..]),
    ] {
        for path in emls(&root.join(folder)) {
            let v = decide::classify(&std::fs::read(&path).expect("fixture")).verdict.as_str();
            assert!(allowed.contains(&v), "{}: {v}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} verdict fixtures");
}

#[test]
fn bounce_fixtures_match_their_labels() {
    let dir = fixtures_dir().join("bounces");
    let labels = std::fs::read_to_string(dir.join("labels.jsonl")).expect("labels");
    let rows: Vec<decide::eval::LabelRow> =
        labels.lines().map(|l| serde_json::from_str(l).expect("label row")).collect();
    let results: BTreeMap<String, decide::Classification> = rows
        .iter()
        .map(|r| (r.file.clone(), decide::classify(&std::fs::read(dir.join(&r.file)).expect("fixture"))))
        .collect();
    let report = decide::eval::evaluate(&rows, &results);
    assert!(report.rows > 50, "{}", report.render());
    // These fixtures were chosen as cases the classifier gets right: any loss
    // here is a regression.
    assert_eq!(report.reason.right, report.reason.total, "{}", report.render());
    assert_eq!(report.recipient.right, report.recipient.total, "{}", report.render());
}
