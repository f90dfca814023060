//! Reads of the record on PostgreSQL. Every query a tenant makes is scoped
//! by its tenant; time-bounded ones name `at`, the partition key.

use super::super::Postgres;
use crate::directory::Tenant;
use crate::events::{EventQuery, EventRow, MessageView, RecipientHistory, normalize};
use crate::{RecordError, sql};

impl Postgres {
    pub(in crate::postgres) async fn message_view(
        &self,
        tenant: &Tenant,
        id: &str,
        as_of: Option<i64>,
    ) -> Result<Option<MessageView>, RecordError> {
        sql::message_view(&self.pool, tenant, id, as_of).await
    }

    /// One address's history across messages, newest first.
    pub(in crate::postgres) async fn history(
        &self,
        tenant: &Tenant,
        address: &str,
        as_of: Option<i64>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<RecipientHistory, RecordError> {
        sql::recipient_history(&self.pool, self, tenant, address, (as_of, cursor, limit)).await
    }

    /// A page of events in the order they were recorded (a shared event
    /// whole, read as each recipient's), and the next page's cursor.
    pub(in crate::postgres) async fn event_page(
        &self,
        tenant: &Tenant,
        q: &EventQuery,
    ) -> Result<(Vec<EventRow>, Option<i64>), RecordError> {
        sql::events(&self.pool, tenant, q).await
    }

    pub(in crate::postgres) async fn idempotent_response(
        &self,
        tenant: i64,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, RecordError> {
        Ok(sqlx::query_as("SELECT request_hash, response FROM idempotency WHERE tenant_id = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(in crate::postgres) async fn has(&self, id: &str) -> Result<bool, RecordError> {
        Ok(sqlx::query_scalar::<_, i32>("SELECT 1 FROM out_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    pub(in crate::postgres) async fn find(&self, key: &str) -> Result<Option<(Tenant, String)>, RecordError> {
        let key = key.trim().trim_start_matches('<').trim_end_matches('>');
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT t.id, t.name, m.id FROM out_messages m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.id = $1 OR m.message_id = $1 LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name, m)| (Tenant { id, name }, m)))
    }

    pub(in crate::postgres) async fn recipient_at(
        &self,
        message: &str,
        idx: i64,
    ) -> Result<Option<(i64, String)>, RecordError> {
        Ok(sqlx::query_as("SELECT tenant_id, address FROM out_recipients WHERE message = $1 AND idx = $2")
            .bind(message)
            .bind(idx)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(in crate::postgres) async fn status_of(
        &self,
        message: &str,
        idx: i64,
    ) -> Result<Option<String>, RecordError> {
        Ok(sqlx::query_scalar("SELECT status FROM out_recipients WHERE message = $1 AND idx = $2")
            .bind(message)
            .bind(idx)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(in crate::postgres) async fn has_source(&self, source: &str) -> Result<bool, RecordError> {
        Ok(sqlx::query_scalar::<_, i32>("SELECT 1 FROM events WHERE source = $1 LIMIT 1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    pub(in crate::postgres) async fn sent_with(
        &self,
        message_id: &str,
        address: &str,
    ) -> Result<Option<(i64, String, i64)>, RecordError> {
        let message_id = message_id.trim().trim_start_matches('<').trim_end_matches('>');
        Ok(sqlx::query_as(
            "SELECT m.tenant_id, m.id, r.idx FROM out_messages m JOIN out_recipients r ON r.message = m.id
             WHERE m.message_id = $1 AND r.address = $2 AND m.direction = 'outbound' LIMIT 1",
        )
        .bind(message_id)
        .bind(normalize(address))
        .fetch_optional(&self.pool)
        .await?)
    }
}
