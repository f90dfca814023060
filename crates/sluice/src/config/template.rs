//! The commented `sluice.toml` that `sluice init` writes: every section and
//! key from `describe.rs`, each key's default commented out with one line
//! of help. A line `#key = value` (no space after `#`) is a default: remove
//! the `#` and it parses to that same default.

use std::fmt::Write;

use serde_json::Value as Json;

use super::describe::{self, Kind, Section};

const HEADER: &str = "\
# sluice configuration, written by `sluice init`.
#
# Every key sluice reads is below with one line of help, its type and its
# default. A line `#key = value` is the default, commented out: remove the
# `#` to change it. `# key: not set` means no value unless you give one.
# Sections written `# [name.NAME]` or `# [[name]]` are examples to copy.
# Unknown keys are errors. `sluice config check --config FILE` checks a
# file; `sluice config print --config FILE` shows what is in effect and
# where each value comes from. The full help is in docs/config.md.
";

/// The whole file.
pub fn render() -> String {
    let mut out = String::from(HEADER);
    for section in describe::sections() {
        render_section(&mut out, &section);
    }
    out
}

fn render_section(out: &mut String, s: &Section) {
    out.push('\n');
    if !s.help.is_empty() {
        let _ = writeln!(out, "# {}", describe::first_sentence(&s.help));
    }
    let header = quoted_path(&s.path);
    // The examples are comments with a space, so that uncommenting the
    // defaults leaves them alone.
    let (head, key_prefix) = match s.kind {
        Kind::Table => (format!("[{header}]"), "#"),
        Kind::Free => (format!("[{header}]"), "# "),
        Kind::Map => (format!("# [{header}]"), "# "),
        Kind::List => (format!("# [[{header}]]"), "# "),
    };
    let _ = writeln!(out, "{head}");
    for key in &s.keys {
        let _ = writeln!(out, "# {} ({})", describe::first_sentence(&key.help), key.ty);
        match (&key.default, s.kind) {
            (Some(v), _) => {
                let _ = writeln!(out, "{key_prefix}{} = {}", key.name, toml_value(v));
            }
            (None, _) if key.required => {
                let _ = writeln!(out, "# {} = ...  (required)", key.name);
            }
            (None, _) => {
                let _ = writeln!(out, "# {}: not set", key.name);
            }
        }
    }
}

/// `tracking.streams.NAME`, with a part quoted when it is no bare key.
pub fn quoted_path(path: &[String]) -> String {
    let part = |p: &String| {
        if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            p.clone()
        } else {
            toml::Value::String(p.clone()).to_string()
        }
    };
    path.iter().map(part).collect::<Vec<_>>().join(".")
}

/// A JSON value as a TOML value (a `null` inside a table is left out).
pub fn toml_value(v: &Json) -> String {
    to_toml(v).map(|t| t.to_string()).unwrap_or_default()
}

fn to_toml(v: &Json) -> Option<toml::Value> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(a) => toml::Value::Array(a.iter().filter_map(to_toml).collect()),
        Json::Object(m) => {
            toml::Value::Table(m.iter().filter_map(|(k, v)| Some((k.clone(), to_toml(v)?))).collect())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The file with every default line uncommented.
    fn uncommented(text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let line = match line.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => rest,
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_template_uncommented_parses_to_the_defaults() {
        let text = render();
        let cfg: Config = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        let open = uncommented(&text);
        assert!(open.contains("\nlisten = \"127.0.0.1:2525\"\n"), "{open}");
        let cfg: Config = toml::from_str(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
        cfg.validate().unwrap();
        assert_eq!(serde_json::to_value(&cfg).unwrap(), serde_json::to_value(Config::default()).unwrap());
    }

    #[test]
    fn the_policy_examples_uncommented_are_the_built_in_values() {
        let text = render();
        let at = text.find("\n[policy]\n").expect("a [policy] section");
        let body = &text[at..];
        let body = &body[..body[1..].find("\n\n").map_or(body.len(), |e| e + 1)];
        let open: String = body
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(open.contains("\nretention_days.\"Bounces/Hard\" = 30\n"), "{open}");
        let cfg: Config = toml::from_str(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
        let set = record::policy::resolve(&cfg.policy.defaults().expect("valid keys"), &[]).to_json();
        let set = set.as_object().expect("an object");
        assert_eq!(set.len(), record::policy::Key::all().len());
        for (name, v) in set {
            let builtin = record::policy::Key::parse(name).expect("a key").builtin().to_json();
            assert_eq!((name, &v["value"], &v["from"]), (name, &builtin, &Json::from("config")));
        }
        assert_eq!(cfg.policy.0.len(), 10, "every key, retention_days one table: {:?}", cfg.policy.0.keys());
    }

    #[test]
    fn every_key_has_its_line_in_its_section() {
        let text = render();
        for s in describe::sections() {
            let header = match s.kind {
                Kind::Table | Kind::Free => format!("\n[{}]\n", quoted_path(&s.path)),
                Kind::Map => format!("\n# [{}]\n", quoted_path(&s.path)),
                Kind::List => format!("\n# [[{}]]\n", quoted_path(&s.path)),
            };
            let at = text.find(&header).unwrap_or_else(|| panic!("no {header:?}"));
            let body = &text[at + header.len()..];
            let body = &body[..body.find("\n\n").unwrap_or(body.len())];
            for key in &s.keys {
                let found = body.lines().any(|l| {
                    let l = l.trim_start_matches('#').trim_start();
                    l.starts_with(&format!("{} = ", key.name)) || l == format!("{}: not set", key.name)
                });
                assert!(found, "{}.{} is missing from the template:\n{body}", s.dotted(), key.name);
            }
        }
        // Names with dots are quoted, as TOML needs.
        assert_eq!(quoted_path(&["domains".into(), "example.net".into()]), "domains.\"example.net\"");
    }
}
