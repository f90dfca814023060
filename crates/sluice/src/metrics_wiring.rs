//! Prometheus metrics and health checks of `sluice serve`
//! (`docs/metrics.md`): the recorder, installed once per process; the
//! gauges that are state (the queue per route, held mail, copies
//! pending), read from the spool when `/metrics` is scraped; and the
//! readiness checks of `/readyz` (spool writable, database reachable,
//! listeners up). The counters and histograms are counted where things
//! happen (record, ingress, queue, webhooks out).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use api::health::{Check, Health, MetricsAccess};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use queue::{Entry, Spool};
use tokio::sync::watch;
use vocabulary::RouteKind;

/// Buckets of the attempt latency histogram (seconds).
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Buckets of the record writers' batch sizes (writes per transaction).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0, 1024.0];

/// How long the database may take to answer `/readyz`.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often histograms are drained (or they grow without bound).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The name of the file `/readyz` writes, syncs and removes in the spool
/// directory.
pub const PROBE_FILE: &str = ".readyz-probe";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder, once per process (a second server in
/// the same process shares it). Called before anything is counted.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("sluice_attempt_duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("sluice_record_batch_size".into()), &BATCH_BUCKETS)
                })
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(error = %e, "metrics: cannot install the Prometheus recorder");
                    None
                }
            }
        })
        .clone()
}

/// Each metric's `# HELP` line (docs/metrics.md says more).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("sluice_events_total", "Events committed to the record, by type and reason");
    describe_counter!("sluice_smtp_sessions_total", "SMTP sessions started, by listener");
    describe_counter!("sluice_smtp_refusals_total", "SMTP replies of 400 or more, by listener and code");
    describe_counter!("sluice_webhook_deliveries_total", "Webhook delivery attempts, by result");
    describe_histogram!(
        "sluice_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "How long a delivery attempt took, by route"
    );
    describe_histogram!("sluice_record_batch_size", "Writes per record transaction, by writer");
    describe_gauge!("sluice_queue_messages", "Messages with recipients pending, by route");
    describe_gauge!("sluice_queue_recipients", "Recipients pending, by route");
    describe_gauge!("sluice_queue_oldest_seconds", "Age of the oldest message pending, by route");
    describe_gauge!("sluice_queue_held_messages", "Messages held in the queue");
    describe_gauge!("sluice_copies_pending", "Store copies waiting in the spool");
}

/// The listener tasks `/readyz` watches, by name.
#[derive(Clone, Default)]
pub struct Listening(Arc<Mutex<Vec<(&'static str, tokio::task::AbortHandle)>>>);

impl Listening {
    /// Watches the SMTP and IMAP listeners' tasks, in the order `serve`
    /// starts them: MX, submission, then each IMAP listener.
    pub fn track(&self, tasks: &[tokio::task::JoinHandle<()>]) {
        let names = ["smtp", "submission"].into_iter().chain(std::iter::repeat("imap"));
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.clear();
        l.extend(names.zip(tasks).map(|(n, t)| (n, t.abort_handle())));
    }

    /// The listeners whose tasks have ended.
    fn down(&self) -> Vec<&'static str> {
        let l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().filter(|(_, t)| t.is_finished()).map(|(n, _)| *n).collect()
    }
}

/// What `/metrics` and `/readyz` read.
pub struct Node {
    pub handle: PrometheusHandle,
    pub spool: Arc<Spool>,
    pub spool_dir: PathBuf,
    pub store: record::Store,
    pub listening: Listening,
    /// One probe of the spool at a time (they share the file).
    pub probing: Arc<Mutex<()>>,
}

/// The API state with `/metrics` and `/readyz` served from this node, and
/// the upkeep of the histograms running until `stop`.
pub fn attach(
    state: api::AppState,
    node: Option<Node>,
    token_file: Option<&Path>,
    stop: watch::Receiver<bool>,
) -> api::AppState {
    let Some(node) = node else { return state };
    tokio::spawn(upkeep(node.handle.clone(), stop));
    let access = match token_file.map(read_token) {
        None => MetricsAccess::default(),
        Some(Ok(token)) => MetricsAccess::token(&token),
        Some(Err(e)) => {
            // Closed rather than open: nobody knows this token.
            tracing::error!(error = %format!("{e:#}"), "http.metrics_token_file unreadable: /metrics refused");
            MetricsAccess::token(&uuid::Uuid::new_v4().to_string())
        }
    };
    state.with_health(Arc::new(node), access)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token)
}

async fn upkeep(handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Health for Node {
    fn metrics(&self) -> String {
        set_queue_gauges(&self.spool.list(), chrono::Utc::now().timestamp());
        self.handle.render()
    }

    fn ready(&self) -> std::pin::Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>> {
        Box::pin(async move {
            let (dir, probing) = (self.spool_dir.clone(), self.probing.clone());
            let spool = match tokio::task::spawn_blocking(move || probe(&dir, &probing)).await {
                Ok(Ok(())) => Check::ok("spool"),
                Ok(Err(e)) => Check::failed("spool", format!("{e:#}")),
                Err(e) => Check::failed("spool", e),
            };
            let database = match tokio::time::timeout(DATABASE_TIMEOUT, self.store.check()).await {
                Ok(Ok(_)) => Check::ok("database"),
                Ok(Err(e)) => Check::failed("database", e),
                Err(_) => Check::failed("database", "no answer within 5 s"),
            };
            let down = self.listening.down();
            let listeners = match down.is_empty() {
                true => Check::ok("listeners"),
                false => Check::failed("listeners", format!("stopped: {}", down.join(", "))),
            };
            vec![spool, database, listeners]
        })
    }
}

/// Writes, syncs and removes a small file in the spool directory: what
/// accepting a message needs of the disk.
fn probe(dir: &Path, probing: &Mutex<()>) -> anyhow::Result<()> {
    use anyhow::Context;
    let _one = probing.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir.join(PROBE_FILE);
    let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(b"ready\n")
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// The queue's state per kind of route, as `sluice queue summary` counts
/// it: messages and recipients not yet delivered, failed or expired, and
/// the oldest's age; held messages; the store's copies pending.
#[derive(Debug, Default, PartialEq)]
struct Backlog {
    messages: u64,
    recipients: u64,
    oldest_received_at: Option<i64>,
}

const ROUTES: [RouteKind; 4] =
    [RouteKind::Relay, RouteKind::Quarantine, RouteKind::Outbound, RouteKind::Feedback];

fn backlog(entries: &[Entry]) -> ([Backlog; 4], u64) {
    let mut per: [Backlog; 4] = Default::default();
    let mut held = 0;
    for e in entries {
        held += u64::from(e.held);
        let mut counted = [false; 4];
        for r in e.envelope.rcpts.iter().filter(|r| !r.status.is_terminal()) {
            let Some(i) = ROUTES.iter().position(|k| *k == r.route.kind()) else { continue };
            let b = &mut per[i];
            b.recipients += 1;
            if !counted[i] {
                counted[i] = true;
                b.messages += 1;
                let at = e.envelope.received_at;
                b.oldest_received_at = Some(b.oldest_received_at.map_or(at, |o| o.min(at)));
            }
        }
    }
    (per, held)
}

fn set_queue_gauges(entries: &[Entry], now: i64) {
    let (per, held) = backlog(entries);
    for (kind, b) in ROUTES.iter().zip(&per) {
        let route = kind.as_str();
        metrics::gauge!("sluice_queue_messages", "route" => route).set(b.messages as f64);
        metrics::gauge!("sluice_queue_recipients", "route" => route).set(b.recipients as f64);
        let age = b.oldest_received_at.map_or(0, |at| (now - at).max(0));
        metrics::gauge!("sluice_queue_oldest_seconds", "route" => route).set(age as f64);
    }
    metrics::gauge!("sluice_queue_held_messages").set(held as f64);
    metrics::gauge!("sluice_copies_pending").set(per[1].recipients as f64);
}
