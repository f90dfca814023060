//! `sluice classify`: one JSON line per message (the file name plus the
//! classification), or with `--eval DIR` an accuracy report against the
//! folder's `labels.jsonl`. All IO is here; the classifier is pure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Runs `sluice classify`; returns the process exit code (non-zero only for
/// IO errors: an unparseable message is still classified).
pub fn run(format: Option<String>, eval: Option<PathBuf>, files: Vec<String>) -> anyhow::Result<i32> {
    if let Some(f) = format.as_deref()
        && f != "jsonl"
    {
        anyhow::bail!("unknown --format {f:?} (only jsonl)");
    }
    if let Some(dir) = eval {
        return evaluate(&dir);
    }
    anyhow::ensure!(!files.is_empty(), "give one or more files, or - for standard input");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut code = 0;
    for file in files {
        let bytes = if file == "-" {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).map(|_| b)
        } else {
            std::fs::read(&file)
        };
        let line = match bytes {
            Ok(b) => line_for(&file, &decide::classify(&b)),
            Err(e) => {
                code = 1;
                serde_json::json!({ "file": file, "error": e.to_string() })
            }
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(code)
}

fn line_for(file: &str, c: &decide::Classification) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("file".into(), file.into());
    }
    v
}

fn evaluate(dir: &Path) -> anyhow::Result<i32> {
    let labels = std::fs::read_to_string(dir.join("labels.jsonl"))
        .with_context(|| format!("reading {}", dir.join("labels.jsonl").display()))?;
    let rows: Vec<decide::eval::LabelRow> = labels
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut results = BTreeMap::new();
    for row in &rows {
        if results.contains_key(&row.file) {
            continue;
        }
        let bytes = std::fs::read(dir.join(&row.file)).with_context(|| format!("reading {}", row.file))?;
        results.insert(row.file.clone(), decide::classify(&bytes));
    }
    let report = decide::eval::evaluate(&rows, &results);
    print!("{}", report.render());
    if std::env::var_os("SLUICE_EVAL_MISSES").is_some() {
        println!("\nmisses:");
        for m in &report.misses {
            println!("  {m}");
        }
    }
    Ok(0)
}
