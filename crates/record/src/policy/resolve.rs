//! Stored rows, the levels over one another (`resolve`), the effective
//! policy and `explain`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value as Json;

use super::keys::{PLAIN_KEYS, SHOWN_FOLDERS};
use super::{Action, Key, Level, PolicyError, ScanFailure, Scope, Value};
use crate::quarantine::DEFAULT_RETENTION_DAYS;

/// A stored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRow {
    pub scope: String,
    pub key: String,
    pub value: Json,
    pub updated_at: i64,
}

/// A row read back, parsed (a row this version cannot read is skipped, and
/// said at WARN).
pub(super) fn parse_row(r: &PolicyRow) -> Option<(Scope, Key, Value)> {
    let parsed = Scope::parse(&r.scope).and_then(|s| {
        let k = Key::parse(&r.key)?;
        let v = k.value_from_json(&r.value)?;
        Ok((s, k, v))
    });
    match parsed {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(scope = %r.scope, key = %r.key, error = %e, "policy row ignored");
            None
        }
    }
}

/// The built-in values and the configuration's `[policy]` over them.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    config: Vec<(Key, Value)>,
}

impl Defaults {
    /// Built-in only.
    pub fn builtin() -> Defaults {
        Defaults::default()
    }

    /// The configuration's `[policy]` table: key to value as in the file
    /// (`retention_days = { Spam = 14 }` is `retention_days.Spam`).
    pub fn from_config(table: &BTreeMap<String, Json>) -> Result<Defaults, PolicyError> {
        let mut config = Vec::new();
        for (name, v) in table {
            match (name.as_str(), v) {
                ("retention_days", Json::Object(folders)) => {
                    for (folder, days) in folders {
                        let k = Key::parse(&format!("retention_days.{folder}"))?;
                        config.push((k.clone(), k.value_from_json(days)?));
                    }
                }
                _ => {
                    let k = Key::parse(name)?;
                    config.push((k.clone(), k.value_from_json(v)?));
                }
            }
        }
        let d = Defaults { config };
        resolve(&d, &[]).check("config")?;
        Ok(d)
    }
}

/// One level's values.
#[derive(Debug, Clone)]
pub struct Layer {
    pub level: Level,
    pub values: Vec<(Key, Value)>,
}

/// An effective value: its level, and what it overrode (the level below
/// that set the key, and its value there).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: Value,
    pub level: Level,
    pub overrode: Option<(Level, Value)>,
}

/// Every key's effective value for a recipient (or a scope).
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// Every key but `retention_days`, those of Spam and Archive, and
    /// those of any folder a level set.
    pub settings: BTreeMap<Key, Setting>,
}

/// Each key's value from the most specific level that sets it: built in,
/// `defaults`' config, then `layers` (least specific first: global,
/// domain, user).
pub fn resolve(defaults: &Defaults, layers: &[Layer]) -> Effective {
    let mut keys: BTreeSet<Key> = PLAIN_KEYS.iter().cloned().collect();
    keys.extend(SHOWN_FOLDERS.iter().map(|f| Key::RetentionDays(f.to_string())));
    let config = Layer { level: Level::Config, values: defaults.config.clone() };
    let all: Vec<&Layer> = std::iter::once(&config).chain(layers).collect();
    for l in &all {
        keys.extend(l.values.iter().map(|(k, _)| k.clone()));
    }
    let mut settings = BTreeMap::new();
    for k in keys {
        let mut s = Setting { value: k.builtin(), level: Level::Default, overrode: None };
        for l in &all {
            if let Some((_, v)) = l.values.iter().rev().find(|(lk, _)| *lk == k) {
                let below = (s.level, s.value);
                s = Setting { value: v.clone(), level: l.level.clone(), overrode: Some(below) };
            }
        }
        settings.insert(k, s);
    }
    Effective { settings }
}

/// The layers of `rows` (a tenant's rows, any scopes) that apply to
/// `scope`: global; and for a domain, its own; for an address, its
/// domain's and its own.
pub fn layers_for(rows: &[PolicyRow], scope: &Scope) -> Vec<Layer> {
    layers_of(&by_scope(rows.iter().filter_map(parse_row)), scope)
}

/// Rows by scope, each scope's in the order given.
pub(super) type ByScope = HashMap<Scope, Vec<(Key, Value)>>;

pub(super) fn by_scope(parsed: impl Iterator<Item = (Scope, Key, Value)>) -> ByScope {
    let mut map = ByScope::new();
    for (s, k, v) in parsed {
        map.entry(s).or_default().push((k, v));
    }
    map
}

pub(super) fn layers_of(parsed: &ByScope, scope: &Scope) -> Vec<Layer> {
    let mut chain = vec![Scope::Global];
    match scope {
        Scope::Global => {}
        Scope::Domain(_) => chain.push(scope.clone()),
        Scope::User(a) => {
            let d = a.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
            chain.extend([Scope::Domain(d), scope.clone()]);
        }
    }
    chain
        .into_iter()
        .map(|s| Layer { level: s.level(), values: parsed.get(&s).cloned().unwrap_or_default() })
        .collect()
}

impl Effective {
    pub fn get(&self, k: &Key) -> Value {
        self.settings.get(k).map(|s| s.value.clone()).unwrap_or_else(|| k.builtin())
    }

    pub(super) fn level(&self, k: &Key) -> Level {
        self.settings.get(k).map(|s| s.level.clone()).unwrap_or(Level::Default)
    }

    pub(super) fn action(&self, k: &Key) -> Action {
        match self.get(k) {
            Value::Action(a) => a,
            _ => Action::Deliver,
        }
    }

    fn number(&self, k: &Key) -> f64 {
        match (self.get(k), k.builtin()) {
            (Value::Number(n), _) | (_, Value::Number(n)) => n,
            _ => 0.0,
        }
    }

    pub fn spam_action(&self) -> Action {
        self.action(&Key::SpamAction)
    }
    pub fn unsure_action(&self) -> Action {
        self.action(&Key::UnsureAction)
    }
    pub fn spam_threshold(&self) -> f64 {
        self.number(&Key::SpamThreshold)
    }
    pub fn unsure_threshold(&self) -> f64 {
        self.number(&Key::UnsureThreshold)
    }
    pub fn subject_prefix(&self) -> String {
        match self.get(&Key::SubjectPrefix) {
            Value::Text(t) => t,
            _ => String::new(),
        }
    }
    pub fn archive(&self) -> bool {
        matches!(self.get(&Key::Archive), Value::Bool(true))
    }
    /// Days the recipient's copies in `folder` are kept.
    pub fn retention_days(&self, folder: &str) -> i64 {
        match self.get(&Key::RetentionDays(folder.to_string())) {
            Value::Days(d) => d,
            _ => DEFAULT_RETENTION_DAYS,
        }
    }
    pub fn scan_failure(&self) -> ScanFailure {
        match self.get(&Key::ScanFailure) {
            Value::ScanFailure(s) => s,
            _ => ScanFailure::Tempfail,
        }
    }
    pub(super) fn senders(&self, k: &Key) -> Vec<String> {
        match self.get(k) {
            Value::Senders(l) => l,
            _ => Vec::new(),
        }
    }

    /// Refuses an unsure band above the spam threshold (`at` names the
    /// scope).
    pub fn check(&self, at: &str) -> Result<(), PolicyError> {
        let (u, s) = (self.unsure_threshold(), self.spam_threshold());
        if u > s {
            return Err(PolicyError::invalid(
                "unsure_threshold",
                format!(
                    "at {at}, unsure_threshold {} ({}) would be above spam_threshold {} ({}): \
                     the unsure band is [unsure_threshold, spam_threshold)",
                    Value::Number(u),
                    self.level(&Key::UnsureThreshold),
                    Value::Number(s),
                    self.level(&Key::SpamThreshold)
                ),
            ));
        }
        Ok(())
    }

    /// As JSON: each key's value, level, and what it overrode.
    pub fn to_json(&self) -> Json {
        let map: serde_json::Map<String, Json> = self
            .settings
            .iter()
            .map(|(k, s)| {
                let mut v = serde_json::json!({"value": s.value.to_json(), "from": s.level.to_string()});
                if let Some((l, o)) = &s.overrode {
                    v["overriding"] = serde_json::json!({"from": l.to_string(), "value": o.to_json()});
                }
                (k.name(), v)
            })
            .collect();
        Json::Object(map)
    }
}

/// One line per key: `spam_threshold 6.0 from domain example.net,
/// overriding global 5.0`.
pub fn explain(e: &Effective) -> Vec<String> {
    e.settings
        .iter()
        .map(|(k, s)| match &s.overrode {
            Some((l, v)) => format!("{k} {} from {}, overriding {l} {v}", s.value, s.level),
            None => format!("{k} {} from {}", s.value, s.level),
        })
        .collect()
}
