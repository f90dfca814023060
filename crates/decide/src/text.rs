//! Bounces in prose: the non-standard reports of Postfix, Sendmail, Exim,
//! qmail, Exchange/Office 365, Gmail and friends. Rather than one parser per
//! product, this reads what they share: a notice from a mailer daemon, the
//! failed addresses on lines of their own (or `<addr>:`, `RCPT TO:<addr>`),
//! the diagnostic that follows each, and a copy of the original below a
//! marker line.

use std::sync::LazyLock;

use mail_parser::{Message, PartType};
use regex::Regex;

use crate::recipients::{ADDRESS, DAEMON, failed_addresses, is_address_line};
use crate::{Classification, Original, RecipientReport, Verdict, reason};

static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([245])\.([0-7])\.(\d{1,3})\b").expect("static regex"));
static REPLY_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s:\(\[#'])([245][0-5][0-9])(?:[\s\-,]|$)").expect("static regex"));
/// Lines that start the copy of the original message.
static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?im)^[\s\-=_*]*(?:this is a copy of the message|below this line is a copy|original message (?:follows|headers)|-+ ?original message ?-+|-+ ?returned message ?-+|the (?:original|returned) message (?:follows|is (?:attached|included|below))|returned mail follows|message headers follow|headers of the original message|unsent message below|undelivered message headers|original message header|content-type: message/rfc822|content-type: text/rfc822-headers|-+ ?the header of the original message|\*\*\* original message|----- original message -----|your message reads|original message:[ \t]*$)",
    )
    .expect("static regex")
});
static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)undeliver|delivery (?:status notification|failure|failed|has failed|problem|report|notification)|returned mail|mail delivery (?:failed|failure|system|subsystem)|failure notice|non[- ]?delivery|nondeliverable|could not (?:be )?deliver|delivery unsuccessful|mail system error|message not delivered|returned to sender|rejected:|permanent error|mail could not be delivered|unable to deliver|delivery notification|warning: could not send|problem delivering|message delivery has failed|delayed mail|delivery delay",
    )
    .expect("static regex")
});
static DELAY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)will (?:continue|keep) (?:trying|to try|retrying)|still (?:trying|being retried)|has been delayed|delivery (?:is )?delayed|not (?:yet )?been delivered|warning: message .* still undelivered|delayed mail|\(delay\)|temporar(?:y|ily) (?:failure|unable)|will be retried")
        .expect("static regex")
});
static FAILED_HEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?i){}", crate::recipients::FAILED)).expect("static regex"));

/// Exim's heading for a delivery to a program (`pipe to |/path/cmd`).
static PIPE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^[\s\-]*pipe to \|").expect("static regex"));

static COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:after|in reply to|response to|>>>|smtp command:?)\s*(?:the\s+)?(?:end of\s+)?(rcpt to|mail from|data|end of data|helo|ehlo|connect)")
        .expect("static regex")
});

/// The SMTP command a failure answered, when the report says.
pub fn smtp_command(text: &str) -> Option<&'static str> {
    let c = COMMAND.captures(text)?;
    let cmd = c[1].to_ascii_lowercase();
    Some(match cmd.as_str() {
        "rcpt to" => "RCPT",
        "mail from" => "MAIL",
        "data" | "end of data" => "DATA",
        "helo" | "ehlo" => "HELO",
        _ => "CONN",
    })
}

/// In a session transcript (`>>> DATA` / `<<< 550 ... address`), the
/// command whose reply names `address`.
pub fn command_for(text: &str, address: &str) -> Option<&'static str> {
    let lower = address.to_ascii_lowercase();
    let mut last: Option<&str> = None;
    let mut heading = false;
    for line in text.lines() {
        let t = line.trim_start();
        // A section headed "SMTP command" (m-FILTER): its first line.
        if heading && !t.trim().is_empty() {
            let cmd = t.trim().to_ascii_uppercase();
            if cmd.starts_with("DATA") || cmd == "." {
                return Some("DATA");
            } else if cmd.starts_with("RCPT") {
                return Some("RCPT");
            } else if cmd.starts_with("MAIL") {
                return Some("MAIL");
            }
            heading = false;
        }
        if t.trim().trim_matches(['-', '=', ':', ' ']).eq_ignore_ascii_case("smtp command") {
            heading = true;
            continue;
        }
        if let Some(cmd) = t.strip_prefix(">>>") {
            last = Some(cmd.trim());
        } else if t.starts_with("<<<") && t.to_ascii_lowercase().contains(&lower) {
            let cmd = last?.to_ascii_uppercase();
            return Some(if cmd.starts_with("DATA") || cmd == "." {
                "DATA"
            } else if cmd.starts_with("RCPT") {
                "RCPT"
            } else if cmd.starts_with("MAIL") {
                "MAIL"
            } else {
                return None;
            });
        }
    }
    None
}

/// The first RFC 3463 status in `s` (`x.0.9yy` pseudo-codes excluded); in a
/// transcript, the first failure (4.x.x, 5.x.x) rather than an earlier
/// `250 2.1.5 Ok`.
pub fn rfc3463(s: &str) -> Option<String> {
    let all = || STATUS.captures_iter(s);
    let c = all().find(|c| &c[1] != "2").or_else(|| all().next())?;
    // A relay's generic status wrapping the remote reply ("5.1.0 - Unknown
    // address error 550-'5.2.2 ... Mailbox Full'"): the remote's is precise.
    let generic = |c: &regex::Captures<'_>| matches!((&c[2], &c[3]), ("0", "0") | ("1", "0"));
    let c = if generic(&c) {
        all()
            .skip_while(|x| x.get(0).map(|m| m.start()) != c.get(0).map(|m| m.start()))
            .skip(1)
            .find(|x| x[1] == c[1] && !generic(x))
            .unwrap_or(c)
    } else {
        c
    };
    Some(format!("{}.{}.{}", &c[1], &c[2], &c[3]))
}

/// The SMTP reply code and RFC 3463 status mentioned in a diagnostic.
pub fn diagnostic_codes(diag: &str) -> (Option<u16>, Option<String>) {
    (reply_code(diag), rfc3463(diag))
}

/// The SMTP reply code of a diagnostic: the first that is not a success,
/// else the first.
pub fn reply_code(diag: &str) -> Option<u16> {
    let all = || REPLY_CODE.captures_iter(diag);
    all().find(|c| !c[1].starts_with('2')).or_else(|| all().next()).and_then(|c| c[1].parse().ok())
}

/// Text before the copy of the original.
fn before_marker(text: &str) -> &str {
    match MARKER.find(text) {
        Some(m) => &text[..m.start()],
        None => text,
    }
}

/// The report's own prose: the first text part (HTML stripped of tags when
/// that is all there is), cut at the returned message.
pub fn first_text(msg: &Message<'_>) -> String {
    use mail_parser::MimeHeaders;
    // Every text part of the report itself (attached text files included,
    // returned headers excluded); attached messages are parts of their own.
    let mut text = String::new();
    for part in &msg.parts {
        if let PartType::Text(t) = &part.body {
            let headers_only = part
                .content_type()
                .is_some_and(|ct| ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers")));
            if !headers_only {
                text.push_str(t);
                text.push('\n');
            }
        }
        if text.len() > 64 * 1024 {
            break;
        }
    }
    if text.trim().is_empty() {
        // Single-part reports whose body mail-parser does not see as text,
        // and a multipart whose boundary was lost (the parameter on a line
        // of its own, unindented): its raw text, part headers and all.
        let lost_boundary = |p: &mail_parser::MessagePart<'_>| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart") && ct.attribute("boundary").is_none()
            })
        };
        let opaque = msg.parts.iter().enumerate().find_map(|(i, p)| match &p.body {
            PartType::Binary(b) | PartType::InlineBinary(b) if i == 0 || lost_boundary(p) => Some(b),
            _ => None,
        });
        if let Some(b) = opaque {
            text = String::from_utf8_lossy(b).into_owned();
        }
    }
    let text = text.replace("\r\n", "\n");
    let cut = before_marker(&text);
    cut.chars().take(64 * 1024).collect()
}

/// What the report says about `address`: the lines after its mention.
pub fn diagnostic_for(text: &str, address: &str) -> Option<String> {
    let lower = address.to_ascii_lowercase();
    let lines: Vec<&str> = text.lines().collect();
    // The line that lists the address as failed, else its first mention
    // (not "To: a@b" in a summary of the original above the list).
    let mentions = |l: &&str| l.to_ascii_lowercase().contains(&lower);
    let at = lines
        .iter()
        .position(|l| mentions(l) && is_address_line(l.trim()))
        .or_else(|| lines.iter().position(mentions))?;
    let mut out = Vec::new();
    let same = lines[at].trim();
    // Text on the address line after the address itself ("<a@b>: 550 ...").
    if let Some(idx) = same.to_ascii_lowercase().find(&lower) {
        let rest = same[idx + lower.len()..].trim_start_matches(['>', ':', '.', ' ', ',', '\'']).trim();
        // Sendmail's "550 <a@b>... User unknown": the reply code leads.
        let code = same[..idx].trim_end_matches(['<', ' ']);
        // "User's mailbox is full: <a@b>": the label is the diagnostic
        // (unless it only names the field: "Recipient address: <a@b>").
        if let Some(label) = code.strip_suffix(':').map(str::trim)
            && label.len() > 3
            && !["recipient", "recipients", "address", "to", "addressee"]
                .iter()
                .any(|w| label.to_ascii_lowercase().ends_with(w))
        {
            out.push(label.to_string());
        }
        if rest.len() > 3 {
            if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
                out.push(format!("{code} {rest}"));
            } else {
                out.push(rest.to_string());
            }
        }
    }
    for line in lines.iter().skip(at + 1).take(12) {
        let t = line.trim();
        if t.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        // The next failed address ends this one's diagnostic; a reply that
        // names this address again ("550 <a@b>... No such user") is part of it.
        let names_other = ADDRESS.is_match(t) && !t.to_ascii_lowercase().contains(&lower);
        if names_other && is_address_line(t) {
            break;
        }
        // A transcript going on to another recipient (">>> RCPT To:<b@c>")
        // goes on to that address's diagnostic.
        if names_other && t.to_ascii_lowercase().contains("rcpt to:") {
            break;
        }
        // Rules (=====) and headings ("Technical details:") before the
        // diagnostic are layout.
        if out.is_empty()
            && (!t.chars().any(char::is_alphanumeric)
                || (t.ends_with(':') && t.len() < 40)
                || (t.starts_with("---") && t.ends_with("---")))
        {
            continue;
        }
        out.push(t.to_string());
    }
    // Nothing after a listed address: some reports (Lotus Notes) give the
    // reason on the line above it, below their heading.
    if out.is_empty() && is_address_line(lines[at].trim()) {
        let above = lines[..at].iter().rev().map(|l| l.trim()).find(|l| !l.is_empty());
        if let Some(t) = above.filter(|t| {
            t.chars().any(char::is_alphanumeric)
                && !t.ends_with(':')
                && !t.starts_with("--")
                && !t.starts_with("==")
                && !is_address_line(t)
                // (A heading: "... to the following recipients.")
                && !t.to_ascii_lowercase().contains("following")
        }) {
            out.push(t.to_string());
        }
    }
    // Listed without a reason ("The following addresses had permanent fatal
    // errors"), the address has its reply further down, in a transcript
    // ("<<< 550 <a@b>... User unknown", Sendmail; "550 a@b... User unknown").
    if !out.iter().any(|l| reply_code(l).is_some_and(|c| c >= 400))
        && let Some(reply) = lines.iter().enumerate().find(|&(i, l)| {
            i != at && l.to_ascii_lowercase().contains(&lower) && reply_code(l).is_some_and(|c| c >= 400)
        })
    {
        out.push(reply.1.trim().to_string());
    }
    let joined = out.join(" ");
    (!joined.is_empty()).then(|| joined.chars().take(1000).collect())
}

/// Headers of the returned original, from the text below the marker.
pub fn returned_headers(msg: &Message<'_>) -> Option<Original> {
    let text = msg.body_text(0)?.replace("\r\n", "\n");
    let m = MARKER.find(&text)?;
    let rest = &text[m.end()..];
    let start = rest.find('\n').map_or(rest.len(), |i| i + 1);
    let headers = rest[start..].trim_start_matches('\n');
    let parsed = crate::parser().parse_headers(headers.as_bytes())?;
    let o = crate::dsn::original_of(&parsed);
    (o.message_id.is_some() || o.from.is_some() || o.subject.is_some()).then_some(o)
}

/// A guess at which product wrote the report, from its well-known wording.
pub fn engine_hint(msg: &Message<'_>) -> Option<&'static str> {
    let body = msg.body_text(0).unwrap_or_default();
    let t = &body[..crate::reason::floor_boundary(&body, 4096)];
    let from = msg.header_raw("From").unwrap_or_default().to_ascii_lowercase();
    // One pass over the text for every wording; the first in list order wins.
    let mut found = [false; ENGINE_HINTS.len() + 2];
    for m in HINTS.find_overlapping_iter(t) {
        found[m.pattern().as_usize()] = true;
    }
    if let Some(i) = found[..ENGINE_HINTS.len()].iter().position(|&f| f) {
        return Some(ENGINE_HINTS[i].1);
    }
    let google_groups = found[ENGINE_HINTS.len()] && found[ENGINE_HINTS.len() + 1];
    if from.contains("googlegroups.com") || google_groups {
        return Some("GoogleGroups");
    }
    if from.contains("amazonses") || msg.header_raw("X-SES-Outgoing").is_some() {
        return Some("AmazonSES");
    }
    if from.contains("googlemail.com") || from.contains("google.com") {
        return Some("Gmail");
    }
    if msg.header_raw("X-Postfix-Queue-ID").is_some() {
        return Some("Postfix");
    }
    None
}

/// Well-known wordings of report writers, in order of precedence.
const ENGINE_HINTS: &[(&str, &str)] = &[
    ("this is the mail system at host", "Postfix"),
    ("this is the qmail-send program", "qmail"),
    ("this message was created automatically by mail delivery software", "Exim"),
    ("----- transcript of session follows -----", "Sendmail"),
    ("delivery has failed to these recipients or groups", "Office365"),
    ("diagnostic information for administrators", "Exchange2007"),
    ("google tried to deliver your message", "Gmail"),
    ("delivery to the following recipient", "Gmail"),
    ("sorry, we were unable to deliver your message to the following address", "Yahoo"),
    ("this message was created automatically by mail delivery software (exim", "Exim"),
    ("an error occurred while trying to deliver the mail to the following recipients", "Office365"),
    ("this message was generated by the opensmtpd", "OpenSMTPD"),
    ("your message was not delivered to the following recipients", "Domino"),
    ("this report relates to a message you sent", "MessagingServer"),
];

/// [`ENGINE_HINTS`], then the two marks of a Google Groups notice: one
/// Aho-Corasick pass (ASCII case folded) finds every wording in the text.
static HINTS: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    let extra = ["google groups", "groups.google.com"];
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(ENGINE_HINTS.iter().map(|(p, _)| *p).chain(extra))
        .expect("static patterns")
});

/// The message comes from a mailer daemon or postmaster.
pub fn from_daemon(msg: &Message<'_>) -> bool {
    DAEMON.is_match(msg.header_raw("From").unwrap_or_default())
}

/// The text of an attached message that is itself a report listing
/// `address` as failed.
fn returned_report_text(msg: &Message<'_>, address: &str) -> Option<String> {
    let lower = address.to_ascii_lowercase();
    msg.parts.iter().find_map(|p| match &p.body {
        PartType::Message(m) => {
            let text = first_text(m);
            text.lines()
                .any(|l| is_address_line(l.trim()) && l.to_ascii_lowercase().contains(&lower))
                .then_some(text)
        }
        _ => None,
    })
}

/// A list manager's refusal of a post from a non-member.
static NOT_MEMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:you are|you're|sender is) not (?:a )?(?:member|subscriber) of (?:this|the) (?:mailing )?list\b")
        .expect("static regex")
});

/// Apache James's own marks: its Bounce mailet's subject, the Message-ID
/// JavaMail gives the notice, the Received line of its SMTP server.
fn james_marks(msg: &Message<'_>) -> bool {
    msg.subject().is_some_and(|s| s.trim() == "[BOUNCE]")
        || msg.message_id().is_some_and(|id| id.contains(".JavaMail."))
        || msg
            .headers_raw()
            .any(|(name, value)| name.eq_ignore_ascii_case("Received") && value.contains("JAMES SMTP Server"))
}

/// What an Apache James notice (its Bounce and NotifySender mailets) says:
/// the error under "Error message below:" (else the notice's own words),
/// then "Message details:" with the envelope, the first recipient on
/// "RCPT TO:" and any others on lines of their own below it.
struct JamesNotice {
    recipients: Vec<String>,
    diagnostic: Option<String>,
}

fn james_notice(text: &str) -> Option<JamesNotice> {
    let lines: Vec<&str> = text.lines().collect();
    let details = lines.iter().position(|l| l.trim().eq_ignore_ascii_case("message details:"))?;
    let mut recipients: Vec<String> = Vec::new();
    let mut in_rcpt = false;
    for line in &lines[details + 1..] {
        let t = line.trim();
        let rcpt = t.get(..8).filter(|p| p.eq_ignore_ascii_case("RCPT TO:")).map(|_| &t[8..]);
        let address = match rcpt {
            Some(rest) => ADDRESS.find(rest),
            None if in_rcpt && is_address_line(t) => ADDRESS.find(t),
            None => None,
        };
        in_rcpt = address.is_some();
        if let Some(m) = address {
            let a = m.as_str().trim_end_matches('.');
            if !recipients.iter().any(|r| r.eq_ignore_ascii_case(a)) {
                recipients.push(a.to_string());
            }
        }
    }
    if recipients.is_empty() {
        return None;
    }
    let head = &lines[..details];
    let start =
        head.iter().position(|l| l.trim().eq_ignore_ascii_case("error message below:")).map_or(0, |i| i + 1);
    let words: Vec<&str> = head[start..].iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    let diagnostic = (!words.is_empty()).then(|| words.join(" ").chars().take(1000).collect());
    Some(JamesNotice { recipients, diagnostic })
}

/// A mailing-list manager (fml, ezmlm, Mailman, ...) returning a post it
/// refused because the sender is not a member: a bounce for the list's
/// address, named in the refusal.
fn list_refusal(msg: &Message<'_>) -> Option<Classification> {
    let from_list = ["X-MLServer", "X-ML-Name", "Mailing-List", "List-Id", "List-Post", "List-Subscribe"]
        .iter()
        .any(|h| msg.header_raw(*h).is_some());
    if !from_list {
        return None;
    }
    let body = msg.body_text(0)?;
    let head = &body[..crate::reason::floor_boundary(&body, 2000)];
    let m = NOT_MEMBER.find(head)?;
    let line_end = head[m.end()..].find('\n').map_or(head.len(), |i| m.end() + i);
    let address = ADDRESS.find(&head[m.end()..line_end])?.as_str().trim_end_matches('.').to_string();
    let diagnostic = head[m.start()..line_end].trim().to_string();
    let mut r = RecipientReport::bare(address, crate::Reason::Rejected);
    r.diagnostic = Some(diagnostic);
    r.action = Some("failed".into());
    Some(Classification {
        verdict: Verdict::Bounce,
        recipients: vec![r],
        feedback_type: None,
        original: Original::default(),
        mta: Some("MailingList".into()),
        source_ip: None,
        autoreply_from: None,
    })
}

/// A prose bounce: a daemon's notice that names failed recipients.
pub fn bounce(msg: &Message<'_>) -> Option<Classification> {
    let from = msg.header_raw("From").unwrap_or_default();
    let subject = msg.subject().unwrap_or_default();
    let return_path_null = msg.header_raw("Return-Path").is_some_and(|r| r.trim() == "<>");
    // RFC 3834: a notice a program wrote (reports say auto-generated or,
    // some MTAs, auto-replied), not a person.
    let auto_submitted =
        msg.header_raw("Auto-Submitted").is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let failed_header = msg.header_raw("X-Failed-Recipients").is_some();
    let from_daemon = DAEMON.is_match(from);
    let bounce_subject = BOUNCE_SUBJECT.is_match(subject);
    // Cheap header checks first: most mail is no report and stops here.
    let headers_say =
        failed_header || (bounce_subject && (from_daemon || return_path_null || auto_submitted));
    let james_marks = james_marks(msg);
    if !headers_say && !from_daemon && !james_marks {
        return list_refusal(msg);
    }
    let text = first_text(msg);
    let james = james_marks.then(|| james_notice(&text)).flatten();
    // Java applications' own mail has JavaMail marks too: without the
    // notice, only a daemon's or a telling header's mail goes on.
    if !headers_say && !from_daemon && james.is_none() {
        return None;
    }
    let engine = if james.is_some() { Some("ApacheJames") } else { engine_hint(msg) };
    // A daemon's message without a telling subject still counts when its
    // prose is a known report or names a failure.
    let looks_like_a_report = headers_say
        || engine.is_some()
        || FAILED_HEADING.is_match(&text)
        || text.to_ascii_uppercase().contains("RCPT TO");
    if !looks_like_a_report {
        return None;
    }
    let mut addresses = match &james {
        Some(j) => j.recipients.clone(),
        None => failed_addresses(msg, &text),
    };
    if addresses.is_empty() && (headers_say || FAILED_HEADING.is_match(&text)) {
        // The prose names no address ("could not be delivered to mobile"):
        // the returned original says whom the message was for.
        // (Not when the original is itself a daemon's report: a gateway
        // passing one on.)
        let o = crate::dsn::original(msg);
        if !o.from.as_deref().is_some_and(|f| DAEMON.is_match(f)) {
            addresses.extend(o.to);
        }
    }
    if addresses.is_empty() {
        return None;
    }
    let delayed = DELAY.is_match(subject) || DELAY.is_match(&text);
    let action = if delayed { "delayed" } else { "failed" };
    let prose = Prose {
        msg,
        text: &text,
        james_diagnostic: james.as_ref().and_then(|j| j.diagnostic.as_deref()),
        engine,
        action,
        single: addresses.len() == 1,
    };
    let recipients = addresses.into_iter().map(|address| prose.report(address)).collect();
    let mut original = crate::dsn::original(msg);
    // James writes its notice as a reply to the returned message
    // (JavaMail's `reply()`): In-Reply-To names it.
    if james.is_some() && original.message_id.is_none() {
        original.message_id = crate::human::in_reply_to(msg);
    }
    Some(Classification {
        verdict: if delayed { Verdict::Delay } else { Verdict::Bounce },
        recipients,
        feedback_type: None,
        original,
        mta: Some(engine.unwrap_or("unknown").to_string()),
        source_ip: None,
        autoreply_from: None,
    })
}

/// A prose report, read for one failed address at a time.
struct Prose<'a> {
    msg: &'a Message<'a>,
    text: &'a str,
    /// James says what failed once, for every recipient.
    james_diagnostic: Option<&'a str>,
    engine: Option<&'static str>,
    action: &'static str,
    /// The report names one failed address.
    single: bool,
}

impl Prose<'_> {
    /// What `text` (the report's, or a returned report's) says about one
    /// address: (diagnostic, reply code, status, reason).
    fn assess(
        &self,
        text: &str,
        address: &str,
    ) -> (Option<String>, Option<u16>, Option<String>, crate::Reason) {
        let action = self.action;
        let diagnostic = self.james_diagnostic.map(str::to_string).or_else(|| diagnostic_for(text, address));
        // Without a diagnostic, the text's first 4,000 characters (borrowed).
        let context = diagnostic
            .as_deref()
            .unwrap_or_else(|| &text[..text.char_indices().nth(4000).map_or(text.len(), |(i, _)| i)]);
        let (reply_code, status) = diagnostic_codes(context);
        let status = status.or_else(|| rfc3463(text));
        let command = command_for(text, address);
        crate::explain::note(|| {
            let from = if diagnostic.is_some() { "the lines about this address" } else { "the whole text" };
            format!(
                "recipient {address} (found in the text); action {action}; status {}; diagnostic from {from}; command {}",
                status.as_deref().unwrap_or("none"),
                command.unwrap_or("not said")
            )
        });
        let reason = reason::decide(Some(context), status.as_deref(), Some(action), command);
        (diagnostic, reply_code, status, reason)
    }

    /// The report for one address: what the text says, then what the
    /// report's format says beyond the rules.
    fn report(&self, address: String) -> RecipientReport {
        let (mut diagnostic, mut reply_code, mut status, mut reason) = self.assess(self.text, &address);
        let first = reason;
        // A gateway's notice that only says delivery failed, with the
        // downstream report attached as the returned message: that
        // report's word on the address.
        if reason == crate::Reason::Undefined
            && let Some(inner) = returned_report_text(self.msg, &address)
        {
            let found = self.assess(&inner, &address);
            if found.3 != crate::Reason::Undefined {
                (diagnostic, reply_code, status, reason) = found;
            }
        }
        // Google Groups refuses a post (no such group, or not a member).
        if reason == crate::Reason::Undefined && self.engine == Some("GoogleGroups") {
            reason = crate::Reason::Rejected;
        }
        // Exim's local delivery to a program ("pipe to |/path/cmd")
        // failed without the program saying why: the mailer failed.
        if reason == crate::Reason::Undefined && PIPE.is_match(self.text) {
            reason = crate::Reason::Mailererror;
        }
        // The lines after the address name no cause, but the report's
        // prose above them does (Netscape/Sun's reason comes first, then
        // "The following recipients did not receive this message").
        if reason == crate::Reason::Undefined && diagnostic.is_some() && self.single {
            let whole = reason::decide(Some(self.text), status.as_deref(), Some(self.action), None);
            if whole != crate::Reason::Undefined {
                reason = whole;
            }
        }
        // The report says something about the address that names no
        // known cause: held, undecided (undefined is for no word at all).
        if reason == crate::Reason::Undefined && diagnostic.is_some() {
            reason = crate::Reason::Onhold;
        }
        if reason != first {
            crate::explain::note(|| {
                format!(
                    "{address}: {} -> {}: {}",
                    first.as_str(),
                    reason.as_str(),
                    "what the report's format says beyond the rules (inner report, Google Groups, a pipe, the whole prose, or a diagnostic naming no known cause: onhold)"
                )
            });
        }
        RecipientReport {
            hard: false, // set by `classify`
            address,
            reason,
            status,
            reply_code,
            diagnostic,
            remote_mta: None,
            action: Some(self.action.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_address_lines() {
        assert_eq!(
            diagnostic_codes("host x said: 550 5.1.1 <a@b.c>... User unknown"),
            (Some(550), Some("5.1.1".into()))
        );
        assert_eq!(rfc3463("Status: 5.1.1 (user unknown)"), Some("5.1.1".into()));
        assert_eq!(rfc3463("no status here 1.2.3"), None);
        assert_eq!(
            rfc3463("5.1.0 - Unknown address error 550-'5.2.2 <a@b.c>... Mailbox Full'"),
            Some("5.2.2".into())
        );
        assert_eq!(rfc3463("550 5.1.0 <a@b.c> sender rejected"), Some("5.1.0".into()));
    }
}
