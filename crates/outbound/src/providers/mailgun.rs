//! Mailgun's webhooks, as its documentation describes them. Current ones
//! post JSON `{"signature": {timestamp, token, signature}, "event-data":
//! {...}}`, one event each, with `event` (`accepted`, `rejected`,
//! `delivered`, `failed` with `severity` `temporary` or `permanent` and a
//! `reason`, `opened`, `clicked`, `unsubscribed`, `complained`, `stored`),
//! `id`, `timestamp` (seconds, with a fraction), `recipient`,
//! `message.headers.message-id` and `delivery-status` (`code`, `message`,
//! `description`). Legacy ones post a form (urlencoded or multipart) of
//! flat fields: `event` (`delivered`, `dropped`, `bounced`, `complained`,
//! `unsubscribed`, `clicked`, `opened`), `recipient`, `Message-Id`,
//! `code`, `error`, `reason`, `description`, `url`, `token`, `timestamp`,
//! `signature`, and the message's custom variables as more fields.
//!
//! Mailgun names a message by its Message-Id (the send API answers
//! `<id@domain>`), so both message ids are that header, in angle brackets.

use serde_json::{Map, Value};
use vocabulary::EventKind;

use super::{ParseError, Payload, ProviderEvent, Skipped, bracketed, form, json, text, time};

/// What Mailgun signed a post with: (timestamp, token, signature), from
/// the JSON `signature` object or the legacy form's fields. `None` when
/// the body has no complete signature.
pub fn signed_with(content_type: &str, body: &[u8]) -> Option<(String, String, String)> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let get = |f: &dyn Fn(&str) -> Option<String>| Some((f("timestamp")?, f("token")?, f("signature")?));
    if mime == "multipart/form-data" || mime == "application/x-www-form-urlencoded" {
        let fields = form::fields(content_type, body).ok()?;
        return get(&|k| field(&fields, k).map(str::to_string));
    }
    let v = json(body).ok()?;
    let sig = v.get("signature")?;
    get(&|k| match sig.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Payload, ParseError> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "multipart/form-data" || mime == "application/x-www-form-urlencoded" {
        return legacy(&form::fields(content_type, body)?);
    }
    let v = json(body)?;
    let data = v
        .get("event-data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ParseError::Shape("a Mailgun webhook without an \"event-data\" object".into()))?;
    let mut out = Payload::default();
    let Some(name) = text(data, "event") else {
        out.skipped.push(Skipped { provider_event: String::new(), why: "no event field", raw: data.clone() });
        return Ok(out);
    };
    match current_kind(&name, data) {
        Some(kind) => out.events.push(current(kind, &name, data, &v)),
        None => out.skipped.push(Skipped {
            provider_event: name,
            why: "not an outcome of a sent message (stored inbound mail, list events)",
            raw: data.clone(),
        }),
    }
    Ok(out)
}

/// The schema's word for a current (JSON) event.
fn current_kind(name: &str, data: &Value) -> Option<EventKind> {
    Some(match name {
        // Mailgun took the request and queued the message.
        "accepted" => EventKind::Queued,
        // Mailgun refused the send request itself.
        "rejected" => EventKind::Rejected,
        "delivered" => EventKind::Delivered,
        "failed" if text(data, "severity").as_deref() == Some("temporary") => EventKind::Deferred,
        "failed" => permanent(text(data, "reason").as_deref().unwrap_or("")),
        "opened" => EventKind::Opened,
        "clicked" => EventKind::Clicked,
        "unsubscribed" => EventKind::Unsubscribed,
        "complained" => EventKind::Complained,
        _ => return None,
    })
}

/// A permanent failure by its documented `reason`: `suppress-bounce`,
/// `suppress-unsubscribe`, `suppress-complaint` (not sent: the address is
/// on a suppression list), `old` (retried until too old to deliver), and
/// `bounce`, `generic`, `espblock` (the receiving side said no).
fn permanent(reason: &str) -> EventKind {
    match reason {
        r if r.starts_with("suppress-") => EventKind::Suppressed,
        "old" => EventKind::Failed,
        _ => EventKind::Bounced,
    }
}

fn current(kind: EventKind, name: &str, data: &Value, whole: &Value) -> ProviderEvent {
    let mut e = ProviderEvent::new(kind, name, data);
    e.recipient = text(data, "recipient");
    let header = data.get("message").and_then(|m| m.get("headers")).and_then(|h| text(h, "message-id"));
    e.message_id = header.as_deref().map(bracketed);
    e.header_message_id = e.message_id.clone();
    // The event's own id; the signature's token only when there is none.
    e.event_id = text(data, "id").or_else(|| whole.get("signature").and_then(|s| text(s, "token")));
    e.at = data.get("timestamp").and_then(time);
    if let Some(status) = data.get("delivery-status").filter(|s| s.is_object()) {
        e.smtp_response = match (text(status, "code"), text(status, "message")) {
            (Some(code), Some(message)) => Some(format!("{code} {message}")),
            (code, message) => message.or(code),
        };
        e.description = text(status, "description");
    }
    e.reason = text(data, "reason").or_else(|| text(data, "severity"));
    e.click_url = text(data, "url");
    e.ip = text(data, "ip");
    e.user_agent = data.get("client-info").and_then(|c| text(c, "user-agent"));
    e
}

/// Fields Mailgun signs its legacy posts with, which it appends after the
/// event's fields: a custom variable of the same name comes first.
const SIGNING_FIELDS: [&str; 3] = ["token", "timestamp", "signature"];

/// A legacy field's value: the first of its name (Mailgun's own, before
/// any custom variable of that name), the last for the signing fields.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut named = fields.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    let v = if SIGNING_FIELDS.contains(&name) { named.next_back() } else { named.next() };
    v.filter(|v| !v.is_empty())
}

/// A legacy form post: one event.
fn legacy(fields: &[(String, String)]) -> Result<Payload, ParseError> {
    let raw = form_object(fields);
    let name = field(fields, "event")
        .ok_or_else(|| ParseError::Shape("a Mailgun form without an event field".into()))?;
    let kind = match name {
        "delivered" => EventKind::Delivered,
        "bounced" => EventKind::Bounced,
        "dropped" => dropped(field(fields, "reason").unwrap_or("")),
        "complained" => EventKind::Complained,
        "unsubscribed" => EventKind::Unsubscribed,
        "clicked" => EventKind::Clicked,
        "opened" => EventKind::Opened,
        other => {
            let why = "not a Mailgun legacy event";
            return Ok(Payload {
                skipped: vec![Skipped { provider_event: other.into(), why, raw }],
                ..Payload::default()
            });
        }
    };
    let s = |k: &str| field(fields, k).map(str::to_string);
    let mut e = ProviderEvent::new(kind, name, &raw);
    e.recipient = s("recipient");
    e.message_id = field(fields, "Message-Id").map(bracketed);
    e.header_message_id = e.message_id.clone();
    e.event_id = s("token");
    e.at = field(fields, "timestamp").and_then(|t| time(&Value::String(t.into())));
    e.smtp_response = s("error").or_else(|| s("notification"));
    e.reason = s("reason").or_else(|| s("code"));
    e.description = s("description");
    e.click_url = s("url");
    e.ip = s("ip");
    e.user_agent = s("user-agent");
    Ok(Payload { events: vec![e], ..Payload::default() })
}

/// A legacy drop by its documented `reason`: `hardfail` (the address
/// bounced, unsubscribed or complained before: on a suppression list),
/// `maxfails` and `old` (retried until Mailgun gave up: failed).
fn dropped(reason: &str) -> EventKind {
    match reason {
        "hardfail" => EventKind::Suppressed,
        "maxfails" | "old" => EventKind::Failed,
        _ => EventKind::Rejected,
    }
}

/// The form as a JSON object, for `raw`: a field given once is a string,
/// a repeated one an array of its values in order.
fn form_object(fields: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in fields {
        match map.get_mut(k) {
            Some(Value::Array(values)) => values.push(Value::String(v.clone())),
            Some(first) => *first = Value::Array(vec![first.clone(), Value::String(v.clone())]),
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_failure_is_deferred_and_a_suppressed_one_suppressed() {
        let body = br#"{"event-data": {"event": "failed", "severity": "temporary", "recipient": "a@example.com",
            "message": {"headers": {"message-id": "x@example.org"}}, "delivery-status": {"code": 452, "message": "full"}}}"#;
        let p = parse("application/json", body).expect("parses");
        let e = &p.events[0];
        assert_eq!(e.event, EventKind::Deferred);
        assert_eq!(e.message_id.as_deref(), Some("<x@example.org>"));
        assert_eq!(e.smtp_response.as_deref(), Some("452 full"));
        let body =
            br#"{"event-data": {"event": "failed", "severity": "permanent", "reason": "suppress-bounce"}}"#;
        assert_eq!(parse("application/json", body).expect("parses").events[0].event, EventKind::Suppressed);
    }

    #[test]
    fn legacy_urlencoded_and_the_signing_fields_last() {
        let body = b"event=dropped&reason=old&recipient=a%40example.com&token=custom&token=real&timestamp=1461261330";
        let p = parse("application/x-www-form-urlencoded", body).expect("parses");
        let e = &p.events[0];
        assert_eq!((e.event, e.recipient.as_deref()), (EventKind::Failed, Some("a@example.com")));
        assert_eq!(e.event_id.as_deref(), Some("real"));
        assert_eq!(e.at, Some(1_461_261_330_000));
        assert_eq!(e.raw["token"], serde_json::json!(["custom", "real"]));
        assert!(parse("application/x-www-form-urlencoded", b"recipient=a").is_err());
        assert!(parse("application/json", br#"{"signature": {}}"#).is_err());
    }
}
