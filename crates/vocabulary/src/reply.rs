//! An SMTP reply as data: code, RFC 3463 enhanced status, text. Errors that
//! reach a client carry one of these (code, status, public text, temporary or
//! not), so the session never has to translate error types into wire replies.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a reply means success, try-again-later or give-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Positive,
    Intermediate,
    Transient,
    Permanent,
}

/// One SMTP reply. `text` is public: it never names config or internals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 status such as `5.1.1`, when the peer gave (or we give) one.
    pub status: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: if status.is_empty() { None } else { Some(status.to_string()) },
            text: text.into(),
        }
    }

    pub fn severity(&self) -> Severity {
        match self.code / 100 {
            2 => Severity::Positive,
            3 => Severity::Intermediate,
            4 => Severity::Transient,
            _ => Severity::Permanent,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.severity() == Severity::Positive
    }

    pub fn is_transient(&self) -> bool {
        self.severity() == Severity::Transient
    }

    pub fn is_permanent(&self) -> bool {
        self.severity() == Severity::Permanent
    }

    /// The wire form, `CODE STATUS text\r\n`, one line per line of `text`.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 16);
        let lines: Vec<&str> = self.text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(status) = &self.status {
                out.extend_from_slice(status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Some(s) => write!(f, "{} {} {}", self.code, s, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_multiline() {
        let r = Reply::new(250, "2.0.0", "one\ntwo");
        assert_eq!(r.to_wire(), b"250-2.0.0 one\r\n250 2.0.0 two\r\n");
        assert!(r.is_positive());
        assert!(Reply::new(451, "4.3.0", "x").is_transient());
    }
}
