//! JSON delivery notifications that arrive as mail: Amazon SES event
//! notifications (directly, or wrapped in an SNS envelope whose `Message` is
//! the JSON as a string). Fields as documented by AWS: `notificationType` /
//! `eventType`, `bounce.bouncedRecipients[]`, `complaint`, `delivery`, `mail`.

use serde_json::Value;

use crate::{Classification, Original, Reason, RecipientReport, Verdict, reason, text};

fn notification(body: &str) -> Option<Value> {
    let start = body.find('{')?;
    let json = body[start..].trim();
    // Mail transport may have folded the long JSON lines: unfold and retry.
    // SNS appends an unsubscribe footer after the JSON: read the first
    // value and ignore what follows.
    let first =
        |j: &str| serde_json::Deserializer::from_str(j).into_iter::<Value>().next().and_then(Result::ok);
    let v = first(json).or_else(|| first(&json.replace("\r\n", "\n").replace("\n ", "")))?;
    match v.get("Message").and_then(Value::as_str) {
        // SNS wraps the SES event as a string.
        Some(inner) => serde_json::from_str(inner).ok(),
        None => Some(v),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Decodes an SES notification carried in a message body.
pub fn amazon_ses(body: &str) -> Option<Classification> {
    if !body.contains("notificationType") && !body.contains("eventType") {
        return None;
    }
    let n = notification(body)?;
    let kind = s(&n, "notificationType").or_else(|| s(&n, "eventType"))?;
    let mail = n.get("mail").cloned().unwrap_or(Value::Null);
    let headers = mail.get("commonHeaders").cloned().unwrap_or(Value::Null);
    let original = Original {
        message_id: s(&mail, "messageId").map(str::to_string),
        from: s(&mail, "source").map(str::to_string),
        to: mail.get("destination").and_then(|d| d.get(0)).and_then(Value::as_str).map(str::to_string),
        subject: s(&headers, "subject").map(str::to_string),
        verp_token: None,
    };
    let mut c = Classification {
        verdict: Verdict::Human,
        recipients: Vec::new(),
        feedback_type: None,
        original,
        mta: Some("AmazonSES".into()),
        source_ip: None,
        autoreply_from: None,
    };
    match kind {
        "Bounce" => {
            let b = n.get("bounce")?;
            let permanent = s(b, "bounceType") == Some("Permanent");
            c.verdict = if permanent { Verdict::Bounce } else { Verdict::Delay };
            let mta = s(b, "reportingMTA").map(|m| m.trim_start_matches("dns;").trim().to_string());
            for r in b.get("bouncedRecipients").and_then(Value::as_array).into_iter().flatten() {
                let Some(address) = s(r, "emailAddress") else { continue };
                let diagnostic =
                    s(r, "diagnosticCode").map(|d| d.trim_start_matches("smtp;").trim().to_string());
                let status = s(r, "status")
                    .and_then(text::rfc3463)
                    .or_else(|| diagnostic.as_deref().and_then(text::rfc3463));
                let (reply_code, _) =
                    diagnostic.as_deref().map(text::diagnostic_codes).unwrap_or((None, None));
                let action = s(r, "action")
                    .map(str::to_string)
                    .or_else(|| Some(if permanent { "failed" } else { "delayed" }.into()));
                let reason =
                    reason::decide(diagnostic.as_deref(), status.as_deref(), action.as_deref(), None);
                c.recipients.push(RecipientReport {
                    address: address.to_string(),
                    hard: false, // set by `classify`
                    reason,
                    status,
                    reply_code,
                    diagnostic,
                    remote_mta: mta.clone(),
                    action,
                });
            }
        }
        "Complaint" => {
            let cm = n.get("complaint")?;
            c.verdict = Verdict::Complaint;
            c.feedback_type = Some(s(cm, "complaintFeedbackType").unwrap_or("abuse").to_ascii_lowercase());
            for r in cm.get("complainedRecipients").and_then(Value::as_array).into_iter().flatten() {
                if let Some(address) = s(r, "emailAddress") {
                    c.recipients.push(RecipientReport::bare(address, Reason::Feedback));
                }
            }
        }
        "Delivery" => {
            let d = n.get("delivery")?;
            c.verdict = Verdict::Delivered;
            let response = s(d, "smtpResponse").map(str::to_string);
            let status = response.as_deref().and_then(text::rfc3463);
            for r in d.get("recipients").and_then(Value::as_array).into_iter().flatten() {
                if let Some(address) = r.as_str() {
                    let mut rep = RecipientReport::bare(address, Reason::Delivered);
                    rep.diagnostic = response.clone();
                    rep.status = status.clone();
                    rep.action = Some("delivered".into());
                    c.recipients.push(rep);
                }
            }
        }
        _ => return None,
    }
    Some(c)
}
