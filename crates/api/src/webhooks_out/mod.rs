//! Webhooks out: the events of the record, pushed to each tenant's
//! endpoints as Standard Webhooks (signed `whsec_` HMAC-SHA256, a
//! `webhook-id` stable across retries), durably and on every node.
//!
//! ```text
//! events ──scanner (claims an endpoint, tails the log)──► webhook_deliveries (one per endpoint × event)
//!                                                             │ workers claim due ones (lease, SKIP LOCKED)
//!                                                             ▼
//!                       endpoint ◄──POST (signed, 15 s, guarded DNS)── attempt ──► recorder ──► webhook_attempts,
//!                                                                                  next state, endpoint health
//! ```
//!
//! Every node runs a [`Dispatcher`]; what one node does is claimed in the
//! database (`record::webhooks`), so nodes share the work and a node killed
//! mid-attempt leaves a lease that runs out ([`LEASE`]) for another (or
//! itself, restarted) to take: delivery is at least once, and a repeat
//! carries the same `webhook-id`. `routes.rs` is the API that manages
//! endpoints; `body.rs` what is sent; `send.rs` one attempt; `guard.rs`
//! where it may go; `schedule.rs` when it is tried again.

mod body;
mod guard;
pub(crate) mod routes;
mod schedule;
mod send;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use record::events::now_ms;
use record::webhooks::{Claimed, Endpoint, Next, Outcome, WebhooksOut};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use body::{USER_AGENT, render, webhook_id};
pub use guard::{Guard, Refused};
pub use schedule::{DEFAULT_SECS, Schedule};

/// How long a worker holds a delivery it claimed: an attempt's timeout
/// and room to record it. A node that died holding one delays it this long.
pub const LEASE: Duration = Duration::from_secs(30);

/// How often a node looks for events to queue.
const SCAN_EVERY: Duration = Duration::from_millis(200);

/// How long an idle worker pool waits before asking for due deliveries
/// again (sooner when its own scanner queued some, or one falls due).
const POLL: Duration = Duration::from_secs(1);

/// How long free workers wait for others to free up before claiming
/// (claims are gathered, [`Dispatcher::deliver`]).
const GATHER: Duration = Duration::from_millis(5);

/// Events one scan of an endpoint reads at most.
const SCAN_LIMIT: u32 = 500;

/// Outcomes recorded in one transaction at most.
const RECORD_BATCH: usize = 256;

/// `[webhooks]`, as the dispatcher takes it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub schedule: Schedule,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub disable_after: Duration,
    pub guard: Arc<Guard>,
    /// Days the delivery log is kept.
    pub log_days: u32,
    /// Attempts in flight at once on this node.
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            schedule: Schedule::default(),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            guard: Arc::default(),
            log_days: 30,
            workers: 32,
        }
    }
}

/// The node's share of webhooks out: a scanner, a pool of workers, the
/// recorder of their outcomes and the log's pruner.
pub struct Dispatcher {
    record: Arc<dyn WebhooksOut>,
    settings: Settings,
    client: reqwest::Client,
    /// The scanner queued deliveries: the workers look at once.
    queued: Notify,
}

impl Dispatcher {
    pub fn new(record: Arc<dyn WebhooksOut>, settings: Settings) -> Result<Arc<Dispatcher>, String> {
        let client = send::client(settings.guard.clone())?;
        Ok(Arc::new(Dispatcher { record, settings, client, queued: Notify::new() }))
    }

    /// Runs until `stop` turns true, then lets the attempts in flight end
    /// and records them.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel(4 * RECORD_BATCH);
        let recorder = tokio::spawn(self.clone().record_outcomes(rx));
        let scanner = tokio::spawn(self.clone().scan(stop.clone()));
        let pruner = tokio::spawn(self.clone().prune());
        self.clone().deliver(tx, stop).await;
        let _ = scanner.await;
        pruner.abort();
        let _ = recorder.await;
    }

    /// Tails the event log of every endpoint this node can claim.
    async fn scan(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut complaint = Complaint::default();
        while !*stop.borrow() {
            let now = now_ms();
            let mut more = false;
            match self.record.claim_scans(now, 32).await {
                Ok(claims) => {
                    for c in &claims {
                        match self.record.scan(c, now, SCAN_LIMIT, 0, &render).await {
                            Ok(s) => {
                                if s.queued > 0 {
                                    self.queued.notify_one();
                                }
                                more |= s.more;
                            }
                            Err(e) => complaint.say(&e, "webhooks: scanning an endpoint's events failed"),
                        }
                    }
                }
                Err(e) => complaint.say(&e, "webhooks: claiming endpoints to scan failed"),
            }
            if !more {
                tokio::select! {
                    _ = tokio::time::sleep(SCAN_EVERY) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Claims due deliveries while a worker is free, and attempts each.
    async fn deliver(self: Arc<Self>, tx: mpsc::Sender<Outcome>, mut stop: watch::Receiver<bool>) {
        let workers = self.settings.workers.max(1);
        let slots = Arc::new(Semaphore::new(workers));
        let mut complaint = Complaint::default();
        // Claims are gathered: a claim is a write, and one per finished
        // attempt would cost more than the attempts do under load.
        let gather = (workers / 2).clamp(1, 50) as u32;
        while !*stop.borrow() {
            if slots.available_permits() < gather as usize {
                // One free worker at least, then a few more for a moment.
                let some = async {
                    drop(slots.acquire().await);
                    drop(tokio::time::timeout(GATHER, slots.acquire_many(gather)).await);
                };
                tokio::select! {
                    _ = some => {}
                    _ = stop.changed() => continue,
                }
            }
            let free = slots.available_permits();
            let now = now_ms();
            let lease = LEASE.as_millis() as i64;
            let claimed = match self.record.claim_deliveries(now, lease, free.min(100) as u32).await {
                Ok(c) => c,
                Err(e) => {
                    complaint.say(&e, "webhooks: claiming deliveries failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                let wait = match self.record.next_due(now).await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - now).clamp(20, POLL.as_millis() as i64) as u64)
                    }
                    _ => POLL,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.queued.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let endpoints = self.endpoints(&claimed).await;
            for (e, job) in jobs(claimed, &endpoints) {
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let (me, tx) = (self.clone(), tx.clone());
                tokio::spawn(async move {
                    for outcome in me.attempt(job, &e).await {
                        let _ = tx.send(outcome).await;
                    }
                    drop(permit);
                });
            }
        }
        // The attempts in flight end (each within its timeout).
        let _ = slots.acquire_many(workers as u32).await;
    }

    async fn endpoints(&self, claimed: &[Claimed]) -> HashMap<String, Arc<Endpoint>> {
        let mut ids: Vec<String> = claimed.iter().map(|c| c.endpoint.clone()).collect();
        ids.sort();
        ids.dedup();
        match self.record.by_ids(&ids).await {
            Ok(list) => list.into_iter().map(|e| (e.id.clone(), Arc::new(e))).collect(),
            Err(e) => {
                // The claims run out and are taken again.
                tracing::warn!(error = %e, "webhooks: reading endpoints failed");
                HashMap::new()
            }
        }
    }

    /// One POST (of one delivery, or of a batch), and what it leaves each
    /// delivery in.
    async fn attempt(&self, job: Vec<Claimed>, endpoint: &Endpoint) -> Vec<Outcome> {
        let at = now_ms();
        let (webhook_id, payload) = match (endpoint.batch, job.as_slice()) {
            (None, [one]) => (one.webhook_id.clone(), one.body.clone()),
            _ => {
                let bodies: Vec<&str> = job.iter().map(|c| c.body.as_str()).collect();
                let first = job.first().map_or("", |c| c.webhook_id.as_str());
                (body::batch_id(first, job.len()), body::batch(&bodies))
            }
        };
        let r = send::post(&self.client, &self.settings.guard, endpoint, &webhook_id, &payload, at).await;
        let asked = match r.status {
            Some(429 | 503) => {
                r.retry_after.as_deref().and_then(|v| schedule::retry_after(v, chrono::Utc::now()))
            }
            _ => None,
        };
        // One draw for the whole POST: a batch is retried together.
        let draw = getrandom::u64().unwrap_or(u64::MAX / 2);
        let disable = (r.status == Some(410)).then(|| "the endpoint answered 410 Gone".to_string());
        job.into_iter()
            .map(|c| {
                let made = c.attempts.max(0) as usize + 1;
                let next = match self.settings.schedule.after(made, asked, draw) {
                    _ if r.ok() => Next::Delivered,
                    Some(wait) => Next::RetryAt(now_ms() + wait.as_millis() as i64),
                    None => Next::Failed,
                };
                log_attempt(endpoint, &c, &webhook_id, made, &r, next);
                let mut log = r.log(&endpoint.url, at, c.event_id, &c.webhook_id, made as i64);
                log.outcome = Some(next.outcome().into());
                Outcome {
                    delivery: c.id,
                    endpoint: c.endpoint,
                    token: c.token,
                    log,
                    next,
                    disable: disable.clone(),
                }
            })
            .collect()
    }

    /// Records outcomes as they come, many in one transaction.
    async fn record_outcomes(self: Arc<Self>, mut rx: mpsc::Receiver<Outcome>) {
        let disable_after = self.settings.disable_after.as_millis() as i64;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            // Until the leases run out the outcomes are still ours to
            // write; after that the deliveries are sent again anyway.
            let give_up = std::time::Instant::now() + LEASE;
            loop {
                match self.record.complete(batch.clone(), now_ms() - disable_after).await {
                    Ok(disabled) => {
                        for d in disabled {
                            let url = guard::for_log(&d.url);
                            tracing::warn!(
                                endpoint = %d.endpoint, tenant = d.tenant, %url, reason = %d.reason,
                                "webhook endpoint disabled"
                            );
                        }
                        break;
                    }
                    Err(e) if std::time::Instant::now() < give_up => {
                        tracing::warn!(error = %e, outcomes = batch.len(), "webhooks: recording attempts failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, outcomes = batch.len(),
                            "webhooks: attempts not recorded; their deliveries will be sent again");
                        break;
                    }
                }
            }
        }
    }

    /// Forgets the delivery log past `log_days`, at start and hourly.
    async fn prune(self: Arc<Self>) {
        loop {
            let before = now_ms() - i64::from(self.settings.log_days) * 86_400_000;
            match self.record.prune(before).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(rows = n, days = self.settings.log_days, "webhook delivery log pruned")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: pruning the delivery log failed; retried in an hour")
                }
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// What is sent together: each delivery alone, or a batching endpoint's
/// deliveries in POSTs of at most `max_events`; deliveries of an endpoint
/// gone since they were claimed are dropped (they went with it).
fn jobs(
    claimed: Vec<Claimed>,
    endpoints: &HashMap<String, Arc<Endpoint>>,
) -> Vec<(Arc<Endpoint>, Vec<Claimed>)> {
    let mut out: Vec<(Arc<Endpoint>, Vec<Claimed>)> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for c in claimed {
        let Some(e) = endpoints.get(&c.endpoint) else { continue };
        let Some(batch) = e.batch else {
            out.push((e.clone(), vec![c]));
            continue;
        };
        match open.get(&e.id) {
            Some(&i) if out[i].1.len() < batch.max_events.max(1) as usize => out[i].1.push(c),
            _ => {
                open.insert(e.id.clone(), out.len());
                out.push((e.clone(), vec![c]));
            }
        }
    }
    out
}

/// One delivery's attempt in the log (debug; info when it failed for good).
fn log_attempt(endpoint: &Endpoint, c: &Claimed, sent_as: &str, made: usize, r: &send::Response, next: Next) {
    metrics::counter!("sluice_webhook_deliveries_total", "result" => next.outcome()).increment(1);
    let (id, wid) = (&endpoint.id, &c.webhook_id);
    match next {
        Next::Delivered => {
            tracing::debug!(endpoint = %id, webhook_id = %wid, sent_as, attempt = made, "webhook delivered")
        }
        Next::Failed => {
            tracing::info!(endpoint = %id, webhook_id = %wid, sent_as, attempts = made, status = ?r.status,
            error = ?r.error, "webhook failed: no retries left")
        }
        Next::RetryAt(_) => {
            tracing::debug!(endpoint = %id, webhook_id = %wid, sent_as, attempt = made, status = ?r.status,
            error = ?r.error, "webhook attempt failed; retried")
        }
    }
}

/// A failure said at WARN at most every 30 s (the loops retry every
/// fraction of a second while the database is away).
#[derive(Default)]
struct Complaint {
    last: Option<std::time::Instant>,
}

impl Complaint {
    fn say(&mut self, e: &record::RecordError, what: &str) {
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            tracing::warn!(error = %e, "{what}; retrying");
            self.last = Some(std::time::Instant::now());
        }
    }
}

/// Starts this node's dispatcher; it stops when `stop` turns true.
pub fn spawn(
    record: Arc<dyn WebhooksOut>,
    settings: Settings,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let d = Dispatcher::new(record, settings)?;
    Ok(tokio::spawn(d.run(stop)))
}
