//! Statistics (`EventLog::stats`) answered alike by every backend: known
//! events across two days, two hours, two tags, two domains, two providers
//! and two tenants, and every number checked, for every grouping.

mod pg;

use record::EventLog;
use record::events::{Addressee, Direction, EventKind, NewEvent, NewMessage, NewRecipient};
use record::stats::{Counts, Engagement, Group, GroupBy, Stats, StatsQuery};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-11-02T00:00:00Z: the window's first day (D2 is the next).
const D1: i64 = 1_793_577_600_000;
const D2: i64 = D1 + DAY;

fn message(
    id: &str,
    tenant: i64,
    tags: &[&str],
    rcpts: &[&str],
    at: i64,
    direction: Direction,
) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant,
        direction,
        message_id: Some(format!("{id}@app.test")),
        mail_from: "app@app.test".into(),
        subject: None,
        stream: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
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
        at,
        detail: None,
        idempotency: None,
    }
}

/// One recipient's event; `source` as a provider's webhook or a report
/// would have it.
fn event(tenant: i64, (message, idx, address): (&str, i64, &str), kind: EventKind, at: i64) -> NewEvent {
    NewEvent {
        tenant: Some(tenant),
        message: message.into(),
        idx: Some(idx),
        address: Some(address.into()),
        kind,
        at,
        reason: None,
        smtp: None,
        detail: None,
        suppress: None,
        source: None,
        group: Vec::new(),
    }
}

fn with(reason: Option<&str>, source: Option<&str>, e: NewEvent) -> NewEvent {
    NewEvent { reason: reason.map(str::to_string), source: source.map(str::to_string), ..e }
}

/// Records the scene: tenant `a`'s mail over D1 and D2 (and a message
/// the day before, outside the window), its inbound mail, and tenant
/// `b`'s.
async fn scene(o: &dyn EventLog, a: i64, b: i64) {
    use EventKind::*;
    let out = Direction::Outbound;
    o.accept(message("m0", a, &["news"], &["old@one.test"], D1 - HOUR, out)).await.unwrap();
    o.accept(message("m1", a, &["news"], &["x@one.test", "y@two.test"], D1 + 10 * HOUR + 5 * MIN, out))
        .await
        .unwrap();
    o.accept(message("m2", a, &["news", "promo"], &["z@one.test"], D1 + 11 * HOUR, out)).await.unwrap();
    o.accept(message("m3", a, &[], &["w@two.test"], D2 + 10 * HOUR, out)).await.unwrap();
    o.accept(message("m5", a, &["promo"], &["r@two.test", "f@one.test"], D2 + 10 * HOUR, out)).await.unwrap();
    o.accept(message("m4", b, &["news"], &["v@one.test"], D1 + 10 * HOUR, out)).await.unwrap();
    let (x, y, z, w) =
        (("m1", 0, "x@one.test"), ("m1", 1, "y@two.test"), ("m2", 0, "z@one.test"), ("m3", 0, "w@two.test"));
    let (ses1, ses2) = (Some("provider:ses:ev1:z@one.test"), Some("provider:ses:ev2:z@one.test"));
    let (sg1, sg2) = (Some("provider:sendgrid:e3:w@two.test"), Some("provider:sendgrid:e4:w@two.test"));
    let h = |d: i64, hour: i64, min: i64| d + hour * HOUR + min * MIN;
    let events = [
        with(None, None, event(a, ("m0", 0, "old@one.test"), Delivered, D1 - HOUR + MIN)),
        with(None, None, event(a, x, Delivered, h(D1, 10, 6))),
        with(Some("human"), None, event(a, x, Opened, h(D1, 10, 30))),
        with(Some("scanner"), None, event(a, x, Clicked, h(D1, 10, 31))),
        with(Some("privacy_proxy"), None, event(a, x, Opened, h(D1, 11, 10))),
        with(Some("human"), None, event(a, x, Clicked, h(D1, 11, 15))),
        with(Some("human"), None, event(a, x, Opened, h(D2, 10, 0))),
        with(Some("userunknown"), None, event(a, y, Bounced, h(D1, 10, 20))),
        with(Some("greylisted"), None, event(a, z, Deferred, h(D1, 11, 0) + 30_000)),
        with(None, None, event(a, z, Sent, h(D1, 11, 1))),
        with(Some("unknown"), ses1, event(a, z, Opened, h(D2, 10, 10))),
        with(Some("human"), ses2, event(a, z, Opened, h(D2, 10, 20))),
        with(Some("abuse"), Some("report:r1"), event(a, z, Complained, h(D2, 10, 30))),
        with(None, sg1, event(a, w, Delivered, h(D2, 10, 1))),
        with(None, None, event(a, w, Unsubscribed, h(D2, 10, 40))),
        with(Some("mailboxfull"), sg2, event(a, w, Bounced, h(D2, 10, 50))),
        // Refused in our own transaction, and never taken: bounces too.
        with(Some("userunknown"), None, event(a, ("m5", 0, "r@two.test"), Rejected, h(D2, 10, 2))),
        with(Some("networkerror"), None, event(a, ("m5", 1, "f@one.test"), Failed, h(D2, 10, 5))),
        with(None, None, event(b, ("m4", 0, "v@one.test"), Delivered, h(D1, 10, 1))),
        with(Some("human"), None, event(b, ("m4", 0, "v@one.test"), Opened, h(D1, 10, 40))),
    ];
    for e in events {
        o.record(e).await.unwrap();
    }
    // Tenant a's inbound mail: the front line's deferrals are not counted,
    // neither one recipient's nor one several share.
    let inbound =
        NewMessage { recipients: Vec::new(), ..message("i1", a, &[], &[], h(D1, 10, 0), Direction::Inbound) };
    o.accept(inbound).await.unwrap();
    o.record(with(Some("greylisted"), None, event(a, ("i1", 0, "p@sluice.test"), Deferred, h(D1, 10, 2))))
        .await
        .unwrap();
    let mut shared = with(Some("greylisted"), None, event(a, ("i1", 0, ""), Deferred, h(D1, 10, 3)));
    (shared.idx, shared.address) = (None, None);
    shared.group = vec![Addressee(0, "p@sluice.test".into()), Addressee(1, "q@sluice.test".into())];
    o.record(shared).await.unwrap();
}

/// Counts, written out: (sent, delivered, deferred, bounced by reason,
/// complained, unsubscribed, opened, clicked).
fn counts(
    (sent, delivered, deferred): (u64, u64, u64),
    bounces: &[(&str, u64)],
    (complained, unsubscribed): (u64, u64),
    opened: [u64; 4],
    clicked: [u64; 4],
) -> Counts {
    let engagement =
        |[total, unique, human, unique_human]: [u64; 4]| Engagement { total, unique, human, unique_human };
    Counts {
        sent,
        delivered,
        deferred,
        bounced: bounces.iter().map(|b| b.1).sum(),
        bounced_by_reason: bounces.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        complained,
        unsubscribed,
        opened: engagement(opened),
        clicked: engagement(clicked),
    }
}

/// Every bounce of the window, by reason.
const BOUNCES: &[(&str, u64)] = &[("mailboxfull", 1), ("networkerror", 1), ("userunknown", 2)];

fn total() -> Counts {
    counts((6, 3, 1), BOUNCES, (1, 1), [5, 2, 3, 2], [2, 1, 1, 1])
}

fn keyed(groups: &[Group]) -> Vec<(Option<&str>, &Counts)> {
    groups.iter().map(|g| (g.key.as_deref(), &g.counts)).collect()
}

async fn ask(o: &dyn EventLog, t: &record::directory::Tenant, g: Option<GroupBy>) -> Stats {
    let q = StatsQuery { from: D1, to: D2 + DAY, group_by: g };
    let s = o.stats(t, &q).await.unwrap();
    assert_eq!(s.total, total(), "{g:?}: the window's own numbers, whatever the grouping");
    s
}

#[tokio::test]
async fn every_number_of_every_grouping() {
    for (name, store, _dir) in pg::backends().await {
        let o = &*store.events;
        let a = store.directory.tenant("a").await.unwrap();
        let b = store.directory.tenant("b").await.unwrap();
        scene(o, a.id, b.id).await;

        let s = ask(o, &a, None).await;
        assert!(s.groups.is_empty(), "{name}");
        let r = s.total.rates();
        assert_eq!(
            (r.delivered, r.bounced, r.complained, r.human_open),
            (Some(0.5), Some(0.6667), Some(0.3333), Some(0.6667))
        );

        let s = ask(o, &a, Some(GroupBy::Day)).await;
        let starts: Vec<Option<i64>> = s.groups.iter().map(|g| g.start).collect();
        assert_eq!(starts, [Some(D1), Some(D2)], "{name}");
        assert_eq!(s.groups[0].key.as_deref(), Some("2026-11-02T00:00:00Z"), "{name}");
        let d1 = counts((3, 2, 1), &[("userunknown", 1)], (0, 0), [2, 1, 1, 1], [2, 1, 1, 1]);
        let d2_bounces = [("mailboxfull", 1), ("networkerror", 1), ("userunknown", 1)];
        let d2 = counts((3, 1, 0), &d2_bounces, (1, 1), [3, 1, 2, 1], [0; 4]);
        assert_eq!(s.groups[0].counts, d1, "{name}: D1");
        assert_eq!(s.groups[1].counts, d2, "{name}: D2");

        let s = ask(o, &a, Some(GroupBy::Hour)).await;
        let starts: Vec<Option<i64>> = s.groups.iter().map(|g| g.start).collect();
        assert_eq!(starts, [Some(D1 + 10 * HOUR), Some(D1 + 11 * HOUR), Some(D2 + 10 * HOUR)], "{name}");
        let h10 = counts((2, 1, 0), &[("userunknown", 1)], (0, 0), [1, 1, 1, 1], [1, 1, 0, 0]);
        // The click whose first human one is at 11:15: its unique_human is there.
        let h11 = counts((1, 1, 1), &[], (0, 0), [1, 0, 0, 0], [1, 0, 1, 1]);
        assert_eq!(s.groups[0].counts, h10, "{name}: 10h");
        assert_eq!(s.groups[1].counts, h11, "{name}: 11h");
        assert_eq!(s.groups[2].counts, d2, "{name}: D2 10h is all of D2");

        let s = ask(o, &a, Some(GroupBy::Tag)).await;
        let news = counts((3, 2, 1), &[("userunknown", 1)], (1, 0), [5, 2, 3, 2], [2, 1, 1, 1]);
        let promo =
            counts((3, 1, 1), &[("networkerror", 1), ("userunknown", 1)], (1, 0), [2, 1, 1, 1], [0; 4]);
        let untagged = counts((1, 1, 0), &[("mailboxfull", 1)], (0, 1), [0; 4], [0; 4]);
        assert_eq!(
            keyed(&s.groups),
            [(Some("news"), &news), (Some("promo"), &promo), (None, &untagged)],
            "{name}"
        );

        let s = ask(o, &a, Some(GroupBy::Domain)).await;
        let one = counts((3, 2, 1), &[("networkerror", 1)], (1, 0), [5, 2, 3, 2], [2, 1, 1, 1]);
        let two = counts((3, 1, 0), &[("mailboxfull", 1), ("userunknown", 2)], (0, 1), [0; 4], [0; 4]);
        assert_eq!(keyed(&s.groups), [(Some("one.test"), &one), (Some("two.test"), &two)], "{name}");

        let s = ask(o, &a, Some(GroupBy::Provider)).await;
        let sendgrid = counts((0, 1, 0), &[("mailboxfull", 1)], (0, 0), [0; 4], [0; 4]);
        let ses = counts((0, 0, 0), &[], (0, 0), [2, 1, 1, 1], [0; 4]);
        let ours = [("networkerror", 1), ("userunknown", 2)];
        let sluice = counts((6, 2, 1), &ours, (1, 1), [3, 1, 2, 1], [2, 1, 1, 1]);
        assert_eq!(
            keyed(&s.groups),
            [(Some("sendgrid"), &sendgrid), (Some("ses"), &ses), (Some("sluice"), &sluice)],
            "{name}"
        );

        let human = counts((0, 0, 0), &[], (0, 0), [3, 2, 3, 2], [1, 1, 1, 1]);
        let proxy = counts((0, 0, 0), &[], (0, 0), [1, 1, 0, 0], [0; 4]);
        let scanner = counts((0, 0, 0), &[], (0, 0), [0; 4], [1, 1, 0, 0]);
        let unknown = counts((0, 0, 0), &[], (0, 0), [1, 1, 0, 0], [0; 4]);
        let s = ask(o, &a, Some(GroupBy::MachineClass)).await;
        let rest = counts((6, 3, 1), BOUNCES, (1, 1), [0; 4], [0; 4]);
        let classes = [
            (Some("human"), &human),
            (Some("privacy_proxy"), &proxy),
            (Some("scanner"), &scanner),
            (Some("unknown"), &unknown),
            (None, &rest),
        ];
        assert_eq!(keyed(&s.groups), classes, "{name}");

        let s = ask(o, &a, Some(GroupBy::Reason)).await;
        let abuse = counts((0, 0, 0), &[], (1, 0), [0; 4], [0; 4]);
        let grey = counts((0, 0, 1), &[], (0, 0), [0; 4], [0; 4]);
        let full = counts((0, 0, 0), &[("mailboxfull", 1)], (0, 0), [0; 4], [0; 4]);
        let user = counts((0, 0, 0), &[("userunknown", 2)], (0, 0), [0; 4], [0; 4]);
        let network = counts((0, 0, 0), &[("networkerror", 1)], (0, 0), [0; 4], [0; 4]);
        let none = counts((6, 3, 0), &[], (0, 1), [0; 4], [0; 4]);
        let reasons = [
            (Some("abuse"), &abuse),
            (Some("greylisted"), &grey),
            (Some("human"), &human),
            (Some("mailboxfull"), &full),
            (Some("networkerror"), &network),
            (Some("privacy_proxy"), &proxy),
            (Some("scanner"), &scanner),
            (Some("unknown"), &unknown),
            (Some("userunknown"), &user),
            (None, &none),
        ];
        assert_eq!(keyed(&s.groups), reasons, "{name}");

        // The other tenant sees its own numbers only.
        let q = StatsQuery { from: D1, to: D2 + DAY, group_by: Some(GroupBy::Domain) };
        let s = o.stats(&b, &q).await.unwrap();
        let mine = counts((1, 1, 0), &[], (0, 0), [1, 1, 1, 1], [0; 4]);
        assert_eq!(s.total, mine, "{name}");
        assert_eq!(keyed(&s.groups), [(Some("one.test"), &mine)], "{name}");

        // The window's edges: from is in it, to is not.
        let q = StatsQuery { from: D1 - HOUR, to: D1 - HOUR + MIN, group_by: None };
        assert_eq!(o.stats(&a, &q).await.unwrap().total.sent, 1, "{name}: m0 at from");
        let q = StatsQuery { from: D1 - 2 * HOUR, to: D1 - HOUR, group_by: None };
        assert_eq!(o.stats(&a, &q).await.unwrap().total, Counts::default(), "{name}: m0 at to");
        let q = StatsQuery { from: D1, to: D1, group_by: Some(GroupBy::Hour) };
        assert!(o.stats(&a, &q).await.unwrap().groups.is_empty(), "{name}: an empty window");
        store.close().await;
    }
}
