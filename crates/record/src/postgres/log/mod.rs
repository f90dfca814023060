//! The event log on PostgreSQL. An API's sends and events are committed
//! together by a task (`group.rs`), each answered once durable; the front
//! line's events, which nobody waits for, are gathered by a task of their
//! own and written a tick's worth at a time.

mod group;
mod query;
mod write;

pub(in crate::postgres) use group::{Write, run as run_writes};

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::Postgres;
use crate::RecordError;
use crate::events::{Describe, NewEvent, NewMessage, now_ms};

/// How often the front line's events are written.
const TICK: Duration = Duration::from_millis(100);

/// Months of event partitions made ahead of the current one.
const MONTHS_AHEAD: i32 = 2;

/// The advisory lock nodes forgetting old months take turns under.
const RETENTION_LOCK: i64 = 0x511CF;

/// What the front line hands the writer task.
pub(in crate::postgres) enum Note {
    Message(Describe),
    Event(Box<NewEvent>),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

impl Postgres {
    pub(in crate::postgres) async fn accept_message(&self, msg: NewMessage) -> Result<(), RecordError> {
        let (answer, done) = oneshot::channel();
        self.writes.send(vec![Write::Accept(Box::new(msg), answer)]).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    pub(in crate::postgres) async fn record_event(&self, event: NewEvent) -> Result<i64, RecordError> {
        let (answer, done) = oneshot::channel();
        self.writes.send(vec![Write::Event(Box::new(event), answer)]).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Appends events in one transaction, all or none; each must name its
    /// tenant (an event without one could fail alone).
    pub(in crate::postgres) async fn record_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<i64>, RecordError> {
        if events.iter().any(|e| e.tenant.is_none()) {
            return Err(RecordError::Invalid("events recorded together must name their tenant".into()));
        }
        let (writes, answers): (Vec<_>, Vec<_>) = events
            .into_iter()
            .map(|e| {
                let (answer, done) = oneshot::channel();
                (Write::Event(Box::new(e), answer), done)
            })
            .unzip();
        self.writes.send(writes).await.map_err(|_| stopped())?;
        let mut ids = Vec::with_capacity(answers.len());
        for done in answers {
            ids.push(done.await.map_err(|_| stopped())??);
        }
        Ok(ids)
    }

    pub(in crate::postgres) fn send_note(&self, note: Note) {
        if self.notes.send(note).is_err() {
            tracing::error!("the record's front-line writer stopped: an event is not recorded");
        }
    }

    pub(in crate::postgres) async fn flush_notes(&self) {
        let (tx, done) = oneshot::channel();
        self.send_note(Note::Flush(tx));
        let _ = done.await;
    }

    /// Drops the event partitions of the months before `month`, and
    /// deletes from the default partition what is older; how many events
    /// went. Their shared recipients' rows go too.
    pub(in crate::postgres) async fn drop_months_before(&self, month: i64) -> Result<u64, RecordError> {
        let month = crate::events::month_start(month);
        let mut tx = self.pool.begin().await?;
        // Nodes forgetting at once take turns: the second finds nothing left.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(RETENTION_LOCK).execute(&mut *tx).await?;
        // Each partition's upper bound, from the catalogue's bound expression.
        let partitions: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut gone = 0u64;
        for (name, bound) in partitions {
            let Some(upper) = partition_upper(&bound) else { continue };
            if upper > month {
                continue;
            }
            let (n, high): (i64, Option<i64>) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*), MAX(id) FROM \"{name}\"")))
                    .fetch_one(&mut *tx)
                    .await?;
            // A name from the catalogue: one of ours, events_YYYY_MM.
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{name}\""))).execute(&mut *tx).await?;
            gone += n as u64;
            forget_shared(&mut tx, high).await?;
        }
        let ids: Vec<i64> = sqlx::query_scalar("DELETE FROM events_default WHERE at < $1 RETURNING id")
            .bind(month)
            .fetch_all(&mut *tx)
            .await?;
        gone += ids.len() as u64;
        forget_shared(&mut tx, ids.into_iter().max()).await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// Makes this month's event partition and the next ones, if missing.
    pub(in crate::postgres) async fn partitions_ahead(pool: &PgPool) -> Result<(), RecordError> {
        sqlx::query("SELECT sluice_event_partitions($1, $2)")
            .bind(now_ms())
            .bind(MONTHS_AHEAD)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// A range partition's upper bound (ms), from `FOR VALUES FROM (a) TO (b)`;
/// `None` for the default partition.
fn partition_upper(bound: &str) -> Option<i64> {
    let to = bound.split(" TO (").nth(1)?;
    to.trim_end_matches(')').trim().trim_matches('\'').parse().ok()
}

/// Deletes the shared recipients' rows of events that are gone, up to `high`.
async fn forget_shared(tx: &mut sqlx::PgConnection, high: Option<i64>) -> Result<(), sqlx::Error> {
    let Some(high) = high else { return Ok(()) };
    sqlx::query(
        "DELETE FROM event_rcpts r WHERE r.event_id <= $1 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = r.event_id)",
    )
    .bind(high)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn stopped() -> RecordError {
    RecordError::Unavailable("the record writer stopped".into())
}

/// Front-line writes kept while the database cannot be written, at most;
/// past it the oldest are dropped (counted, at WARN). The mail itself is
/// in the spool either way.
const BACKLOG_MAX: usize = 1_000_000;

/// The front line's writes not yet in the database.
#[derive(Default)]
struct Backlog {
    messages: Vec<NewMessage>,
    events: Vec<NewEvent>,
    /// Since when writing has failed (ms), if it has.
    failing_since: Option<i64>,
    dropped: u64,
}

/// Writes the front line's notes once a tick, in one transaction, until
/// every sender is gone; makes the coming months' partitions once a day.
/// While the database cannot be written, the notes wait here and go in
/// once it can: the record catches up.
pub(in crate::postgres) async fn run_notes(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Note>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_partitions = now_ms();
    let mut backlog = Backlog::default();
    loop {
        tick.tick().await;
        let mut flushes = Vec::new();
        let open = loop {
            match rx.try_recv() {
                Ok(Note::Message(describe)) => backlog.messages.push(describe()),
                Ok(Note::Event(e)) => backlog.events.push(*e),
                Ok(Note::Flush(tx)) => flushes.push(tx),
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        if !backlog.messages.is_empty() || !backlog.events.is_empty() {
            backlog.write(&pool).await;
        }
        // Answered once written, or once writing failed: a flush waits for
        // the database no longer than one attempt.
        for f in flushes {
            let _ = f.send(());
        }
        if now_ms() - last_partitions > 86_400_000 {
            last_partitions = now_ms();
            if let Err(e) = Postgres::partitions_ahead(&pool).await {
                tracing::warn!(error = %e, "cannot make the coming months' event partitions");
            }
        }
        if !open {
            return;
        }
    }
}

/// Whether an error says the database could not be reached (worth
/// waiting for), not that it refused what was written.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            true
        }
        sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
        // Connection exceptions (class 08), and a server shutting down or
        // starting (57P01-57P03).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

impl Backlog {
    async fn write(&mut self, pool: &PgPool) {
        match write::committed(pool, &self.messages, &self.events).await {
            Ok(w) => {
                crate::metrics::batch("front", self.messages.len() + self.events.len());
                for (e, r) in self.events.iter().zip(w.events) {
                    if let Err(why) = r {
                        tracing::debug!(message = %e.message, error = %why, "front-line event not recorded");
                    }
                }
                if let Some(since) = self.failing_since.take() {
                    tracing::warn!(
                        writes = self.messages.len() + self.events.len(),
                        after_ms = now_ms() - since,
                        "the database is back: the front line's record caught up"
                    );
                }
                self.messages.clear();
                self.events.clear();
            }
            Err(e) if unreachable(&e) => {
                if self.failing_since.is_none() {
                    self.failing_since = Some(now_ms());
                    tracing::warn!(error = %e, "the front line's record cannot be written: kept until it can");
                }
                self.cap();
            }
            // The database refused these writes themselves: trying them
            // again would refuse them again, and hold up every later one.
            Err(e) => {
                let writes = self.messages.len() + self.events.len();
                tracing::error!(error = %e, writes, "the database refused a batch of the front line's record");
                self.messages.clear();
                self.events.clear();
            }
        }
    }

    /// Drops the oldest writes past `BACKLOG_MAX`.
    fn cap(&mut self) {
        let over = (self.messages.len() + self.events.len()).saturating_sub(BACKLOG_MAX);
        if over == 0 {
            return;
        }
        let from_events = over.min(self.events.len());
        self.events.drain(..from_events);
        self.messages.drain(..(over - from_events).min(self.messages.len()));
        self.dropped += over as u64;
        tracing::warn!(
            dropped = self.dropped,
            "the database has been down too long: front-line events are not recorded"
        );
    }
}
