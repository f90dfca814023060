//! A send request in JSON, checked field by field and built into an RFC 5322
//! message (mail-builder). Anything that could smuggle a header (CR or LF in
//! a subject, a name, a header, a filename) is refused, never cleaned up.

use std::collections::BTreeMap;

use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::text::Text;
use outbound::outbox::valid_address;
use serde::Deserialize;

use crate::ApiError;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AddressIn {
    Plain(String),
    Named { email: String, name: Option<String> },
}

impl AddressIn {
    fn email(&self) -> &str {
        match self {
            AddressIn::Plain(e) | AddressIn::Named { email: e, .. } => e.trim(),
        }
    }
    fn name(&self) -> Option<&str> {
        match self {
            AddressIn::Plain(_) => None,
            AddressIn::Named { name, .. } => name.as_deref().filter(|n| !n.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(AddressIn),
    Many(Vec<AddressIn>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl OneOrMany {
    fn list(&self) -> &[AddressIn] {
        match self {
            OneOrMany::One(a) => std::slice::from_ref(a),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub filename: String,
    pub content_type: Option<String>,
    pub content_base64: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub from: AddressIn,
    #[serde(default)]
    pub to: OneOrMany,
    #[serde(default)]
    pub cc: OneOrMany,
    #[serde(default)]
    pub bcc: OneOrMany,
    pub reply_to: Option<AddressIn>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub stream: Option<String>,
    /// Give each recipient a `List-Unsubscribe` header (mailto, and the
    /// one-click link when `[http] public_url` is set).
    #[serde(default)]
    pub list_unsubscribe: bool,
    /// A tracking pixel in the HTML (default: the stream's, or `[tracking]`'s).
    pub track_opens: Option<bool>,
    /// The HTML's links through the click tracker (default as for opens).
    pub track_clicks: Option<bool>,
}

/// Headers the API writes itself; a request may not set them.
const RESERVED: &[&str] = &[
    "list-unsubscribe",
    "list-unsubscribe-post",
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "return-path",
    "received",
    "sender",
];

pub const MAX_RECIPIENTS: usize = 1000;

fn no_line_breaks(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ApiError::invalid(field, "must not contain CR, LF or NUL (header injection)"));
    }
    Ok(())
}

fn check_address(field: &str, a: &AddressIn) -> Result<(), ApiError> {
    no_line_breaks(field, a.email())?;
    if let Some(n) = a.name() {
        no_line_breaks(field, n)?;
    }
    if !valid_address(a.email()) {
        return Err(ApiError::invalid(field, format!("not a valid email address: {:?}", a.email())));
    }
    Ok(())
}

/// Tags and stream: short printable names, so they can be filtered on.
pub fn check_tags(tags: &[String], stream: Option<&str>) -> Result<(), ApiError> {
    if tags.len() > 20 {
        return Err(ApiError::invalid("tags", "at most 20 tags"));
    }
    for (i, t) in tags.iter().enumerate() {
        if t.is_empty() || t.len() > 100 || t.chars().any(char::is_control) {
            return Err(ApiError::invalid(format!("tags[{i}]"), "tags are 1-100 printable characters"));
        }
    }
    if let Some(s) = stream
        && (s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    {
        return Err(ApiError::invalid("stream", "streams are 1-64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

/// A message built from a request: the bytes and what the record keeps.
pub struct Composed {
    pub content: Vec<u8>,
    pub message_id: String,
    pub recipients: Vec<(String, &'static str)>,
}

pub fn compose(req: &SendRequest, hostname: &str) -> Result<Composed, ApiError> {
    check_address("from", &req.from)?;
    let mut recipients = Vec::new();
    let mut invalid = Vec::new();
    for (kind, list) in [("to", &req.to), ("cc", &req.cc), ("bcc", &req.bcc)] {
        for (i, a) in list.list().iter().enumerate() {
            let field = format!("{kind}[{i}]");
            no_line_breaks(&field, a.email())?;
            if let Some(n) = a.name() {
                no_line_breaks(&field, n)?;
            }
            if !valid_address(a.email()) {
                invalid.push(field);
            }
            recipients.push((a.email().to_string(), kind));
        }
    }
    if recipients.is_empty() {
        return Err(ApiError::invalid("to", "at least one recipient in to, cc or bcc"));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid("to", format!("at most {MAX_RECIPIENTS} recipients per message")));
    }
    if invalid.len() == recipients.len() {
        return Err(ApiError::invalid(invalid[0].clone(), "no valid recipient address"));
    }
    if let Some(r) = &req.reply_to {
        check_address("reply_to", r)?;
    }
    if let Some(s) = &req.subject {
        no_line_breaks("subject", s)?;
        if s.len() > 998 {
            return Err(ApiError::invalid("subject", "subject longer than 998 bytes"));
        }
    }
    if req.text.is_none() && req.html.is_none() {
        return Err(ApiError::invalid("text", "a text or html body is required"));
    }
    check_tags(&req.tags, req.stream.as_deref())?;
    let domain = req.from.email().rsplit_once('@').map_or(hostname, |(_, d)| d);
    let message_id = format!("{}@{}", uuid::Uuid::now_v7().simple(), domain.to_ascii_lowercase());
    let addr = |a: &AddressIn| -> Address<'static> {
        match a.name() {
            Some(n) => Address::new_address(Some(n.to_string()), a.email().to_string()),
            None => Address::new_address(None::<String>, a.email().to_string()),
        }
    };
    let mut b = MessageBuilder::new().from(addr(&req.from)).message_id(message_id.clone());
    let to: Vec<Address> = req.to.list().iter().map(addr).collect();
    if !to.is_empty() {
        b = b.to(to);
    }
    let cc: Vec<Address> = req.cc.list().iter().map(addr).collect();
    if !cc.is_empty() {
        b = b.cc(cc);
    }
    if let Some(r) = &req.reply_to {
        b = b.reply_to(addr(r));
    }
    if let Some(s) = &req.subject {
        b = b.subject(s.clone());
    }
    for (name, value) in &req.headers {
        let field = format!("headers.{name}");
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic() && c != b':') {
            return Err(ApiError::invalid(field, "header names are printable ASCII without ':'"));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ApiError::invalid(field, "this header is set by the API from the request's fields"));
        }
        no_line_breaks(&field, value)?;
        b = b.header(name.clone(), Text::new(value.clone()));
    }
    if let Some(t) = &req.text {
        b = b.text_body(t.clone());
    }
    if let Some(h) = &req.html {
        b = b.html_body(h.clone());
    }
    for (i, a) in req.attachments.iter().enumerate() {
        let field = format!("attachments[{i}]");
        no_line_breaks(&format!("{field}.filename"), &a.filename)?;
        let ct = a.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
        if ct.contains(['\r', '\n']) || !ct.contains('/') {
            return Err(ApiError::invalid(format!("{field}.content_type"), "not a MIME type"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content_base64.trim())
            .map_err(|e| ApiError::invalid(format!("{field}.content_base64"), format!("not base64: {e}")))?;
        b = b.attachment(ct, a.filename.clone(), bytes);
    }
    let content =
        b.write_to_vec().map_err(|e| ApiError::bad_request(format!("cannot build the message: {e}")))?;
    Ok(Composed { content, message_id, recipients })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> SendRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn builds_a_message_without_bcc_header() {
        let c =
            compose(
                &req(
                    serde_json::json!({"from": {"email": "app@example.com", "name": "App"}, "to": "a@x.test",
                "bcc": ["hidden@y.test"], "subject": "Hi", "text": "hello", "headers": {"X-Campaign": "c1"}}),
                ),
                "mx.test",
            )
            .unwrap();
        let s = String::from_utf8_lossy(&c.content);
        assert!(s.contains("Subject: Hi\r\n"), "{s}");
        assert!(s.contains("X-Campaign: c1\r\n"), "{s}");
        assert!(!s.to_ascii_lowercase().contains("hidden@y.test"), "{s}");
        assert!(s.contains(&format!("<{}>", c.message_id)), "{s}");
        assert_eq!(c.recipients, vec![("a@x.test".into(), "to"), ("hidden@y.test".into(), "bcc")]);
    }

    #[test]
    fn refuses_injection_and_bad_fields() {
        let base = serde_json::json!({"from": "app@example.com", "to": ["a@x.test"], "text": "t"});
        let with = |k: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[k] = v;
            compose(&req(j), "h").err().map(|e| (e.status.as_u16(), e.field))
        };
        assert_eq!(with("subject", "a\r\nBcc: x@y.test".into()), Some((422, Some("subject".into()))));
        assert_eq!(
            with("headers", serde_json::json!({"X-A": "b\nc"})),
            Some((422, Some("headers.X-A".into())))
        );
        assert_eq!(
            with("headers", serde_json::json!({"Bcc": "z@y.test"})),
            Some((422, Some("headers.Bcc".into())))
        );
        assert_eq!(with("from", "not-an-address".into()), Some((422, Some("from".into()))));
        assert_eq!(with("to", serde_json::json!(["nope"])), Some((422, Some("to[0]".into()))));
        assert_eq!(with("to", serde_json::json!([])), Some((422, Some("to".into()))));
        assert!(with("to", serde_json::json!(["a@x.test", "nope"])).is_none());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client puts in the fields, the message either is
        /// refused or has exactly the headers we wrote: no value can start
        /// a header of its own.
        #[test]
        fn no_field_can_inject_a_header(subject in ".{0,80}", name in ".{0,40}", value in ".{0,80}",
                                        display in ".{0,40}", text in ".{0,200}") {
            let mut headers = BTreeMap::new();
            headers.insert(format!("X-{}", name.chars().filter(char::is_ascii_alphanumeric).collect::<String>()), value);
            let req = SendRequest {
                from: AddressIn::Named { email: "app@example.com".into(), name: Some(display) },
                to: OneOrMany::One(AddressIn::Plain("a@x.test".into())),
                cc: OneOrMany::default(),
                bcc: OneOrMany::Many(vec![AddressIn::Plain("hidden@y.test".into())]),
                reply_to: None,
                subject: Some(subject),
                text: Some(text),
                html: None,
                headers,
                attachments: vec![],
                tags: vec![],
                metadata: Default::default(),
                stream: None,
                list_unsubscribe: false,
                track_opens: None,
                track_clicks: None,
            };
            if let Ok(c) = compose(&req, "h.test") {
                let head_end = c.content.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(c.content.len());
                let head = String::from_utf8_lossy(&c.content[..head_end]);
                for line in head.split("\r\n").filter(|l| !l.starts_with([' ', '\t'])) {
                    let field = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    prop_assert!(
                        ["from", "to", "subject", "message-id", "date", "mime-version", "content-type",
                         "content-transfer-encoding"].contains(&field.as_str()) || field.starts_with("x-"),
                        "unexpected header line {line:?}"
                    );
                }
                prop_assert!(!head.contains("hidden@y.test"));
            }
        }
    }
}
