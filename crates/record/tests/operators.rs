//! The dashboard's operators and sessions, and the `reason` filter its
//! search (and `GET /v1/events`) uses, asked of every backend alike
//! (SQLite and PostgreSQL, each fresh).

mod pg;

use record::events::{Direction, EventKind, EventQuery, NewEvent, NewMessage, NewRecipient, now_ms};

#[tokio::test]
async fn operators_log_in_see_their_tenants_and_keep_sessions_by_hash() {
    for (name, store, _dir) in pg::backends().await {
        let ops = &store.operators;
        let acme = store.directory.tenant("acme").await.expect("a tenant");
        ops.set_operator("ann", "pw-ann", Some(&[acme.id])).await.expect("added");
        ops.set_operator("root", "pw-root", None).await.expect("added");
        assert!(ops.login("ann", "nope").await.expect("asked").is_none(), "{name}");
        let ann = ops.login("ann", "pw-ann").await.expect("asked").expect("ann");
        assert!(ann.sees(acme.id) && !ann.sees(acme.id + 1), "{name}");
        let root = ops.login("root", "pw-root").await.expect("asked").expect("root");
        assert!(root.all_tenants && root.sees(12345), "{name}");
        let names: Vec<String> = ops.operators().await.expect("listed").into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["ann", "root"], "{name}");

        ops.start_session("token-1", "ann", "csrf-1", now_ms() + 60_000).await.expect("kept");
        let s = ops.session("token-1").await.expect("asked").expect("a session");
        assert_eq!((s.operator, s.csrf.as_str()), (ann.clone(), "csrf-1"), "{name}");
        let hash = record::operators::token_hash("token-1");
        assert!(ops.session(&hash).await.expect("asked").is_none(), "{name}: the stored hash opens nothing");
        // New grants end the operator's sessions.
        ops.set_operator("ann", "pw-ann", None).await.expect("replaced");
        assert!(ops.session("token-1").await.expect("asked").is_none(), "{name}");
        ops.start_session("token-2", "ann", "csrf-2", now_ms() + 60_000).await.expect("kept");
        ops.end_session("token-2").await.expect("ended");
        assert!(ops.session("token-2").await.expect("asked").is_none(), "{name}");
        ops.start_session("token-3", "ann", "csrf-3", now_ms() - 1).await.expect("kept");
        assert!(ops.session("token-3").await.expect("asked").is_none(), "{name}: expired");
        store.close().await;
    }
}

#[tokio::test]
async fn events_are_filtered_by_reason_and_by_subject_or_sender_words() {
    for (name, store, _dir) in pg::backends().await {
        let t = store.directory.tenant("acme").await.expect("a tenant");
        let at = now_ms();
        let rcpt = |a: &str| NewRecipient {
            address: a.into(),
            kind: "to".into(),
            status: EventKind::Queued,
            reason: None,
        };
        let msg = NewMessage {
            id: "m1".into(),
            tenant: t.id,
            direction: Direction::Outbound,
            message_id: None,
            mail_from: "app@acme.test".into(),
            subject: Some("Your Invoice: 100%_off".into()),
            stream: None,
            tags: Vec::new(),
            metadata: serde_json::json!({}),
            recipients: vec![rcpt("a@x.test"), rcpt("b@x.test")],
            at,
            detail: None,
            idempotency: None,
        };
        store.events.accept(msg).await.expect("accepted");
        let bounce = |idx: i64, reason: &str| NewEvent {
            tenant: Some(t.id),
            message: "m1".into(),
            idx: Some(idx),
            address: Some(if idx == 0 { "a@x.test" } else { "b@x.test" }.into()),
            kind: EventKind::Bounced,
            at: at + 1,
            reason: Some(reason.into()),
            smtp: None,
            detail: None,
            suppress: None,
            source: None,
            group: Vec::new(),
        };
        for (idx, reason) in [(0, "userunknown"), (1, "mailboxfull")] {
            store.events.record(bounce(idx, reason)).await.expect("recorded");
        }
        let q = EventQuery { reason: Some("userunknown".into()), limit: 10, ..Default::default() };
        let (rows, _) = store.events.events(&t, &q).await.expect("a page");
        let got: Vec<_> = rows.iter().map(|r| (r.address.clone(), r.reason.clone())).collect();
        assert_eq!(got, [(Some("a@x.test".to_string()), Some("userunknown".to_string()))], "{name}");
        let late = NewEvent { kind: EventKind::Complained, at: at + 9 * 24 * 3600 * 1000, ..bounce(0, "x") };
        store.events.record(late).await.expect("recorded");
        // Two queued, two bounced, the complaint: every event of the message.
        let day = 24 * 3600 * 1000;
        for (text, since, n) in [
            ("invoice", None, 5),
            ("INVOICE: 100%_", None, 5),
            ("%", None, 5),
            ("0%x", None, 0),
            ("APP@acme", None, 5),
            ("nothing", None, 0),
            // Shorter than a trigram: the LIKE; a quote or an FTS5 operator
            // is only text.
            ("in", None, 5),
            ("Zz", None, 0),
            ("ur \"In", None, 0),
            ("OFF", None, 5),
            ("NEAR(", None, 0),
            ("e.test", None, 5),
            // A complaint 9 days on: found from a window 4 days after the
            // message, not from one 8 days after (the message is looked
            // for from 7 days before the window).
            ("invoice", Some(at + 4 * day), 1),
            ("invoice", Some(at + 8 * day), 0),
        ] {
            let q = EventQuery { text: Some(text.into()), since, limit: 10, ..Default::default() };
            let (rows, _) = store.events.events(&t, &q).await.expect("a page");
            assert_eq!(rows.len(), n, "{name}: {text:?} since {since:?}");
        }
        for (direction, n) in [(Direction::Outbound, 5), (Direction::Inbound, 0), (Direction::Both, 5)] {
            let q = EventQuery { direction: Some(direction), limit: 10, ..Default::default() };
            assert_eq!(
                store.events.events(&t, &q).await.expect("a page").0.len(),
                n,
                "{name}: {direction:?}"
            );
        }
        store.close().await;
    }
}
