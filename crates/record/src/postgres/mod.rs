//! The record on PostgreSQL: the state that many nodes share, so that any
//! node answers for any other. Each node keeps its own spool; nothing here
//! is a node's alone.
//!
//! It has the [`Directory`](crate::Directory) (tenants, API keys,
//! submission users, accounts' tenants, shared secrets), the
//! [`Suppressions`](crate::Suppressions), the
//! [`EventLog`](crate::EventLog) (its events partitioned by month) and the
//! [`QuarantineStore`](crate::QuarantineStore), bytes and all: a whole
//! [`Store`]. Store changes and directory changes (accounts, API keys, DKIM
//! keys: by triggers, whoever writes) are announced with `NOTIFY`, so IMAP
//! IDLE on one node hears of copies filed on another, a revoked key is
//! refused everywhere at once, and a new account or key is used at once.

mod directory;
mod impls;
mod log;
mod quarantine;
mod suppress;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::directory::KeyCache;
use crate::{BoxFuture, Database, RecordError, Store};

/// Schema steps, applied in order, each once (tracked in `schema_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_directory.sql"),
    include_str!("../../migrations/postgres/0002_events.sql"),
    include_str!("../../migrations/postgres/0003_quarantine.sql"),
    include_str!("../../migrations/postgres/0004_secrets.sql"),
    include_str!("../../migrations/postgres/0005_dkim_and_changes.sql"),
    include_str!("../../migrations/postgres/0006_provider_webhooks.sql"),
    include_str!("../../migrations/postgres/0007_tracking.sql"),
    include_str!("../../migrations/postgres/0008_webhooks_out.sql"),
    include_str!("../../migrations/postgres/0009_stats.sql"),
    include_str!("../../migrations/postgres/0010_policies.sql"),
    include_str!("../../migrations/postgres/0011_spam_tokens.sql"),
    include_str!("../../migrations/postgres/0012_spam_global.sql"),
    include_str!("../../migrations/postgres/0013_operators.sql"),
    include_str!("../../migrations/postgres/0014_search.sql"),
];

/// The advisory lock nodes take to migrate one at a time (any constant: "sluice").
const MIGRATION_LOCK: i64 = 0x511CE;

/// The channel the directory's triggers announce every change on (the
/// payload names the table): store accounts, their domains, API keys, DKIM
/// keys.
const DIRECTORY_CHANGED: &str = "sluice_directory";

/// A connection pool on one PostgreSQL database, its schema up to date.
#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    keys: Arc<KeyCache>,
    /// The API's sends and events, to the task that commits them together.
    writes: tokio::sync::mpsc::Sender<Vec<log::Write>>,
    /// The front line's events, to the task that writes them.
    notes: tokio::sync::mpsc::UnboundedSender<log::Note>,
    /// (account, folder) to folder id.
    folder_ids: Arc<std::sync::RwLock<std::collections::HashMap<(String, String), i64>>>,
    /// Moves whenever a copy is filed or removed, on any node.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Moves whenever the directory changes, on any node.
    directory: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Postgres {
    /// Connects to `url` (`postgres://USER:PASS@HOST:PORT/DB`) with up to
    /// `connections` connections, and brings its schema up to date.
    pub async fn connect(url: &str, connections: u32) -> Result<Self, RecordError> {
        // Notices ("already exists, skipping") are not worth a log line.
        let options = PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        Postgres::partitions_ahead(&pool).await?;
        let (notes, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(log::run_notes(pool.clone(), rx));
        let (writes, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(log::run_writes(pool.clone(), rx));
        let me = Postgres {
            pool,
            keys: Arc::default(),
            writes,
            notes,
            folder_ids: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            directory: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        tokio::spawn(listen(me.clone()));
        Ok(me)
    }

    /// Writes what the front line noted, then closes the connections.
    pub async fn close(&self) {
        self.flush_notes().await;
        self.pool.close().await;
    }

    /// The storage traits' handles on this database.
    pub fn into_store(self) -> Store {
        let me = Arc::new(self);
        Store {
            events: me.clone(),
            directory: me.clone(),
            suppressions: me.clone(),
            quarantine: me.clone(),
            webhooks: Arc::new(crate::webhooks_sql::SqlWebhooks::new(
                me.pool.clone(),
                crate::webhooks_sql::Dialect::POSTGRES,
            )),
            policies: Arc::new(crate::policy_sql::SqlPolicies::new(me.pool.clone())),
            spam_tokens: Arc::new(crate::spam_tokens::SqlSpamTokens::new(me.pool.clone())),
            operators: Arc::new(crate::operators::SqlOperators::new(me.pool.clone())),
            database: me,
        }
    }
}

impl Database for Postgres {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Postgres::close(self))
    }
    fn schema_version(&self) -> BoxFuture<'_, Result<i64, RecordError>> {
        Box::pin(async move {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&self.pool).await?;
            Ok(v.unwrap_or(0))
        })
    }
    fn upkeep(&self) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(Postgres::partitions_ahead(&self.pool))
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

/// Hears every node's announcements (`LISTEN`) and acts on them: a store
/// change moves the watch IMAP IDLE waits on; a directory change moves the
/// directory's watch, and a change to API keys empties the key cache.
/// Reconnects when the connection drops, and then acts as if everything
/// had been announced (something may have been missed meanwhile).
async fn listen(pg: Postgres) {
    let bump = |w: &tokio::sync::watch::Sender<u64>| w.send_modify(|n| *n = n.wrapping_add(1));
    let missed = || {
        pg.keys.clear();
        bump(&pg.changes);
        bump(&pg.directory);
    };
    while !pg.pool.is_closed() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pg.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen_all([quarantine::CHANGES, DIRECTORY_CHANGED]).await {
            tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        missed();
        while let Ok(Some(n)) = listener.try_recv().await {
            if n.channel() != DIRECTORY_CHANGED {
                bump(&pg.changes);
                continue;
            }
            if n.payload() == "api_keys" {
                pg.keys.clear();
            }
            bump(&pg.directory);
        }
    }
}
