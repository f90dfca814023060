//! SparkPost's event webhooks, as its "Webhooks" and "Event Types"
//! documentation describes them: a JSON array (a batch), each element
//! `{"msys": {CLASS: {...}}}` with one event object under its class:
//! `message_event` (`injection`, `delivery`, `delay`, `bounce`,
//! `out_of_band`, `policy_rejection`, `spam_complaint`, `sms_status`),
//! `track_event` (`open`, `initial_open`, `click`, `amp_open`,
//! `amp_initial_open`, `amp_click`), `gen_event` (`generation_failure`,
//! `generation_rejection`), `unsubscribe_event` (`list_unsubscribe`,
//! `link_unsubscribe`) and `relay_event` (inbound relay). The ping
//! SparkPost sends when a webhook is created or tested is `[{"msys": {}}]`.
//!
//! Fields: `type`, `event_id` (unique: the dedup key), `transmission_id`
//! (what the transmissions API answered as the send's `id`), `rcpt_to` and
//! `raw_rcpt_to`, `timestamp` (seconds, as a string or a number),
//! `bounce_class` ("Bounce Classification Codes"), `raw_reason` (the
//! remote reply as received) and `reason` (the same, addresses masked),
//! `error_code`, `fbtype` (a complaint's feedback type),
//! `target_link_url`, `user_agent`, `ip_address`.

use serde_json::Value;
use vocabulary::EventKind;

use super::{ParseError, Payload, ProviderEvent, Skipped, json, objects, text, time};

pub(crate) fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let v = json(body)?;
    let mut out = Payload::default();
    for item in objects(&v, "the event batch")? {
        let msys = item.get("msys").and_then(Value::as_object).ok_or_else(|| {
            ParseError::Shape("a SparkPost batch element without an \"msys\" object".into())
        })?;
        // `{"msys": {}}` is the ping: no event.
        for (class, ev) in msys {
            if !ev.is_object() {
                return Err(ParseError::Shape(format!("SparkPost {class} is not an object")));
            }
            let name = text(ev, "type").unwrap_or_default();
            match kind(class, &name) {
                Ok(kind) => out.events.push(event(kind, &name, ev, &item)),
                Err(why) => out.skipped.push(Skipped { provider_event: name, why, raw: item.clone() }),
            }
        }
    }
    Ok(out)
}

/// The schema's word for an event type, or why there is none.
fn kind(class: &str, name: &str) -> Result<EventKind, &'static str> {
    if class == "relay_event" {
        return Err("inbound relay, not an outcome of a sent message");
    }
    Ok(match name {
        // Accepted by the transmissions API (or SMTP), queued for delivery.
        "injection" => EventKind::Queued,
        "delivery" => EventKind::Delivered,
        "delay" => EventKind::Deferred,
        // SparkPost's final word after its retries, in band (the SMTP
        // reply) or out of band (a later report); `bounce_class` says
        // whether it was the address (hard), a block or a policy.
        "bounce" | "out_of_band" => EventKind::Bounced,
        // SparkPost's own policy refused to send it.
        "policy_rejection" | "generation_rejection" => EventKind::Rejected,
        // The template could not be rendered: nothing was sent.
        "generation_failure" => EventKind::Failed,
        "spam_complaint" => EventKind::Complained,
        "open" | "initial_open" | "amp_open" | "amp_initial_open" => EventKind::Opened,
        "click" | "amp_click" => EventKind::Clicked,
        "list_unsubscribe" | "link_unsubscribe" => EventKind::Unsubscribed,
        "sms_status" => return Err("an SMS status, not mail"),
        "" => return Err("no event type"),
        _ => return Err("not a SparkPost email event type"),
    })
}

fn event(kind: EventKind, name: &str, ev: &Value, element: &Value) -> ProviderEvent {
    let mut e = ProviderEvent::new(kind, name, element);
    e.recipient = text(ev, "rcpt_to").or_else(|| text(ev, "raw_rcpt_to"));
    e.message_id = text(ev, "transmission_id");
    e.event_id = text(ev, "event_id");
    e.at = ev.get("timestamp").and_then(time);
    e.smtp_response = text(ev, "raw_reason").or_else(|| text(ev, "reason"));
    e.reason = match name {
        "spam_complaint" => text(ev, "fbtype"),
        _ => text(ev, "bounce_class").map(|c| bounce_class(&c)),
    };
    e.description = text(ev, "reason").filter(|r| Some(r) != e.smtp_response.as_ref());
    e.click_url = text(ev, "target_link_url");
    e.user_agent = text(ev, "user_agent");
    e.ip = text(ev, "ip_address");
    e
}

/// A bounce class as SparkPost's "Bounce Classification Codes" name it,
/// with its category (hard, soft, block, admin, undetermined): only hard
/// and admin are the address's own failure.
fn bounce_class(code: &str) -> String {
    let (name, category) = match code {
        "1" => ("Undetermined", "undetermined"),
        "10" => ("Invalid Recipient", "hard"),
        "20" => ("Soft Bounce", "soft"),
        "21" => ("DNS Failure", "soft"),
        "22" => ("Mailbox Full", "soft"),
        "23" => ("Too Large", "soft"),
        "24" => ("Timeout", "soft"),
        "25" => ("Admin Failure", "admin"),
        "26" => ("Smart Send Suppression", "admin"),
        "30" => ("Generic Bounce: No RCPT", "hard"),
        "40" => ("Generic Bounce", "soft"),
        "50" => ("Mail Block", "block"),
        "51" => ("Spam Block", "block"),
        "52" => ("Spam Content", "block"),
        "53" => ("Prohibited Attachment", "block"),
        "54" => ("Relaying Denied", "block"),
        "60" => ("Auto-Reply", "soft"),
        "70" => ("Transient Failure", "soft"),
        "80" => ("Subscribe", "admin"),
        "90" => ("Unsubscribe", "hard"),
        "100" => ("Challenge-Response", "soft"),
        _ => return format!("bounce class {code}"),
    };
    format!("{category}: {name} ({code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_classes() {
        let body = br#"[{"msys": {"message_event": {"type": "bounce", "bounce_class": "10", "rcpt_to": "a@example.com",
                        "transmission_id": "t1", "event_id": "e1", "timestamp": "1464824548", "raw_reason": "550 no"}}},
                       {"msys": {"track_event": {"type": "amp_click", "target_link_url": "https://x.example/"}}},
                       {"msys": {"relay_event": {"type": "relay_delivery"}}},
                       {"msys": {}}]"#;
        let p = parse(body).expect("parses");
        assert_eq!(p.events.len(), 2);
        let e = &p.events[0];
        assert_eq!((e.event, e.message_id.as_deref()), (EventKind::Bounced, Some("t1")));
        assert_eq!(e.reason.as_deref(), Some("hard: Invalid Recipient (10)"));
        assert_eq!(e.at, Some(1_464_824_548_000));
        assert_eq!(p.events[1].click_url.as_deref(), Some("https://x.example/"));
        assert_eq!(p.skipped.len(), 1);
    }

    #[test]
    fn an_element_without_msys_refuses_the_batch() {
        assert!(parse(br#"[{"msys": {}}, {"other": 1}]"#).is_err());
        assert!(parse(br#"[{"msys": {"message_event": "bounce"}}]"#).is_err());
    }
}
