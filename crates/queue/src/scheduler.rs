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

use crate::lane::CopyLane;
use crate::spool::{Entry, Spool, with_status};

/// Retry and expiry policy.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Delay before the first retry; doubles per attempt.
    pub retry_initial: Duration,
    /// Upper bound of the retry delay.
    pub retry_max: Duration,
    /// Attempts running at once across all destinations.
    pub max_parallel: usize,
    /// Our hostname, for DSNs.
    pub hostname: String,
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
    pub outcome: AttemptOutcome,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can take a message: the relay today, more routes later.
pub trait Transport: Send + Sync + 'static {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult>;
}

/// The transport of each route. A route without one is not attempted: its
/// recipients wait in the spool (e.g. no `--relay` configured).
#[derive(Clone, Default)]
pub struct Routes {
    pub relay: Option<Arc<dyn Transport>>,
    pub quarantine: Option<Arc<dyn Transport>>,
    pub outbound: Option<Arc<dyn Transport>>,
    pub feedback: Option<Arc<dyn Transport>>,
}

impl Routes {
    fn get(&self, route: &Route) -> Option<&Arc<dyn Transport>> {
        match route {
            Route::Relay => self.relay.as_ref(),
            Route::Quarantine { .. } => self.quarantine.as_ref(),
            Route::Outbound { .. } => self.outbound.as_ref(),
            Route::Feedback => self.feedback.as_ref(),
        }
    }
}

/// Input for a delivery status notification.
pub struct DsnInput<'a> {
    pub id: QueueId,
    pub envelope: &'a Envelope,
    /// The recipients that failed or expired in this attempt.
    pub failed: Vec<&'a Recipient>,
    pub original: &'a [u8],
    pub remote: &'a str,
}

/// Builds a DSN message (RFC 3464) for recipients that will not be delivered.
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
        }
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
                    }
                }
                wake = self.rx.recv() => match wake {
                    Some(Wake::Now(id)) => {
                        let at = self.spool.get(id).map_or(0, |e| e.next_attempt);
                        timers.push(Reverse((at, id)));
                    }
                    Some(Wake::Flush) => {
                        for id in self.spool.flush() {
                            timers.push(Reverse((0, id)));
                        }
                        self.parked.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    }
                    None => break,
                },
            }
        }
        // Let attempts in flight finish (their results are recorded).
        let _ =
            tokio::time::timeout(Duration::from_secs(30), inflight.acquire_many(inflight_max as u32)).await;
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
    async fn attempt(&self, entry: Entry, permit: OwnedSemaphorePermit) -> Option<QueueId> {
        // The permit bounds relay attempts in flight. It is released when the
        // relay job ends, so the copies' work (classification, the store)
        // never holds back the relay of the messages behind this one.
        let permit = std::sync::Mutex::new(Some(permit));
        let release = || drop(permit.lock().unwrap_or_else(|e| e.into_inner()).take());
        let id = entry.id;
        let content = match self.read_content(&entry).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot read spooled content; will retry");
                self.spool.reschedule(id, now_secs() + self.backoff(1));
                return Some(id);
            }
        };
        // One job per route, run side by side: the relay never waits for
        // (or fails because of) the quarantine copy, nor the other way round.
        let mut groups: Vec<(&Route, Vec<usize>)> = Vec::new();
        for (i, r) in entry.pending() {
            match groups.iter_mut().find(|(route, _)| *route == &r.route) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((&r.route, vec![i])),
            }
        }
        // A copy runs only if its lane has a place now; otherwise it stays
        // pending and the message queues for the lane (`CopyLane::wait`).
        let mut copy_deferred = false;
        let groups: Vec<_> = groups
            .into_iter()
            .filter_map(|(route, idx)| {
                let place = match route {
                    Route::Quarantine { .. } if self.routes.get(route).is_some() => {
                        match self.copies.take(id) {
                            Some(place) => Some(place),
                            None => {
                                copy_deferred = true;
                                return None;
                            }
                        }
                    }
                    _ => None,
                };
                Some((route, idx, place))
            })
            .collect();
        if !groups.iter().any(|(route, _, _)| **route == Route::Relay) {
            // Nothing to relay (a copy alone): the relay slot is not needed.
            release();
        }
        if groups.is_empty() && copy_deferred {
            self.spool.reschedule(id, now_secs() + COPY_FALLBACK_SECS);
            self.wake_for_copy(self.copies.wait(id));
            return Some(id);
        }
        let attempts = groups.into_iter().filter_map(|(route, idx, place)| {
            let transport = self.routes.get(route)?;
            let (entry, content, release) = (&entry, &content, &release);
            Some(async move {
                let job = Job {
                    id,
                    route,
                    envelope: &entry.envelope,
                    rcpts: idx.iter().map(|&i| entry.envelope.rcpts[i].address.as_str()).collect(),
                    trace: &entry.trace,
                    content,
                    expires_at: entry.expires_at,
                };
                let result = transport.deliver(&job).await;
                if *route == Route::Relay {
                    release();
                }
                // The copy's place goes back, and the next message waiting
                // for one is woken, as soon as the copy is done.
                if let Some(place) = place {
                    self.wake_for_copy(self.copies.hand_on(place));
                }
                (route, idx, result)
            })
        });
        let results = futures::future::join_all(attempts).await;
        let now = now_secs();
        if results.is_empty() {
            // No route of the pending recipients has a transport (e.g. no
            // relay configured): they wait, and nothing is written.
            self.spool.reschedule(id, now + self.cfg.retry_max.as_secs().max(1) as i64);
            return Some(id);
        }
        let expired = now >= entry.expires_at;
        let mut rcpts = entry.envelope.rcpts.clone();
        let mut any_delivered = false;
        let mut connection_failed = false;
        let mut remote = String::new();
        let mut attempted: Vec<usize> = Vec::new();
        for (route, idx, result) in &results {
            let relay = **route == Route::Relay;
            if relay {
                connection_failed = matches!(result.outcome, AttemptOutcome::Failed(_));
                remote = result.remote.clone();
            }
            for (n, &i) in idx.iter().enumerate() {
                attempted.push(i);
                let reply = match &result.outcome {
                    AttemptOutcome::PerRecipient(replies) => replies
                        .get(n)
                        .cloned()
                        .unwrap_or_else(|| Reply::new(451, "4.3.0", "no reply for this recipient")),
                    AttemptOutcome::Failed(reply) => reply.clone(),
                };
                let status = if reply.is_positive() {
                    any_delivered |= relay;
                    RcptStatus::Delivered { reply: reply.clone() }
                } else if reply.is_permanent() {
                    RcptStatus::Failed { reply: reply.clone() }
                } else if expired {
                    RcptStatus::Expired { reply: reply.clone() }
                } else {
                    RcptStatus::TempFail { reply: reply.clone() }
                };
                let r = with_status(rcpts[i].clone(), status);
                tracing::info!(
                    target: "sluice::delivery",
                    queue_id = %id,
                    rcpt = %r.address,
                    route = ?r.route,
                    status = r.status.name(),
                    attempt = r.attempts,
                    remote = %result.remote,
                    tls = result.tls.as_deref().unwrap_or("none"),
                    reply = %reply,
                    "delivery attempt"
                );
                rcpts[i] = r;
            }
        }
        // DSNs report the relayed original only; a quarantine copy that could
        // not be stored is logged, never bounced to the sender.
        let failed_now: Vec<&Recipient> = attempted
            .iter()
            .map(|&i| &rcpts[i])
            .filter(|r| r.route == Route::Relay)
            .filter(|r| matches!(r.status, RcptStatus::Failed { .. } | RcptStatus::Expired { .. }))
            .collect();
        if !failed_now.is_empty() && !entry.envelope.is_null_sender() {
            let dsn = (self.dsn)(&DsnInput {
                id,
                envelope: &entry.envelope,
                failed: failed_now,
                original: &content,
                remote: &remote,
            });
            self.enqueue_dsn(&entry, dsn).await;
        }
        let attempts = entry.pending().map(|(i, _)| rcpts[i].attempts).max().unwrap_or(1);
        let mut next = now + self.backoff(attempts);
        // A deferred copy waits for the lane, not for a retry delay (the
        // timer is then only a fallback should a wake-up be missed); unless
        // the original itself must be retried: the copy goes along then.
        let wait_for_lane =
            copy_deferred && !rcpts.iter().any(|r| r.route == Route::Relay && !r.status.is_terminal());
        if wait_for_lane {
            next = now + COPY_FALLBACK_SECS;
        }
        match self.spool.finish_attempt(id, rcpts, next).await {
            Ok(true) => {
                self.wake_for_copy(self.copies.forget(id));
                self.parked.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if any_delivered {
                    self.release_parked();
                }
                None
            }
            Ok(false) => {
                if wait_for_lane {
                    self.wake_for_copy(self.copies.wait(id));
                }
                {
                    let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    if connection_failed {
                        parked.insert(id);
                    } else {
                        parked.remove(&id);
                    }
                }
                if any_delivered {
                    self.release_parked();
                }
                Some(id)
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot record delivery result; will retry");
                self.spool.reschedule(id, next);
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

    async fn enqueue_dsn(&self, entry: &Entry, dsn: Vec<u8>) {
        let envelope = Envelope {
            mail_from: String::new(),
            rcpts: vec![Recipient::new(entry.envelope.mail_from.clone())],
            smtputf8: entry.envelope.smtputf8,
            eight_bit: true,
            helo: self.cfg.hostname.clone(),
            peer: "local".into(),
            auth_user: None,
            received_at: now_secs(),
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
            }
            Err(e) => tracing::error!(queue_id = %entry.id, error = %e, "cannot queue DSN"),
        }
    }
}
