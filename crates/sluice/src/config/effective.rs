//! `sluice config print`: the effective configuration, each value with
//! where it came from (`default`, `file`, `flag`, `env`), walked through
//! `describe.rs` so that every key is shown, set or not. Passwords in URLs
//! (`database.url`, `spam.rspamd_url`, ...) are masked; secrets themselves
//! are only ever named by file (`*_file` keys), and files are not read.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value as Json;

use super::Config;
use super::describe::{self, Kind, NAME};
use super::template::{quoted_path, toml_value};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Flag,
    Env,
    /// A list the file gives and a flag extends (`--accept-domain`).
    FileAndFlag,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Flag => "flag",
            Source::Env => "env",
            Source::FileAndFlag => "file+flag",
        }
    }
}

/// What set which key, besides the defaults.
#[derive(Debug, Default)]
pub struct Origins {
    /// The file as written (its keys are `file`).
    pub file: Option<toml::Table>,
    /// Keys a command-line flag or the environment set, by path
    /// (`["server", "hostname"]`, `["domains", "example.net"]`).
    pub set: BTreeMap<Vec<String>, Source>,
}

impl Origins {
    /// The source of the value at `path`.
    pub fn source(&self, path: &[String]) -> Source {
        let in_file = self.in_file(path);
        match self.set.get(path) {
            Some(Source::Flag) if in_file && self.extends(path) => Source::FileAndFlag,
            Some(s) => *s,
            None if in_file => Source::File,
            None => Source::Default,
        }
    }

    fn in_file(&self, path: &[String]) -> bool {
        let Some(mut table) = self.file.as_ref() else { return false };
        for (i, part) in path.iter().enumerate() {
            match table.get(part) {
                Some(toml::Value::Table(t)) => table = t,
                Some(_) => return i + 1 == path.len(),
                None => return false,
            }
        }
        true
    }

    /// A list a flag adds to rather than replaces.
    fn extends(&self, path: &[String]) -> bool {
        path == ["server", "accept_domains"]
    }
}

/// The effective configuration as commented TOML, each key followed by
/// `# SOURCE`.
pub fn to_toml(cfg: &Config, origins: &Origins) -> String {
    let mut value = serde_json::to_value(cfg).unwrap_or(Json::Null);
    mask_secrets(&mut value);
    let mut out = String::new();
    for s in describe::sections() {
        let at: Vec<String> = s.path.iter().take_while(|p| *p != NAME).cloned().collect();
        let here = lookup(&value, &at);
        match s.kind {
            Kind::Table => {
                let _ = writeln!(out, "\n[{}]", quoted_path(&s.path));
                for key in &s.keys {
                    let path = [at.clone(), vec![key.name.clone()]].concat();
                    let source = origins.source(&path).as_str();
                    match here.and_then(|t| t.get(&key.name)).filter(|v| !v.is_null()) {
                        Some(v) => writeln!(out, "{} = {}  # {source}", key.name, toml_value(v)),
                        None => writeln!(out, "# {}: not set  # {source}", key.name),
                    }
                    .ok();
                }
            }
            Kind::Map | Kind::Free => {
                let entries = here.and_then(Json::as_object).into_iter().flatten();
                if s.kind == Kind::Free {
                    let _ = writeln!(out, "\n[{}]", quoted_path(&at));
                }
                for (name, v) in entries {
                    let path = [at.clone(), vec![name.clone()]].concat();
                    let source = origins.source(&path).as_str();
                    match s.kind {
                        Kind::Free => {
                            writeln!(out, "{} = {}  # {source}", quoted_path(&path[1..]), toml_value(v))
                        }
                        _ => writeln!(out, "\n[{}]  # {source}\n{}", quoted_path(&path), table_body(v)),
                    }
                    .ok();
                }
            }
            Kind::List => {
                let source = origins.source(&at).as_str();
                for v in here.and_then(Json::as_array).into_iter().flatten() {
                    let _ = writeln!(out, "\n[[{}]]  # {source}\n{}", quoted_path(&at), table_body(v));
                }
            }
        }
    }
    out
}

/// The effective configuration as JSON: `{"smtp.listen": {"value": ...,
/// "source": "default"}, ...}`, one entry per key (a map or list whole).
pub fn to_json(cfg: &Config, origins: &Origins) -> Json {
    let mut value = serde_json::to_value(cfg).unwrap_or(Json::Null);
    mask_secrets(&mut value);
    let mut out = serde_json::Map::new();
    let mut put = |path: Vec<String>, v: Json| {
        let entry = serde_json::json!({ "value": v, "source": origins.source(&path).as_str() });
        out.insert(path.join("."), entry);
    };
    for s in describe::sections() {
        let at: Vec<String> = s.path.iter().take_while(|p| *p != NAME).cloned().collect();
        let here = lookup(&value, &at);
        match s.kind {
            Kind::Table => {
                for key in &s.keys {
                    let v = here.and_then(|t| t.get(&key.name)).cloned().unwrap_or(Json::Null);
                    put([at.clone(), vec![key.name.clone()]].concat(), v);
                }
            }
            Kind::Map | Kind::Free => {
                for (name, v) in here.and_then(Json::as_object).into_iter().flatten() {
                    put([at.clone(), vec![name.clone()]].concat(), v.clone());
                }
            }
            Kind::List => put(at.clone(), here.cloned().unwrap_or(Json::Null)),
        }
    }
    Json::Object(out)
}

fn lookup<'a>(v: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(v, |v, p| v.get(p))
}

/// `key = value` lines of one table (a map entry, a list item).
fn table_body(v: &Json) -> String {
    let mut out = String::new();
    for (k, v) in v.as_object().into_iter().flatten().filter(|(_, v)| !v.is_null()) {
        let _ = writeln!(out, "{} = {}", quoted_path(std::slice::from_ref(k)), toml_value(v));
    }
    out.trim_end().to_string()
}

/// Masks the password of every URL-like string (`scheme://user:PASS@host`,
/// `?password=PASS`), wherever it is.
pub fn mask_secrets(v: &mut Json) {
    match v {
        Json::String(s) => *s = mask_url(s),
        Json::Array(a) => a.iter_mut().for_each(mask_secrets),
        Json::Object(m) => m.values_mut().for_each(mask_secrets),
        _ => {}
    }
}

fn mask_url(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            out = format!("{}****{}", &s[..start], &s[scheme_end + 3 + at..]);
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "****");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(String::from).collect()
    }

    #[test]
    fn each_value_says_where_it_came_from() {
        let text = "[server]\nhostname = \"mx.test\"\naccept_domains = [\"a.test\"]\n\
                    [database]\nurl = \"postgres://u:hunter2@db:5432/s\"\n\
                    [domains.\"f.test\"]\nmode = \"filter\"\n[policy]\nspam_threshold = 6.5\n";
        let mut cfg: Config = toml::from_str(text).unwrap();
        cfg.smtp.listen = "127.0.0.1:2626".parse().unwrap();
        cfg.server.accept_domains.push("b.test".into());
        let mut origins = Origins { file: Some(toml::from_str(text).unwrap()), ..Default::default() };
        origins.set.insert(path("smtp.listen"), Source::Flag);
        origins.set.insert(path("server.accept_domains"), Source::Flag);
        origins.set.insert(path("server.data"), Source::Env);
        let out = to_toml(&cfg, &origins);
        for line in [
            "hostname = \"mx.test\"  # file",
            "listen = \"127.0.0.1:2626\"  # flag",
            "submission = \"127.0.0.1:2587\"  # default",
            "accept_domains = [\"a.test\", \"b.test\"]  # file+flag",
            "data = \"./sluice-data\"  # env",
            "url = \"postgres://u:****@db:5432/s\"  # file",
            "# log_level: not set  # default",
            "[domains.\"f.test\"]  # file",
            "spam_threshold = 6.5  # file",
        ] {
            assert!(out.contains(line), "{line:?} not in\n{out}");
        }
        assert!(!out.contains("hunter2"));
        // What it prints is itself a configuration that gives the same values.
        let back: Config =
            toml::from_str(&out.replace("****", "hunter2")).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&cfg).unwrap());
        let json = to_json(&cfg, &origins);
        assert_eq!(json["smtp.listen"]["source"], "flag");
        assert_eq!(json["server.log_level"], serde_json::json!({"value": null, "source": "default"}));
        assert_eq!(json["domains.f.test"]["source"], "file");
        assert!(!json.to_string().contains("hunter2"));
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(mask_url("http://:secret@host:11334"), "http://:****@host:11334");
        assert_eq!(
            mask_url("postgres://a:b@c/d?password=x&sslmode=y"),
            "postgres://a:****@c/d?password=****&sslmode=y"
        );
        assert_eq!(mask_url("https://t.example.com/a@b"), "https://t.example.com/a@b");
        assert_eq!(mask_url("sqlite:///var/db"), "sqlite:///var/db");
    }
}
