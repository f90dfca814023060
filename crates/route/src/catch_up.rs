//! The front line's record catching up from the spool. Its events are
//! written without waiting (the 250 promised the spool, not the record), so
//! a crash can lose the last of them. The spool keeps what they were made
//! from: every message record, and done records that carry the recipients'
//! final states; and it keeps a finished message's segments until the
//! record has written what happened to it (`retire_written`). On start,
//! [`catch_up`] writes what the record lacks: a `received` for a message it
//! does not know, and each relayed recipient's outcome it has not seen.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use queue::{Attempted, Entry, Journal, Spool};
use record::directory::Tenant;
use vocabulary::{RcptStatus, Route};

use crate::inbound::InboundRecord;

/// What [`catch_up`] wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Messages the record did not know.
    pub received: usize,
    /// Recipients whose outcome it had not seen.
    pub outcomes: usize,
}

/// Writes what the record lacks of the messages the spool still holds
/// (live and finished) and waits until it is written; the finished
/// messages' segments may go then ([`Spool::release_finished`]).
pub async fn catch_up(spool: &Spool, inbound: &InboundRecord) -> Result<CaughtUp, record::RecordError> {
    let live = spool.list().into_iter().map(|e| (e, false));
    let entries: Vec<(Entry, bool)> = live
        .chain(spool.finished().into_iter().map(|e| (e, true)))
        // An application's is recorded before its 202 (`outbox::reconcile`);
        // a DSN of ours (no trace header) as the original's `dsn_sent`.
        .filter(|(e, _)| !e.envelope.rcpts.iter().any(|r| matches!(r.route, Route::Outbound { .. })))
        .filter(|(e, _)| !e.trace.is_empty())
        .collect();
    let ids: Vec<String> = entries.iter().map(|(e, _)| e.id.to_string()).collect();
    let known: HashSet<String> = inbound.record().events.known_messages(&ids).await?.into_iter().collect();
    let mut done = CaughtUp::default();
    for ((entry, finished), id) in entries.iter().zip(ids) {
        let is_known = known.contains(&id);
        if !is_known {
            let content = spool.content(entry.content).unwrap_or_default();
            inbound.keep(inbound.received_at(entry, &content));
            done.received += 1;
        }
        if *finished {
            let seen = match is_known {
                true => inbound.record().events.find_message(&id).await?,
                false => None,
            };
            done.outcomes += outcomes(inbound, entry, seen).await?;
        }
    }
    inbound.flush().await;
    Ok(done)
}

/// The final outcomes of a finished message's recipients that the record
/// has not seen (every one, for a message it did not know).
async fn outcomes(
    inbound: &InboundRecord,
    entry: &Entry,
    known: Option<(Tenant, String)>,
) -> Result<usize, record::RecordError> {
    let seen: Vec<String> = match known {
        Some((tenant, id)) => match inbound.record().events.message(&tenant, &id, None).await? {
            Some(view) => view.recipients.into_iter().map(|r| r.status).collect(),
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let before = RcptStatus::Scheduled;
    let missing: Vec<Attempted<'_>> = entry
        .envelope
        .rcpts
        .iter()
        .enumerate()
        .filter(|(idx, r)| {
            r.status.is_terminal()
                && !matches!(r.route, Route::Quarantine { .. } | Route::Folder { .. })
                && seen.get(*idx).is_none_or(|s| matches!(s.as_str(), "received" | "deferred"))
        })
        .map(|(idx, rcpt)| Attempted { idx, rcpt, was: &before, remote: "", tls: None })
        .collect();
    inbound.attempted(entry.id, &entry.envelope, &missing);
    Ok(missing.len())
}

/// Lets the spool delete the segments it kept for the record, once the
/// record has written everything handed to it before they were freed;
/// every `every` until the task is aborted.
pub async fn retire_written(spool: Arc<Spool>, inbound: InboundRecord, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let segments = spool.retiring();
        if segments.is_empty() {
            continue;
        }
        inbound.flush().await;
        if let Err(e) = spool.retire(&segments) {
            tracing::warn!(error = %e, "cannot delete spool segments the record is done with");
        }
    }
}
