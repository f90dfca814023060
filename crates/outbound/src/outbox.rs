//! The outbox: the one way mail leaves for an application, whether it came
//! through the HTTP API or an authenticated submission session. It checks
//! every recipient (invalid, suppressed), records the message and the fate
//! of each recipient durably, then queues the rest for delivery.

use std::collections::HashSet;
use std::sync::Arc;

use queue::{Spool, Waker};
use record::events::{Direction, EventKind, NewMessage, NewRecipient, normalize, now_ms};
use record::{EventLog, RecordError};
use serde::Serialize;
use vocabulary::{Envelope, QueueId, Recipient, Route};

/// A message ready to go: the exact bytes to send and what the record keeps.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The envelope sender's identity (the From address); each delivery
    /// gets its own VERP return path.
    pub from: String,
    /// `(address, kind)` with kind `to`, `cc` or `bcc`, in order.
    pub recipients: Vec<(String, &'static str)>,
    pub content: Vec<u8>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    /// Idempotency key and the hash of the request it came with.
    pub idempotency: Option<(String, Vec<u8>)>,
    /// Submission: the client's trace header, kept on the way out.
    pub trace: String,
    pub smtputf8: bool,
    /// Each recipient gets `List-Unsubscribe` (mailto to its VERP address,
    /// and the one-click URL when the server has a public URL).
    pub list_unsubscribe: bool,
    /// Opens and clicks asked for (`None`: the stream's or server's default).
    pub track: crate::tracking::Track<Option<bool>>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub address: String,
    /// `queued`, `suppressed` or `invalid`.
    pub status: String,
    pub reason: Option<String>,
}

/// What the caller is told: the message id and each recipient's fate.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub recipients: Vec<RecipientOutcome>,
}

#[derive(Debug)]
pub enum SendError {
    /// The idempotency key is in use by another request.
    Conflict(String),
    /// The record or the spool failed: try again later.
    Unavailable(String),
    /// The disk is full: nothing was accepted; try again once space is freed.
    StorageFull(String),
}

pub struct Outbox {
    pub record: record::Store,
    pub spool: Arc<Spool>,
    pub waker: Option<Waker>,
    /// Seconds a message may wait in the queue before it fails.
    pub max_age: i64,
    /// Open and click tracking (`[tracking]`); `None`: never tracked.
    pub tracking: Option<Arc<crate::tracking::Policy>>,
}

/// A syntactically usable mailbox for an envelope: `local@domain`, no
/// spaces, controls or brackets, within RFC 5321's length limits.
pub fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    let ok_local = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| b > b' ' && b != 0x7f && !b"<>()[]\\,;:\"@".contains(&b));
    let ok_domain = !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        });
    ok_local && ok_domain && a.len() <= 254
}

impl Outbox {
    pub async fn send(&self, tenant: i64, draft: Draft) -> Result<Sent, SendError> {
        let id = QueueId::generate();
        let now_ms = now_ms();
        // Each address once, in order; invalid ones are reported, not sent.
        let mut seen = HashSet::new();
        let mut rcpts: Vec<(String, &'static str, EventKind, Option<String>)> = Vec::new();
        for (address, kind) in &draft.recipients {
            let address = address.trim().to_string();
            if !seen.insert(normalize(&address)) {
                continue;
            }
            if valid_address(&address) {
                rcpts.push((address, kind, EventKind::Queued, None));
            } else {
                rcpts.push((address, kind, EventKind::Invalid, Some("not a valid email address".into())));
            }
        }
        let candidates: Vec<String> =
            rcpts.iter().filter(|r| r.2 == EventKind::Queued).map(|r| r.0.clone()).collect();
        let suppressed =
            self.record.suppressions.suppressed(tenant, &candidates, now_ms).await.map_err(unavailable)?;
        for r in rcpts.iter_mut() {
            let n = normalize(&r.0);
            if let Some(s) = suppressed.iter().find(|s| s.address == n) {
                r.2 = EventKind::Suppressed;
                r.3 = Some(format!("{} ({})", s.reason, s.source));
            }
        }
        // Queued recipients first, so a recipient's index in the record is
        // its index in the spool envelope (the VERP token carries it).
        rcpts.sort_by_key(|r| r.2 != EventKind::Queued);
        let sent = Sent {
            id: id.to_string(),
            recipients: rcpts
                .iter()
                .map(|(address, _, status, reason)| RecipientOutcome {
                    address: address.clone(),
                    status: status.as_str().to_string(),
                    reason: reason.clone(),
                })
                .collect(),
        };
        let response = serde_json::to_string(&sent).unwrap_or_default();
        let record = NewMessage {
            id: sent.id.clone(),
            tenant,
            direction: Direction::Outbound,
            message_id: draft.message_id.clone(),
            mail_from: draft.from.clone(),
            subject: draft.subject.clone(),
            stream: draft.stream.clone(),
            tags: draft.tags.clone(),
            metadata: draft.metadata.clone(),
            recipients: rcpts
                .iter()
                .map(|(address, kind, status, reason)| NewRecipient {
                    address: address.clone(),
                    kind: kind.to_string(),
                    status: *status,
                    reason: reason.clone(),
                })
                .collect(),
            at: now_ms,
            detail: None,
            idempotency: draft.idempotency.clone().map(|(k, h)| (k, h, response)),
        };
        // The spool first, then the record, then the scheduler is woken:
        // nothing is attempted before both are durable. A crash between the
        // two sends the message without its record (at least once, never
        // lost); a send refused by the record leaves the spool again.
        let track = self.tracked(&id, &draft).await?;
        let queued: Vec<Recipient> = rcpts
            .iter()
            .filter(|r| r.2 == EventKind::Queued)
            .map(|r| {
                let (unsubscribe, opens, clicks) = (draft.list_unsubscribe, track.opens, track.clicks);
                Recipient::routed(r.0.clone(), Route::Outbound { tenant, unsubscribe, opens, clicks })
            })
            .collect();
        let spooled = !queued.is_empty();
        if spooled {
            let received_at = now_ms / 1000;
            // Submitted mail is ours to send: stored with CRLF lines, so the
            // DKIM signature covers exactly what goes on the wire.
            let line_faults = vocabulary::LineFaults::of(&draft.content);
            let content = match vocabulary::lines::normalize(&draft.content) {
                std::borrow::Cow::Owned(fixed) => fixed,
                std::borrow::Cow::Borrowed(_) => draft.content,
            };
            let envelope = Envelope {
                mail_from: draft.from,
                rcpts: queued,
                smtputf8: draft.smtputf8,
                eight_bit: content.iter().any(|&b| b >= 0x80),
                helo: String::new(),
                peer: "api".into(),
                auth_user: None,
                received_at,
                line_faults,
                dsn_ret: None,
                dsn_envid: None,
            };
            self.spool
                .enqueue(id, envelope, draft.trace, content, received_at + self.max_age)
                .await
                .map_err(|e| {
                    if e.is_storage_full() {
                        tracing::warn!(message = %id, error = %e, "send refused: the disk is full");
                        SendError::StorageFull(format!("queue: {e}"))
                    } else {
                        tracing::error!(message = %id, error = %e, "spool write failed");
                        SendError::Unavailable(format!("queue: {e}"))
                    }
                })?;
        }
        if let Err(e) = self.record.events.accept(record).await {
            if spooled && let Err(r) = self.spool.remove(id).await {
                tracing::error!(message = %id, error = %r, "could not withdraw a send the record refused");
            }
            return Err(match e {
                RecordError::Conflict(m) => SendError::Conflict(m),
                e => unavailable(e),
            });
        }
        if spooled && let Some(w) = &self.waker {
            w.now(id);
        }
        Ok(sent)
    }
}

impl Outbox {
    /// What the send is tracked for. With clicks tracked, the record keeps
    /// where each of its links leads before the message exists anywhere,
    /// so no click can come before its destination is known.
    async fn tracked(&self, id: &QueueId, draft: &Draft) -> Result<crate::tracking::Track, SendError> {
        let Some(policy) = &self.tracking else { return Ok(crate::tracking::Track::default()) };
        let mut track = policy.decide(draft.stream.as_deref(), draft.track);
        if track.clicks {
            let links = crate::tracking::tracked_links(&draft.content);
            if links.is_empty() {
                track.clicks = false;
            } else {
                self.record.events.keep_links(&id.to_string(), &links).await.map_err(unavailable)?;
            }
        }
        Ok(track)
    }
}

/// After a crash between the spool write and the record write of a send,
/// the spool holds a message the record does not know: write its record
/// from the spool (recipients `queued`) before anything is attempted, so
/// every delivery has a recipient to attach to. Returns how many.
pub async fn reconcile(spool: &Spool, record: &dyn EventLog) -> Result<usize, RecordError> {
    let mut written = 0;
    for entry in spool.list() {
        let Some(tenant) = entry.envelope.rcpts.iter().find_map(|r| match r.route {
            Route::Outbound { tenant, .. } => Some(tenant),
            _ => None,
        }) else {
            continue;
        };
        let id = entry.id.to_string();
        if record.has_message(&id).await? {
            continue;
        }
        let content = spool.content(entry.content).unwrap_or_default();
        let headers = mail_parser::MessageParser::default().parse_headers(&content);
        let message = NewMessage {
            id,
            tenant,
            direction: Direction::Outbound,
            message_id: headers.as_ref().and_then(|h| h.message_id()).map(str::to_string),
            mail_from: entry.envelope.mail_from.clone(),
            subject: headers.as_ref().and_then(|h| h.subject()).map(str::to_string),
            stream: None,
            tags: Vec::new(),
            metadata: serde_json::json!({"recovered": true}),
            recipients: entry
                .envelope
                .rcpts
                .iter()
                .map(|r| NewRecipient {
                    address: r.address.clone(),
                    kind: "to".into(),
                    status: EventKind::Queued,
                    reason: None,
                })
                .collect(),
            at: entry.envelope.received_at * 1000,
            detail: None,
            idempotency: None,
        };
        record.accept(message).await?;
        written += 1;
    }
    Ok(written)
}

/// Checks a message from an application and adds what a submission server
/// adds when it is missing (RFC 6409 §8): a Message-ID and a Date. Nothing
/// else is changed. Returns the bytes, the Message-ID and the subject.
pub fn complete_headers(
    content: Vec<u8>,
    from: &str,
    hostname: &str,
) -> Result<(Vec<u8>, String, Option<String>), String> {
    if content.is_empty() {
        return Err("the message is empty".into());
    }
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(&content)
        .ok_or_else(|| "not an RFC 5322 message".to_string())?;
    if parsed.from().is_none() {
        return Err("the message has no From header".into());
    }
    let subject = parsed.subject().map(str::to_string);
    let mut prefix = String::new();
    let message_id = match parsed.message_id() {
        Some(id) => id.to_string(),
        None => {
            let domain = from.rsplit_once('@').map_or(hostname, |(_, d)| d).to_ascii_lowercase();
            let id = format!("{}@{domain}", QueueId::generate());
            prefix.push_str(&format!("Message-ID: <{id}>\r\n"));
            id
        }
    };
    if parsed.date().is_none() {
        prefix.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
    }
    let content = if prefix.is_empty() { content } else { [prefix.into_bytes(), content].concat() };
    Ok((content, message_id, subject))
}

fn unavailable(e: RecordError) -> SendError {
    tracing::error!(error = %e, "outbound record");
    if e.is_storage_full() {
        SendError::StorageFull(e.to_string())
    } else {
        SendError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spooled_send_without_a_record_is_recorded_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(&dir.path().join("spool"), false).unwrap();
        let store = record::Store::open(dir.path()).await.unwrap();
        let t = store.directory.tenant("acme").await.unwrap();
        let id = QueueId::generate();
        let envelope = Envelope {
            mail_from: "app@acme.test".into(),
            rcpts: vec![Recipient::routed(
                "a@x.test",
                Route::Outbound { tenant: t.id, unsubscribe: false, opens: false, clicks: false },
            )],
            smtputf8: false,
            eight_bit: false,
            helo: String::new(),
            peer: "api".into(),
            auth_user: None,
            received_at: 1_700_000_000,
            line_faults: Default::default(),
            dsn_ret: None,
            dsn_envid: None,
        };
        let content =
            b"From: app@acme.test\r\nSubject: lost\r\nMessage-ID: <m1@acme.test>\r\n\r\nhi\r\n".to_vec();
        spool.enqueue(id, envelope, String::new(), content, 1_800_000_000).await.unwrap();
        assert_eq!(reconcile(&spool, &*store.events).await.unwrap(), 1);
        let m = store.events.message(&t, &id.to_string(), None).await.unwrap().unwrap();
        assert_eq!((m.subject.as_deref(), m.message_id.as_deref()), (Some("lost"), Some("m1@acme.test")));
        assert_eq!(m.recipients[0].status, "queued");
        assert_eq!(reconcile(&spool, &*store.events).await.unwrap(), 0, "known messages are left alone");
    }

    #[test]
    fn addresses() {
        for ok in ["a@b.test", "first.last+tag@sub.example.com", "x@xn--bcher-kva.example"] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.test",
            "a b@c.test",
            "a@b",
            "a@-b.test",
            "a@b..test",
            "a\r\n@b.test",
            "<a@b.test>",
        ] {
            assert!(!valid_address(bad), "{bad:?}");
        }
    }
}
