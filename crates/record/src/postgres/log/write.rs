//! Writes to the record on PostgreSQL: a batch of new messages and events
//! in one transaction, each table with one multi-row statement. The API's
//! batches are what arrived while the last one committed (`group.rs`); the
//! front line's, a tick's worth.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Postgres as Pg, QueryBuilder};

use crate::RecordError;
use crate::events::{Addressee, Idempotency, NewEvent, NewMessage, Suppress, normalize, stored_group};

/// What a batch's writes came to: per message (a taken idempotency key is
/// a conflict) and per event (its id, or why it was not written).
pub(super) struct Written {
    pub messages: Vec<Result<(), RecordError>>,
    pub events: Vec<Result<i64, RecordError>>,
}

/// An event as it is inserted: its tenant, and its detail (a new
/// message's first events carry the message's).
struct Row<'a> {
    tenant: i64,
    event: &'a NewEvent,
    detail: Option<&'a serde_json::Value>,
}

/// Writes a batch in a transaction of its own, committed.
pub(super) async fn committed(
    pool: &sqlx::PgPool,
    messages: &[NewMessage],
    events: &[NewEvent],
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let written = write(&mut tx, messages, events).await?;
    tx.commit().await?;
    count(messages, events, &written);
    Ok(written)
}

/// Counts the events a committed batch wrote: each accepted message's
/// first events, and each event that found its message.
fn count(messages: &[NewMessage], events: &[NewEvent], written: &Written) {
    let firsts: Vec<NewEvent> = messages
        .iter()
        .zip(&written.messages)
        .filter(|(_, r)| r.is_ok())
        .flat_map(|(m, _)| m.first_events())
        .collect();
    let asked = events.iter().zip(&written.events).filter(|(_, r)| r.is_ok()).map(|(e, _)| e);
    crate::metrics::committed(firsts.iter().chain(asked));
}

async fn write(
    tx: &mut PgConnection,
    messages: &[NewMessage],
    events: &[NewEvent],
) -> Result<Written, sqlx::Error> {
    let claimed = claim_keys(tx, messages).await?;
    let accepted: Vec<&NewMessage> =
        messages.iter().zip(&claimed).filter(|(_, r)| r.is_ok()).map(|(m, _)| m).collect();
    insert_messages(tx, &accepted).await?;
    let firsts: Vec<(NewEvent, &NewMessage)> =
        accepted.iter().flat_map(|m| m.first_events().into_iter().map(move |e| (e, *m))).collect();
    let mut rows: Vec<Row> =
        firsts.iter().map(|(e, m)| Row { tenant: m.tenant, event: e, detail: m.detail.as_ref() }).collect();
    let tenants = message_tenants(tx, events).await?;
    let mut results = Vec::with_capacity(events.len());
    let mut asked = Vec::new();
    for e in events {
        match e.tenant.or_else(|| tenants.get(e.message.as_str()).copied()) {
            Some(tenant) => {
                asked.push(results.len());
                results.push(Ok(0));
                rows.push(Row { tenant, event: e, detail: e.detail.as_ref() });
            }
            None => results.push(Err(RecordError::Invalid(format!("no message {} recorded", e.message)))),
        }
    }
    let ids = insert_events(tx, &rows).await?;
    insert_groups(tx, &rows, &ids).await?;
    let first_asked = rows.len() - asked.len();
    for (i, id) in asked.iter().zip(&ids[first_asked..]) {
        results[*i] = Ok(*id);
    }
    let asked: Vec<(i64, &Row)> = ids[first_asked..].iter().copied().zip(&rows[first_asked..]).collect();
    // The front line's events (those that take their message's tenant)
    // set no stored status: a received message's is read from its events.
    let with_status: Vec<&Row> =
        asked.iter().filter(|(_, r)| r.event.tenant.is_some()).map(|(_, r)| *r).collect();
    update_status(tx, &with_status).await?;
    add_suppressions(tx, &asked).await?;
    Ok(Written { messages: claimed, events: results })
}

/// Takes the messages' idempotency keys: a message whose key was taken
/// (before, or earlier in this batch) is a conflict.
async fn claim_keys(
    tx: &mut PgConnection,
    messages: &[NewMessage],
) -> Result<Vec<Result<(), RecordError>>, sqlx::Error> {
    let mut results: Vec<Result<(), RecordError>> = messages.iter().map(|_| Ok(())).collect();
    let keyed: Vec<(usize, &NewMessage, &Idempotency)> =
        messages.iter().enumerate().filter_map(|(i, m)| Some((i, m, m.idempotency.as_ref()?))).collect();
    if keyed.is_empty() {
        return Ok(results);
    }
    let mut q = QueryBuilder::<Pg>::new(
        "INSERT INTO idempotency (tenant_id, key, request_hash, response, created_at) ",
    );
    q.push_values(&keyed, |mut b, (_, m, (key, hash, response))| {
        b.push_bind(m.tenant).push_bind(key).push_bind(hash).push_bind(response).push_bind(m.at);
    });
    q.push(" ON CONFLICT DO NOTHING RETURNING tenant_id, key");
    let inserted: HashSet<(i64, String)> =
        q.build_query_as().fetch_all(&mut *tx).await?.into_iter().collect();
    let mut taken = HashSet::new();
    for (i, m, (key, ..)) in keyed {
        if !inserted.contains(&(m.tenant, key.clone())) || !taken.insert((m.tenant, key.clone())) {
            results[i] = Err(RecordError::Conflict(format!("the idempotency key {key:?} is already in use")));
        }
    }
    Ok(results)
}

/// The messages, their tags and their recipients. A message already
/// recorded (the same queue id twice) is left as it is.
async fn insert_messages(tx: &mut PgConnection, accepted: &[&NewMessage]) -> Result<(), sqlx::Error> {
    if accepted.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Pg>::new(
        "INSERT INTO out_messages (id, tenant_id, direction, message_id, mail_from, subject, stream,
                                   tags, metadata, created_at) ",
    );
    q.push_values(accepted, |mut b, m| {
        b.push_bind(&m.id)
            .push_bind(m.tenant)
            .push_bind(m.direction.as_str())
            .push_bind(&m.message_id)
            .push_bind(&m.mail_from)
            .push_bind(&m.subject)
            .push_bind(&m.stream)
            .push_bind(serde_json::to_string(&m.tags).unwrap_or_else(|_| "[]".into()))
            .push_bind(m.metadata.to_string())
            .push_bind(m.at);
    });
    q.push(" ON CONFLICT DO NOTHING");
    q.build().execute(&mut *tx).await?;
    let tags: Vec<(i64, &str, &str)> = accepted
        .iter()
        .flat_map(|m| m.tags.iter().map(move |t| (m.tenant, t.as_str(), m.id.as_str())))
        .collect();
    if !tags.is_empty() {
        let mut q = QueryBuilder::<Pg>::new("INSERT INTO out_tags (tenant_id, tag, message) ");
        q.push_values(&tags, |mut b, (tenant, tag, message)| {
            b.push_bind(*tenant).push_bind(*tag).push_bind(*message);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    let rcpts: Vec<(&NewMessage, usize)> =
        accepted.iter().flat_map(|m| (0..m.recipients.len()).map(move |i| (*m, i))).collect();
    if !rcpts.is_empty() {
        let mut q = QueryBuilder::<Pg>::new(
            "INSERT INTO out_recipients (message, idx, tenant_id, address, kind, status, reason, updated_at) ",
        );
        q.push_values(&rcpts, |mut b, (m, i)| {
            let r = &m.recipients[*i];
            b.push_bind(&m.id)
                .push_bind(*i as i64)
                .push_bind(m.tenant)
                .push_bind(normalize(&r.address))
                .push_bind(&r.kind)
                .push_bind(r.status.as_str())
                .push_bind(&r.reason)
                .push_bind(m.at);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// The tenant of each message that events name without one.
async fn message_tenants(
    tx: &mut PgConnection,
    events: &[NewEvent],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut wanted: Vec<&str> =
        events.iter().filter(|e| e.tenant.is_none()).map(|e| e.message.as_str()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, tenant_id FROM out_messages WHERE id = ANY($1)")
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Appends events; their ids, in order (identities are drawn in row order
/// within a statement, so the sorted ids are the rows in order).
async fn insert_events(tx: &mut PgConnection, rows: &[Row<'_>]) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    // PostgreSQL binds at most 65,535 parameters to a statement.
    for chunk in rows.chunks(4_000) {
        let mut q = QueryBuilder::<Pg>::new(
            "INSERT INTO events (tenant_id, message, idx, address, type, at, reason, smtp_code, smtp_status,
                                 smtp_text, remote, tls, detail, source, rcpts) ",
        );
        q.push_values(chunk, |mut b, Row { tenant, event: e, detail }| {
            let smtp = e.smtp.as_ref();
            b.push_bind(*tenant)
                .push_bind(&e.message)
                .push_bind(e.idx)
                .push_bind(e.address.as_deref().map(normalize))
                .push_bind(e.kind.as_str())
                .push_bind(e.at)
                .push_bind(&e.reason)
                .push_bind(smtp.and_then(|s| s.code).map(i64::from))
                .push_bind(smtp.and_then(|s| s.status.as_deref()))
                .push_bind(smtp.and_then(|s| s.text.as_deref()))
                .push_bind(smtp.and_then(|s| s.remote.as_deref()))
                .push_bind(smtp.and_then(|s| s.tls.as_deref()))
                .push_bind(detail.map(|d| d.to_string()))
                .push_bind(&e.source)
                .push_bind((!e.group.is_empty()).then(|| stored_group(&e.group)));
        });
        q.push(" RETURNING id");
        let mut got: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        got.sort_unstable();
        ids.extend(got);
    }
    Ok(ids)
}

/// Each recipient of a shared event, by address.
async fn insert_groups(tx: &mut PgConnection, rows: &[Row<'_>], ids: &[i64]) -> Result<(), sqlx::Error> {
    let members: Vec<(i64, i64, &Addressee)> = rows
        .iter()
        .zip(ids)
        .flat_map(|(r, id)| r.event.group.iter().map(move |a| (r.tenant, *id, a)))
        .collect();
    for chunk in members.chunks(10_000) {
        let mut q = QueryBuilder::<Pg>::new("INSERT INTO event_rcpts (tenant_id, address, event_id, idx) ");
        q.push_values(chunk, |mut b, (tenant, id, Addressee(idx, address))| {
            b.push_bind(*tenant).push_bind(normalize(address)).push_bind(*id).push_bind(*idx);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Each recipient's status: the last status-setting event of the batch.
async fn update_status(tx: &mut PgConnection, rows: &[&Row<'_>]) -> Result<(), sqlx::Error> {
    let mut latest: HashMap<(&str, i64), &NewEvent> = HashMap::new();
    for e in rows.iter().map(|r| r.event).filter(|e| e.kind.sets_status()) {
        for idx in e.idxs() {
            latest.insert((e.message.as_str(), idx), e);
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let latest: Vec<((&str, i64), &NewEvent)> = latest.into_iter().collect();
    let mut q = QueryBuilder::<Pg>::new(
        "UPDATE out_recipients r SET status = v.status, reason = v.reason, updated_at = v.at FROM (",
    );
    q.push_values(&latest, |mut b, ((message, idx), e)| {
        b.push_bind(*message).push_bind(*idx).push_bind(e.kind.as_str()).push_bind(&e.reason).push_bind(e.at);
    });
    q.push(") AS v (message, idx, status, reason, at) WHERE r.message = v.message AND r.idx = v.idx");
    q.build().execute(&mut *tx).await?;
    Ok(())
}

/// Suppressions; an existing entry stands unless it has expired.
async fn add_suppressions(tx: &mut PgConnection, asked: &[(i64, &Row<'_>)]) -> Result<(), sqlx::Error> {
    let mut entries: HashMap<(i64, String), (&NewEvent, &Suppress, i64)> = HashMap::new();
    for (id, r) in asked {
        let Some(s) = r.event.suppress.as_ref() else { continue };
        for address in r.event.addresses() {
            // One row per (tenant, address) in a statement: the last wins.
            entries.insert((r.tenant, normalize(address)), (r.event, s, *id));
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Pg>::new(
        "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at) ",
    );
    q.push_values(&entries, |mut b, ((tenant, address), (e, s, id))| {
        b.push_bind(*tenant)
            .push_bind(address)
            .push_bind(&s.reason)
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
    Ok(())
}
