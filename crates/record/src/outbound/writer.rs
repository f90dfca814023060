//! The outbound record's writer: one task, one connection with
//! `synchronous = FULL`, and every write that arrived while the previous
//! transaction committed goes into the next one (group commit).

use serde::{Deserialize, Serialize};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{EventType, normalize};
use crate::RecordError;

/// A message the API or submission accepted.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant: i64,
    /// The Message-ID header, without angle brackets.
    pub message_id: Option<String>,
    pub mail_from: String,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub recipients: Vec<NewRecipient>,
    pub at: i64,
    /// Idempotency key, hash of the request, and the response to replay.
    pub idempotency: Option<(String, Vec<u8>, String)>,
}

#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub address: String,
    /// `to`, `cc` or `bcc`.
    pub kind: String,
    /// `Queued`, `Suppressed` or `Invalid`.
    pub status: EventType,
    pub reason: Option<String>,
}

/// The SMTP response of one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpResponse {
    pub code: Option<u16>,
    pub status: Option<String>,
    pub text: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
}

/// Adds the recipient's address to the tenant's suppression list.
#[derive(Debug, Clone)]
pub struct Suppress {
    pub reason: String,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant: i64,
    pub message: String,
    pub idx: Option<i64>,
    pub address: Option<String>,
    pub kind: EventType,
    pub at: i64,
    pub reason: Option<String>,
    pub smtp: Option<SmtpResponse>,
    pub detail: Option<serde_json::Value>,
    pub suppress: Option<Suppress>,
}

pub(super) enum Op {
    Accept(Box<NewMessage>, oneshot::Sender<Result<(), RecordError>>),
    Event(Box<NewEvent>, oneshot::Sender<Result<i64, RecordError>>),
}

const BATCH: usize = 512;

pub(super) async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // A connection per batch, not kept: closing the store waits for
        // every connection to come back.
        let Some(mut conn) = connect(&pool).await else {
            fail_all(batch, "the database is not available");
            continue;
        };
        let mut results = Vec::with_capacity(batch.len());
        let written = write(&mut conn, &batch, &mut results).await;
        if let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await {
            tracing::warn!(error = %e, "outbound record: resetting synchronous");
            conn.close_on_drop();
        }
        match written {
            Ok(()) => {
                for (op, r) in batch.into_iter().zip(results) {
                    match (op, r) {
                        (Op::Accept(_, tx), r) => {
                            let _ = tx.send(r.map(|_| ()));
                        }
                        (Op::Event(_, tx), r) => {
                            let _ = tx.send(r);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "outbound record batch failed");
                fail_all(batch, &e.to_string());
            }
        }
    }
}

fn fail_all(batch: Vec<Op>, why: &str) {
    for op in batch {
        let e = || RecordError::Invalid(why.to_string());
        match op {
            Op::Accept(_, tx) => drop(tx.send(Err(e()))),
            Op::Event(_, tx) => drop(tx.send(Err(e()))),
        }
    }
}

/// A connection from the pool, set to fsync its commits (WAL + FULL).
async fn connect(pool: &SqlitePool) -> Option<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
    let mut c = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "outbound record: no database connection");
            return None;
        }
    };
    if let Err(e) = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *c).await {
        tracing::error!(error = %e, "outbound record: setting synchronous");
        return None;
    }
    Some(c)
}

/// Writes a batch in one transaction. A write that conflicts (idempotency
/// key) fails alone; a database error fails the whole batch.
async fn write(
    conn: &mut SqliteConnection,
    batch: &[Op],
    results: &mut Vec<Result<i64, RecordError>>,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for op in batch {
        let r = match op {
            Op::Accept(m, _) => accept(&mut tx, m).await?,
            Op::Event(e, _) => Ok(event(&mut tx, e).await?),
        };
        results.push(r);
    }
    tx.commit().await?;
    Ok(())
}

async fn accept(tx: &mut SqliteConnection, m: &NewMessage) -> Result<Result<i64, RecordError>, sqlx::Error> {
    if let Some((key, hash, response)) = &m.idempotency {
        let done = sqlx::query(
            "INSERT INTO idempotency (tenant_id, key, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(m.tenant)
        .bind(key)
        .bind(hash)
        .bind(response)
        .bind(m.at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Err(RecordError::Conflict(format!("the idempotency key {key:?} is already in use"))));
        }
    }
    let tags = serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO out_messages (id, tenant_id, message_id, mail_from, subject, stream, tags, metadata, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&m.id)
    .bind(m.tenant)
    .bind(&m.message_id)
    .bind(&m.mail_from)
    .bind(&m.subject)
    .bind(&m.stream)
    .bind(tags)
    .bind(m.metadata.to_string())
    .bind(m.at)
    .execute(&mut *tx)
    .await?;
    for tag in &m.tags {
        sqlx::query("INSERT OR IGNORE INTO out_tags (tenant_id, tag, message) VALUES (?, ?, ?)")
            .bind(m.tenant)
            .bind(tag)
            .bind(&m.id)
            .execute(&mut *tx)
            .await?;
    }
    for (idx, r) in m.recipients.iter().enumerate() {
        let address = normalize(&r.address);
        sqlx::query(
            "INSERT INTO out_recipients (message, idx, tenant_id, address, kind, status, reason, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(idx as i64)
        .bind(m.tenant)
        .bind(&address)
        .bind(&r.kind)
        .bind(r.status.as_str())
        .bind(&r.reason)
        .bind(m.at)
        .execute(&mut *tx)
        .await?;
        insert_event(
            tx,
            &NewEvent {
                tenant: m.tenant,
                message: m.id.clone(),
                idx: Some(idx as i64),
                address: Some(address),
                kind: r.status,
                at: m.at,
                reason: r.reason.clone(),
                smtp: None,
                detail: None,
                suppress: None,
            },
        )
        .await?;
    }
    Ok(Ok(0))
}

async fn insert_event(tx: &mut SqliteConnection, e: &NewEvent) -> Result<i64, sqlx::Error> {
    let smtp = e.smtp.clone().unwrap_or_default();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (tenant_id, message, idx, address, type, at, reason, smtp_code, smtp_status,
                             smtp_text, remote, tls, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(e.tenant)
    .bind(&e.message)
    .bind(e.idx)
    .bind(e.address.as_deref().map(normalize))
    .bind(e.kind.as_str())
    .bind(e.at)
    .bind(&e.reason)
    .bind(smtp.code.map(i64::from))
    .bind(&smtp.status)
    .bind(&smtp.text)
    .bind(&smtp.remote)
    .bind(&smtp.tls)
    .bind(e.detail.as_ref().map(|d| d.to_string()))
    .fetch_one(&mut *tx)
    .await?;
    Ok(id)
}

async fn event(tx: &mut SqliteConnection, e: &NewEvent) -> Result<i64, sqlx::Error> {
    let id = insert_event(tx, e).await?;
    if e.kind.sets_status()
        && let Some(idx) = e.idx
    {
        sqlx::query(
            "UPDATE out_recipients SET status = ?, reason = ?, updated_at = ? WHERE message = ? AND idx = ?",
        )
        .bind(e.kind.as_str())
        .bind(&e.reason)
        .bind(e.at)
        .bind(&e.message)
        .bind(idx)
        .execute(&mut *tx)
        .await?;
    }
    if let (Some(s), Some(address)) = (&e.suppress, &e.address) {
        // An existing entry stands unless it has expired.
        sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, address) DO UPDATE SET
                reason = excluded.reason, source = excluded.source, event_id = excluded.event_id,
                created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE suppressions.expires_at IS NOT NULL AND suppressions.expires_at <= excluded.created_at",
        )
        .bind(e.tenant)
        .bind(normalize(address))
        .bind(&s.reason)
        .bind(e.kind.as_str())
        .bind(id)
        .bind(e.at)
        .bind(s.expires_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(id)
}
