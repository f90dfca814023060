//! decide: what is this message? A pure function of its bytes (no IO), cheap
//! enough to run inline on every inbound message.
//!
//! [`classify`] gives a verdict (bounce, delay, delivered, autoreply,
//! complaint, unsubscribe, challenge, human) and, for delivery reports, one
//! entry per failed recipient with a reason from the shared taxonomy. Parsing
//! never fails: a message that cannot be read is a verdict like any other.

mod dsn;
pub mod eval;
mod explain;
mod human;
mod provider;
mod reason;
mod recipients;
mod text;
pub mod verp;

use serde::Serialize;

pub use explain::explain;
pub use reason::{Reason, warm_up};

pub use vocabulary::Verdict;

/// One recipient named in a delivery report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientReport {
    pub address: String,
    pub reason: Reason,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: Option<String>,
    pub reply_code: Option<u16>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// A hard bounce: the address will never work (unknown user or host,
    /// moved, a domain that takes no mail). A suspended mailbox is soft; see
    /// [`RecipientReport::is_address_failure`] for what to suppress. Derived
    /// from reason, status and action ([`reason::is_hard`]) by [`classify`].
    pub hard: bool,
    pub action: Option<String>,
}

impl RecipientReport {
    /// An entry that carries only an address and a reason (complaints,
    /// auto-replies, unsubscribes, delivery notices).
    pub fn bare(address: impl Into<String>, reason: Reason) -> Self {
        RecipientReport {
            address: address.into(),
            reason,
            status: None,
            reply_code: None,
            diagnostic: None,
            remote_mta: None,
            hard: false,
            action: None,
        }
    }

    /// The address itself is bad and the failure is final (not a delay):
    /// suppress it. Wider than `hard`: a suspended mailbox is soft, yet
    /// mail to it fails until someone reactivates it.
    pub fn is_address_failure(&self) -> bool {
        self.hard
            || self.reason.is_address_level()
                && reason::is_final(self.status.as_deref(), self.action.as_deref())
    }
}

/// What the report says about the message it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Original {
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub verp_token: Option<String>,
}

/// The full result; its JSON is the `sluice classify` line (without `file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub verdict: Verdict,
    pub recipients: Vec<RecipientReport>,
    pub feedback_type: Option<String>,
    pub original: Original,
    /// The report format decoded (`RFC3464`, `Postfix`, `Exim`, `ARF`, …).
    pub mta: Option<String>,
    /// For complaints: the IP address the complained-about mail came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// For auto-replies: who replied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoreply_from: Option<String>,
}

impl Classification {
    fn human() -> Self {
        Classification {
            verdict: Verdict::Human,
            recipients: Vec::new(),
            feedback_type: None,
            original: Original::default(),
            mta: None,
            source_ip: None,
            autoreply_from: None,
        }
    }
}

/// Inputs larger than this are classified on their first part only: reports
/// and their diagnostics sit at the start of a message.
const MAX_SCAN: usize = 1 << 20;

/// The reason for a refusal given in an SMTP reply (an outbound attempt's
/// 5xx or 4xx), by the same rules as bounce diagnostics.
pub fn reason_of_reply(text: &str, status: Option<&str>) -> Reason {
    reason::decide(Some(text), status, Some("failed"), None)
}

/// The mail-parser configuration: the MIME headers (it needs them to read
/// the body), and only the fields read through mail-parser's typed
/// accessors (Subject, From, To, Message-ID). Every other header is skipped
/// unparsed (its raw text still reads through `header_raw`): parsing them
/// (Received, Date, References, ...) was a third of mail-parser's time.
pub(crate) fn parser() -> &'static mail_parser::MessageParser {
    use mail_parser::{HeaderName as H, MessageParser};
    static PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
        MessageParser::new()
            .with_mime_headers()
            .header_text(H::Subject)
            .header_address(H::From)
            .header_address(H::To)
            .header_id(H::MessageId)
            .default_header_ignore()
    });
    &PARSER
}

/// Classifies one message. Never panics, never fails.
pub fn classify(raw: &[u8]) -> Classification {
    classify_at(raw, 0)
}

fn classify_at(raw: &[u8], depth: u8) -> Classification {
    let raw = &raw[..raw.len().min(MAX_SCAN)];
    let Some(msg) = parser().parse(raw) else {
        return Classification::human();
    };
    let mark = explain::mark();
    let (mut c, parser) = if let Some(c) = dsn::complaint(&msg) {
        (c, "feedback report (RFC 5965 ARF)")
    } else if let Some(c) = dsn::delivery_report(&msg) {
        (c, "delivery status notification (RFC 3464)")
    } else if let Some(c) = msg.body_text(0).and_then(|b| provider::amazon_ses(&b)) {
        (c, "Amazon SES notification (JSON)")
    } else if let Some(c) = text::bounce(&msg) {
        (c, "non-standard bounce (an MTA's or provider's own format, or prose)")
    } else if let Some(c) = (depth == 0).then(|| wrapped_report(&msg)).flatten() {
        (c, "a daemon's notice wrapping the report it received")
    } else {
        (human::classify(&msg), "no report found: the human/auto-reply rules")
    };
    explain::note_at(mark, || {
        let mta = c.mta.as_deref().map(|m| format!(", format {m}")).unwrap_or_default();
        format!("{}parser: {parser}{mta}; verdict {}", "  ".repeat(depth.into()), c.verdict.as_str())
    });
    // A filtering appliance's "unknown user" is its verdict on the message
    // (unless a precise status, 5.1.x, says it is the address).
    let vague_unknown = |r: &RecipientReport| {
        r.reason == Reason::Userunknown && !r.status.as_deref().is_some_and(|s| s.starts_with("5.1."))
    };
    if c.verdict == Verdict::Bounce
        && c.recipients.iter().any(vague_unknown)
        && reason::by_filter_appliance(&String::from_utf8_lossy(raw))
    {
        for r in c.recipients.iter_mut().filter(|r| vague_unknown(r)) {
            explain::note(|| {
                format!("{}: userunknown -> filtered: written by a content-filtering appliance", r.address)
            });
            r.reason = Reason::Filtered;
        }
    }
    // Hard follows from what each entry says, whoever produced it.
    for r in &mut c.recipients {
        r.hard = reason::is_hard(r.reason, r.status.as_deref(), r.action.as_deref());
        explain::note(|| {
            let status = r.status.as_deref().unwrap_or("none");
            let hard = if r.hard { "hard" } else { "soft" };
            format!(
                "=> {}: {} {status} {hard} (suppress: {})",
                r.address,
                r.reason.as_str(),
                r.is_address_failure()
            )
        });
    }
    // The VERP token: the report was addressed to local+token@domain.
    if c.original.verp_token.is_none() {
        c.original.verp_token = human::envelope_recipients(&msg).iter().find_map(|a| verp::parse(a));
    }
    c
}

/// A mailer daemon's notice that carries the actual report as an attached
/// message (a gateway passing on the report it received).
fn wrapped_report(msg: &mail_parser::Message<'_>) -> Option<Classification> {
    if !text::from_daemon(msg) {
        return None;
    }
    let inner = msg.parts.iter().find_map(|p| match &p.body {
        mail_parser::PartType::Message(m) => Some(m.raw_message()),
        _ => None,
    })?;
    let c = classify_at(inner, 1);
    matches!(c.verdict, Verdict::Bounce | Verdict::Delay).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_human() {
        assert_eq!(classify(b"").verdict, Verdict::Human);
        assert_eq!(classify(b"\xff\xfe\x00").verdict, Verdict::Human);
        assert_eq!(classify(b"Subject: hi\r\n\r\nhello").verdict, Verdict::Human);
    }

    #[test]
    fn domino_names_the_recipient_as_addressed() {
        // The prose names the intended recipient; Final-Recipient is where
        // the router sent it after a forwarding address.
        let raw = b"From: Postmaster@example.test\r\nSubject: DELIVERY FAILURE: User not listed\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nYour message\r\n\r\n  Subject: hi\r\n\r\nwas not delivered to:\r\n\r\n\
  jdoe@example.test\r\n\r\nbecause:\r\n\r\n  User jdoe (john.doe@corp.example.test) not listed in Domino Directory\r\n\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mx.example.test\r\n\r\n\
Final-Recipient: rfc822;john.doe@corp.example.test\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--b--\r\n";
        let c = classify(raw);
        assert_eq!(c.verdict, Verdict::Bounce);
        assert_eq!(c.recipients.len(), 1);
        assert_eq!(c.recipients[0].address, "jdoe@example.test");
        assert_eq!(c.recipients[0].reason, Reason::Userunknown);
    }

    #[test]
    fn apache_james_notice() {
        // Not from a daemon by name, a reply's subject, and the alternative
        // part's boundary lost on an unindented line: James's marks and its
        // "Message details:" still say what failed.
        let raw = b"From: post_master@example.test\r\nTo: sender@example.org\r\nSubject: Re:hello\r\n\
Message-ID: <1.2.3.JavaMail.james@example.test>\r\nIn-Reply-To: <orig-1@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative;\r\n\
boundary=\"a\"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nError: Invalid user address\r\n\r\n\
Error message below:\r\n550 5.2.2 Mailbox full\r\n\r\nMessage details:\r\n  Subject: hello\r\n\
  MAIL FROM: sender@example.org\r\n  RCPT TO: one@example.test\r\n           two@example.test\r\n\
  From: sender@example.org\r\n  Size (in bytes): 39\r\n\r\n--a--\r\n\r\n--m--\r\n";
        let c = classify(raw);
        assert_eq!(c.verdict, Verdict::Bounce);
        assert_eq!(c.mta.as_deref(), Some("ApacheJames"));
        let got: Vec<_> = c.recipients.iter().map(|r| (r.address.as_str(), r.reason)).collect();
        assert_eq!(
            got,
            [("one@example.test", Reason::Mailboxfull), ("two@example.test", Reason::Mailboxfull)]
        );
        assert_eq!(c.original.message_id.as_deref(), Some("orig-1@example.org"));
    }

    #[test]
    fn report_wrapped_by_a_daemon() {
        let raw = b"From: Mail Delivery Subsystem <MAILER-DAEMON@gw.example.test>\r\n\
Subject: notice\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee the attached notice.\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n\
From: MAILER-DAEMON@mx.example.test\r\nSubject: Returned mail: User unknown\r\n\r\n\
----- The following addresses had permanent fatal errors -----\r\n\
<kijitora@example.test>\r\n    (reason: 550 5.1.1 User unknown)\r\n\
--b--\r\n";
        let c = classify(raw);
        assert_eq!(c.verdict, Verdict::Bounce);
        assert_eq!(c.recipients[0].address, "kijitora@example.test");
        assert_eq!(c.recipients[0].reason, Reason::Userunknown);
    }
}
