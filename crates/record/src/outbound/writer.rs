//! The outbound record's writer: one task, one connection with
//! `synchronous = FULL`, and every write that arrived while the previous
//! transaction committed goes into the next one (group commit).

use serde::{Deserialize, Serialize};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{EventKind, normalize};
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
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub address: String,
    /// `to`, `cc` or `bcc`.
    pub kind: String,
    /// `Queued`, `Suppressed` or `Invalid`.
    pub status: EventKind,
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
    pub kind: EventKind,
    pub at: i64,
    pub reason: Option<String>,
    pub smtp: Option<SmtpResponse>,
    pub detail: Option<serde_json::Value>,
    pub suppress: Option<Suppress>,
    /// What produced it, when it could be produced twice (work repeated
    /// after a crash): `Outbound::recorded` finds it.
    pub source: Option<String>,
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
        if written.is_err() {
            // SQLite may leave a failed transaction open (a full disk): a
            // connection reused in that state would only nest savepoints
            // in it, never commit.
            conn.close_on_drop();
        }
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
        let e = || RecordError::Unavailable(why.to_string());
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

/// Key, request hash, response.
type Idempotency = (String, Vec<u8>, String);

/// Rows per multi-row statement, under SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 2_000;

/// Writes a batch in one transaction, each table with multi-row statements:
/// every statement is a round trip to the connection's thread, so the
/// number of statements, not of rows, is what costs. A write that
/// conflicts (idempotency key) fails alone; a database error fails the
/// whole batch.
async fn write(
    conn: &mut SqliteConnection,
    batch: &[Op],
    results: &mut Vec<Result<i64, RecordError>>,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    results.extend(batch.iter().map(|_| Ok(0)));

    // Idempotency keys first: a send whose key was taken writes nothing.
    let keyed: Vec<(usize, &NewMessage, &Idempotency)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Accept(m, _) => m.idempotency.as_ref().map(|k| (i, &**m, k)),
            Op::Event(..) => None,
        })
        .collect();
    let mut taken = std::collections::HashSet::new();
    for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency (tenant_id, key, request_hash, response, created_at) ",
        );
        q.push_values(chunk, |mut b, (_, m, (key, hash, response))| {
            b.push_bind(m.tenant).push_bind(key).push_bind(hash).push_bind(response).push_bind(m.at);
        });
        q.push(" ON CONFLICT DO NOTHING RETURNING tenant_id, key");
        let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        let inserted: std::collections::HashSet<(i64, String)> = inserted.into_iter().collect();
        for (i, m, (key, ..)) in chunk {
            if !inserted.contains(&(m.tenant, key.clone())) || !taken.insert((m.tenant, key.clone())) {
                results[*i] =
                    Err(RecordError::Conflict(format!("the idempotency key {key:?} is already in use")));
            }
        }
    }
    let accepts: Vec<&NewMessage> = batch
        .iter()
        .zip(results.iter())
        .filter_map(|(op, r)| match op {
            Op::Accept(m, _) if r.is_ok() => Some(&**m),
            _ => None,
        })
        .collect();

    for chunk in accepts.chunks(ROWS_PER_STATEMENT / 10) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO out_messages (id, tenant_id, message_id, mail_from, subject, stream, tags, metadata, created_at) ",
        );
        q.push_values(chunk, |mut b, m| {
            b.push_bind(&m.id)
                .push_bind(m.tenant)
                .push_bind(&m.message_id)
                .push_bind(&m.mail_from)
                .push_bind(&m.subject)
                .push_bind(&m.stream)
                .push_bind(serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into()))
                .push_bind(m.metadata.to_string())
                .push_bind(m.at);
        });
        q.build().execute(&mut *tx).await?;
    }
    let tags: Vec<(i64, &str, &str)> = accepts
        .iter()
        .flat_map(|m| m.tags.iter().map(move |t| (m.tenant, t.as_str(), m.id.as_str())))
        .collect();
    for chunk in tags.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO out_tags (tenant_id, tag, message) ");
        q.push_values(chunk, |mut b, (tenant, tag, message)| {
            b.push_bind(*tenant).push_bind(*tag).push_bind(*message);
        });
        q.build().execute(&mut *tx).await?;
    }
    let rcpts: Vec<(&NewMessage, usize, &NewRecipient)> =
        accepts.iter().flat_map(|m| m.recipients.iter().enumerate().map(move |(i, r)| (*m, i, r))).collect();
    for chunk in rcpts.chunks(ROWS_PER_STATEMENT / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO out_recipients (message, idx, tenant_id, address, kind, status, reason, updated_at) ",
        );
        q.push_values(chunk, |mut b, (m, i, r)| {
            b.push_bind(&m.id)
                .push_bind(*i as i64)
                .push_bind(m.tenant)
                .push_bind(normalize(&r.address))
                .push_bind(&r.kind)
                .push_bind(r.status.as_str())
                .push_bind(&r.reason)
                .push_bind(m.at);
        });
        q.build().execute(&mut *tx).await?;
    }

    // Events: each accepted recipient's first one, then the events asked
    // for, in order. Row ids are handed out in insertion order (max + 1),
    // so the sorted ids of one statement are its rows in order.
    let first_events = rcpts.iter().map(|(m, i, r)| NewEvent {
        tenant: m.tenant,
        message: m.id.clone(),
        idx: Some(*i as i64),
        address: Some(r.address.clone()),
        kind: r.status,
        at: m.at,
        reason: r.reason.clone(),
        smtp: None,
        detail: None,
        suppress: None,
        source: None,
    });
    let asked: Vec<(usize, &NewEvent)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Event(e, _) => Some((i, &**e)),
            Op::Accept(..) => None,
        })
        .collect();
    let all: Vec<NewEvent> = first_events.chain(asked.iter().map(|(_, e)| (*e).clone())).collect();
    let mut ids = Vec::with_capacity(all.len());
    for chunk in all.chunks(ROWS_PER_STATEMENT / 15) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (tenant_id, message, idx, address, type, at, reason, smtp_code, smtp_status,
                                 smtp_text, remote, tls, detail, source) ",
        );
        q.push_values(chunk, |mut b, e| {
            let smtp = e.smtp.clone().unwrap_or_default();
            b.push_bind(e.tenant)
                .push_bind(e.message.clone())
                .push_bind(e.idx)
                .push_bind(e.address.as_deref().map(normalize))
                .push_bind(e.kind.as_str())
                .push_bind(e.at)
                .push_bind(e.reason.clone())
                .push_bind(smtp.code.map(i64::from))
                .push_bind(smtp.status)
                .push_bind(smtp.text)
                .push_bind(smtp.remote)
                .push_bind(smtp.tls)
                .push_bind(e.detail.as_ref().map(|d| d.to_string()))
                .push_bind(e.source.clone());
        });
        q.push(" RETURNING id");
        let mut got: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        got.sort_unstable();
        ids.extend(got);
    }
    let asked_ids = &ids[ids.len().saturating_sub(asked.len())..];
    for ((i, _), id) in asked.iter().zip(asked_ids) {
        results[*i] = Ok(*id);
    }

    // Each recipient's status: the last status-setting event of the batch.
    let mut latest: std::collections::HashMap<(&str, i64), &NewEvent> = std::collections::HashMap::new();
    for (_, e) in &asked {
        if let (true, Some(idx)) = (e.kind.sets_status(), e.idx) {
            latest.insert((e.message.as_str(), idx), e);
        }
    }
    let latest: Vec<&NewEvent> = latest.into_values().collect();
    for chunk in latest.chunks(ROWS_PER_STATEMENT / 5) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE out_recipients SET status = v.column3, reason = v.column4, updated_at = v.column5
             FROM (",
        );
        q.push_values(chunk, |mut b, e| {
            b.push_bind(e.message.clone())
                .push_bind(e.idx)
                .push_bind(e.kind.as_str())
                .push_bind(e.reason.clone())
                .push_bind(e.at);
        });
        q.push(") AS v WHERE out_recipients.message = v.column1 AND out_recipients.idx = v.column2");
        q.build().execute(&mut *tx).await?;
    }

    // Suppressions; an existing entry stands unless it has expired.
    let suppress: Vec<(&NewEvent, &Suppress, &String, i64)> = asked
        .iter()
        .zip(asked_ids)
        .filter_map(|((_, e), id)| Some((*e, e.suppress.as_ref()?, e.address.as_ref()?, *id)))
        .collect();
    for chunk in suppress.chunks(ROWS_PER_STATEMENT / 7) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at) ",
        );
        q.push_values(chunk, |mut b, (e, s, address, id)| {
            b.push_bind(e.tenant)
                .push_bind(normalize(address))
                .push_bind(s.reason.clone())
                .push_bind(e.kind.as_str())
                .push_bind(*id)
                .push_bind(e.at)
                .push_bind(s.expires_at);
        });
        q.push(
            " ON CONFLICT (tenant_id, address) DO UPDATE SET
                reason = excluded.reason, source = excluded.source, event_id = excluded.event_id,
                created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE suppressions.expires_at IS NOT NULL AND suppressions.expires_at <= excluded.created_at",
        );
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
