//! The API's writes on PostgreSQL, committed together: whatever sends and
//! events arrive while a transaction commits go into the next one, so many
//! requests at once pay one commit (one WAL flush) and one statement per
//! table, not one each. Each write still has its own answer: an
//! idempotency key taken meanwhile fails its send alone.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::write;
use crate::RecordError;
use crate::events::{NewEvent, NewMessage};

pub(in crate::postgres) enum Write {
    Accept(Box<NewMessage>, oneshot::Sender<Result<(), RecordError>>),
    Event(Box<NewEvent>, oneshot::Sender<Result<i64, RecordError>>),
}

/// Writes in one transaction, at most.
const BATCH: usize = 512;

/// Runs the writer. What arrives together (one `Vec`: a provider's
/// webhook body's events) is written in one transaction, never split.
pub(in crate::postgres) async fn run(pool: PgPool, mut rx: mpsc::Receiver<Vec<Write>>) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.extend(w),
                Err(_) => break,
            }
        }
        commit(&pool, batch).await;
    }
}

async fn commit(pool: &PgPool, batch: Vec<Write>) {
    let (mut messages, mut accepted) = (Vec::new(), Vec::new());
    let (mut events, mut recorded) = (Vec::new(), Vec::new());
    for w in batch {
        match w {
            Write::Accept(m, answer) => {
                messages.push(*m);
                accepted.push(answer);
            }
            Write::Event(e, answer) => {
                events.push(*e);
                recorded.push(answer);
            }
        }
    }
    crate::metrics::batch("api", messages.len() + events.len());
    match write::committed(pool, &messages, &events).await {
        Ok(w) => {
            for (answer, r) in accepted.into_iter().zip(w.messages) {
                let _ = answer.send(r);
            }
            for (answer, r) in recorded.into_iter().zip(w.events) {
                let _ = answer.send(r);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, writes = messages.len() + events.len(), "record batch failed");
            let why = e.to_string();
            for answer in accepted {
                let _ = answer.send(Err(RecordError::Unavailable(why.clone())));
            }
            for answer in recorded {
                let _ = answer.send(Err(RecordError::Unavailable(why.clone())));
            }
        }
    }
}
