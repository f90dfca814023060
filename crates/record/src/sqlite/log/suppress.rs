//! The suppression list on SQLite.

use super::Log;
use crate::RecordError;
use crate::directory::Tenant;
use crate::events::{normalize, now_ms};
use crate::suppress::{COLUMNS, Row, Suppression};

impl Log {
    /// The entries in force at `at` among `addresses` (normalized).
    pub async fn suppressed(
        &self,
        tenant: i64,
        addresses: &[String],
        at: i64,
    ) -> Result<Vec<Suppression>, RecordError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; addresses.len()].join(",");
        let sql = format!(
            "SELECT {COLUMNS} FROM suppressions WHERE tenant_id = ? AND address IN ({marks})
             AND created_at <= ? AND (expires_at IS NULL OR expires_at > ?)"
        );
        let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for a in addresses {
            q = q.bind(normalize(a));
        }
        Ok(q.bind(at).bind(at).fetch_all(&self.pool).await?.into_iter().map(Suppression::from).collect())
    }

    pub async fn suppression(
        &self,
        tenant: &Tenant,
        address: &str,
        at: i64,
    ) -> Result<Option<Suppression>, RecordError> {
        Ok(self.suppressed(tenant.id, &[address.to_string()], at).await?.pop())
    }

    /// Entries in address order, after `cursor`.
    pub async fn suppressions(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, RecordError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM suppressions WHERE tenant_id = ? AND address > ?
             AND (expires_at IS NULL OR expires_at > ?) ORDER BY address LIMIT ?"
        )))
        .bind(tenant.id)
        .bind(cursor.unwrap_or(""))
        .bind(now_ms())
        .bind(limit.clamp(1, 100_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Suppression::from).collect())
    }

    /// Adds (or replaces) an entry by hand.
    pub async fn suppress(
        &self,
        tenant: &Tenant,
        address: &str,
        reason: &str,
        expires_at: Option<i64>,
    ) -> Result<Suppression, RecordError> {
        let entry = Suppression::manual(address, reason, expires_at);
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at)
             VALUES (?, ?, ?, 'manual', NULL, ?, ?)
             ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, source = 'manual',
                event_id = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(tenant.id)
        .bind(&entry.address)
        .bind(reason)
        .bind(entry.created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(entry)
    }

    /// Removes an entry; false when there was none.
    pub async fn unsuppress(&self, tenant: &Tenant, address: &str) -> Result<bool, RecordError> {
        let done = sqlx::query("DELETE FROM suppressions WHERE tenant_id = ? AND address = ?")
            .bind(tenant.id)
            .bind(normalize(address))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
