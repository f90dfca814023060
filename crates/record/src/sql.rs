//! What both backends say in the same SQL (the event log's reads, the
//! DKIM keys): written
//! once here, generic over the database, and run by each backend. (Every
//! statement here is standard SQL that SQLite and PostgreSQL read alike;
//! what differs stays in the backend's module.)

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use crate::directory::Tenant;
use crate::events::{Direction, EventKind, EventQuery, EventRow, MessageHead, RecipientRow, normalize};

/// An event's columns (`events e`).
const EVENT_COLUMNS: &str = "e.id AS id, e.message AS message, e.idx AS idx, e.address AS address, \
     e.type AS type, e.at AS at, e.reason AS reason, e.smtp_code AS smtp_code, e.smtp_status AS smtp_status, \
     e.smtp_text AS smtp_text, e.remote AS remote, e.tls AS tls, e.detail AS detail, e.rcpts AS rcpts";

/// A shared event's columns as one member's (`event_rcpts r JOIN events e`).
const MEMBER_COLUMNS: &str = "e.id AS id, e.message AS message, r.idx AS idx, r.address AS address, \
     e.type AS type, e.at AS at, e.reason AS reason, e.smtp_code AS smtp_code, e.smtp_status AS smtp_status, \
     e.smtp_text AS smtp_text, e.remote AS remote, e.tls AS tls, e.detail AS detail, CAST(NULL AS TEXT) AS rcpts";

/// What a value bound here must be in `DB`.
pub(crate) trait Binds<DB: Database>: for<'t> Encode<'t, DB> + Type<DB> + Send + 'static {}
impl<DB: Database, T: for<'t> Encode<'t, DB> + Type<DB> + Send + 'static> Binds<DB> for T {}

/// A message's row, as [`message_head`] selects it.
pub(crate) type HeadRow =
    (String, String, Option<String>, String, Option<String>, Option<String>, String, String, i64);

/// A tenant's message by id (its columns as [`HeadRow`]).
pub(crate) fn message_head<DB: Database>(id: &str, tenant: i64) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new(
        "SELECT id, direction, message_id, mail_from, subject, stream, tags, metadata, created_at
         FROM out_messages WHERE id = ",
    );
    sql.push_bind(id.to_string()).push(" AND tenant_id = ").push_bind(tenant);
    sql
}

pub(crate) fn head(
    (id, direction, message_id, from, subject, stream, tags, metadata, created_at): HeadRow,
) -> MessageHead {
    let direction = Direction::parse(&direction).unwrap_or(Direction::Outbound);
    MessageHead { id, direction, message_id, from, subject, stream, tags, metadata, created_at }
}

/// A recipient's row, as [`recipient_rows`] selects it.
pub(crate) type RecipientTuple = (i64, String, String, String, Option<String>, i64);

/// An application's message's recipients with their stored states, in order.
pub(crate) fn recipient_rows<DB: Database>(message: &str) -> QueryBuilder<DB>
where
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new(
        "SELECT idx, address, kind, status, reason, updated_at FROM out_recipients WHERE message = ",
    );
    sql.push_bind(message.to_string()).push(" ORDER BY idx");
    sql
}

pub(crate) fn recipient((idx, address, kind, status, reason, updated_at): RecipientTuple) -> RecipientRow {
    RecipientRow { idx, address, kind, status, reason, updated_at }
}

/// A message's events up to `as_of`, in order.
pub(crate) fn message_events<DB: Database>(message: &str, as_of: Option<i64>) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.message = "));
    sql.push_bind(message.to_string()).push(" AND e.at <= ").push_bind(as_of.unwrap_or(i64::MAX));
    sql.push(" ORDER BY e.id");
    sql
}

/// One address's events across messages (its own and those it shares),
/// newest first, before `cursor`, up to `as_of`; one more than `limit`.
pub(crate) fn history<DB: Database>(
    tenant: &Tenant,
    address: &str,
    as_of: Option<i64>,
    cursor: Option<i64>,
    limit: u32,
) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
{
    let (before, until) = (cursor.unwrap_or(i64::MAX), as_of.unwrap_or(i64::MAX));
    let mut sql = QueryBuilder::new(format!(
        "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events e WHERE e.tenant_id = "
    ));
    sql.push_bind(tenant.id).push(" AND e.address = ").push_bind(address.to_string());
    sql.push(" AND e.id < ").push_bind(before).push(" AND e.at <= ").push_bind(until);
    sql.push(format!(
        " UNION ALL SELECT {MEMBER_COLUMNS} FROM event_rcpts r JOIN events e ON e.id = r.event_id"
    ));
    sql.push(" WHERE r.tenant_id = ")
        .push_bind(tenant.id)
        .push(" AND r.address = ")
        .push_bind(address.to_string());
    sql.push(" AND r.event_id < ").push_bind(before).push(" AND e.at <= ").push_bind(until);
    sql.push(") h ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
    sql
}

/// A page of `GET /v1/events`: the tenant's events after the cursor that
/// pass every filter, in order; one more row than `limit`.
pub(crate) fn event_page<DB: Database>(tenant: &Tenant, q: &EventQuery, limit: i64) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
    &'static str: Binds<DB>,
{
    let mut sql = QueryBuilder::new("");
    match &q.recipient {
        None => {
            sql.push(format!("SELECT {EVENT_COLUMNS} FROM events e WHERE "));
            event_filters(&mut sql, tenant, q);
        }
        Some(address) => {
            let address = normalize(address);
            sql.push(format!("SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events e WHERE e.address = "));
            sql.push_bind(address.clone()).push(" AND ");
            event_filters(&mut sql, tenant, q);
            sql.push(format!(
                " UNION ALL SELECT {MEMBER_COLUMNS} FROM event_rcpts r JOIN events e ON e.id = r.event_id"
            ));
            sql.push(" WHERE r.tenant_id = ").push_bind(tenant.id);
            sql.push(" AND r.address = ").push_bind(address).push(" AND ");
            event_filters(&mut sql, tenant, q);
            sql.push(") page");
        }
    }
    sql.push(" ORDER BY id LIMIT ").push_bind(limit + 1);
    sql
}

/// Events of the tenant's messages whose subject or sender contains
/// `text`, in any case, among the messages made from `TEXT_LOOKBACK_MS`
/// before the window (the index on tenant and time bounds the scan). Each
/// backend answers "contains" from a trigram index when the text has three
/// characters or more (SQLite's FTS5 table `out_messages_text`; on
/// PostgreSQL, pg_trgm's indexes on the same `LOWER(...) LIKE`, sqlite
/// `0020_search.sql`, postgres `0014_search.sql`); shorter text is a LIKE
/// (`%` and `_` taken literally) over the window's messages.
fn text_filter<DB: Database>(sql: &mut QueryBuilder<DB>, tenant: &Tenant, q: &EventQuery, text: &str)
where
    i64: Binds<DB>,
    String: Binds<DB>,
{
    sql.push(" AND e.message IN (SELECT m.id FROM out_messages m WHERE m.tenant_id = ").push_bind(tenant.id);
    text_window(sql, q);
    if DB::NAME == "SQLite" && text.chars().count() >= 3 {
        // An FTS5 phrase, which the trigram tokenizer matches as a substring.
        sql.push(" AND m.rowid IN (SELECT rowid FROM out_messages_text WHERE out_messages_text MATCH ")
            .push_bind(fts_phrase(text))
            .push("))");
        return;
    }
    text_like(sql, text);
    sql.push(")");
}

/// The messages a text search looks among: made from `TEXT_LOOKBACK_MS`
/// before the window's start to its end (`out_messages m`).
fn text_window<DB: Database>(sql: &mut QueryBuilder<DB>, q: &EventQuery)
where
    i64: Binds<DB>,
{
    if let Some(s) = q.since {
        sql.push(" AND m.created_at >= ").push_bind(s - crate::events::TEXT_LOOKBACK_MS);
    }
    if let Some(u) = q.until {
        sql.push(" AND m.created_at < ").push_bind(u);
    }
}

/// `text` as an FTS5 phrase: in double quotes, a quote inside doubled.
pub(crate) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `AND (subject or sender contains text, in any case)` on `out_messages
/// m`, as a LIKE with `%`, `_` and a backslash in the text taken literally.
fn text_like<DB: Database>(sql: &mut QueryBuilder<DB>, text: &str)
where
    String: Binds<DB>,
{
    let escaped: String = text
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    sql.push(" AND (LOWER(m.subject) LIKE ").push_bind(pattern.clone());
    sql.push(" ESCAPE '\\' OR LOWER(m.mail_from) LIKE ").push_bind(pattern).push(" ESCAPE '\\')");
}

/// A page of `GET /v1/events` with text, read by walking the events with
/// ids in `from..to` in order and checking each one's message (for a text
/// so common that most events of a window match: the page fills within a
/// few hundred events, where reading every matching message would take
/// the whole window). `from` is past the query's cursor. One more row
/// than `limit`.
pub(crate) fn event_walk<DB: Database>(
    tenant: &Tenant,
    q: &EventQuery,
    text: &str,
    (from, to): (i64, i64),
    limit: i64,
) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
    &'static str: Binds<DB>,
{
    let mut sql = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events e WHERE "));
    // `from` as the cursor: SQLite starts a walk at the first lower bound
    // it is given, so a second one (the query's cursor) could start it at 0.
    event_filters(&mut sql, tenant, &EventQuery { text: None, cursor: Some(from - 1), ..q.clone() });
    sql.push(" AND e.id < ").push_bind(to);
    sql.push(" AND EXISTS (SELECT 1 FROM out_messages m WHERE m.id = e.message AND m.tenant_id = ");
    sql.push_bind(tenant.id);
    text_window(&mut sql, q);
    text_like(&mut sql, text);
    sql.push(") ORDER BY e.id LIMIT ").push_bind(limit + 1);
    sql
}

/// The conditions of `GET /v1/events` on `events e`: its tenant's, after
/// the cursor, and each filter given.
fn event_filters<DB: Database>(sql: &mut QueryBuilder<DB>, tenant: &Tenant, q: &EventQuery)
where
    i64: Binds<DB>,
    String: Binds<DB>,
    &'static str: Binds<DB>,
{
    sql.push("e.tenant_id = ").push_bind(tenant.id).push(" AND e.id > ").push_bind(q.cursor.unwrap_or(0));
    if let Some(k) = q.kind {
        sql.push(" AND e.type = ").push_bind(k.as_str());
    }
    if let Some(s) = q.since {
        sql.push(" AND e.at >= ").push_bind(s);
    }
    if let Some(u) = q.until {
        sql.push(" AND e.at < ").push_bind(u);
    }
    if let Some(m) = &q.message {
        sql.push(" AND e.message = ").push_bind(m.clone());
    }
    if let Some(r) = &q.reason {
        sql.push(" AND e.reason = ").push_bind(r.clone());
    }
    if let Some(d) = q.direction.filter(|d| *d != Direction::Both) {
        sql.push(" AND e.type IN (");
        let mut list = sql.separated(", ");
        for k in EventKind::ALL.iter().filter(|k| k.direction() == d || k.direction() == Direction::Both) {
            list.push_bind(k.as_str());
        }
        sql.push(")");
    }
    if let Some(t) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        text_filter(sql, tenant, q, t);
    }
    if let Some(p) = q.source_prefix.as_deref().filter(|p| !p.is_empty()) {
        // A prefix as a range, which the index on `source` answers: the
        // last character moved one up bounds it.
        let mut upper = p.to_string();
        if let Some(last) = upper.pop() {
            upper.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX));
        }
        sql.push(" AND e.source >= ").push_bind(p.to_string()).push(" AND e.source < ").push_bind(upper);
    }
    if let Some(t) = &q.tag {
        sql.push(" AND e.message IN (SELECT message FROM out_tags WHERE tenant_id = ").push_bind(tenant.id);
        sql.push(" AND tag = ").push_bind(t.clone()).push(")");
    }
}

/// Stored events read, less any damaged row (one of no known type: only
/// the writers write events, from `EventKind`; logged and skipped).
pub(crate) fn event_rows<R: Row>(rows: Vec<R>) -> Result<Vec<EventRow>, sqlx::Error>
where
    &'static str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, message, kind): (i64, String, String) =
            (row.try_get("id")?, row.try_get("message")?, row.try_get("type")?);
        let Some(kind) = EventKind::parse(&kind) else {
            tracing::warn!(event = id, %message, kind, "a stored event of no known type: skipped");
            continue;
        };
        let group: Option<String> = row.try_get("rcpts")?;
        events.push(EventRow {
            id,
            message,
            idx: row.try_get("idx")?,
            address: row.try_get("address")?,
            kind,
            at: row.try_get("at")?,
            reason: row.try_get("reason")?,
            smtp_code: row.try_get("smtp_code")?,
            smtp_status: row.try_get("smtp_status")?,
            smtp_text: row.try_get("smtp_text")?,
            remote: row.try_get("remote")?,
            tls: row.try_get("tls")?,
            detail: row.try_get("detail")?,
            group: group.and_then(|g| serde_json::from_str(&g).ok()).unwrap_or_default(),
        });
    }
    Ok(events)
}

/// The page a query's rows make: at most `limit` rows (their shared
/// events read as each recipient's), and the cursor of the next page.
pub(crate) fn page(mut rows: Vec<EventRow>, limit: usize) -> (Vec<EventRow>, Option<i64>) {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|e| e.id)
    } else {
        None
    };
    (rows.into_iter().flat_map(EventRow::expand).collect(), next)
}

/// A message with each recipient's status and timeline, as known at
/// `as_of`, read from either backend's pool.
pub(crate) async fn message_view<DB: Database>(
    pool: &sqlx::Pool<DB>,
    tenant: &Tenant,
    id: &str,
    as_of: Option<i64>,
) -> Result<Option<crate::events::MessageView>, crate::RecordError>
where
    HeadRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    RecipientTuple: for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    &'static str: Binds<DB> + ColumnIndex<DB::Row>,
{
    let row: Option<HeadRow> = message_head(id, tenant.id).build_query_as().fetch_optional(pool).await?;
    let Some(head) = row.map(head) else { return Ok(None) };
    if as_of.is_some_and(|t| t < head.created_at) {
        return Ok(None);
    }
    // The stored statuses first, then the events: an event is never older
    // than the status it set (no read transaction spans both).
    let stored = match head.direction {
        Direction::Inbound => None,
        _ => {
            let rows: Vec<RecipientTuple> = recipient_rows(&head.id).build_query_as().fetch_all(pool).await?;
            Some(rows.into_iter().map(recipient).collect())
        }
    };
    let events = message_events(&head.id, as_of).build().fetch_all(pool).await?;
    Ok(Some(crate::events::MessageView::assemble(head, stored, event_rows(events)?, as_of)))
}

/// A page of `GET /v1/events`, read from either backend's pool.
pub(crate) async fn events<DB: Database>(
    pool: &sqlx::Pool<DB>,
    tenant: &Tenant,
    q: &EventQuery,
) -> Result<(Vec<EventRow>, Option<i64>), crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    &'static str: Binds<DB> + ColumnIndex<DB::Row>,
{
    let limit = q.limit.clamp(1, 1000) as i64;
    let rows = event_rows(event_page(tenant, q, limit).build().fetch_all(pool).await?)?;
    Ok(page(rows, limit as usize))
}

/// One address's history across messages, newest first (the events that
/// name it, and those it shares), with its suppression: read from either
/// backend's pool and suppression list at once.
pub(crate) async fn recipient_history<DB: Database>(
    pool: &sqlx::Pool<DB>,
    suppressions: &dyn crate::Suppressions,
    tenant: &Tenant,
    address: &str,
    (as_of, cursor, limit): (Option<i64>, Option<i64>, u32),
) -> Result<crate::events::RecipientHistory, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    &'static str: Binds<DB> + ColumnIndex<DB::Row>,
{
    let (address, limit) = (normalize(address), limit.clamp(1, 1000));
    let mut query = history(tenant, &address, as_of, cursor, limit);
    let events = async {
        Ok::<_, crate::RecordError>(page(event_rows(query.build().fetch_all(pool).await?)?, limit as usize))
    };
    let suppression = suppressions.suppression(tenant, &address, as_of.unwrap_or_else(crate::events::now_ms));
    let (events, suppression) = tokio::join!(events, suppression);
    let (events, next_cursor) = events?;
    Ok(crate::events::RecipientHistory { address, suppression: suppression?, events, next_cursor })
}

/// Every DKIM key, by domain and selector.
pub(crate) async fn dkim_keys<DB: Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<Vec<crate::directory::DkimKey>, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    (String, String, String, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut sql = QueryBuilder::new(
        "SELECT domain, selector, pem, created_at FROM dkim_keys ORDER BY domain, selector",
    );
    let rows: Vec<(String, String, String, i64)> = sql.build_query_as().fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(domain, selector, pem, created_at)| crate::directory::DkimKey {
            domain,
            selector,
            pem,
            created_at,
        })
        .collect())
}

/// Stores `key` unless its (domain, selector) has one: true when stored.
pub(crate) async fn add_dkim_key<DB: Database>(
    pool: &sqlx::Pool<DB>,
    key: &crate::directory::DkimKey,
) -> Result<bool, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut sql = QueryBuilder::new("INSERT INTO dkim_keys (domain, selector, pem, created_at) VALUES (");
    let mut values = sql.separated(", ");
    values.push_bind(key.domain.clone()).push_bind(key.selector.clone()).push_bind(key.pem.clone());
    values.push_bind(key.created_at);
    sql.push(") ON CONFLICT DO NOTHING RETURNING domain");
    let stored: Option<(String,)> = sql.build_query_as().fetch_optional(pool).await?;
    Ok(stored.is_some())
}

/// Removes a domain's key by selector: true when there was one.
pub(crate) async fn remove_dkim_key<DB: Database>(
    pool: &sqlx::Pool<DB>,
    domain: &str,
    selector: &str,
) -> Result<bool, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut sql = QueryBuilder::new("DELETE FROM dkim_keys WHERE domain = ");
    sql.push_bind(domain.to_string()).push(" AND selector = ").push_bind(selector.to_string());
    sql.push(" RETURNING domain");
    let removed: Option<(String,)> = sql.build_query_as().fetch_optional(pool).await?;
    Ok(removed.is_some())
}

/// Which of `ids` are messages in the record (one query per 500 of them).
pub(crate) async fn known_messages<DB: Database>(
    pool: &sqlx::Pool<DB>,
    ids: &[String],
) -> Result<Vec<String>, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut known = Vec::new();
    for chunk in ids.chunks(500) {
        let mut sql = QueryBuilder::new("SELECT id FROM out_messages WHERE id IN (");
        let mut list = sql.separated(", ");
        for id in chunk {
            list.push_bind(id.clone());
        }
        sql.push(")");
        let rows: Vec<(String,)> = sql.build_query_as().fetch_all(pool).await?;
        known.extend(rows.into_iter().map(|(id,)| id));
    }
    Ok(known)
}

/// Which of `sources` an event was recorded from (one query per 500).
pub(crate) async fn recorded_sources<DB: Database>(
    pool: &sqlx::Pool<DB>,
    sources: &[String],
) -> Result<Vec<String>, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut seen = Vec::new();
    for chunk in sources.chunks(500) {
        let mut sql = QueryBuilder::new("SELECT DISTINCT source FROM events WHERE source IN (");
        let mut list = sql.separated(", ");
        for s in chunk {
            list.push_bind(s.clone());
        }
        sql.push(")");
        let rows: Vec<(String,)> = sql.build_query_as().fetch_all(pool).await?;
        seen.extend(rows.into_iter().map(|(s,)| s));
    }
    Ok(seen)
}

/// Takes a provider's one-time token: false when it was taken before.
/// Forgets the tokens taken before `forget_before` first.
pub(crate) async fn claim_nonce<DB: Database>(
    pool: &sqlx::Pool<DB>,
    provider: &str,
    nonce: &str,
    at: i64,
    forget_before: i64,
) -> Result<bool, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut forget = QueryBuilder::new("DELETE FROM webhook_nonces WHERE at < ");
    forget.push_bind(forget_before);
    forget.build().execute(pool).await?;
    let mut sql = QueryBuilder::new("INSERT INTO webhook_nonces (provider, nonce, at) VALUES (");
    let mut values = sql.separated(", ");
    values.push_bind(provider.to_string()).push_bind(nonce.to_string()).push_bind(at);
    sql.push(") ON CONFLICT DO NOTHING RETURNING nonce");
    let taken: Option<(String,)> = sql.build_query_as().fetch_optional(pool).await?;
    Ok(taken.is_some())
}

/// Forgets a claimed token.
pub(crate) async fn release_nonce<DB: Database>(
    pool: &sqlx::Pool<DB>,
    provider: &str,
    nonce: &str,
) -> Result<(), crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new("DELETE FROM webhook_nonces WHERE provider = ");
    sql.push_bind(provider.to_string()).push(" AND nonce = ").push_bind(nonce.to_string());
    sql.build().execute(pool).await?;
    Ok(())
}

/// The (tenant, Message-ID) a provider's message id was linked to.
pub(crate) async fn provider_message<DB: Database>(
    pool: &sqlx::Pool<DB>,
    provider: &str,
    id: &str,
) -> Result<Option<(i64, String)>, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    String: Binds<DB>,
    (i64, String): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut sql = QueryBuilder::new("SELECT tenant_id, message_id FROM provider_messages WHERE provider = ");
    sql.push_bind(provider.to_string()).push(" AND provider_id = ").push_bind(id.to_string());
    Ok(sql.build_query_as().fetch_optional(pool).await?)
}

/// Links a provider's message id to our message (the first link stands).
pub(crate) async fn link_provider_id<DB: Database>(
    pool: &sqlx::Pool<DB>,
    link: &crate::events::ProviderLink,
) -> Result<(), crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new(
        "INSERT INTO provider_messages (provider, provider_id, tenant_id, message_id, created_at) VALUES (",
    );
    let mut values = sql.separated(", ");
    values.push_bind(link.provider.clone()).push_bind(link.provider_id.clone()).push_bind(link.tenant);
    values.push_bind(link.message_id.clone()).push_bind(link.at);
    sql.push(") ON CONFLICT DO NOTHING");
    sql.build().execute(pool).await?;
    Ok(())
}

/// Where a message's tracked links lead (kept once: a second call for the
/// same message changes nothing).
pub(crate) async fn keep_links<DB: Database>(
    pool: &sqlx::Pool<DB>,
    message: &str,
    urls: &[String],
) -> Result<(), crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    String: Binds<DB>,
{
    for (n, chunk) in urls.chunks(500).enumerate() {
        let mut sql = QueryBuilder::new("INSERT INTO tracked_links (message, link, url) ");
        sql.push_values(chunk.iter().enumerate(), |mut b, (i, url)| {
            b.push_bind(message.to_string()).push_bind((n * 500 + i) as i64).push_bind(url.clone());
        });
        sql.push(" ON CONFLICT DO NOTHING");
        sql.build().execute(pool).await?;
    }
    Ok(())
}

/// A tracking target as [`tracking_target`] selects it: tenant, address,
/// url, delivered at, links.
pub(crate) type TargetRow = (i64, String, Option<String>, Option<i64>, i64);

/// The recipient an open or a click is about, the link's destination and
/// when the message reached the recipient, in one query.
pub(crate) async fn tracking_target<DB: Database>(
    pool: &sqlx::Pool<DB>,
    message: &str,
    idx: i64,
    link: Option<i64>,
) -> Result<Option<crate::events::TrackTarget>, crate::RecordError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB>,
    String: Binds<DB>,
    &'static str: Binds<DB>,
    TargetRow: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut sql =
        QueryBuilder::new("SELECT r.tenant_id, r.address, (SELECT url FROM tracked_links WHERE message = ");
    sql.push_bind(message.to_string()).push(" AND link = ").push_bind(link.unwrap_or(-1));
    // When it was delivered: the recipient's status says, and when it was
    // set (opens and clicks set no status). Read from the recipient's row,
    // not the message's events, which a popular message has many of.
    sql.push("), CASE WHEN r.status IN (").push_bind(EventKind::Delivered.as_str()).push(", ");
    sql.push_bind(EventKind::Sent.as_str()).push(") THEN r.updated_at END");
    sql.push(", (SELECT COUNT(*) FROM tracked_links WHERE message = ").push_bind(message.to_string());
    sql.push(") FROM out_recipients r WHERE r.message = ").push_bind(message.to_string());
    sql.push(" AND r.idx = ").push_bind(idx);
    let row: Option<TargetRow> = sql.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|(tenant, address, url, delivered_at, links)| crate::events::TrackTarget {
        tenant,
        address,
        url,
        delivered_at,
        links,
    }))
}
