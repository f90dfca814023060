//! Per-recipient policy (`record::policy`): resolution global → domain →
//! user over the stored rows, each level overriding only the keys it sets;
//! sender lists with wildcards; `explain`'s text; `decide`; the checks of
//! a change; and `simulate` over recorded `filtered` events. The stored
//! part runs on every backend (SQLite and PostgreSQL, each fresh).

mod pg;

use record::Store;
use record::policy::{
    self, Action, Change, Class, Defaults, Key, Level, Policies, Scope, Value, decide, explain, matches,
};
use record::postgres::Postgres;
use sqlx::Connection;

/// Where raw SQL goes, to write events of a kind the record's types do not
/// have yet (`filtered`, which filter mode records).
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(p) => {
                let url = format!("sqlite://{}", p.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("raw sql");
            }
            Raw::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("raw sql");
            }
        }
    }
}

/// A fresh, empty store of each backend, with what keeps it alive.
async fn backends() -> Vec<(&'static str, Store, Raw, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = Store::open(dir.path()).await.expect("a SQLite store");
    let file = dir.path().join("sluice.db");
    let url = pg::fresh_database().await;
    let pg = Postgres::connect(&url, 4).await.expect("a PostgreSQL store");
    let nothing = tempfile::tempdir().expect("a temporary directory");
    vec![
        ("sqlite", sqlite, Raw::Sqlite(file), dir),
        ("postgres", pg.into_store(), Raw::Postgres(url), nothing),
    ]
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn key(k: &str) -> Key {
    Key::parse(k).unwrap()
}

async fn set(p: &dyn Policies, tenant: i64, s: &str, k: &str, v: &str) {
    let k = key(k);
    let v = k.value_from_text(v).unwrap();
    policy::set(p, tenant, &Defaults::builtin(), &scope(s), k, v).await.unwrap();
}

#[tokio::test]
async fn levels_override_only_the_keys_they_set_on_every_backend() {
    for (name, store, _raw, _dir) in backends().await {
        let p = &*store.policies;
        let t = store.directory.tenant("acme").await.unwrap().id;
        let other = store.directory.tenant("other").await.unwrap().id;
        let d = Defaults::builtin();

        set(p, t, "global", "spam_threshold", "5.5").await;
        set(p, t, "global", "spam_action", "reject").await;
        set(p, t, "example.net", "spam_threshold", "6").await;
        set(p, t, "@example.net", "archive", "yes").await;
        set(p, t, "Ann@Example.net", "unsure_action", "quarantine").await;
        set(p, t, "ann@example.net", "retention_days.spam", "14").await;
        set(p, t, "ann@example.net", "block_senders", "*@*.spam.test, bad@x.test").await;
        // Another tenant's rows are its own.
        set(p, other, "global", "spam_threshold", "9").await;

        let e = policy::effective_for(p, t, &d, "ANN@example.net").await.unwrap();
        let lines = explain(&e);
        for want in [
            "spam_threshold 6.0 from domain example.net, overriding global 5.5",
            "spam_action reject from global, overriding default quarantine",
            "unsure_action quarantine from user ann@example.net, overriding default tag",
            "unsure_threshold 3.0 from default",
            "archive true from domain example.net, overriding default false",
            "retention_days.Spam 14 from user ann@example.net, overriding default 30",
            "retention_days.Archive 365 from default",
            "block_senders [*@*.spam.test, bad@x.test] from user ann@example.net, overriding default []",
            "scan_failure tempfail from default",
        ] {
            assert!(lines.iter().any(|l| l == want), "{name}: no {want:?} in {lines:#?}");
        }
        // Bob in the same domain has the domain's and global's, not Ann's.
        let bob = policy::effective_for(p, t, &d, "bob@example.net").await.unwrap();
        assert_eq!(bob.spam_threshold(), 6.0, "{name}");
        assert_eq!(bob.unsure_action(), Action::Tag, "{name}");
        assert_eq!(bob.retention_days("Spam"), 30, "{name}");
        // Another domain: global only.
        let carl = policy::effective_for(p, t, &d, "carl@example.org").await.unwrap();
        assert_eq!((carl.spam_threshold(), carl.spam_action(), carl.archive()), (5.5, Action::Reject, false));
        // The other tenant sees its own global, and nothing of acme's.
        let o = policy::effective_for(p, other, &d, "ann@example.net").await.unwrap();
        assert_eq!((o.spam_threshold(), o.spam_action()), (9.0, Action::Quarantine), "{name}");

        // One query reads the three levels.
        let rows = p.policy_rows(t, &["global", "example.net", "ann@example.net"]).await.unwrap();
        assert_eq!(rows.len(), 7, "{name}: {rows:?}");
        assert_eq!(p.list_policy(t, Some("example.net")).await.unwrap().len(), 2, "{name}");
        assert_eq!(p.list_policy(t, None).await.unwrap().len(), 7, "{name}");
        assert_eq!(p.list_policy(other, None).await.unwrap().len(), 1, "{name}");

        // Decisions: block list first, then the user's thresholds.
        let dec = decide(&e, Some(-5.0), None, "x@mail.spam.test");
        assert_eq!(dec.action, Action::Reject, "{name}: blocked gets the spam action (reject here)");
        assert_eq!(dec.level, Level::User("ann@example.net".into()), "{name}");
        let dec = decide(&e, Some(6.0), None, "friend@ok.test");
        assert_eq!((dec.action, dec.class), (Action::Reject, Some(Class::Spam)), "{name}");
        assert_eq!(dec.level, Level::Domain("example.net".into()), "{name}: {}", dec.reason);
        assert!(dec.archive, "{name}");
        let dec = decide(&e, Some(5.9), None, "friend@ok.test");
        assert_eq!((dec.action, dec.class), (Action::Quarantine, Some(Class::Unsure)), "{name}");
        assert_eq!(decide(&e, Some(2.9), None, "friend@ok.test").action, Action::Deliver, "{name}");
        assert_eq!(decide(&e, None, None, "friend@ok.test").action, Action::Tempfail, "{name}");

        // Unset: one key, then a whole scope.
        let one = policy::Change { set: vec![(key("archive"), None)], unset_all: false };
        policy::apply(p, t, &d, &scope("example.net"), &one).await.unwrap();
        assert!(!policy::effective_for(p, t, &d, "bob@example.net").await.unwrap().archive(), "{name}");
        assert_eq!(p.unset_policy(t, "ann@example.net", None).await.unwrap(), 3, "{name}");
        assert_eq!(p.unset_policy(t, "ann@example.net", None).await.unwrap(), 0, "{name}");
        let e = policy::effective_for(p, t, &d, "ann@example.net").await.unwrap();
        assert_eq!(e.unsure_action(), Action::Tag, "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn an_unsure_band_above_the_spam_threshold_is_refused_at_any_scope() {
    for (name, store, _raw, _dir) in backends().await {
        let p = &*store.policies;
        let t = store.directory.tenant("default").await.unwrap().id;
        let d = Defaults::builtin();
        set(p, t, "example.net", "spam_threshold", "4").await;
        // Global's unsure threshold at 4.5 is fine for global (5.0) but not
        // for example.net (4.0).
        let k = key("unsure_threshold");
        let err = policy::set(p, t, &d, &Scope::Global, k.clone(), Value::Number(4.5)).await.unwrap_err();
        assert!(err.to_string().contains("example.net"), "{name}: {err}");
        assert!(p.list_policy(t, Some("global")).await.unwrap().is_empty(), "{name}: nothing stored");
        // A user raising their spam threshold above global's unsure one is fine.
        set(p, t, "ann@example.net", "spam_threshold", "8").await;
        policy::set(p, t, &d, &scope("ann@example.net"), k.clone(), Value::Number(7.0)).await.unwrap();
        // Unsetting the user's spam threshold would leave 7.0 over 4.0.
        let unset = Change { set: vec![(key("spam_threshold"), None)], unset_all: false };
        let err = policy::apply(p, t, &d, &scope("ann@example.net"), &unset).await.unwrap_err();
        assert!(err.to_string().contains("unsure_threshold 7.0"), "{name}: {err}");
        store.close().await;
    }
}

#[tokio::test]
async fn simulate_replays_recorded_decisions_against_a_proposal() {
    for (name, store, raw, _dir) in backends().await {
        let p = &*store.policies;
        let t = store.directory.tenant("default").await.unwrap().id;
        let other = store.directory.tenant("other").await.unwrap().id;
        let d = Defaults::builtin();
        let now = 1_800_000_000_000_i64;
        let day = 86_400_000;
        // (tenant, address, score, action, days ago)
        let recorded = [
            (t, "ann@example.net", 5.5, "quarantine", 1),
            (t, "ann@example.net", 7.0, "quarantine", 1),
            (t, "bob@example.net", 5.2, "quarantine", 2),
            (t, "carl@example.org", 5.5, "quarantine", 2),
            (t, "carl@example.org", 1.0, "deliver", 3),
            (t, "dan@example.net", 4.0, "tag", 3),
            // Too old, and another tenant's.
            (t, "ann@example.net", 5.5, "quarantine", 10),
            (other, "ann@example.net", 5.5, "quarantine", 1),
        ];
        let mut sql = String::new();
        for (i, (tenant, addr, score, action, ago)) in recorded.iter().enumerate() {
            let class = if *score >= 5.0 {
                "spam"
            } else if *score >= 3.0 {
                "unsure"
            } else {
                "ham"
            };
            let detail = format!(
                r#"{{"score": {score}, "class": "{class}", "action": "{action}", "level": "default", "sender": "s@sender.test"}}"#
            );
            sql.push_str(&format!(
                "INSERT INTO events (tenant_id, message, idx, address, type, at, reason, detail) \
                 VALUES ({tenant}, 'q{i}', 0, '{addr}', 'filtered', {}, '{action}', '{detail}');\n",
                now - ago * day + 1000,
            ));
        }
        raw.exec(&sql).await;

        // Raising example.net's spam threshold to 6: its 5.5 and 5.2 become
        // unsure (tagged); 7.0 stays spam; example.org is not in scope.
        let k = key("spam_threshold");
        let sim =
            policy::simulate_days(p, t, &d, &scope("example.net"), k.clone(), Value::Number(6.0), 7, now)
                .await
                .unwrap();
        assert_eq!((sim.total, sim.in_scope, sim.changed), (6, 4, 2), "{name}: {sim:?}");
        assert_eq!(sim.directions.get(&(Action::Quarantine, Action::Tag)), Some(&2), "{name}");
        assert_eq!(sim.differs_from_recorded, 0, "{name}");
        let lines = sim.lines();
        assert_eq!(lines[0], "quarantine → tag: 2", "{name}: {lines:?}");
        assert_eq!(lines[1], "changed: 2 of 6 (4 in scope)", "{name}: {lines:?}");

        // Over 10 days the old one counts too.
        let sim = policy::simulate_days(p, t, &d, &Scope::Global, k.clone(), Value::Number(6.0), 11, now)
            .await
            .unwrap();
        assert_eq!((sim.total, sim.changed), (7, 4), "{name}: {sim:?}");
        // Read in pages by id: two pages of 3 and one of 1 hold the 7, once each.
        let (from, to) = (now - 11 * day, now + 1);
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = p.filter_records(t, from, to, after, 3).await.unwrap();
            let Some((last, _)) = page.last() else { break };
            assert!(page.len() <= 3 && page.iter().all(|(id, _)| *id > after), "{name}");
            after = *last;
            seen.extend(page.into_iter().map(|(id, _)| id));
        }
        let mut distinct = seen.clone();
        distinct.dedup();
        assert_eq!((seen.len(), distinct.len()), (7, 7), "{name}: {seen:?}");

        // A proposal for one user changes only theirs; a recorded decision
        // the current policy would make otherwise is counted apart.
        set(p, t, "global", "unsure_action", "deliver").await;
        let sim = policy::simulate_days(
            p,
            t,
            &d,
            &scope("ann@example.net"),
            key("spam_action"),
            Value::Action(Action::Reject),
            7,
            now,
        )
        .await
        .unwrap();
        assert_eq!((sim.total, sim.in_scope, sim.changed), (6, 2, 2), "{name}: {sim:?}");
        assert_eq!(sim.directions.get(&(Action::Quarantine, Action::Reject)), Some(&2), "{name}");
        assert_eq!(sim.differs_from_recorded, 1, "{name}: dan's tag is now deliver");
        assert_eq!(sim.refused, None, "{name}");
        // A proposal `set` would refuse is simulated, and says so.
        let sim = policy::simulate_days(
            p,
            t,
            &d,
            &Scope::Global,
            key("unsure_threshold"),
            Value::Number(5.5),
            7,
            now,
        )
        .await
        .unwrap();
        assert!(sim.refused.as_deref().unwrap_or("").contains("unsure_threshold"), "{name}: {sim:?}");
        assert!(sim.lines().last().unwrap().starts_with("(setting it would be refused"), "{name}");
        store.close().await;
    }
}

#[test]
fn sender_patterns_match_addresses_domains_and_wildcards() {
    let list = |v: &str| match Key::BlockSenders.value_from_text(v).unwrap() {
        Value::Senders(l) => l,
        other => panic!("{other:?}"),
    };
    let l = list("Bob@Example.com, spam.test, *.bulk.test, *@*.deep.test, news-*@letters.test");
    assert_eq!(matches(&l, "bob@example.com"), Some("bob@example.com"));
    assert_eq!(matches(&l, "<BOB@example.COM>"), Some("bob@example.com"));
    assert_eq!(matches(&l, "alice@example.com"), None);
    assert_eq!(matches(&l, "anyone@spam.test"), Some("spam.test"));
    assert_eq!(matches(&l, "anyone@sub.spam.test"), None, "a domain is itself only");
    assert_eq!(matches(&l, "x@mx.bulk.test"), Some("*.bulk.test"));
    assert_eq!(matches(&l, "x@bulk.test"), None, "*.domain: subdomains only");
    assert_eq!(matches(&l, "x@a.b.deep.test"), Some("*@*.deep.test"));
    assert_eq!(matches(&l, "news-7@letters.test"), Some("news-*@letters.test"));
    assert_eq!(matches(&l, "old-news@letters.test"), None);
    assert_eq!(matches(&l, ""), None, "the null sender matches nothing");
    // JSON arrays too; bad patterns are refused with the key named.
    assert_eq!(list(r#"["a@b.test", "c.test"]"#), vec!["a@b.test", "c.test"]);
    let err = Key::AllowSenders.value_from_text("a@b@c").unwrap_err();
    assert!(err.to_string().starts_with("allow_senders:"), "{err}");
}

#[test]
fn keys_values_and_scopes_are_validated() {
    assert!(Key::parse("spam_thresold").unwrap_err().to_string().contains("unknown key"));
    assert_eq!(Key::parse("retention_days.archive").unwrap().name(), "retention_days.Archive");
    assert!(Key::parse("retention_days.Nope").is_err());
    assert!(key("spam_action").value_from_text("tempfail").is_err(), "tempfail is not settable");
    assert!(key("spam_threshold").value_from_text("NaN").is_err());
    assert!(key("retention_days.Spam").value_from_text("0").is_err());
    assert!(key("scan_failure").value_from_text("accept_unscanned").is_ok());
    assert!(key("archive").value_from_json(&serde_json::json!(1)).is_err());
    assert_eq!(key("spam_threshold").value_from_json(&serde_json::json!(6)).unwrap(), Value::Number(6.0));
    assert!(Scope::parse("not a scope").is_err());
    assert_eq!(Scope::parse("example.net.").unwrap(), Scope::Domain("example.net".into()));
}

#[test]
fn the_config_level_sits_between_the_defaults_and_global() {
    let table: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "spam_threshold": 6.5,
            "retention_days": {"Spam": 10},
            "subject_prefix": "[SPAM] ",
        }))
        .unwrap();
    let d = Defaults::from_config(&table).unwrap();
    let e = policy::resolve(&d, &[]);
    let lines = explain(&e);
    assert!(
        lines.contains(&"spam_threshold 6.5 from config, overriding default 5.0".to_string()),
        "{lines:#?}"
    );
    assert!(lines.contains(&"retention_days.Spam 10 from config, overriding default 30".to_string()));
    let dec = decide(&e, Some(4.0), None, "a@b.test");
    assert_eq!((dec.action, dec.subject_prefix.as_deref()), (Action::Tag, Some("[SPAM] ")));
    // A config whose band is upside down is refused.
    let bad: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"unsure_threshold": 9})).unwrap();
    assert!(Defaults::from_config(&bad).is_err());
}

#[test]
fn allow_and_block_the_more_specific_level_wins() {
    let layers = |global: Vec<(Key, Value)>, user: Vec<(Key, Value)>| {
        vec![
            policy::Layer { level: Level::Global, values: global },
            policy::Layer { level: Level::Domain("x.test".into()), values: vec![] },
            policy::Layer { level: Level::User("u@x.test".into()), values: user },
        ]
    };
    let senders = |v: &str| Key::AllowSenders.value_from_text(v).unwrap();
    let e = policy::resolve(
        &Defaults::builtin(),
        &layers(
            vec![(Key::BlockSenders, senders("bad.test"))],
            vec![(Key::AllowSenders, senders("ok@bad.test"))],
        ),
    );
    assert_eq!(decide(&e, Some(50.0), None, "ok@bad.test").action, Action::Deliver);
    assert_eq!(decide(&e, Some(-1.0), None, "other@bad.test").action, Action::Quarantine);
    let e = policy::resolve(
        &Defaults::builtin(),
        &layers(
            vec![(Key::AllowSenders, senders("bad.test"))],
            vec![(Key::BlockSenders, senders("bad.test"))],
        ),
    );
    assert_eq!(decide(&e, Some(-1.0), None, "x@bad.test").action, Action::Quarantine);
}

#[tokio::test]
async fn a_change_on_one_node_is_read_by_another_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = pg::fresh_database().await;
    let pairs = vec![
        ("sqlite", Store::open(dir.path()).await.unwrap(), Store::open(dir.path()).await.unwrap()),
        (
            "postgres",
            Postgres::connect(&url, 2).await.unwrap().into_store(),
            Postgres::connect(&url, 2).await.unwrap().into_store(),
        ),
    ];
    for (name, a, b) in pairs {
        let t = a.directory.tenant("default").await.unwrap().id;
        let d = Defaults::builtin();
        let before = policy::effective_for(&*b.policies, t, &d, "ann@example.net").await.unwrap();
        assert_eq!(before.spam_action(), Action::Quarantine, "{name}");
        set(&*a.policies, t, "example.net", "spam_action", "reject").await;
        let after = policy::effective_for(&*b.policies, t, &d, "ann@example.net").await.unwrap();
        assert_eq!(
            after.spam_action(),
            Action::Reject,
            "{name}: the other node reads it for the next message"
        );
        a.close().await;
        b.close().await;
    }
}

/// SQLite keeps the rows between writes (`policy_cache.rs`): a row changed
/// behind the store's back is not read again until a write says so, and a
/// write by another process (`sluice policy set` beside a server) is read
/// at once; with its signal file gone, every read goes to the database.
#[tokio::test]
async fn sqlite_keeps_policy_rows_until_a_write_from_any_process() {
    async fn action(s: &Store, t: i64) -> Action {
        policy::effective_for(&*s.policies, t, &Defaults::builtin(), "ann@example.net")
            .await
            .unwrap()
            .spam_action()
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (server, cli) = (Store::open(dir.path()).await.unwrap(), Store::open(dir.path()).await.unwrap());
    let t = server.directory.tenant("default").await.unwrap().id;
    set(&*cli.policies, t, "example.net", "spam_action", "tag").await;
    assert_eq!(action(&server, t).await, Action::Tag, "a write before the first read");
    let raw = Raw::Sqlite(dir.path().join("sluice.db"));
    raw.exec("UPDATE policies SET value = '\"reject\"' WHERE key = 'spam_action'").await;
    assert_eq!(action(&server, t).await, Action::Tag, "kept: nothing said the rows changed");
    set(&*cli.policies, t, "ann@example.net", "archive", "true").await;
    assert_eq!(action(&server, t).await, Action::Reject, "another process's write is read at once");
    let unset = Change { set: vec![(key("spam_action"), None)], unset_all: false };
    policy::apply(&*cli.policies, t, &Defaults::builtin(), &scope("example.net"), &unset).await.unwrap();
    assert_eq!(action(&server, t).await, Action::Quarantine, "an unset is read at once");
    std::fs::remove_file(dir.path().join("sluice.db-policy")).expect("the signal file");
    raw.exec(&format!(
        "INSERT INTO policies (tenant_id, scope, key, value, updated_at) \
         VALUES ({t}, 'global', 'spam_action', '\"deliver\"', 0)"
    ))
    .await;
    assert_eq!(action(&server, t).await, Action::Deliver, "no signal: read every time");
    server.close().await;
    cli.close().await;
}
