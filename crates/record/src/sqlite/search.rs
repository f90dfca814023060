//! Text search (`GET /v1/events?q=`, the dashboard's search box) on
//! SQLite, fast for a rare text and for a common one.
//!
//! A rare text is answered from the trigram index (`sql::text_filter`):
//! its few messages, then their events. A common one (a word in a quarter
//! of all subjects) would read every matching message of the window to
//! sort their events, a hundred thousand at a million events; instead the
//! window's events are walked in id order from the window's first, each
//! one's message checked, and the page fills within a few hundred events.
//! The walk reads a bounded number of event ids; a text common in the
//! record but rare in the window runs out of them and falls back to the
//! index, so no search costs more than both.

use sqlx::SqlitePool;

use crate::directory::Tenant;
use crate::events::{EventQuery, EventRow};
use crate::{RecordError, sql};

/// Matches in the trigram index from which a text is common.
const COMMON: i64 = 2_000;
/// Event ids read by each step of a walk before it gives up.
const STEPS: [i64; 2] = [2_000, 8_000];
/// An hour in milliseconds (`event_hours`).
const HOUR_MS: i64 = 3_600_000;

/// A page of events, by the cheaper of the two readings.
pub(crate) async fn events(
    pool: &SqlitePool,
    tenant: &Tenant,
    q: &EventQuery,
) -> Result<(Vec<EventRow>, Option<i64>), RecordError> {
    let Some(text) = walkable(q) else { return sql::events(pool, tenant, q).await };
    if !common(pool, text).await? {
        return sql::events(pool, tenant, q).await;
    }
    let Some(first) = window_start(pool, tenant, q).await? else { return Ok((Vec::new(), None)) };
    let limit = i64::from(q.limit.clamp(1, 1000));
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(pool).await?;
    let (mut rows, mut from) = (Vec::new(), first.max(q.cursor.unwrap_or(0) + 1));
    for step in STEPS {
        let to = from.saturating_add(step);
        let found = sql::event_walk(tenant, q, text, (from, to), limit).build().fetch_all(pool).await?;
        rows.extend(sql::event_rows(found)?);
        if rows.len() as i64 > limit || to > last {
            return Ok(sql::page(rows, limit as usize));
        }
        from = to;
    }
    sql::events(pool, tenant, q).await
}

/// The text of a query the walk can answer: three characters or more
/// (the index's reach), ASCII (where SQLite's LOWER and the trigram
/// tokenizer fold case alike), and no filter that already narrows the
/// events to a few (a recipient, a message).
fn walkable(q: &EventQuery) -> Option<&str> {
    let text = q.text.as_deref().map(str::trim).filter(|t| t.len() >= 3 && t.is_ascii())?;
    (q.recipient.is_none() && q.message.is_none()).then_some(text)
}

/// Whether the trigram index holds `COMMON` matches of `text` or more.
async fn common(pool: &SqlitePool, text: &str) -> Result<bool, RecordError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM out_messages_text WHERE out_messages_text MATCH ? LIMIT ?)",
    )
    .bind(sql::fts_phrase(text))
    .bind(COMMON)
    .fetch_one(pool)
    .await?;
    Ok(n >= COMMON)
}

/// An event id no event of the window is below (`event_hours`): the
/// least first id of the hours from the window's start; `None` when the
/// tenant has no event from then on.
async fn window_start(
    pool: &SqlitePool,
    tenant: &Tenant,
    q: &EventQuery,
) -> Result<Option<i64>, RecordError> {
    let Some(since) = q.since else { return Ok(Some(0)) };
    let first: Option<i64> =
        sqlx::query_scalar("SELECT MIN(first_id) FROM event_hours WHERE tenant_id = ? AND hour >= ?")
            .bind(tenant.id)
            .bind(since.div_euclid(HOUR_MS))
            .fetch_one(pool)
            .await?;
    Ok(first)
}
