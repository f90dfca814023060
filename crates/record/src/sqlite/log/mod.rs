//! The record on SQLite: tenants and their API keys, submission users,
//! the messages sent and received, each recipient's current state, the
//! append-only event log, suppressions and idempotency keys.
//!
//! Writes (accepted messages, events) go through one writer task that
//! gathers concurrent calls into one transaction on a connection with
//! `synchronous = FULL`: an accepted message is on disk before the API
//! answers 202, at the cost of one fsync per batch, not per message. The
//! front line's events go to a writer of their own ([`writer::Front`]).

mod directory;
mod query;
mod suppress;
mod writer;

use sqlx::SqlitePool;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::directory::KeyCache;
use crate::events::{Describe, NewEvent, NewMessage};
use crate::{Busy, RecordError};

/// The record's handle (cheap to clone; clones share the writers).
#[derive(Clone)]
pub struct Log {
    pool: SqlitePool,
    writer: mpsc::Sender<Vec<writer::Op>>,
    /// The front line's events, which nobody waits for: written by a
    /// writer of their own in the idle scheduling class, started on the
    /// first of them.
    front: writer::Front,
    /// Recently seen keys.
    keys: Arc<KeyCache>,
    /// Moves when the directory changes ([`Log::changes`]).
    changes: Arc<std::sync::OnceLock<tokio::sync::watch::Sender<u64>>>,
}

impl Log {
    pub(crate) fn new(
        pool: SqlitePool,
        opts: sqlx::sqlite::SqliteConnectOptions,
        busy: Arc<dyn Busy>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer::run(pool.clone(), rx));
        let front = writer::Front::new(opts, busy);
        Log { pool, writer: tx, front, keys: Arc::default(), changes: Arc::default() }
    }

    /// The pool the shared SQL (`crate::sql`) runs on.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A stored response for an idempotency key: the request's hash and the
    /// response body given the first time.
    pub async fn idempotent(&self, tenant: i64, key: &str) -> Result<Option<(Vec<u8>, String)>, RecordError> {
        Ok(sqlx::query_as("SELECT request_hash, response FROM idempotency WHERE tenant_id = ? AND key = ?")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Records an accepted message, its recipients and their first events
    /// (and its idempotency key) durably. Fails with [`RecordError::Conflict`]
    /// when the idempotency key was taken meanwhile.
    pub async fn accept(&self, msg: NewMessage) -> Result<(), RecordError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(writer::Op::Accept(Box::new(msg), Some(reply))).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Appends an event (and applies its status and suppression). Returns the event id.
    pub async fn record(&self, event: NewEvent) -> Result<i64, RecordError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(writer::Op::Event(Box::new(event), Some(reply))).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Appends events in one transaction, all or none; each must name its
    /// tenant (an event without one could fail alone).
    pub async fn record_all(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
        if events.iter().any(|e| e.tenant.is_none()) {
            return Err(RecordError::Invalid("events recorded together must name their tenant".into()));
        }
        let (ops, answers): (Vec<_>, Vec<_>) = events
            .into_iter()
            .map(|e| {
                let (reply, answer) = tokio::sync::oneshot::channel();
                (writer::Op::Event(Box::new(e), Some(reply)), answer)
            })
            .unzip();
        self.writer.send(ops).await.map_err(|_| gone())?;
        let mut ids = Vec::with_capacity(answers.len());
        for answer in answers {
            ids.push(answer.await.map_err(|_| gone())??);
        }
        Ok(ids)
    }

    /// Records a message the front line received, without waiting: the
    /// spool already holds the message itself. `describe` runs on the
    /// record's writer, at its low priority (reading the headers is work
    /// the front line need not wait for).
    pub fn note_message(&self, at: i64, describe: Describe) {
        self.front.send(writer::Op::Describe(at, describe));
    }

    /// Appends a front-line event, without waiting.
    pub fn note(&self, event: NewEvent) {
        self.front.send(writer::Op::Event(Box::new(event), None));
    }

    /// Waits until every write queued before this call is committed (or
    /// failed), the front line's too: what a command does before it closes
    /// the store.
    pub async fn flush(&self) {
        let (tx, done) = tokio::sync::oneshot::channel();
        if self.writer.send(vec![writer::Op::Flush(tx)]).await.is_ok() {
            let _ = done.await;
        }
        let (tx, done) = tokio::sync::oneshot::channel();
        self.front.send(writer::Op::Flush(tx));
        let _ = done.await;
    }

    async fn send(&self, op: writer::Op) -> Result<(), RecordError> {
        self.writer.send(vec![op]).await.map_err(|_| gone())
    }
}

fn gone() -> RecordError {
    RecordError::Unavailable("the record writer stopped".into())
}

#[cfg(test)]
mod tests {
    use crate::directory::key_hash;
    use crate::sqlite::Sqlite;

    #[tokio::test]
    async fn only_a_keys_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open_for_test(dir.path()).await;
        let key = store.log.create_api_key("acme").await.unwrap();
        let stored: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_all(&store.pool).await.unwrap();
        assert_eq!(stored, vec![key_hash(&key)], "only the hash is stored");
        let prefixes: Vec<String> =
            sqlx::query_scalar("SELECT prefix FROM api_keys").fetch_all(&store.pool).await.unwrap();
        assert_eq!(prefixes, vec![key[..11].to_string()], "and the prefix it is listed by");
    }

    /// Another process holding the database's write lock past the busy
    /// timeout (5 s) fails a front-line batch; nobody waits for those
    /// events, so the writer writes the batch again once the lock is gone.
    #[tokio::test]
    async fn front_line_events_survive_a_lock_held_past_the_busy_timeout() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open_for_test(dir.path()).await;
        let tenant = store.log.tenant("acme").await.unwrap().id;
        let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        let event = crate::events::NewEvent {
            tenant: Some(tenant),
            message: "m1".into(),
            idx: None,
            address: None,
            kind: crate::events::EventKind::Received,
            at: crate::events::now_ms(),
            reason: None,
            smtp: None,
            detail: None,
            suppress: None,
            source: None,
            group: Vec::new(),
        };
        store.log.note(event);
        // Past the busy timeout, and the first retry's wait.
        tokio::time::sleep(std::time::Duration::from_millis(6_500)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        drop(other);
        store.log.flush().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE message = 'm1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "the event is recorded once the lock is gone");
    }
}
