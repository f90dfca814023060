//! What the API (and `sluice track --json`) shows of the record: types of
//! their own, built from the record's rows, so that a storage change does
//! not change the wire, and every event is named by the one schema
//! (`EventKind`, docs/events.md). Every time is milliseconds since the
//! epoch (the contract's numbers) with an `_rfc3339` sibling, the same
//! instant as RFC 3339 UTC (`vocabulary::time`) for people.

use record::events::{Direction, EventKind, EventRow, MessageView, RecipientHistory, RecipientView};
use record::suppress::Suppression;
use serde::Serialize;
use vocabulary::time::rfc3339_ms;

/// One event (`openapi.json`'s `Event`).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idx: Option<i64>,
    pub address: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `at` as RFC 3339 UTC, to the millisecond.
    pub at_rfc3339: String,
    pub reason: Option<String>,
    pub smtp_code: Option<i64>,
    pub smtp_status: Option<String>,
    pub smtp_text: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            id: r.id,
            message: r.message,
            idx: r.idx,
            address: r.address,
            kind: r.kind,
            at: r.at,
            at_rfc3339: rfc3339_ms(r.at),
            reason: r.reason,
            smtp_code: r.smtp_code,
            smtp_status: r.smtp_status,
            smtp_text: r.smtp_text,
            remote: r.remote,
            tls: r.tls,
            detail: r.detail,
        }
    }
}

fn events(rows: Vec<EventRow>) -> Vec<Event> {
    rows.into_iter().map(Event::from).collect()
}

/// A message and each recipient's state and events.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: String,
    /// `inbound` (the front line's) or `outbound` (an application's).
    pub direction: Direction,
    pub message_id: Option<String>,
    pub from: String,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub tags: serde_json::Value,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub created_at_rfc3339: String,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub address: String,
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub updated_at: i64,
    pub updated_at_rfc3339: String,
    pub events: Vec<Event>,
}

impl From<MessageView> for Message {
    fn from(m: MessageView) -> Self {
        Message {
            id: m.id,
            direction: m.direction,
            message_id: m.message_id,
            from: m.from,
            subject: m.subject,
            stream: m.stream,
            tags: m.tags,
            metadata: m.metadata,
            created_at: m.created_at,
            created_at_rfc3339: rfc3339_ms(m.created_at),
            recipients: m.recipients.into_iter().map(Recipient::from).collect(),
        }
    }
}

impl From<RecipientView> for Recipient {
    fn from(r: RecipientView) -> Self {
        Recipient {
            address: r.address,
            kind: r.kind,
            status: r.status,
            reason: r.reason,
            updated_at: r.updated_at,
            updated_at_rfc3339: rfc3339_ms(r.updated_at),
            events: events(r.events),
        }
    }
}

/// An address's history across messages, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub address: String,
    pub suppression: Option<SuppressionView>,
    pub events: Vec<Event>,
    /// Pass as `cursor` for older events.
    pub next_cursor: Option<i64>,
}

impl From<RecipientHistory> for History {
    fn from(h: RecipientHistory) -> Self {
        History {
            address: h.address,
            suppression: h.suppression.map(SuppressionView::from),
            events: events(h.events),
            next_cursor: h.next_cursor,
        }
    }
}

/// A suppression list entry (`openapi.json`'s `Suppression`): the
/// record's entry and its times as RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressionView {
    #[serde(flatten)]
    pub entry: Suppression,
    pub created_at_rfc3339: String,
    pub expires_at_rfc3339: Option<String>,
}

impl From<Suppression> for SuppressionView {
    fn from(entry: Suppression) -> Self {
        SuppressionView {
            created_at_rfc3339: rfc3339_ms(entry.created_at),
            expires_at_rfc3339: entry.expires_at.map(rfc3339_ms),
            entry,
        }
    }
}

/// The events of `GET /v1/events`.
pub fn event_list(rows: Vec<EventRow>) -> Vec<Event> {
    events(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_shown_under_the_schema_s_name() {
        let row = EventRow {
            id: 7,
            message: "m".into(),
            idx: Some(0),
            address: Some("a@b.test".into()),
            kind: EventKind::Bounced,
            at: 1,
            reason: Some("userunknown".into()),
            smtp_code: Some(550),
            smtp_status: Some("5.1.1".into()),
            smtp_text: None,
            remote: None,
            tls: None,
            detail: None,
            group: Vec::new(),
        };
        let v = serde_json::to_value(Event::from(row)).unwrap();
        assert_eq!(v["type"], "bounced");
        assert_eq!(v["reason"], "userunknown");
        assert_eq!((v["at"].as_i64(), v["at_rfc3339"].as_str()), (Some(1), Some("1970-01-01T00:00:00.001Z")));
        assert!(v.get("detail").is_none() && v.get("kind").is_none());
    }
}
