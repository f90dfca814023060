//! Reads of the record on SQLite. Every query a tenant makes is scoped
//! by its tenant.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::Log;
use crate::RecordError;
use crate::directory::Tenant;
use crate::events::{
    Direction, EventKind, EventQuery, EventRow, MessageHead, MessageView, RecipientHistory, RecipientRow,
    normalize, now_ms,
};

/// A stored event, or None (logged) if its type is no name of the schema:
/// only the writer writes events, from `EventKind`, so that is a damaged row.
fn event_row(row: SqliteRow) -> Result<Option<EventRow>, sqlx::Error> {
    let (id, message, kind): (i64, String, String) =
        (row.try_get("id")?, row.try_get("message")?, row.try_get("type")?);
    let Some(kind) = EventKind::parse(&kind) else {
        tracing::warn!(event = id, %message, kind, "a stored event of no known type: skipped");
        return Ok(None);
    };
    let group: Option<String> = row.try_get("rcpts")?;
    Ok(Some(EventRow {
        id,
        message,
        idx: row.try_get("idx")?,
        address: row.try_get("address")?,
        kind,
        at: row.try_get("at")?,
        reason: row.try_get("reason")?,
        smtp_code: row.try_get("smtp_code")?,
        smtp_status: row.try_get("smtp_status")?,
        smtp_text: row.try_get("smtp_text")?,
        remote: row.try_get("remote")?,
        tls: row.try_get("tls")?,
        detail: row.try_get("detail")?,
        group: group.and_then(|g| serde_json::from_str(&g).ok()).unwrap_or_default(),
    }))
}

/// Events read, less any damaged row (logged).
fn event_rows(rows: Vec<SqliteRow>) -> Result<Vec<EventRow>, sqlx::Error> {
    Ok(rows.into_iter().map(event_row).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}

/// An event's columns (`events e`).
const EVENT_COLUMNS: &str = "e.id AS id, e.message, e.idx, e.address, e.type, e.at, e.reason, e.smtp_code, \
     e.smtp_status, e.smtp_text, e.remote, e.tls, e.detail, e.rcpts";

/// A shared event's columns as one member's (`event_rcpts r JOIN events e`).
const MEMBER_COLUMNS: &str = "e.id AS id, e.message, r.idx, r.address, e.type, e.at, e.reason, e.smtp_code, \
     e.smtp_status, e.smtp_text, e.remote, e.tls, e.detail, NULL AS rcpts";

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
        let events = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE message = ? AND at <= ? ORDER BY id"
        )))
        .bind(&id)
        .bind(as_of.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let events = event_rows(events)?;
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

    /// One address's history across messages, newest first: the events
    /// that name it, and those it shares with other recipients.
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
            "SELECT * FROM (
               SELECT {EVENT_COLUMNS} FROM events e
               WHERE e.tenant_id = ?1 AND e.address = ?2 AND e.id < ?3 AND e.at <= ?4
               UNION ALL
               SELECT {MEMBER_COLUMNS} FROM event_rcpts r JOIN events e ON e.id = r.event_id
               WHERE r.tenant_id = ?1 AND r.address = ?2 AND r.event_id < ?3 AND e.at <= ?4)
             ORDER BY id DESC LIMIT ?5"
        );
        let events = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        let mut events = event_rows(events)?;
        let next_cursor = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(RecipientHistory { address, suppression, events, next_cursor })
    }

    /// A page of events in the order they were recorded, and the cursor of
    /// the next page when there is one. An event several recipients share
    /// is read as each one's (with its id): a page holds all of them, so it
    /// may run a few past `limit`.
    pub async fn events(
        &self,
        tenant: &Tenant,
        q: &EventQuery,
    ) -> Result<(Vec<EventRow>, Option<i64>), RecordError> {
        let limit = q.limit.clamp(1, 1000) as i64;
        let mut sql = QueryBuilder::<Sqlite>::new("");
        match &q.recipient {
            None => {
                sql.push(format!("SELECT {EVENT_COLUMNS} FROM events e WHERE "));
                event_filters(&mut sql, tenant, q);
            }
            Some(address) => {
                let address = normalize(address);
                sql.push(format!("SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events e WHERE e.address = "));
                sql.push_bind(address.clone()).push(" AND ");
                event_filters(&mut sql, tenant, q);
                sql.push(format!(
                    " UNION ALL SELECT {MEMBER_COLUMNS} FROM event_rcpts r JOIN events e ON e.id = r.event_id
                      WHERE r.tenant_id = "
                ));
                sql.push_bind(tenant.id).push(" AND r.address = ").push_bind(address).push(" AND ");
                event_filters(&mut sql, tenant, q);
                sql.push(")");
            }
        }
        sql.push(" ORDER BY id LIMIT ").push_bind(limit + 1);
        let mut rows = event_rows(sql.build().fetch_all(&self.pool).await?)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|e| e.id)
        } else {
            None
        };
        Ok((rows.into_iter().flat_map(EventRow::expand).collect(), next))
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

/// The conditions of `GET /v1/events` on `events e`: its tenant's, after
/// the cursor, and each filter given.
fn event_filters(sql: &mut QueryBuilder<Sqlite>, tenant: &Tenant, q: &EventQuery) {
    sql.push("e.tenant_id = ").push_bind(tenant.id).push(" AND e.id > ").push_bind(q.cursor.unwrap_or(0));
    if let Some(k) = q.kind {
        sql.push(" AND e.type = ").push_bind(k.as_str());
    }
    if let Some(s) = q.since {
        sql.push(" AND e.at >= ").push_bind(s);
    }
    if let Some(u) = q.until {
        sql.push(" AND e.at < ").push_bind(u);
    }
    if let Some(m) = &q.message {
        sql.push(" AND e.message = ").push_bind(m.clone());
    }
    if let Some(t) = &q.tag {
        sql.push(" AND e.message IN (SELECT message FROM out_tags WHERE tenant_id = ").push_bind(tenant.id);
        sql.push(" AND tag = ").push_bind(t.clone()).push(")");
    }
}
