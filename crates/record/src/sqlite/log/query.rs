//! Reads of the record on SQLite. Every query a tenant makes is scoped
//! by its tenant.

use super::Log;
use crate::RecordError;
use crate::directory::Tenant;
use crate::events::{
    Direction, EventKind, EventQuery, EventRow, MessageHead, MessageView, RecipientHistory, RecipientRow,
    normalize, now_ms,
};

type EventTuple = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A stored event, or None (logged) if its type is no name of the schema:
/// only the writer writes events, from `EventKind`, so that is a damaged row.
fn event_row(t: EventTuple) -> Option<EventRow> {
    let (id, message, idx, address, kind, at, reason, smtp_code, smtp_status, smtp_text, remote, tls, detail) =
        t;
    let Some(kind) = EventKind::parse(&kind) else {
        tracing::warn!(event = id, %message, kind, "a stored event of no known type: skipped");
        return None;
    };
    Some(EventRow {
        id,
        message,
        idx,
        address,
        kind,
        at,
        reason,
        smtp_code,
        smtp_status,
        smtp_text,
        remote,
        tls,
        detail,
    })
}

const EVENT_COLUMNS: &str =
    "id, message, idx, address, type, at, reason, smtp_code, smtp_status, smtp_text, remote, tls, detail";

/// idx, address, kind, status, reason, updated_at.
type RecipientRowT = (i64, String, String, String, Option<String>, i64);

type MessageRowT =
    (String, String, Option<String>, String, Option<String>, Option<String>, String, String, i64);

impl Log {
    /// A message with each recipient's status and timeline, as known at
    /// `as_of` (now when `None`).
    pub async fn message(
        &self,
        tenant: &Tenant,
        id: &str,
        as_of: Option<i64>,
    ) -> Result<Option<MessageView>, RecordError> {
        let row: Option<MessageRowT> = sqlx::query_as(
            "SELECT id, direction, message_id, mail_from, subject, stream, tags, metadata, created_at
             FROM out_messages WHERE id = ? AND tenant_id = ?",
        )
        .bind(id)
        .bind(tenant.id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, direction, message_id, from, subject, stream, tags, metadata, created_at)) = row else {
            return Ok(None);
        };
        if as_of.is_some_and(|t| t < created_at) {
            return Ok(None);
        }
        let direction = Direction::parse(&direction).unwrap_or(Direction::Outbound);
        // The stored statuses first, then the events: an event is never
        // older than the status it set (no read transaction spans both).
        let stored = match direction {
            Direction::Inbound => None,
            _ => Some(self.recipient_rows(&id).await?),
        };
        let events: Vec<EventTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE message = ? AND at <= ? ORDER BY id"
        )))
        .bind(&id)
        .bind(as_of.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let events = events.into_iter().filter_map(event_row).collect();
        let head =
            MessageHead { id, direction, message_id, from, subject, stream, tags, metadata, created_at };
        Ok(Some(MessageView::assemble(head, stored, events, as_of)))
    }

    async fn recipient_rows(&self, message: &str) -> Result<Vec<RecipientRow>, RecordError> {
        let rows: Vec<RecipientRowT> = sqlx::query_as(
            "SELECT idx, address, kind, status, reason, updated_at FROM out_recipients
             WHERE message = ? ORDER BY idx",
        )
        .bind(message)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(idx, address, kind, status, reason, updated_at)| RecipientRow {
                idx,
                address,
                kind,
                status,
                reason,
                updated_at,
            })
            .collect())
    }

    /// One address's history across messages, newest first.
    pub async fn recipient(
        &self,
        tenant: &Tenant,
        address: &str,
        as_of: Option<i64>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<RecipientHistory, RecordError> {
        let address = normalize(address);
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE tenant_id = ? AND address = ? AND id < ? AND at <= ?
             ORDER BY id DESC LIMIT ?"
        );
        let events = sqlx::query_as::<_, EventTuple>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.id)
            .bind(&address)
            .bind(cursor.unwrap_or(i64::MAX))
            .bind(as_of.unwrap_or(i64::MAX))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool);
        // The two lookups run on two connections at once.
        let suppression = self.suppression(tenant, &address, as_of.unwrap_or_else(now_ms));
        let (events, suppression) = tokio::join!(events, suppression);
        let (events, suppression) = (events?, suppression?);
        let mut events: Vec<EventRow> = events.into_iter().filter_map(event_row).collect();
        let next_cursor = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(RecipientHistory { address, suppression, events, next_cursor })
    }

    /// A page of events in the order they were recorded, and the cursor of
    /// the next page when there is one.
    pub async fn events(
        &self,
        tenant: &Tenant,
        q: &EventQuery,
    ) -> Result<(Vec<EventRow>, Option<i64>), RecordError> {
        let limit = q.limit.clamp(1, 1000) as i64;
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND id > ?");
        if q.kind.is_some() {
            sql.push_str(" AND type = ?");
        }
        if q.since.is_some() {
            sql.push_str(" AND at >= ?");
        }
        if q.until.is_some() {
            sql.push_str(" AND at < ?");
        }
        if q.recipient.is_some() {
            sql.push_str(" AND address = ?");
        }
        if q.message.is_some() {
            sql.push_str(" AND message = ?");
        }
        if q.tag.is_some() {
            sql.push_str(" AND message IN (SELECT message FROM out_tags WHERE tenant_id = ? AND tag = ?)");
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut query = sqlx::query_as::<_, EventTuple>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.id)
            .bind(q.cursor.unwrap_or(0));
        if let Some(k) = q.kind {
            query = query.bind(k.as_str());
        }
        if let Some(s) = q.since {
            query = query.bind(s);
        }
        if let Some(u) = q.until {
            query = query.bind(u);
        }
        if let Some(r) = &q.recipient {
            query = query.bind(normalize(r));
        }
        if let Some(m) = &q.message {
            query = query.bind(m.clone());
        }
        if let Some(t) = &q.tag {
            query = query.bind(tenant.id).bind(t.clone());
        }
        let mut rows: Vec<EventRow> =
            query.bind(limit + 1).fetch_all(&self.pool).await?.into_iter().filter_map(event_row).collect();
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|e| e.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Whether a message is in the record.
    pub async fn has_message(&self, id: &str) -> Result<bool, RecordError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM out_messages WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// A message by our id or by its Message-ID header, in any tenant (for
    /// the operator's `sluice track`).
    pub async fn find_message(&self, key: &str) -> Result<Option<(Tenant, String)>, RecordError> {
        let key = key.trim().trim_start_matches('<').trim_end_matches('>');
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT t.id, t.name, m.id FROM out_messages m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.id = ? OR m.message_id = ? LIMIT 1",
        )
        .bind(key)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name, m)| (Tenant { id, name }, m)))
    }

    /// The tenant and address of one recipient of a message (for an event
    /// that names the message and the recipient's index, as a VERP token does).
    pub async fn recipient_of(&self, message: &str, idx: i64) -> Result<Option<(i64, String)>, RecordError> {
        Ok(sqlx::query_as("SELECT tenant_id, address FROM out_recipients WHERE message = ? AND idx = ?")
            .bind(message)
            .bind(idx)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A recipient's status in the record (`queued`, `delivered`, ...).
    pub async fn recipient_status(&self, message: &str, idx: i64) -> Result<Option<String>, RecordError> {
        Ok(sqlx::query_scalar("SELECT status FROM out_recipients WHERE message = ? AND idx = ?")
            .bind(message)
            .bind(idx)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Whether an event from `source` is recorded (work repeated after a
    /// crash is not recorded twice).
    pub async fn recorded(&self, source: &str) -> Result<bool, RecordError> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT 1 FROM events WHERE source = ? LIMIT 1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The message that carried this Message-ID, and the index of `address`
    /// among its recipients (for bounces that come back without a token).
    pub async fn by_message_id(
        &self,
        message_id: &str,
        address: &str,
    ) -> Result<Option<(i64, String, i64)>, RecordError> {
        let message_id = message_id.trim().trim_start_matches('<').trim_end_matches('>');
        Ok(sqlx::query_as(
            "SELECT m.tenant_id, m.id, r.idx FROM out_messages m JOIN out_recipients r ON r.message = m.id
             WHERE m.message_id = ? AND r.address = ? AND m.direction = 'outbound' LIMIT 1",
        )
        .bind(message_id)
        .bind(normalize(address))
        .fetch_optional(&self.pool)
        .await?)
    }
}
