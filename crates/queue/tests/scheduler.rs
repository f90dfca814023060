//! The scheduler's policy against a scripted transport: retry after a
//! temporary failure, DSNs for permanent failures and expiry (never to `<>`),
//! and parked messages released together when the destination answers again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queue::{
    AttemptOutcome, AttemptResult, BoxFuture, Concurrency, DsnInput, DsnPolicy, Job, RouteSpec, Routes,
    Scheduler, SchedulerConfig, Spool, Transport,
};
use tokio::sync::watch;
use vocabulary::{Envelope, QueueId, RcptStatus, Recipient, Reply, RouteKind};

/// Answers attempts from a script; when the script is empty, accepts.
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<AttemptOutcome>>,
    seen: Mutex<Vec<(String, Vec<String>)>>,
}

impl Transport for Scripted {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        self.seen
            .lock()
            .unwrap()
            .push((job.envelope.mail_from.clone(), job.rcpts.iter().map(|r| r.to_string()).collect()));
        let outcome = self.script.lock().unwrap().pop_front().unwrap_or_else(|| {
            AttemptOutcome::PerRecipient(job.rcpts.iter().map(|_| Reply::new(250, "2.0.0", "ok")).collect())
        });
        Box::pin(async move {
            AttemptResult { remote: "sink:25".into(), tls: None, downstream_dsn: false, outcome }
        })
    }
}

fn envelope(from: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: from.into(),
        rcpts: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        smtputf8: false,
        eight_bit: false,
        helo: "c".into(),
        peer: "127.0.0.1:9".into(),
        auth_user: None,
        received_at: queue::now_secs(),
        line_faults: Default::default(),
        dsn_ret: None,
        dsn_envid: None,
    }
}

struct Harness {
    spool: Arc<Spool>,
    transport: Arc<Scripted>,
    waker: queue::Waker,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// The relay as `serve` describes it: the downstream, whose failures the
/// sender is told of.
fn relay(transport: Arc<dyn Transport>) -> RouteSpec {
    RouteSpec { transport, concurrency: Concurrency::Downstream, dsn: DsnPolicy::Sender }
}

fn start(script: Vec<AttemptOutcome>, retry_secs: u64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), true).unwrap();
    let spool = Arc::new(spool);
    let transport = Arc::new(Scripted { script: Mutex::new(script.into()), ..Default::default() });
    let dsn =
        Arc::new(|i: &DsnInput<'_>| format!("DSN for {} failed rcpts\r\n", i.recipients.len()).into_bytes());
    let cfg = SchedulerConfig {
        retry_initial: Duration::from_secs(retry_secs),
        retry_max: Duration::from_secs(retry_secs * 2),
        max_parallel: 8,
        hostname: "mx.test".into(),
        held_retention: None,
        delay_warning: None,
    };
    let routes = Routes::default().with(RouteKind::Relay, relay(transport.clone()));
    let sched = Scheduler::new(spool.clone(), routes, dsn, cfg);
    let waker = sched.waker();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(sched.run(rx));
    Harness { spool, transport, waker, _stop: tx, _dir: dir }
}

impl Harness {
    async fn send(&self, env: Envelope, expires_in: i64) -> QueueId {
        let id = QueueId::generate();
        let expires = queue::now_secs() + expires_in;
        self.spool.enqueue(id, env, String::new(), b"body\r\n".to_vec(), expires).await.unwrap();
        self.waker.now(id);
        id
    }

    async fn wait_empty(&self, secs: u64) {
        for _ in 0..secs * 20 {
            if self.spool.ids().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("queue not empty: {:?}", self.spool.list());
    }
}

#[tokio::test]
async fn temporary_failure_is_retried() {
    let h = start(vec![AttemptOutcome::PerRecipient(vec![Reply::new(451, "4.2.0", "later")])], 1);
    h.send(envelope("a@x.test", &["r@y.test"]), 3600).await;
    h.wait_empty(6).await;
    let seen = h.transport.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one failed attempt, one retry");
}

#[tokio::test]
async fn permanent_failure_sends_one_dsn_from_null_sender() {
    let h = start(
        vec![AttemptOutcome::PerRecipient(vec![
            Reply::new(550, "5.1.1", "no such user"),
            Reply::new(250, "2.0.0", "ok"),
        ])],
        1,
    );
    h.send(envelope("sender@x.test", &["bad@y.test", "good@y.test"]), 3600).await;
    h.wait_empty(5).await;
    let seen = h.transport.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[1],
        (String::new(), vec!["sender@x.test".to_string()]),
        "the DSN goes to the sender from <>"
    );
}

#[tokio::test]
async fn no_dsn_for_null_sender_it_is_held_and_expiry_reports() {
    let h = start(
        vec![
            AttemptOutcome::PerRecipient(vec![Reply::new(550, "5.1.1", "no such user")]),
            AttemptOutcome::Failed(Reply::new(451, "4.4.1", "connection refused")),
            AttemptOutcome::PerRecipient(vec![Reply::new(250, "2.0.0", "ok")]),
        ],
        1,
    );
    // Refused for good, and nobody to tell: a dead letter, held with the reply.
    let dead = h.send(envelope("", &["bad@y.test"]), 3600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entry = h.spool.get(dead).expect("a refused <> message is kept");
    assert!(entry.held && entry.is_dead_letter(), "{entry:?}");
    assert!(matches!(&entry.envelope.rcpts[0].status, RcptStatus::Held { reply } if reply.code == 550));
    // Already expired: the temporary failure becomes final and yields a DSN.
    h.send(envelope("s@x.test", &["r@y.test"]), -1).await;
    for _ in 0..100 {
        if h.spool.ids() == vec![dead] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.spool.ids(), vec![dead]);
    {
        let seen = h.transport.seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[2], (String::new(), vec!["s@x.test".to_string()]), "one DSN for the expired one");
    }
    // Released once the downstream is fixed: retried, delivered, gone.
    h.spool.set_held(dead, false).await.unwrap();
    h.waker.now(dead);
    h.wait_empty(5).await;
    assert_eq!(h.transport.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn parked_messages_go_together_when_destination_returns() {
    let down = || AttemptOutcome::Failed(Reply::new(451, "4.4.1", "connection refused"));
    // Retries are an hour away: only the release can deliver them in time.
    let h = start(vec![down(), down(), down()], 3600);
    for i in 0..3 {
        h.send(envelope("a@x.test", &[&format!("r{i}@y.test")]), 3600).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.spool.ids().len(), 3);
    // A new message succeeds: the parked ones are released at once.
    h.send(envelope("a@x.test", &["new@y.test"]), 3600).await;
    h.wait_empty(3).await;
    assert_eq!(h.transport.seen.lock().unwrap().len(), 7);
}

/// A running scheduler with a relay and a quarantine route, retries an hour
/// apart; keep the third value alive for as long as it should run.
fn start_tee(
    relay: Arc<dyn Transport>,
    store: Arc<dyn Transport>,
    max_parallel: usize,
) -> (Arc<Spool>, queue::Waker, (watch::Sender<bool>, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), true).unwrap();
    let spool = Arc::new(spool);
    let routes = Routes::default().with(RouteKind::Relay, self::relay(relay)).with(
        RouteKind::Quarantine,
        RouteSpec { transport: store, concurrency: Concurrency::Lane, dsn: DsnPolicy::Nobody },
    );
    let dsn = Arc::new(|_: &DsnInput<'_>| b"DSN\r\n".to_vec());
    let cfg = SchedulerConfig {
        retry_initial: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        max_parallel,
        hostname: "mx.test".into(),
        held_retention: None,
        delay_warning: None,
    };
    let sched = Scheduler::new(spool.clone(), routes, dsn, cfg);
    let waker = sched.waker();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(sched.run(rx));
    (spool, waker, (stop, dir))
}

/// A route that is slow and then fails: it must hold up nothing else.
struct SlowFailing(Mutex<u32>);

impl Transport for SlowFailing {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        *self.0.lock().unwrap() += 1;
        let n = job.rcpts.len();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            AttemptResult {
                remote: "store".into(),
                tls: None,
                downstream_dsn: false,
                outcome: AttemptOutcome::PerRecipient(vec![Reply::new(550, "5.3.0", "store is broken"); n]),
            }
        })
    }
}

#[tokio::test]
async fn tee_routes_run_independently_and_never_bounce_the_copy() {
    let relay = Arc::new(Scripted::default());
    let store = Arc::new(SlowFailing(Mutex::new(0)));
    let (spool, waker, _running) = start_tee(relay.clone(), store.clone(), 4);

    let mut env = envelope("sender@x.test", &["r@y.test"]);
    env.rcpts.push(Recipient::routed("r@y.test", vocabulary::Route::Quarantine { account: "acme".into() }));
    let id = QueueId::generate();
    spool.enqueue(id, env, String::new(), b"body\r\n".to_vec(), queue::now_secs() + 3600).await.unwrap();
    waker.now(id);

    // The relay got the original at once, while the copy was still in progress.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.seen.lock().unwrap().len(), 1);
    assert_eq!(relay.seen.lock().unwrap()[0].1, vec!["r@y.test".to_string()]);
    // The copy failed for good: no DSN went out, and the copy is kept, held
    // (a dead letter an operator can release), never silently dropped.
    let mut held = false;
    for _ in 0..60 {
        held = spool.get(id).is_some_and(|e| e.is_dead_letter());
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "{:?}", spool.get(id));
    assert_eq!(*store.0.lock().unwrap(), 1);
    assert_eq!(relay.seen.lock().unwrap().len(), 1, "no DSN for a failed quarantine copy");
}

/// A store that holds every copy until it is opened, then accepts.
struct Gated {
    open: watch::Receiver<bool>,
    copies: Mutex<Vec<QueueId>>,
}

impl Transport for Gated {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            self.copies.lock().unwrap().push(job.id);
            AttemptResult {
                remote: "store".into(),
                tls: None,
                downstream_dsn: false,
                outcome: AttemptOutcome::PerRecipient(vec![
                    Reply::new(250, "2.0.0", "stored");
                    job.rcpts.len()
                ]),
            }
        })
    }
}

#[tokio::test]
async fn a_stalled_store_holds_up_no_relay_and_every_copy_lands_later() {
    let relay = Arc::new(Scripted::default());
    let (gate, open) = watch::channel(false);
    let store = Arc::new(Gated { open, copies: Mutex::default() });
    let (spool, waker, _running) = start_tee(relay.clone(), store.clone(), 2);

    // More messages than the copies' lane has places, and than the relay's
    // in-flight bound (2 slots x 16) would allow if stuck copies counted.
    let n = queue::COPIES_IN_FLIGHT * 3;
    let mut ids = Vec::new();
    for i in 0..n {
        let rcpt = format!("r{i}@y.test");
        let mut env = envelope("sender@x.test", &[&rcpt]);
        env.rcpts
            .push(Recipient::routed(rcpt.as_str(), vocabulary::Route::Quarantine { account: "acme".into() }));
        let id = QueueId::generate();
        spool.enqueue(id, env, String::new(), b"body\r\n".to_vec(), queue::now_secs() + 3600).await.unwrap();
        waker.now(id);
        ids.push(id);
    }
    // Every original is relayed while no copy can be stored.
    for _ in 0..100 {
        if relay.seen.lock().unwrap().len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.seen.lock().unwrap().len(), n, "the relay waited for the copies");
    assert!(store.copies.lock().unwrap().is_empty());
    // The copies wait in the spool, not lost.
    assert_eq!(spool.ids().len(), n);
    // The store comes back: every copy lands, each once, and the relay is
    // not attempted again.
    gate.send(true).unwrap();
    for _ in 0..200 {
        if spool.ids().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spool.ids().is_empty(), "copies still waiting: {}", spool.ids().len());
    let mut copies = store.copies.lock().unwrap().clone();
    copies.sort();
    ids.sort();
    assert_eq!(copies, ids);
    assert_eq!(relay.seen.lock().unwrap().len(), n);
}

#[tokio::test]
async fn a_message_nobody_woke_the_scheduler_for_is_rescued_not_stranded() {
    let h = start(vec![AttemptOutcome::PerRecipient(vec![Reply::new(250, "2.0.0", "ok")])], 3600);
    // In the spool, durable, but the wake-up is lost: only the scheduler's
    // own check can find it.
    let id = QueueId::generate();
    let mut env = envelope("a@x.test", &["r@y.test"]);
    env.received_at = queue::now_secs() - 10;
    h.spool.enqueue(id, env, String::new(), b"body\r\n".to_vec(), queue::now_secs() + 3600).await.unwrap();
    h.wait_empty(8).await;
    assert_eq!(h.transport.seen.lock().unwrap().len(), 1);
}
