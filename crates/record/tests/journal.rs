//! The event journal: an append is on disk when it returns, the record
//! follows, and what a stop left is loaded at the next open, once.

use std::time::Duration;

use record::Store;
use record::events::{EventKind, EventQuery, NewMessage, NewRecipient};
use record::journal::{Entry, Journal};

fn entry(tenant: i64, n: usize) -> Entry {
    Entry {
        tenant,
        message: "m1".into(),
        idx: Some(0),
        address: Some("a@x.test".into()),
        kind: EventKind::Clicked,
        at: 2_000 + n as i64,
        reason: Some("human".into()),
        detail: Some(serde_json::json!({"link": n})),
        source: format!("track:{n}"),
    }
}

async fn clicks(store: &Store, tenant: &record::directory::Tenant) -> usize {
    let q = EventQuery { kind: Some(EventKind::Clicked), limit: 1000, ..Default::default() };
    store.events.events(tenant, &q).await.unwrap().0.len()
}

#[tokio::test]
async fn appends_reach_the_record_and_a_stop_s_leftovers_are_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let t = store.directory.tenant("a").await.unwrap();
    store
        .events
        .accept(NewMessage {
            id: "m1".into(),
            tenant: t.id,
            direction: record::events::Direction::Outbound,
            message_id: None,
            mail_from: "app@x.test".into(),
            subject: None,
            stream: None,
            tags: Vec::new(),
            metadata: serde_json::json!({}),
            recipients: vec![NewRecipient {
                address: "a@x.test".into(),
                kind: "to".into(),
                status: EventKind::Queued,
                reason: None,
            }],
            at: 1_000,
            detail: None,
            idempotency: None,
        })
        .await
        .unwrap();
    let jdir = dir.path().join("journal");
    let journal = Journal::open(&jdir, store.events.clone()).await.unwrap();
    for n in 0..10 {
        journal.append(&entry(t.id, n)).await.unwrap();
    }
    // On disk as soon as append returned, in the writers' files.
    let on_disk: usize = walk(&jdir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().filter(|l| l.starts_with('{')).count())
        .sum();
    assert_eq!(on_disk, 10);
    for _ in 0..50 {
        if clicks(&store, &t).await == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(clicks(&store, &t).await, 10, "the record follows the journal");

    // A stop that left lines behind, some loaded already and some not: a
    // file as a killed run leaves it.
    // Both earlier layouts are loaded: one writer's files in the
    // journal's directory, and a directory per writer (`w0` to `w3`; one
    // writer, in `w0`, since).
    let line = |n| serde_json::to_string(&entry(t.id, n)).unwrap() + "\n";
    let old_layout = jdir.join("events-0000000099.journal");
    let new_layout = jdir.join("w1").join("events-0000000099.journal");
    std::fs::create_dir_all(jdir.join("w1")).unwrap();
    std::fs::write(&old_layout, (5..12).map(line).collect::<String>()).unwrap();
    std::fs::write(&new_layout, (10..15).map(line).collect::<String>()).unwrap();
    let _again = Journal::open(&jdir, store.events.clone()).await.unwrap();
    assert_eq!(clicks(&store, &t).await, 15, "loaded at open, each once");
    assert!(!old_layout.exists() && !new_layout.exists(), "and forgotten");
    assert!(!jdir.join("w1").exists(), "an earlier writer's directory goes once loaded");
    store.close().await;
}

/// A flood from many tasks at once: every append returns, each line is on
/// disk once, and none is lost between the tasks sharing the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_appends_is_each_on_disk_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let t = store.directory.tenant("a").await.unwrap();
    let jdir = dir.path().join("journal");
    let journal = Journal::open(&jdir, store.events.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                journal.append(&entry(t.id, task * 1000 + n)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut sources: Vec<String> = walk(&jdir)
        .iter()
        .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l).unwrap()["source"].as_str().unwrap().to_string()
        })
        .collect();
    let lines = sources.len();
    sources.sort();
    sources.dedup();
    // Loaded files are deleted, so count what is still there plus nothing
    // twice: every source of the 3,200 is on disk or already loaded.
    assert_eq!(lines, sources.len(), "no line twice");
    drop(journal);
    store.close().await;
}

/// The files under `dir`, its subdirectories' too.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}
