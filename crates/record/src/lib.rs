//! The record: sluice's state. Submission users and tenants with their
//! API keys, the event log of every message in both directions, the
//! suppression lists, and the quarantine store's accounts, folders and
//! copies.
//!
//! Callers use the record through traits, one per part
//! ([`EventLog`], [`Directory`], [`Suppressions`], [`QuarantineStore`]),
//! gathered in a [`Store`]. The record stores and reads; when background
//! work runs and what it gives way to is the routing stage's to say
//! ([`Busy`]). A backend implements those traits and nothing
//! else: [`sqlite`] (WAL, in the data directory) is the default;
//! [`postgres`] (shared by many nodes) has the directory and the
//! suppression lists so far.

pub mod directory;
pub mod events;
pub mod idle;
pub mod journal;
pub mod metrics;
pub mod operators;
mod password;
pub mod policy;
mod policy_cache;
mod policy_sql;
pub mod postgres;
pub mod quarantine;
pub mod spam_tokens;
mod sql;
pub mod sqlite;
pub mod stats;
mod stats_sql;
pub mod suppress;
mod url;
pub mod webhooks;
mod webhooks_sql;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use directory::Directory;
pub use events::EventLog;
pub use policy::Policies;
pub use quarantine::QuarantineStore;
pub use suppress::Suppressions;
pub use url::DatabaseUrl;
pub use webhooks::WebhooksOut;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// Whether background writes (the front line's own record) should wait
/// a moment: the composition answers (the routing stage, while the front
/// line is accepting mail); the record only asks.
pub trait Busy: Send + Sync + 'static {
    fn busy(&self) -> bool;
}

/// Never busy: what a command that serves no mail runs with.
pub struct NeverBusy;

impl Busy for NeverBusy {
    fn busy(&self) -> bool {
        false
    }
}

/// A backend as a whole.
pub trait Database: Send + Sync + 'static {
    /// Closes its connections once the writes under way are done.
    fn close(&self) -> BoxFuture<'_, ()>;
    /// The last schema step applied.
    fn schema_version(&self) -> BoxFuture<'_, Result<i64, RecordError>>;
    /// What a long-running server does now and then to keep the database
    /// in shape (PostgreSQL: the event partitions of the coming months).
    fn upkeep(&self) -> BoxFuture<'_, Result<(), RecordError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The record's parts (cheap to clone: each is shared).
#[derive(Clone)]
pub struct Store {
    pub events: Arc<dyn EventLog>,
    pub directory: Arc<dyn Directory>,
    pub suppressions: Arc<dyn Suppressions>,
    pub quarantine: Arc<dyn QuarantineStore>,
    /// Webhooks out: endpoints, their deliveries and attempts.
    pub webhooks: Arc<dyn WebhooksOut>,
    /// Per-recipient policy: each tenant's rows, read per message.
    pub policies: Arc<dyn Policies>,
    /// Each user's own spam-filter counts (IMAP moves into and out of Spam).
    pub spam_tokens: Arc<dyn spam_tokens::SpamTokens>,
    /// Dashboard operators, their tenants and their sessions.
    pub operators: Arc<dyn operators::Operators>,
    database: Arc<dyn Database>,
}

impl Store {
    /// Opens the SQLite database in `data_dir` (creating it if needed) and
    /// brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Self, RecordError> {
        Store::open_with(data_dir, Arc::new(NeverBusy)).await
    }

    /// As [`Store::open`], for a server: background writes wait while
    /// `busy` says so.
    pub async fn open_with(data_dir: &Path, busy: Arc<dyn Busy>) -> Result<Self, RecordError> {
        Ok(sqlite::Sqlite::open(data_dir, busy).await?.into_store())
    }

    /// Opens the record `url` names (SQLite's in `data_dir` by default),
    /// with up to `connections` connections to a server, its schema
    /// brought up to date.
    pub async fn connect(
        url: &DatabaseUrl,
        data_dir: &Path,
        busy: Arc<dyn Busy>,
        connections: u32,
    ) -> Result<Self, RecordError> {
        match url {
            DatabaseUrl::Sqlite(None) => Store::open_with(data_dir, busy).await,
            DatabaseUrl::Sqlite(Some(file)) => {
                Ok(sqlite::Sqlite::open_file(file, data_dir, busy).await?.into_store())
            }
            DatabaseUrl::Postgres(url) => {
                Ok(postgres::Postgres::connect(url, connections).await?.into_store())
            }
        }
    }

    /// The last schema step applied.
    pub async fn schema_version(&self) -> Result<i64, RecordError> {
        self.database.schema_version().await
    }

    /// Connectivity, the schema's version, and a round trip (the default
    /// tenant read, created if new).
    pub async fn check(&self) -> Result<i64, RecordError> {
        let version = self.database.schema_version().await?;
        self.directory.tenant("default").await?;
        Ok(version)
    }

    /// The database's own upkeep ([`Database::upkeep`]).
    pub async fn upkeep(&self) -> Result<(), RecordError> {
        self.database.upkeep().await
    }

    pub async fn close(&self) {
        self.database.close().await;
    }
}
