//! The reason taxonomy and the rules that find a reason in diagnostic text.
//! The rules are data (`rules/reasons.toml`), compiled once into one
//! automaton per rule; the first rule (in file order) that matches wins.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

pub use vocabulary::Reason;

#[derive(Deserialize)]
struct RuleFile {
    rule: Vec<Rule>,
    status: HashMap<String, Reason>,
    #[serde(default)]
    filter: FilterFile,
}

/// Content-filtering appliances: their own "unknown user" is a filter's
/// verdict on the message (filtered), not the address's.
#[derive(Deserialize, Default)]
struct FilterFile {
    #[serde(default)]
    signatures: Vec<String>,
}

#[derive(Deserialize)]
struct Rule {
    reason: Reason,
    patterns: Vec<String>,
    /// The cause stands even when a temporary failure then expired.
    #[serde(default)]
    stands: bool,
    /// The wording outranks a specific status, however vague its reason,
    /// and the command it answered (a provider's own code).
    #[serde(default)]
    firm: bool,
    /// Where the wording comes from (a provider's documentation, an MTA's
    /// source, an RFC); shown by `sluice classify --explain`.
    #[serde(default)]
    source: Option<String>,
}

struct Rules {
    /// One automaton per rule (its patterns as alternatives), in file order.
    rules: Vec<(Reason, Regex, Flags)>,
    /// Each rule's source, in the same order (for `--explain` only).
    sources: Vec<Option<String>>,
    /// The same rules in groups, in file order, each group one alternation:
    /// one pass over the text says whether any rule of the group matches,
    /// and only then are its rules tried one by one. (One RegexSet of all
    /// the rules is far slower: its lazy DFA has too many states for its
    /// cache; one pass per rule scans the text fifty times.)
    groups: Vec<Regex>,
    status: HashMap<String, Reason>,
    filter: Option<Regex>,
}

/// What a rule says about its cause beyond the reason.
#[derive(Clone, Copy, Default)]
struct Flags {
    stands: bool,
    firm: bool,
    /// The rule's place in the file (from 1), for `--explain`.
    number: usize,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    // The file is part of the binary; a mistake in it fails every test at once.
    let file: RuleFile =
        toml::from_str(include_str!("../rules/reasons.toml")).expect("rules/reasons.toml parses");
    // Word boundaries are ASCII ones: a Unicode `\b` makes the lazy DFA
    // give up on any non-ASCII text and fall back to the much slower PikeVM
    // (diagnostics are ASCII words; a boundary beside CJK text counts).
    let ascii_boundaries = |p: &str| p.replace(r"\b", r"(?-u:\b)");
    let alternations: Vec<String> = file
        .rule
        .iter()
        .map(|rule| {
            rule.patterns.iter().map(|p| format!("(?:{})", ascii_boundaries(p))).collect::<Vec<_>>().join("|")
        })
        .collect();
    let groups = alternations
        .chunks(RULES_PER_GROUP)
        .map(|chunk| {
            RegexBuilder::new(&chunk.iter().map(|a| format!("(?:{a})")).collect::<Vec<_>>().join("|"))
                .case_insensitive(true)
                .size_limit(64 << 20)
                // A group's lazy DFA has many states; with the default cache
                // it gives up on long texts and falls back to the (slow)
                // PikeVM.
                .dfa_size_limit(16 << 20)
                .build()
                .expect("rules/reasons.toml patterns compile as groups")
        })
        .collect();
    let sources = file.rule.iter().map(|rule| rule.source.clone()).collect();
    let rules = file
        .rule
        .into_iter()
        .zip(alternations)
        .enumerate()
        .map(|(i, (rule, alternation))| {
            let re = RegexBuilder::new(&alternation)
                .case_insensitive(true)
                .size_limit(32 << 20)
                .build()
                .expect("rules/reasons.toml patterns compile");
            (rule.reason, re, Flags { stands: rule.stands, firm: rule.firm, number: i + 1 })
        })
        .collect();
    let filter = (!file.filter.signatures.is_empty()).then(|| {
        let alternation =
            file.filter.signatures.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        RegexBuilder::new(&alternation).case_insensitive(true).build().expect("filter signatures compile")
    });
    Rules { rules, sources, groups, status: file.status, filter }
});

/// The report (or the Received trail of its returned message) was written
/// by a content-filtering appliance.
pub fn by_filter_appliance(raw: &str) -> bool {
    RULES.filter.as_ref().is_some_and(|re| re.is_match(raw))
}

/// Diagnostics say what they mean early; scanning more only costs time.
const MAX_DIAGNOSTIC: usize = 2000;

/// The first rule's reason whose pattern matches `text`.
#[cfg(test)]
pub fn from_text(text: &str) -> Option<Reason> {
    first_rule(text).map(|(reason, _)| reason)
}

/// The first matching rule: its reason, and whether that cause stands even
/// when the message then expired in a queue.
fn first_rule(text: &str) -> Option<(Reason, Flags)> {
    let text = &text[..floor_boundary(text, MAX_DIAGNOSTIC)];
    RULES
        .groups
        .iter()
        .zip(RULES.rules.chunks(RULES_PER_GROUP))
        .filter(|(group, _)| group.is_match(text))
        .find_map(|(_, rules)| {
            rules.iter().find(|(_, re, _)| re.is_match(text)).map(|(reason, _, flags)| (*reason, *flags))
        })
}

/// Rules per group (see `Rules::groups`), measured on the fixtures.
const RULES_PER_GROUP: usize = 8;

/// The reason an RFC 3463 status implies, if it is specific enough.
pub fn from_status(status: &str) -> Option<Reason> {
    RULES.status.get(status).copied()
}

/// Decides a recipient's reason, then adjusts it to the SMTP command that
/// failed: an "unknown user" after DATA is a content filter speaking
/// (filtered), and a refusal at MAIL FROM is about the sender (rejected).
pub fn decide(
    diagnostic: Option<&str>,
    status: Option<&str>,
    action: Option<&str>,
    command: Option<&str>,
) -> Reason {
    let joined = diagnostic.map(join_continuations);
    let diagnostic = joined.as_deref();
    // The rules run once; their flags say how the match weighs.
    let rule = diagnostic.and_then(first_rule);
    if let (Some((reason, flags)), Some(text)) = (rule, diagnostic) {
        crate::explain::note(|| explain_rule(reason, flags, text));
    }
    let r = decide_text(rule, status, action);
    let stands = rule.is_some_and(|(_, flags)| flags.stands);
    let firm = rule.is_some_and(|(_, flags)| flags.firm);
    let command = command.or_else(|| diagnostic.and_then(crate::text::smtp_command));
    let reply_code = || diagnostic.and_then(crate::text::reply_code);
    // Without a status, a 4xx reply code says the failure was temporary.
    let status_or_reply =
        || status.or_else(|| reply_code().filter(|c| (400..500).contains(c)).map(|_| "4.0.0"));
    let (adjusted, why) = match (r, command) {
        (Reason::Rejected | Reason::Undefined, Some("HELO" | "CONN")) => {
            (Reason::Blocked, "a refusal of the connection or greeting refuses the sending host")
        }
        (Reason::Userunknown, Some("DATA")) if !firm && !status.is_some_and(|s| s.starts_with("5.1.")) => {
            (Reason::Filtered, "an unknown user after DATA is a content filter speaking")
        }
        (
            Reason::Userunknown | Reason::Hostunknown | Reason::Undefined | Reason::Securityerror,
            Some("MAIL"),
        ) => (Reason::Rejected, "a refusal at MAIL FROM is about the sender"),
        // "550 5.7.1 User unknown": unless the reply is 553 ("mailbox name
        // not allowed", about the address).
        (Reason::Userunknown, _)
            if !firm && status.is_some_and(|s| s.starts_with("5.7.")) && reply_code() != Some(553) =>
        {
            (Reason::Filtered, "the 5.7.x status says policy: the unknown user is a filter's verdict")
        }
        // A final failure with a temporary status: it sat in a queue until
        // it expired, retried against a network fault (unless the rule that
        // matched says that fault is the cause, e.g. DNS)...
        (Reason::Networkerror, _)
            if !stands
                && (failed_temporarily(action, status_or_reply())
                    || diagnostic.is_some_and(says_expired)) =>
        {
            (Reason::Expired, "a network fault retried until the queue gave up")
        }
        // ...or held with no cause named at all ("temporary failure"),
        // unless the report says it gave up on it.
        (Reason::Undefined | Reason::Systemerror, _) if !stands && failed_temporarily(action, status) => {
            if diagnostic.is_some_and(says_expired) {
                (Reason::Expired, "failed with a temporary status, and the text says it expired")
            } else {
                (Reason::Onhold, "failed with a temporary status and no cause named")
            }
        }
        (Reason::Undefined | Reason::Systemerror | Reason::Networkerror, _)
            if action.is_some_and(|a| a.eq_ignore_ascii_case("expired")) =>
        {
            (Reason::Expired, "the report says Action: expired")
        }
        (r, _) => (r, ""),
    };
    if adjusted != r {
        crate::explain::note(|| {
            let cmd = command.map(|c| format!(" (failed command {c})")).unwrap_or_default();
            format!("{} -> {}{cmd}: {why}", r.as_str(), adjusted.as_str())
        });
    }
    adjusted
}

fn explain_rule(reason: Reason, flags: Flags, text: &str) -> String {
    let text = &text[..floor_boundary(text, MAX_DIAGNOSTIC)];
    let matched = RULES
        .rules
        .get(flags.number - 1)
        .and_then(|(_, re, _)| re.find(text))
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let mut how = String::new();
    if flags.firm {
        how.push_str(", firm");
    }
    if flags.stands {
        how.push_str(", stands");
    }
    let source = RULES
        .sources
        .get(flags.number - 1)
        .and_then(Option::as_deref)
        .map(|s| format!("; source: {s}"))
        .unwrap_or_default();
    format!("rule #{} ({}{how}) matched {matched:?}{source}", flags.number, reason.as_str())
}

/// The text says the message expired in a queue (any "expired" rule
/// matches, wherever it stands in the order).
fn says_expired(text: &str) -> bool {
    let text = &text[..floor_boundary(text, MAX_DIAGNOSTIC)];
    RULES.rules.iter().any(|(reason, re, _)| *reason == Reason::Expired && re.is_match(text))
}

/// A multi-line reply folded into one line ("550-5.7.1 The first part
/// 550-5.7.1 goes on 550 5.7.1 and ends", RFC 5321 4.2.1) read as the one
/// reply it is: the code, and the enhanced status after it, that open each
/// continuation line are dropped, so that a phrase the server broke across
/// lines still reads whole. The first line's code stays. Text with no
/// continuation line ("NNN-") is returned as it is.
pub(crate) fn join_continuations(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let at_word = |i: usize| i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\r' | b'\n' | b':' | b';' | b'(');
    let code_at = |i: usize| {
        i + 4 <= b.len()
            && matches!(b[i], b'2'..=b'5')
            && b[i + 1..i + 3].iter().all(u8::is_ascii_digit)
            && at_word(i)
    };
    let Some(first) = (0..b.len()).find(|&i| code_at(i) && b[i + 3] == b'-') else {
        return Cow::Borrowed(text);
    };
    let code = &b[first..first + 3];
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first + 4]);
    let mut i = first + 4;
    let mut kept = i;
    while i < b.len() {
        if b[i - 1].is_ascii_whitespace()
            && code_at(i)
            && &b[i..i + 3] == code
            && matches!(b[i + 3], b'-' | b' ')
        {
            out.push_str(&text[kept..i]);
            i += 4;
            i += status_len(&b[i..]);
            kept = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[kept..]);
    Cow::Owned(out)
}

/// The length of an enhanced status ("5.7.1") and the space after it at the
/// start of `b`, or 0.
fn status_len(b: &[u8]) -> usize {
    let digits = |from: usize| b[from.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let class = digits(0);
    if class != 1 || b.get(1) != Some(&b'.') {
        return 0;
    }
    let subject = digits(2);
    if subject == 0 || b.get(2 + subject) != Some(&b'.') {
        return 0;
    }
    let end = 3 + subject + digits(3 + subject);
    match b.get(end) {
        Some(b' ') if end > 3 + subject => end + 1,
        _ => 0,
    }
}

pub(crate) fn floor_boundary(text: &str, max: usize) -> usize {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// A final failure (`Action: failed`) with a temporary (4.x.x) status.
fn failed_temporarily(action: Option<&str>, status: Option<&str>) -> bool {
    action.is_some_and(|a| a.eq_ignore_ascii_case("failed")) && status.is_some_and(|s| s.starts_with('4'))
}

fn decide_text(rule: Option<(Reason, Flags)>, status: Option<&str>, action: Option<&str>) -> Reason {
    // 5.2.3: the message is over the recipient's own limit, whatever the
    // wording ("message size exceeds ...").
    if status == Some("5.2.3") {
        crate::explain::note(|| "status 5.2.3 -> exceedlimit (over the recipient's own size limit)".into());
        return Reason::Exceedlimit;
    }
    let from_status = status.and_then(from_status);
    let from_text = rule.map(|(reason, _)| reason);
    let firm = rule.is_some_and(|(_, flags)| flags.firm);
    let (reason, why) = match (from_text, from_status) {
        // A specific status outranks vague wording ("rejected", "denied").
        // ...and settles user-versus-host, which prose often blurs.
        (Some(t), Some(s))
            if status.is_some_and(is_specific)
                && (is_vague(t) && !firm
                    || matches!(t, Reason::Userunknown | Reason::Hostunknown)
                        && status.is_some_and(|s| s.starts_with("5.1."))) =>
        {
            (s, "the specific status outranks the rule's wording")
        }
        (Some(t), _) => (t, "the rule's wording decides"),
        (None, Some(s)) => (s, "no rule matched; the status decides"),
        (None, None) => {
            match (action.map(str::to_ascii_lowercase).as_deref(), status.and_then(|s| s.chars().next())) {
                (Some("delivered" | "relayed" | "expanded"), _) | (_, Some('2')) => (
                    Reason::Delivered,
                    "no rule or status cause; the action or a 2.x.x status says delivered",
                ),
                (Some("delayed"), _) => (Reason::Expired, "no rule or status cause; Action: delayed"),
                _ => (Reason::Undefined, "no rule matched and the status names no cause"),
            }
        }
    };
    crate::explain::note(|| {
        let status = match (status, from_status) {
            (Some(st), Some(r)) => format!("status {st} (RFC 3463) means {}", r.as_str()),
            (Some(st), None) => format!("status {st} names no single cause"),
            (None, _) => "no status".into(),
        };
        format!("{status}; {why}: {}", reason.as_str())
    });
    reason
}

/// Words that say little about the cause.
fn is_vague(r: Reason) -> bool {
    matches!(
        r,
        Reason::Rejected
            | Reason::Blocked
            | Reason::Systemerror
            | Reason::Undefined
            | Reason::Expired
            | Reason::Networkerror
            | Reason::Securityerror
    )
}

/// Statuses that name the cause precisely (5.7.1 and x.0.0 do not).
fn is_specific(status: &str) -> bool {
    // (Not X.1.0, RFC 3463's "Other address status": Exchange's "5.1.0
    // Sender denied" is about the sender.)
    matches!(
        status,
        "5.1.1"
            | "5.1.2"
            | "5.1.3"
            | "5.1.6"
            | "5.1.7"
            | "5.1.8"
            | "5.1.10"
            | "5.2.1"
            | "5.2.2"
            | "5.3.4"
            | "4.2.2"
            | "5.7.23"
            | "5.7.25"
            | "5.7.9"
            | "5.7.26"
    )
}

/// Whether a recipient's failure is hard (the address will never work): the
/// hard reasons, and a domain that accepts no mail at all (null MX, no mail
/// exchanger) when the failure is final rather than a deferral.
pub fn is_hard(reason: Reason, status: Option<&str>, action: Option<&str>) -> bool {
    reason.is_hard() || reason == Reason::Notaccept && is_final(status, action)
}

/// A failure that is not a deferral: neither a 4.x.x status nor
/// `Action: delayed`.
pub fn is_final(status: Option<&str>, action: Option<&str>) -> bool {
    !status.is_some_and(|s| s.starts_with('4')) && !action.is_some_and(|a| a.eq_ignore_ascii_case("delayed"))
}

/// Forces the rules to compile (tests and benchmarks call it up front).
pub fn warm_up() {
    LazyLock::force(&RULES);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folded_multi_line_reply_reads_as_one() {
        let folded = "host mx.example.net [192.0.2.1]: 550-5.7.1 This message was\n550-5.7.1 blocked 550 5.7.1 for spam";
        assert_eq!(
            join_continuations(folded),
            "host mx.example.net [192.0.2.1]: 550-5.7.1 This message was\nblocked for spam"
        );
        // Without a status, and a code of another reply left alone.
        assert_eq!(
            join_continuations("553-SPF domain 553-fail 553 here; 550 x"),
            "553-SPF domain fail here; 550 x"
        );
        // One line: as it is, borrowed.
        assert!(matches!(join_continuations("550 5.1.1 User unknown 550"), Cow::Borrowed(_)));
        assert!(matches!(join_continuations("x-550-"), Cow::Borrowed(_)));
    }

    #[test]
    fn rules_compile_and_order_matters() {
        warm_up();
        assert_eq!(from_text("550 5.1.1 <a@b>: User unknown"), Some(Reason::Userunknown));
        assert_eq!(from_text("552 Mailbox full, quota exceeded"), Some(Reason::Mailboxfull));
        assert_eq!(from_text("554 Your IP is listed at zen.spamhaus.org"), Some(Reason::Blocked));
        assert_eq!(from_text("Message rejected as spam"), Some(Reason::Spamdetected));
        // A host name that does not exist, not a dotted local part.
        assert_eq!(from_text("553 mx.example.test does not exist"), Some(Reason::Hostunknown));
        assert_eq!(from_text("550 john.doe does not exist"), Some(Reason::Userunknown));
        assert_eq!(decide(Some("whatever"), Some("5.1.1"), Some("failed"), None), Reason::Userunknown);
        assert_eq!(decide(None, Some("4.4.7"), Some("delayed"), None), Reason::Expired);
        assert_eq!(decide(None, None, None, None), Reason::Undefined);
        // A suspended mailbox is soft (it can come back) but address-level.
        assert!(Reason::Userunknown.is_hard() && !Reason::Blocked.is_hard());
        assert!(!Reason::Suspend.is_hard() && Reason::Suspend.is_address_level());
        assert!(Reason::Notaccept.is_address_level() && !Reason::Blocked.is_address_level());
        // Providers' published codes outrank the words beside them.
        assert_eq!(
            from_text("550 5.2.0 Mail rejete. Mail rejected. OFR_506 [506]"),
            Some(Reason::Spamdetected)
        );
        assert_eq!(
            decide(Some("550 5.1.0 <x@y> sender rejected. AUP#In-1310"), Some("5.1.0"), Some("failed"), None),
            Reason::Toomanyconn
        );
        // A provider's own code for a missing account stands after DATA.
        let yahoo = "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]";
        assert_eq!(decide(Some(yahoo), Some("5.0.0"), Some("failed"), Some("DATA")), Reason::Userunknown);
        assert_eq!(
            decide(Some("550 Unknown user a@b"), None, Some("failed"), Some("DATA")),
            Reason::Filtered
        );
        // A refusal of the greeting is a block; 550 5.7.1 user unknown a filter.
        assert_eq!(
            decide(
                Some("SMTP error from remote mail server after EHLO a.test:\n550 Rejected"),
                None,
                Some("failed"),
                None
            ),
            Reason::Blocked
        );
        assert_eq!(
            decide(Some("550 5.7.1 550 User Unknown"), Some("5.7.1"), Some("failed"), None),
            Reason::Filtered
        );
        assert!(is_hard(Reason::Notaccept, Some("5.1.10"), Some("failed")));
        assert!(!is_hard(Reason::Notaccept, Some("4.4.4"), Some("failed")));
    }

    #[test]
    fn rule_flags_and_temporary_failures() {
        // firm: a named block list outranks a contrary 5.1.x status.
        let spamhaus = "553 http://www.spamhaus.org/query/bl?ip=192.0.2.1";
        assert_eq!(decide(Some(spamhaus), Some("5.1.3"), Some("failed"), None), Reason::Blocked);
        // stands: a DNS failure is the cause even after the queue gave up.
        let dns = "DNS Error: DNS type 'mx' lookup of example.test responded with code NXDOMAIN";
        assert_eq!(decide(Some(dns), Some("4.0.0"), Some("failed"), None), Reason::Networkerror);
        // A retried network fault expired; no cause at all is on hold...
        assert_eq!(
            decide(Some("Connection timed out"), Some("4.4.1"), Some("failed"), None),
            Reason::Expired
        );
        assert_eq!(
            decide(Some("450 4.0.0 Temporary failure"), Some("4.0.0"), Some("failed"), None),
            Reason::Onhold
        );
        // ...unless the report says it gave up.
        let gave_up = "Resources temporarily unavailable. This message has been in the queue too long.";
        assert_eq!(decide(Some(gave_up), Some("4.1.9"), Some("failed"), None), Reason::Expired);
        let timed_out =
            "unable to connect: Operation timed out. This message has been in the queue too long.";
        assert_eq!(decide(Some(timed_out), None, Some("failed"), None), Reason::Expired);
    }
}
