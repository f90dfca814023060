//! What filter mode does with a message for one recipient.

use serde::Serialize;

use super::{Action, Class, Effective, Key, Level, ScanFailure, Value, matches};

/// What is done for one recipient, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The class by the recipient's thresholds (none for a sender on a
    /// list, or an unscanned message).
    pub class: Option<Class>,
    /// The most specific level among the keys that decided.
    pub level: Level,
    pub reason: String,
    /// For `tag`: the subject's prefix, when one is set.
    pub subject_prefix: Option<String>,
    /// Also file a copy in the recipient's Archive folder.
    pub archive: bool,
}

/// The fate of a message for one recipient: `sender` against the lists
/// first, then `score` against the thresholds; without a score, the
/// scanner's `class`; with neither, the message was not scanned
/// (`scan_failure`).
pub fn decide(e: &Effective, score: Option<f64>, class: Option<Class>, sender: &str) -> Decision {
    let lvl = |k: &Key| e.level(k);
    let show = |k: &Key| format!("{k} {} ({})", e.get(k), lvl(k));
    let mut d = Decision {
        action: Action::Deliver,
        class: None,
        level: Level::Default,
        reason: String::new(),
        subject_prefix: None,
        archive: e.archive(),
    };
    let (allow, block) = (e.senders(&Key::AllowSenders), e.senders(&Key::BlockSenders));
    let allowed = matches(&allow, sender).map(|p| (p.to_string(), lvl(&Key::AllowSenders)));
    let blocked = matches(&block, sender).map(|p| (p.to_string(), lvl(&Key::BlockSenders)));
    let blocked = match (allowed, blocked) {
        (Some(a), Some(b)) if a.1.rank() > b.1.rank() => Err(a),
        (Some(a), None) => Err(a),
        (_, Some(b)) => Ok(Some(b)),
        (None, None) => Ok(None),
    };
    match blocked {
        Err((p, l)) => {
            d.reason = format!("sender {sender} on allow_senders ({p}, {l})");
            d.level = l;
            return d;
        }
        Ok(Some((p, l))) => {
            d.action = match e.spam_action() {
                a @ (Action::Quarantine | Action::Reject) => a,
                _ => Action::Quarantine,
            };
            d.reason = format!(
                "sender {sender} on block_senders ({p}, {l}): {}",
                if d.action == e.spam_action() { show(&Key::SpamAction) } else { "quarantine".into() }
            );
            d.level = Level::max(&l, &lvl(&Key::SpamAction)).clone();
            return d;
        }
        Ok(None) => {}
    }
    let (spam, unsure) = (e.spam_threshold(), e.unsure_threshold());
    let class = match (score, class) {
        (Some(s), _) if s >= spam => Class::Spam,
        (Some(s), _) if s >= unsure => Class::Unsure,
        (Some(_), _) => Class::Ham,
        (None, Some(c)) => c,
        (None, None) => {
            d.action = match e.scan_failure() {
                ScanFailure::Tempfail => Action::Tempfail,
                ScanFailure::AcceptUnscanned => Action::Deliver,
            };
            d.reason = format!("not scanned: {}", show(&Key::ScanFailure));
            d.level = lvl(&Key::ScanFailure);
            return d;
        }
    };
    let points = score.map(|s| format!("score {}", Value::Number(s))).unwrap_or_else(|| "class".into());
    d.class = Some(class);
    let (action_key, why, levels) = match class {
        Class::Spam => (
            Key::SpamAction,
            match score {
                Some(_) => format!("{points} >= {}", show(&Key::SpamThreshold)),
                None => "classed spam".into(),
            },
            vec![lvl(&Key::SpamThreshold)],
        ),
        Class::Unsure => (
            Key::UnsureAction,
            match score {
                Some(_) => format!("{points} >= {}", show(&Key::UnsureThreshold)),
                None => "classed unsure".into(),
            },
            vec![lvl(&Key::UnsureThreshold), lvl(&Key::SpamThreshold)],
        ),
        Class::Ham => {
            d.reason = match score {
                Some(_) => format!("{points} < {}", show(&Key::UnsureThreshold)),
                None => "classed ham".into(),
            };
            d.level = lvl(&Key::UnsureThreshold);
            return d;
        }
    };
    d.action = e.action(&action_key);
    d.reason = format!("{why}: {}", show(&action_key));
    let mut level = lvl(&action_key);
    if score.is_some() {
        for l in &levels {
            level = Level::max(&level, l).clone();
        }
    }
    d.level = level;
    if d.action == Action::Tag {
        d.subject_prefix = Some(e.subject_prefix()).filter(|p| !p.is_empty());
    }
    d
}
