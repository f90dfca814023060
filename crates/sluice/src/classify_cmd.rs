//! `sluice classify`: one JSON line per message (the file name plus the
//! classification), or with `--eval DIR` an accuracy report against the
//! folder's `labels.jsonl`. All IO is here; the classifier is pure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What `sluice classify` was asked to do.
pub struct Options {
    pub format: Option<String>,
    pub eval: Option<PathBuf>,
    /// Print, per message, how each verdict and field was decided.
    pub explain: bool,
    /// Threads; `None` uses every core.
    pub jobs: Option<usize>,
    pub files: Vec<String>,
}

/// Files classified per batch: the threads share a batch, and its lines
/// are written in the order of the files before the next batch starts.
const BATCH: usize = 4096;

/// Runs `sluice classify`; returns the process exit code (non-zero only for
/// IO errors: an unparseable message is still classified).
pub fn run(opts: Options) -> anyhow::Result<i32> {
    if let Some(f) = opts.format.as_deref()
        && f != "jsonl"
    {
        anyhow::bail!("unknown --format {f:?} (only jsonl)");
    }
    if let Some(dir) = opts.eval {
        return evaluate(&dir);
    }
    anyhow::ensure!(!opts.files.is_empty(), "give one or more files, or - for standard input");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // Standard input is read once, on this thread.
    let jobs = if opts.files.iter().any(|f| f == "-") { 1 } else { opts.jobs.unwrap_or(cores).max(1) };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut code = 0;
    for batch in opts.files.chunks(BATCH) {
        for (text, ok) in classify_batch(batch, jobs, opts.explain)? {
            code |= i32::from(!ok);
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(code)
}

/// Each file's output (and whether it could be read), in the files' order;
/// `jobs` threads take the files one at a time, so a slow file holds up no
/// other thread.
fn classify_batch(files: &[String], jobs: usize, explain: bool) -> anyhow::Result<Vec<(String, bool)>> {
    if jobs <= 1 || files.len() < 2 {
        return Ok(files.iter().map(|f| classify_file(f, explain)).collect());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Vec<(usize, (String, bool))>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(files.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else { return done };
                        done.push((i, classify_file(file, explain)));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Result<_, _>>()
    })
    .map_err(|_| anyhow::anyhow!("a classify thread panicked"))?;
    let mut all: Vec<(usize, (String, bool))> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, out)| out).collect())
}

/// One file's JSON line (and with `explain`, the steps before it).
fn classify_file(file: &str, explain: bool) -> (String, bool) {
    let bytes = if file == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map(|_| b)
    } else {
        std::fs::read(file)
    };
    match bytes {
        Ok(b) if explain => {
            let (c, steps) = decide::explain(&b);
            let mut text = format!("# {file}\n");
            for step in steps {
                text.push_str(&format!("#   {step}\n"));
            }
            (format!("{text}{}\n", line_for(file, &c)), true)
        }
        Ok(b) => (format!("{}\n", line_for(file, &decide::classify(&b))), true),
        Err(e) => (format!("{}\n", serde_json::json!({ "file": file, "error": e.to_string() })), false),
    }
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
    let mut rows: Vec<decide::eval::LabelRow> = Vec::new();
    for (n, line) in labels.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(row) => rows.push(row),
            // Said, never silently dropped: a row left out changes the figures.
            Err(e) => eprintln!("labels.jsonl line {}: not a label row ({e}); left out", n + 1),
        }
    }
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
