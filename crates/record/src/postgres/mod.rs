//! The record on PostgreSQL: the state that many nodes share (tenants,
//! keys, users, suppressions, and in time the event log and the quarantine
//! store), so that any node answers for any other. Each node keeps its own
//! spool; nothing here is a node's alone.
//!
//! Built so far: the [`Directory`](crate::Directory) (tenants, API keys,
//! submission users, accounts' tenants), the
//! [`Suppressions`](crate::Suppressions) and the
//! [`EventLog`](crate::EventLog) (its events partitioned by month). The
//! quarantine store is still SQLite's only, so a `Store` cannot be opened
//! on PostgreSQL yet.

mod directory;
mod impls;
mod log;
mod suppress;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::RecordError;
use crate::directory::KeyCache;

/// Schema steps, applied in order, each once (tracked in `schema_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_directory.sql"),
    include_str!("../../migrations/postgres/0002_events.sql"),
];

/// The advisory lock nodes take to migrate one at a time (any constant: "sluice").
const MIGRATION_LOCK: i64 = 0x511CE;

/// A connection pool on one PostgreSQL database, its schema up to date.
#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    keys: Arc<KeyCache>,
    /// The front line's events, to the task that writes them.
    notes: tokio::sync::mpsc::UnboundedSender<log::Note>,
}

impl Postgres {
    /// Connects to `url` (`postgres://USER:PASS@HOST:PORT/DB`) with up to
    /// `connections` connections, and brings its schema up to date.
    pub async fn connect(url: &str, connections: u32) -> Result<Self, RecordError> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        migrate(&pool).await?;
        Postgres::partitions_ahead(&pool).await?;
        let (notes, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(log::run_notes(pool.clone(), rx));
        Ok(Postgres { pool, keys: Arc::default(), notes })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Brings the schema up to date in one transaction, holding an advisory
/// lock: nodes started together migrate one after the other, and a step
/// that fails leaves nothing half done.
async fn migrate(pool: &PgPool) -> Result<(), RecordError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.unwrap_or(0) as usize) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind((i + 1) as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
