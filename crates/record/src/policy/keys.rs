//! The keys, their values, and how a value is read and checked.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

use super::senders::sender_pattern;
use super::{MAX_RETENTION_DAYS, PolicyError};
use crate::quarantine::{ARCHIVE_RETENTION_DAYS, DEFAULT_RETENTION_DAYS, FOLDERS};

/// What is done with a message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Deliver,
    /// `X-Spam-Status` header, and `subject_prefix`.
    Tag,
    /// Filed in the recipient's Spam folder.
    Quarantine,
    Reject,
    /// 4xx: the message could not be scanned (`scan_failure = tempfail`);
    /// never a key's value.
    Tempfail,
}

impl Action {
    /// The actions a key may be set to.
    pub const SETTABLE: [Action; 4] = [Action::Deliver, Action::Tag, Action::Quarantine, Action::Reject];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
        }
    }

    /// Any action by name (a recorded one may be `tempfail`).
    pub fn parse(s: &str) -> Option<Action> {
        Action::SETTABLE.into_iter().chain([Action::Tempfail]).find(|a| a.as_str() == s)
    }
}

/// What the scan made of a message, for one recipient's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Ham,
    Unsure,
    Spam,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ham => "ham",
            Class::Unsure => "unsure",
            Class::Spam => "spam",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        [Class::Ham, Class::Unsure, Class::Spam].into_iter().find(|c| c.as_str() == s)
    }
}

/// `scan_failure`: what a message that could not be scanned gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanFailure {
    Tempfail,
    AcceptUnscanned,
}

impl ScanFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanFailure::Tempfail => "tempfail",
            ScanFailure::AcceptUnscanned => "accept_unscanned",
        }
    }
}

/// A policy key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    SpamAction,
    SpamThreshold,
    UnsureAction,
    UnsureThreshold,
    SubjectPrefix,
    Archive,
    /// `retention_days.FOLDER` (a folder of [`FOLDERS`], as spelled there).
    RetentionDays(String),
    AllowSenders,
    BlockSenders,
    ScanFailure,
}

/// The keys without a folder, in the order `explain` lists them.
pub(super) const PLAIN_KEYS: [Key; 9] = [
    Key::SpamAction,
    Key::SpamThreshold,
    Key::UnsureAction,
    Key::UnsureThreshold,
    Key::SubjectPrefix,
    Key::Archive,
    Key::AllowSenders,
    Key::BlockSenders,
    Key::ScanFailure,
];

/// The folders whose retention is always shown (others once set).
pub(super) const SHOWN_FOLDERS: [&str; 2] = ["Spam", "Archive"];

impl Key {
    /// A key by name; `retention_days.spam` finds the Spam folder.
    pub fn parse(s: &str) -> Result<Key, PolicyError> {
        let s = s.trim();
        if let Some(k) = PLAIN_KEYS.iter().find(|k| k.name() == s) {
            return Ok(k.clone());
        }
        if let Some(folder) = s.strip_prefix("retention_days.") {
            let f = FOLDERS.iter().find(|f| f.eq_ignore_ascii_case(folder)).ok_or_else(|| {
                PolicyError::invalid(s, format!("no folder {folder:?}; one of {}", FOLDERS.join(", ")))
            })?;
            return Ok(Key::RetentionDays(f.to_string()));
        }
        let names: Vec<String> = PLAIN_KEYS.iter().map(Key::name).collect();
        Err(PolicyError::invalid(
            s,
            format!("unknown key {s:?}; one of {}, retention_days.FOLDER", names.join(", ")),
        ))
    }

    pub fn name(&self) -> String {
        match self {
            Key::SpamAction => "spam_action".into(),
            Key::SpamThreshold => "spam_threshold".into(),
            Key::UnsureAction => "unsure_action".into(),
            Key::UnsureThreshold => "unsure_threshold".into(),
            Key::SubjectPrefix => "subject_prefix".into(),
            Key::Archive => "archive".into(),
            Key::RetentionDays(f) => format!("retention_days.{f}"),
            Key::AllowSenders => "allow_senders".into(),
            Key::BlockSenders => "block_senders".into(),
            Key::ScanFailure => "scan_failure".into(),
        }
    }

    /// Every key a level can set, each folder's retention as its own.
    pub fn all() -> Vec<Key> {
        let folders = FOLDERS.iter().map(|f| Key::RetentionDays(f.to_string()));
        PLAIN_KEYS.iter().cloned().chain(folders).collect()
    }

    /// One line of help (`sluice init`'s template, `docs/config.md`).
    pub fn help(&self) -> String {
        match self {
            Key::SpamAction => "What a message scored as spam gets.".into(),
            Key::SpamThreshold => "Points from which a message is spam.".into(),
            Key::UnsureAction => "What a message between the two thresholds gets.".into(),
            Key::UnsureThreshold => {
                "Points from which a message is unsure (not above spam_threshold).".into()
            }
            Key::SubjectPrefix => "Put before the subject of tagged mail (none when empty).".into(),
            Key::Archive => "Also keep a copy of every message in the recipient's Archive folder.".into(),
            Key::RetentionDays(f) => format!("Days the recipient's copies in {f} are kept."),
            Key::AllowSenders => {
                "Senders always delivered, before the score (address, domain, `*` pattern).".into()
            }
            Key::BlockSenders => {
                "Senders never delivered, before the score (address, domain, `*` pattern).".into()
            }
            Key::ScanFailure => "What a message that could not be scanned gets.".into(),
        }
    }

    /// The built-in value.
    pub fn builtin(&self) -> Value {
        match self {
            Key::SpamAction => Value::Action(Action::Quarantine),
            Key::SpamThreshold => Value::Number(5.0),
            Key::UnsureAction => Value::Action(Action::Tag),
            Key::UnsureThreshold => Value::Number(3.0),
            Key::SubjectPrefix => Value::Text(String::new()),
            Key::Archive => Value::Bool(false),
            Key::RetentionDays(f) if f == "Archive" => Value::Days(ARCHIVE_RETENTION_DAYS),
            Key::RetentionDays(_) => Value::Days(DEFAULT_RETENTION_DAYS),
            Key::AllowSenders | Key::BlockSenders => Value::Senders(Vec::new()),
            Key::ScanFailure => Value::ScanFailure(ScanFailure::Tempfail),
        }
    }

    /// A value as JSON (the API's body, a stored row, the config file's
    /// value). A string is also read as the CLI's text would be.
    pub fn value_from_json(&self, v: &Json) -> Result<Value, PolicyError> {
        let bad = |m: String| PolicyError::invalid(self.name(), m);
        match (self, v) {
            (Key::SpamThreshold | Key::UnsureThreshold, Json::Number(n)) => {
                number(n.as_f64().unwrap_or(f64::NAN)).map_err(bad)
            }
            (Key::Archive, Json::Bool(b)) => Ok(Value::Bool(*b)),
            (Key::RetentionDays(_), Json::Number(n)) => match n.as_i64() {
                Some(d) => days(d).map_err(bad),
                None => Err(bad(format!("whole days, 1 to {MAX_RETENTION_DAYS}"))),
            },
            (Key::AllowSenders | Key::BlockSenders, Json::Array(items)) => {
                let mut list = Vec::new();
                for i in items {
                    let s = i.as_str().ok_or_else(|| bad("a list of sender patterns (strings)".into()))?;
                    list.push(sender_pattern(s).map_err(bad)?);
                }
                Ok(Value::Senders(dedup(list)))
            }
            (_, Json::String(s)) => self.value_from_text(s),
            (_, other) => Err(bad(format!("{other} is not {}", self.expected()))),
        }
    }

    /// A value as the CLI gives it: `6.5`, `quarantine`, `true`, a
    /// comma-separated list (or a JSON array), `14`.
    pub fn value_from_text(&self, s: &str) -> Result<Value, PolicyError> {
        let bad = |m: String| PolicyError::invalid(self.name(), m);
        let t = s.trim();
        match self {
            Key::SpamAction | Key::UnsureAction => Action::SETTABLE
                .into_iter()
                .find(|a| a.as_str() == t.to_ascii_lowercase())
                .map(Value::Action)
                .ok_or_else(|| bad(format!("{t:?} is not {}", self.expected()))),
            Key::SpamThreshold | Key::UnsureThreshold => {
                number(t.parse().map_err(|_| bad(format!("{t:?} is not {}", self.expected())))?).map_err(bad)
            }
            Key::SubjectPrefix => {
                if s.len() > 64 || s.chars().any(char::is_control) {
                    return Err(bad("at most 64 characters, no control characters".into()));
                }
                Ok(Value::Text(s.to_string()))
            }
            Key::Archive => match t.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
                _ => Err(bad(format!("{t:?} is not {}", self.expected()))),
            },
            Key::RetentionDays(_) => {
                days(t.parse().map_err(|_| bad(format!("{t:?} is not {}", self.expected())))?).map_err(bad)
            }
            Key::AllowSenders | Key::BlockSenders => {
                if t.starts_with('[') {
                    let v: Json =
                        serde_json::from_str(t).map_err(|e| bad(format!("not a JSON list: {e}")))?;
                    if v.is_array() {
                        return self.value_from_json(&v);
                    }
                }
                let list = t
                    .split([',', ' ', '\n'])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(sender_pattern)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                Ok(Value::Senders(dedup(list)))
            }
            Key::ScanFailure => match t.to_ascii_lowercase().as_str() {
                "tempfail" => Ok(Value::ScanFailure(ScanFailure::Tempfail)),
                "accept_unscanned" => Ok(Value::ScanFailure(ScanFailure::AcceptUnscanned)),
                _ => Err(bad(format!("{t:?} is not {}", self.expected()))),
            },
        }
    }

    /// What the key takes (error messages, the config template).
    pub fn expected(&self) -> String {
        match self {
            Key::SpamAction | Key::UnsureAction => "one of deliver, tag, quarantine, reject".into(),
            Key::SpamThreshold | Key::UnsureThreshold => "a number of points (e.g. 5.0)".into(),
            Key::SubjectPrefix => "a string".into(),
            Key::Archive => "true or false".into(),
            Key::RetentionDays(_) => format!("whole days, 1 to {MAX_RETENTION_DAYS}"),
            Key::AllowSenders | Key::BlockSenders => {
                "a list of addresses, domains or patterns (*@*.example.com)".into()
            }
            Key::ScanFailure => "tempfail or accept_unscanned".into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn number(n: f64) -> Result<Value, String> {
    if !n.is_finite() || n.abs() > 1000.0 {
        return Err("a number of points between -1000 and 1000".into());
    }
    Ok(Value::Number(n))
}

fn days(d: i64) -> Result<Value, String> {
    if !(1..=MAX_RETENTION_DAYS).contains(&d) {
        return Err(format!("whole days, 1 to {MAX_RETENTION_DAYS}"));
    }
    Ok(Value::Days(d))
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    list.into_iter().filter(|p| seen.insert(p.clone())).collect()
}

/// A key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Action(Action),
    Number(f64),
    Text(String),
    Bool(bool),
    Days(i64),
    Senders(Vec<String>),
    ScanFailure(ScanFailure),
}

impl Value {
    /// As stored and as the API shows it.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Action(a) => Json::from(a.as_str()),
            Value::Number(n) => Json::from(*n),
            Value::Text(t) => Json::from(t.as_str()),
            Value::Bool(b) => Json::from(*b),
            Value::Days(d) => Json::from(*d),
            Value::Senders(l) => Json::from(l.clone()),
            Value::ScanFailure(s) => Json::from(s.as_str()),
        }
    }
}

impl fmt::Display for Value {
    /// As `explain` says it: `6.0`, `quarantine`, `"[SPAM] "`, `[a@b.c, *.d.e]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Action(a) => f.write_str(a.as_str()),
            Value::Number(n) if n.fract() == 0.0 => write!(f, "{n:.1}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Days(d) => write!(f, "{d}"),
            Value::Senders(l) => write!(f, "[{}]", l.join(", ")),
            Value::ScanFailure(s) => f.write_str(s.as_str()),
        }
    }
}
