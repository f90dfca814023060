//! The SQLite backend: one database file (WAL) in the data directory,
//! the default and what a single node runs on. Its parts implement the
//! storage traits (`impls`): [`Log`] the event log, the directory and the
//! suppression list; [`Quarantine`] the quarantine store.

mod impls;
mod log;
mod quarantine;
mod quarantine_writer;
mod search;
#[cfg(test)]
mod stats_plans;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use log::Log;
pub use quarantine::Quarantine;

use crate::{BoxFuture, Busy, Database, RecordError, Store};

/// Schema steps, applied in order; each runs once (tracked in `schema_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_users.sql"),
    include_str!("../../migrations/sqlite/0002_quarantine.sql"),
    include_str!("../../migrations/sqlite/0003_modseq.sql"),
    include_str!("../../migrations/sqlite/0004_outbound.sql"),
    include_str!("../../migrations/sqlite/0005_blobs.sql"),
    include_str!("../../migrations/sqlite/0006_drop_received_index.sql"),
    include_str!("../../migrations/sqlite/0007_idempotency.sql"),
    include_str!("../../migrations/sqlite/0008_inbound.sql"),
    include_str!("../../migrations/sqlite/0009_event_groups.sql"),
    include_str!("../../migrations/sqlite/0010_secrets.sql"),
    include_str!("../../migrations/sqlite/0011_dkim_and_changes.sql"),
    include_str!("../../migrations/sqlite/0012_provider_webhooks.sql"),
    include_str!("../../migrations/sqlite/0013_tracking.sql"),
    include_str!("../../migrations/sqlite/0014_webhooks_out.sql"),
    include_str!("../../migrations/sqlite/0015_stats.sql"),
    include_str!("../../migrations/sqlite/0016_policies.sql"),
    include_str!("../../migrations/sqlite/0017_spam_tokens.sql"),
    include_str!("../../migrations/sqlite/0018_spam_global.sql"),
    include_str!("../../migrations/sqlite/0019_operators.sql"),
    include_str!("../../migrations/sqlite/0020_search.sql"),
    include_str!("../../migrations/sqlite/0021_event_hours.sql"),
];

/// An open SQLite database and its parts.
pub struct Sqlite {
    pub(crate) pool: SqlitePool,
    pub log: Log,
    pub quarantine: Quarantine,
    /// The database file (its policy change signal lives beside it).
    file: std::path::PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) `DIR/sluice.db` and brings its schema up
    /// to date. The front line's events wait while `busy` says so.
    pub async fn open(data_dir: &Path, busy: Arc<dyn Busy>) -> Result<Self, RecordError> {
        Sqlite::open_file(&data_dir.join("sluice.db"), data_dir, busy).await
    }

    /// As [`Sqlite::open`], the database in `file`.
    pub async fn open_file(file: &Path, data_dir: &Path, busy: Arc<dyn Busy>) -> Result<Self, RecordError> {
        let opts = connect_options(file)?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts.clone()).await?;
        migrate(&pool).await?;
        let changes = Arc::new(tokio::sync::watch::Sender::new(0));
        let quarantine = Quarantine::new(pool.clone(), opts.clone(), data_dir, changes);
        let log = Log::new(pool.clone(), opts, busy);
        Ok(Sqlite { pool, log, quarantine, file: file.to_path_buf() })
    }

    /// The storage traits' handles on this database.
    pub fn into_store(self) -> Store {
        let log = Arc::new(self.log);
        Store {
            events: log.clone(),
            directory: log.clone(),
            suppressions: log,
            quarantine: Arc::new(self.quarantine),
            webhooks: Arc::new(crate::webhooks_sql::SqlWebhooks::new(
                self.pool.clone(),
                crate::webhooks_sql::Dialect::SQLITE,
            )),
            policies: Arc::new(crate::policy_sql::SqlPolicies::cached(
                self.pool.clone(),
                crate::policy_cache::Signal::beside(&self.file),
            )),
            spam_tokens: Arc::new(crate::spam_tokens::SqlSpamTokens::new(self.pool.clone())),
            operators: Arc::new(crate::operators::SqlOperators::new(self.pool.clone())),
            database: Arc::new(self.pool),
        }
    }
}

#[cfg(test)]
impl Sqlite {
    pub(crate) async fn open_for_test(data_dir: &Path) -> Sqlite {
        Sqlite::open(data_dir, Arc::new(crate::NeverBusy)).await.expect("a database")
    }
}

impl Database for SqlitePool {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(SqlitePool::close(self))
    }
    fn schema_version(&self) -> BoxFuture<'_, Result<i64, RecordError>> {
        Box::pin(async move {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(self).await?;
            Ok(v.unwrap_or(0))
        })
    }
}

fn connect_options(path: &Path) -> Result<SqliteConnectOptions, RecordError> {
    Ok(SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // Reads straight from the mapped file instead of a read() and a
        // copy per page (a recipient's history touches many pages), and
        // a larger page cache per connection.
        .pragma("mmap_size", "1073741824")
        .pragma("cache_size", "-32768")
        // Statement journals (a multi-row INSERT inside a transaction
        // keeps one, to undo just that statement) and temporary sort
        // trees in memory, not in temporary files: a stored copy's
        // batch wrote its pages a second time to a file for nothing.
        .pragma("temp_store", "memory")
        // Deleted content is overwritten with zeros, so the bytes of a
        // swept or expunged message do not linger in free pages.
        .pragma("secure_delete", "on")
        // A WAL that grew in a burst (checkpoints held off by readers)
        // is cut back after the next checkpoint, not kept at its peak:
        // on a full disk that space is what the spool needs back.
        .pragma("journal_size_limit", "8388608"))
}

/// True when `select` (one password hash by name) finds `name` and
/// `password` matches its hash. An unknown name costs the same time as a
/// known one, so timing does not reveal which names exist.
async fn verify_password(
    pool: &SqlitePool,
    select: &'static str,
    name: &str,
    password: &str,
) -> Result<bool, RecordError> {
    let stored: Option<String> = sqlx::query_scalar(select).bind(name).fetch_optional(pool).await?;
    crate::password::verify(stored, password).await
}

async fn migrate(pool: &SqlitePool) -> Result<(), RecordError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").execute(pool).await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(pool).await?;
    let current = current.unwrap_or(0) as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
            .bind((i + 1) as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Runs `work` on a thread of its own in the idle scheduling class, with a
/// runtime of its own and one connection of its own (whose SQLite thread,
/// started from there, inherits the class): the writers that must take
/// only what the front line leaves.
pub(crate) fn spawn_idle<F, Fut>(name: &str, opts: SqliteConnectOptions, work: F) -> std::io::Result<()>
where
    F: FnOnce(SqlitePool) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let label = name.to_string();
    crate::idle::spawn(name, move || async move {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await;
        match pool {
            Ok(pool) => work(pool).await,
            Err(e) => tracing::error!(error = %e, thread = %label, "cannot open the database"),
        }
    })
}
