//! Text search over events (`GET /v1/events?q=`, the dashboard's search
//! box) for a common word, a rare one and one common only outside the
//! window, asked of every backend alike. On SQLite a common word is read
//! by walking the window's events (`sqlite/search.rs`), a rare one from
//! the trigram index: both must give what a plain reading gives, page by
//! page, including an event recorded late with an earlier time.

mod pg;

use record::Store;
use record::directory::Tenant;
use record::events::{Direction, EventKind, EventQuery, NewEvent, NewMessage, NewRecipient, now_ms};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

async fn message(store: &Store, t: &Tenant, id: &str, subject: &str, at: i64) {
    let msg = NewMessage {
        id: id.into(),
        tenant: t.id,
        direction: Direction::Outbound,
        message_id: None,
        mail_from: "app@acme.test".into(),
        subject: Some(subject.into()),
        stream: None,
        tags: Vec::new(),
        metadata: serde_json::json!({}),
        recipients: vec![NewRecipient {
            address: format!("{id}@x.test"),
            kind: "to".into(),
            status: EventKind::Queued,
            reason: None,
        }],
        at,
        detail: None,
        idempotency: None,
    };
    store.events.accept(msg).await.expect("accepted");
}

async fn bounce(store: &Store, t: &Tenant, id: &str, at: i64) {
    let event = NewEvent {
        tenant: Some(t.id),
        message: id.into(),
        idx: Some(0),
        address: Some(format!("{id}@x.test")),
        kind: EventKind::Bounced,
        at,
        reason: Some("userunknown".into()),
        smtp: None,
        detail: None,
        suppress: None,
        source: None,
        group: Vec::new(),
    };
    store.events.record(event).await.expect("recorded");
}

/// Every page of a search, as (message, type) in order.
async fn search(store: &Store, t: &Tenant, text: &str, since: Option<i64>) -> Vec<(String, String)> {
    let mut q = EventQuery { text: Some(text.into()), since, limit: 50, ..Default::default() };
    let mut all = Vec::new();
    loop {
        let (rows, next) = store.events.events(t, &q).await.expect("a page");
        assert!(rows.len() <= 50, "a page holds at most its limit");
        all.extend(rows.into_iter().map(|r| (r.message, r.kind.as_str().to_string())));
        match next {
            Some(c) => q.cursor = Some(c),
            None => return all,
        }
    }
}

#[tokio::test]
async fn a_common_word_a_rare_one_and_one_common_outside_the_window_find_the_same_events() {
    let now = now_ms();
    for (name, store, _dir) in pg::backends().await {
        let t = store.directory.tenant("acme").await.expect("a tenant");
        // 2,100 old messages with the word (common in the index), then
        // the window's: 60 with it, 40 without, and a rare word.
        for i in 0..2_100 {
            message(&store, &t, &format!("old{i:04}"), &format!("Weekly digest #{i}"), now - 30 * DAY + i)
                .await;
        }
        for i in 0..100 {
            let subject =
                if i % 5 < 3 { format!("Your WEEKLY digest #{i}") } else { format!("Receipt #{i}") };
            message(&store, &t, &format!("new{i:03}"), &subject, now - 2 * HOUR + i).await;
        }
        message(&store, &t, "rare", "a zebra crossing", now - HOUR).await;
        // Recorded last but an hour earlier than the window's messages,
        // yet inside the window: found, in the order it was recorded.
        bounce(&store, &t, "new000", now - 3 * HOUR).await;

        let window = Some(now - DAY);
        let found = search(&store, &t, "weekly", window).await;
        let mut want: Vec<(String, String)> =
            (0..100).filter(|i| i % 5 < 3).map(|i| (format!("new{i:03}"), "queued".to_string())).collect();
        want.push(("new000".into(), "bounced".into()));
        assert_eq!(found, want, "{name}: the window's events of the common word, recorded order");

        let everything = search(&store, &t, "weekly", None).await;
        assert_eq!(everything.len(), 2_100 + 60 + 1, "{name}: every event, page by page");
        assert_eq!(everything.first().map(|e| e.0.as_str()), Some("old0000"), "{name}");
        let mut seen = everything.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), everything.len(), "{name}: no event twice across pages");

        let rare = search(&store, &t, "ZEBRA", window).await;
        assert_eq!(rare, [("rare".to_string(), "queued".to_string())], "{name}: a rare word");
        // Common in the record, nothing in a window that has no events yet.
        assert!(search(&store, &t, "weekly", Some(now + HOUR)).await.is_empty(), "{name}");
        assert_eq!(search(&store, &t, "receipt", window).await.len(), 40, "{name}");
        store.close().await;
    }
}
