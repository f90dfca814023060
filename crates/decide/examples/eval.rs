//! The whole accuracy picture without the sluice binary: the labelled bounce
//! corpus (as `sluice classify --eval`), the verdicts of the complaint,
//! auto-reply and not-bounce folders, and false reports on ham.
//!
//! `cargo run --release -p decide --example eval [CORPUS_DIR]` (default
//! `../shared/corpus` beside the checkout); `SLUICE_EVAL_MISSES=1` lists the
//! misses. Given `.eml` files instead, prints their classifications as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn emls(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    out.sort();
    out
}

fn verdict(p: &Path) -> &'static str {
    decide::classify(&std::fs::read(p).unwrap_or_default()).verdict.as_str()
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    let misses = std::env::var_os("SLUICE_EVAL_MISSES").is_some();
    decide::warm_up();
    // Given messages instead of a corpus: their classifications as JSON.
    if root.extension().is_some_and(|x| x == "eml") {
        for f in std::env::args().skip(1) {
            let c = decide::classify(&std::fs::read(&f).unwrap_or_default());
            println!("{f}\n{}", serde_json::to_string_pretty(&c).unwrap_or_default());
        }
        return;
    }

    let dir = root.join("bounces/sisimai");
    let labels = std::fs::read_to_string(dir.join("labels.jsonl")).expect("labels.jsonl");
    let rows: Vec<decide::eval::LabelRow> =
        labels.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut results = BTreeMap::new();
    for row in &rows {
        if !results.contains_key(&row.file) {
            let bytes = std::fs::read(dir.join(&row.file)).unwrap_or_default();
            results.insert(row.file.clone(), decide::classify(&bytes));
        }
    }
    let report = decide::eval::evaluate(&rows, &results);
    print!("{}", report.render());
    if misses {
        println!("\nmisses:");
        for m in &report.misses {
            println!("  {m}");
        }
        // Wrong recipient, status or hard/soft (the reason may be right).
        println!("\nother misses (file: want → got):");
        for row in &rows {
            if row.confidence.as_deref().is_some_and(|c| c != "high") || row.reason.is_none() {
                continue;
            }
            let Some(c) = results.get(&row.file) else { continue };
            let want = row.recipient.as_deref().unwrap_or("");
            let entry = c
                .recipients
                .iter()
                .find(|x| x.address.eq_ignore_ascii_case(want))
                .or_else(|| c.recipients.first().filter(|_| want.is_empty()));
            let Some(e) = entry else {
                let got: Vec<_> = c.recipients.iter().map(|r| r.address.as_str()).collect();
                println!("  {} recipient: {want} → {got:?}", row.file);
                continue;
            };
            if let Some(s) = row.status.as_deref()
                && s.len() >= 5
                && !s.contains(".0.9")
                && e.status.as_deref() != Some(s)
            {
                println!("  {} status: {s} → {:?} ({})", row.file, e.status, e.reason.as_str());
            }
            if let Some(h) = row.hardbounce
                && h != e.hard
            {
                println!("  {} hard: {h} → {} ({})", row.file, e.hard, e.reason.as_str());
            }
        }
    }

    println!();
    for (folder, want) in [
        ("complaints", &["complaint"][..]),
        ("autoreplies", &["autoreply"][..]),
        ("bounces/not-bounces", &["human", "unsubscribe", "challenge"][..]),
    ] {
        let files = emls(&root.join(folder));
        let wrong: Vec<String> = files
            .iter()
            .filter_map(|p| {
                let v = verdict(p);
                (!want.contains(&v)).then(|| format!("{} ({v})", p.display()))
            })
            .collect();
        println!("{folder:20} {}/{} right", files.len() - wrong.len(), files.len());
        for w in wrong {
            println!("  wrong: {w}");
        }
    }
    let ham = emls(&root.join("spam/ham"));
    let false_reports: Vec<String> = ham
        .iter()
        .filter_map(|p| {
            let v = verdict(p);
            matches!(v, "bounce" | "complaint" | "autoreply" | "delay")
                .then(|| format!("{} ({v})", p.display()))
        })
        .collect();
    println!(
        "ham called bounce/complaint/autoreply/delay: {}/{} ({:.2}%)",
        false_reports.len(),
        ham.len(),
        100.0 * false_reports.len() as f64 / ham.len().max(1) as f64
    );
    for f in false_reports {
        println!("  {f}");
    }
}
