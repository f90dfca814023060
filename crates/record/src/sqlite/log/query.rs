//! Reads of the record on SQLite. Every query a tenant makes is scoped
//! by its tenant.

use super::Log;
use crate::directory::Tenant;
use crate::events::{EventQuery, EventRow, MessageView, RecipientHistory, normalize};
use crate::{RecordError, sql};

impl Log {
    /// A message with each recipient's status and timeline, as known at
    /// `as_of` (now when `None`).
    pub async fn message(
        &self,
        tenant: &Tenant,
        id: &str,
        as_of: Option<i64>,
    ) -> Result<Option<MessageView>, RecordError> {
        sql::message_view(&self.pool, tenant, id, as_of).await
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
        sql::recipient_history(&self.pool, self, tenant, address, (as_of, cursor, limit)).await
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
        crate::sqlite::search::events(&self.pool, tenant, q).await
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

    /// Forgets the events of the months before `month` (and their shared
    /// recipients' rows), in small transactions.
    pub async fn forget_months_before(&self, month: i64) -> Result<u64, RecordError> {
        let month = crate::events::month_start(month);
        let mut gone = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT 5000) RETURNING id",
            )
            .bind(month)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                return Ok(gone);
            }
            let (low, high) =
                (ids.iter().min().copied().unwrap_or(0), ids.iter().max().copied().unwrap_or(0));
            sqlx::query(
                "DELETE FROM event_rcpts WHERE event_id BETWEEN ? AND ?
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = event_rcpts.event_id)",
            )
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            gone += ids.len() as u64;
        }
    }
}
