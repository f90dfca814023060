//! The record: sluice's database. It keeps submission users and the
//! quarantine store's accounts, folders and message metadata; the event log
//! and suppressions too (`outbound`). SQLite (WAL) in the data
//! directory by default.

mod backend;
pub mod outbound;
mod password;
pub mod quarantine;
mod users;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use backend::{BoxFuture, QuarantineStore};
pub use outbound::Outbound;
pub use quarantine::Quarantine;
pub use users::Users;
pub use writer::{Accepting, COPY_LAG_MAX, CROWD_HOLD, Filing, FrontLine};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The caller's input is wrong (an unknown account, a short key): a
    /// client error.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store cannot answer now (its writer stopped, a batch failed, a
    /// stored file unreadable): a server error, worth a retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("password hashing: {0}")]
    Hash(String),
}

/// Says at WARN, at most every 10 s, that the database's disk is full
/// (a full disk fails every write; one line per write would bury the log).
pub fn warn_disk_full(what: &str, error: &dyn std::fmt::Display) {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp();
    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    if now - last >= 10
        && LAST
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::warn!(%error, "the disk is full: {what} wait and are retried until space is freed");
    }
}

impl RecordError {
    /// The database could not grow: the disk (or the quota) is full
    /// (SQLITE_FULL, or an IO error saying so).
    pub fn is_storage_full(&self) -> bool {
        match self {
            // The store's writer hands errors on as text.
            RecordError::Unavailable(m) => m.contains("database or disk is full"),
            RecordError::Db(sqlx::Error::Database(d)) => {
                d.code().is_some_and(|c| c == "13" || c.parse::<i32>().is_ok_and(|n| n & 0xff == 13))
                    || d.message().contains("database or disk is full")
            }
            RecordError::Db(sqlx::Error::Io(e)) => {
                e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
            }
            _ => false,
        }
    }
}

/// Schema steps, applied in order; each runs once (tracked in `schema_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_users.sql"),
    include_str!("../migrations/0002_quarantine.sql"),
    include_str!("../migrations/0003_modseq.sql"),
    include_str!("../migrations/0004_outbound.sql"),
    include_str!("../migrations/0005_blobs.sql"),
    include_str!("../migrations/0006_drop_received_index.sql"),
    include_str!("../migrations/0007_idempotency.sql"),
    include_str!("../migrations/0008_inbound.sql"),
];

/// A handle to the database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// One quarantine handle, so every user shares its caches.
    quarantine: Quarantine,
    /// Started on first use (its writer task needs a runtime).
    outbound: std::sync::Arc<std::sync::OnceLock<Outbound>>,
}

impl Store {
    /// Opens (creating if needed) `DIR/sluice.db` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Self, RecordError> {
        let path = data_dir.join("sluice.db");
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
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
            .pragma("journal_size_limit", "8388608");
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts.clone()).await?;
        let changes = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let quarantine = Quarantine::new(pool.clone(), opts, data_dir, changes);
        let store = Store { pool, quarantine, outbound: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), RecordError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&self.pool)
            .await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&self.pool).await?;
        let current = current.unwrap_or(0) as usize;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind((i + 1) as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    pub fn users(&self) -> Users {
        Users::new(self.pool.clone())
    }

    pub fn quarantine(&self) -> Quarantine {
        self.quarantine.clone()
    }

    pub fn outbound(&self) -> Outbound {
        self.outbound
            .get_or_init(|| {
                let q = &self.quarantine;
                Outbound::new(self.pool.clone(), q.writer_opts.clone(), q.front_line())
            })
            .clone()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
