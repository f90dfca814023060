//! The event log as its users see it: what a message was, what happened
//! to each of its recipients (in the event schema's words,
//! `vocabulary::EventKind`), read back as a message's timeline, an
//! address's history or a page of events. [`EventLog`] is what a backend
//! implements; the SQLite one is `crate::sqlite::Log`.
//!
//! The log is append-only: a query with `as_of` answers from the events
//! known at that time.

use serde::{Deserialize, Serialize};

use crate::directory::Tenant;
use crate::suppress::Suppression;
use crate::{BoxFuture, RecordError};

pub use vocabulary::{Direction, EventKind};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// Milliseconds since the Unix epoch: the record's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Addresses are compared and stored lower-case (what every provider's
/// suppression list does; local parts that differ only by case are the same
/// mailbox in practice).
pub fn normalize(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

/// Idempotency key, hash of the request, and the response to replay.
pub type Idempotency = (String, Vec<u8>, String);

/// A message the API or submission accepted, or one the front line received.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant: i64,
    /// Which way it came: `Outbound` from an application, `Inbound` from
    /// the MX listener.
    pub direction: Direction,
    /// The Message-ID header, without angle brackets.
    pub message_id: Option<String>,
    pub mail_from: String,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    /// An application's recipients, each with its first event. A received
    /// message has none here: it gets one `received` event of its own,
    /// whose `detail` lists its recipients (`recipients`: address and
    /// kind, by index), and its recipients' states are read from their
    /// events. Fewer rows per message is what keeps the front line's
    /// record cheap.
    pub recipients: Vec<NewRecipient>,
    pub at: i64,
    /// What the first events carry (a received message's peer, size, TLS
    /// and recipients).
    pub detail: Option<serde_json::Value>,
    /// The request's idempotency key, if it came with one.
    pub idempotency: Option<Idempotency>,
}

impl NewMessage {
    /// Its first events, as every backend records them with it: each
    /// recipient's (an application's), or the one `received` of a message
    /// the front line took. They carry the message's `detail` when stored.
    pub(crate) fn first_events(&self) -> Vec<NewEvent> {
        let first = |idx: Option<usize>, address: Option<&str>, kind, reason: Option<&String>| NewEvent {
            tenant: Some(self.tenant),
            message: self.id.clone(),
            idx: idx.map(|i| i as i64),
            address: address.map(str::to_string),
            kind,
            at: self.at,
            reason: reason.cloned(),
            smtp: None,
            detail: None,
            suppress: None,
            source: None,
            group: Vec::new(),
        };
        if self.direction == Direction::Inbound {
            return vec![first(None, None, EventKind::Received, None)];
        }
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, r)| first(Some(i), Some(&r.address), r.status, r.reason.as_ref()))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub address: String,
    /// `to`, `cc` or `bcc` from an application; `rcpt` (an envelope
    /// recipient) or `copy` (a store account's copy) at the front line.
    pub kind: String,
    /// `Queued`, `Suppressed`, `Invalid` or `Received`.
    pub status: EventKind,
    pub reason: Option<String>,
}

/// The SMTP response of one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpResponse {
    pub code: Option<u16>,
    pub status: Option<String>,
    pub text: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
}

/// Adds the recipient's address to the tenant's suppression list.
#[derive(Debug, Clone)]
pub struct Suppress {
    pub reason: String,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The tenant, or `None` for the tenant the message was recorded
    /// under (the front line's events; an event of a message never
    /// recorded is dropped).
    pub tenant: Option<i64>,
    pub message: String,
    pub idx: Option<i64>,
    pub address: Option<String>,
    pub kind: EventKind,
    pub at: i64,
    pub reason: Option<String>,
    pub smtp: Option<SmtpResponse>,
    pub detail: Option<serde_json::Value>,
    pub suppress: Option<Suppress>,
    /// What produced it, when it could be produced twice (work repeated
    /// after a crash): [`EventLog::recorded`] finds it.
    pub source: Option<String>,
    /// The recipients of an event that is the same for several of them
    /// (one attempt's one reply to all of a transaction's recipients): it
    /// is stored once, naming no one (`idx`, `address` None), and read
    /// back as each one's. Empty for an event of one recipient (`idx`) or
    /// of the whole message.
    pub group: Vec<Addressee>,
}

impl NewEvent {
    /// The recipients (by index) whose status it sets: the one it names,
    /// or each of its group.
    pub fn idxs(&self) -> impl Iterator<Item = i64> + '_ {
        self.idx.into_iter().chain(self.group.iter().map(|a| a.0))
    }

    /// The addresses it may suppress: the one it names, or each of its group's.
    pub fn addresses(&self) -> impl Iterator<Item = &str> + '_ {
        self.address.as_deref().into_iter().chain(self.group.iter().map(|a| a.1.as_str()))
    }
}

/// A shared event's recipients as a backend stores them (JSON
/// `[[idx, address], ...]`, addresses normalized).
pub(crate) fn stored_group(group: &[Addressee]) -> String {
    let normalized: Vec<Addressee> =
        group.iter().map(|Addressee(i, a)| Addressee(*i, normalize(a))).collect();
    serde_json::to_string(&normalized).unwrap_or_default()
}

/// One recipient of an event that several share: its index among the
/// message's recipients, and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addressee(pub i64, pub String);

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub message: String,
    pub idx: Option<i64>,
    pub address: Option<String>,
    /// One of the event schema's names (`docs/events.md`).
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub reason: Option<String>,
    pub smtp_code: Option<i64>,
    pub smtp_status: Option<String>,
    pub smtp_text: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
    pub detail: Option<String>,
    /// As a backend reads it: the recipients of a row that several share
    /// ([`NewEvent::group`]). What an [`EventLog`] answers never has one:
    /// each such row is read as each recipient's ([`EventRow::expand`]).
    pub group: Vec<Addressee>,
}

impl EventRow {
    /// This event as recipient `idx`'s: itself when it names that
    /// recipient or the whole message, narrowed to it when several share
    /// it, `None` when it is another recipient's.
    pub fn for_recipient(&self, idx: i64) -> Option<EventRow> {
        if self.group.is_empty() {
            return self.idx.is_none_or(|i| i == idx).then(|| self.clone());
        }
        let a = self.group.iter().find(|a| a.0 == idx)?;
        Some(EventRow { idx: Some(a.0), address: Some(a.1.clone()), group: Vec::new(), ..self.clone() })
    }

    /// The events a stored row stands for, in recipient order: one per
    /// recipient when several share it (all with the row's id), else itself.
    pub fn expand(mut self) -> Vec<EventRow> {
        let group = std::mem::take(&mut self.group);
        if group.is_empty() {
            return vec![self];
        }
        group
            .into_iter()
            .map(|Addressee(idx, address)| EventRow {
                idx: Some(idx),
                address: Some(address),
                ..self.clone()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct RecipientView {
    pub address: String,
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub updated_at: i64,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: String,
    /// `inbound` (the front line's) or `outbound` (an application's).
    pub direction: Direction,
    pub message_id: Option<String>,
    pub from: String,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub tags: serde_json::Value,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub recipients: Vec<RecipientView>,
}

#[derive(Debug, Clone)]
pub struct RecipientHistory {
    pub address: String,
    pub suppression: Option<Suppression>,
    /// Newest first.
    pub events: Vec<EventRow>,
    /// Pass as `cursor` for older events.
    pub next_cursor: Option<i64>,
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub kind: Option<EventKind>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub recipient: Option<String>,
    pub tag: Option<String>,
    pub message: Option<String>,
    /// Only events with this reason (`userunknown`, `mailboxfull`, ...).
    pub reason: Option<String>,
    /// Only events of messages whose subject or sender contains this
    /// (any case): the dashboard's search box, `GET /v1/events?q=`.
    /// Messages are looked for from `TEXT_LOOKBACK_MS` before `since`.
    pub text: Option<String>,
    /// Only events of this flow's types (`EventKind::direction`; a type
    /// of both flows, `deferred`, is in either).
    pub direction: Option<Direction>,
    /// Only events whose source starts with this (`provider:ses:`: what a
    /// provider's webhooks brought in).
    pub source_prefix: Option<String>,
    /// Events after this id.
    pub cursor: Option<i64>,
    pub limit: u32,
}

/// How long before an [`EventQuery`]'s `since` its `text` looks for
/// messages: a bounce or a complaint comes days after its message.
pub const TEXT_LOOKBACK_MS: i64 = 7 * 24 * 3600 * 1000;

/// A message's row as stored, without its recipients.
#[derive(Debug, Clone)]
pub struct MessageHead {
    pub id: String,
    pub direction: Direction,
    pub message_id: Option<String>,
    pub from: String,
    pub subject: Option<String>,
    pub stream: Option<String>,
    /// JSON text, as stored.
    pub tags: String,
    pub metadata: String,
    pub created_at: i64,
}

/// A recipient's row as stored: its current status and when it was set.
#[derive(Debug, Clone)]
pub struct RecipientRow {
    pub idx: i64,
    pub address: String,
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub updated_at: i64,
}

impl MessageView {
    /// A message's view from what a backend read: its head, its
    /// recipients' stored rows (`None` for a received message, whose
    /// recipients its `received` event lists and whose states are read
    /// from their events) and its events up to `as_of`, in order. Read the
    /// stored rows before the events: an event is then never older than
    /// the status it set.
    pub fn assemble(
        head: MessageHead,
        stored: Option<Vec<RecipientRow>>,
        events: Vec<EventRow>,
        as_of: Option<i64>,
    ) -> MessageView {
        // A recipient's status before any event: how its message came in.
        let first = match head.direction {
            Direction::Inbound => EventKind::Received,
            _ => EventKind::Queued,
        };
        let derive = as_of.is_some() || stored.is_none();
        let rcpts = stored.unwrap_or_else(|| inbound_recipients(&events, head.created_at));
        let recipients = rcpts
            .into_iter()
            .map(|r| {
                // A message's own events (idx NULL) are each recipient's
                // too; a shared one is each of its group's.
                let events: Vec<EventRow> = events.iter().filter_map(|e| e.for_recipient(r.idx)).collect();
                let (status, reason, updated_at) = match derive {
                    false => (r.status, r.reason, r.updated_at),
                    true => events
                        .iter()
                        .rev()
                        .find(|e| e.kind.sets_status())
                        .map(|e| (e.kind.as_str().to_string(), e.reason.clone(), e.at))
                        .unwrap_or((first.as_str().into(), None, head.created_at)),
                };
                RecipientView { address: r.address, kind: r.kind, status, reason, updated_at, events }
            })
            .collect();
        MessageView {
            id: head.id,
            direction: head.direction,
            message_id: head.message_id,
            from: head.from,
            subject: head.subject,
            stream: head.stream,
            tags: serde_json::from_str(&head.tags).unwrap_or_default(),
            metadata: serde_json::from_str(&head.metadata).unwrap_or_default(),
            created_at: head.created_at,
            recipients,
        }
    }
}

/// A received message's recipients, from its `received` event's list.
fn inbound_recipients(events: &[EventRow], created_at: i64) -> Vec<RecipientRow> {
    let listed = events
        .iter()
        .find(|e| e.kind == EventKind::Received && e.idx.is_none() && e.group.is_empty())
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e.detail.as_deref()?).ok());
    let Some(serde_json::Value::Array(rcpts)) = listed.map(|mut d| d["recipients"].take()) else {
        return Vec::new();
    };
    rcpts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            RecipientRow {
                idx: i as i64,
                address: field("address"),
                kind: field("kind"),
                status: EventKind::Received.as_str().into(),
                reason: None,
                updated_at: created_at,
            }
        })
        .collect()
}

/// What an open or a click is about ([`EventLog::tracking_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackTarget {
    pub tenant: i64,
    pub address: String,
    /// Where the link leads; `None` for an open or an unknown link.
    pub url: Option<String>,
    /// When the recipient's server (or the smart host) took it, ms, while
    /// that is its status (a later bounce or complaint hides it).
    pub delivered_at: Option<i64>,
    /// How many tracked links the message has.
    pub links: i64,
}

/// A provider's message id and the message of ours it names, by the
/// Message-ID header we sent it with ([`EventLog::by_message_id`] finds it
/// and the recipient).
#[derive(Debug, Clone)]
pub struct ProviderLink {
    pub provider: String,
    pub provider_id: String,
    pub tenant: i64,
    pub message_id: String,
    pub at: i64,
}

/// Describes a received message on the writer's side (reading its headers
/// is work the front line need not wait for).
pub type Describe = Box<dyn FnOnce() -> NewMessage + Send + Sync>;

/// The event log: messages, their recipients' states, and every event.
pub trait EventLog: Send + Sync + 'static {
    /// Records an accepted message, its recipients and their first events
    /// (and its idempotency key) durably. Fails with
    /// [`RecordError::Conflict`] when the idempotency key was taken meanwhile.
    fn accept(&self, msg: NewMessage) -> Res<'_, ()>;
    /// Appends an event (and applies its status and suppression); its id.
    fn record(&self, event: NewEvent) -> Res<'_, i64>;
    /// Records a message the front line received (when, in ms), without
    /// waiting: the spool already holds the message itself.
    fn note_message(&self, at: i64, describe: Describe);
    /// Appends a front-line event, without waiting.
    fn note(&self, event: NewEvent);
    /// Waits until every write queued before this call is committed (or
    /// failed), the front line's too.
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// A stored response for an idempotency key: the request's hash and
    /// the response body given the first time.
    fn idempotent<'a>(&'a self, tenant: i64, key: &'a str) -> Res<'a, Option<(Vec<u8>, String)>>;
    /// A message with each recipient's status and timeline, as known at
    /// `as_of` (now when `None`).
    fn message<'a>(
        &'a self,
        tenant: &'a Tenant,
        id: &'a str,
        as_of: Option<i64>,
    ) -> Res<'a, Option<MessageView>>;
    /// One address's history across messages, newest first.
    fn recipient<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        as_of: Option<i64>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Res<'a, RecipientHistory>;
    /// A page of events in the order they were recorded, and the cursor of
    /// the next page when there is one.
    fn events<'a>(&'a self, tenant: &'a Tenant, q: &'a EventQuery) -> Res<'a, (Vec<EventRow>, Option<i64>)>;
    /// Whether a message is in the record.
    fn has_message<'a>(&'a self, id: &'a str) -> Res<'a, bool>;
    /// Which of `ids` are messages in the record (in a few queries, for
    /// a start that checks a whole spool).
    fn known_messages<'a>(&'a self, ids: &'a [String]) -> Res<'a, Vec<String>>;
    /// A message by our id or by its Message-ID header, in any tenant (for
    /// the operator's `sluice track`).
    fn find_message<'a>(&'a self, key: &'a str) -> Res<'a, Option<(Tenant, String)>>;
    /// The tenant and address of one recipient of a message (for an event
    /// that names the message and the recipient's index, as a VERP token does).
    fn recipient_of<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<(i64, String)>>;
    /// A recipient's status in the record (`queued`, `delivered`, ...).
    fn recipient_status<'a>(&'a self, message: &'a str, idx: i64) -> Res<'a, Option<String>>;
    /// Whether an event from `source` is recorded (work repeated after a
    /// crash is not recorded twice).
    fn recorded<'a>(&'a self, source: &'a str) -> Res<'a, bool>;
    /// The outbound message that carried this Message-ID, and the index of
    /// `address` among its recipients (for bounces that come back without
    /// a token): (tenant, message, idx).
    fn by_message_id<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
    ) -> Res<'a, Option<(i64, String, i64)>>;
    /// Appends events together or not at all (one transaction): a
    /// provider's webhook body is recorded whole or refused whole. Each
    /// must name its tenant. Their ids, in order.
    fn record_all(&self, events: Vec<NewEvent>) -> Res<'_, Vec<i64>>;
    /// Which of `sources` some recorded event came from (a provider's
    /// retried post is recorded once).
    fn recorded_sources<'a>(&'a self, sources: &'a [String]) -> Res<'a, Vec<String>>;
    /// Takes a one-time token a provider signed a post with (Mailgun's):
    /// false when it was taken before, a replay. Tokens taken before
    /// `forget_before` (ms) are forgotten.
    fn claim_nonce<'a>(
        &'a self,
        provider: &'a str,
        nonce: &'a str,
        at: i64,
        forget_before: i64,
    ) -> Res<'a, bool>;
    /// Gives a claimed token back (its post was not recorded after all,
    /// and the provider's retry carries it again).
    fn release_nonce<'a>(&'a self, provider: &'a str, nonce: &'a str) -> Res<'a, ()>;
    /// The (tenant, Message-ID) a provider's own message id names, once
    /// learnt ([`EventLog::link_provider_id`]).
    fn provider_message<'a>(&'a self, provider: &'a str, id: &'a str) -> Res<'a, Option<(i64, String)>>;
    /// Remembers which of our messages a provider's message id is.
    fn link_provider_id<'a>(&'a self, link: &'a ProviderLink) -> Res<'a, ()>;
    /// Keeps where each tracked link of a message leads (its number is its
    /// place in `urls`); before the message is accepted, so no click can
    /// come first.
    fn keep_links<'a>(&'a self, message: &'a str, urls: &'a [String]) -> Res<'a, ()>;
    /// What an open or a click of recipient `idx` of `message` needs: its
    /// tenant and address, where link `link` leads, and when it was
    /// delivered. `None` for a recipient the record does not have.
    fn tracking_target<'a>(
        &'a self,
        message: &'a str,
        idx: i64,
        link: Option<i64>,
    ) -> Res<'a, Option<TrackTarget>>;
    /// The record's retention: forgets the events of every month that
    /// began before `month` (ms, the first instant of a month, UTC);
    /// how many went. Messages stay. On PostgreSQL a month is a
    /// partition, and goes whole.
    fn forget_months_before(&self, month: i64) -> Res<'_, u64>;
    /// A tenant's statistics over a window (`crate::stats` says what each
    /// number counts), grouped as the query asks.
    fn stats<'a>(
        &'a self,
        tenant: &'a Tenant,
        q: &'a crate::stats::StatsQuery,
    ) -> Res<'a, crate::stats::Stats>;
}

/// The first instant (ms) of the month `at` (ms) falls in, UTC.
/// The start of the month `n` months before the month of `at` (UTC): the
/// cutoff that keeps this month and the `n` before it.
pub fn months_before(at: i64, n: u32) -> i64 {
    use chrono::{Months, TimeZone};
    let start = chrono::Utc.timestamp_millis_opt(month_start(at)).single().unwrap_or_default();
    start.checked_sub_months(Months::new(n)).map_or(i64::MIN, |m| m.timestamp_millis())
}

pub fn month_start(at: i64) -> i64 {
    use chrono::{Datelike, TimeZone};
    let t = chrono::Utc.timestamp_millis_opt(at).single().unwrap_or_default();
    chrono::Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map_or(at, |m| m.timestamp_millis())
}
