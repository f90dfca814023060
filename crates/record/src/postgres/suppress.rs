//! The suppression lists on PostgreSQL.

use super::Postgres;
use crate::directory::Tenant;
use crate::events::{normalize, now_ms};
use crate::suppress::{COLUMNS, Row, Suppression, Suppressions};
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

impl Postgres {
    async fn in_force(
        &self,
        tenant: i64,
        addresses: &[String],
        at: i64,
    ) -> Result<Vec<Suppression>, RecordError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let addresses: Vec<String> = addresses.iter().map(|a| normalize(a)).collect();
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM suppressions WHERE tenant_id = $1 AND address = ANY($2)
             AND created_at <= $3 AND (expires_at IS NULL OR expires_at > $3)"
        )))
        .bind(tenant)
        .bind(&addresses)
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Suppression::from).collect())
    }

    async fn listed(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, RecordError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM suppressions WHERE tenant_id = $1 AND address > $2
             AND (expires_at IS NULL OR expires_at > $3) ORDER BY address LIMIT $4"
        )))
        .bind(tenant.id)
        .bind(cursor.unwrap_or(""))
        .bind(now_ms())
        .bind(limit.clamp(1, 100_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Suppression::from).collect())
    }

    async fn add(
        &self,
        tenant: &Tenant,
        address: &str,
        reason: &str,
        expires_at: Option<i64>,
    ) -> Result<Suppression, RecordError> {
        let entry = Suppression::manual(address, reason, expires_at);
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at)
             VALUES ($1, $2, $3, 'manual', NULL, $4, $5)
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
}

impl Suppressions for Postgres {
    fn suppressed<'a>(&'a self, tenant: i64, addresses: &'a [String], at: i64) -> Res<'a, Vec<Suppression>> {
        Box::pin(self.in_force(tenant, addresses, at))
    }

    fn suppression<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        at: i64,
    ) -> Res<'a, Option<Suppression>> {
        Box::pin(async move { Ok(self.in_force(tenant.id, &[address.to_string()], at).await?.pop()) })
    }

    fn suppressions<'a>(
        &'a self,
        tenant: &'a Tenant,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> Res<'a, Vec<Suppression>> {
        Box::pin(self.listed(tenant, cursor, limit))
    }

    fn suppress<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        reason: &'a str,
        expires_at: Option<i64>,
    ) -> Res<'a, Suppression> {
        Box::pin(self.add(tenant, address, reason, expires_at))
    }

    fn unsuppress<'a>(&'a self, tenant: &'a Tenant, address: &'a str) -> Res<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2")
                .bind(tenant.id)
                .bind(normalize(address))
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
