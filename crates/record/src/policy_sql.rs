//! The policy store ([`Policies`], `policy/` says what the rows mean) in
//! SQL that SQLite and PostgreSQL read alike, written once and run by both:
//! the table `policies` (migrations sqlite `0016_policies.sql`, postgres
//! `0010_policies.sql`), and the `filtered` events filter mode records,
//! read back for `policy simulate`. On SQLite the rows are kept in memory
//! between writes (`policy_cache.rs`).

use serde_json::Value as Json;
use sqlx::{Database, Decode, Pool, QueryBuilder, Type};

use crate::RecordError;
use crate::events::now_ms;
use crate::policy::{FILTERED, FilterRecord, Policies, PolicyRow};
use crate::policy_cache::{RowCache, Signal};
use crate::sql::Binds;

/// The policy store on one pool.
pub(crate) struct SqlPolicies<DB: Database> {
    pool: Pool<DB>,
    /// Rows kept between writes, when the database has a change signal
    /// (`policy_cache.rs`; SQLite's file).
    cache: Option<RowCache>,
}

/// A `filtered` event's columns: id, at, address, reason, detail.
type FilterRow = (i64, i64, String, Option<String>, Option<String>);

impl<DB: Database> SqlPolicies<DB> {
    /// Reading the rows for every message (PostgreSQL: a change on any
    /// node applies to the next message on every node).
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        SqlPolicies { pool, cache: None }
    }

    /// Keeping the rows while `signal` says they have not changed.
    pub(crate) fn cached(pool: Pool<DB>, signal: Signal) -> Self {
        SqlPolicies { pool, cache: Some(RowCache::new(signal)) }
    }

    /// After a write commits: readers on every process read again.
    fn changed(&self) -> Result<(), RecordError> {
        self.cache.as_ref().map_or(Ok(()), RowCache::changed)
    }
}

type Row = (String, String, String, i64);

fn row((scope, key, value, updated_at): Row) -> PolicyRow {
    let value = serde_json::from_str(&value).unwrap_or(Json::String(value));
    PolicyRow { scope, key, value, updated_at }
}

const COLUMNS: &str = "SELECT scope, key, value, updated_at FROM policies WHERE tenant_id = ";

impl<DB> SqlPolicies<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<String>: Binds<DB>,
    Row: for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    FilterRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    async fn rows_(&self, tenant: i64, scopes: &[&str]) -> Result<Vec<PolicyRow>, RecordError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        // The token is taken before the read: a write that commits after
        // it leaves a different one.
        let token = self.cache.as_ref().and_then(RowCache::token);
        if let (Some(cache), Some(t)) = (&self.cache, &token)
            && let Some(rows) = cache.get(t, tenant, scopes)
        {
            return Ok(rows);
        }
        let mut sql = QueryBuilder::<DB>::new(COLUMNS);
        sql.push_bind(tenant).push(" AND scope IN (");
        let mut list = sql.separated(", ");
        for s in scopes {
            list.push_bind(s.to_string());
        }
        sql.push(") ORDER BY scope, key");
        let rows: Vec<Row> = sql.build_query_as().fetch_all(&self.pool).await?;
        let rows: Vec<PolicyRow> = rows.into_iter().map(row).collect();
        if let (Some(cache), Some(t)) = (&self.cache, token) {
            cache.keep(t, tenant, scopes, &rows);
        }
        Ok(rows)
    }

    async fn list_(&self, tenant: i64, scope: Option<&str>) -> Result<Vec<PolicyRow>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(COLUMNS);
        sql.push_bind(tenant);
        if let Some(s) = scope {
            sql.push(" AND scope = ").push_bind(s.to_string());
        }
        sql.push(" ORDER BY scope, key");
        let rows: Vec<Row> = sql.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(row).collect())
    }

    async fn set_(
        &self,
        tenant: i64,
        scope: &str,
        values: &[(String, Option<Json>)],
    ) -> Result<(), RecordError> {
        let at = now_ms();
        let mut tx = self.pool.begin().await?;
        for (key, value) in values {
            let mut sql = QueryBuilder::<DB>::new("");
            match value {
                Some(v) => {
                    sql.push("INSERT INTO policies (tenant_id, scope, key, value, updated_at) VALUES (");
                    let mut vals = sql.separated(", ");
                    vals.push_bind(tenant).push_bind(scope.to_string()).push_bind(key.clone());
                    vals.push_bind(v.to_string()).push_bind(at);
                    sql.push(
                        ") ON CONFLICT (tenant_id, scope, key) DO UPDATE \
                         SET value = excluded.value, updated_at = excluded.updated_at",
                    );
                }
                None => {
                    sql.push("DELETE FROM policies WHERE tenant_id = ").push_bind(tenant);
                    sql.push(" AND scope = ").push_bind(scope.to_string());
                    sql.push(" AND key = ").push_bind(key.clone());
                }
            }
            sql.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.changed()
    }

    async fn unset_(&self, tenant: i64, scope: &str, key: Option<&str>) -> Result<u64, RecordError> {
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM policies WHERE tenant_id = ");
        sql.push_bind(tenant).push(" AND scope = ").push_bind(scope.to_string());
        if let Some(k) = key {
            sql.push(" AND key = ").push_bind(k.to_string());
        }
        sql.push(" RETURNING key");
        let gone: Vec<(String,)> = sql.build_query_as().fetch_all(&self.pool).await?;
        self.changed()?;
        Ok(gone.len() as u64)
    }

    async fn filter_records_(
        &self,
        tenant: i64,
        (from, to): (i64, i64),
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FilterRecord)>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT e.id, e.at, e.address, e.reason, e.detail FROM events e WHERE e.tenant_id = ",
        );
        sql.push_bind(tenant);
        sql.push(format!(" AND e.type = '{FILTERED}' AND e.address IS NOT NULL AND e.at >= "));
        sql.push_bind(from).push(" AND e.at < ").push_bind(to);
        sql.push(" AND e.id > ").push_bind(after).push(" ORDER BY e.id LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<FilterRow> = sql.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(id, at, address, reason, detail)| {
                (id, FilterRecord::from_event(at, address, reason.as_deref(), detail.as_deref()))
            })
            .collect())
    }
}

impl<DB> Policies for SqlPolicies<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<String>: Binds<DB>,
    Row: for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    FilterRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    fn policy_rows<'a>(
        &'a self,
        tenant: i64,
        scopes: &'a [&'a str],
    ) -> crate::BoxFuture<'a, Result<Vec<PolicyRow>, RecordError>> {
        Box::pin(self.rows_(tenant, scopes))
    }
    fn set_policy<'a>(
        &'a self,
        tenant: i64,
        scope: &'a str,
        values: &'a [(String, Option<Json>)],
    ) -> crate::BoxFuture<'a, Result<(), RecordError>> {
        Box::pin(self.set_(tenant, scope, values))
    }
    fn unset_policy<'a>(
        &'a self,
        tenant: i64,
        scope: &'a str,
        key: Option<&'a str>,
    ) -> crate::BoxFuture<'a, Result<u64, RecordError>> {
        Box::pin(self.unset_(tenant, scope, key))
    }
    fn list_policy<'a>(
        &'a self,
        tenant: i64,
        scope: Option<&'a str>,
    ) -> crate::BoxFuture<'a, Result<Vec<PolicyRow>, RecordError>> {
        Box::pin(self.list_(tenant, scope))
    }
    fn filter_records(
        &self,
        tenant: i64,
        from: i64,
        to: i64,
        after: i64,
        limit: u32,
    ) -> crate::BoxFuture<'_, Result<Vec<(i64, FilterRecord)>, RecordError>> {
        Box::pin(self.filter_records_(tenant, (from, to), after, limit))
    }
}
