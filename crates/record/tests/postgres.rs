//! What only the PostgreSQL backend has: its event table partitioned by
//! month, made ahead of need, migrations that nodes may run at once, and
//! store changes that every node hears of.

mod pg;

use std::time::Duration;

use record::events::{Direction, EventKind, EventLog, NewMessage, now_ms};
use record::postgres::Postgres;
use record::quarantine::MessageMeta;
use record::{Directory, RecordError};
use sqlx::Connection;

/// A message the front line received, recorded at `at`.
fn received(id: &str, tenant: i64, at: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant,
        direction: Direction::Inbound,
        message_id: None,
        mail_from: "a@x.test".into(),
        subject: None,
        stream: None,
        tags: Vec::new(),
        metadata: serde_json::json!({}),
        recipients: Vec::new(),
        at,
        detail: Some(serde_json::json!({"recipients": []})),
        idempotency: None,
    }
}

#[tokio::test]
async fn events_go_to_their_month_s_partition_made_ahead() {
    let url = pg::fresh_database().await;
    // Two nodes starting together: both migrate, one after the other.
    let (a, b) = tokio::join!(Postgres::connect(&url, 2), Postgres::connect(&url, 2));
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    let t = a.tenant("acme").await.expect("a tenant");
    assert_eq!(b.tenant("acme").await.expect("the same tenant on b"), t);

    let now = now_ms();
    let msg = received("m1", t.id, now);
    a.accept(msg).await.expect("accepted");
    assert!(matches!(b.message(&t, "m1", None).await, Ok(Some(m)) if m.recipients.is_empty()));

    let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .expect("partitions");
    assert_eq!(partitions.len(), 4, "this month, two ahead, and the default: {partitions:?}");
    let month = chrono::Utc::now().format("events_%Y_%m").to_string();
    let home: String = sqlx::query_scalar("SELECT tableoid::regclass::text FROM events WHERE message = 'm1'")
        .fetch_one(&mut c)
        .await
        .expect("the event");
    assert_eq!(home, month);
    let kind: String = sqlx::query_scalar("SELECT type FROM events WHERE message = 'm1'")
        .fetch_one(&mut c)
        .await
        .expect("the event");
    assert_eq!(kind, EventKind::Received.as_str());
    assert!(matches!(a.tenant("no good").await, Err(RecordError::Invalid(_))));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_copy_filed_on_one_node_wakes_the_other_s_watchers() {
    let url = pg::fresh_database().await;
    let a = Postgres::connect(&url, 2).await.expect("node a").into_store();
    let b = Postgres::connect(&url, 2).await.expect("node b").into_store();
    a.quarantine.add_account("shop", "pw", &[]).await.expect("an account");
    let mut changes = b.quarantine.changes();
    let meta = MessageMeta { received_at: 1, ..Default::default() };
    // A node's listener says "changed" once when it starts listening (it
    // may have missed something): let that pass, then every change it
    // sees is another node's announcement.
    a.quarantine.store("shop", "Spam", b"first", &meta).await.expect("filed on a");
    tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.expect("listening").expect("open");
    tokio::time::sleep(Duration::from_millis(200)).await;
    changes.borrow_and_update();
    a.quarantine.store("shop", "Spam", b"hello", &meta).await.expect("filed on a");
    tokio::time::timeout(Duration::from_secs(1), changes.changed())
        .await
        .expect("node b heard of it within a second")
        .expect("open");
    let spam = b.quarantine.folder("shop", "Spam").await.expect("read").expect("Spam");
    let rows = b.quarantine.messages(spam.id).await.expect("read");
    assert_eq!(b.quarantine.read_blob(&rows[1].blob).await.expect("bytes"), b"hello");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_on_the_other_within_a_second() {
    let url = pg::fresh_database().await;
    let a = Postgres::connect(&url, 2).await.expect("node a").into_store();
    let b = Postgres::connect(&url, 2).await.expect("node b").into_store();
    let key = a.directory.create_api_key("acme").await.expect("a key");
    // B knows the key (and keeps it in its cache).
    assert!(b.directory.authenticate(&key).await.expect("read").is_some());
    assert_eq!(a.directory.revoke_api_key("acme", &key).await.expect("revoked"), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while b.directory.authenticate(&key).await.expect("read").is_some() {
        assert!(std::time::Instant::now() < deadline, "node b still takes the revoked key after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_month_past_retention_goes_as_a_partition() {
    let url = pg::fresh_database().await;
    let store = Postgres::connect(&url, 2).await.expect("a store").into_store();
    let t = store.directory.tenant("acme").await.expect("a tenant");
    let now = now_ms();
    let msg = received("m1", t.id, now);
    store.events.accept(msg).await.expect("accepted");
    let month = chrono::Utc::now().format("events_%Y_%m").to_string();
    // Forty days on, this month is past: its partition is dropped whole.
    let gone = store.events.forget_months_before(now + 40 * 86_400_000).await.expect("forgotten");
    assert_eq!(gone, 1);
    let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_class WHERE relname = $1")
        .bind(&month)
        .fetch_one(&mut c)
        .await
        .expect("catalogue");
    assert_eq!(left, 0, "{month} dropped");
    store.close().await;
}
