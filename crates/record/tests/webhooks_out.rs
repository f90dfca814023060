//! Webhooks out as every backend must keep them, asked through the
//! `WebhooksOut` trait only: each test runs on SQLite and on a private
//! PostgreSQL (`mod pg`). Endpoints per tenant; the event log tailed into
//! deliveries once each; claims that expire; attempts, retries, disabling;
//! replays; and, on PostgreSQL, two nodes claiming at once and an event id
//! that commits after a later one.

mod pg;

use std::collections::HashSet;

use record::events::{Addressee, Direction, EventKind, EventRow, NewEvent, NewMessage, NewRecipient};
use record::postgres::Postgres;
use record::webhooks::{
    Attempt, Batch, EndpointStatus, NewEndpoint, Next, Outcome, Render, Rendered, Replay, TAIL_LAG_PG_MS,
};
use record::{Store, WebhooksOut};

/// What the API would send: the webhook id from the event's id (and the
/// member's index), and a body naming the event.
fn render() -> Box<Render> {
    Box::new(|e: &EventRow, member: Option<i64>| Rendered {
        webhook_id: match member {
            Some(m) => format!("msg_{}_{m}", e.id),
            None => format!("msg_{}", e.id),
        },
        body: format!("{} {}", e.kind.as_str(), e.address.clone().unwrap_or_default()),
    })
}

fn endpoint(id: &str, tenant: i64, events: &[EventKind], at: i64) -> NewEndpoint {
    NewEndpoint {
        id: id.into(),
        tenant,
        url: format!("https://hooks.test/{id}"),
        description: Some("d".into()),
        events: events.to_vec(),
        secret: "whsec_first".into(),
        batch: None,
        at,
    }
}

fn msg(id: &str, tenant: i64, rcpts: &[&str]) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant,
        direction: Direction::Outbound,
        message_id: Some(format!("{id}@app.test")),
        mail_from: "app@app.test".into(),
        subject: None,
        stream: None,
        tags: Vec::new(),
        metadata: serde_json::json!({}),
        recipients: rcpts
            .iter()
            .map(|a| NewRecipient {
                address: a.to_string(),
                kind: "to".into(),
                status: EventKind::Queued,
                reason: None,
            })
            .collect(),
        at: 1_000,
        detail: None,
        idempotency: None,
    }
}

fn event(tenant: i64, message: &str, idx: i64, kind: EventKind) -> NewEvent {
    NewEvent {
        tenant: Some(tenant),
        message: message.into(),
        idx: Some(idx),
        address: Some(format!("r{idx}@x.test")),
        kind,
        at: 2_000,
        reason: None,
        smtp: None,
        detail: None,
        suppress: None,
        source: None,
        group: Vec::new(),
    }
}

/// Scans every endpoint with something to scan until nothing is left.
async fn scan_all(w: &dyn WebhooksOut, now: i64) -> usize {
    let render = render();
    let mut queued = 0;
    for _ in 0..20 {
        let claims = w.claim_scans(now, 100).await.expect("claims");
        if claims.is_empty() {
            return queued;
        }
        for c in &claims {
            queued += w.scan(c, now, 100, 0, &*render).await.expect("a scan").queued;
        }
    }
    panic!("scans never ended");
}

fn attempt(n: i64, at: i64, status: i64) -> Attempt {
    Attempt {
        kind: "attempt".into(),
        attempt: Some(n),
        at,
        url: Some("https://hooks.test/".into()),
        response_status: Some(status),
        latency_ms: Some(3),
        ..Attempt::default()
    }
}

fn outcome(c: &record::webhooks::Claimed, at: i64, status: i64, next: Next) -> Outcome {
    let mut log = attempt(c.attempts + 1, at, status);
    log.event_id = Some(c.event_id);
    log.webhook_id = Some(c.webhook_id.clone());
    log.outcome = Some(next.outcome().into());
    Outcome {
        delivery: c.id,
        endpoint: c.endpoint.clone(),
        token: c.token.clone(),
        log,
        next,
        disable: (status == 410).then(|| "410 Gone".into()),
    }
}

#[tokio::test]
async fn endpoints_belong_to_their_tenant_rotate_and_go() {
    for (name, store, _dir) in pg::backends().await {
        let w = &*store.webhooks;
        let a = store.directory.tenant("a").await.unwrap();
        let b = store.directory.tenant("b").await.unwrap();
        let e = w.create(endpoint("ep_1", a.id, &[EventKind::Delivered], 10)).await.unwrap();
        assert_eq!((e.status, e.events.as_slice()), (EndpointStatus::Enabled, &[EventKind::Delivered][..]));
        assert_eq!(e.description.as_deref(), Some("d"), "{name}");
        w.create(endpoint("ep_2", a.id, &[], 11)).await.unwrap();
        assert_eq!(w.list(a.id).await.unwrap().len(), 2, "{name}");
        assert!(w.list(b.id).await.unwrap().is_empty(), "{name}");
        assert!(w.get(b.id, "ep_1").await.unwrap().is_none(), "{name}: another tenant's");
        assert!(w.rotate(b.id, "ep_1", "whsec_x", 99).await.unwrap().is_none(), "{name}");
        assert!(!w.delete(b.id, "ep_1").await.unwrap(), "{name}");
        assert!(w.attempts(b.id, "ep_1", None, 10).await.unwrap().is_none(), "{name}");

        let r = w.rotate(a.id, "ep_1", "whsec_second", 5_000).await.unwrap().unwrap();
        assert_eq!(r.secret, "whsec_second");
        assert_eq!(r.old_secret, Some(("whsec_first".to_string(), 5_000)), "{name}");
        assert_eq!(r.live_secrets(4_999), vec!["whsec_second", "whsec_first"]);

        assert!(w.delete(a.id, "ep_1").await.unwrap(), "{name}");
        assert!(w.get(a.id, "ep_1").await.unwrap().is_none(), "{name}");
        assert_eq!(w.list(a.id).await.unwrap().len(), 1, "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn the_log_is_tailed_once_per_event_after_the_endpoint_began() {
    for (name, store, _dir) in pg::backends().await {
        let (w, o) = (&*store.webhooks, &*store.events);
        let a = store.directory.tenant("a").await.unwrap();
        let b = store.directory.tenant("b").await.unwrap();
        o.accept(msg("before", a.id, &["x@x.test"])).await.unwrap();
        w.create(endpoint("ep_all", a.id, &[], 10)).await.unwrap();
        w.create(endpoint("ep_bounces", a.id, &[EventKind::Bounced], 10)).await.unwrap();
        assert_eq!(scan_all(w, 20).await, 0, "{name}: nothing new");

        o.accept(msg("m1", a.id, &["r0@x.test", "r1@x.test"])).await.unwrap(); // two `queued`
        o.record(event(a.id, "m1", 0, EventKind::Bounced)).await.unwrap();
        o.accept(msg("theirs", b.id, &["y@x.test"])).await.unwrap();
        let mut shared = event(a.id, "m1", 0, EventKind::Deferred);
        (shared.idx, shared.address) = (None, None);
        shared.group = vec![Addressee(0, "r0@x.test".into()), Addressee(1, "r1@x.test".into())];
        o.record(shared).await.unwrap();
        // queued ×2, bounced, deferred for each of two: 5 to one, 1 to the other.
        assert_eq!(scan_all(w, 30).await, 6, "{name}");
        assert_eq!(scan_all(w, 40).await, 0, "{name}: a second scan queues nothing");

        let claimed = w.claim_deliveries(50, 60_000, 100).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|c| c.webhook_id.as_str()).collect();
        assert_eq!(ids.len(), 6, "{name}: {ids:?}");
        let ids: HashSet<&str> = ids.into_iter().collect();
        assert_eq!(ids.len(), 5, "{name}: the bounce goes to both endpoints under one id: {ids:?}");
        assert!(ids.iter().filter(|i| i.matches('_').count() == 2).count() == 2, "{name}: members {ids:?}");
        let bounces: Vec<_> = claimed.iter().filter(|c| c.endpoint == "ep_bounces").collect();
        assert_eq!(bounces.len(), 1, "{name}");
        assert_eq!(bounces[0].body, "bounced r0@x.test", "{name}");
        assert!(claimed.iter().all(|c| !c.body.contains("y@x.test")), "{name}: another tenant's event");
        store.close().await;
    }
}

#[tokio::test]
async fn claims_are_held_until_they_expire_and_a_stale_holder_changes_nothing() {
    for (name, store, _dir) in pg::backends().await {
        let (w, o) = (&*store.webhooks, &*store.events);
        let a = store.directory.tenant("a").await.unwrap();
        w.create(endpoint("ep", a.id, &[], 10)).await.unwrap();
        o.accept(msg("m", a.id, &["r0@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 20).await, 1, "{name}");
        assert_eq!(w.next_due(20).await.unwrap(), Some(20), "{name}");

        let first = w.claim_deliveries(100, 1_000, 10).await.unwrap();
        assert_eq!(first.len(), 1, "{name}");
        assert!(w.claim_deliveries(500, 1_000, 10).await.unwrap().is_empty(), "{name}: held");
        assert_eq!(w.next_due(500).await.unwrap(), None, "{name}: none free");
        // The holder died: its lease runs out and another worker takes it.
        let second = w.claim_deliveries(1_200, 1_000, 10).await.unwrap();
        assert_eq!(second.len(), 1, "{name}");
        assert_eq!(second[0].webhook_id, first[0].webhook_id, "{name}: the same id on every attempt");
        assert_eq!(second[0].attempts, 0, "{name}");

        // The first holder comes back too late: its attempt is logged, the
        // delivery is the second holder's.
        let late = outcome(&first[0], 1_300, 200, Next::Delivered);
        w.complete(vec![late], 0).await.unwrap();
        assert!(w.claim_deliveries(1_400, 1_000, 10).await.unwrap().is_empty(), "{name}: still held");
        let ok = outcome(&second[0], 1_500, 200, Next::Delivered);
        w.complete(vec![ok], 0).await.unwrap();
        assert!(w.claim_deliveries(5_000, 1_000, 10).await.unwrap().is_empty(), "{name}: delivered");
        let (log, next) = w.attempts(a.id, "ep", None, 10).await.unwrap().unwrap();
        assert_eq!(log.len(), 2, "{name}");
        assert!(next.is_none());
        assert_eq!(log[0].outcome.as_deref(), Some("delivered"), "{name}: newest first");
        assert_eq!(log[0].webhook_id, Some(first[0].webhook_id.clone()));
        store.close().await;
    }
}

#[tokio::test]
async fn retries_failures_gone_endpoints_and_enabling_again() {
    for (name, store, _dir) in pg::backends().await {
        let (w, o) = (&*store.webhooks, &*store.events);
        let a = store.directory.tenant("a").await.unwrap();
        w.create(endpoint("ep", a.id, &[], 10)).await.unwrap();
        o.accept(msg("m", a.id, &["r0@x.test", "r1@x.test", "r2@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 20).await, 3, "{name}");
        let c = w.claim_deliveries(100, 10_000, 10).await.unwrap();
        assert_eq!(c.len(), 3);
        // The round's last word is a failure: the endpoint is failing since 200.
        let outcomes = vec![
            outcome(&c[2], 200, 200, Next::Delivered),
            outcome(&c[0], 200, 500, Next::RetryAt(1_000)),
            outcome(&c[1], 200, 500, Next::Failed),
        ];
        assert!(w.complete(outcomes, 0).await.unwrap().is_empty(), "{name}: not failing long enough");
        assert!(w.claim_deliveries(999, 10_000, 10).await.unwrap().is_empty(), "{name}: not yet due");
        let again = w.claim_deliveries(1_000, 10_000, 10).await.unwrap();
        assert_eq!(again.len(), 1, "{name}: only the retried one");
        assert_eq!((again[0].id, again[0].attempts), (c[0].id, 1), "{name}");

        // Failing since 200; still failing at 5_000 with a limit of 4_000.
        let failed = outcome(&again[0], 5_000, 503, Next::RetryAt(6_000));
        let disabled = w.complete(vec![failed], 5_000 - 4_000).await.unwrap();
        assert_eq!(disabled.len(), 1, "{name}");
        assert!(disabled[0].reason.contains("failed"), "{name}: {}", disabled[0].reason);
        let e = w.get(a.id, "ep").await.unwrap().unwrap();
        assert_eq!(e.status, EndpointStatus::Disabled, "{name}");
        assert_eq!(e.disabled_reason.as_deref(), Some(disabled[0].reason.as_str()));
        assert!(w.claim_deliveries(7_000, 10_000, 10).await.unwrap().is_empty(), "{name}: disabled");
        let (log, _) = w.attempts(a.id, "ep", None, 10).await.unwrap().unwrap();
        assert_eq!(log[0].kind, "endpoint.disabled", "{name}");
        assert_eq!(log.iter().filter(|l| l.outcome.as_deref() == Some("failed")).count(), 1, "{name}");

        // Enabled again: what was pending is due at once.
        let e = w.enable(a.id, "ep", 6_500).await.unwrap().unwrap();
        assert_eq!((e.status, e.disabled_reason), (EndpointStatus::Enabled, None), "{name}");
        let back = w.claim_deliveries(6_500, 10_000, 10).await.unwrap();
        assert_eq!(back.len(), 1, "{name}");
        // A 410 disables at once.
        let gone = outcome(&back[0], 6_600, 410, Next::RetryAt(9_000));
        let disabled = w.complete(vec![gone], 0).await.unwrap();
        assert_eq!(disabled.len(), 1, "{name}");
        assert_eq!(disabled[0].reason, "410 Gone");
        store.close().await;
    }
}

#[tokio::test]
async fn replay_queues_again_under_the_first_id_and_prune_forgets() {
    for (name, store, _dir) in pg::backends().await {
        let (w, o) = (&*store.webhooks, &*store.events);
        let a = store.directory.tenant("a").await.unwrap();
        let b = store.directory.tenant("b").await.unwrap();
        o.accept(msg("old", a.id, &["r0@x.test"])).await.unwrap();
        o.accept(msg("theirs", b.id, &["r0@x.test"])).await.unwrap();
        let e = w.create(endpoint("ep", a.id, &[], 10)).await.unwrap();
        o.accept(msg("m", a.id, &["r0@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 20).await, 1, "{name}");
        let c = w.claim_deliveries(100, 10_000, 10).await.unwrap();
        w.complete(vec![outcome(&c[0], 200, 200, Next::Delivered)], 0).await.unwrap();

        let render = render();
        let n = w.replay(&e, Replay::Event(c[0].event_id), 300, &*render).await.unwrap();
        assert_eq!(n, 1, "{name}");
        let again = w.claim_deliveries(300, 10_000, 10).await.unwrap();
        assert_eq!((again.len(), again[0].webhook_id.as_str()), (1, c[0].webhook_id.as_str()), "{name}");
        assert_eq!(again[0].attempts, 0, "{name}: a fresh schedule");
        w.complete(vec![outcome(&again[0], 400, 200, Next::Delivered)], 0).await.unwrap();

        // A range reaches back before the endpoint began, not into
        // another tenant's events.
        let n = w.replay(&e, Replay::Range { since: 0, until: 10_000 }, 500, &*render).await.unwrap();
        assert_eq!(n, 2, "{name}: old and m");
        let theirs = w.replay(&e, Replay::Event(c[0].event_id - 1), 500, &*render).await.unwrap();
        assert_eq!(theirs, 0, "{name}: another tenant's event is not ours to replay");
        assert_eq!(w.claim_deliveries(600, 10_000, 10).await.unwrap().len(), 2, "{name}");

        assert!(w.prune(450).await.unwrap() >= 2, "{name}: the attempts before 450");
        let (log, _) = w.attempts(a.id, "ep", None, 10).await.unwrap().unwrap();
        assert!(log.iter().all(|l| l.at >= 450), "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_batching_endpoint_s_deliveries_wait_for_their_window_together() {
    for (name, store, _dir) in pg::backends().await {
        let (w, o) = (&*store.webhooks, &*store.events);
        let a = store.directory.tenant("a").await.unwrap();
        let mut e = endpoint("ep", a.id, &[], 10);
        e.batch = Some(Batch { max_events: 10, max_wait_ms: 1_000 });
        let made = w.create(e).await.unwrap();
        assert_eq!(made.batch, Some(Batch { max_events: 10, max_wait_ms: 1_000 }), "{name}");
        o.accept(msg("m1", a.id, &["r0@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 20).await, 1, "{name}");
        o.accept(msg("m2", a.id, &["r0@x.test", "r1@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 500).await, 2, "{name}");
        assert_eq!(w.next_due(600).await.unwrap(), Some(1_020), "{name}: one window");
        assert!(w.claim_deliveries(1_019, 10_000, 10).await.unwrap().is_empty(), "{name}");
        assert_eq!(w.claim_deliveries(1_020, 10_000, 10).await.unwrap().len(), 3, "{name}: together");
        o.accept(msg("m3", a.id, &["r0@x.test"])).await.unwrap();
        assert_eq!(scan_all(w, 2_000).await, 1, "{name}");
        assert_eq!(w.next_due(2_000).await.unwrap(), Some(3_000), "{name}: a new window");
        store.close().await;
    }
}

#[tokio::test]
async fn nodes_claiming_at_once_never_share_a_delivery() {
    let url = pg::fresh_database().await;
    let nodes: Vec<Store> = nodes(&url, 3).await;
    let (w, o) = (&nodes[0].webhooks, &nodes[0].events);
    let a = nodes[0].directory.tenant("a").await.unwrap();
    w.create(endpoint("ep", a.id, &[], 10)).await.unwrap();
    let rcpts: Vec<String> = (0..60).map(|i| format!("r{i}@x.test")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    o.accept(msg("m", a.id, &rcpts)).await.unwrap();
    // Three nodes scan at once: one holds the endpoint, the others skip it.
    let scans = nodes.iter().map(|n| {
        let w = n.webhooks.clone();
        tokio::spawn(async move { scan_all(&*w, 20).await })
    });
    let queued: usize = joined(scans).await.into_iter().sum();
    assert_eq!(queued, 60);
    let claims = nodes.iter().map(|n| {
        let w = n.webhooks.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = w.claim_deliveries(100, 60_000, 7).await.unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.id));
            }
        })
    });
    let all: Vec<i64> = joined(claims).await.into_iter().flatten().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (60, 60));
    for n in nodes {
        n.close().await;
    }
}

#[tokio::test]
async fn an_event_id_that_commits_after_a_later_one_is_queued_at_the_next_sweep() {
    let url = pg::fresh_database().await;
    let store = Postgres::connect(&url, 4).await.expect("a store").into_store();
    let (w, o) = (&*store.webhooks, &*store.events);
    let a = store.directory.tenant("a").await.unwrap();
    w.create(endpoint("ep", a.id, &[], 10)).await.unwrap();
    o.accept(msg("m", a.id, &["r0@x.test"])).await.unwrap();
    // Another writer takes an id and holds its transaction open.
    let raw = sqlx::PgPool::connect(&url).await.expect("a connection");
    let mut tx = raw.begin().await.unwrap();
    sqlx::query("INSERT INTO events (tenant_id, message, idx, address, type, at) VALUES ($1, 'm', 0, 'r0@x.test', 'delivered', 3000)")
        .bind(a.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    o.record(event(a.id, "m", 0, EventKind::Opened)).await.unwrap();
    let now = record::events::now_ms();
    assert_eq!(scan_all(w, now).await, 2, "queued and opened; the open transaction's event is not seen");
    tx.commit().await.unwrap();
    assert_eq!(scan_all(w, now + 1).await, 0, "past the head only: not yet");
    // A lag later the window is swept, and a lag after that the cursor
    // has passed it.
    assert_eq!(scan_all(w, now + TAIL_LAG_PG_MS).await, 1, "the late one, at the sweep");
    assert_eq!(scan_all(w, now + 2 * TAIL_LAG_PG_MS).await, 0);
    assert_eq!(scan_all(w, now + 3 * TAIL_LAG_PG_MS).await, 0);
    let kinds: Vec<String> = w
        .claim_deliveries(now + 4 * TAIL_LAG_PG_MS, 1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds.iter().any(|k| k.starts_with("delivered")), "{kinds:?}");
    store.close().await;
}

async fn nodes(url: &str, n: usize) -> Vec<Store> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Postgres::connect(url, 4).await.expect("a node").into_store());
    }
    out
}

async fn joined<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.expect("a task"));
    }
    out
}
