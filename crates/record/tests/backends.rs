//! What every backend must answer alike, asked through the storage traits
//! only. Each test runs against every backend (`backends()`: SQLite and
//! PostgreSQL, each fresh and empty).

mod pg;

use std::sync::Arc;

use record::events::{
    Addressee, Direction, EventKind, EventQuery, NewEvent, NewMessage, NewRecipient, Suppress,
};
use record::quarantine::{MessageMeta, NewCopy};
use record::{Directory, EventLog, RecordError, Store, Suppressions};

/// A backend's parts, by name.
struct Parts {
    name: &'static str,
    events: Arc<dyn EventLog>,
    directory: Arc<dyn Directory>,
    suppressions: Arc<dyn Suppressions>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Parts {
    async fn close(self) {
        self.store.close().await;
    }
}

async fn parts() -> Vec<Parts> {
    pg::backends()
        .await
        .into_iter()
        .map(|(name, store, _dir)| Parts {
            name,
            events: store.events.clone(),
            directory: store.directory.clone(),
            suppressions: store.suppressions.clone(),
            store,
            _dir,
        })
        .collect()
}

fn msg(id: &str, tenant: i64, rcpts: &[&str]) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant,
        direction: Direction::Outbound,
        message_id: Some(format!("{id}@app.test")),
        mail_from: "app@app.test".into(),
        subject: Some("s".into()),
        stream: None,
        tags: vec!["t".into()],
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

fn event(tenant: Option<i64>, message: &str, idx: i64, kind: EventKind, at: i64) -> NewEvent {
    NewEvent {
        tenant,
        message: message.into(),
        idx: Some(idx),
        address: Some("a@x.test".into()),
        kind,
        at,
        reason: Some("userunknown".into()),
        smtp: None,
        detail: None,
        suppress: (kind == EventKind::Bounced)
            .then(|| Suppress { reason: "userunknown".into(), expires_at: Some(5_000) }),
        source: None,
        group: Vec::new(),
    }
}

#[tokio::test]
async fn status_timeline_point_in_time_and_suppression_expiry() {
    for store in parts().await {
        let name = store.name;
        let (o, s) = (&*store.events, &*store.suppressions);
        let a = store.directory.tenant("a").await.unwrap();
        let b = store.directory.tenant("b").await.unwrap();
        o.accept(msg("m1", a.id, &["A@x.test"])).await.unwrap();
        o.record(event(Some(a.id), "m1", 0, EventKind::Delivered, 2_000)).await.unwrap();
        o.record(event(Some(a.id), "m1", 0, EventKind::Autoreplied, 2_500)).await.unwrap();
        o.record(event(Some(a.id), "m1", 0, EventKind::Bounced, 3_000)).await.unwrap();

        let now = o.message(&a, "m1", None).await.unwrap().unwrap();
        assert_eq!(now.recipients[0].address, "a@x.test", "{name}");
        assert_eq!(now.recipients[0].status, "bounced", "{name}");
        assert_eq!(now.recipients[0].events.len(), 4, "{name}");
        let then = o.message(&a, "m1", Some(2_600)).await.unwrap().unwrap();
        assert_eq!(then.recipients[0].status, "delivered", "{name}: autoreplied does not change the status");
        assert!(o.message(&a, "m1", Some(500)).await.unwrap().is_none(), "{name}: not yet sent at 500");
        assert!(o.message(&b, "m1", None).await.unwrap().is_none(), "{name}: another tenant's message");

        let addrs = vec!["a@x.test".to_string()];
        assert_eq!(s.suppressed(a.id, &addrs, 4_000).await.unwrap().len(), 1, "{name}");
        assert!(s.suppressed(a.id, &addrs, 6_000).await.unwrap().is_empty(), "{name}: expired");
        assert!(s.suppressed(b.id, &addrs, 4_000).await.unwrap().is_empty(), "{name}");
        // A bounce after expiry suppresses again.
        let mut again = event(Some(a.id), "m1", 0, EventKind::Bounced, 7_000);
        again.suppress = Some(Suppress { reason: "userunknown".into(), expires_at: None });
        o.record(again).await.unwrap();
        assert_eq!(s.suppressed(a.id, &addrs, 7_500).await.unwrap().len(), 1, "{name}");

        let h = o.recipient(&a, "A@X.test", None, None, 2).await.unwrap();
        assert_eq!(h.events.len(), 2, "{name}");
        let older = o.recipient(&a, "a@x.test", None, h.next_cursor, 10).await.unwrap();
        assert_eq!(older.events.len(), 3, "{name}");
        assert!(older.events.iter().all(|e| e.id < h.events[1].id), "{name}");
        let bounced = EventQuery { kind: Some(EventKind::Bounced), limit: 1, ..Default::default() };
        let (page, next) = o.events(&a, &bounced).await.unwrap();
        assert_eq!((page.len(), next.is_some()), (1, true), "{name}");
        let all = EventQuery { limit: 10, ..Default::default() };
        assert!(o.events(&b, &all).await.unwrap().0.is_empty(), "{name}");
        // Which of many ids are messages: in chunks, any tenant's.
        let mut ids: Vec<String> = (0..1200).map(|i| format!("nope{i}")).collect();
        ids.insert(700, "m1".into());
        assert_eq!(o.known_messages(&ids).await.unwrap(), ["m1"], "{name}");
        store.close().await;
    }
}

/// One attempt's one reply to several recipients is one stored event, read
/// back as each one's: in the message's timeline, in each address's
/// history, and in a page of events (whole, with its id).
#[tokio::test]
async fn an_event_several_recipients_share_is_each_one_s() {
    for store in parts().await {
        let name = store.name;
        let o = &*store.events;
        let t = store.directory.tenant("acme").await.unwrap();
        o.accept(msg("m1", t.id, &["a@x.test", "B@x.test", "c@x.test"])).await.unwrap();
        let mut both = event(Some(t.id), "m1", 0, EventKind::Bounced, 2_000);
        (both.idx, both.address) = (None, None);
        both.group = vec![Addressee(0, "a@x.test".into()), Addressee(1, "B@x.test".into())];
        let id = o.record(both).await.unwrap();
        // Events written in one batch each get their own id, in order.
        let to_c =
            |kind, at| NewEvent { address: Some("c@x.test".into()), ..event(Some(t.id), "m1", 2, kind, at) };
        let (x, y) = tokio::join!(
            o.record(to_c(EventKind::Deferred, 2_100)),
            o.record(to_c(EventKind::Delivered, 2_200))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(id < x && x < y, "{name}: {id} {x} {y}");

        let m = o.message(&t, "m1", None).await.unwrap().unwrap();
        let status: Vec<&str> = m.recipients.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(status, ["bounced", "bounced", "delivered"], "{name}");
        let last = m.recipients[1].events.last().unwrap();
        assert_eq!((last.id, last.idx, last.address.as_deref()), (id, Some(1), Some("b@x.test")), "{name}");
        let c: Vec<_> = m.recipients[2].events.iter().map(|e| (e.id, e.kind)).collect();
        assert_eq!(
            c[1..],
            [(x, EventKind::Deferred), (y, EventKind::Delivered)],
            "{name}: c's own events only"
        );

        let h = o.recipient(&t, "b@X.test", None, None, 10).await.unwrap();
        let kinds: Vec<_> = h.events.iter().map(|e| (e.kind, e.idx)).collect();
        assert_eq!(kinds, [(EventKind::Bounced, Some(1)), (EventKind::Queued, Some(1))], "{name}");
        assert!(o.recipient(&t, "c@x.test", None, None, 10).await.unwrap().events.len() == 3, "{name}");

        let bounced = EventQuery { kind: Some(EventKind::Bounced), limit: 1, ..Default::default() };
        let (page, next) = o.events(&t, &bounced).await.unwrap();
        let whom: Vec<_> = page.iter().map(|e| (e.id, e.address.as_deref())).collect();
        assert_eq!(whom, [(id, Some("a@x.test")), (id, Some("b@x.test"))], "{name}: one event, whole");
        assert!(next.is_none(), "{name}");
        let to_b = EventQuery { recipient: Some("b@x.test".into()), limit: 10, ..bounced.clone() };
        assert_eq!(o.events(&t, &to_b).await.unwrap().0.len(), 1, "{name}");

        // Each recipient of the group is suppressed.
        let addrs: Vec<String> = ["a@x.test", "b@x.test", "c@x.test"].map(String::from).to_vec();
        assert_eq!(store.suppressions.suppressed(t.id, &addrs, 3_000).await.unwrap().len(), 2, "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn idempotency_keys_conflict() {
    for store in parts().await {
        let name = store.name;
        let o = &*store.events;
        let t = store.directory.tenant("acme").await.unwrap();
        assert!(matches!(store.directory.tenant("bad name!").await, Err(RecordError::Invalid(_))), "{name}");
        let mut m = msg("m1", t.id, &["a@x.test"]);
        m.idempotency = Some(("k1".into(), vec![1], "{}".into()));
        o.accept(m.clone()).await.unwrap();
        m.id = "m2".into();
        assert!(matches!(o.accept(m).await, Err(RecordError::Conflict(_))), "{name}");
        assert!(
            o.message(&t, "m2", None).await.unwrap().is_none(),
            "{name}: a conflicting send writes nothing"
        );
        assert_eq!(o.idempotent(t.id, "k1").await.unwrap(), Some((vec![1], "{}".into())), "{name}");
        assert!(o.has_message("m1").await.unwrap() && !o.has_message("m2").await.unwrap(), "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn manual_suppressions_are_listed_in_order_and_removed() {
    for parts in parts().await {
        let (name, s) = (parts.name, &parts.suppressions);
        let t = parts.directory.tenant("acme").await.unwrap();
        for a in ["c@x.test", "A@x.test", "b@x.test"] {
            s.suppress(&t, a, "manual", None).await.unwrap();
        }
        let listed: Vec<String> =
            s.suppressions(&t, None, 2).await.unwrap().into_iter().map(|e| e.address).collect();
        assert_eq!(listed, ["a@x.test", "b@x.test"], "{name}: in address order, normalized");
        let rest = s.suppressions(&t, Some("b@x.test"), 10).await.unwrap();
        assert_eq!(rest.len(), 1, "{name}");
        assert!(s.unsuppress(&t, "C@X.test").await.unwrap(), "{name}");
        assert!(!s.unsuppress(&t, "c@x.test").await.unwrap(), "{name}: already gone");
        // In force from when it was made, until it expires.
        let other = parts.directory.tenant("other").await.unwrap();
        let until = s.suppress(&other, "B@x.test", "manual", Some(i64::MAX - 1)).await.unwrap();
        let b = vec!["b@x.test".to_string()];
        assert_eq!(s.suppressed(other.id, &b, until.created_at).await.unwrap().len(), 1, "{name}");
        assert!(s.suppressed(other.id, &b, until.created_at - 1).await.unwrap().is_empty(), "{name}");
        assert!(s.suppression(&other, "b@X.test", i64::MAX).await.unwrap().is_none(), "{name}: expired");
        parts.close().await;
    }
}

#[tokio::test]
async fn keys_are_revoked_by_any_prefix_of_eight_or_more_or_whole() {
    for parts in parts().await {
        let (name, d) = (parts.name, &parts.directory);
        let active = || async { d.api_keys("acme").await.unwrap().iter().filter(|k| k.2.is_none()).count() };
        let (a, b, c) = (
            d.create_api_key("acme").await.unwrap(),
            d.create_api_key("acme").await.unwrap(),
            d.create_api_key("acme").await.unwrap(),
        );
        assert_eq!(d.authenticate(&a).await.unwrap().map(|t| t.name), Some("acme".into()), "{name}");
        assert_eq!(d.authenticate("sk_wrong").await.unwrap(), None, "{name}");
        // Too short, not ASCII (cut inside a character), another tenant's.
        assert!(d.revoke_api_key("acme", "sk_1234").await.is_err(), "{name}");
        assert!(d.revoke_api_key("acme", "sk_12345é").await.is_err(), "{name}");
        assert!(d.revoke_api_key("acme", "sk_1234567é").await.is_err(), "{name}");
        assert_eq!(d.revoke_api_key("other", &a[..11]).await.unwrap(), 0, "{name}");
        // Eight to eleven characters: the start of the shown prefix.
        assert_eq!(d.revoke_api_key("acme", &a[..8]).await.unwrap(), 1, "{name}");
        assert_eq!(d.revoke_api_key("acme", &b[..10]).await.unwrap(), 1, "{name}");
        assert!(d.authenticate(&a).await.unwrap().is_none() && d.authenticate(&b).await.unwrap().is_none());
        // The whole key: only that key (a mistyped tail revokes nothing).
        let mut wrong_tail = c.clone();
        let last = if wrong_tail.pop() == Some('0') { '1' } else { '0' };
        wrong_tail.push(last);
        assert_eq!(d.revoke_api_key("acme", &wrong_tail).await.unwrap(), 0, "{name}");
        assert_eq!(active().await, 1, "{name}");
        assert_eq!(d.revoke_api_key("acme", &c).await.unwrap(), 1, "{name}");
        assert_eq!(active().await, 0, "{name}");
        // Any longer start of a key (12 characters, 40) names it too.
        let (e, f) = (d.create_api_key("acme").await.unwrap(), d.create_api_key("acme").await.unwrap());
        assert_eq!(d.revoke_api_key("acme", &e[..12]).await.unwrap(), 1, "{name}");
        assert_eq!(d.revoke_api_key("acme", &f[..40]).await.unwrap(), 1, "{name}");
        assert_eq!(active().await, 0, "{name}");
        parts.close().await;
    }
}

#[tokio::test]
async fn users_and_their_tenants() {
    for parts in parts().await {
        let (name, d) = (parts.name, &parts.directory);
        d.set_user("alice", "s3cret").await.unwrap();
        d.set_user("Zed", "other").await.unwrap();
        d.set_user("alice", "s3cret").await.unwrap();
        assert!(d.verify_user("alice", "s3cret").await.unwrap(), "{name}");
        assert!(!d.verify_user("alice", "wrong").await.unwrap(), "{name}");
        assert!(!d.verify_user("bob", "s3cret").await.unwrap(), "{name}");
        assert!(matches!(d.set_user("a b", "x").await, Err(RecordError::Invalid(_))), "{name}");
        assert_eq!(d.users().await.unwrap(), ["Zed", "alice"], "{name}: byte order");
        assert_eq!(d.user_tenant("alice").await.unwrap(), None, "{name}");
        d.set_user_tenant("alice", "acme").await.unwrap();
        assert_eq!(d.user_tenant("alice").await.unwrap().map(|t| t.name), Some("acme".into()), "{name}");
        assert!(matches!(d.set_user_tenant("nobody", "acme").await, Err(RecordError::Invalid(_))), "{name}");
        let acme = d.tenant("acme").await.unwrap();
        assert_eq!(d.tenant(" acme ").await.unwrap(), acme, "{name}: the same tenant");
        let names: Vec<String> = d.tenants().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["acme"], "{name}");
        // A shared secret: the first to ask decides.
        assert_eq!(d.secret("verp", b"first").await.unwrap(), b"first", "{name}");
        assert_eq!(d.secret("verp", b"second").await.unwrap(), b"first", "{name}");
        parts.close().await;
    }
}

#[tokio::test]
async fn a_store_account_belongs_to_a_tenant() {
    for (name, store, _dir) in pg::backends().await {
        let (d, q) = (&store.directory, &store.quarantine);
        q.add_account("shop", "pw", &["Shop.Test".into()]).await.unwrap();
        assert!(q.verify_account("shop", "pw").await.unwrap(), "{name}");
        assert_eq!(q.domain_accounts().await.unwrap(), [("shop.test".into(), "shop".into())], "{name}");
        assert!(d.account_tenants().await.unwrap().is_empty(), "{name}");
        d.set_account_tenant("shop", "acme").await.unwrap();
        let acme = d.tenant("acme").await.unwrap();
        assert_eq!(d.account_tenants().await.unwrap(), [("shop".into(), acme.id)], "{name}");
        assert!(
            matches!(d.set_account_tenant("nobody", "acme").await, Err(RecordError::Invalid(_))),
            "{name}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_received_message_lists_its_recipients_and_reads_their_states_from_events() {
    for store in parts().await {
        let name = store.name;
        let o = &*store.events;
        let t = store.directory.tenant("default").await.unwrap();
        let recipients = serde_json::json!([
            {"address": "ann@example.test", "kind": "rcpt"},
            {"address": "shop", "kind": "copy"},
        ]);
        o.note_message(
            1_000,
            Box::new(move || NewMessage {
                direction: Direction::Inbound,
                recipients: Vec::new(),
                detail: Some(serde_json::json!({"peer": "192.0.2.1", "recipients": recipients})),
                ..msg("q1", t.id, &[])
            }),
        );
        o.note(event(None, "q1", 0, EventKind::Relayed, 2_000));
        o.note(event(None, "q1", 1, EventKind::Filed, 2_100));
        o.note(event(None, "never-received", 0, EventKind::Relayed, 2_200));
        o.flush().await;

        let (found, id) = o.find_message("<q1@app.test>").await.unwrap().expect("found by Message-ID");
        assert_eq!((found.name.as_str(), id.as_str()), ("default", "q1"), "{name}");
        let m = o.message(&t, "q1", None).await.unwrap().expect("recorded");
        assert_eq!(m.direction, Direction::Inbound, "{name}");
        let states: Vec<(&str, &str, &str)> =
            m.recipients.iter().map(|r| (r.address.as_str(), r.kind.as_str(), r.status.as_str())).collect();
        assert_eq!(states, [("ann@example.test", "rcpt", "relayed"), ("shop", "copy", "filed")], "{name}");
        let then = o.message(&t, "q1", Some(1_500)).await.unwrap().expect("recorded by then");
        assert_eq!(then.recipients[0].status, "received", "{name}");
        // Bounces match outbound mail only.
        assert_eq!(o.by_message_id("q1@app.test", "ann@example.test").await.unwrap(), None, "{name}");
        // An event of a message never recorded is dropped.
        assert!(!o.has_message("never-received").await.unwrap(), "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn the_quarantine_files_reads_flags_and_expunges_copies() {
    for (name, store, _dir) in pg::backends().await {
        let q = &store.quarantine;
        q.add_account("shop", "pw", &[]).await.unwrap();
        let meta =
            MessageMeta { received_at: 1_700_000_000, queue_id: Some("q1".into()), ..Default::default() };
        let placed = q.store("shop", "Bounces/Hard", b"Subject: x\r\n\r\nhi\r\n", &meta).await.unwrap();
        let folder = q.folder("shop", "Bounces/Hard").await.unwrap().expect("the folder");
        assert_eq!((folder.id, folder.uidvalidity), (placed.folder_id, placed.uidvalidity), "{name}");
        assert_eq!(folder.uidnext, placed.uid + 1, "{name}");
        let rows = q.messages(folder.id).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(q.read_blob(&rows[0].blob).await.unwrap(), b"Subject: x\r\n\r\nhi\r\n", "{name}");
        assert_eq!(
            q.filed_from("shop", "q1").await.unwrap(),
            Some(("Bounces/Hard".into(), placed.uid)),
            "{name}"
        );
        q.set_flags(folder.id, &[(placed.uid, "\\Seen".into())]).await.unwrap();
        assert_eq!(q.messages(folder.id).await.unwrap()[0].flags, "\\Seen", "{name}");
        assert_eq!(q.expunge(folder.id, &[placed.uid]).await.unwrap(), 1, "{name}");
        assert!(q.messages(folder.id).await.unwrap().is_empty(), "{name}");
        // UIDs are never given out twice.
        let again = q.store("shop", "Bounces/Hard", b"again", &meta).await.unwrap();
        assert!(again.uid > placed.uid, "{name}");
        store.close().await;
    }
}

/// Retention: a sweep deletes what is past its folder's retention, and
/// bytes only once no copy shares them.
#[tokio::test]
async fn the_sweep_deletes_what_is_past_retention_and_unshared_bytes() {
    for (name, store, _dir) in pg::backends().await {
        let q = &store.quarantine;
        q.add_account("shop", "pw", &[]).await.unwrap();
        q.set_retention("shop", None, 10).await.unwrap();
        q.set_retention("shop", Some("Human"), 2).await.unwrap();
        assert!(q.set_retention("shop", None, 0).await.is_err(), "{name}");
        // An account or folder that does not exist is refused, not ignored.
        assert!(q.set_retention("nobody", None, 7).await.is_err(), "{name}");
        assert!(q.set_retention("nobody", Some("Spam"), 7).await.is_err(), "{name}");
        let e = q.set_retention("shop", Some("Spma"), 7).await.unwrap_err().to_string();
        assert!(e.contains("no folder \"Spma\""), "{name}: {e}");
        assert!(q.folder("shop", "Spma").await.unwrap().is_none(), "{name}: not made either");
        let day = 86_400;
        let at = |d: i64| MessageMeta { received_at: d * day, ..Default::default() };
        let copies = vec![
            NewCopy {
                account: "shop".into(),
                folder: "Human".into(),
                bytes: b"shared".to_vec(),
                meta: at(100),
            },
            NewCopy {
                account: "shop".into(),
                folder: "Spam".into(),
                bytes: b"shared".to_vec(),
                meta: at(100),
            },
            NewCopy { account: "nobody".into(), folder: "Spam".into(), bytes: b"x".to_vec(), meta: at(100) },
        ];
        let placed = q.store_many(copies).await;
        assert!(placed[0].is_ok() && placed[1].is_ok() && placed[2].is_err(), "{name}: {placed:?}");
        // Day 103: Human's two days are past, Spam's ten are not; the
        // bytes stay for Spam's copy.
        let would = q.expired(103 * day, &Default::default()).await.unwrap();
        assert_eq!(would, vec![("shop".to_string(), "Human".to_string(), 1)], "{name}: a dry run");
        let swept = q.sweep(103 * day, &Default::default()).await.unwrap();
        assert_eq!((swept.messages, swept.blobs), (1, 0), "{name}");
        let spam = q.folder("shop", "Spam").await.unwrap().expect("Spam");
        let rows = q.messages(spam.id).await.unwrap();
        assert_eq!(q.read_blob(&rows[0].blob).await.unwrap(), b"shared", "{name}");
        // A recipient's policy keeping Spam 30 days wins over the folder's 10.
        let policy = std::collections::HashMap::from([(spam.id, 30)]);
        let swept = q.sweep(111 * day, &policy).await.unwrap();
        assert_eq!((swept.messages, swept.blobs), (0, 0), "{name}: the policy's days win");
        let swept = q.sweep(111 * day, &Default::default()).await.unwrap();
        assert_eq!((swept.messages, swept.blobs), (1, 1), "{name}");
        assert!(q.read_blob(&rows[0].blob).await.is_err(), "{name}: the bytes are gone");
        store.close().await;
    }
}

/// Retention of the record: the events of months before a cutoff go;
/// later ones, and the messages, stay.
#[tokio::test]
async fn the_events_of_months_before_a_cutoff_are_forgotten() {
    for (name, store, _dir) in pg::backends().await {
        let o = &store.events;
        let t = store.directory.tenant("acme").await.unwrap();
        o.accept(msg("m1", t.id, &["a@x.test", "b@x.test"])).await.unwrap(); // queued at 1 s after 1970
        let now = record::events::now_ms();
        let mut both = event(Some(t.id), "m1", 0, EventKind::Delivered, now);
        (both.idx, both.address) = (None, None);
        both.group = vec![Addressee(0, "a@x.test".into()), Addressee(1, "b@x.test".into())];
        o.record(both).await.unwrap();
        assert_eq!(o.forget_months_before(now).await.unwrap(), 2, "{name}: the two queued events of 1970");
        let m = o.message(&t, "m1", None).await.unwrap().expect("the message stays");
        let kinds: Vec<_> = m.recipients[0].events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Delivered], "{name}");
        assert_eq!(o.recipient(&t, "b@x.test", None, None, 10).await.unwrap().events.len(), 1, "{name}");
        assert_eq!(o.forget_months_before(now).await.unwrap(), 0, "{name}: this month's stay");
        store.close().await;
    }
}

/// Waits up to `within` for `changes` to move.
async fn moves(changes: &mut tokio::sync::watch::Receiver<u64>, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, changes.changed()).await.is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn dkim_keys_are_kept_once_per_selector_and_every_change_is_heard() {
    use record::directory::DkimKey;
    let second = std::time::Duration::from_millis(2500);
    for (name, store, _dir) in pg::backends().await {
        let d = &store.directory;
        let mut changes = d.changes();
        // A first read settles what the watch starts from.
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        changes.borrow_and_update();
        let key = |selector: &str, pem: &str| DkimKey {
            domain: "acme.test".into(),
            selector: selector.into(),
            pem: pem.into(),
            created_at: 7,
        };
        assert!(d.add_dkim_key(&key("s1", "PEM one")).await.unwrap(), "{name}");
        assert!(moves(&mut changes, second).await, "{name}: adding a DKIM key is heard");
        // The selector published in DNS is never replaced.
        assert!(!d.add_dkim_key(&key("s1", "PEM two")).await.unwrap(), "{name}");
        assert!(d.add_dkim_key(&key("s2", "PEM three")).await.unwrap(), "{name}");
        let kept = d.dkim_keys().await.unwrap();
        assert_eq!(kept, [key("s1", "PEM one"), key("s2", "PEM three")], "{name}");
        assert!(!format!("{kept:?}").contains("PEM"), "{name}: a key's Debug leaves the secret out");
        changes.borrow_and_update();
        assert!(d.remove_dkim_key("acme.test", "s1").await.unwrap(), "{name}");
        assert!(!d.remove_dkim_key("acme.test", "s1").await.unwrap(), "{name}");
        assert!(moves(&mut changes, second).await, "{name}: removing a DKIM key is heard");
        assert_eq!(d.dkim_keys().await.unwrap(), [key("s2", "PEM three")], "{name}");
        // A new store account (what the tee routes by) is heard too.
        changes.borrow_and_update();
        store.quarantine.add_account("shop", "pw", &["shop.test".into()]).await.unwrap();
        assert!(moves(&mut changes, second).await, "{name}: a new store account is heard");
        store.close().await;
    }
}

/// A provider's webhook body is recorded whole (one transaction), its
/// events found again by their source, its one-time tokens taken once, and
/// its message ids linked to ours.
#[tokio::test]
async fn provider_events_are_recorded_together_and_found_by_source() {
    use record::events::ProviderLink;
    for store in parts().await {
        let name = store.name;
        let o = &*store.events;
        let a = store.directory.tenant("a").await.unwrap();
        o.accept(msg("m1", a.id, &["a@x.test", "b@x.test"])).await.unwrap();
        let mut matched = event(Some(a.id), "m1", 1, EventKind::Delivered, 2_000);
        matched.source = Some("provider:ses:e1:b@x.test".into());
        let mut unmatched = event(Some(a.id), "ses:0100abc", 0, EventKind::Bounced, 2_100);
        (unmatched.idx, unmatched.source) = (None, Some("provider:ses:e2:a@x.test".into()));
        let mut other = event(Some(a.id), "m1", 0, EventKind::Opened, 2_200);
        other.source = Some("provider:sendgrid:e3:a@x.test".into());
        let ids = o.record_all(vec![matched, unmatched, other]).await.unwrap();
        assert_eq!(ids.len(), 3, "{name}");
        let view = o.message(&a, "m1", None).await.unwrap().unwrap();
        assert_eq!(view.recipients[1].status, "delivered", "{name}: a matched event sets the status");
        let sources = ["provider:ses:e1:b@x.test", "provider:ses:e2:a@x.test", "provider:ses:e9:a@x.test"];
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let mut seen = o.recorded_sources(&sources).await.unwrap();
        seen.sort();
        assert_eq!(seen, sources[..2], "{name}");
        let ses = EventQuery { source_prefix: Some("provider:ses:".into()), limit: 10, ..Default::default() };
        let (page, _) = o.events(&a, &ses).await.unwrap();
        assert_eq!(page.len(), 2, "{name}: the SES events, not SendGrid's");
        assert!(page.iter().any(|e| e.message == "ses:0100abc" && e.kind == EventKind::Bounced), "{name}");
        // An event that could fail alone (no tenant) refuses the whole call.
        let mut lone = event(None, "m1", 0, EventKind::Clicked, 3_000);
        lone.source = Some("provider:ses:e4:a@x.test".into());
        let mut fine = event(Some(a.id), "m1", 0, EventKind::Clicked, 3_000);
        fine.source = Some("provider:ses:e5:a@x.test".into());
        assert!(matches!(o.record_all(vec![fine, lone]).await, Err(RecordError::Invalid(_))), "{name}");
        let later: Vec<String> = vec!["provider:ses:e5:a@x.test".into()];
        assert!(o.recorded_sources(&later).await.unwrap().is_empty(), "{name}: none of it recorded");

        // One-time tokens: taken once, given back, forgotten when old.
        assert!(o.claim_nonce("mailgun", "t1", 1_000, 0).await.unwrap(), "{name}");
        assert!(!o.claim_nonce("mailgun", "t1", 1_100, 0).await.unwrap(), "{name}: a replay");
        assert!(o.claim_nonce("sendgrid", "t1", 1_100, 0).await.unwrap(), "{name}: per provider");
        o.release_nonce("mailgun", "t1").await.unwrap();
        assert!(o.claim_nonce("mailgun", "t1", 1_200, 0).await.unwrap(), "{name}: given back");
        assert!(o.claim_nonce("mailgun", "t2", 9_000, 5_000).await.unwrap(), "{name}");
        assert!(o.claim_nonce("mailgun", "t1", 9_100, 5_000).await.unwrap(), "{name}: forgotten");

        // A provider's id, linked to the Message-ID we sent; the first link stands.
        let link = |m: &str| ProviderLink {
            provider: "sendgrid".into(),
            provider_id: "sg1".into(),
            tenant: a.id,
            message_id: m.into(),
            at: 1,
        };
        o.link_provider_id(&link("m1@app.test")).await.unwrap();
        o.link_provider_id(&link("other@app.test")).await.unwrap();
        let found = o.provider_message("sendgrid", "sg1").await.unwrap();
        assert_eq!(found, Some((a.id, "m1@app.test".to_string())), "{name}");
        assert_eq!(o.provider_message("ses", "sg1").await.unwrap(), None, "{name}");
        store.close().await;
    }
}

/// What an open or a click needs is one lookup: the recipient, where the
/// link leads (kept once, before the message), how many links there are,
/// and when the message was delivered.
#[tokio::test]
async fn a_tracked_link_is_found_by_message_recipient_and_number() {
    for store in parts().await {
        let name = store.name;
        let o = &*store.events;
        let a = store.directory.tenant("a").await.unwrap();
        let urls = vec!["https://x.test/a".to_string(), "https://x.test/b".to_string()];
        o.keep_links("m1", &urls).await.unwrap();
        o.keep_links("m1", &["https://evil.test/".to_string()]).await.unwrap();
        o.accept(msg("m1", a.id, &["a@x.test", "b@x.test"])).await.unwrap();
        let t = o.tracking_target("m1", 1, Some(1)).await.unwrap().unwrap();
        assert_eq!(
            (t.tenant, t.address.as_str(), t.url.as_deref()),
            (a.id, "b@x.test", Some("https://x.test/b"))
        );
        assert_eq!((t.links, t.delivered_at), (2, None), "{name}: the second keep changed nothing");
        o.record(event(Some(a.id), "m1", 1, EventKind::Delivered, 4_000)).await.unwrap();
        let t = o.tracking_target("m1", 1, None).await.unwrap().unwrap();
        assert_eq!((t.url, t.delivered_at), (None, Some(4_000)), "{name}");
        assert_eq!(o.tracking_target("m1", 0, Some(0)).await.unwrap().unwrap().delivered_at, None, "{name}");
        assert!(o.tracking_target("m1", 2, Some(0)).await.unwrap().is_none(), "{name}: no third recipient");
        assert!(o.tracking_target("m2", 0, Some(0)).await.unwrap().is_none(), "{name}");
        store.close().await;
    }
}

/// The global spam model: bulk training adds (or replaces, with reset),
/// moves the stamp every node watches, and stays apart from users' counts.
#[tokio::test]
async fn the_global_spam_model_adds_resets_and_stamps() {
    use record::spam_tokens::{GLOBAL, ScopeCounts};
    for (name, store, _dir) in pg::backends().await {
        let t = &store.spam_tokens;
        assert_eq!(t.stamp(GLOBAL).await.unwrap(), None, "{name}: never trained");
        let first = ScopeCounts { ham: 2, spam: 1, tokens: vec![(1, 2, 0), (u64::MAX, 0, 1)] };
        t.add_counts(GLOBAL, &first, false).await.unwrap();
        let stamp = t.stamp(GLOBAL).await.unwrap().expect("stamped");
        t.add_counts(GLOBAL, &ScopeCounts { ham: 1, spam: 0, tokens: vec![(1, 1, 0)] }, false).await.unwrap();
        let mut held = t.load_counts(GLOBAL).await.unwrap();
        held.tokens.sort();
        assert_eq!((held.ham, held.spam), (3, 1), "{name}");
        assert_eq!(held.tokens, vec![(1, 3, 0), (u64::MAX, 0, 1)], "{name}: a token's bits survive");
        assert!(t.stamp(GLOBAL).await.unwrap().unwrap() >= stamp, "{name}");
        t.train("ann@example.net", "h1", &[7], true).await.unwrap();
        t.add_counts(GLOBAL, &ScopeCounts { ham: 0, spam: 1, tokens: vec![(9, 0, 1)] }, true).await.unwrap();
        let held = t.load_counts(GLOBAL).await.unwrap();
        assert_eq!((held.ham, held.spam, held.tokens), (0, 1, vec![(9, 0, 1)]), "{name}: reset");
        assert_eq!(t.load_counts("ann@example.net").await.unwrap().spam, 1, "{name}: users' counts stay");
        store.close().await;
    }
}

/// Removing an account takes its copies, folders and domains, and the
/// bytes only it referred to; bytes another account shares stay.
#[tokio::test]
async fn an_account_is_removed_with_what_it_holds() {
    for (name, store, _dir) in pg::backends().await {
        let q = &store.quarantine;
        q.add_account("gone", "pw", &["gone.test".to_string()]).await.unwrap();
        q.add_account("kept", "pw", &[]).await.unwrap();
        let meta = MessageMeta { received_at: 100, ..MessageMeta::default() };
        for (account, bytes) in [("gone", &b"only gone's"[..]), ("gone", b"shared"), ("kept", b"shared")] {
            q.store(account, "Spam", bytes, &meta).await.unwrap();
        }
        let swept = q.remove_account("gone").await.unwrap().expect("it existed");
        assert_eq!((swept.messages, swept.blobs), (2, 1), "{name}: the shared bytes stay");
        assert_eq!(q.accounts().await.unwrap(), vec!["kept".to_string()], "{name}");
        assert!(q.domain_accounts().await.unwrap().is_empty(), "{name}: its domains went too");
        assert!(q.folder("gone", "Spam").await.unwrap().is_none(), "{name}");
        let kept = q.folder("kept", "Spam").await.unwrap().expect("kept's Spam");
        let rows = q.messages(kept.id).await.unwrap();
        assert_eq!(q.read_blob(&rows[0].blob).await.unwrap(), b"shared", "{name}");
        assert_eq!(q.remove_account("gone").await.unwrap(), None, "{name}: already gone");
        // The name can be used again, from nothing.
        q.add_account("gone", "pw", &[]).await.unwrap();
        q.store("gone", "Spam", b"new", &meta).await.unwrap();
        let spam = q.folder("gone", "Spam").await.unwrap().expect("a new Spam");
        assert_eq!(q.messages(spam.id).await.unwrap().len(), 1, "{name}");
        store.close().await;
    }
}
