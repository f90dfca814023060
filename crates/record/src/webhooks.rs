//! Webhooks out, as the record keeps them: each tenant's endpoints, the
//! deliveries queued to them from the event log, and the log of every
//! attempt. [`WebhooksOut`] is what a backend implements (one generic SQL
//! implementation serves both, `webhooks_sql.rs`); what a body says and
//! when to retry is the API's (`api/src/webhooks_out/`).
//!
//! **Tailing the event log.** Each endpoint keeps where it is in the log
//! ([`Tail`]). A scan reads the tenant's events after a position, of the
//! types the endpoint asked for, and queues one delivery per event (per
//! recipient for an event several recipients share) under a unique
//! (endpoint, event, member) key, so reading an event twice queues it once.
//! On SQLite ids are taken and committed in one order (one writer), so the
//! tail simply follows them. On PostgreSQL an id is taken when a row is
//! inserted and becomes visible when its transaction commits: id 7 can
//! appear after id 9 was read. So the tail keeps two positions: `head`,
//! the highest id read (scans read past it, fast), and `cursor`, below
//! which every event is surely queued. Every `lag` (30 s on PostgreSQL,
//! [`TAIL_LAG_PG_MS`]) a *sweep* reads again from the cursor (skipping what
//! is queued), and then moves the cursor to the head as it was at the
//! previous sweep, `mark`: every id up to it was taken before that sweep,
//! so its transaction has committed (or rolled back) since, unless it took
//! longer than the lag. An event that commits late is queued late, never
//! lost; the record's writers commit in milliseconds.
//!
//! **Claims.** Work is claimed through the database, never by a leader:
//! a scan claims an endpoint, a worker claims due deliveries, each with a
//! lease (a token and a time) taken in one `UPDATE ... WHERE id IN (SELECT
//! ... FOR UPDATE SKIP LOCKED) RETURNING`. A node killed mid-work leaves
//! its lease to expire, and another node (or the restarted one) takes it.
//! Whatever a stale holder writes after that is refused by the token.

use serde::Serialize;

use crate::events::{EventKind, EventRow};
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// How long after a sweep an event id taken before it must have committed
/// on PostgreSQL (ids commit out of order there; SQLite needs none).
pub const TAIL_LAG_PG_MS: i64 = 30_000;

/// How long a node holds an endpoint it scans before another may.
pub const SCAN_LEASE_MS: i64 = 30_000;

/// An endpoint's state: it receives events, or it was disabled (by a 410,
/// or after failing too long) until the tenant enables it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Enabled => "enabled",
            EndpointStatus::Disabled => "disabled",
        }
    }
}

/// Several events in one POST: at most `max_events`, waiting at most
/// `max_wait_ms` for more once one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Batch {
    pub max_events: u32,
    pub max_wait_ms: u32,
}

/// A tenant's endpoint as stored. Its `Debug` leaves the secrets out.
#[derive(Clone)]
pub struct Endpoint {
    /// `ep_` and 32 hex digits.
    pub id: String,
    pub tenant: i64,
    pub url: String,
    pub description: Option<String>,
    /// The types it receives; empty for all.
    pub events: Vec<EventKind>,
    /// `whsec_...`.
    pub secret: String,
    /// The secret before the last rotation, still signing until `.1` (ms).
    pub old_secret: Option<(String, i64)>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<i64>,
    /// Its first failed attempt since the last success.
    pub failing_since: Option<i64>,
    pub batch: Option<Batch>,
    pub created_at: i64,
}

impl Endpoint {
    /// Whether it receives events of this type.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }

    /// The secrets that sign at `now`: the current one, and the one
    /// before a rotation while it lasts.
    pub fn live_secrets(&self, now: i64) -> Vec<&str> {
        let old = self.old_secret.as_ref().filter(|(_, until)| *until > now).map(|(s, _)| s.as_str());
        std::iter::once(self.secret.as_str()).chain(old).collect()
    }
}

/// An endpoint to create (its `Debug` leaves the secret out).
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub tenant: i64,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<EventKind>,
    pub secret: String,
    pub batch: Option<Batch>,
    pub at: i64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("events", &self.events)
            .field("status", &self.status)
            .field("secret", &"…")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Where an endpoint is in the event log (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Every event up to here is queued.
    pub cursor: i64,
    /// The highest id read.
    pub head: i64,
    /// The head at the last sweep: the cursor moves here at the next one.
    pub mark: i64,
    /// When the last sweep was.
    pub mark_at: i64,
}

impl Tail {
    /// A tail that starts after `last` (the newest id at `at`): only later
    /// events are sent.
    pub fn starting(last: i64, at: i64) -> Tail {
        Tail { cursor: last, head: last, mark: last, mark_at: at }
    }

    /// Where a scan at `now` reads from, and whether it is a sweep (from
    /// the cursor, once every `lag`) rather than a read past the head.
    pub fn read_from(&self, now: i64, lag: i64) -> (i64, bool) {
        if now >= self.mark_at.saturating_add(lag) { (self.cursor, true) } else { (self.head, false) }
    }

    /// The tail after a scan at `now` that read `ids` (in order, at most
    /// `limit`) from [`Tail::read_from`]; `top` is the newest id in the
    /// whole log, read before them. A sweep completes when it read all
    /// there was, or past the mark: then the cursor moves to the mark and
    /// the head becomes the next mark.
    pub fn after(&self, now: i64, lag: i64, top: i64, ids: &[i64], limit: usize) -> Tail {
        let (_, sweep) = self.read_from(now, lag);
        let full = ids.len() >= limit && limit > 0;
        let last = ids.last().copied();
        // A full read stops at its last row; otherwise everything up to
        // `top` that was visible has been read.
        let reached = if full { last.unwrap_or(self.head) } else { top.max(last.unwrap_or(0)) };
        let head = self.head.max(reached);
        let mut next = Tail { head, ..*self };
        if sweep && (!full || last.is_some_and(|l| l >= self.mark)) {
            next.cursor = self.cursor.max(self.mark);
            next.mark = head;
            next.mark_at = now;
        }
        next
    }
}

/// An endpoint a node holds for a scan, until the lease runs out.
#[derive(Debug, Clone)]
pub struct ScanClaim {
    pub endpoint: Endpoint,
    pub tail: Tail,
    pub token: String,
}

/// What a scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Deliveries queued.
    pub queued: usize,
    /// It stopped at its limit: scan again at once.
    pub more: bool,
}

/// One delivery's id and body, made by the API from an event as it shows
/// it (`member` is the recipient's index when several share the event).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub webhook_id: String,
    pub body: String,
}

/// Makes a delivery of an event: (the event as one recipient's, member).
pub type Render = dyn Fn(&EventRow, Option<i64>) -> Rendered + Send + Sync;

/// What a replay re-queues.
#[derive(Debug, Clone, Copy)]
pub enum Replay {
    /// One event by id.
    Event(i64),
    /// Every event of the endpoint's types recorded (by its time, ms)
    /// from `since` until before `until`.
    Range { since: i64, until: i64 },
}

/// Events one replay may re-queue at most.
pub const MAX_REPLAY: usize = 50_000;

/// A delivery a worker claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub endpoint: String,
    pub event_id: i64,
    pub webhook_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub token: String,
}

/// The state a delivery is left in after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Tried again at this time (ms).
    RetryAt(i64),
    /// No retries left.
    Failed,
}

impl Next {
    pub fn outcome(self) -> &'static str {
        match self {
            Next::Delivered => "delivered",
            Next::RetryAt(_) => "retrying",
            Next::Failed => "failed",
        }
    }
}

/// One attempt as the delivery log shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attempt {
    pub id: i64,
    /// `attempt`, or what happened to the endpoint (`endpoint.disabled`).
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: Option<i64>,
    pub webhook_id: Option<String>,
    /// 1 for the first attempt of a delivery.
    pub attempt: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub url: Option<String>,
    pub response_status: Option<i64>,
    /// The first KiB of the response body.
    pub response_body: Option<String>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    /// `delivered`, `retrying` or `failed`.
    pub outcome: Option<String>,
}

/// What a worker reports after an attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery: i64,
    pub endpoint: String,
    pub token: String,
    pub log: Attempt,
    pub next: Next,
    /// The endpoint said it is gone (410): disabled at once, with this reason.
    pub disable: Option<String>,
}

/// An endpoint disabled by [`WebhooksOut::complete`].
#[derive(Debug, Clone)]
pub struct Disabled {
    pub endpoint: String,
    pub tenant: i64,
    pub url: String,
    pub reason: String,
}

/// The record of webhooks out.
pub trait WebhooksOut: Send + Sync + 'static {
    /// Stores a new endpoint; it is sent the events recorded from now on.
    fn create(&self, endpoint: NewEndpoint) -> Res<'_, Endpoint>;
    /// A tenant's endpoints, oldest first.
    fn list(&self, tenant: i64) -> Res<'_, Vec<Endpoint>>;
    /// One of a tenant's endpoints (another tenant's is `None`).
    fn get<'a>(&'a self, tenant: i64, id: &'a str) -> Res<'a, Option<Endpoint>>;
    /// Endpoints by id, any tenant's (for the workers).
    fn by_ids<'a>(&'a self, ids: &'a [String]) -> Res<'a, Vec<Endpoint>>;
    /// Deletes an endpoint with its deliveries and log; false when the
    /// tenant has no such endpoint.
    fn delete<'a>(&'a self, tenant: i64, id: &'a str) -> Res<'a, bool>;
    /// A new secret; the current one keeps signing beside it until
    /// `old_until` (ms).
    fn rotate<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
        secret: &'a str,
        old_until: i64,
    ) -> Res<'a, Option<Endpoint>>;
    /// Enables a disabled endpoint: its pending deliveries are due at
    /// once, and its tail goes on from where it stopped.
    fn enable<'a>(&'a self, tenant: i64, id: &'a str, at: i64) -> Res<'a, Option<Endpoint>>;
    /// A page of an endpoint's log, newest first, before `cursor`; and
    /// the cursor of the next page. `None` when the tenant has no such
    /// endpoint.
    fn attempts<'a>(
        &'a self,
        tenant: i64,
        id: &'a str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Res<'a, Option<(Vec<Attempt>, Option<i64>)>>;
    /// Queues events again (with the webhook ids `render` gives, which
    /// are those of their first delivery), due at `at`: how many.
    fn replay<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        what: Replay,
        at: i64,
        render: &'a Render,
    ) -> Res<'a, usize>;
    /// Claims up to `limit` enabled endpoints that have events to scan.
    fn claim_scans(&self, now: i64, limit: u32) -> Res<'_, Vec<ScanClaim>>;
    /// Scans a claimed endpoint's tail once (at most `limit` events),
    /// queues their deliveries, moves the tail and lets the claim go;
    /// the endpoint is scanned again after `every_ms` (at once when there
    /// is more).
    fn scan<'a>(
        &'a self,
        claim: &'a ScanClaim,
        now: i64,
        limit: u32,
        every_ms: i64,
        render: &'a Render,
    ) -> Res<'a, Scanned>;
    /// Claims up to `limit` due deliveries of enabled endpoints until
    /// `now + lease_ms`.
    fn claim_deliveries(&self, now: i64, lease_ms: i64, limit: u32) -> Res<'_, Vec<Claimed>>;
    /// When the next pending delivery of an enabled endpoint that nobody
    /// holds at `now` is due.
    fn next_due(&self, now: i64) -> Res<'_, Option<i64>>;
    /// Records attempts and their deliveries' next state (an outcome whose
    /// lease was lost only adds to the log); an endpoint failing since
    /// before `failing_before` (ms), or told gone, is disabled, logged in
    /// its delivery log as `endpoint.disabled`. The endpoints disabled.
    fn complete(&self, outcomes: Vec<Outcome>, failing_before: i64) -> Res<'_, Vec<Disabled>>;
    /// Forgets the log before `before` (ms) and finished deliveries last
    /// changed before it; how many rows went.
    fn prune(&self, before: i64) -> Res<'_, u64>;
}

/// Event types as stored (a JSON array of names).
pub(crate) fn stored_kinds(kinds: &[EventKind]) -> String {
    serde_json::to_string(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

/// Event types read back; a name no longer known is passed over.
pub(crate) fn read_kinds(stored: &str) -> Vec<EventKind> {
    serde_json::from_str::<Vec<String>>(stored)
        .unwrap_or_default()
        .iter()
        .filter_map(|k| EventKind::parse(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    #[test]
    fn reads_past_the_head_between_sweeps() {
        let t = Tail::starting(100, 0);
        assert_eq!(t.read_from(10, LAG), (100, false));
        // Ids 101..103 read; 104 is in the log too, not ours.
        let t = t.after(10, LAG, 104, &[101, 103], 500);
        assert_eq!(t, Tail { cursor: 100, head: 104, mark: 100, mark_at: 0 });
        assert_eq!(t.read_from(20, LAG), (104, false));
    }

    #[test]
    fn a_sweep_moves_the_cursor_to_the_last_mark_and_marks_the_head() {
        let t = Tail { cursor: 100, head: 150, mark: 120, mark_at: 0 };
        assert_eq!(t.read_from(LAG, LAG), (100, true));
        // The sweep found 110 (committed late) and nothing else.
        let t = t.after(LAG, LAG, 150, &[110], 500);
        assert_eq!(t, Tail { cursor: 120, head: 150, mark: 150, mark_at: LAG });
        // The next sweep only after another lag.
        assert_eq!(t.read_from(LAG + 1, LAG), (150, false));
        assert_eq!(t.read_from(2 * LAG, LAG), (120, true));
    }

    #[test]
    fn a_full_sweep_completes_only_past_the_mark() {
        let t = Tail { cursor: 100, head: 300, mark: 200, mark_at: 0 };
        // Stopped at its limit before the mark: the cursor stays.
        let t1 = t.after(LAG, LAG, 900, &[150, 160], 2);
        assert_eq!(t1, Tail { cursor: 100, head: 300, mark: 200, mark_at: 0 });
        // Past the mark: everything up to it was read.
        let t2 = t.after(LAG, LAG, 900, &[190, 450], 2);
        assert_eq!(t2, Tail { cursor: 200, head: 450, mark: 450, mark_at: LAG });
    }

    #[test]
    fn without_a_lag_every_scan_is_a_sweep_and_the_cursor_follows_the_log() {
        // SQLite: ids commit in order.
        let mut t = Tail::starting(0, 0);
        for (now, top, ids) in [(1, 5, vec![3, 5]), (2, 9, vec![]), (3, 12, vec![11])] {
            assert!(t.read_from(now, 0).1);
            t = t.after(now, 0, top, &ids, 500);
        }
        assert_eq!(t.head, 12);
        assert_eq!(t.cursor, 9, "the mark of the scan before");
    }

    #[test]
    fn live_secrets_include_the_old_one_until_it_expires() {
        let mut e = Endpoint {
            id: "ep_1".into(),
            tenant: 1,
            url: "https://x.test/".into(),
            description: None,
            events: vec![EventKind::Delivered],
            secret: "new".into(),
            old_secret: Some(("old".into(), 100)),
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            batch: None,
            created_at: 0,
        };
        assert_eq!(e.live_secrets(99), vec!["new", "old"]);
        assert_eq!(e.live_secrets(100), vec!["new"]);
        assert!(e.wants(EventKind::Delivered) && !e.wants(EventKind::Bounced));
        e.events.clear();
        assert!(e.wants(EventKind::Bounced));
        assert_eq!(read_kinds(&stored_kinds(&[EventKind::Bounced, EventKind::Opened])).len(), 2);
        assert_eq!(read_kinds(r#"["bounced","nonsense"]"#), vec![EventKind::Bounced]);
    }
}
