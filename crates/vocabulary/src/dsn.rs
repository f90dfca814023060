//! The SMTP DSN extension's parameters (RFC 3461): what the sender asked
//! for when it gave MAIL `RET=`/`ENVID=` and RCPT `NOTIFY=`/`ORCPT=`. They
//! are carried through the spool, passed on to a downstream that offers
//! DSN, and honoured in the DSNs sluice builds itself.

use serde::{Deserialize, Serialize};

/// RET: return the whole message in a failure DSN, or its headers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// NOTIFY: the DSNs a recipient's sender wants. All false is `NEVER`.
/// A recipient without the parameter gets the default: a DSN on failure
/// (RFC 3461 §4.1), never on success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub success: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failure: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delay: bool,
}

impl Notify {
    pub const NEVER: Notify = Notify { success: false, failure: false, delay: false };

    /// The parameter's value, e.g. `SUCCESS,FAILURE` or `NEVER`.
    pub fn param(&self) -> String {
        let words: Vec<&str> = [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")]
            .into_iter()
            .filter_map(|(on, w)| on.then_some(w))
            .collect();
        if words.is_empty() { "NEVER".into() } else { words.join(",") }
    }

    /// Whether a failure (or an expiry) of a recipient with `notify` is
    /// reported: yes unless the sender said otherwise.
    pub fn wants_failure(notify: Option<Notify>) -> bool {
        notify.is_none_or(|n| n.failure)
    }
}

/// RFC 3461 §4: xtext, for ENVID and ORCPT values sent on.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_params_and_the_default() {
        assert_eq!(Notify::NEVER.param(), "NEVER");
        assert_eq!(Notify { success: true, failure: true, delay: false }.param(), "SUCCESS,FAILURE");
        assert!(Notify::wants_failure(None));
        assert!(!Notify::wants_failure(Some(Notify::NEVER)));
        assert!(!Notify::wants_failure(Some(Notify { success: true, ..Notify::NEVER })));
    }

    #[test]
    fn xtext_escapes_plus_equals_space_and_controls() {
        assert_eq!(xtext("George @Tax- ME .GOV"), "George+20@Tax-+20ME+20.GOV");
        assert_eq!(xtext("a+b=c"), "a+2Bb+3Dc");
    }
}
