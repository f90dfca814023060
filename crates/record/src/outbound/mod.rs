//! The outbound record: tenants and their API keys, the messages they send,
//! each recipient's current state, the append-only event log, suppressions
//! and idempotency keys.
//!
//! Writes (accepted messages, events) go through one writer task that
//! gathers concurrent calls into one transaction on a connection with
//! `synchronous = FULL`: an accepted message is on disk before the API
//! answers 202, at the cost of one fsync per batch, not per message.

mod query;
mod suppress;
mod writer;

use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::RecordError;

pub use query::{EventQuery, EventRow, MessageView, RecipientHistory, RecipientView};
pub use suppress::Suppression;
pub use writer::{NewEvent, NewMessage, NewRecipient, SmtpResponse, Suppress};

pub use vocabulary::{Direction, EventKind};

/// A tenant, as an API key or a submission user resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
}

/// The outbound record (a cheap handle; clones share the writer).
#[derive(Clone)]
pub struct Outbound {
    pool: SqlitePool,
    writer: mpsc::Sender<writer::Op>,
    /// The front line's events, which nobody waits for: written by a
    /// writer of their own in the idle scheduling class (`writer::front`).
    front: writer::Front,
    /// Recently seen keys (by hash): a request need not read the database
    /// to know its tenant. Entries live `KEY_TTL`, so a key removed from
    /// the database stops working within that time.
    keys: Arc<Mutex<KeyCache>>,
}

/// Key hash -> tenant, and when it was read.
type KeyCache = HashMap<Vec<u8>, (Tenant, Instant)>;

const KEY_TTL: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Addresses are compared and stored lower-case (what every provider's
/// suppression list does; local parts that differ only by case are the same
/// mailbox in practice).
pub fn normalize(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// How much of an API key is kept in clear (`sk_` and 8 characters), to
/// list and revoke it by.
const KEY_PREFIX_LEN: usize = 11;

impl Outbound {
    pub(crate) fn new(
        pool: SqlitePool,
        opts: sqlx::sqlite::SqliteConnectOptions,
        front_line: crate::FrontLine,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer::run(pool.clone(), rx));
        Outbound { pool, writer: tx, front: writer::Front::start(opts, front_line), keys: Arc::default() }
    }

    /// The tenant called `name`, created if new.
    pub async fn tenant(&self, name: &str) -> Result<Tenant, RecordError> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(RecordError::Invalid(format!(
                "tenant names are 1-64 characters of letters, digits, '-', '_' or '.': {name:?}"
            )));
        }
        sqlx::query("INSERT INTO tenants (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(Tenant { id, name: name.to_string() })
    }

    /// A new API key for `tenant` (created if new). Only its SHA-256 is
    /// kept: the key itself is shown once, to the caller.
    pub async fn create_api_key(&self, tenant: &str) -> Result<String, RecordError> {
        let tenant = self.tenant(tenant).await?;
        let random = [uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string()];
        let key = format!("sk_{}{}", random[0], random[1]);
        sqlx::query("INSERT INTO api_keys (tenant_id, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(tenant.id)
            .bind(&key[..KEY_PREFIX_LEN])
            .bind(key_hash(&key))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(key)
    }

    /// A tenant's keys: (prefix, created_at, revoked_at), oldest first.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<(String, i64, Option<i64>)>, RecordError> {
        Ok(sqlx::query_as(
            "SELECT k.prefix, k.created_at, k.revoked_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE t.name = ? ORDER BY k.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a tenant's keys that start with `prefix` (as `api_keys`
    /// shows them: at least 8 characters), or the one key given whole. A
    /// running server stops accepting them within `KEY_TTL`.
    pub async fn revoke_api_key(&self, tenant: &str, prefix: &str) -> Result<u64, RecordError> {
        if prefix.len() < 8 || !prefix.is_ascii() {
            return Err(RecordError::Invalid("give at least 8 characters of the key".into()));
        }
        // Only the first KEY_PREFIX_LEN characters are kept in clear: a
        // shorter prefix matches their start, a longer one is the whole key
        // (matched by its hash, so a mistyped tail revokes nothing).
        let q = if prefix.len() <= KEY_PREFIX_LEN {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND substr(prefix, 1, ?) = ?
                 AND tenant_id = (SELECT id FROM tenants WHERE name = ?)",
            )
            .bind(now_ms())
            .bind(prefix.len() as i64)
            .bind(prefix)
        } else {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND key_hash = ?
                 AND tenant_id = (SELECT id FROM tenants WHERE name = ?)",
            )
            .bind(now_ms())
            .bind(key_hash(prefix))
        };
        let done = q.bind(tenant).execute(&self.pool).await?;
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(done.rows_affected())
    }

    /// The tenant of a (not revoked) API key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, RecordError> {
        let hash = key_hash(key);
        {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, at)) = keys.get(&hash)
                && at.elapsed() < KEY_TTL
            {
                return Ok(Some(t.clone()));
            }
        }
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let tenant = row.map(|(id, name)| Tenant { id, name });
        if let Some(t) = &tenant {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if keys.len() > 10_000 {
                keys.clear();
            }
            keys.insert(hash, (t.clone(), Instant::now()));
        }
        Ok(tenant)
    }

    /// Makes a submission user send on behalf of `tenant`.
    pub async fn set_user_tenant(&self, user: &str, tenant: &str) -> Result<(), RecordError> {
        let tenant = self.tenant(tenant).await?;
        let done = sqlx::query("UPDATE users SET tenant_id = ? WHERE name = ?")
            .bind(tenant.id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(RecordError::Invalid(format!("no such user: {user}")));
        }
        Ok(())
    }

    /// The tenant a submission user sends for, if any.
    pub async fn user_tenant(&self, user: &str) -> Result<Option<Tenant>, RecordError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.name FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.name = ?",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name)| Tenant { id, name }))
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

    /// Records a message the front line received, without waiting: the
    /// spool already holds the message itself. `describe` runs on the
    /// record's writer, at its low priority (reading the headers is work
    /// the front line need not wait for).
    pub fn note_message(&self, at: i64, describe: impl FnOnce() -> NewMessage + Send + Sync + 'static) {
        self.front.send(writer::Op::Describe(at, Box::new(describe)));
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
        if self.writer.send(writer::Op::Flush(tx)).await.is_ok() {
            let _ = done.await;
        }
        let (tx, done) = tokio::sync::oneshot::channel();
        self.front.send(writer::Op::Flush(tx));
        let _ = done.await;
    }

    async fn send(&self, op: writer::Op) -> Result<(), RecordError> {
        self.writer.send(op).await.map_err(|_| gone())
    }
}

fn gone() -> RecordError {
    RecordError::Unavailable("the record writer stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn msg(id: &str, tenant: i64, rcpts: &[&str]) -> NewMessage {
        NewMessage {
            id: id.into(),
            tenant,
            direction: Direction::Outbound,
            message_id: Some(format!("{id}@app.test")),
            mail_from: "app@app.test".into(),
            subject: Some("s".into()),
            stream: None,
            tags: vec!["t".into()],
            metadata: serde_json::json!({}),
            recipients: rcpts
                .iter()
                .map(|a| NewRecipient {
                    address: a.to_string(),
                    kind: "to".into(),
                    status: EventKind::Queued,
                    reason: None,
                })
                .collect(),
            at: 1_000,
            detail: None,
            idempotency: None,
        }
    }

    fn event(tenant: i64, message: &str, idx: i64, kind: EventKind, at: i64) -> NewEvent {
        NewEvent {
            tenant: Some(tenant),
            message: message.into(),
            idx: Some(idx),
            address: Some("a@x.test".into()),
            kind,
            at,
            reason: Some("userunknown".into()),
            smtp: None,
            detail: None,
            suppress: (kind == EventKind::Bounced)
                .then(|| Suppress { reason: "userunknown".into(), expires_at: Some(5_000) }),
            source: None,
        }
    }

    #[tokio::test]
    async fn status_timeline_point_in_time_and_suppression_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let o = store.outbound();
        let a = o.tenant("a").await.unwrap();
        let b = o.tenant("b").await.unwrap();
        o.accept(msg("m1", a.id, &["A@x.test"])).await.unwrap();
        o.record(event(a.id, "m1", 0, EventKind::Delivered, 2_000)).await.unwrap();
        o.record(event(a.id, "m1", 0, EventKind::Autoreplied, 2_500)).await.unwrap();
        o.record(event(a.id, "m1", 0, EventKind::Bounced, 3_000)).await.unwrap();

        let now = o.message(&a, "m1", None).await.unwrap().unwrap();
        assert_eq!(now.recipients[0].address, "a@x.test");
        assert_eq!(now.recipients[0].status, "bounced");
        assert_eq!(now.recipients[0].events.len(), 4);
        let then = o.message(&a, "m1", Some(2_600)).await.unwrap().unwrap();
        assert_eq!(then.recipients[0].status, "delivered", "autoreplied does not change the status");
        assert!(o.message(&a, "m1", Some(500)).await.unwrap().is_none(), "not yet sent at 500");
        assert!(o.message(&b, "m1", None).await.unwrap().is_none(), "another tenant's message");

        let addrs = vec!["a@x.test".to_string()];
        assert_eq!(o.suppressed(a.id, &addrs, 4_000).await.unwrap().len(), 1);
        assert!(o.suppressed(a.id, &addrs, 6_000).await.unwrap().is_empty(), "expired");
        assert!(o.suppressed(b.id, &addrs, 4_000).await.unwrap().is_empty());
        // A bounce after expiry suppresses again.
        let mut again = event(a.id, "m1", 0, EventKind::Bounced, 7_000);
        again.suppress = Some(Suppress { reason: "userunknown".into(), expires_at: None });
        o.record(again).await.unwrap();
        assert_eq!(o.suppressed(a.id, &addrs, 7_500).await.unwrap().len(), 1);

        let h = o.recipient(&a, "A@X.test", None, None, 2).await.unwrap();
        assert_eq!(h.events.len(), 2);
        let older = o.recipient(&a, "a@x.test", None, h.next_cursor, 10).await.unwrap();
        assert_eq!(older.events.len(), 3);
        assert!(older.events.iter().all(|e| e.id < h.events[1].id));
        let (page, next) = o
            .events(&a, &EventQuery { kind: Some(EventKind::Bounced), limit: 1, ..Default::default() })
            .await
            .unwrap();
        assert_eq!((page.len(), next.is_some()), (1, true));
        assert!(o.events(&b, &EventQuery { limit: 10, ..Default::default() }).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn keys_are_hashed_and_idempotency_keys_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let o = store.outbound();
        let key = o.create_api_key("acme").await.unwrap();
        assert_eq!(o.authenticate(&key).await.unwrap().map(|t| t.name), Some("acme".into()));
        assert_eq!(o.authenticate("sk_wrong").await.unwrap(), None);
        let stored: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_all(&store.pool).await.unwrap();
        assert_eq!(stored, vec![key_hash(&key)], "only the hash is stored");

        let t = o.tenant("acme").await.unwrap();
        let mut m = msg("m1", t.id, &["a@x.test"]);
        m.idempotency = Some(("k1".into(), vec![1], "{}".into()));
        o.accept(m.clone()).await.unwrap();
        m.id = "m2".into();
        assert!(matches!(o.accept(m).await, Err(RecordError::Conflict(_))));
        assert!(o.message(&t, "m2", None).await.unwrap().is_none(), "a conflicting send writes nothing");
        assert_eq!(o.idempotent(t.id, "k1").await.unwrap(), Some((vec![1], "{}".into())));
        assert!(o.tenant("bad name!").await.is_err());
    }

    #[tokio::test]
    async fn keys_are_revoked_by_any_prefix_of_eight_or_more_or_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let o = store.outbound();
        let active = |o: &Outbound| {
            let o = o.clone();
            async move { o.api_keys("acme").await.unwrap().iter().filter(|k| k.2.is_none()).count() }
        };
        let (a, b, c) = (
            o.create_api_key("acme").await.unwrap(),
            o.create_api_key("acme").await.unwrap(),
            o.create_api_key("acme").await.unwrap(),
        );
        // Too short, not ASCII (cut inside a character), another tenant's.
        assert!(o.revoke_api_key("acme", "sk_1234").await.is_err());
        assert!(o.revoke_api_key("acme", "sk_12345é").await.is_err());
        assert!(o.revoke_api_key("acme", "sk_1234567é").await.is_err());
        assert_eq!(o.revoke_api_key("other", &a[..11]).await.unwrap(), 0);
        // Eight to eleven characters: the start of the shown prefix.
        assert_eq!(o.revoke_api_key("acme", &a[..8]).await.unwrap(), 1);
        assert_eq!(o.revoke_api_key("acme", &b[..10]).await.unwrap(), 1);
        assert!(o.authenticate(&a).await.unwrap().is_none() && o.authenticate(&b).await.unwrap().is_none());
        // Longer: the whole key, and only that key.
        let mut wrong_tail = c.clone();
        wrong_tail.pop();
        assert_eq!(o.revoke_api_key("acme", &wrong_tail).await.unwrap(), 0);
        assert_eq!(active(&o).await, 1);
        assert_eq!(o.revoke_api_key("acme", &c).await.unwrap(), 1);
        assert_eq!(active(&o).await, 0);
    }
}
