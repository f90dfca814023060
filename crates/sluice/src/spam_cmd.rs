//! `sluice spam`: train the spam filter's Bayes model from folders of ham
//! and spam, and score messages with it (one JSON line each). All IO is
//! here; the filter (`spam` crate) is pure.
//!
//! The model is kept in a file for now (`spam-model.bin` in the data
//! directory, or `--model`); the database table behind `spam::TokenStore`
//! (global and per-user counts) is left for the integration step.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum SpamCommand {
    /// Score messages: one JSON line each,
    /// {"file","score","class","is_spam","signals":[...]}.
    Score {
        /// Model file [default: spam-model.bin in the data directory].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Before each message's line, its most significant Bayes tokens
        /// (lines starting with `#`: token, f(w), ham and spam counts).
        #[arg(long)]
        explain: bool,
        /// Override a tunable, KEY=VALUE (s, x, min_strength, max_tokens,
        /// min_ham, min_spam, min_total, user_weight, bayes_spam, bayes_ham,
        /// required, unsure); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Message files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Train the Bayes model on folders of ham and spam (every file in
    /// them, recursively); adds to the model unless --reset.
    Train {
        /// Folder of ham messages.
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// Folder of spam messages.
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Model file [default: spam-model.bin in the data directory].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Start from an empty model instead of adding to the file's.
        #[arg(long)]
        reset: bool,
    },
}

/// One line of `sluice spam score`, its keys in this order.
#[derive(serde::Serialize)]
struct Line<'a> {
    file: String,
    score: f64,
    class: spam::Class,
    is_spam: bool,
    signals: &'a [spam::Signal],
}

/// Runs a `sluice spam` subcommand; `data` is the data directory.
pub fn run(cmd: SpamCommand, data: &Path) -> anyhow::Result<i32> {
    let default_model = || data.join("spam-model.bin");
    match cmd {
        SpamCommand::Score { model, explain, settings, files } => {
            let mut filter =
                spam::Filter::new(spam::Model::new(load(&model.clone().unwrap_or_else(default_model))?));
            for kv in &settings {
                let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv}: want KEY=VALUE"))?;
                filter.set(k, v).map_err(anyhow::Error::msg)?;
            }
            score(&filter, &model.unwrap_or_else(default_model), &files, explain)
        }
        SpamCommand::Train { ham, spam, model, reset } => {
            anyhow::ensure!(!ham.is_empty() || !spam.is_empty(), "give --ham DIR and/or --spam DIR");
            train(&model.unwrap_or_else(default_model), &ham, &spam, reset)
        }
    }
}

/// Reads a model file (missing: an empty model, and the filter gives no
/// Bayes opinion until trained, as standard error says).
fn load(path: &Path) -> anyhow::Result<spam::Counts> {
    sluice::filter_wiring::read_model(path)
}

fn score(filter: &spam::Filter, model: &Path, files: &[PathBuf], explain: bool) -> anyhow::Result<i32> {
    if !filter.model.is_ready(&filter.params) {
        eprintln!(
            "note: the model {} has {} ham and {} spam trained, under the minimum; Bayes gives no signal",
            model.display(),
            filter.model.global.ham,
            filter.model.global.spam
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

fn train(model: &Path, ham: &[PathBuf], spam_dirs: &[PathBuf], reset: bool) -> anyhow::Result<i32> {
    let mut counts = if reset { spam::Counts::default() } else { load(model)? };
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
    if let Some(dir) = model.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Written beside and renamed, so a scorer never reads half a model.
    let tmp = model.with_extension("tmp");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        counts.write_to(&mut w)?;
        w.flush()?;
    }
    std::fs::rename(&tmp, model)?;
    println!(
        "trained {} ham and {} spam; the model {} now holds {} ham, {} spam, {} tokens",
        learnt[0],
        learnt[1],
        model.display(),
        counts.ham,
        counts.spam,
        counts.tokens.len()
    );
    Ok(0)
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
