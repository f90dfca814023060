//! Delivery status notifications (RFC 3464) for mail sluice could not deliver:
//! a multipart/report with a human-readable part, the machine-readable
//! message/delivery-status, and the original (whole when small, its headers
//! otherwise).
//!
//! A DSN is sent with the null reverse path `<>` and never *to* `<>`: the
//! caller does not build one for a message whose sender was null.

use chrono::{DateTime, Utc};
use vocabulary::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    /// Handed to a downstream that does not offer DSN: no further news
    /// will come (RFC 3464 §2.3.3).
    Relayed,
}

impl DsnAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }
}

pub struct DsnRecipient<'a> {
    pub address: &'a str,
    pub orcpt: Option<&'a str>,
    pub action: DsnAction,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    pub diagnostic: Option<&'a Reply>,
    pub remote_mta: Option<&'a str>,
}

pub struct DsnRequest<'a> {
    pub reporting_mta: &'a str,
    pub queue_id: &'a str,
    pub original_sender: &'a str,
    pub arrival: DateTime<Utc>,
    pub recipients: Vec<DsnRecipient<'a>>,
    pub original: &'a [u8],
    /// The sender's ENVID (RFC 3461), returned as `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// RET=HDRS: return the original's headers only, whatever its size.
    pub headers_only: bool,
}

/// Originals up to this size are returned whole; larger ones by headers only.
const RETURN_WHOLE_LIMIT: usize = 256 * 1024;
/// Header-style lines are kept below RFC 5322's 998-octet limit.
const MAX_FIELD: usize = 900;

/// Builds the complete DSN message, CRLF line endings throughout.
pub fn build(req: &DsnRequest<'_>) -> Vec<u8> {
    let now = Utc::now();
    let boundary = format!("{}/{}", req.queue_id, req.reporting_mta);
    let has = |a: DsnAction| req.recipients.iter().any(|r| r.action == a);
    let any_failed = has(DsnAction::Failed);
    let (subject, explanation) = if any_failed {
        (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n",
        )
    } else if has(DsnAction::Delayed) {
        (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered yet; delivery will be retried.\r\n\r\n",
        )
    } else {
        (
            "Successful Mail Delivery Report",
            "Your message was handed on to the recipients' mail system, as you asked to be told.\r\n\r\n",
        )
    };
    let mut out = String::new();
    let field = |out: &mut String, line: String| {
        out.push_str(&clean(&line));
        out.push_str("\r\n");
    };
    field(&mut out, format!("From: Mail Delivery System <MAILER-DAEMON@{}>", req.reporting_mta));
    field(&mut out, format!("To: <{}>", req.original_sender));
    field(&mut out, format!("Subject: {subject}"));
    field(&mut out, format!("Date: {}", now.to_rfc2822()));
    field(&mut out, format!("Message-ID: <{}.dsn@{}>", req.queue_id, req.reporting_mta));
    out.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    field(
        &mut out,
        format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""),
    );
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    // Part 1: for people.
    out.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
    out.push_str(&format!("This is the mail system at host {}.\r\n\r\n", req.reporting_mta));
    out.push_str(explanation);
    for r in &req.recipients {
        let why = r.diagnostic.map(|d| d.to_string()).unwrap_or_else(|| r.status.clone());
        field(&mut out, format!("<{}>: {}", r.address, why.replace('\n', " ")));
    }
    out.push_str("\r\n");

    // Part 2: for machines.
    out.push_str(&format!("--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"));
    if let Some(envid) = req.envid {
        field(&mut out, format!("Original-Envelope-Id: {envid}"));
    }
    field(&mut out, format!("Reporting-MTA: dns; {}", req.reporting_mta));
    field(&mut out, format!("X-Sluice-Queue-ID: {}", req.queue_id));
    field(&mut out, format!("Arrival-Date: {}", req.arrival.to_rfc2822()));
    for r in &req.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = r.orcpt {
            let orcpt = if orcpt.contains(';') { orcpt.to_string() } else { format!("rfc822; {orcpt}") };
            field(&mut out, format!("Original-Recipient: {orcpt}"));
        }
        field(&mut out, format!("Final-Recipient: rfc822; {}", r.address));
        field(&mut out, format!("Action: {}", r.action.as_str()));
        field(&mut out, format!("Status: {}", r.status));
        if let Some(mta) = r.remote_mta {
            field(&mut out, format!("Remote-MTA: dns; {mta}"));
        }
        if let Some(d) = r.diagnostic {
            field(&mut out, format!("Diagnostic-Code: smtp; {}", d.to_string().replace('\n', " ")));
        }
        field(&mut out, format!("Last-Attempt-Date: {}", now.to_rfc2822()));
    }
    out.push_str("\r\n");

    // Part 3: the original.
    let mut bytes = out.into_bytes();
    // RET applies to failures; any other report returns the headers only
    // (RFC 3461 §4.3).
    if req.original.len() <= RETURN_WHOLE_LIMIT && !req.headers_only && any_failed {
        bytes.extend_from_slice(format!("--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes());
        bytes.extend_from_slice(req.original);
    } else {
        let end = header_end(req.original);
        bytes.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").as_bytes(),
        );
        bytes.extend_from_slice(&req.original[..end]);
    }
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// Where the header section ends (after the blank line), or the whole input.
pub fn header_end(msg: &[u8]) -> usize {
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(|| msg.windows(2).position(|w| w == b"\n\n").map_or(msg.len(), |p| p + 2), |p| p + 4)
}

/// No bare CR/LF may sneak into a field from a peer's reply text, and fields
/// stay under the line-length limit.
fn clean(line: &str) -> String {
    let mut s: String = line.replace("\r\n\t", "\u{0}").replace(['\r', '\n'], " ").replace('\u{0}', "\r\n\t");
    if s.len() > MAX_FIELD {
        let mut cut = MAX_FIELD;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parses_as_a_delivery_report() {
        let reply = Reply::new(550, "5.1.1", "<bad@y.test>: Recipient address rejected\nsecond line");
        let original = b"From: a@x.test\r\nSubject: hello\r\nMessage-ID: <m1@x.test>\r\n\r\nbody\r\n";
        let dsn = build(&DsnRequest {
            reporting_mta: "mx.test",
            queue_id: "0123",
            original_sender: "a@x.test",
            arrival: Utc::now(),
            envid: None,
            headers_only: false,
            recipients: vec![DsnRecipient {
                address: "bad@y.test",
                orcpt: Some("bad@y.test"),
                action: DsnAction::Failed,
                status: "5.1.1".into(),
                diagnostic: Some(&reply),
                remote_mta: Some("127.0.0.1:25"),
            }],
            original,
        });
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "only CRLF line ends");
        use mail_parser::MimeHeaders;
        let msg = mail_parser::MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(msg.parts.len(), 4, "root, text, delivery-status, original");
        assert!(text.contains("Final-Recipient: rfc822; bad@y.test\r\n"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 <bad@y.test>: Recipient address rejected second line"
        ));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: a@x.test\r\nSubject: hello"));
    }

    #[test]
    fn large_originals_return_headers_only() {
        let mut original = b"Subject: big\r\n\r\n".to_vec();
        original.extend(std::iter::repeat_n(b'x', RETURN_WHOLE_LIMIT + 10));
        let dsn = build(&DsnRequest {
            reporting_mta: "mx.test",
            queue_id: "1",
            original_sender: "a@x.test",
            arrival: Utc::now(),
            recipients: vec![],
            original: &original,
            envid: None,
            headers_only: false,
        });
        let text = String::from_utf8_lossy(&dsn);
        assert!(text.contains("text/rfc822-headers\r\n\r\nSubject: big\r\n\r\n"));
        assert!(dsn.len() < 10_000);
    }

    #[test]
    fn ret_hdrs_and_envid_are_honoured() {
        let original = b"Subject: small\r\n\r\nsecret body\r\n";
        let dsn = build(&DsnRequest {
            reporting_mta: "mx.test",
            queue_id: "2",
            original_sender: "a@x.test",
            arrival: Utc::now(),
            recipients: vec![],
            original,
            envid: Some("QQ314159"),
            headers_only: true,
        });
        let text = String::from_utf8_lossy(&dsn);
        assert!(text.contains("Original-Envelope-Id: QQ314159\r\n"), "{text}");
        assert!(text.contains("text/rfc822-headers\r\n\r\nSubject: small\r\n\r\n"));
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn success_and_delay_reports_return_headers_only() {
        let original = b"Subject: small\r\n\r\nsecret body\r\n";
        let reply = Reply::new(250, "2.0.0", "queued as 77");
        let report = |action| {
            let dsn = build(&DsnRequest {
                reporting_mta: "mx.test",
                queue_id: "3",
                original_sender: "a@x.test",
                arrival: Utc::now(),
                recipients: vec![DsnRecipient {
                    address: "b@y.test",
                    orcpt: None,
                    action,
                    status: "2.0.0".into(),
                    diagnostic: Some(&reply),
                    remote_mta: None,
                }],
                original,
                envid: None,
                headers_only: false,
            });
            String::from_utf8(dsn).unwrap()
        };
        let relayed = report(DsnAction::Relayed);
        assert!(relayed.contains("Subject: Successful Mail Delivery Report\r\n"), "{relayed}");
        assert!(relayed.contains("Action: relayed\r\nStatus: 2.0.0\r\n"));
        assert!(relayed.contains("text/rfc822-headers\r\n\r\nSubject: small\r\n\r\n"));
        assert!(!relayed.contains("secret body"), "no content without a failure (RFC 3461 4.3)");
        let delayed = report(DsnAction::Delayed);
        assert!(delayed.contains("Subject: Delayed Mail (still being retried)\r\n"));
        assert!(!delayed.contains("secret body"));
    }
}
