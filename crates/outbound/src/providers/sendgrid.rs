//! SendGrid's Event Webhook, as its "Event Webhook Reference" documents
//! it: a JSON array of events, each with `event`, `email`, `timestamp`
//! (seconds), `sg_event_id` (unique per event: the dedup key),
//! `sg_message_id` and `smtp-id` (the Message-ID). Delivery events:
//! `processed`, `dropped` (`reason`), `delivered` (`response`), `deferred`
//! (`response`, `attempt`), `bounce` (`reason`, `status`, `type`: `bounce`
//! or `blocked`); engagement: `open`, `click` (`url`), `spamreport`,
//! `unsubscribe`, `group_unsubscribe`, `group_resubscribe`. Custom
//! arguments arrive as top-level fields and stay in `raw`.

use serde_json::Value;
use vocabulary::EventKind;

use super::{ParseError, Payload, ProviderEvent, Skipped, json, objects, text, time};

pub(crate) fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let v = json(body)?;
    let mut out = Payload::default();
    for item in objects(&v, "the event batch")? {
        let Some(name) = text(&item, "event") else {
            out.skipped.push(Skipped { provider_event: String::new(), why: "no event field", raw: item });
            continue;
        };
        let Some(kind) = kind(&name, &item) else {
            let why = if name == "group_resubscribe" {
                "a re-subscription is no outcome of a message"
            } else {
                "not a SendGrid email event"
            };
            out.skipped.push(Skipped { provider_event: name, why, raw: item });
            continue;
        };
        out.events.push(event(kind, &name, &item));
    }
    Ok(out)
}

/// The schema's word for a SendGrid event.
fn kind(name: &str, e: &Value) -> Option<EventKind> {
    Some(match name {
        // Accepted and queued by SendGrid, not yet handed on.
        "processed" => EventKind::Queued,
        "dropped" => dropped(text(e, "reason").as_deref().unwrap_or("")),
        "delivered" => EventKind::Delivered,
        "deferred" => EventKind::Deferred,
        // Both `type`s: `bounce` (the address) and `blocked` (the sender or
        // content; a block never suppresses, which `reason` lets the record tell).
        "bounce" => EventKind::Bounced,
        "open" => EventKind::Opened,
        "click" => EventKind::Clicked,
        "spamreport" => EventKind::Complained,
        "unsubscribe" | "group_unsubscribe" => EventKind::Unsubscribed,
        _ => return None,
    })
}

/// Why SendGrid would not send: its suppression lists ("Bounced Address",
/// "Unsubscribed Address", "Spam Reporting Address", "Invalid SMTPAPI
/// header"...): the documented reasons that name one of its lists are
/// sluice's `suppressed`, an address that is not one is `invalid`, the
/// rest (spam content, an unsubscribed group) its refusal, `rejected`.
fn dropped(reason: &str) -> EventKind {
    let r = reason.to_ascii_lowercase();
    if r == "invalid" || r.contains("invalid address") || r.contains("invalid email") {
        EventKind::Invalid
    } else if r.contains("bounced address")
        || r.contains("unsubscribed address")
        || r.contains("spam reporting address")
    {
        EventKind::Suppressed
    } else {
        EventKind::Rejected
    }
}

fn event(kind: EventKind, name: &str, item: &Value) -> ProviderEvent {
    let mut e = ProviderEvent::new(kind, name, item);
    e.recipient = text(item, "email");
    e.message_id = text(item, "sg_message_id");
    e.header_message_id = text(item, "smtp-id");
    e.event_id = text(item, "sg_event_id");
    e.at = item.get("timestamp").and_then(time);
    match name {
        "bounce" => {
            e.reason = text(item, "type").or_else(|| Some("bounce".into()));
            e.smtp_response = text(item, "reason").or_else(|| text(item, "status"));
        }
        "dropped" => e.reason = text(item, "reason"),
        "delivered" | "deferred" => e.smtp_response = text(item, "response"),
        _ => {}
    }
    e.click_url = text(item, "url");
    e.user_agent = text(item, "useragent");
    e.ip = text(item, "ip");
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_say_why() {
        assert_eq!(dropped("Bounced Address"), EventKind::Suppressed);
        assert_eq!(dropped("Invalid"), EventKind::Invalid);
        assert_eq!(dropped("Spam Content (if spam checker app enabled)"), EventKind::Rejected);
    }

    #[test]
    fn a_batch_with_a_non_object_is_refused_whole() {
        assert!(parse(br#"[{"event": "delivered", "email": "a@example.com"}, 3]"#).is_err());
        let p =
            parse(br#"[{"event": "delivered", "email": "a@example.com"}, {"event": "group_resubscribe"}]"#)
                .expect("parses");
        assert_eq!((p.events.len(), p.skipped.len()), (1, 1));
    }
}
