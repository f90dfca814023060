//! Provider webhooks in: what Amazon SES, SendGrid, Mailgun, Postmark and
//! SparkPost post about the mail they sent for an application, read into
//! sluice's one event schema (`EventKind`), so an address bounced through a
//! provider and one bounced through our own relay look alike in the record.
//!
//! Pure: bytes and a content type in, events out. No HTTP, no signature
//! check, no database: the endpoint does those around `parse_payload`, and
//! `sluice webhook parse` prints what it returns. Each parser follows its
//! provider's own documentation of the payload (named in its file).
//!
//! A body that is not what the provider sends (bad JSON, a batch with a
//! non-object in it, a form without an event) is a `ParseError`, refused
//! whole, never half-read: the endpoint answers 400 and records nothing.
//! An event the provider documents but the schema has no word for (an
//! inbound relay event, a re-subscription) is `Skipped`, with the reason,
//! so it is seen and never silently turned into something it is not.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;
use vocabulary::EventKind;

mod form;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
pub mod signature;
pub mod sns;
pub mod sparkpost;

/// The providers whose webhooks sluice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Ses,
    Sendgrid,
    Mailgun,
    Postmark,
    Sparkpost,
}

impl Provider {
    pub const ALL: [Provider; 5] =
        [Provider::Ses, Provider::Sendgrid, Provider::Mailgun, Provider::Postmark, Provider::Sparkpost];

    /// The name in `/v1/webhooks/{provider}` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ses => "ses",
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Postmark => "postmark",
            Provider::Sparkpost => "sparkpost",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;

    /// The short name, any case; `amazonses` and `amazon-ses` too, the
    /// names people also give SES.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "ses" | "amazonses" | "amazon-ses" | "amazon_ses" => Ok(Provider::Ses),
            _ => Provider::ALL.into_iter().find(|p| p.as_str() == lower).ok_or_else(|| {
                format!("unknown provider {s:?} (ses, sendgrid, mailgun, postmark, sparkpost)")
            }),
        }
    }
}

/// One provider event for one recipient, in the schema's words, with what
/// the provider said kept beside them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderEvent {
    pub event: EventKind,
    pub recipient: Option<String>,
    /// The provider's id of the message, as its send API answered it (SES
    /// `messageId`, SendGrid `sg_message_id`, Mailgun's `<Message-Id>`,
    /// Postmark `MessageID`, SparkPost `transmission_id`).
    pub message_id: Option<String>,
    /// The RFC 5322 Message-ID, when the payload carries it: our own
    /// header, which matches a message sluice made.
    pub header_message_id: Option<String>,
    /// The provider's own name for the event (`Bounce`, `dropped`, ...).
    pub provider_event: String,
    /// The provider's id of this event, for deduplication (with the
    /// recipient: one SES notification names several).
    pub event_id: Option<String>,
    /// The provider's classification of why (SES `Permanent: General`,
    /// SendGrid's drop reason, Postmark's bounce `Type`, SparkPost's
    /// bounce class).
    pub reason: Option<String>,
    /// The receiving server's reply, as the provider passed it on.
    pub smtp_response: Option<String>,
    /// The provider's prose about it.
    pub description: Option<String>,
    /// When it happened, milliseconds since the Unix epoch.
    pub at: Option<i64>,
    pub click_url: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The provider's event object as received (left out of JSON when
    /// null, as `sluice webhook parse` makes it unless asked for it).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub raw: Value,
}

impl ProviderEvent {
    /// An event with only its kind, name and raw object; parsers fill in
    /// the rest field by field.
    pub(crate) fn new(event: EventKind, provider_event: &str, raw: &Value) -> Self {
        ProviderEvent {
            event,
            recipient: None,
            message_id: None,
            header_message_id: None,
            provider_event: provider_event.to_string(),
            event_id: None,
            reason: None,
            smtp_response: None,
            description: None,
            at: None,
            click_url: None,
            user_agent: None,
            ip: None,
            raw: raw.clone(),
        }
    }
}

/// A provider event read but not turned into one of ours, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The provider's name for it; empty when the object named none.
    pub provider_event: String,
    pub why: &'static str,
    pub raw: Value,
}

/// What a body that is no event says (SNS's subscription handshake): the
/// endpoint acts on these, the record keeps none of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// SNS asks for the subscription to be confirmed by a GET of
    /// `subscribe_url` (after the signature is verified).
    SnsSubscriptionConfirmation { topic_arn: Option<String>, subscribe_url: Option<String> },
    /// SNS says the subscription ended.
    SnsUnsubscribeConfirmation { topic_arn: Option<String> },
    /// An SNS notification whose message is not an SES event (SES's own
    /// "Successfully validated SNS topic" when a topic is set up).
    SnsMessage { message: String },
}

/// Everything one body said.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Payload {
    pub events: Vec<ProviderEvent>,
    pub skipped: Vec<Skipped>,
    pub notices: Vec<Notice>,
}

/// Why a body could not be read; the whole body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON where the provider sends JSON.
    Json(String),
    /// A form body that could not be read.
    Form(String),
    /// Valid syntax, but not the provider's shape.
    Shape(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "not JSON: {e}"),
            ParseError::Form(e) => write!(f, "not a form: {e}"),
            ParseError::Shape(e) => write!(f, "not the provider's payload: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The normalized events of one webhook body.
pub fn parse(provider: Provider, content_type: &str, body: &[u8]) -> Result<Vec<ProviderEvent>, ParseError> {
    parse_payload(provider, content_type, body).map(|p| p.events)
}

/// Everything one webhook body says: its events, what was skipped and
/// why, and any notice (SNS's handshake) the endpoint must act on.
pub fn parse_payload(provider: Provider, content_type: &str, body: &[u8]) -> Result<Payload, ParseError> {
    match provider {
        Provider::Ses => ses::parse(body),
        Provider::Sendgrid => sendgrid::parse(body),
        Provider::Mailgun => mailgun::parse(content_type, body),
        Provider::Postmark => postmark::parse(body),
        Provider::Sparkpost => sparkpost::parse(body),
    }
}

/// The body as JSON. A byte-order mark is allowed: some senders add one.
pub(crate) fn json(body: &[u8]) -> Result<Value, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
}

/// The objects of a batch: a JSON array of objects, or one object alone
/// (a provider posting a single event). Anything else refuses the body.
pub(crate) fn objects(v: &Value, what: &str) -> Result<Vec<Value>, ParseError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(_) => Ok(item.clone()),
                other => {
                    Err(ParseError::Shape(format!("{what} item {i} is {}, not an object", kind_of(other))))
                }
            })
            .collect(),
        Value::Object(_) => Ok(vec![v.clone()]),
        other => Err(ParseError::Shape(format!("{what} is {}, not an array of events", kind_of(other)))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field as text: a string (trimmed; empty is none), or a number
/// written out (Postmark's numeric `ID`, SparkPost's numeric timestamps).
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time as providers write it: seconds since the epoch (a number, with
/// or without a fraction, or a string of one), or RFC 3339 with any number
/// of fractional digits. Milliseconds since the epoch.
pub(crate) fn time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(seconds_to_ms),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(secs) = s.parse::<f64>() {
                return Some(seconds_to_ms(secs));
            }
            chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
        }
        _ => None,
    }
}

#[allow(clippy::cast_possible_truncation)] // a timestamp in ms fits an i64 for 292 million years
fn seconds_to_ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// A Message-ID in its RFC 5322 form, angle brackets included (providers
/// drop them in some payloads and keep them in others).
pub(crate) fn bracketed(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') && id.ends_with('>') { id.to_string() } else { format!("<{id}>") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_by_name() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert_eq!("AmazonSES".parse::<Provider>(), Ok(Provider::Ses));
        assert!("mandrill".parse::<Provider>().is_err());
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(time(&serde_json::json!(1461095250)), Some(1_461_095_250_000));
        assert_eq!(time(&serde_json::json!(1534110422.389832)), Some(1_534_110_422_390));
        assert_eq!(time(&serde_json::json!("1464824548")), Some(1_464_824_548_000));
        assert_eq!(time(&serde_json::json!("2016-04-27T16:28:50.3963933-04:00")), Some(1_461_788_930_396));
        assert_eq!(time(&serde_json::json!("2018-10-11T23:24:45.000+00:00")), Some(1_539_300_285_000));
        assert_eq!(time(&serde_json::json!("yesterday")), None);
    }

    #[test]
    fn a_body_that_is_no_payload_is_refused_for_every_provider() {
        for p in Provider::ALL {
            let bodies: [&[u8]; 5] = [b"not json", b"", b"[1, 2]", b"\"text\"", b"\xff\xfe"];
            for body in bodies {
                let ct = if p == Provider::Mailgun { "application/json" } else { "" };
                assert!(parse(p, ct, body).is_err(), "{p} took {body:?}");
            }
        }
    }
}
