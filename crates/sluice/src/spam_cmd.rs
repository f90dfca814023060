//! `sluice spam`: train the spam filter's Bayes model from folders of ham
//! and spam, and score messages with it (one JSON line each). All IO is
//! here; the filter (`spam` crate) is pure.
//!
//! The global model is kept in the record (scope `global` of
//! `record::spam_tokens`), where every node's filter reads it again when
//! training moves its stamp; `--model FILE` trains or scores with a file
//! instead (for experiments and benches, never read by `serve`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::SpamCommand;

/// One line of `sluice spam score`, its keys in this order.
#[derive(serde::Serialize)]
struct Line<'a> {
    file: String,
    score: f64,
    class: spam::Class,
    is_spam: bool,
    signals: &'a [spam::Signal],
}

/// Runs a `sluice spam` subcommand.
pub fn run(cmd: SpamCommand, cfg: &sluice::config::Config) -> anyhow::Result<i32> {
    match cmd {
        SpamCommand::Score { model, explain, settings, files } => {
            let (counts, from) = load(cfg, model.as_deref())?;
            let mut filter = spam::Filter::new(spam::Model::new(counts));
            for kv in &settings {
                let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv}: want KEY=VALUE"))?;
                filter.set(k, v).map_err(anyhow::Error::msg)?;
            }
            score(&filter, &from, &files, explain)
        }
        SpamCommand::Train { ham, spam, model, reset } => {
            anyhow::ensure!(!ham.is_empty() || !spam.is_empty(), "give --ham DIR and/or --spam DIR");
            train(cfg, model.as_deref(), &ham, &spam, reset)
        }
    }
}

/// The model `--model` names, else the record's global one; and what to
/// call it. A missing file or an untrained record is an empty model (the
/// filter gives no Bayes opinion until trained, as standard error says).
fn load(cfg: &sluice::config::Config, model: Option<&Path>) -> anyhow::Result<(spam::Counts, String)> {
    match model {
        Some(path) => Ok((sluice::filter_wiring::read_model(path)?, path.display().to_string())),
        None => {
            let counts = runtime()?.block_on(async {
                let store = cfg.open_store().await?;
                let counts = store.spam_tokens.load_counts(record::spam_tokens::GLOBAL).await;
                store.close().await;
                anyhow::Ok(counts?)
            })?;
            Ok((route::learn::counts_of(counts), "the record's global model".to_string()))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")
}

fn score(filter: &spam::Filter, model: &str, files: &[PathBuf], explain: bool) -> anyhow::Result<i32> {
    if !filter.model.is_ready(&filter.params) {
        eprintln!(
            "note: the model {} has {} ham and {} spam trained, under the minimum; Bayes gives no signal",
            model, filter.model.global.ham, filter.model.global.spam
        );
    }
    let auth = spam::AuthResults::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut code = 0;
    for file in files {
        let raw = match std::fs::read(file) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                code = 1;
                continue;
            }
        };
        if explain {
            for (name, f, ham, spam) in filter.explain(&raw, 40) {
                writeln!(out, "# {f:.4} ham={ham} spam={spam} {name}")?;
            }
        }
        let v = filter.score(&raw, &auth);
        let line = Line {
            file: file.display().to_string(),
            score: v.score,
            class: v.class,
            is_spam: v.is_spam,
            signals: &v.signals,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(code)
}

fn train(
    cfg: &sluice::config::Config,
    model: Option<&Path>,
    ham: &[PathBuf],
    spam_dirs: &[PathBuf],
    reset: bool,
) -> anyhow::Result<i32> {
    let mut counts = spam::Counts::default();
    let mut learnt = [0usize; 2];
    for (dirs, is_spam) in [(ham, false), (spam_dirs, true)] {
        for dir in dirs {
            for file in files_under(dir)? {
                let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                counts.add(&spam::tokens::tokenize_bytes(&raw), is_spam, 1);
                learnt[usize::from(is_spam)] += 1;
            }
        }
    }
    let (held, to) = match model {
        Some(path) => {
            if !reset {
                merge(&mut counts, sluice::filter_wiring::read_model(path)?);
            }
            write_model(path, &counts)?;
            (counts, path.display().to_string())
        }
        None => {
            let held = runtime()?.block_on(async {
                let store = cfg.open_store().await?;
                let tokens = &store.spam_tokens;
                let stored = tokens
                    .add_counts(record::spam_tokens::GLOBAL, &route::learn::record_of(&counts), reset)
                    .await;
                let held = match stored {
                    Ok(()) => tokens.load_counts(record::spam_tokens::GLOBAL).await,
                    Err(e) => Err(e),
                };
                store.close().await;
                anyhow::Ok(held?)
            })?;
            (route::learn::counts_of(held), "the record's global model".to_string())
        }
    };
    println!(
        "trained {} ham and {} spam; {to} now holds {} ham, {} spam, {} tokens",
        learnt[0],
        learnt[1],
        held.ham,
        held.spam,
        held.tokens.len()
    );
    Ok(0)
}

/// Adds `other`'s counts to `into`'s.
fn merge(into: &mut spam::Counts, other: spam::Counts) {
    into.ham += other.ham;
    into.spam += other.spam;
    for (t, (h, s)) in other.tokens {
        let e = into.tokens.entry(t).or_insert((0, 0));
        e.0 += h;
        e.1 += s;
    }
}

/// Writes a model file beside and renames it, so a scorer never reads half
/// a model.
fn write_model(model: &Path, counts: &spam::Counts) -> anyhow::Result<()> {
    if let Some(dir) = model.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = model.with_extension("tmp");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        counts.write_to(&mut w)?;
        w.flush()?;
    }
    std::fs::rename(&tmp, model)?;
    Ok(())
}

/// Every regular file under `dir`, sorted (so training is reproducible).
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
