//! The spool across reopens: recovery, tombstones, read-only opens, and
//! what it keeps for the record.

use super::*;

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: "sender@example.org".into(),
        rcpts: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        smtputf8: false,
        eight_bit: false,
        helo: "client".into(),
        peer: "127.0.0.1:1".into(),
        auth_user: None,
        received_at: 0,
        line_faults: Default::default(),
        dsn_ret: None,
        dsn_envid: None,
    }
}

#[tokio::test]
async fn recovers_state_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b);
    {
        let (spool, rec) = Spool::open(dir.path(), true).unwrap();
        assert_eq!(rec.messages, 0);
        a = spool
            .enqueue(
                QueueId::generate(),
                envelope(&["x@a.test", "y@a.test"]),
                "Received: t\r\n".into(),
                b"A".to_vec(),
                99,
            )
            .await
            .unwrap();
        b = spool
            .enqueue(QueueId::generate(), envelope(&["z@a.test"]), String::new(), b"B".to_vec(), 99)
            .await
            .unwrap();
        // x delivered, y deferred.
        let entry = spool.claim(a).unwrap();
        let mut rcpts = entry.envelope.rcpts.clone();
        rcpts[0].status = RcptStatus::Delivered { reply: vocabulary::Reply::new(250, "2.0.0", "ok") };
        assert!(!spool.finish_attempt(a, rcpts, 5, false).await.unwrap());
        spool.set_held(a, true).await.unwrap();
        spool.remove(b).await.unwrap();
        // Locked while open.
        assert!(matches!(Spool::open(dir.path(), true), Err(SpoolError::Locked(_))));
        spool.close();
    }
    let (spool, rec) = Spool::open(dir.path(), true).unwrap();
    assert_eq!(rec.messages, 1);
    let entry = spool.get(a).unwrap();
    assert!(entry.held);
    assert_eq!(entry.trace.as_ref(), "Received: t\r\n");
    assert_eq!(spool.content(entry.content).unwrap(), b"A");
    assert!(entry.envelope.rcpts[0].status.is_terminal());
    assert!(!entry.envelope.rcpts[1].status.is_terminal());
    assert!(spool.get(b).is_none());
    spool.remove(a).await.unwrap();
    spool.close();
    drop(spool);
    // Everything done: after a reopen, once the record has caught up
    // from the finished messages, no old segment is left.
    let (spool, rec) = Spool::open(dir.path(), true).unwrap();
    assert_eq!((rec.messages, rec.finished), (0, 2));
    spool.release_finished().unwrap();
    assert_eq!(log::list_segments(dir.path()).unwrap().len(), 1);
    drop(spool);
}

#[tokio::test]
async fn a_finished_message_comes_back_with_its_final_states_until_the_record_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = QueueId::generate();
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        let rcpts = envelope(&["x@a.test", "y@a.test"]);
        spool.enqueue(id, rcpts, "Received: t\r\n".into(), b"A".to_vec(), 99).await.unwrap();
        spool.close();
    }
    let kept = {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        spool.keep_for_record();
        let mut rcpts = spool.claim(id).unwrap().envelope.rcpts;
        rcpts[0].status = RcptStatus::Delivered { reply: vocabulary::Reply::new(250, "2.0.0", "ok") };
        rcpts[1].status = RcptStatus::Failed { reply: vocabulary::Reply::new(550, "5.1.1", "no") };
        assert!(spool.finish_attempt(id, rcpts, 0, false).await.unwrap());
        let kept = spool.retiring();
        assert_eq!(kept.len(), 1, "the message's segment waits for the record");
        spool.collect_garbage().unwrap();
        assert!(log::segment_exists(dir.path(), kept[0]), "and the collector leaves it alone");
        spool.close();
        kept
    };
    // A crash before the record had it: the next start reads it back.
    let (spool, rec) = Spool::open(dir.path(), true).unwrap();
    assert_eq!((rec.messages, rec.finished), (0, 1));
    let finished = spool.finished();
    let states: Vec<&str> = finished[0].envelope.rcpts.iter().map(|r| r.status.name()).collect();
    assert_eq!((finished[0].id, states), (id, vec!["delivered", "failed"]));
    assert_eq!(spool.content(finished[0].content).unwrap(), b"A");
    spool.keep_for_record();
    spool.release_finished().unwrap();
    assert!(spool.finished().is_empty());
    assert!(log::segment_exists(dir.path(), kept[0]), "kept until the record has written it");
    spool.retire(&spool.retiring()).unwrap();
    spool.collect_garbage().unwrap();
    assert_eq!(log::list_segments(dir.path()).unwrap().len(), 1, "only the active segment is left");
}

#[tokio::test]
async fn a_tombstone_outlives_the_records_it_buries() {
    let dir = tempfile::tempdir().unwrap();
    let (keep, gone) = (QueueId::generate(), QueueId::generate());
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        for id in [keep, gone] {
            spool.enqueue(id, envelope(&["x@a.test"]), String::new(), b"A".to_vec(), 99).await.unwrap();
        }
    }
    // Each command opens the spool in a fresh segment, as the CLI does.
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        spool.set_held(keep, true).await.unwrap();
    }
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        spool.remove(gone).await.unwrap();
    }
    for _ in 0..3 {
        let (spool, rec) = Spool::open(dir.path(), true).unwrap();
        assert_eq!(rec.messages, 1);
        assert!(spool.get(gone).is_none(), "a removed message must stay removed");
        assert!(spool.get(keep).unwrap().held);
    }
    // Once the last live message goes, everything can be collected.
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        spool.remove(keep).await.unwrap();
    }
    let (spool, rec) = Spool::open(dir.path(), true).unwrap();
    assert_eq!((rec.messages, rec.finished), (0, 2));
    spool.release_finished().unwrap();
    spool.collect_garbage().unwrap();
    assert_eq!(log::list_segments(dir.path()).unwrap().len(), 1, "only the active segment is left");
}

#[tokio::test]
async fn read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let id = QueueId::generate();
    {
        let (spool, _) = Spool::open(dir.path(), true).unwrap();
        spool.enqueue(id, envelope(&["x@a.test"]), String::new(), b"A".to_vec(), 99).await.unwrap();
    }
    let before = log::list_segments(dir.path()).unwrap();
    let (spool, rec) = Spool::open_read_only(dir.path()).unwrap();
    assert_eq!(rec.messages, 1);
    assert_eq!(spool.content(spool.get(id).unwrap().content).unwrap(), b"A");
    assert!(spool.set_held(id, true).await.is_err(), "read-only spools refuse writes");
    assert_eq!(log::list_segments(dir.path()).unwrap(), before);
}
