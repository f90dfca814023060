//! SEARCH: evaluating imap-types search keys against one message. Flags,
//! size and dates come from the database row; header and text keys read the
//! message (raw and decoded, so an encoded subject is found by its text).

use chrono::{DateTime, NaiveDate};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::{Address, MessageParser};

use crate::mime::{Entity, fields};

/// Whether `n` is in `set`, with `*` meaning `largest`.
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(s) => v(s) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (v(a), v(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// One message as SEARCH sees it.
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    pub max_seq: u32,
    pub max_uid: u32,
    pub flags: &'a [String],
    pub size: i64,
    pub received_at: i64,
    /// The bytes, loaded only when a key needs them.
    pub raw: Option<&'a [u8]>,
}

/// Whether evaluating `key` needs the message bytes.
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.as_ref().iter().any(needs_content),
        Not(k) => needs_content(k),
        Or(a, b) => needs_content(a) || needs_content(b),
        Bcc(_) | Body(_) | Cc(_) | From(_) | Header(..) | Subject(_) | Text(_) | To(_) | SentBefore(_)
        | SentOn(_) | SentSince(_) => true,
        _ => false,
    }
}

pub fn matches(key: &SearchKey<'_>, c: &Candidate<'_>) -> bool {
    use SearchKey::*;
    let flag = |f: &str| c.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
    let day = || DateTime::from_timestamp(c.received_at, 0).map(|d| d.date_naive());
    let text = |s: &[u8]| String::from_utf8_lossy(s).to_lowercase();
    match key {
        And(keys) => keys.as_ref().iter().all(|k| matches(k, c)),
        Not(k) => !matches(k, c),
        Or(a, b) => matches(a, c) || matches(b, c),
        SequenceSet(set) => in_set(set, c.seq, c.max_seq),
        Uid(set) => in_set(set, c.uid, c.max_uid),
        All | Old => true,
        New | Recent => false,
        Answered => flag("\\Answered"),
        Unanswered => !flag("\\Answered"),
        Deleted => flag("\\Deleted"),
        Undeleted => !flag("\\Deleted"),
        Draft => flag("\\Draft"),
        Undraft => !flag("\\Draft"),
        Flagged => flag("\\Flagged"),
        Unflagged => !flag("\\Flagged"),
        Seen => flag("\\Seen"),
        Unseen => !flag("\\Seen"),
        Keyword(k) => flag(k.inner()),
        Unkeyword(k) => !flag(k.inner()),
        Larger(n) => c.size > i64::from(*n),
        Smaller(n) => c.size < i64::from(*n),
        Before(d) => day().is_some_and(|x| x < *d.as_ref()),
        On(d) => day().is_some_and(|x| x == *d.as_ref()),
        Since(d) => day().is_some_and(|x| x >= *d.as_ref()),
        SentBefore(d) => sent(c).is_some_and(|x| x < *d.as_ref()),
        SentOn(d) => sent(c).is_some_and(|x| x == *d.as_ref()),
        SentSince(d) => sent(c).is_some_and(|x| x >= *d.as_ref()),
        From(s) => header_has(c, "from", &text(s.as_ref())),
        To(s) => header_has(c, "to", &text(s.as_ref())),
        Cc(s) => header_has(c, "cc", &text(s.as_ref())),
        Bcc(s) => header_has(c, "bcc", &text(s.as_ref())),
        Subject(s) => header_has(c, "subject", &text(s.as_ref())),
        Header(name, s) => header_has(c, &text(name.as_ref()), &text(s.as_ref())),
        Body(s) => body_has(c, &text(s.as_ref()), false),
        Text(s) => body_has(c, &text(s.as_ref()), true),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn sent(c: &Candidate<'_>) -> Option<NaiveDate> {
    let raw = c.raw?;
    let m = MessageParser::new().parse_headers(raw)?;
    let d = m.date()?;
    DateTime::from_timestamp(d.to_timestamp(), 0).map(|d| d.date_naive())
}

/// Case-insensitive substring in the named header fields, raw or decoded.
/// An empty needle matches any message that has the field.
fn header_has(c: &Candidate<'_>, name: &str, needle: &str) -> bool {
    let Some(raw) = c.raw else { return false };
    let e = Entity::parse(raw);
    let mut found_field = false;
    for (n, v) in fields(e.header) {
        if n.eq_ignore_ascii_case(name) {
            found_field = true;
            if String::from_utf8_lossy(v).to_lowercase().contains(needle) {
                return true;
            }
        }
    }
    if !found_field {
        return false;
    }
    if needle.is_empty() {
        return true;
    }
    let Some(m) = MessageParser::new().parse_headers(raw) else { return false };
    let decoded = match name {
        "subject" => m.subject().map(str::to_string),
        "from" => m.from().map(address_text),
        "to" => m.to().map(address_text),
        "cc" => m.cc().map(address_text),
        "bcc" => m.bcc().map(address_text),
        _ => None,
    };
    decoded.is_some_and(|d| d.to_lowercase().contains(needle))
}

fn address_text(a: &Address<'_>) -> String {
    let mut s = String::new();
    for addr in a.iter() {
        s.push_str(addr.name.as_deref().unwrap_or(""));
        s.push(' ');
        s.push_str(addr.address.as_deref().unwrap_or(""));
        s.push(' ');
    }
    s
}

fn body_has(c: &Candidate<'_>, needle: &str, with_header: bool) -> bool {
    let Some(raw) = c.raw else { return false };
    let e = Entity::parse(raw);
    let haystack = if with_header { raw } else { e.body };
    if String::from_utf8_lossy(haystack).to_lowercase().contains(needle) {
        return true;
    }
    // Decoded text parts (quoted-printable, base64, charsets).
    let Some(m) = MessageParser::new().parse(raw) else { return false };
    (0..m.text_body.len()).any(|i| m.body_text(i).is_some_and(|t| t.to_lowercase().contains(needle)))
}
