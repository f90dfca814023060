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
        self.writes.send(Write::Accept(Box::new(msg), answer)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    pub(in crate::postgres) async fn record_event(&self, event: NewEvent) -> Result<i64, RecordError> {
        let (answer, done) = oneshot::channel();
        self.writes.send(Write::Event(Box::new(event), answer)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
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

fn stopped() -> RecordError {
    RecordError::Unavailable("the record writer stopped".into())
}

/// Writes the front line's notes once a tick, in one transaction, until
/// every sender is gone; makes the coming months' partitions once a day.
pub(in crate::postgres) async fn run_notes(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Note>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_partitions = now_ms();
    loop {
        tick.tick().await;
        let mut notes = Vec::new();
        let open = loop {
            match rx.try_recv() {
                Ok(n) => notes.push(n),
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        if !notes.is_empty() {
            write_notes(&pool, notes).await;
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

async fn write_notes(pool: &PgPool, notes: Vec<Note>) {
    let (mut messages, mut events, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
    for n in notes {
        match n {
            Note::Message(describe) => messages.push(describe()),
            Note::Event(e) => events.push(*e),
            Note::Flush(tx) => flushes.push(tx),
        }
    }
    match write::committed(pool, &messages, &events).await {
        Ok(w) => {
            for (e, r) in events.iter().zip(w.events) {
                if let Err(why) = r {
                    tracing::debug!(message = %e.message, error = %why, "front-line event not recorded");
                }
            }
        }
        Err(e) => tracing::error!(error = %e, writes = messages.len() + events.len(), "record batch failed"),
    }
    for f in flushes {
        let _ = f.send(());
    }
}
