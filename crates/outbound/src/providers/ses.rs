//! Amazon SES, as AWS documents it: "Contents of notifications for Amazon
//! SES" (`notificationType`: Bounce, Complaint, Delivery) and "Contents of
//! event data that Amazon SES publishes to Amazon SNS" (`eventType`: Send,
//! Reject, Bounce, Complaint, Delivery, Open, Click, Rendering Failure,
//! DeliveryDelay, Subscription), each with the `mail` object of the message
//! it is about. Over HTTP they come inside an SNS envelope ("Amazon SNS
//! message and JSON formats"): `Type` `Notification` with the SES object as
//! a JSON string in `Message`, or `SubscriptionConfirmation` /
//! `UnsubscribeConfirmation`, which carry no event. A bare SES object (as
//! the documentation shows it, or an EventBridge `detail`) is read too.
//!
//! One SES object names one message and may name several recipients (a
//! bounce of two of three addresses): it becomes one event per recipient.

use serde_json::Value;
use vocabulary::EventKind;

use super::{Notice, ParseError, Payload, ProviderEvent, Skipped, json, text, time};

pub(crate) fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let v = json(body)?;
    if !v.is_object() {
        return Err(ParseError::Shape("an SNS message or SES event is a JSON object".into()));
    }
    let mut out = Payload::default();
    match v.get("Type").and_then(Value::as_str) {
        Some("Notification") => notification(&v, &mut out)?,
        Some("SubscriptionConfirmation") => out.notices.push(Notice::SnsSubscriptionConfirmation {
            topic_arn: text(&v, "TopicArn"),
            subscribe_url: text(&v, "SubscribeURL"),
        }),
        Some("UnsubscribeConfirmation") => {
            out.notices.push(Notice::SnsUnsubscribeConfirmation { topic_arn: text(&v, "TopicArn") })
        }
        Some(other) => return Err(ParseError::Shape(format!("unknown SNS message Type {other:?}"))),
        // EventBridge puts the SES event under `detail`.
        None => match v.get("detail").filter(|d| d.is_object()) {
            Some(detail) => event(detail, None, &mut out)?,
            None => event(&v, None, &mut out)?,
        },
    }
    Ok(out)
}

/// An SNS notification: its `Message` is the SES event as a string, or,
/// when SES is only saying hello to a new topic, plain text.
fn notification(envelope: &Value, out: &mut Payload) -> Result<(), ParseError> {
    let message = envelope
        .get("Message")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::Shape("an SNS Notification without a Message string".into()))?;
    let sns_id = text(envelope, "MessageId");
    match serde_json::from_str::<Value>(message) {
        Ok(inner @ Value::Object(_)) => event(&inner, sns_id, out),
        // A JSON object is an SES event; anything else is prose for a person.
        _ => {
            out.notices.push(Notice::SnsMessage { message: message.to_string() });
            Ok(())
        }
    }
}

/// One SES event object; `sns_id` is the envelope's `MessageId`, the same
/// on every retry of the notification, so it is the event's id.
fn event(n: &Value, sns_id: Option<String>, out: &mut Payload) -> Result<(), ParseError> {
    let name = text(n, "eventType").or_else(|| text(n, "notificationType"));
    let Some(name) = name else {
        // SNS delivers whatever is published to the topic; an object that
        // is no SES event (Anymail's tests post `{}`) says nothing.
        if n.as_object().is_some_and(|o| !o.is_empty()) {
            out.skipped.push(Skipped { provider_event: String::new(), why: "no eventType", raw: n.clone() });
        }
        return Ok(());
    };
    let mail = n.get("mail").cloned().unwrap_or(Value::Null);
    let before = (out.events.len(), out.skipped.len());
    let base = |kind: EventKind, detail: Option<&Value>| {
        let mut e = ProviderEvent::new(kind, &name, n);
        e.message_id = text(&mail, "messageId");
        e.header_message_id = header_message_id(&mail);
        e.event_id = sns_id.clone().or_else(|| detail.and_then(|d| text(d, "feedbackId")));
        e.at = detail
            .and_then(|d| d.get("timestamp"))
            .and_then(time)
            .or_else(|| mail.get("timestamp").and_then(time));
        e
    };
    match name.as_str() {
        "Bounce" => {
            let b = detail(n, "bounce", &name)?;
            let reason =
                [text(b, "bounceType"), text(b, "bounceSubType")].into_iter().flatten().collect::<Vec<_>>();
            for r in array(b, "bouncedRecipients") {
                let mut e = base(EventKind::Bounced, Some(b));
                e.recipient = text(r, "emailAddress");
                e.smtp_response = text(r, "diagnosticCode").or_else(|| text(r, "status"));
                e.reason = (!reason.is_empty()).then(|| reason.join(": "));
                out.events.push(e);
            }
        }
        "Complaint" => {
            let c = detail(n, "complaint", &name)?;
            for r in array(c, "complainedRecipients") {
                let mut e = base(EventKind::Complained, Some(c));
                e.recipient = text(r, "emailAddress");
                e.reason = text(c, "complaintFeedbackType").or_else(|| text(c, "complaintSubType"));
                e.user_agent = text(c, "userAgent");
                out.events.push(e);
            }
        }
        "Delivery" => {
            let d = detail(n, "delivery", &name)?;
            for r in strings(d.get("recipients")) {
                let mut e = base(EventKind::Delivered, Some(d));
                e.recipient = Some(r);
                e.smtp_response = text(d, "smtpResponse");
                out.events.push(e);
            }
        }
        "DeliveryDelay" => {
            let d = detail(n, "deliveryDelay", &name)?;
            for r in array(d, "delayedRecipients") {
                let mut e = base(EventKind::Deferred, Some(d));
                e.recipient = text(r, "emailAddress");
                e.smtp_response = text(r, "diagnosticCode").or_else(|| text(r, "status"));
                e.reason = text(d, "delayType");
                out.events.push(e);
            }
        }
        "Send" | "Reject" | "Rendering Failure" | "Open" | "Click" => {
            per_destination(&name, n, &strings(mail.get("destination")), base, out)
        }
        "Subscription" => subscription(n, &name, &mail, base, out)?,
        _ => out.skipped.push(Skipped {
            provider_event: name.clone(),
            why: "not an SES event type",
            raw: n.clone(),
        }),
    }
    // An event whose recipient lists are empty is said, not dropped.
    if (out.events.len(), out.skipped.len()) == before {
        out.skipped.push(Skipped { provider_event: name, why: "names no recipient", raw: n.clone() });
    }
    Ok(())
}

/// The events that name no recipient of their own: one for each address
/// the message was sent to.
fn per_destination(
    name: &str,
    n: &Value,
    destination: &[String],
    base: impl Fn(EventKind, Option<&Value>) -> ProviderEvent,
    out: &mut Payload,
) {
    let (kind, key) = match name {
        // SES took the send request: the next hop said yes.
        "Send" => (EventKind::Sent, "send"),
        // SES found a virus and did not try.
        "Reject" => (EventKind::Rejected, "reject"),
        "Open" => (EventKind::Opened, "open"),
        "Click" => (EventKind::Clicked, "click"),
        // The template could not be rendered: nothing was sent.
        _ => (EventKind::Failed, "failure"),
    };
    let d = n.get(key).filter(|d| d.is_object());
    for r in destination {
        let mut e = base(kind, d);
        e.recipient = Some(r.clone());
        if let Some(d) = d {
            e.description = text(d, "reason").or_else(|| text(d, "errorMessage"));
            e.click_url = text(d, "link");
            e.user_agent = text(d, "userAgent");
            e.ip = text(d, "ipAddress");
        }
        out.events.push(e);
    }
}

/// A change of the recipient's subscription preferences (SES contact
/// lists): an unsubscribe when it leaves everything or opts out of a
/// topic; opting in is no outcome of a message, so it is skipped.
fn subscription(
    n: &Value,
    name: &str,
    mail: &Value,
    base: impl Fn(EventKind, Option<&Value>) -> ProviderEvent,
    out: &mut Payload,
) -> Result<(), ParseError> {
    let s = detail(n, "subscription", name)?;
    let new = s.get("newTopicPreferences").cloned().unwrap_or(Value::Null);
    let all = new.get("unsubscribeAll").and_then(Value::as_bool) == Some(true);
    let old = s.get("oldTopicPreferences").cloned().unwrap_or(Value::Null);
    let opted_out = |prefs: &Value| -> Vec<String> {
        array(prefs, "topicSubscriptionStatus")
            .filter(|t| text(t, "subscriptionStatus").as_deref() == Some("OptOut"))
            .filter_map(|t| text(t, "topicName"))
            .collect()
    };
    let newly_out: Vec<String> = {
        let before = opted_out(&old);
        opted_out(&new).into_iter().filter(|t| !before.contains(t)).collect()
    };
    if !all && newly_out.is_empty() {
        out.skipped.push(Skipped {
            provider_event: name.into(),
            why: "a subscription, not an unsubscribe",
            raw: n.clone(),
        });
        return Ok(());
    }
    for r in strings(mail.get("destination")) {
        let mut e = base(EventKind::Unsubscribed, Some(s));
        e.recipient = Some(r);
        e.reason =
            Some(if all { "unsubscribe_all".into() } else { format!("topics: {}", newly_out.join(", ")) });
        e.description = text(s, "source");
        out.events.push(e);
    }
    Ok(())
}

/// The event's own object (`bounce`, `complaint`, ...), which SES always
/// sends with its type: without it the body is not SES's.
fn detail<'a>(n: &'a Value, key: &str, name: &str) -> Result<&'a Value, ParseError> {
    n.get(key)
        .filter(|d| d.is_object())
        .ok_or_else(|| ParseError::Shape(format!("an SES {name} without {key:?}")))
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

/// The Message-ID header: `commonHeaders.messageId`, else the `Message-ID`
/// among the original headers (present unless SES truncated them).
fn header_message_id(mail: &Value) -> Option<String> {
    mail.get("commonHeaders").and_then(|h| text(h, "messageId")).or_else(|| {
        mail.get("headers")
            .and_then(Value::as_array)?
            .iter()
            .find(|h| {
                h.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case("message-id"))
            })
            .and_then(|h| text(h, "value"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns(message: &Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "Type": "Notification", "MessageId": "sns-1", "Message": message.to_string()
        }))
        .unwrap_or_default()
    }

    #[test]
    fn a_bounce_of_two_recipients_is_two_events() {
        let body = sns(&serde_json::json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                       "bouncedRecipients": [{"emailAddress": "a@example.com"}, {"emailAddress": "b@example.com"}],
                       "timestamp": "2016-01-27T14:59:38.237Z"},
            "mail": {"messageId": "m-1", "commonHeaders": {"messageId": "<x@example.com>"}}
        }));
        let p = parse(&body).expect("parses");
        assert_eq!(p.events.len(), 2);
        let e = &p.events[1];
        assert_eq!((e.event, e.recipient.as_deref()), (EventKind::Bounced, Some("b@example.com")));
        assert_eq!(e.reason.as_deref(), Some("Transient: MailboxFull"));
        assert_eq!(e.event_id.as_deref(), Some("sns-1"));
        assert_eq!(e.header_message_id.as_deref(), Some("<x@example.com>"));
        assert_eq!(e.at, Some(1_453_906_778_237));
    }

    #[test]
    fn the_handshake_is_a_notice_and_no_event() {
        let body = br#"{"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm", "Message": "hi"}"#;
        let p = parse(body).expect("parses");
        assert!(p.events.is_empty());
        assert!(
            matches!(&p.notices[..], [Notice::SnsSubscriptionConfirmation { subscribe_url: Some(u), .. }] if u.ends_with("confirm"))
        );
        let hello = br#"{"Type": "Notification", "Message": "Successfully validated SNS topic."}"#;
        assert!(matches!(&parse(hello).expect("parses").notices[..], [Notice::SnsMessage { .. }]));
    }

    #[test]
    fn an_event_naming_nobody_is_skipped_not_lost() {
        let p = parse(br#"{"eventType": "Send", "mail": {"messageId": "m"}, "send": {}}"#).expect("parses");
        assert_eq!((p.events.len(), p.skipped.len()), (0, 1));
        assert_eq!(p.skipped[0].why, "names no recipient");
    }

    #[test]
    fn a_bounce_without_its_object_is_refused() {
        assert!(parse(&sns(&serde_json::json!({"notificationType": "Bounce"}))).is_err());
        assert!(parse(br#"{"Type": "Notification"}"#).is_err());
        assert!(parse(br#"{"Type": "Surprise", "Message": "{}"}"#).is_err());
    }
}
