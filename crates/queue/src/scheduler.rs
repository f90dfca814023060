//! The scheduler: decides when each queued message is attempted, runs the
//! attempts through a [`Transport`], applies the per-recipient results, retries
//! with backoff, expires, and asks for a DSN when recipients finally fail.
//!
//! A destination that is down holds nothing up but itself: messages whose
//! attempt failed at the connection level are parked, and the first successful
//! delivery releases them all at once.
//!
//! The quarantine copies never hold up the relay either: they run in a lane
//! of their own (see [`crate::lane`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use vocabulary::{Envelope, QueueId, RcptStatus, Recipient, Reply, Route};

use crate::journal::Journal;
use crate::lane::{CopyLane, Place};
use crate::routes::{Concurrency, DsnPolicy, RouteSpec, Routes};
use crate::settle::{Settled, settle};
use crate::spool::{Entry, Spool};

/// One route's job in an attempt: the route and its descriptor, the indexes of its pending
/// recipients, and a copy's place in its lane.
type RouteGroup<'e, 'r> = (&'e Route, &'r Arc<RouteSpec>, Vec<usize>, Option<Place>);

/// Retry and expiry policy.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Delay before the first retry; doubles per attempt.
    pub retry_initial: Duration,
    /// Upper bound of the retry delay.
    pub retry_max: Duration,
    /// Attempts of the downstream ([`crate::Concurrency::Downstream`], the
    /// relay) running at once; copies have their lane, and the outbound
    /// path paces itself per destination.
    pub max_parallel: usize,
    /// Our hostname, for DSNs.
    pub hostname: String,
    /// How long a dead letter stays held before it is deleted (logged and
    /// counted); `None` keeps it until an operator acts.
    pub held_retention: Option<Duration>,
    /// How long a relayed recipient that asked for NOTIFY=DELAY waits before
    /// its (single) delay DSN; `None` sends none.
    pub delay_warning: Option<Duration>,
}

/// One delivery attempt's input: the message and the recipients still
/// pending on one route.
pub struct Job<'a> {
    pub id: QueueId,
    pub route: &'a Route,
    pub envelope: &'a Envelope,
    pub rcpts: Vec<&'a str>,
    pub trace: &'a str,
    pub content: &'a [u8],
    /// When the message expires (seconds since the epoch): a temporary
    /// failure after this is final.
    pub expires_at: i64,
    /// Accepted before the last start: an earlier run may have done this
    /// work and lost its outcome in a crash, so a route that records what
    /// it did checks before doing it twice.
    pub recovered: bool,
}

/// The result of one attempt.
pub enum AttemptOutcome {
    /// One reply per recipient of the job, in order.
    PerRecipient(Vec<Reply>),
    /// The attempt failed as a whole (connection, TLS, MAIL FROM...).
    Failed(Reply),
}

pub struct AttemptResult {
    pub remote: String,
    pub tls: Option<String>,
    /// The downstream took the sender's DSN requests (RFC 3461): success
    /// and delay are its to report, not ours.
    pub downstream_dsn: bool,
    pub outcome: AttemptOutcome,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can take a message: what a route delivers with.
pub trait Transport: Send + Sync + 'static {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult>;
}

/// Input for a delivery status notification.
pub struct DsnInput<'a> {
    pub id: QueueId,
    pub envelope: &'a Envelope,
    /// The recipients to report, each by its state after this attempt:
    /// failed or expired, still deferred (a delay DSN), or delivered to a
    /// downstream without DSN (a "relayed" success DSN).
    pub recipients: Vec<&'a Recipient>,
    pub original: &'a [u8],
    pub remote: &'a str,
}

/// Builds a DSN message (RFC 3464) for the recipients the sender asked to hear about.
pub type DsnBuilder = Arc<dyn Fn(&DsnInput<'_>) -> Vec<u8> + Send + Sync>;

/// Commands from the queue CLI and from ingress.
#[derive(Debug)]
pub enum Wake {
    /// A new or released message: attempt it now.
    Now(QueueId),
    /// Everything waiting: attempt now.
    Flush,
}

/// Messages up to this size are read back on the scheduler's own thread
/// (see `read_content`).
const INLINE_READ_MAX: u64 = 64 * 1024;

/// A message whose copy waits for the lane is also put on the timer this
/// far ahead, in case its wake-up is lost.
const COPY_FALLBACK_SECS: i64 = 30;

/// A message due this long with no timer and no attempt is stranded.
const STRANDED_AFTER_SECS: i64 = 5;

/// A finished message whose done record could not be written (a full disk)
/// tries again this soon: writing it is what frees the space.
const RECORD_RETRY_SECS: i64 = 5;

/// One WARN per this many seconds while outcomes wait for disk space (not
/// one per message).
const DISK_FULL_WARN_EVERY: i64 = 10;

fn disk_full_warning(now: i64) {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    if now - last >= DISK_FULL_WARN_EVERY
        && LAST
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::warn!(
            "the disk is full: delivery outcomes wait to be recorded and are retried; new mail is refused (452) until space is freed"
        );
    }
}

/// Handle to wake the scheduler.
#[derive(Clone)]
pub struct Waker(mpsc::UnboundedSender<Wake>);

impl Waker {
    pub fn now(&self, id: QueueId) {
        let _ = self.0.send(Wake::Now(id));
    }
    pub fn flush(&self) {
        let _ = self.0.send(Wake::Flush);
    }
}

pub struct Scheduler {
    spool: Arc<Spool>,
    routes: Routes,
    dsn: DsnBuilder,
    cfg: SchedulerConfig,
    rx: mpsc::UnboundedReceiver<Wake>,
    waker: Waker,
    parked: Arc<Mutex<HashSet<QueueId>>>,
    copies: Arc<CopyLane>,
    dead_letters_expired: std::sync::atomic::AtomicU64,
    journal: Option<Arc<dyn Journal>>,
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Scheduler {
    pub fn new(spool: Arc<Spool>, routes: Routes, dsn: DsnBuilder, cfg: SchedulerConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Scheduler {
            spool,
            routes,
            dsn,
            cfg,
            rx,
            waker: Waker(tx),
            parked: Arc::default(),
            copies: Arc::default(),
            dead_letters_expired: Default::default(),
            journal: None,
        }
    }

    /// Tells `journal` every attempt's outcome and every DSN queued.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs until `shutdown` turns true, then waits for attempts in flight.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.max_parallel.max(1)));
        // Attempts in flight, relay done or not: bounds the copies' backlog
        // (and its memory) and lets shutdown wait for all of them.
        // A relay slot each, a place in the copies' lane each for those whose
        // relay is done, and as many again for attempts winding up.
        let inflight_max = 2 * self.cfg.max_parallel.max(1) + crate::lane::COPIES_IN_FLIGHT;
        let inflight = Arc::new(Semaphore::new(inflight_max));
        let mut timers: BinaryHeap<Reverse<(i64, QueueId)>> = BinaryHeap::new();
        // Everything recovered from the spool is due now.
        for id in self.spool.ids() {
            timers.push(Reverse((0, id)));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut gc_countdown = 0u32;
        loop {
            // Start everything that is due.
            let now = now_secs();
            while let Some(Reverse((at, id))) = timers.peek().copied() {
                if at > now {
                    break;
                }
                timers.pop();
                match self.spool.get(id) {
                    // A stale timer: the message was rescheduled since.
                    Some(entry) if entry.next_attempt > now => continue,
                    Some(_) => {}
                    // Gone (e.g. deleted by hand): a place it held moves on.
                    None => {
                        if let Some(next) = self.copies.forget(id) {
                            self.spool.make_due(next);
                            timers.push(Reverse((0, next)));
                        }
                        continue;
                    }
                }
                let Ok(whole) = inflight.clone().acquire_owned().await else { return };
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                if let Some(entry) = self.spool.claim(id) {
                    let ctx = self.attempt_context();
                    tokio::spawn(async move {
                        // A message that stays queued goes back on the timer
                        // heap at its new `next_attempt`. The permit is given
                        // back as soon as the relay part is done (see attempt).
                        if let Some(id) = ctx.attempt(entry, permit).await {
                            ctx.waker.now(id);
                        }
                        drop(whole);
                    });
                }
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {
                    gc_countdown += 1;
                    if gc_countdown >= 40 {
                        gc_countdown = 0;
                        if let Err(e) = self.spool.collect_garbage() {
                            tracing::warn!(error = %e, "spool garbage collection failed");
                        }
                        self.expire_dead_letters().await;
                    }
                    if gc_countdown.is_multiple_of(8) {
                        while let Ok(wake) = self.rx.try_recv() {
                            self.on_wake(wake, &mut timers);
                        }
                        self.rescue_stranded(&mut timers);
                    }
                }
                wake = self.rx.recv() => match wake {
                    Some(wake) => self.on_wake(wake, &mut timers),
                    None => break,
                },
            }
        }
        // Let attempts in flight finish (their results are recorded).
        let _ =
            tokio::time::timeout(Duration::from_secs(30), inflight.acquire_many(inflight_max as u32)).await;
    }

    fn on_wake(&self, wake: Wake, timers: &mut BinaryHeap<Reverse<(i64, QueueId)>>) {
        match wake {
            Wake::Now(id) => {
                let at = self.spool.get(id).map_or(0, |e| e.next_attempt);
                timers.push(Reverse((at, id)));
            }
            Wake::Flush => {
                for id in self.spool.flush() {
                    timers.push(Reverse((0, id)));
                }
                self.parked.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
    }

    /// The invariant behind "nothing stranded": a message that is due, not
    /// held and not being attempted has a timer. One that has none has
    /// been forgotten: said at WARN, and attempted now.
    fn rescue_stranded(&self, timers: &mut BinaryHeap<Reverse<(i64, QueueId)>>) {
        let now = now_secs();
        let due = self.spool.idle_due_before(now - STRANDED_AFTER_SECS + 1);
        if due.is_empty() {
            return;
        }
        let timed: HashSet<QueueId> = timers.iter().map(|Reverse((_, id))| *id).collect();
        for (id, since) in due {
            if !timed.contains(&id) {
                tracing::warn!(queue_id = %id, due_since = now - since, "message due but not attempted; attempting it now");
                timers.push(Reverse((0, id)));
            }
        }
    }

    /// Lets dead letters go once held longer than the hold retention:
    /// logged at WARN and counted, never silently.
    async fn expire_dead_letters(&self) {
        let Some(keep) = self.cfg.held_retention else { return };
        let cutoff = now_secs() - keep.as_secs() as i64;
        for entry in self.spool.dead_letters_before(cutoff) {
            match self.spool.remove(entry.id).await {
                Ok(()) => {
                    let total =
                        self.dead_letters_expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let rcpts: Vec<&str> = entry
                        .envelope
                        .rcpts
                        .iter()
                        .filter(|r| matches!(r.status, RcptStatus::Held { .. }))
                        .map(|r| r.address.as_str())
                        .collect();
                    tracing::warn!(queue_id = %entry.id, from = %entry.envelope.mail_from, ?rcpts, held_at = entry.held_at,
                        expired_total = total, "dead letter expired after its hold retention; deleted");
                }
                Err(e) => tracing::error!(queue_id = %entry.id, error = %e, "cannot expire dead letter"),
            }
        }
    }

    fn attempt_context(&self) -> Arc<AttemptCtx> {
        Arc::new(AttemptCtx {
            spool: self.spool.clone(),
            routes: self.routes.clone(),
            dsn: self.dsn.clone(),
            cfg: self.cfg.clone(),
            waker: self.waker.clone(),
            parked: self.parked.clone(),
            copies: self.copies.clone(),
            journal: self.journal.clone(),
        })
    }
}

struct AttemptCtx {
    spool: Arc<Spool>,
    routes: Routes,
    dsn: DsnBuilder,
    cfg: SchedulerConfig,
    waker: Waker,
    parked: Arc<Mutex<HashSet<QueueId>>>,
    copies: Arc<CopyLane>,
    journal: Option<Arc<dyn Journal>>,
}

impl AttemptCtx {
    fn backoff(&self, attempts: u32) -> i64 {
        let base = self.cfg.retry_initial.as_secs_f64().max(1.0);
        let exp = attempts.saturating_sub(1).min(20) as i32;
        let delay = (base * 2f64.powi(exp)).min(self.cfg.retry_max.as_secs_f64().max(1.0));
        delay.ceil() as i64
    }

    /// Runs one attempt for `entry`. Returns its id when the message stays
    /// queued (its `next_attempt` is set).
    /// A message finished whose done record could not be written (a full
    /// disk): the record is written now, and it is never attempted again.
    async fn record_done(&self, entry: &Entry) -> Option<QueueId> {
        let settled = Settled::unattempted(entry);
        self.record(entry, settled, false, now_secs()).await
    }

    /// The pending recipients grouped by route, one job per route run side
    /// by side (the relay never waits for, or fails because of, the
    /// quarantine copy, nor the other way round), each copy with its lane's
    /// place. A copy runs only if its lane has a place now; otherwise it
    /// stays pending (the `bool`) and the message queues for the lane
    /// (`CopyLane::wait`).
    fn route_groups<'e>(&self, entry: &'e Entry) -> (Vec<RouteGroup<'e, '_>>, bool) {
        let mut groups: Vec<(&Route, Vec<usize>)> = Vec::new();
        for (i, r) in entry.pending() {
            match groups.iter_mut().find(|(route, _)| *route == &r.route) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((&r.route, vec![i])),
            }
        }
        let mut copy_deferred = false;
        let groups = groups
            .into_iter()
            .filter_map(|(route, idx)| {
                // A route without a descriptor is not attempted.
                let spec = self.routes.get(route)?;
                let place = match spec.concurrency {
                    Concurrency::Lane => match self.copies.take(entry.id) {
                        Some(place) => Some(place),
                        None => {
                            copy_deferred = true;
                            return None;
                        }
                    },
                    _ => None,
                };
                Some((route, spec, idx, place))
            })
            .collect();
        (groups, copy_deferred)
    }

    async fn attempt(&self, entry: Entry, permit: OwnedSemaphorePermit) -> Option<QueueId> {
        // The permit bounds relay attempts in flight. It is released when the
        // relay job ends, so the copies' work (classification, the store)
        // never holds back the relay of the messages behind this one.
        let permit = std::sync::Mutex::new(Some(permit));
        let release = || drop(permit.lock().unwrap_or_else(|e| e.into_inner()).take());
        let id = entry.id;
        if entry.is_done() {
            release();
            return self.record_done(&entry).await;
        }
        let content = match self.read_content(&entry).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot read spooled content; will retry");
                self.spool.reschedule(id, now_secs() + self.backoff(1));
                return Some(id);
            }
        };
        let (groups, copy_deferred) = self.route_groups(&entry);
        if !groups.iter().any(|(_, spec, _, _)| spec.concurrency == Concurrency::Downstream) {
            // Nothing for the downstream (a copy alone): no slot is needed.
            release();
        }
        if groups.is_empty() && copy_deferred {
            self.spool.reschedule(id, now_secs() + COPY_FALLBACK_SECS);
            self.wake_for_copy(self.copies.wait(id));
            return Some(id);
        }
        let attempts = groups.into_iter().map(|(route, spec, idx, place)| {
            let (entry, content, release) = (&entry, &content, &release);
            async move {
                let job = Job {
                    id,
                    route,
                    envelope: &entry.envelope,
                    rcpts: idx.iter().map(|&i| entry.envelope.rcpts[i].address.as_str()).collect(),
                    trace: &entry.trace,
                    content,
                    expires_at: entry.expires_at,
                    recovered: entry.recovered,
                };
                let started = std::time::Instant::now();
                let result = spec.transport.deliver(&job).await;
                attempt_took(route, started.elapsed());
                if spec.concurrency == Concurrency::Downstream {
                    release();
                }
                // The copy's place goes back, and the next message waiting
                // for one is woken, as soon as the copy is done.
                if let Some(place) = place {
                    self.wake_for_copy(self.copies.hand_on(place));
                }
                (spec.as_ref(), idx, result)
            }
        });
        let results = futures::future::join_all(attempts).await;
        let now = now_secs();
        if results.is_empty() {
            // No route of the pending recipients has a transport (e.g. no
            // relay configured): they wait, and nothing is written.
            self.spool.reschedule(id, now + self.cfg.retry_max.as_secs().max(1) as i64);
            return Some(id);
        }
        let mut settled = settle(&entry, &results, now >= entry.expires_at);
        let dsn = self.report(&entry, &content, &mut settled).await;
        if let Some(j) = &self.journal {
            j.attempted(id, &entry.envelope, &settled.attempts(&entry.envelope));
            if let Some((dsn_id, reported)) = dsn {
                let rcpts: Vec<(usize, &Recipient)> =
                    reported.iter().map(|&i| (i, &settled.rcpts[i])).collect();
                j.dsn_queued(id, dsn_id, &rcpts);
            }
        }
        self.record(&entry, settled, copy_deferred, now).await
    }

    /// Queues the DSN for the relayed recipients the sender asked to hear
    /// about (RFC 3461): failed or expired (unless NOTIFY said otherwise),
    /// delivered to a downstream that could not take the request on
    /// (NOTIFY=SUCCESS, "relayed"), deferred past the warning time
    /// (NOTIFY=DELAY, once). When it cannot be queued, failed recipients are
    /// retried instead (and the DSN with them), never dropped. Returns the
    /// DSN's id and the recipients it reports on.
    async fn report(&self, entry: &Entry, content: &[u8], s: &mut Settled) -> Option<(QueueId, Vec<usize>)> {
        let age = now_secs() - entry.envelope.received_at;
        let delay_due = self.cfg.delay_warning.is_some_and(|d| age >= d.as_secs() as i64);
        let wanted: Vec<usize> = s
            .attempted
            .iter()
            .copied()
            .filter(|&i| self.routes.get(&s.rcpts[i].route).is_some_and(|r| r.dsn == DsnPolicy::Sender))
            .filter(|&i| {
                let r = &s.rcpts[i];
                let notify = r.notify.unwrap_or_default();
                match r.status {
                    RcptStatus::Failed { .. } | RcptStatus::Expired { .. } => {
                        vocabulary::dsn::Notify::wants_failure(r.notify)
                    }
                    RcptStatus::Delivered { .. } => notify.success && !s.downstream_dsn,
                    RcptStatus::TempFail { .. } => notify.delay && delay_due && !r.delay_reported,
                    _ => false,
                }
            })
            .collect();
        if wanted.is_empty() || entry.envelope.is_null_sender() {
            return None;
        }
        let dsn = (self.dsn)(&DsnInput {
            id: entry.id,
            envelope: &entry.envelope,
            recipients: wanted.iter().map(|&i| &s.rcpts[i]).collect(),
            original: content,
            remote: &s.remote,
        });
        let dsn_id = self.enqueue_dsn(entry, dsn).await;
        let queued = dsn_id.is_some();
        for &i in &wanted {
            let r = &mut s.rcpts[i];
            match &r.status {
                RcptStatus::Failed { reply } | RcptStatus::Expired { reply } if !queued => {
                    r.status = RcptStatus::TempFail { reply: reply.clone() };
                }
                RcptStatus::TempFail { .. } => r.delay_reported = queued,
                RcptStatus::Delivered { .. } if !queued => tracing::warn!(queue_id = %entry.id,
                    rcpt = %r.address, "delivered, but the success DSN the sender asked for could not be queued"),
                _ => {}
            }
        }
        dsn_id.map(|id| (id, wanted))
    }

    /// Writes the attempt's outcome and decides what comes next: done,
    /// retried after a backoff, waiting for the copies' lane, or held as a
    /// dead letter. Returns the id when the message stays queued.
    async fn record(&self, entry: &Entry, s: Settled, copy_deferred: bool, now: i64) -> Option<QueueId> {
        let id = entry.id;
        let attempts = entry.pending().map(|(i, _)| s.rcpts[i].attempts).max().unwrap_or(1);
        let mut next = now + self.backoff(attempts);
        // A deferred copy waits for the lane, not for a retry delay (the
        // timer is then only a fallback should a wake-up be missed); unless
        // the original itself must be retried: the copy goes along then.
        let in_lane =
            |r: &Recipient| self.routes.get(&r.route).is_some_and(|s| s.concurrency == Concurrency::Lane);
        let wait_for_lane = copy_deferred && !s.rcpts.iter().any(|r| !in_lane(r) && !r.status.is_terminal());
        if wait_for_lane {
            next = now + COPY_FALLBACK_SECS;
        }
        let hold = s.attempted.iter().any(|&i| matches!(s.rcpts[i].status, RcptStatus::Held { .. }));
        let done = s.rcpts.iter().all(|r| r.status.is_terminal());
        match self.spool.finish_attempt(id, s.rcpts, next, hold).await {
            Ok(true) => {
                self.wake_for_copy(self.copies.forget(id));
                self.parked.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if s.any_delivered {
                    self.release_parked();
                }
                None
            }
            Ok(false) => {
                if wait_for_lane && !hold {
                    self.wake_for_copy(self.copies.wait(id));
                }
                {
                    let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    if s.connection_failed {
                        parked.insert(id);
                    } else {
                        parked.remove(&id);
                    }
                }
                if s.any_delivered {
                    self.release_parked();
                }
                Some(id)
            }
            Err(e) => {
                // The outcome stays in memory; its record is written again
                // soon when it finished the message (so the segments it
                // frees go), else with the next attempt.
                let at = if done { now + RECORD_RETRY_SECS } else { next };
                if e.is_storage_full() {
                    disk_full_warning(now);
                    tracing::debug!(%id, retry_in = at - now, "outcome not recorded: the disk is full");
                } else {
                    tracing::error!(%id, error = %e, retry_in = at - now, "cannot record delivery result; will retry");
                }
                self.spool.reschedule(id, at);
                Some(id)
            }
        }
    }

    /// Attempts `id` now: it was handed a place in the copies' lane.
    fn wake_for_copy(&self, id: Option<QueueId>) {
        if let Some(id) = id {
            self.spool.make_due(id);
            self.waker.now(id);
        }
    }

    /// The message's bytes from its spool segment. A small message was
    /// written moments ago and is in the page cache: reading it here is a
    /// copy, cheaper than the two thread switches of handing the read to
    /// the blocking pool (which larger ones still take).
    async fn read_content(&self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let loc = entry.content;
        if loc.len <= INLINE_READ_MAX {
            return self.spool.content(loc);
        }
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.content(loc)).await.map_err(std::io::Error::other)?
    }

    /// The destination answered again: everything parked behind it goes now.
    fn release_parked(&self) {
        let ids: Vec<QueueId> = self.parked.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        if ids.is_empty() {
            return;
        }
        tracing::info!(count = ids.len(), "destination is back; releasing parked messages");
        for id in ids {
            self.spool.make_due(id);
            self.waker.now(id);
        }
    }

    /// Queues a DSN for `entry`'s sender; its id, or `None` when it could
    /// not be made durable.
    async fn enqueue_dsn(&self, entry: &Entry, dsn: Vec<u8>) -> Option<QueueId> {
        let envelope = Envelope {
            mail_from: String::new(),
            rcpts: vec![Recipient::new(entry.envelope.mail_from.clone())],
            smtputf8: entry.envelope.smtputf8,
            eight_bit: true,
            helo: self.cfg.hostname.clone(),
            peer: "local".into(),
            auth_user: None,
            received_at: now_secs(),
            line_faults: Default::default(),
            dsn_ret: None,
            dsn_envid: None,
        };
        match self
            .spool
            .enqueue(
                QueueId::generate(),
                envelope,
                String::new(),
                dsn,
                entry.expires_at.max(now_secs() + 86400),
            )
            .await
        {
            Ok(dsn_id) => {
                tracing::info!(queue_id = %entry.id, dsn_id = %dsn_id, to = %entry.envelope.mail_from, "DSN queued");
                self.waker.now(dsn_id);
                Some(dsn_id)
            }
            Err(e) => {
                tracing::error!(queue_id = %entry.id, error = %e, "cannot queue DSN; the failed recipients will be retried");
                None
            }
        }
    }
}

/// How long a route's attempt took, for Prometheus (`docs/metrics.md`):
/// labelled by the kind of route, never by a destination.
fn attempt_took(route: &Route, took: Duration) {
    metrics::histogram!("sluice_attempt_duration_seconds", "route" => route.kind().as_str())
        .record(took.as_secs_f64());
}
