//! A message's header fields, read from the bytes sluice still keeps (a
//! quarantined copy, or the spool while it is queued): the record stores
//! no headers. Shown as received (unfolded, not decoded).

use serde::Serialize;

/// How much of a message is looked at for its header block.
const HEAD_MAX: usize = 64 * 1024;
/// Fields shown at most (a message of thousands is cut).
const FIELDS_MAX: usize = 200;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The header fields of `content`: up to the first empty line (within
/// 64 KiB), folded lines joined, invalid UTF-8 replaced.
pub fn parse(content: &[u8]) -> Vec<Header> {
    let head = &content[..content.len().min(HEAD_MAX)];
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<Header> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
            continue;
        }
        if out.len() == FIELDS_MAX {
            break;
        }
        match line.split_once(':') {
            Some((name, value)) => {
                out.push(Header { name: name.trim_end().to_string(), value: value.trim().to_string() })
            }
            // Not a field: the header block is over (a malformed message).
            None => break,
        }
    }
    out
}

/// The first field called `name` (any case).
pub fn field<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unfolded_and_end_at_the_empty_line() {
        let m =
            b"From: Ann <a@x.test>\r\nSubject: a long\r\n\tsubject\r\nX-Bare: lf\n\r\nBody: not a header\r\n";
        let h = parse(m);
        let names: Vec<&str> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["From", "Subject", "X-Bare"]);
        assert_eq!(field(&h, "subject"), Some("a long subject"));
        assert_eq!(field(&h, "body"), None);
    }

    #[test]
    fn garbage_and_invalid_utf8_never_fail() {
        assert!(parse(b"").is_empty());
        assert!(parse(b"no colon here\r\nX: y\r\n").is_empty());
        assert_eq!(parse(b"X: \xff\xfe\r\n\r\n")[0].value, "\u{fffd}\u{fffd}");
    }
}
