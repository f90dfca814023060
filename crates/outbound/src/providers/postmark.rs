//! Postmark's webhooks, as its "Webhooks" documentation describes them:
//! one JSON object per post, named by `RecordType`: `Delivery`
//! (`Recipient`, `DeliveredAt`, `Details`), `Bounce` (`ID`, `Type`,
//! `TypeCode`, `Email`, `BouncedAt`, `Description`, `Details`),
//! `SpamComplaint` (the bounce fields), `Open` and `Click` (`Recipient`,
//! `ReceivedAt`, `UserAgent`, `Geo.IP`, `OriginalLink`) and
//! `SubscriptionChange` (`Recipient`, `ChangedAt`, `SuppressSending`,
//! `SuppressionReason`). Every record carries `MessageID`, the id the
//! send API answered. A bounce posted without `RecordType` (older bounce
//! webhooks) is still read by its `Type`.

use serde_json::Value;
use vocabulary::EventKind;

use super::{ParseError, Payload, ProviderEvent, Skipped, json, objects, text, time};

pub(crate) fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let v = json(body)?;
    let mut out = Payload::default();
    for item in objects(&v, "the Postmark record")? {
        let record =
            text(&item, "RecordType").or_else(|| text(&item, "TypeCode").map(|_| "Bounce".to_string()));
        let Some(record) = record else {
            out.skipped.push(Skipped { provider_event: String::new(), why: "no RecordType", raw: item });
            continue;
        };
        match event(&record, &item) {
            Ok(e) => out.events.push(e),
            Err(why) => out.skipped.push(Skipped { provider_event: record, why, raw: item }),
        }
    }
    Ok(out)
}

/// One record as an event, or why it is none.
fn event(record: &str, item: &Value) -> Result<ProviderEvent, &'static str> {
    let kind = match record {
        "Delivery" => EventKind::Delivered,
        "Bounce" => bounce(&text(item, "Type").unwrap_or_default())?,
        "SpamComplaint" => EventKind::Complained,
        "Open" => EventKind::Opened,
        "Click" => EventKind::Clicked,
        // Postmark stopped (or resumed) sending to the address, and says
        // why: the recipient's own unsubscribe (`ManualSuppression`), or
        // a hard bounce or complaint it turned into a suppression.
        "SubscriptionChange" => match item.get("SuppressSending").and_then(Value::as_bool) {
            Some(true) => match text(item, "SuppressionReason").as_deref() {
                Some("HardBounce") => EventKind::Bounced,
                Some("SpamComplaint") => EventKind::Complained,
                _ => EventKind::Unsubscribed,
            },
            _ => return Err("a re-subscription is no outcome of a message"),
        },
        "Inbound" => return Err("inbound mail, not an outcome of a sent message"),
        _ => return Err("not a Postmark record type"),
    };
    let mut e = ProviderEvent::new(kind, record, item);
    e.recipient = text(item, "Recipient").or_else(|| text(item, "Email"));
    e.message_id = text(item, "MessageID");
    e.event_id = text(item, "ID");
    e.at = ["DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt"]
        .iter()
        .find_map(|k| item.get(*k).and_then(time));
    match record {
        "Delivery" => e.smtp_response = text(item, "Details"),
        "Bounce" | "SpamComplaint" => {
            e.reason = text(item, "Type");
            e.smtp_response = text(item, "Details");
            e.description = text(item, "Description");
        }
        "SubscriptionChange" => {
            e.reason = text(item, "SuppressionReason");
            e.description = text(item, "Origin");
        }
        _ => {}
    }
    e.click_url = text(item, "OriginalLink");
    e.user_agent = text(item, "UserAgent");
    e.ip = item.get("Geo").and_then(|g| text(g, "IP"));
    Ok(e)
}

/// A bounce by its documented `Type`. Postmark's "bounces" include what
/// is no bounce: auto-replies, complaints, its own refusals.
fn bounce(t: &str) -> Result<EventKind, &'static str> {
    Ok(match t {
        // The address does not work (HardBounce: unknown user; Unknown and
        // VirusNotification: undeliverable, Postmark deactivates the address).
        "HardBounce" | "Unknown" | "VirusNotification" | "" => EventKind::Bounced,
        // Postmark's words for these are "temporarily" and "delayed".
        "Transient" | "SoftBounce" | "DnsError" => EventKind::Deferred,
        "SpamComplaint" | "SpamNotification" => EventKind::Complained,
        "Unsubscribe" => EventKind::Unsubscribed,
        "AutoResponder" | "AddressChange" | "ChallengeVerification" => EventKind::Autoreplied,
        // Not an address at all.
        "BadEmailAddress" => EventKind::Invalid,
        // On Postmark's inactive list, so Postmark did not send.
        "ManuallyDeactivated" => EventKind::Suppressed,
        // Refused for good by the receiving side or by Postmark's policy.
        "Blocked" | "DMARCPolicy" | "Unconfirmed" => EventKind::Rejected,
        // Postmark could not make or send the message.
        "SMTPApiError" | "TemplateRenderingFailed" => EventKind::Failed,
        "Subscribe" => return Err("a subscribe request is no outcome of a message"),
        "OpenRelayTest" => return Err("an open relay test is no outcome of a message"),
        "InboundError" => return Err("inbound mail, not an outcome of a sent message"),
        _ => return Err("not a Postmark bounce type"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_types() {
        let p = parse(br#"{"RecordType": "Bounce", "Type": "SoftBounce", "Email": "a@example.com", "MessageID": "m", "ID": 42}"#)
            .expect("parses");
        let e = &p.events[0];
        assert_eq!((e.event, e.event_id.as_deref()), (EventKind::Deferred, Some("42")));
        assert_eq!((e.provider_event.as_str(), e.reason.as_deref()), ("Bounce", Some("SoftBounce")));
        let old =
            parse(br#"{"Type": "HardBounce", "TypeCode": 1, "Email": "a@example.com"}"#).expect("parses");
        assert_eq!(old.events[0].event, EventKind::Bounced);
        let sub =
            parse(br#"{"RecordType": "SubscriptionChange", "SuppressSending": false}"#).expect("parses");
        assert_eq!((sub.events.len(), sub.skipped.len()), (0, 1));
    }
}
