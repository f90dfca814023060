//! What a webhook says, in the Standard Webhooks shape: a body per event,
//! `{"type", "timestamp", "data"}`, whose `data` is the event exactly as
//! `GET /v1/events` shows it ([`crate::view::Event`]), and the headers
//! that name, date and sign it. The `webhook-id` comes from the event's
//! id (and, for an event several recipients share, the recipient's index),
//! so it is the same on every retry and every replay, and a receiver can
//! drop what it has seen. The body is made once, when the delivery is
//! queued, and sent byte for byte on every attempt.

use chrono::SecondsFormat;
use outbound::standard_webhooks::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret, signature_header};
use record::events::EventRow;
use record::webhooks::Rendered;
use serde::Serialize;

/// The `user-agent` of every webhook.
pub const USER_AGENT: &str = concat!("sluice-webhooks/", env!("CARGO_PKG_VERSION"));

/// One event's body.
#[derive(Serialize)]
struct Body {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The event's time, RFC 3339 in UTC with milliseconds.
    timestamp: String,
    data: crate::view::Event,
}

/// The id a receiver sees in `webhook-id`: `msg_` and the event's id, and
/// `_` and the recipient's index for an event several recipients share
/// (`GET /v1/events` shows it once for each, under the one event id).
pub fn webhook_id(event: i64, member: Option<i64>) -> String {
    match member {
        Some(idx) => format!("msg_{event}_{idx}"),
        None => format!("msg_{event}"),
    }
}

/// An event's delivery: its webhook id and its body.
pub fn render(event: &EventRow, member: Option<i64>) -> Rendered {
    let timestamp = chrono::DateTime::from_timestamp_millis(event.at)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = Body { kind: event.kind.as_str(), timestamp, data: crate::view::Event::from(event.clone()) };
    Rendered {
        webhook_id: webhook_id(event.id, member),
        // A struct of strings and numbers always serializes.
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}

/// The body of several events in one request: `{"type": "batch", "data":
/// [body, ...]}`, each body exactly as it would have been sent alone.
pub fn batch(bodies: &[&str]) -> String {
    let mut out = String::from(r#"{"type":"batch","data":["#);
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(b);
    }
    out.push_str("]}");
    out
}

/// The webhook id of a batch: its first event's, with how many it holds
/// (the same on every retry of the same batch).
pub fn batch_id(first: &str, n: usize) -> String {
    format!("{first}_batch{n}")
}

/// The headers of one attempt at `timestamp` (seconds): id, time, one
/// signature per secret that signs now, content type, user agent.
/// Secrets that do not parse are passed over (the API only stores ones it
/// made).
pub fn headers(
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: &[&str],
) -> Vec<(&'static str, String)> {
    let secrets: Vec<Secret> = secrets.iter().filter_map(|s| Secret::parse(s).ok()).collect();
    vec![
        (HEADER_ID, webhook_id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signature_header(&secrets, webhook_id, timestamp, body)),
        ("content-type", "application/json".to_string()),
        ("user-agent", USER_AGENT.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbound::standard_webhooks::verify;
    use record::events::EventKind;

    fn row() -> EventRow {
        EventRow {
            id: 42,
            message: "0193a".into(),
            idx: Some(1),
            address: Some("b@x.test".into()),
            kind: EventKind::Bounced,
            at: 1_795_428_000_123,
            reason: Some("userunknown".into()),
            smtp_code: Some(550),
            smtp_status: Some("5.1.1".into()),
            smtp_text: None,
            remote: None,
            tls: None,
            detail: None,
            group: Vec::new(),
        }
    }

    #[test]
    fn the_body_is_the_event_as_the_api_shows_it() {
        let r = render(&row(), None);
        assert_eq!(r.webhook_id, "msg_42");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["type"], "bounced");
        assert_eq!(v["timestamp"], "2026-11-23T10:00:00.123Z");
        let shown = serde_json::to_value(crate::view::Event::from(row())).unwrap();
        assert_eq!(v["data"], shown);
        assert_eq!(v["data"]["id"], 42);
        assert!(r.body.starts_with(r#"{"type":"bounced","timestamp":"#), "{}", r.body);
        assert_eq!(render(&row(), Some(1)).webhook_id, "msg_42_1");
    }

    #[test]
    fn headers_sign_with_every_live_secret() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        let body = render(&row(), None).body;
        let h = headers("msg_42", 1_700_000_000, body.as_bytes(), &[&a.to_whsec(), &b.to_whsec(), "junk"]);
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("webhook-id"), "msg_42");
        assert_eq!(get("webhook-timestamp"), "1700000000");
        assert_eq!(get("content-type"), "application/json");
        assert!(get("user-agent").starts_with("sluice-webhooks/"));
        let sig = get("webhook-signature");
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        for s in [&a, &b] {
            assert_eq!(verify(s, &sig, "msg_42", "1700000000", body.as_bytes(), 1_700_000_000, 300), Ok(()));
        }
    }

    #[test]
    fn a_batch_holds_each_body_as_sent_alone() {
        let one = render(&row(), None).body;
        let both = batch(&[&one, &one]);
        let v: serde_json::Value = serde_json::from_str(&both).unwrap();
        assert_eq!(v["type"], "batch");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1], serde_json::from_str::<serde_json::Value>(&one).unwrap());
        assert_eq!(batch_id("msg_42", 2), "msg_42_batch2");
    }
}
