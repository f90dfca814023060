//! Standard reports: RFC 3464 delivery status notifications
//! (`message/delivery-status`) and RFC 5965 feedback reports (ARF, parsed by
//! mail-auth).

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use crate::text::{self, diagnostic_codes};
use crate::{Classification, Original, Reason, RecipientReport, Verdict, reason};

/// Header-style fields of one group, unfolded; names lower-cased.
fn fields(group: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in group.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn get<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// `rfc822; user@example.com` → `user@example.com`.
fn strip_type(v: &str) -> String {
    let v = v.split_once(';').map_or(v, |(_, a)| a).trim();
    v.trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

/// The address of a recipient field: `rfc822;a@b`, also when a writer
/// adds a comment or a display name (`a@b (Ann)`, `Ann <a@b>`) or a final
/// dot.
fn recipient_of(v: &str) -> String {
    let v = strip_type(v);
    match crate::recipients::ADDRESS.find(&v) {
        Some(m) => m.as_str().trim_end_matches('.').to_string(),
        None => v,
    }
}

fn is_type(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// The returned original: an attached message, or returned headers.
pub fn original(msg: &Message<'_>) -> Original {
    for part in &msg.parts {
        if let PartType::Message(m) = &part.body {
            return original_of(m);
        }
        if is_type(part, "text", "rfc822-headers") {
            let bytes = part.contents();
            if let Some(m) = crate::parser().parse_headers(bytes) {
                return original_of(&m);
            }
        }
    }
    text::returned_headers(msg).unwrap_or_default()
}

pub fn original_of(m: &Message<'_>) -> Original {
    Original {
        message_id: m.message_id().map(str::to_string),
        from: m.from().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string),
        to: m.to().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string),
        subject: m.subject().map(str::to_string),
        verp_token: None,
    }
}

/// An RFC 3464 report, if the message carries a `message/delivery-status` part.
pub fn delivery_report(msg: &Message<'_>) -> Option<Classification> {
    // Some reports carry one delivery-status part per recipient.
    let parts: Vec<_> = msg.parts.iter().filter(|p| is_type(p, "message", "delivery-status")).collect();
    if parts.is_empty() {
        return None;
    }
    let body = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p.contents()).replace("\r\n", "\n"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let groups: Vec<Vec<(String, String)>> =
        body.split("\n\n").map(str::trim).filter(|g| !g.is_empty()).map(fields).collect();
    let names_recipient =
        |f: &[(String, String)]| get(f, "final-recipient").or_else(|| get(f, "original-recipient")).is_some();
    // Some MTAs put per-message fields and the first recipient together (no
    // blank line between), or send only recipient fields: then the first
    // group is also a recipient's.
    let per_message: &[(String, String)] = groups.first().map_or(&[], Vec::as_slice);
    let reporting_mta = get(per_message, "reporting-mta").map(strip_type);
    // The human-readable part often says more than Diagnostic-Code does.
    let human_text = text::first_text(msg);
    // Domino's prose names each recipient as the sender addressed it: that
    // address (when it lists one per recipient group) over Final-Recipient.
    let intended = crate::recipients::intended_recipients(&human_text);
    let recipient_groups: Vec<&[(String, String)]> =
        groups.iter().map(Vec::as_slice).filter(|f| names_recipient(f)).collect();
    let intended = if intended.len() == recipient_groups.len() { intended } else { Vec::new() };
    let mut recipients = Vec::new();
    let mut actions = Vec::new();
    for (i, f) in recipient_groups.into_iter().enumerate() {
        let valid = |a: &String| {
            a.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        };
        let named = [get(f, "final-recipient"), get(f, "original-recipient")];
        let Some(address) = intended
            .get(i)
            .cloned()
            .or_else(|| named.iter().flatten().map(|a| recipient_of(a)).find(valid))
            .or_else(|| {
                // A mangled Final-Recipient ("@mx.example.org"): the prose lists
                // the failed address.
                named
                    .iter()
                    .any(Option::is_some)
                    .then(|| {
                        crate::recipients::failed_addresses(msg, &human_text).get(recipients.len()).cloned()
                    })
                    .flatten()
            })
        else {
            continue;
        };
        let report = recipient_report(f, address, &human_text, reporting_mta.as_deref());
        actions.push(report.action.clone());
        recipients.push(report);
    }
    if recipients.is_empty() {
        return None;
    }
    let verdict = if actions.iter().all(|a| matches!(a.as_deref(), Some("delayed"))) {
        Verdict::Delay
    } else if actions.iter().all(|a| matches!(a.as_deref(), Some("delivered" | "relayed" | "expanded"))) {
        Verdict::Delivered
    } else {
        Verdict::Bounce
    };
    // Keep only the recipients that the verdict is about.
    if verdict == Verdict::Bounce {
        recipients.retain(|r| !matches!(r.action.as_deref(), Some("delivered" | "relayed" | "expanded")));
    }
    if verdict == Verdict::Delivered {
        for r in &mut recipients {
            r.reason = Reason::Delivered;
        }
    }
    Some(Classification {
        verdict,
        recipients,
        feedback_type: None,
        original: original(msg),
        mta: Some(text::engine_hint(msg).unwrap_or("RFC3464").to_string()),
        source_ip: None,
        autoreply_from: None,
    })
}

/// One recipient group's report: its status (the most specific of the
/// Status field, the Diagnostic-Code and the prose about the address), its
/// diagnostic, and the reason they say, adjusted by the command that failed.
fn recipient_report(
    f: &[(String, String)],
    address: String,
    human_text: &str,
    reporting_mta: Option<&str>,
) -> RecipientReport {
    let action = get(f, "action").map(|a| a.to_ascii_lowercase());
    let mut status = get(f, "status").and_then(text::rfc3463);
    let diagnostic = get(f, "diagnostic-code").map(strip_type).filter(|d| !d.is_empty());
    let (code_in_text, status_in_text) = diagnostic.as_deref().map(diagnostic_codes).unwrap_or((None, None));
    // A specific status in the diagnostic beats a generic x.0.0 field.
    if let Some(s) = &status_in_text
        && status.as_deref().is_none_or(|st| st.ends_with(".0.0") && !s.ends_with(".0.0"))
    {
        status = Some(s.clone());
    }
    // When Diagnostic-Code is absent, the human text about this address
    // is the diagnostic.
    let prose = text::diagnostic_for(human_text, &address);
    // Without Diagnostic-Code, the prose about this address quotes the
    // remote's reply (OpenSMTPD: "a@b: 550 5.1.1 ..."): its status is
    // more precise than a generic x.0.0 field of the same class.
    let (prose_code, prose_status) = match (&diagnostic, &prose) {
        (None, Some(p)) => diagnostic_codes(p),
        _ => (None, None),
    };
    if let (Some(s), Some(st)) = (&prose_status, &status)
        && st.ends_with(".0.0")
        && !s.ends_with(".0.0")
        && s.get(..1) == st.get(..1)
    {
        crate::explain::note(|| format!("{address}: status {st} -> {s}: the reply quoted in the prose"));
        status = Some(s.clone());
    }
    let code_in_text = code_in_text.or(prose_code);
    let about = diagnostic.clone().or_else(|| prose.clone());
    // The prose often names the SMTP command that failed ("in reply to
    // end of DATA command") where Diagnostic-Code does not.
    let context = match (&about, &prose) {
        // (On lines of their own: "User unknown" + "host x said" is no
        // "unknown host".)
        (Some(a), Some(p)) if a != p => format!("{a}\n{p}"),
        (Some(a), _) => a.clone(),
        (None, _) => human_text.to_string(),
    };
    let command = text::command_for(human_text, &address);
    crate::explain::note(|| {
        let from = match (&diagnostic, &prose) {
            (Some(_), _) => "Diagnostic-Code",
            (None, Some(_)) => "the human-readable part about this address",
            (None, None) => "the whole human-readable part",
        };
        format!(
            "recipient {address} (Final-Recipient); action {}; status {} ({}); diagnostic from {from}; command {}",
            action.as_deref().unwrap_or("none"),
            status.as_deref().unwrap_or("none"),
            if status_in_text.is_some() && status == status_in_text {
                "from the diagnostic"
            } else {
                "Status field"
            },
            command.unwrap_or("not said"),
        )
    });
    let mut reason = reason::decide(Some(&context), status.as_deref(), action.as_deref(), command);
    let first = reason;
    // "Diagnostic-Code: X-Unix; ..." is a local delivery program's exit:
    // when nothing more is said, the mailer failed.
    let unix = get(f, "diagnostic-code")
        .and_then(|d| d.split_once(';'))
        .is_some_and(|(kind, _)| kind.trim().eq_ignore_ascii_case("x-unix"));
    if unix && matches!(reason, Reason::Undefined | Reason::Onhold | Reason::Expired) {
        reason = Reason::Mailererror;
    }
    // A diagnostic that names no known cause: held, undecided
    // (undefined is for a report that says nothing).
    if reason == Reason::Undefined && about.is_some() {
        reason = Reason::Onhold;
    }
    if reason != first {
        crate::explain::note(|| {
            let why = if unix {
                "an X-Unix diagnostic: the local mailer failed"
            } else {
                "a diagnostic that names no known cause"
            };
            format!("{address}: {} -> {}: {why}", first.as_str(), reason.as_str())
        });
    }
    RecipientReport {
        hard: false, // set by `classify`
        address,
        reason,
        status,
        reply_code: code_in_text,
        diagnostic: about,
        remote_mta: get(f, "remote-mta").map(strip_type).or_else(|| reporting_mta.map(str::to_string)),
        action,
    }
}

/// An ARF feedback report (`multipart/report; report-type=feedback-report`).
pub fn complaint(msg: &Message<'_>) -> Option<Classification> {
    let is_arf = msg.parts.iter().any(|p| is_type(p, "message", "feedback-report"));
    // Some providers (Hotmail's JMRP among them) send complaints as a plain
    // message with the original attached.
    let informal = !is_arf
        && msg.subject().is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            s.contains("complaint about message") || s.contains("abuse report") || s.contains("spam report")
        })
        && msg.parts.iter().any(|p| matches!(p.body, PartType::Message(_)));
    if !is_arf && !informal {
        return None;
    }
    let mut c = Classification {
        verdict: Verdict::Complaint,
        recipients: Vec::new(),
        feedback_type: None,
        original: original(msg),
        mta: Some("ARF".into()),
        source_ip: None,
        autoreply_from: None,
    };
    // mail-auth parses the standard fields of the feedback-report part (the
    // part already found here: its `parse_rfc5322` would parse the whole
    // message again); fall back to reading them here when a report deviates
    // from RFC 5965 enough to make it give up.
    let part = msg.parts.iter().find(|p| is_type(p, "message", "feedback-report"));
    let report = part.and_then(|p| mail_auth::report::Feedback::parse_arf(p.contents()));
    let f = part
        .map(|p| fields(&String::from_utf8_lossy(p.contents()).replace("\r\n", "\n")))
        .unwrap_or_default();
    if informal {
        c.feedback_type = Some("abuse".into());
    }
    c.feedback_type = c.feedback_type.take().or(report
        .as_ref()
        .map(|r| format!("{:?}", r.feedback_type()).to_ascii_lowercase())
        .filter(|t| t != "other" || get(&f, "feedback-type").is_none())
        .or_else(|| get(&f, "feedback-type").map(|t| t.to_ascii_lowercase())));
    c.source_ip = report
        .as_ref()
        .and_then(|r| r.source_ip())
        .map(|ip| ip.to_string())
        .or_else(|| get(&f, "source-ip").map(str::to_string));
    // Every Original-Rcpt-To (a report may name several), else the
    // returned message's To.
    let mut rcpts: Vec<String> = f
        .iter()
        .filter(|(n, _)| n == "original-rcpt-to" || n == "removal-recipient")
        .map(|(_, v)| strip_type(v))
        .collect();
    if rcpts.is_empty() {
        rcpts.extend(report.as_ref().and_then(|r| r.original_rcpt_to()).map(strip_type));
    }
    if rcpts.is_empty() {
        rcpts.extend(c.original.to.clone());
    }
    for address in rcpts.into_iter().filter(|a| a.contains('@')) {
        if c.recipients.iter().any(|r| r.address.eq_ignore_ascii_case(&address)) {
            continue;
        }
        c.recipients.push(RecipientReport::bare(address, Reason::Feedback));
    }
    Some(c)
}
