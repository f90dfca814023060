//! The configuration describing itself: every section and key with its type,
//! default and help, read from the types (their doc comments and `Default`
//! impls, through the JSON schema `schemars` derives). `sluice init` writes
//! it out (`template.rs`) and `sluice config print` walks it
//! (`effective.rs`), so neither can drift from what `Config` parses.

use serde_json::Value as Json;

use super::Config;

/// The placeholder in a map section's path: `[domains.NAME]`.
pub const NAME: &str = "NAME";

/// What a section is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[server]`: a fixed set of keys, each with a default.
    Table,
    /// `[domains.NAME]`: one table per name, none by default.
    Map,
    /// `[[accounts]]`: a list of tables, empty by default.
    List,
    /// `[policy]`: free keys (their names are checked elsewhere).
    Free,
}

/// One section: `[server]`, `[domains.NAME]`, `[[accounts]]`.
#[derive(Debug, Clone)]
pub struct Section {
    /// `["tracking", "streams", NAME]`.
    pub path: Vec<String>,
    pub kind: Kind,
    /// The doc comment, on one line.
    pub help: String,
    pub keys: Vec<Key>,
}

/// One key of a section.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    /// `string`, `integer`, `list of string`, `one of "a", "b"`, ...
    pub ty: String,
    /// The doc comment, on one line.
    pub help: String,
    /// `None`: not set by default.
    pub default: Option<Json>,
    /// Must be given (in a map or list entry: `[[accounts]] name`).
    pub required: bool,
}

impl Section {
    /// `server`, `tracking.streams.NAME`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// Every section of the file, a table before the sections inside it.
pub fn sections() -> Vec<Section> {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let schema = settings.into_generator().into_root_schema_for::<Config>();
    let root = schema.as_value();
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Json::Null);
    let mut out = Vec::new();
    for (name, prop) in properties(root) {
        walk(&[], name, prop, defaults.get(name), &mut out);
    }
    out
}

/// The first sentence of a help text, for a one-line comment.
pub fn first_sentence(help: &str) -> &str {
    let b = help.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if b[i] == b'.' && b[i + 1] == b' ' && b[i + 2].is_ascii_uppercase() {
            return &help[..=i];
        }
    }
    help
}

/// A property of `parent` named `name`: a nested section, or a key of the
/// section `at` (whose default table is `default`).
fn walk(
    at: &[String],
    name: &str,
    prop: &Json,
    default: Option<&Json>,
    out: &mut Vec<Section>,
) -> Option<Key> {
    let (schema, _) = non_null(prop);
    let help = one_line(prop.get("description").or_else(|| schema.get("description")));
    let mut path = at.to_vec();
    path.push(name.to_string());
    let nested = |kind, path: Vec<String>, of: &Json, default: Option<&Json>, out: &mut Vec<Section>| {
        let mut section = Section { path: path.clone(), kind, help: help.clone(), keys: Vec::new() };
        let mut inner = Vec::new();
        let required = of.get("required").and_then(Json::as_array);
        for (k, p) in properties(of) {
            let d = default.and_then(|d| d.get(k)).or_else(|| p.get("default"));
            if let Some(mut key) = walk(&path, k, p, d, &mut inner) {
                key.required = required.is_some_and(|r| r.contains(&Json::from(k)));
                section.keys.push(key);
            }
        }
        out.push(section);
        out.extend(inner);
    };
    if schema.get("properties").is_some() {
        nested(Kind::Table, path, schema, default, out);
        return None;
    }
    let entries = schema.get("additionalProperties").map(|s| non_null(s).0);
    if let Some(of) = entries.filter(|s| s.get("properties").is_some()) {
        path.push(NAME.to_string());
        nested(Kind::Map, path, of, None, out);
        return None;
    }
    let items = schema.get("items").map(|s| non_null(s).0);
    if let Some(of) = items.filter(|s| s.get("properties").is_some()) {
        nested(Kind::List, path, of, None, out);
        return None;
    }
    if at.is_empty() {
        // A top-level table of free keys: `[policy]`, whose keys and
        // built-in values `record::policy` knows (a map in the types).
        let keys = if name == "policy" { policy_keys() } else { Vec::new() };
        out.push(Section { path, kind: Kind::Free, help, keys });
        return None;
    }
    let default = default.filter(|d| !d.is_null()).cloned();
    Some(Key { name: name.to_string(), ty: type_name(prop), help, default, required: false })
}

/// The policy's keys, as `sluice policy set` takes them.
fn policy_keys() -> Vec<Key> {
    record::policy::Key::all()
        .into_iter()
        .map(|k| Key {
            // `retention_days."Bounces/Hard"`: a dotted key, quoted as TOML needs.
            name: super::template::quoted_path(&k.name().split('.').map(String::from).collect::<Vec<_>>()),
            ty: k.expected(),
            help: k.help(),
            default: Some(k.builtin().to_json()),
            required: false,
        })
        .collect()
}

/// The properties of an object schema, in name order.
fn properties(schema: &Json) -> impl Iterator<Item = (&str, &Json)> {
    schema.get("properties").and_then(Json::as_object).into_iter().flatten().map(|(k, v)| (k.as_str(), v))
}

/// An `Option`'s schema without its `null`, and whether it had one.
fn non_null(schema: &Json) -> (&Json, bool) {
    if let Some(any) = schema.get("anyOf").and_then(Json::as_array) {
        let rest: Vec<&Json> = any.iter().filter(|s| s.get("type") != Some(&Json::from("null"))).collect();
        if rest.len() == 1 && rest.len() < any.len() {
            return (rest[0], true);
        }
    }
    (schema, false)
}

/// A doc comment on one line.
fn one_line(text: Option<&Json>) -> String {
    text.and_then(Json::as_str).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a value of this schema is written, for a human.
fn type_name(prop: &Json) -> String {
    let (schema, _) = non_null(prop);
    if schema == &Json::Bool(true) {
        return "any".into();
    }
    if let Some(c) = schema.get("const") {
        return c.to_string();
    }
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        let names: Vec<String> = values.iter().filter(|v| !v.is_null()).map(Json::to_string).collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(alts) = schema.get("oneOf").and_then(Json::as_array) {
        let names: Vec<String> = alts.iter().map(type_name).collect();
        return format!("one of {}", names.join(", "));
    }
    let ty = match schema.get("type") {
        Some(Json::Array(types)) => types.iter().find(|t| t.as_str() != Some("null")).cloned(),
        other => other.cloned(),
    };
    match ty.as_ref().and_then(Json::as_str) {
        Some("array") => format!("list of {}", schema.get("items").map(type_name).unwrap_or("any".into())),
        Some("object") => {
            format!("table of {}", schema.get("additionalProperties").map(type_name).unwrap_or("any".into()))
        }
        Some(t) => t.to_string(),
        None => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf of the serialized default config, as dotted paths (a
    /// map or list that is empty by default is one leaf).
    fn leaves(v: &Json, at: String, out: &mut Vec<String>) {
        match v {
            Json::Object(m) if !m.is_empty() && !at.ends_with("policy") => {
                for (k, v) in m {
                    let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    leaves(v, p, out);
                }
            }
            _ => out.push(at),
        }
    }

    #[test]
    fn every_serialized_key_is_described_with_help() {
        let sections = sections();
        let mut described: Vec<String> = Vec::new();
        for s in &sections {
            match s.kind {
                Kind::Table => described.extend(s.keys.iter().map(|k| format!("{}.{}", s.dotted(), k.name))),
                _ => described
                    .push(s.path.iter().take_while(|p| *p != NAME).cloned().collect::<Vec<_>>().join(".")),
            }
        }
        let mut all = Vec::new();
        leaves(&serde_json::to_value(Config::default()).unwrap(), String::new(), &mut all);
        for key in &all {
            assert!(described.contains(key), "{key} is in the config but not described");
        }
        for s in &sections {
            for k in &s.keys {
                assert!(!k.help.is_empty(), "{}.{} has no doc comment", s.dotted(), k.name);
                assert_ne!(k.ty, "any", "{}.{}", s.dotted(), k.name);
            }
        }
        // A sample of what the schema says.
        let smtp = sections.iter().find(|s| s.dotted() == "smtp").unwrap();
        let listen = smtp.keys.iter().find(|k| k.name == "listen").unwrap();
        assert_eq!(listen.default, Some(Json::from("127.0.0.1:2525")));
        assert!(listen.help.starts_with("The MX listener"), "{}", listen.help);
        let bare = smtp.keys.iter().find(|k| k.name == "bare_newlines").unwrap();
        assert_eq!(bare.ty, r#"one of "normalize", "reject""#);
        let kinds: Vec<(String, Kind)> = sections.iter().map(|s| (s.dotted(), s.kind)).collect();
        for want in [
            ("accounts".to_string(), Kind::List),
            ("domains.NAME".into(), Kind::Map),
            ("tracking.streams.NAME".into(), Kind::Map),
            ("policy".into(), Kind::Free),
        ] {
            assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
        }
    }

    #[test]
    fn first_sentence_stops_at_a_full_stop_before_a_capital() {
        assert_eq!(first_sentence("One thing. Then another."), "One thing.");
        assert_eq!(first_sentence("Keys, e.g. `x`. Done"), "Keys, e.g. `x`.");
        assert_eq!(first_sentence("no stop"), "no stop");
    }
}
