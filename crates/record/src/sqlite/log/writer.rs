//! The record's writer: one task, one connection with
//! `synchronous = FULL`, and every write that arrived while the previous
//! transaction committed goes into the next one (group commit).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::events::{
    Addressee, Describe, Idempotency, NewEvent, NewMessage, NewRecipient, Suppress, normalize, now_ms,
    stored_group,
};
use crate::{Busy, RecordError};

type Answer<T> = Option<oneshot::Sender<Result<T, RecordError>>>;

/// A write, and where its result goes: `None` for the front line's
/// record, which nobody waits for (the spool, not the record, is what its
/// 250 promised).
pub(super) enum Op {
    Accept(Box<NewMessage>, Answer<()>),
    Event(Box<NewEvent>, Answer<i64>),
    /// Answered once every write queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// A front-line message to describe (on the writer) and record; when
    /// it happened (ms).
    Describe(i64, Describe),
}

impl Op {
    fn waited_for(&self) -> bool {
        match self {
            Op::Accept(_, tx) => tx.is_some(),
            Op::Event(_, tx) => tx.is_some(),
            Op::Flush(_) | Op::Describe(..) => false,
        }
    }

    /// When it happened (ms), for how long the front line may hold it up.
    fn at(&self) -> i64 {
        match self {
            Op::Accept(m, _) => m.at,
            Op::Event(e, _) => e.at,
            Op::Flush(_) => i64::MAX,
            Op::Describe(at, _) => *at,
        }
    }

    /// A message to describe, described: work done on the writer's thread.
    fn described(self) -> Op {
        match self {
            Op::Describe(_, describe) => Op::Accept(Box::new(describe()), None),
            op => op,
        }
    }

    fn answer(self, r: Result<i64, RecordError>) {
        match self {
            Op::Accept(m, tx) => match tx {
                Some(tx) => drop(tx.send(r.map(|_| ()))),
                None => unanswered(&m.id, r),
            },
            Op::Event(e, tx) => match tx {
                Some(tx) => drop(tx.send(r)),
                None => unanswered(&e.message, r),
            },
            Op::Flush(tx) => drop(tx.send(())),
            Op::Describe(..) => {}
        }
    }
}

/// A write nobody waits for that failed: said once per write, at ERROR
/// (the batch's own failure is logged too).
fn unanswered(message: &str, r: Result<i64, RecordError>) {
    if let Err(e) = r {
        tracing::debug!(%message, error = %e, "front-line record not written");
    }
}

const BATCH: usize = 512;

/// Runs the writer. What arrives together (one `Vec`: a provider's
/// webhook body's events) is written in one transaction, never split.
pub(super) async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Vec<Op>>) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(ops) => batch.extend(ops),
                Err(_) => break,
            }
        }
        crate::metrics::batch("api", batch.len());
        commit(&pool, batch).await;
    }
}

/// Writes one batch in one transaction and answers each write.
async fn commit(pool: &SqlitePool, batch: Vec<Op>) {
    let written = attempt(pool, &batch).await;
    answer(batch, written);
}

/// Waits before each new attempt at a front-line batch that failed for a
/// reason that passes (the database locked past its busy timeout by
/// another process, no connection to be had): events nobody waits for
/// are retried for about a minute before they are given up at ERROR.
const FRONT_RETRIES: [Duration; 4] =
    [Duration::from_millis(200), Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(45)];

/// [`commit`] for the front line: what failed for a passing reason is
/// written again, whole, after each of [`FRONT_RETRIES`].
async fn commit_retrying(pool: &SqlitePool, batch: Vec<Op>) {
    let mut written = attempt(pool, &batch).await;
    for (n, wait) in FRONT_RETRIES.iter().enumerate() {
        match &written {
            Err(Failure::Passing(why)) => {
                tracing::warn!(error = %why, writes = batch.len(), attempt = n + 1, retry_in = ?wait,
                    "front-line record batch failed: writing it again");
                tokio::time::sleep(*wait).await;
                written = attempt(pool, &batch).await;
            }
            _ => break,
        }
    }
    answer(batch, written);
}

/// Why a batch was not written.
enum Failure {
    /// May succeed if written again.
    Passing(String),
    Db(sqlx::Error),
}

/// One attempt at a batch in one transaction: each write's result, or why
/// none was written.
async fn attempt(pool: &SqlitePool, batch: &[Op]) -> Result<Vec<Result<i64, RecordError>>, Failure> {
    // Only a batch someone waits for (an API's 202) is fsynced on commit;
    // the front line's record commits like the rest of the database (WAL,
    // synchronous NORMAL).
    let durable = batch.iter().any(Op::waited_for);
    // A connection per batch, not kept: closing the store waits for every
    // connection to come back.
    let Some(mut conn) = connect(pool, durable).await else {
        return Err(Failure::Passing("the database is not available".into()));
    };
    let mut results = Vec::with_capacity(batch.len());
    let written = write(&mut conn, batch, &mut results).await;
    if written.is_err() {
        // SQLite may leave a failed transaction open (a full disk): a
        // connection reused in that state would only nest savepoints in it,
        // never commit.
        conn.close_on_drop();
    }
    if durable && let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await {
        tracing::warn!(error = %e, "record: resetting synchronous");
        conn.close_on_drop();
    }
    match written {
        Ok(()) => Ok(results),
        Err(e) if locked(&e) => Err(Failure::Passing(e.to_string())),
        Err(e) => Err(Failure::Db(e)),
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED (and their extended codes): another
/// connection held the database past the busy timeout.
fn locked(e: &sqlx::Error) -> bool {
    let code = match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    };
    code.is_some_and(|c| matches!(c & 0xff, 5 | 6)) || matches!(e, sqlx::Error::PoolTimedOut)
}

/// Answers each write of a batch with its result, or all with the failure.
fn answer(batch: Vec<Op>, written: Result<Vec<Result<i64, RecordError>>, Failure>) {
    let failure = match written {
        Ok(results) => {
            for (op, r) in batch.into_iter().zip(results) {
                op.answer(r);
            }
            return;
        }
        Err(f) => f,
    };
    let (why, full) = match failure {
        Failure::Passing(why) => (why, false),
        Failure::Db(e) => (e.to_string(), RecordError::Db(e).is_storage_full()),
    };
    if full {
        // Once per power of two: a full disk fails every batch.
        static FULL: AtomicU64 = AtomicU64::new(0);
        let n = FULL.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                failed_batches = n,
                "the disk is full: the record's writes fail (API sends are \
                answered 507; front-line events are not recorded)"
            );
        }
    } else {
        tracing::error!(error = %why, writes = batch.len(), "record batch failed");
    }
    fail_all(batch, &why);
}

/// The front line's writer: a thread of its own in the idle scheduling
/// class with a connection of its own (whose SQLite thread inherits the
/// class), as the store's copies have. The front line hands it events and
/// goes on; on a busy machine they wait here, in memory, and are written
/// with what the front line leaves.
#[derive(Clone)]
pub(super) struct Front(Arc<FrontWriter>);

struct FrontWriter {
    /// Started on the first write: a command that records nothing from
    /// the front line starts no thread.
    tx: OnceLock<mpsc::UnboundedSender<Op>>,
    opts: SqliteConnectOptions,
    busy: Arc<dyn Busy>,
    backlog: Arc<AtomicUsize>,
}

/// How long (ms) front-line events may wait while [`Busy`] says so.
const FRONT_LAG_MAX_MS: i64 = 10_000;

/// How often a batch that waits looks again.
const GIVE_WAY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Front-line writes waiting, at most. Past this (a front line that never
/// rests and a record that cannot keep up) new events are not recorded,
/// counted and said at WARN: the mail itself is in the spool.
const FRONT_BACKLOG_MAX: usize = 1 << 20;

/// Writes per front-line transaction, at most. A tick's events go in one
/// transaction: the pages they share (the event table's end, its indexes)
/// are written to the WAL once, not once per small batch.
const FRONT_BATCH: usize = 1024;

/// How often the front line's writer looks for events (a tenth of a
/// second behind is nothing to a person tracking a message).
const FRONT_TICK: std::time::Duration = std::time::Duration::from_millis(100);

impl Front {
    pub(super) fn new(opts: SqliteConnectOptions, busy: Arc<dyn Busy>) -> Front {
        let backlog = Arc::new(AtomicUsize::new(0));
        Front(Arc::new(FrontWriter { tx: OnceLock::new(), opts, busy, backlog }))
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Op> {
        let w = &*self.0;
        w.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let (left, busy) = (w.backlog.clone(), w.busy.clone());
            let started = crate::sqlite::spawn_idle("record-writer", w.opts.clone(), move |pool| {
                run_front(pool, rx, left, busy)
            });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the front line's record writer");
            }
            tx
        })
    }

    /// Queues a write; never waits.
    pub(super) fn send(&self, op: Op) {
        if matches!(op, Op::Flush(_)) && self.0.tx.get().is_none() {
            return; // nothing was ever written: the flush is answered now
        }
        let backlog = &self.0.backlog;
        if !matches!(op, Op::Flush(_)) && backlog.load(Ordering::Relaxed) >= FRONT_BACKLOG_MAX {
            static DROPPED: AtomicU64 = AtomicU64::new(0);
            let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    not_recorded = n,
                    "the record is too far behind: front-line events are not recorded"
                );
            }
            return;
        }
        backlog.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(op)) = self.sender().send(op) {
            backlog.fetch_sub(1, Ordering::Relaxed);
            op.answer(Err(RecordError::Unavailable("the front line's record writer stopped".into())));
        }
    }
}

/// Writes the front line's events once every `FRONT_TICK`: a tick's
/// events go in one transaction (more when they pass `FRONT_BATCH`), each
/// written when the front line is quiet (a message being accepted, or
/// accepts that overlapped a moment ago, hold it) or its oldest event is
/// `FRONT_LAG_MAX_MS` old. Sending never wakes the writer: the front line
/// pays no thread switch per event. Committing once a tick, not whenever
/// something is waiting, is what keeps the record cheap under steady load:
/// every transaction rewrites the pages it touches (the event table's end,
/// each index's), so back-to-back small ones wrote the same pages to the
/// WAL over and over.
async fn run_front(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Op>,
    backlog: Arc<AtomicUsize>,
    busy: Arc<dyn Busy>,
) {
    let mut batch = Vec::with_capacity(FRONT_BATCH);
    let mut tick = tokio::time::interval(FRONT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let open = take(&mut rx, &mut batch);
            if batch.is_empty() {
                if !open {
                    return;
                }
                break;
            }
            let oldest = batch.iter().map(Op::at).min().unwrap_or(i64::MAX);
            let flushing = batch.iter().any(|op| matches!(op, Op::Flush(_)));
            let full = batch.len() >= FRONT_BATCH;
            if !(flushing || full || !busy.busy() || now_ms() - oldest >= FRONT_LAG_MAX_MS) {
                tokio::time::sleep(GIVE_WAY_POLL).await;
                continue;
            }
            backlog.fetch_sub(batch.len(), Ordering::Relaxed);
            let ops = std::mem::replace(&mut batch, Vec::with_capacity(FRONT_BATCH));
            crate::metrics::batch("front", ops.len());
            commit_retrying(&pool, ops.into_iter().map(Op::described).collect()).await;
            // A full batch leaves more behind: on at once. Otherwise the
            // next tick's events make the next transaction.
            if !full {
                break;
            }
        }
    }
}

/// Moves waiting writes into `batch` (up to `FRONT_BATCH`); false once the
/// sending side is gone.
fn take(rx: &mut mpsc::UnboundedReceiver<Op>, batch: &mut Vec<Op>) -> bool {
    while batch.len() < FRONT_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

fn fail_all(batch: Vec<Op>, why: &str) {
    for op in batch {
        op.answer(Err(RecordError::Unavailable(why.to_string())));
    }
}

/// A connection from the pool, set to fsync its commits (WAL + FULL) when
/// `durable`.
async fn connect(pool: &SqlitePool, durable: bool) -> Option<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
    let mut c = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "record: no database connection");
            return None;
        }
    };
    if durable && let Err(e) = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *c).await {
        tracing::error!(error = %e, "record: setting synchronous");
        return None;
    }
    Some(c)
}

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
    // IMMEDIATE: the write lock is taken (waiting out another writer, up to
    // the busy timeout) before the first read. A deferred transaction that
    // reads first (a batch of events only starts with the messages' tenants)
    // and then writes fails at once with SQLITE_BUSY when another
    // connection (the front line's writer, the store's) committed between
    // its read and its first write: the whole batch would be lost.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    results.extend(batch.iter().map(|_| Ok(0)));
    // Idempotency keys first: a send whose key was taken writes nothing.
    claim_keys(&mut tx, batch, results).await?;
    let accepts: Vec<&NewMessage> = batch
        .iter()
        .zip(results.iter())
        .filter_map(|(op, r)| match op {
            Op::Accept(m, _) if r.is_ok() => Some(&**m),
            _ => None,
        })
        .collect();
    insert_messages(&mut tx, &accepts).await?;

    // Events: each accepted recipient's first one, then the events asked
    // for, in order, each with its tenant (the message's, when not given).
    let firsts: Vec<(NewEvent, &NewMessage)> =
        accepts.iter().flat_map(|m| m.first_events().into_iter().map(move |e| (e, *m))).collect();
    let tenants = message_tenants(&mut tx, batch).await?;
    let mut rows: Vec<Row> =
        firsts.iter().map(|(e, m)| Row { tenant: m.tenant, event: e, detail: m.detail.as_ref() }).collect();
    let mut asked: Vec<usize> = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        let Op::Event(e, _) = op else { continue };
        match e.tenant.or_else(|| tenants.get(e.message.as_str()).copied()) {
            Some(tenant) => {
                asked.push(i);
                rows.push(Row { tenant, event: e, detail: e.detail.as_ref() });
            }
            None => results[i] = Err(RecordError::Invalid(format!("no message {} recorded", e.message))),
        }
    }
    let ids = insert_events(&mut tx, &rows).await?;
    insert_groups(&mut tx, &rows, &ids).await?;
    let first_asked = rows.len() - asked.len();
    for (i, id) in asked.iter().zip(&ids[first_asked..]) {
        results[*i] = Ok(*id);
    }
    let asked: Vec<(i64, &Row)> = ids[first_asked..].iter().copied().zip(&rows[first_asked..]).collect();
    // The front line's events (those that take their message's tenant)
    // set no stored status: a received message's is read from its events.
    let with_status: Vec<(i64, &Row)> =
        asked.iter().filter(|(_, r)| r.event.tenant.is_some()).copied().collect();
    update_status(&mut tx, &with_status).await?;
    add_suppressions(&mut tx, &asked).await?;
    tx.commit().await?;
    crate::metrics::committed(rows.iter().map(|r| r.event));
    Ok(())
}

/// An event as it is inserted: its tenant, and its detail (a new
/// message's first events share the message's).
struct Row<'a> {
    tenant: i64,
    event: &'a NewEvent,
    detail: Option<&'a serde_json::Value>,
}

type Tx<'c> = sqlx::Transaction<'c, Sqlite>;

/// Takes the batch's idempotency keys; a send whose key is taken fails
/// with [`RecordError::Conflict`].
async fn claim_keys(
    tx: &mut Tx<'_>,
    batch: &[Op],
    results: &mut [Result<i64, RecordError>],
) -> Result<(), sqlx::Error> {
    let keyed: Vec<(usize, &NewMessage, &Idempotency)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Accept(m, _) => m.idempotency.as_ref().map(|k| (i, &**m, k)),
            _ => None,
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
        let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        let inserted: std::collections::HashSet<(i64, String)> = inserted.into_iter().collect();
        for (i, m, (key, ..)) in chunk {
            if !inserted.contains(&(m.tenant, key.clone())) || !taken.insert((m.tenant, key.clone())) {
                results[*i] =
                    Err(RecordError::Conflict(format!("the idempotency key {key:?} is already in use")));
            }
        }
    }
    Ok(())
}

/// The messages, their tags and their recipients. A message already
/// recorded (the same queue id twice) is left as it is.
async fn insert_messages(tx: &mut Tx<'_>, accepts: &[&NewMessage]) -> Result<(), sqlx::Error> {
    for chunk in accepts.chunks(ROWS_PER_STATEMENT / 10) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO out_messages (id, tenant_id, direction, message_id, mail_from, subject, stream,
                                                 tags, metadata, created_at) ",
        );
        q.push_values(chunk, |mut b, m| {
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
        q.build().execute(&mut **tx).await?;
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
        q.build().execute(&mut **tx).await?;
    }
    let rcpts: Vec<(&NewMessage, usize, &NewRecipient)> =
        accepts.iter().flat_map(|m| m.recipients.iter().enumerate().map(move |(i, r)| (*m, i, r))).collect();
    for chunk in rcpts.chunks(ROWS_PER_STATEMENT / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO out_recipients (message, idx, tenant_id, address, kind, status, reason, updated_at) ",
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
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The tenant of each message the batch's events name without one (the
/// messages of this batch are written already).
async fn message_tenants<'b>(
    tx: &mut Tx<'_>,
    batch: &'b [Op],
) -> Result<std::collections::HashMap<&'b str, i64>, sqlx::Error> {
    let mut wanted: Vec<&str> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Event(e, _) if e.tenant.is_none() => Some(e.message.as_str()),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found = std::collections::HashMap::new();
    for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, tenant_id FROM out_messages WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
        for (id, tenant) in rows {
            if let Some(key) = chunk.iter().find(|k| **k == id) {
                found.insert(*key, tenant);
            }
        }
    }
    Ok(found)
}

/// Appends events; their ids, in order. Row ids are handed out in
/// insertion order (max + 1, the writer holding the write lock), so one
/// statement's rows are the ids up to its last: no row comes back.
async fn insert_events(tx: &mut Tx<'_>, rows: &[Row<'_>]) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT / 15) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (tenant_id, message, idx, address, type, at, reason, smtp_code, smtp_status,
                                 smtp_text, remote, tls, detail, source, rcpts) ",
        );
        q.push_values(chunk, |mut b, Row { tenant, event: e, detail }| {
            let smtp = e.smtp.as_ref();
            let group = (!e.group.is_empty()).then(|| stored_group(&e.group));
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
                .push_bind(group);
        });
        let last = q.build().execute(&mut **tx).await?.last_insert_rowid();
        ids.extend(last + 1 - chunk.len() as i64..=last);
    }
    Ok(ids)
}

/// Each recipient of a shared event, by address: how an address's history
/// finds it (one narrow row each, not a whole event).
async fn insert_groups(tx: &mut Tx<'_>, rows: &[Row<'_>], ids: &[i64]) -> Result<(), sqlx::Error> {
    let members: Vec<(i64, i64, &Addressee)> = rows
        .iter()
        .zip(ids)
        .flat_map(|(r, id)| r.event.group.iter().map(move |a| (r.tenant, *id, a)))
        .collect();
    for chunk in members.chunks(ROWS_PER_STATEMENT / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO event_rcpts (tenant_id, address, event_id, idx) ",
        );
        q.push_values(chunk, |mut b, (tenant, id, Addressee(idx, address))| {
            b.push_bind(*tenant).push_bind(normalize(address)).push_bind(*id).push_bind(*idx);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Each recipient's status: the last status-setting event of the batch.
async fn update_status(tx: &mut Tx<'_>, asked: &[(i64, &Row<'_>)]) -> Result<(), sqlx::Error> {
    let mut latest: std::collections::HashMap<(&str, i64), &NewEvent> = std::collections::HashMap::new();
    for (_, r) in asked {
        let e = r.event;
        if e.kind.sets_status() {
            for idx in e.idxs() {
                latest.insert((e.message.as_str(), idx), e);
            }
        }
    }
    let latest: Vec<((&str, i64), &NewEvent)> = latest.into_iter().collect();
    for chunk in latest.chunks(ROWS_PER_STATEMENT / 5) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE out_recipients SET status = v.column3, reason = v.column4, updated_at = v.column5
             FROM (",
        );
        q.push_values(chunk, |mut b, ((message, idx), e)| {
            b.push_bind(*message)
                .push_bind(*idx)
                .push_bind(e.kind.as_str())
                .push_bind(&e.reason)
                .push_bind(e.at);
        });
        q.push(") AS v WHERE out_recipients.message = v.column1 AND out_recipients.idx = v.column2");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Suppressions; an existing entry stands unless it has expired.
async fn add_suppressions(tx: &mut Tx<'_>, asked: &[(i64, &Row<'_>)]) -> Result<(), sqlx::Error> {
    let suppress: Vec<(&Row, &Suppress, &str, i64)> = asked
        .iter()
        .filter_map(|(id, r)| Some((*r, r.event.suppress.as_ref()?, *id)))
        .flat_map(|(r, s, id)| r.event.addresses().map(move |a| (r, s, a, id)))
        .collect();
    for chunk in suppress.chunks(ROWS_PER_STATEMENT / 7) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO suppressions (tenant_id, address, reason, source, event_id, created_at, expires_at) ",
        );
        q.push_values(chunk, |mut b, (r, s, address, id)| {
            let e = r.event;
            b.push_bind(r.tenant)
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
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
