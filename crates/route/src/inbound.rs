//! The front line's record: every message the MX listener accepts is
//! `received`; the scheduler's journal adds each attempt of its original
//! (`relayed`, `deferred`, `refused`, `expired`, `held`) and each DSN
//! (`dsn_sent`); the quarantine transport adds `filed`, a release
//! `released`. The names are the event schema's (`docs/events.md`).
//!
//! Nobody waits for these writes: the 250 promised the spool, not the
//! record. They go into the record writer's next batch (group commit), so
//! the front line pays a channel send per event, not a transaction.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use queue::{Attempted, Journal};
use record::events::{
    Addressee, Direction, EventKind, NewEvent, NewMessage, RecipientView, SmtpResponse, now_ms,
};
use vocabulary::{Envelope, QueueId, RcptStatus, Recipient, Route};

/// The tenant that owns inbound mail no store account of a tenant claims.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Clone)]
pub struct InboundRecord {
    record: record::Store,
    default_tenant: i64,
    /// Store accounts that belong to a tenant: account -> tenant id.
    tenants: Arc<RwLock<HashMap<String, i64>>>,
}

/// A message's record prepared before the spool holds it, and kept
/// ([`InboundRecord::keep`]) once it does: nothing is recorded of mail the
/// spool refused.
pub struct Pending {
    /// When it arrived (ms).
    at: i64,
    /// Builds the message's record (reading its headers) on the record's
    /// writer, not on the front line.
    describe: Box<dyn FnOnce() -> NewMessage + Send + Sync>,
    events: Vec<NewEvent>,
}

impl Pending {
    /// Also records `events` (of this message) once it is kept.
    pub fn with_events(mut self, events: Vec<NewEvent>) -> Self {
        self.events.extend(events);
        self
    }

    /// What `describe` needs: the envelope and the header block (the
    /// record reads the Message-ID and the Subject), copied.
    /// It arrived at `at` (ms).
    fn new(
        id: QueueId,
        tenant: i64,
        envelope: &Envelope,
        content: &[u8],
        detail: serde_json::Value,
        at: i64,
    ) -> Self {
        let envelope = envelope.clone();
        // The header block (within the first 64 KiB): what the record reads.
        let head = &content[..content.len().min(64 * 1024)];
        let header = head[..deliver::dsn::header_end(head)].to_vec();
        Pending {
            at,
            describe: Box::new(move || message(id, tenant, &envelope, &header, detail, at)),
            events: Vec::new(),
        }
    }
}

/// Where a copy went, as the quarantine transport files it.
pub struct Filed<'a> {
    pub account: &'a str,
    pub folder: &'a str,
    pub uid: i64,
    pub verdict: &'a str,
    pub reason: Option<&'a str>,
}

impl InboundRecord {
    pub async fn open(record: record::Store) -> Result<Self, record::RecordError> {
        let default_tenant = record.directory.tenant(DEFAULT_TENANT).await?.id;
        let me = InboundRecord { record, default_tenant, tenants: Arc::default() };
        me.refresh().await;
        Ok(me)
    }

    async fn refresh(&self) {
        match self.record.directory.account_tenants().await {
            Ok(rows) => *self.tenants.write().unwrap_or_else(|e| e.into_inner()) = rows.into_iter().collect(),
            Err(e) => tracing::warn!(error = %e, "cannot read the store accounts' tenants"),
        }
    }

    /// Refreshes whenever the directory changes (on any node), and at
    /// least every `every`, until the task is aborted (`sluice account
    /// tenant` takes effect on a running server).
    pub async fn keep_fresh(self, every: Duration) {
        let mut changes = self.record.directory.changes();
        loop {
            record::directory::next_change(&mut changes, every).await;
            self.refresh().await;
        }
    }

    /// The tenant of an inbound message: that of the first store account
    /// taking a copy that belongs to one, else the default tenant.
    fn tenant_of(&self, envelope: &Envelope) -> i64 {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        envelope
            .rcpts
            .iter()
            .find_map(|r| match &r.route {
                Route::Quarantine { account } | Route::Folder { account, .. } => {
                    tenants.get(account).copied()
                }
                _ => None,
            })
            .unwrap_or(self.default_tenant)
    }

    /// The tenant whose policy applies to an inbound recipient: that of
    /// the store account named by the address, else of the one that takes
    /// its domain's copies, else the default tenant.
    pub fn rcpt_tenant(&self, address: &str) -> i64 {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let address = address.to_ascii_lowercase();
        tenants.get(&address).copied().unwrap_or(self.default_tenant)
    }

    /// `received`, for each recipient (and each store copy) of a message
    /// about to be spooled: who sent it, from where, how big, over what.
    /// Written by [`InboundRecord::keep`] once the spool has it.
    pub fn received(&self, id: QueueId, envelope: &Envelope, content: &[u8], tls: Option<&str>) -> Pending {
        let detail = received_detail(envelope, content.len(), tls);
        Pending::new(id, self.tenant_of(envelope), envelope, content, detail, now_ms())
    }

    /// `received` for a message the spool held before a restart that the
    /// record lost (a crash took its last writes): as of when it arrived,
    /// marked recovered.
    pub fn received_at(&self, entry: &queue::Entry, content: &[u8]) -> Pending {
        let envelope = &entry.envelope;
        let mut detail = received_detail(envelope, content.len(), None);
        detail["recovered"] = true.into();
        Pending::new(
            entry.id,
            self.tenant_of(envelope),
            envelope,
            content,
            detail,
            envelope.received_at * 1000,
        )
    }

    /// The record this writes to.
    pub fn record(&self) -> &record::Store {
        &self.record
    }

    /// Waits until everything noted so far is written.
    pub async fn flush(&self) {
        self.record.events.flush().await;
    }

    /// Records what [`InboundRecord::received`] or
    /// [`InboundRecord::released`] prepared.
    pub fn keep(&self, pending: Pending) {
        self.record.events.note_message(pending.at, pending.describe);
        for e in pending.events {
            self.record.events.note(e);
        }
    }
}

/// What `received` says of a message: who sent it, from where, how big,
/// over what.
fn received_detail(envelope: &Envelope, size: usize, tls: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "peer": envelope.peer,
        "helo": envelope.helo,
        "size": size,
        "tls": tls,
        "auth": envelope.auth_user,
    })
}

/// The record of an inbound message: its headers read, each recipient
/// (and each store copy) `received`.
fn message(
    id: QueueId,
    tenant: i64,
    envelope: &Envelope,
    content: &[u8],
    mut detail: serde_json::Value,
    at: i64,
) -> NewMessage {
    // Its recipients (and each store copy), by index, as the events name them.
    let recipients: Vec<serde_json::Value> = envelope
        .rcpts
        .iter()
        .map(|r| {
            let kind = match r.route {
                Route::Quarantine { .. } => "copy",
                Route::Folder { .. } => "folder",
                _ => "rcpt",
            };
            serde_json::json!({ "address": r.address.to_ascii_lowercase(), "kind": kind })
        })
        .collect();
    detail["recipients"] = serde_json::Value::Array(recipients);
    let headers = mail_parser::MessageParser::default().parse_headers(content);
    NewMessage {
        id: id.to_string(),
        tenant,
        direction: Direction::Inbound,
        message_id: headers.as_ref().and_then(|h| h.message_id()).map(str::to_string),
        mail_from: envelope.mail_from.clone(),
        subject: headers.as_ref().and_then(|h| h.subject()).map(str::to_string),
        stream: None,
        tags: Vec::new(),
        metadata: serde_json::json!({}),
        recipients: Vec::new(),
        at,
        detail: Some(detail),
        idempotency: None,
    }
}

impl InboundRecord {
    /// `filed` for a recipient filter mode sent to a folder (`Spam`,
    /// `Archive`): under the recipient's address.
    pub fn filed_for(&self, id: QueueId, envelope: &Envelope, route: &Route, address: &str, uid: i64) {
        let Route::Folder { account, folder } = route else { return };
        let Some(idx) = envelope.rcpts.iter().position(|r| &r.route == route && r.address == address) else {
            return;
        };
        self.record.events.note(NewEvent {
            detail: Some(serde_json::json!({ "account": account, "folder": folder, "uid": uid })),
            reason: Some(folder.to_ascii_lowercase()),
            ..event(id.to_string(), idx, address, EventKind::Filed)
        });
    }

    /// `filed`: a copy is in `account`'s folder, with its verdict.
    pub fn filed(&self, id: QueueId, envelope: &Envelope, filed: Filed<'_>) {
        let Some(idx) = envelope
            .rcpts
            .iter()
            .position(|r| matches!(&r.route, Route::Quarantine { account } if account == filed.account))
        else {
            return;
        };
        self.record.events.note(NewEvent {
            detail: Some(serde_json::json!({
                "account": filed.account,
                "folder": filed.folder,
                "uid": filed.uid,
                "verdict": filed.verdict,
            })),
            reason: filed.reason.map(str::to_string),
            ..event(id.to_string(), idx, filed.account, EventKind::Filed)
        });
    }

    /// `released` on each original recipient the copy goes back to, and
    /// the released message itself `received` (under the original's
    /// tenant), so both ends of a release can be followed.
    pub async fn released(
        &self,
        original: Option<&str>,
        new: (QueueId, &Envelope, &[u8]),
        from: Filed<'_>,
    ) -> Pending {
        let (new_id, envelope, content) = new;
        let mut tenant = self.default_tenant;
        let mut events = Vec::new();
        if let Some(original) = original {
            let mut rcpts = Vec::new();
            if let Ok(Some((t, _))) = self.record.events.find_message(original).await {
                tenant = t.id;
                if let Ok(Some(m)) = self.record.events.message(&t, original, None).await {
                    rcpts = m.recipients;
                }
            }
            let released = |r: &RecipientView| {
                r.kind == "rcpt" && envelope.rcpts.iter().any(|e| e.address.eq_ignore_ascii_case(&r.address))
            };
            for (idx, r) in rcpts.iter().enumerate().filter(|(_, r)| released(r)) {
                let address = &r.address;
                events.push(NewEvent {
                    detail: Some(serde_json::json!({
                        "account": from.account, "folder": from.folder, "uid": from.uid,
                        "queue_id": new_id.to_string(),
                    })),
                    ..event(original.to_string(), idx, address, EventKind::Released)
                });
            }
        }
        let detail = serde_json::json!({
            "peer": envelope.peer,
            "released_from": original,
            "account": from.account, "folder": from.folder, "uid": from.uid,
            "size": content.len(),
        });
        Pending { events, ..Pending::new(new_id, tenant, envelope, content, detail, now_ms()) }
    }
}

/// An event of the message's own tenant, now, for one recipient.
fn event(message: String, idx: usize, address: &str, kind: EventKind) -> NewEvent {
    NewEvent {
        tenant: None,
        message,
        idx: Some(idx as i64),
        address: Some(address.to_string()),
        kind,
        at: now_ms(),
        reason: None,
        smtp: None,
        detail: None,
        suppress: None,
        source: None,
        group: Vec::new(),
    }
}

/// An event of the message's own tenant, now, for these recipients: the
/// one it names, or a group several share.
fn shared(message: String, mut members: Vec<Addressee>, kind: EventKind) -> NewEvent {
    match members.len() {
        1 => {
            let Addressee(idx, address) = members.remove(0);
            event(message, idx as usize, &address, kind)
        }
        _ => NewEvent { idx: None, address: None, group: members, ..event(message, 0, "", kind) },
    }
}

/// The event a recipient's new state is, on a route the front line
/// records: the outbound route records itself (its transport knows a
/// smart host's `sent`), and a copy's `filed` is told by the quarantine
/// transport, with its folder and verdict.
fn kind_of(r: &Recipient) -> Option<EventKind> {
    match (r.event()?, &r.route) {
        (_, Route::Outbound { .. }) | (EventKind::Filed, _) => None,
        (kind, _) => Some(kind),
    }
}

impl Journal for InboundRecord {
    /// One event per outcome, not per recipient: the recipients of one
    /// attempt that got the same reply share one (a relay's ten recipients
    /// accepted by one DATA reply are one `relayed`).
    fn attempted(&self, id: QueueId, _envelope: &Envelope, rcpts: &[Attempted<'_>]) {
        let mut outcomes: Vec<(EventKind, &Attempted<'_>, Vec<Addressee>)> = Vec::new();
        for a in rcpts {
            let Some(kind) = kind_of(a.rcpt) else { continue };
            if kind == EventKind::Deferred && same_deferral(a.was, &a.rcpt.status) {
                continue;
            }
            let member = Addressee(a.idx as i64, a.rcpt.address.clone());
            match outcomes.iter_mut().find(|(k, first, _)| *k == kind && same_outcome(first, a)) {
                Some((_, _, members)) => members.push(member),
                None => outcomes.push((kind, a, vec![member])),
            }
        }
        let message = id.to_string();
        for (kind, a, members) in outcomes {
            let reply = a.rcpt.status.reply();
            let reason = reply
                .filter(|r| !r.is_positive())
                .map(|r| decide::reason_of_reply(&r.text, r.status.as_deref()).as_str().to_string());
            self.record.events.note(NewEvent {
                reason,
                smtp: reply.map(|r| SmtpResponse {
                    code: Some(r.code),
                    status: r.status.clone(),
                    text: Some(r.text.clone()),
                    remote: (!a.remote.is_empty()).then(|| a.remote.to_string()),
                    tls: a.tls.map(str::to_string),
                }),
                detail: Some(serde_json::json!({ "attempt": a.rcpt.attempts })),
                ..shared(message.clone(), members, kind)
            });
        }
    }

    fn dsn_queued(&self, id: QueueId, dsn: QueueId, rcpts: &[(usize, &Recipient)]) {
        let mut by_action: Vec<(&str, Vec<Addressee>)> = Vec::new();
        for (idx, r) in rcpts {
            let action = crate::relay::dsn_action(&r.status).0.as_str();
            let member = Addressee(*idx as i64, r.address.clone());
            match by_action.iter_mut().find(|(a, _)| *a == action) {
                Some((_, members)) => members.push(member),
                None => by_action.push((action, vec![member])),
            }
        }
        let (message, dsn) = (id.to_string(), dsn.to_string());
        for (action, members) in by_action {
            self.record.events.note(NewEvent {
                detail: Some(serde_json::json!({ "dsn_id": dsn, "action": action })),
                ..shared(message.clone(), members, EventKind::DsnSent)
            });
        }
    }
}

/// Whether two recipients' attempts came out the same: one reply, from
/// the same host, over the same TLS, on the same attempt.
fn same_outcome(a: &Attempted<'_>, b: &Attempted<'_>) -> bool {
    a.rcpt.status.reply() == b.rcpt.status.reply()
        && a.remote == b.remote
        && a.tls == b.tls
        && a.rcpt.attempts == b.rcpt.attempts
}

/// A deferral that says nothing new: deferred before with the same reply
/// (a downstream down for an hour retried every few minutes). The record
/// keeps the first and every change; the attempt count rides on the next
/// event that is recorded.
fn same_deferral(was: &RcptStatus, now: &RcptStatus) -> bool {
    matches!((was, now), (RcptStatus::TempFail { reply: a }, RcptStatus::TempFail { reply: b }) if a == b)
}
