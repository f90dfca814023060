//! Webhooks out in SQL that SQLite and PostgreSQL read alike, written once
//! and run by both (`webhooks.rs` says what it keeps and why). What
//! differs is a [`Dialect`]: PostgreSQL's claims skip rows other nodes
//! hold (`FOR UPDATE ... SKIP LOCKED`) and its tail sweeps a lag window;
//! SQLite reads the event log by rowid.

use sqlx::{ColumnIndex, Database, Decode, Pool, QueryBuilder, Row};

use crate::RecordError;
use crate::events::{EventKind, EventRow};
use crate::sql::{Binds, event_rows};
use crate::webhooks::{
    Attempt, Batch, Claimed, Disabled, Endpoint, EndpointStatus, MAX_REPLAY, NewEndpoint, Next, Outcome,
    Render, Replay, SCAN_LEASE_MS, ScanClaim, Scanned, TAIL_LAG_PG_MS, Tail, WebhooksOut, read_kinds,
    stored_kinds,
};

/// What the two databases say differently.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// Claims skip the rows another node holds (PostgreSQL).
    skip_locked: bool,
    /// How the event log is read by id: SQLite by rowid (its index on
    /// (tenant_id, at) would read a tenant's whole history), PostgreSQL by
    /// its (tenant_id, id) index.
    events: &'static str,
    /// The tail's lag window ([`TAIL_LAG_PG_MS`]; SQLite needs none).
    lag_ms: i64,
}

impl Dialect {
    pub(crate) const SQLITE: Dialect =
        Dialect { skip_locked: false, events: "events e NOT INDEXED", lag_ms: 0 };
    pub(crate) const POSTGRES: Dialect =
        Dialect { skip_locked: true, events: "events e", lag_ms: TAIL_LAG_PG_MS };

    fn lock(&self, alias: &str) -> String {
        if self.skip_locked { format!(" FOR UPDATE OF {alias} SKIP LOCKED") } else { String::new() }
    }
}

/// An endpoint's columns, as [`endpoint`] reads them.
const ENDPOINT: &str = "id, tenant_id, url, description, events, secret, old_secret, old_secret_until, status, \
     disabled_reason, disabled_at, failing_since, batch_max, batch_wait_ms, created_at, scan_cursor, scan_head, \
     scan_mark, scan_mark_at";

/// An event's columns (as `sql.rs` reads them, for `event_rows`).
const EVENT: &str = "e.id AS id, e.message AS message, e.idx AS idx, e.address AS address, \
     e.type AS type, e.at AS at, e.reason AS reason, e.smtp_code AS smtp_code, e.smtp_status AS smtp_status, \
     e.smtp_text AS smtp_text, e.remote AS remote, e.tls AS tls, e.detail AS detail, e.rcpts AS rcpts";

/// An attempt's columns, as [`attempt`] reads them.
const ATTEMPT: &str =
    "id, kind, event_id, webhook_id, attempt, at, url, status, response, latency_ms, error, outcome";

/// Rows written per statement.
const CHUNK: usize = 200;

/// Events read per page of a replay.
const REPLAY_PAGE: u32 = 500;

/// The webhooks-out record on one pool.
pub(crate) struct SqlWebhooks<DB: Database> {
    pool: Pool<DB>,
    dialect: Dialect,
}

impl<DB: Database> SqlWebhooks<DB> {
    pub(crate) fn new(pool: Pool<DB>, dialect: Dialect) -> Self {
        SqlWebhooks { pool, dialect }
    }
}

/// A lease's token.
fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn endpoint<R: Row>(row: &R) -> Result<(Endpoint, Tail), sqlx::Error>
where
    &'static str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let old: Option<String> = row.try_get("old_secret")?;
    let old_until: Option<i64> = row.try_get("old_secret_until")?;
    let status: String = row.try_get("status")?;
    let batch_max: Option<i64> = row.try_get("batch_max")?;
    let batch_wait: Option<i64> = row.try_get("batch_wait_ms")?;
    let events: String = row.try_get("events")?;
    let e = Endpoint {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events: read_kinds(&events),
        secret: row.try_get("secret")?,
        old_secret: old.zip(old_until),
        status: if status == "enabled" { EndpointStatus::Enabled } else { EndpointStatus::Disabled },
        disabled_reason: row.try_get("disabled_reason")?,
        disabled_at: row.try_get("disabled_at")?,
        failing_since: row.try_get("failing_since")?,
        batch: batch_max.map(|m| Batch {
            max_events: m.clamp(1, u32::MAX as i64) as u32,
            max_wait_ms: batch_wait.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        }),
        created_at: row.try_get("created_at")?,
    };
    let tail = Tail {
        cursor: row.try_get("scan_cursor")?,
        head: row.try_get("scan_head")?,
        mark: row.try_get("scan_mark")?,
        mark_at: row.try_get("scan_mark_at")?,
    };
    Ok((e, tail))
}

fn attempt<R: Row>(row: &R) -> Result<Attempt, sqlx::Error>
where
    &'static str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Attempt {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        event_id: row.try_get("event_id")?,
        webhook_id: row.try_get("webhook_id")?,
        attempt: row.try_get("attempt")?,
        at: row.try_get("at")?,
        url: row.try_get("url")?,
        response_status: row.try_get("status")?,
        response_body: row.try_get("response")?,
        latency_ms: row.try_get("latency_ms")?,
        error: row.try_get("error")?,
        outcome: row.try_get("outcome")?,
    })
}

/// `AND e.type IN (...)` for an endpoint that asked for some types.
fn push_types<DB: Database>(sql: &mut QueryBuilder<DB>, kinds: &[EventKind])
where
    String: Binds<DB>,
{
    if kinds.is_empty() {
        return;
    }
    sql.push(" AND e.type IN (");
    let mut list = sql.separated(", ");
    for k in kinds {
        list.push_bind(k.as_str().to_string());
    }
    sql.push(")");
}

/// The deliveries of events read for an endpoint: one per event, or one
/// per recipient of an event several share.
fn deliveries(rows: Vec<EventRow>, endpoint: &Endpoint, render: &Render) -> Vec<(i64, i64, String, String)> {
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| endpoint.wants(r.kind)) {
        let shared = !row.group.is_empty();
        for one in row.expand() {
            let member = if shared { one.idx } else { None };
            let r = render(&one, member);
            out.push((one.id, member.unwrap_or(-1), r.webhook_id, r.body));
        }
    }
    out
}

/// `INSERT` of deliveries queued at `at`, due at `due`; on a (endpoint,
/// event, member) already queued, nothing, or (a replay) the delivery made
/// pending again.
fn insert_deliveries<DB: Database>(
    endpoint: &str,
    rows: &[(i64, i64, String, String)],
    (at, due): (i64, i64),
    replay: bool,
) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
{
    let mut sql = QueryBuilder::new(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, member, webhook_id, body, state, due_at, \
         created_at, updated_at) ",
    );
    sql.push_values(rows, |mut b, (event, member, id, body)| {
        b.push_bind(endpoint.to_string()).push_bind(*event).push_bind(*member).push_bind(id.clone());
        b.push_bind(body.clone()).push_bind("pending".to_string()).push_bind(due).push_bind(at).push_bind(at);
    });
    if replay {
        sql.push(
            " ON CONFLICT (endpoint_id, event_id, member) DO UPDATE SET state = 'pending', attempts = 0, \
             due_at = excluded.due_at, lease_until = 0, lease = NULL, updated_at = excluded.updated_at",
        );
    } else {
        sql.push(" ON CONFLICT (endpoint_id, event_id, member) DO NOTHING");
    }
    sql
}

impl<DB> SqlWebhooks<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Binds<DB>,
    Option<String>: Binds<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    async fn create_(&self, e: NewEndpoint) -> Result<Endpoint, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, secret, status, \
             batch_max, batch_wait_ms, created_at, scan_cursor, scan_head, scan_mark, scan_mark_at) SELECT ",
        );
        let mut v = sql.separated(", ");
        v.push_bind(e.id.clone()).push_bind(e.tenant).push_bind(e.url).push_bind(e.description);
        v.push_bind(stored_kinds(&e.events)).push_bind(e.secret).push_bind("enabled".to_string());
        v.push_bind(e.batch.map(|b| i64::from(b.max_events)))
            .push_bind(e.batch.map(|b| i64::from(b.max_wait_ms)));
        v.push_bind(e.at).push("m").push("m").push("m").push_bind(e.at);
        sql.push(" FROM (SELECT COALESCE(MAX(id), 0) AS m FROM events) latest");
        sql.build().execute(&self.pool).await?;
        self.get_(e.tenant, &e.id)
            .await?
            .ok_or_else(|| RecordError::Unavailable("endpoint not stored".into()))
    }

    async fn select(&self, mut sql: QueryBuilder<DB>) -> Result<Vec<(Endpoint, Tail)>, RecordError> {
        let rows = sql.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(endpoint).collect::<Result<_, _>>()?)
    }

    async fn list_(&self, tenant: i64) -> Result<Vec<Endpoint>, RecordError> {
        let mut sql =
            QueryBuilder::new(format!("SELECT {ENDPOINT} FROM webhook_endpoints WHERE tenant_id = "));
        sql.push_bind(tenant).push(" ORDER BY created_at, id");
        Ok(self.select(sql).await?.into_iter().map(|(e, _)| e).collect())
    }

    async fn get_(&self, tenant: i64, id: &str) -> Result<Option<Endpoint>, RecordError> {
        let mut sql = QueryBuilder::new(format!("SELECT {ENDPOINT} FROM webhook_endpoints WHERE id = "));
        sql.push_bind(id.to_string()).push(" AND tenant_id = ").push_bind(tenant);
        Ok(self.select(sql).await?.into_iter().next().map(|(e, _)| e))
    }

    async fn by_ids_(&self, ids: &[String]) -> Result<Vec<Endpoint>, RecordError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::new(format!("SELECT {ENDPOINT} FROM webhook_endpoints WHERE id IN ("));
        let mut list = sql.separated(", ");
        for id in ids {
            list.push_bind(id.clone());
        }
        sql.push(")");
        Ok(self.select(sql).await?.into_iter().map(|(e, _)| e).collect())
    }

    async fn delete_(&self, tenant: i64, id: &str) -> Result<bool, RecordError> {
        let mut tx = self.pool.begin().await?;
        let mut sql = QueryBuilder::<DB>::new("DELETE FROM webhook_endpoints WHERE id = ");
        sql.push_bind(id.to_string()).push(" AND tenant_id = ").push_bind(tenant).push(" RETURNING id");
        if sql.build().fetch_optional(&mut *tx).await?.is_none() {
            return Ok(false);
        }
        for table in ["webhook_deliveries", "webhook_attempts"] {
            let mut sql = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE endpoint_id = "));
            sql.push_bind(id.to_string());
            sql.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_(
        &self,
        tenant: i64,
        id: &str,
        secret: &str,
        old_until: i64,
    ) -> Result<Option<Endpoint>, RecordError> {
        let mut sql =
            QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = ");
        sql.push_bind(old_until).push(", secret = ").push_bind(secret.to_string());
        sql.push(" WHERE id = ").push_bind(id.to_string()).push(" AND tenant_id = ").push_bind(tenant);
        sql.push(" RETURNING id");
        if sql.build().fetch_optional(&self.pool).await?.is_none() {
            return Ok(None);
        }
        self.get_(tenant, id).await
    }

    async fn enable_(&self, tenant: i64, id: &str, at: i64) -> Result<Option<Endpoint>, RecordError> {
        let mut tx = self.pool.begin().await?;
        let mut sql = QueryBuilder::<DB>::new(
            "UPDATE webhook_endpoints SET status = 'enabled', disabled_reason = NULL, disabled_at = NULL, \
             failing_since = NULL, scan_due = 0 WHERE id = ",
        );
        sql.push_bind(id.to_string()).push(" AND tenant_id = ").push_bind(tenant);
        sql.push(" RETURNING status");
        if sql.build().fetch_optional(&mut *tx).await?.is_none() {
            return Ok(None);
        }
        let mut due = QueryBuilder::<DB>::new("UPDATE webhook_deliveries SET due_at = ");
        due.push_bind(at).push(" WHERE endpoint_id = ").push_bind(id.to_string());
        due.push(" AND state = 'pending' AND due_at > ").push_bind(at);
        due.build().execute(&mut *tx).await?;
        let log = Attempt { kind: "endpoint.enabled".into(), at, ..Attempt::default() };
        log_entries(&[(id.to_string(), log)]).build().execute(&mut *tx).await?;
        tx.commit().await?;
        self.get_(tenant, id).await
    }

    async fn attempts_(
        &self,
        tenant: i64,
        id: &str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Option<(Vec<Attempt>, Option<i64>)>, RecordError> {
        if self.get_(tenant, id).await?.is_none() {
            return Ok(None);
        }
        let limit = limit.clamp(1, 1000) as usize;
        let mut sql =
            QueryBuilder::<DB>::new(format!("SELECT {ATTEMPT} FROM webhook_attempts WHERE endpoint_id = "));
        sql.push_bind(id.to_string()).push(" AND id < ").push_bind(cursor.unwrap_or(i64::MAX));
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64 + 1);
        let rows = sql.build().fetch_all(&self.pool).await?;
        let mut page: Vec<Attempt> = rows.iter().map(attempt).collect::<Result<_, _>>()?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|a| a.id)
        } else {
            None
        };
        Ok(Some((page, next)))
    }

    /// Reads events: their ids as read (a row of a type this version does
    /// not know counts too) and the rows.
    async fn read_events(&self, mut sql: QueryBuilder<DB>) -> Result<(Vec<i64>, Vec<EventRow>), RecordError> {
        let rows = sql.build().fetch_all(&self.pool).await?;
        let ids = rows.iter().map(|r| r.try_get::<i64, _>("id")).collect::<Result<Vec<_>, _>>()?;
        Ok((ids, event_rows(rows)?))
    }

    async fn replay_(
        &self,
        endpoint: &Endpoint,
        what: Replay,
        at: i64,
        render: &Render,
    ) -> Result<usize, RecordError> {
        let mut after = 0;
        let mut queued = 0;
        loop {
            let mut sql =
                QueryBuilder::<DB>::new(format!("SELECT {EVENT} FROM events e WHERE e.tenant_id = "));
            sql.push_bind(endpoint.tenant);
            match what {
                Replay::Event(id) => {
                    sql.push(" AND e.id = ").push_bind(id);
                }
                Replay::Range { since, until } => {
                    sql.push(" AND e.at >= ").push_bind(since).push(" AND e.at < ").push_bind(until);
                }
            }
            push_types(&mut sql, &endpoint.events);
            sql.push(" AND e.id > ")
                .push_bind(after)
                .push(" ORDER BY e.id LIMIT ")
                .push_bind(i64::from(REPLAY_PAGE));
            let (ids, rows) = self.read_events(sql).await?;
            let batch = deliveries(rows, endpoint, render);
            for chunk in batch.chunks(CHUNK) {
                insert_deliveries::<DB>(&endpoint.id, chunk, (at, at), true)
                    .build()
                    .execute(&self.pool)
                    .await?;
            }
            queued += batch.len();
            match ids.last() {
                Some(last) if ids.len() == REPLAY_PAGE as usize && queued < MAX_REPLAY => after = *last,
                _ => return Ok(queued),
            }
        }
    }

    /// The endpoints with something to scan at `now`: read past their
    /// head, or sweep their lag window (`w`'s conditions).
    fn scannable(&self, sql: &mut QueryBuilder<DB>, now: i64) {
        sql.push(" FROM webhook_endpoints w WHERE w.status = 'enabled' AND w.scan_due <= ").push_bind(now);
        sql.push(
            " AND (w.scan_head < (SELECT COALESCE(MAX(id), 0) FROM events) OR (w.scan_cursor < w.scan_mark",
        );
        sql.push(" AND w.scan_mark_at <= ").push_bind(now - self.dialect.lag_ms).push("))");
    }

    async fn claim_scans_(&self, now: i64, limit: u32) -> Result<Vec<ScanClaim>, RecordError> {
        // A read first: claiming is a write, and on SQLite an idle
        // dispatcher should not take the write lock every tick.
        let mut probe = QueryBuilder::<DB>::new("SELECT w.id");
        self.scannable(&mut probe, now);
        probe.push(" LIMIT 1");
        if probe.build().fetch_optional(&self.pool).await?.is_none() {
            return Ok(Vec::new());
        }
        let token = token();
        let mut sql = QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET scan_lease = ");
        sql.push_bind(token.clone()).push(", scan_due = ").push_bind(now + SCAN_LEASE_MS);
        sql.push(" WHERE id IN (SELECT w.id");
        self.scannable(&mut sql, now);
        sql.push(" ORDER BY w.scan_due LIMIT ").push_bind(i64::from(limit)).push(self.dialect.lock("w"));
        sql.push(format!(") RETURNING {ENDPOINT}"));
        let claimed = self.select(sql).await?;
        Ok(claimed
            .into_iter()
            .map(|(endpoint, tail)| ScanClaim { endpoint, tail, token: token.clone() })
            .collect())
    }

    async fn scan_(
        &self,
        claim: &ScanClaim,
        now: i64,
        limit: u32,
        every_ms: i64,
        render: &Render,
    ) -> Result<Scanned, RecordError> {
        let (e, lag) = (&claim.endpoint, self.dialect.lag_ms);
        let (from, _) = claim.tail.read_from(now, lag);
        let mut top = QueryBuilder::<DB>::new("SELECT COALESCE(MAX(id), 0) AS id FROM events");
        let top: i64 = top.build().fetch_one(&self.pool).await?.try_get("id")?;
        let mut sql = QueryBuilder::<DB>::new(format!(
            "SELECT {EVENT} FROM {} WHERE e.tenant_id = ",
            self.dialect.events
        ));
        sql.push_bind(e.tenant).push(" AND e.id > ").push_bind(from);
        push_types(&mut sql, &e.events);
        sql.push(" AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = ");
        sql.push_bind(e.id.clone())
            .push(" AND d.event_id = e.id) ORDER BY e.id LIMIT ")
            .push_bind(i64::from(limit));
        let (ids, rows) = self.read_events(sql).await?;
        let tail = claim.tail.after(now, lag, top, &ids, limit as usize);
        let more = ids.len() >= limit as usize;
        let batch = deliveries(rows, e, render);
        let due = match e.batch {
            Some(b) if !batch.is_empty() => self.batch_window(&e.id, now, b).await?,
            _ => now,
        };
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(CHUNK) {
            insert_deliveries::<DB>(&e.id, chunk, (now, due), false).build().execute(&mut *tx).await?;
        }
        let mut done = QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET scan_cursor = ");
        done.push_bind(tail.cursor).push(", scan_head = ").push_bind(tail.head);
        done.push(", scan_mark = ").push_bind(tail.mark).push(", scan_mark_at = ").push_bind(tail.mark_at);
        done.push(", scan_lease = NULL, scan_due = ").push_bind(if more { now } else { now + every_ms });
        done.push(" WHERE id = ")
            .push_bind(e.id.clone())
            .push(" AND scan_lease = ")
            .push_bind(claim.token.clone());
        done.push(" RETURNING id");
        if done.build().fetch_optional(&mut *tx).await?.is_none() {
            // The lease ran out and another node holds the endpoint now:
            // its scan queues these events (what was queued stays queued).
            return Ok(Scanned::default());
        }
        tx.commit().await?;
        Ok(Scanned { queued: batch.len(), more })
    }

    /// When a batching endpoint's new deliveries are due: with those
    /// already waiting for their window, or `max_wait_ms` from now (a new
    /// window). Read before the scan's transaction: on SQLite a write
    /// after a read in one transaction can fail at once when another
    /// writer came between.
    async fn batch_window(&self, endpoint: &str, now: i64, batch: Batch) -> Result<i64, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT MIN(due_at) AS due FROM webhook_deliveries WHERE state = 'pending' AND attempts = 0 AND endpoint_id = ",
        );
        sql.push_bind(endpoint.to_string()).push(" AND due_at > ").push_bind(now);
        let open: Option<i64> = sql.build().fetch_one(&self.pool).await?.try_get("due")?;
        Ok(open.unwrap_or(now + i64::from(batch.max_wait_ms)))
    }

    async fn claim_deliveries_(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, RecordError> {
        let token = token();
        let mut sql = QueryBuilder::<DB>::new("UPDATE webhook_deliveries SET lease = ");
        sql.push_bind(token.clone()).push(", lease_until = ").push_bind(now + lease_ms);
        sql.push(
            " WHERE id IN (SELECT d.id FROM webhook_deliveries d WHERE d.state = 'pending' AND d.due_at <= ",
        );
        sql.push_bind(now).push(" AND d.lease_until <= ").push_bind(now);
        sql.push(" AND d.endpoint_id IN (SELECT w.id FROM webhook_endpoints w WHERE w.status = 'enabled')");
        sql.push(" ORDER BY d.due_at LIMIT ").push_bind(i64::from(limit)).push(self.dialect.lock("d"));
        sql.push(") RETURNING id, endpoint_id, event_id, webhook_id, body, attempts");
        let rows = sql.build().fetch_all(&self.pool).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            claimed.push(Claimed {
                id: r.try_get("id")?,
                endpoint: r.try_get("endpoint_id")?,
                event_id: r.try_get("event_id")?,
                webhook_id: r.try_get("webhook_id")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                token: token.clone(),
            });
        }
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    async fn next_due_(&self, now: i64) -> Result<Option<i64>, RecordError> {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT MIN(d.due_at) AS due FROM webhook_deliveries d WHERE d.state = 'pending' AND d.lease_until <= ",
        );
        sql.push_bind(now);
        sql.push(" AND d.endpoint_id IN (SELECT w.id FROM webhook_endpoints w WHERE w.status = 'enabled')");
        Ok(sql.build().fetch_one(&self.pool).await?.try_get("due")?)
    }

    async fn complete_(
        &self,
        outcomes: Vec<Outcome>,
        failing_before: i64,
    ) -> Result<Vec<Disabled>, RecordError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let entries: Vec<(String, Attempt)> =
            outcomes.iter().map(|o| (o.endpoint.clone(), o.log.clone())).collect();
        for chunk in entries.chunks(CHUNK) {
            log_entries::<DB>(chunk).build().execute(&mut *tx).await?;
        }
        for o in &outcomes {
            let (state, due) = match o.next {
                Next::Delivered => ("delivered", o.log.at),
                Next::RetryAt(t) => ("pending", t),
                Next::Failed => ("failed", o.log.at),
            };
            let mut sql = QueryBuilder::<DB>::new("UPDATE webhook_deliveries SET state = ");
            sql.push_bind(state.to_string()).push(", attempts = attempts + 1, due_at = ").push_bind(due);
            sql.push(", lease_until = 0, lease = NULL, updated_at = ").push_bind(o.log.at);
            sql.push(" WHERE id = ").push_bind(o.delivery).push(" AND lease = ").push_bind(o.token.clone());
            sql.build().execute(&mut *tx).await?;
        }
        let disabled = endpoint_health::<DB>(&mut tx, &outcomes, failing_before).await?;
        tx.commit().await?;
        Ok(disabled)
    }

    async fn prune_(&self, before: i64) -> Result<u64, RecordError> {
        let mut gone = 0u64;
        for (table, cond) in
            [("webhook_attempts", "at < "), ("webhook_deliveries", "state <> 'pending' AND updated_at < ")]
        {
            loop {
                let mut sql = QueryBuilder::<DB>::new(format!(
                    "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {cond}"
                ));
                sql.push_bind(before).push(" LIMIT 5000) RETURNING id");
                let n = sql.build().fetch_all(&self.pool).await?.len();
                gone += n as u64;
                if n < 5000 {
                    break;
                }
            }
        }
        Ok(gone)
    }
}

/// `INSERT` of log entries, each with its endpoint.
fn log_entries<DB: Database>(entries: &[(String, Attempt)]) -> QueryBuilder<DB>
where
    i64: Binds<DB>,
    String: Binds<DB>,
    Option<i64>: Binds<DB>,
    Option<String>: Binds<DB>,
{
    let mut sql = QueryBuilder::new(
        "INSERT INTO webhook_attempts (endpoint_id, kind, event_id, webhook_id, attempt, at, url, status, \
         response, latency_ms, error, outcome) ",
    );
    sql.push_values(entries, |mut b, (endpoint, a)| {
        b.push_bind(endpoint.clone()).push_bind(a.kind.clone()).push_bind(a.event_id);
        b.push_bind(a.webhook_id.clone()).push_bind(a.attempt).push_bind(a.at).push_bind(a.url.clone());
        b.push_bind(a.response_status).push_bind(a.response_body.clone()).push_bind(a.latency_ms);
        b.push_bind(a.error.clone()).push_bind(a.outcome.clone());
    });
    sql
}

/// What a round of attempts says of each endpoint: a success clears its
/// failing time, a failure starts it; one failing since before
/// `failing_before`, or gone (410), is disabled, with an
/// `endpoint.disabled` entry in its log.
async fn endpoint_health<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    outcomes: &[Outcome],
    failing_before: i64,
) -> Result<Vec<Disabled>, RecordError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Binds<DB>,
    Option<String>: Binds<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    // Per endpoint, in order: its last word decides (a success after a
    // failure in the same round clears it).
    let mut last: Vec<(&str, &Outcome)> = Vec::new();
    for o in outcomes {
        match last.iter_mut().find(|(e, _)| *e == o.endpoint) {
            Some(slot) if slot.1.disable.is_none() => slot.1 = o,
            Some(_) => {}
            None => last.push((&o.endpoint, o)),
        }
    }
    let mut disabled = Vec::new();
    for (id, o) in last {
        let at = o.log.at;
        if o.next == Next::Delivered {
            let mut sql =
                QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ");
            sql.push_bind(id.to_string()).push(" AND failing_since IS NOT NULL");
            sql.build().execute(&mut **tx).await?;
            continue;
        }
        let mut sql =
            QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ");
        sql.push_bind(at).push(") WHERE id = ").push_bind(id.to_string());
        sql.push(" RETURNING failing_since");
        let Some(row) = sql.build().fetch_optional(&mut **tx).await? else { continue };
        let since: i64 = row.try_get("failing_since")?;
        let reason = match &o.disable {
            Some(r) => r.clone(),
            None if since <= failing_before => format!(
                "every attempt failed since {}",
                chrono::DateTime::from_timestamp_millis(since).map(|t| t.to_rfc3339()).unwrap_or_default()
            ),
            None => continue,
        };
        let mut sql =
            QueryBuilder::<DB>::new("UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = ");
        sql.push_bind(reason.clone()).push(", disabled_at = ").push_bind(at);
        sql.push(" WHERE id = ")
            .push_bind(id.to_string())
            .push(" AND status = 'enabled' RETURNING tenant_id, url");
        let Some(row) = sql.build().fetch_optional(&mut **tx).await? else { continue };
        let log = Attempt {
            kind: "endpoint.disabled".into(),
            at,
            error: Some(reason.clone()),
            ..Attempt::default()
        };
        log_entries::<DB>(&[(id.to_string(), log)]).build().execute(&mut **tx).await?;
        disabled.push(Disabled {
            endpoint: id.to_string(),
            tenant: row.try_get("tenant_id")?,
            url: row.try_get("url")?,
            reason,
        });
    }
    Ok(disabled)
}

impl<DB> WebhooksOut for SqlWebhooks<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    i64: Binds<DB> + for<'r> Decode<'r, DB>,
    String: Binds<DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Binds<DB>,
    Option<String>: Binds<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    fn create(&self, endpoint: NewEndpoint) -> crate::BoxFuture<'_, Result<Endpoint, RecordError>> {
        Box::pin(self.create_(endpoint))
    }
    fn list(&self, tenant: i64) -> crate::BoxFuture<'_, Result<Vec<Endpoint>, RecordError>> {
        Box::pin(self.list_(tenant))
    }
    fn get<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<Endpoint>, RecordError>> {
        Box::pin(self.get_(tenant, id))
    }
    fn by_ids<'a>(&'a self, ids: &'a [String]) -> crate::BoxFuture<'a, Result<Vec<Endpoint>, RecordError>> {
        Box::pin(self.by_ids_(ids))
    }
    fn delete<'a>(&'a self, tenant: i64, id: &'a str) -> crate::BoxFuture<'a, Result<bool, RecordError>> {
        Box::pin(self.delete_(tenant, id))
    }
    fn rotate<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
        secret: &'a str,
        old_until: i64,
    ) -> crate::BoxFuture<'a, Result<Option<Endpoint>, RecordError>> {
        Box::pin(self.rotate_(tenant, id, secret, old_until))
    }
    fn enable<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
        at: i64,
    ) -> crate::BoxFuture<'a, Result<Option<Endpoint>, RecordError>> {
        Box::pin(self.enable_(tenant, id, at))
    }
    fn attempts<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
        cursor: Option<i64>,
        limit: u32,
    ) -> crate::BoxFuture<'a, Result<Option<(Vec<Attempt>, Option<i64>)>, RecordError>> {
        Box::pin(self.attempts_(tenant, id, cursor, limit))
    }
    fn replay<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        what: Replay,
        at: i64,
        render: &'a Render,
    ) -> crate::BoxFuture<'a, Result<usize, RecordError>> {
        Box::pin(self.replay_(endpoint, what, at, render))
    }
    fn claim_scans(&self, now: i64, limit: u32) -> crate::BoxFuture<'_, Result<Vec<ScanClaim>, RecordError>> {
        Box::pin(self.claim_scans_(now, limit))
    }
    fn scan<'a>(
        &'a self,
        claim: &'a ScanClaim,
        now: i64,
        limit: u32,
        every_ms: i64,
        render: &'a Render,
    ) -> crate::BoxFuture<'a, Result<Scanned, RecordError>> {
        Box::pin(self.scan_(claim, now, limit, every_ms, render))
    }
    fn claim_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> crate::BoxFuture<'_, Result<Vec<Claimed>, RecordError>> {
        Box::pin(self.claim_deliveries_(now, lease_ms, limit))
    }
    fn next_due(&self, now: i64) -> crate::BoxFuture<'_, Result<Option<i64>, RecordError>> {
        Box::pin(self.next_due_(now))
    }
    fn complete(
        &self,
        outcomes: Vec<Outcome>,
        failing_before: i64,
    ) -> crate::BoxFuture<'_, Result<Vec<Disabled>, RecordError>> {
        Box::pin(self.complete_(outcomes, failing_before))
    }
    fn prune(&self, before: i64) -> crate::BoxFuture<'_, Result<u64, RecordError>> {
        Box::pin(self.prune_(before))
    }
}
