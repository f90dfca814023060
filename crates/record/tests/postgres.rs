//! What only the PostgreSQL backend has: its event table partitioned by
//! month, made ahead of need, and migrations that nodes may run at once.

mod pg;

use record::events::{Direction, EventKind, EventLog, NewMessage, now_ms};
use record::postgres::Postgres;
use record::{Directory, RecordError};
use sqlx::Connection;

#[tokio::test]
async fn events_go_to_their_month_s_partition_made_ahead() {
    let url = pg::fresh_database().await;
    // Two nodes starting together: both migrate, one after the other.
    let (a, b) = tokio::join!(Postgres::connect(&url, 2), Postgres::connect(&url, 2));
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    let t = a.tenant("acme").await.expect("a tenant");
    assert_eq!(b.tenant("acme").await.expect("the same tenant on b"), t);

    let now = now_ms();
    let msg = NewMessage {
        id: "m1".into(),
        tenant: t.id,
        direction: Direction::Inbound,
        message_id: None,
        mail_from: "a@x.test".into(),
        subject: None,
        stream: None,
        tags: Vec::new(),
        metadata: serde_json::json!({}),
        recipients: Vec::new(),
        at: now,
        detail: Some(serde_json::json!({"recipients": []})),
        idempotency: None,
    };
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
