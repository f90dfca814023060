//! Which recipients a report names as failed. Reports that follow no
//! standard still share a few layouts: the failed addresses on lines of
//! their own (bare, `<addr>:`, `addr on DATE`, `'addr'`, `SMTP:addr`,
//! `Name <addr>:`), after `RCPT TO:` in a session transcript, under a
//! heading such as Domino's "was not delivered to:", or, last, in a sentence
//! that says the address failed.

use std::sync::LazyLock;

use mail_parser::Message;
use regex::Regex;

pub(crate) static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    // (A local part starts with neither a quote nor a dot: `'a@b'` is a
    // quoted address, as old Exchange lists them.)
    Regex::new(r"[A-Za-z0-9!#$%&*+/=?^_`{|}~\-][A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
        .expect("static regex")
});
pub(crate) static DAEMON: LazyLock<Regex> = LazyLock::new(|| {
    // Office 365 writes NDRs from a system mailbox, `MicrosoftExchange`
    // and 32 hex digits; MDaemon from `MDaemon@`; old Exchange as "System
    // Administrator".
    Regex::new(r"(?i)mailer[-_ ]?daemon|postmaster|\bno-?reply@|mail delivery (?:system|subsystem)|mail administrator|system administrator|\bmdaemon@|microsoftexchange[0-9a-f]{32}@|nobody@|bounce").expect("static regex")
});

/// Addresses next to words of failure: the last resort of a report that
/// lists no address on a line of its own ("Local mailbox a@b is
/// unavailable: user not found").
static FAILURE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i){FAILED}|unavailable|not found|no such|unknown|invalid|does(?:n't| not) exist|mailbox (?:is )?full|over quota|refused|denied"
    ))
    .expect("static regex")
});

/// Words a report uses for a failed delivery (its heading, or a sentence).
pub(crate) const FAILED: &str = r"permanent(?:ly)? (?:error|fail)|could not be delivered|did not reach|failed|undeliverable|unable to deliver|not delivered|rejected|error";

/// Address-type prefixes before an address (Exchange's `SMTP:a@b`, the
/// DSN's `rfc822;a@b` quoted in prose).
const TYPE_PREFIXES: [&str; 3] = ["smtp:", "rfc822;", "rfc822:"];

/// A line that is (mostly) just an address: how most reports list failures.
pub(crate) fn is_address_line(t: &str) -> bool {
    let Some(m) = ADDRESS.find(t) else { return false };
    // (A list bullet or quotes around the address are no label.)
    let quote = |c: char| matches!(c, '<' | '>' | '"' | '\'' | '*' | '\u{2022}') || c.is_whitespace();
    let mut before = t[..m.start()].trim_matches(quote);
    let ends_with = |p: &str| {
        before
            .len()
            .checked_sub(p.len())
            .and_then(|i| before.get(i..))
            .is_some_and(|e| e.eq_ignore_ascii_case(p))
    };
    if let Some(p) = TYPE_PREFIXES.iter().find(|p| ends_with(p)) {
        before = before[..before.len() - p.len()].trim_matches(quote);
    }
    let after = t[m.end()..].trim_start_matches(['>', '"', '\'']);
    let after_trim = after.trim();
    // "Unknown user: a@b", "Recipient address: a@b", "Failed recipient: a@b"
    // (Not a DSN's Original-Recipient quoted in prose: the address the
    // sender wrote, which Final-Recipient beside it names as delivered to.)
    let labelled = before.ends_with(':') && before.len() < 48 && {
        let l = before.to_ascii_lowercase();
        !l.contains("original-recipient")
            && ["user", "recipient", "address", "failed", "invalid", "unknown", "delivered to"]
                .iter()
                .any(|w| l.contains(w))
    };
    // Sendmail: "554 <a@b>... Host unknown".
    let reply_code = before.len() == 3
        && before.bytes().all(|b| b.is_ascii_digit())
        && matches!(before.as_bytes()[0], b'4' | b'5')
        && after_trim.starts_with("...");
    // "Ann Example <a@b>:" (a display name, then the address in brackets
    // and nothing or the diagnostic after a colon).
    // ("please contact <a@b>" is prose: the colon and diagnostic must follow.)
    let named = t[..m.start()].ends_with('<')
        && before.len() < 48
        && before.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '\'' | '"' | ','))
        && after_trim.starts_with(':');
    (before.is_empty() || labelled || reply_code || named)
        && (after_trim.is_empty()
            || (after_trim.starts_with('<') && after_trim.contains(m.as_str()))
            || after_trim.starts_with(':')
            || after_trim.starts_with("...")
            || after_trim.starts_with("<mailto:")
            || after_trim.starts_with('(')
            || after_trim.starts_with('[')
            || after_trim.starts_with(';')
            || after_trim.starts_with("on ")
            || after_trim.starts_with(','))
}

/// Lotus/HCL Domino's delivery failure report lists each recipient under
/// "was not delivered to:" as the originator addressed it (the report's
/// Intended Recipient); its `Final-Recipient` is where the router last sent
/// the message, after a directory lookup or a forwarding address.
pub(crate) fn intended_recipients(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !line.eq_ignore_ascii_case("was not delivered to:") {
            continue;
        }
        // The addresses on lines of their own, after a blank line.
        for t in lines.by_ref().skip_while(|t| t.is_empty()) {
            match ADDRESS.find(t).filter(|_| is_address_line(t)) {
                Some(m) => out.push(m.as_str().trim_end_matches('.').to_string()),
                None => break,
            }
        }
    }
    out
}

fn addresses_of(header: Option<&str>) -> Vec<String> {
    header.map(|h| ADDRESS.find_iter(h).map(|m| m.as_str().to_string()).collect()).unwrap_or_default()
}

/// A transcript's reply line that accepts the command: `<<< 250 ...`,
/// `<-- 250 ...`, `250 2.1.5 Ok` (after a time stamp too).
fn accepted_reply(line: &str) -> bool {
    let t = line.trim_start_matches(|c: char| c == '<' || c == '-' || c.is_whitespace());
    let t = t.rsplit_once("<-- ").map_or(t, |(_, r)| r);
    t.len() >= 4
        && t.starts_with('2')
        && t.as_bytes()[..3].iter().all(u8::is_ascii_digit)
        && matches!(t.as_bytes()[3], b' ' | b'-')
}

/// Recipients the prose reports as failed, in order, without duplicates.
pub(crate) fn failed_addresses(msg: &Message<'_>, text: &str) -> Vec<String> {
    let mut found: Vec<String> = addresses_of(msg.header_raw("X-Failed-Recipients"));
    let ignore: Vec<String> = [msg.header_raw("To"), msg.header_raw("From")]
        .into_iter()
        .flat_map(addresses_of)
        .map(|a| a.to_ascii_lowercase())
        .collect();
    // A listed postmaster address is the failed recipient only when the
    // report lists nothing else (mail sent to postmaster@ that bounced).
    let mut daemons: Vec<String> = Vec::new();
    let mut push = |found: &mut Vec<String>, a: &str| {
        let a = a.trim_end_matches('.').to_string();
        let l = a.to_ascii_lowercase();
        if ignore.contains(&l) {
            return;
        }
        if DAEMON.is_match(&l) {
            if !daemons.contains(&a) {
                daemons.push(a);
            }
            return;
        }
        if !found.iter().any(|f| f.eq_ignore_ascii_case(&a)) {
            found.push(a);
        }
    };
    // In a session transcript, a recipient the server accepted (the next
    // line's reply is 2xx) failed only if nothing else did (at DATA).
    let mut accepted: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, t) in lines.iter().enumerate() {
        if let Some(at) = t.to_ascii_uppercase().find("RCPT TO:") {
            if let Some(m) = ADDRESS.find(&t[at..]) {
                if lines.get(i + 1).is_some_and(|next| accepted_reply(next)) {
                    push(&mut accepted, m.as_str());
                } else {
                    push(&mut found, m.as_str());
                }
            }
            continue;
        }
        if is_address_line(t)
            && let Some(m) = ADDRESS.find(t)
        {
            push(&mut found, m.as_str());
        }
    }
    // (Accepted at RCPT and listed again as failed: failed.)
    if found.is_empty() {
        found = accepted;
    }
    if found.is_empty() {
        // Last resort: addresses next to failure words.
        for line in text.lines() {
            if FAILURE_WORDS.is_match(line)
                && let Some(m) = ADDRESS.find(line)
            {
                push(&mut found, m.as_str());
            }
        }
    }
    if found.is_empty() {
        found = daemons;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines() {
        assert!(is_address_line("  kijitora@example.ed.jp"));
        assert!(is_address_line("<kijitora@example.ne.jp>:"));
        assert!(is_address_line("kijitora@example.com<mailto:kijitora@example.com>"));
        assert!(!is_address_line("Please contact admin@example.com for help"));
        assert!(is_address_line("   * kijitora@example.com"));
        assert!(is_address_line("kijitora@example.co.jp [User unknown]"));
        assert!(is_address_line("554 <kuroneko@example.or.jp>... 550 Host unknown"));
        assert!(!is_address_line("250 <kuroneko@example.or.jp> sender ok"));
        // Old Exchange quotes the address and dates the line.
        assert!(is_address_line("'ann@example.net' on 3/15/2007 1:23 AM"));
        assert_eq!(ADDRESS.find("'ann@example.net'").map(|m| m.as_str()), Some("ann@example.net"));
        assert!(is_address_line("SMTP:ann@example.net"));
        assert!(is_address_line("Ann Example <ann@example.net>: host mx said: 550 unknown"));
        assert!(!is_address_line("From: Bob <bob@example.org>"));
        assert!(!is_address_line("Please write to Ann Example <ann@example.net> for help"));
        assert!(!is_address_line("For further assistance, please contact <support@example.net>"));
        assert!(!is_address_line("Original-Recipient: rfc822; ann@example.net"));
        assert!(is_address_line("Final-Recipient: rfc822; ann@example.net"));
        assert!(accepted_reply("<<< 250 2.1.5 Ok"));
        assert!(accepted_reply("Thu 2007-03-15 01:23:46: <-- 250 OK"));
        assert!(!accepted_reply("<<< 550 5.1.1 unknown"));
        assert!(!accepted_reply("2007-03-15 is the date"));
    }
}
