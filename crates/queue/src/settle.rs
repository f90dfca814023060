//! What one attempt made of a message's recipients: each recipient's new
//! state from its route's reply (a permanent refusal nobody can be told of
//! is held, never dropped), logged, and what the journal is told.

use vocabulary::{Envelope, QueueId, RcptStatus, Recipient, Reply};

use crate::journal::Attempted;
use crate::routes::{Concurrency, DsnPolicy, RouteSpec};
use crate::scheduler::{AttemptOutcome, AttemptResult};
use crate::spool::{Entry, with_status};

/// What one attempt made of a message's recipients.
pub(crate) struct Settled {
    pub(crate) rcpts: Vec<Recipient>,
    /// Indexes of the recipients this attempt tried.
    pub(crate) attempted: Vec<usize>,
    /// For each of `attempted`: its route's remote host and TLS version.
    pub(crate) via: Vec<(String, Option<String>)>,
    pub(crate) any_delivered: bool,
    pub(crate) connection_failed: bool,
    pub(crate) remote: String,
    /// The relay's downstream took the sender's DSN requests.
    pub(crate) downstream_dsn: bool,
}

impl Settled {
    /// Every recipient as the spool has it, none attempted.
    pub(crate) fn unattempted(entry: &Entry) -> Self {
        Settled {
            rcpts: entry.envelope.rcpts.clone(),
            attempted: Vec::new(),
            via: Vec::new(),
            any_delivered: false,
            connection_failed: false,
            remote: String::new(),
            downstream_dsn: false,
        }
    }
}

impl Settled {
    /// What the journal is told: each attempted recipient as it is left.
    pub(crate) fn attempts<'s>(&'s self, before: &'s Envelope) -> Vec<Attempted<'s>> {
        self.attempted
            .iter()
            .zip(&self.via)
            .map(|(&idx, (remote, tls))| Attempted {
                idx,
                rcpt: &self.rcpts[idx],
                was: &before.rcpts[idx].status,
                remote,
                tls: tls.as_deref(),
            })
            .collect()
    }
}

/// Each attempted recipient's new state from its route's reply, logged.
pub(crate) fn settle(
    entry: &Entry,
    results: &[(&RouteSpec, Vec<usize>, AttemptResult)],
    expired: bool,
) -> Settled {
    let mut s = Settled::unattempted(entry);
    for (spec, idx, result) in results {
        let downstream = spec.concurrency == Concurrency::Downstream;
        if downstream {
            s.connection_failed = matches!(result.outcome, AttemptOutcome::Failed(_));
            s.remote = result.remote.clone();
            s.downstream_dsn = result.downstream_dsn;
        }
        for (n, &i) in idx.iter().enumerate() {
            s.attempted.push(i);
            s.via.push((result.remote.clone(), result.tls.clone()));
            let reply = match &result.outcome {
                AttemptOutcome::PerRecipient(replies) => replies
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| Reply::new(451, "4.3.0", "no reply for this recipient")),
                AttemptOutcome::Failed(reply) => reply.clone(),
            };
            let status = status_of(reply, spec.dsn, entry.envelope.is_null_sender(), expired);
            s.any_delivered |= downstream && matches!(status, RcptStatus::Delivered { .. });
            let r = with_status(s.rcpts[i].clone(), status);
            log_attempt(entry.id, &r, result);
            s.rcpts[i] = r;
        }
    }
    s
}

/// A recipient's state after a reply. A permanent refusal that nobody can
/// be told about (the relayed original of a `<>` sender, a store copy) is a
/// dead letter, held, never dropped.
fn status_of(reply: Reply, dsn: DsnPolicy, null_sender: bool, expired: bool) -> RcptStatus {
    let untold = dsn == DsnPolicy::Nobody || (dsn == DsnPolicy::Sender && null_sender);
    if reply.is_positive() {
        RcptStatus::Delivered { reply }
    } else if reply.is_permanent() && untold {
        RcptStatus::Held { reply }
    } else if reply.is_permanent() {
        RcptStatus::Failed { reply }
    } else if expired {
        RcptStatus::Expired { reply }
    } else {
        RcptStatus::TempFail { reply }
    }
}

fn log_attempt(id: QueueId, r: &Recipient, result: &AttemptResult) {
    let reply = r.status.reply().map(ToString::to_string).unwrap_or_default();
    let tls = result.tls.as_deref().unwrap_or("none");
    let (rcpt, route, status, attempt) = (&r.address, &r.route, r.status.name(), r.attempts);
    // The event schema's name for it (`relayed`, `refused`, `filed`, ...),
    // as the record and the API say it.
    let event = r.event().map_or("", |e| e.as_str());
    match r.status {
        // Every message that will not arrive is said at WARN.
        RcptStatus::Failed { .. } | RcptStatus::Expired { .. } | RcptStatus::Held { .. } => tracing::warn!(
            target: "sluice::delivery", queue_id = %id, %rcpt, ?route, event, status, attempt,
            remote = %result.remote, tls, %reply, "delivery attempt"
        ),
        _ => tracing::info!(
            target: "sluice::delivery", queue_id = %id, %rcpt, ?route, event, status, attempt,
            remote = %result.remote, tls, %reply, "delivery attempt"
        ),
    }
    if matches!(r.status, RcptStatus::Held { .. }) {
        tracing::warn!(queue_id = %id, %rcpt, %reply,
            "dead letter held: refused for good and no DSN is possible; `sluice queue release` retries it");
    }
}
