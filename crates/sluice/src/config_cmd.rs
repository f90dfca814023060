//! `sluice init` (a commented `sluice.toml` with every key and its
//! default, `config::template`) and `sluice config check|print` (the file
//! loaded as `serve` loads it; the effective values with their sources,
//! `config::effective`). `serve` applies its flags through
//! [`apply_serve_flags`] too, so what `print` shows is what `serve` runs.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::cli::{Common, ServeArgs};
use sluice::config::effective::{self, Origins, Source};
use sluice::config::{Config, DomainMode, template};

/// `sluice init [PATH] [--force]`.
pub fn init(path: &Path, force: bool) -> anyhow::Result<i32> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    match force {
        true => open.create(true).truncate(true),
        false => open.create_new(true),
    };
    let mut file = open.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{} exists; --force overwrites it", path.display())
        }
        _ => anyhow::Error::new(e).context(format!("writing {}", path.display())),
    })?;
    file.write_all(template::render().as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let p = path.display();
    println!("wrote {p}: every key commented out at its default");
    println!("next: sluice config check --config {p}");
    println!("      sluice config print --config {p}");
    println!("      sluice serve --config {p}");
    Ok(0)
}

/// The configuration `--config`, `--data` and `--database` (or
/// `SLUICE_DATABASE`) make, and where each of those values came from.
pub fn load(common: &Common) -> anyhow::Result<(Config, Origins)> {
    let mut cfg = Config::load(common.config.as_deref())?;
    let mut origins = Origins::default();
    if let Some(path) = &common.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        origins.file = Some(toml::from_str(&text).with_context(|| format!("in {}", path.display()))?);
    }
    if let Some(d) = &common.data {
        cfg.server.data = d.clone();
        origins.set.insert(key("server.data"), Source::Flag);
    }
    if let Some(url) = &common.database {
        cfg.database.url = Some(url.clone());
        let from_env = std::env::var("SLUICE_DATABASE").ok().as_ref() == Some(url) && !given("--database");
        origins.set.insert(key("database.url"), if from_env { Source::Env } else { Source::Flag });
    }
    Ok((cfg, origins))
}

/// Whether `flag` is on the command line (clap merges the environment in).
fn given(flag: &str) -> bool {
    std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

fn key(dotted: &str) -> Vec<String> {
    dotted.split('.').map(String::from).collect()
}

/// `serve`'s flags over the file; the keys they set go into `origins`.
pub fn apply_serve_flags(cfg: &mut Config, args: ServeArgs, origins: &mut Origins) {
    let mut set = |k: &str| {
        origins.set.insert(key(k), Source::Flag);
    };
    if let Some(v) = args.smtp {
        cfg.smtp.listen = v;
        set("smtp.listen");
    }
    if let Some(v) = args.submission {
        cfg.smtp.submission = v;
        set("smtp.submission");
    }
    if let Some(v) = args.imap {
        cfg.imap.listen = v;
        set("imap.listen");
    }
    if let Some(v) = args.imaps {
        cfg.imap.imaps = Some(v);
        set("imap.imaps");
    }
    if let Some(v) = args.relay {
        cfg.relay.host = Some(v);
        set("relay.host");
    }
    if !args.accept_domain.is_empty() {
        cfg.server.accept_domains.extend(args.accept_domain);
        set("server.accept_domains");
    }
    for d in args.filter_domain {
        origins.set.insert(vec!["domains".into(), d.clone()], Source::Flag);
        cfg.domains.entry(d).or_default().mode = DomainMode::Filter;
    }
    let mut set = |k: &str| {
        origins.set.insert(key(k), Source::Flag);
    };
    if let Some(v) = args.hostname {
        cfg.server.hostname = v;
        set("server.hostname");
    }
    if let Some(v) = args.log_format {
        cfg.server.log_format = v;
        set("server.log_format");
    }
    if let Some(v) = args.log_level {
        cfg.server.log_level = Some(v);
        set("server.log_level");
    }
    if let Some(v) = args.http {
        cfg.http.listen = v;
        set("http.listen");
    }
    if let Some(v) = args.bounce_domain {
        cfg.outbound.bounce_domain = Some(v);
        set("outbound.bounce_domain");
    }
    if let Some(v) = args.smart_host {
        cfg.outbound.smart_host = Some(v);
        set("outbound.smart_host");
    }
}

/// `sluice config check`: parsed and validated as `serve` does; an error
/// names the key and, when the file sets it, its line.
pub fn check(common: &Common) -> anyhow::Result<i32> {
    let (cfg, origins) = load(common)?;
    if let Err(e) = cfg.validate() {
        let msg = format!("{e:#}");
        let at = common.config.as_deref().and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            let line = line_of(&text, &key(msg.split([':', ' ']).next()?))?;
            Some(format!("{}:{line}", path.display()))
        });
        match at {
            Some(at) => anyhow::bail!("{msg} (at {at})"),
            None => anyhow::bail!(msg),
        }
    }
    let set = count(&origins);
    match &common.config {
        Some(p) => println!("{}: ok ({set} key(s) set, the rest default)", p.display()),
        None => println!("no --config: the defaults are valid ({set} key(s) set by flags or environment)"),
    }
    Ok(0)
}

/// Keys the file, flags or environment set.
fn count(origins: &Origins) -> usize {
    fn leaves(t: &toml::Table) -> usize {
        t.values().map(|v| if let toml::Value::Table(t) = v { leaves(t) } else { 1 }).sum()
    }
    origins.file.as_ref().map_or(0, leaves) + origins.set.len()
}

/// The line (1-based) where the file sets the key at `path`
/// (`[section]` then `key =`).
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let (name, section) = path.split_last()?;
    let want = section.join(".");
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(h) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim().replace('"', "");
        } else if current == want
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == name
        {
            return Some(i + 1);
        }
    }
    None
}

/// `sluice config print`: the effective configuration with each value's
/// source, as TOML (or JSON).
pub fn print(args: ServeArgs, json: bool) -> anyhow::Result<i32> {
    let (mut cfg, mut origins) = load(&args.common)?;
    let level_flag = args.log_level.is_some();
    apply_serve_flags(&mut cfg, args, &mut origins);
    cfg.validate()?;
    // What `serve` logs at: --log-level, else SLUICE_LOG, else the file.
    let env_level = std::env::var("SLUICE_LOG").ok().filter(|_| !level_flag);
    if let Some(level) = env_level {
        cfg.server.log_level = Some(level);
        origins.set.insert(key("server.log_level"), Source::Env);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&effective::to_json(&cfg, &origins))?);
        return Ok(0);
    }
    let sources = sources_seen(&origins);
    println!("# sluice's effective configuration: each value with its source ({sources}).");
    print!("{}", effective::to_toml(&cfg, &origins));
    Ok(0)
}

/// The kinds of source in play, for the first line.
fn sources_seen(origins: &Origins) -> String {
    let mut parts = vec!["default"];
    if origins.file.is_some() {
        parts.push("file");
    }
    let set: BTreeSet<&str> = origins.set.values().map(|s| s.as_str()).collect();
    parts.extend(set);
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let cli = crate::cli::Cli::try_parse_from([&["sluice", "serve"], argv].concat()).unwrap();
        match cli.command {
            crate::cli::Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    /// Every flag marks exactly the keys whose values it changes.
    #[test]
    fn each_serve_flag_names_the_key_it_sets() {
        let args = serve_args(&[
            "--smtp=127.0.0.1:1",
            "--submission=127.0.0.1:2",
            "--imap=127.0.0.1:3",
            "--imaps=127.0.0.1:4",
            "--relay=r:25",
            "--accept-domain=a.test",
            "--filter-domain=f.test",
            "--hostname=h.test",
            "--log-format=json",
            "--log-level=debug",
            "--http=127.0.0.1:5",
            "--bounce-domain=b.test",
            "--smart-host=s:25",
        ]);
        let mut cfg = Config::default();
        let mut origins = Origins::default();
        apply_serve_flags(&mut cfg, args, &mut origins);
        let before = serde_json::to_value(Config::default()).unwrap();
        let after = serde_json::to_value(&cfg).unwrap();
        let mut changed = Vec::new();
        for (section, keys) in after.as_object().unwrap() {
            for (k, v) in keys.as_object().into_iter().flatten() {
                if before[section].get(k) != Some(v) {
                    changed.push(vec![section.clone(), k.clone()]);
                }
            }
        }
        let marked: Vec<Vec<String>> = origins.set.keys().cloned().collect();
        assert_eq!(marked, changed);
    }

    #[test]
    fn line_of_finds_a_key_in_its_section() {
        let text = "[server]\nhostname = \"x\"\n\n[smtp]\nlisten = \"a\"\nmax_recipients = 0\n";
        assert_eq!(line_of(text, &key("smtp.max_recipients")), Some(6));
        assert_eq!(line_of(text, &key("server.max_recipients")), None);
    }
}
