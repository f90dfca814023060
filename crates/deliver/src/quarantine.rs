//! The quarantine writer: classifies a copy of an inbound message and files
//! the exact bytes in the account's folder for its verdict, with the verdict
//! and reason as IMAP keywords so mail clients can sort by them.

use decide::{Classification, Verdict};
use record::QuarantineStore;
use record::quarantine::{MessageMeta, Placed};

/// The folder a classified message belongs in.
pub fn folder_for(c: &Classification) -> &'static str {
    match c.verdict {
        Verdict::Bounce if c.recipients.iter().any(|r| r.hard) => "Bounces/Hard",
        Verdict::Bounce => "Bounces/Soft",
        Verdict::Delay => "Delays",
        Verdict::Delivered => "Delivered",
        Verdict::Autoreply => "AutoReplies",
        Verdict::Complaint => "Complaints",
        Verdict::Unsubscribe => "Unsubscribes",
        Verdict::Challenge => "Challenges",
        Verdict::Human => "Human",
    }
}

/// IMAP keywords: `$Verdict_<verdict>` and one `$Reason_<reason>` per reason.
pub fn keywords_for(c: &Classification) -> Vec<String> {
    let mut k = vec![format!("$Verdict_{}", c.verdict.as_str())];
    for r in &c.recipients {
        let kw = format!("$Reason_{}", r.reason.as_str());
        if !k.contains(&kw) {
            k.push(kw);
        }
    }
    k
}

/// What is known about the message besides its bytes.
pub struct Arrival<'a> {
    pub received_at: i64,
    pub mail_from: &'a str,
    pub rcpts: Vec<String>,
    pub queue_id: String,
}

/// Classifies `content` and stores it for `account`. Returns where it went
/// and the classification.
pub async fn file(
    store: &dyn QuarantineStore,
    account: &str,
    content: &[u8],
    arrival: Arrival<'_>,
) -> Result<(Placed, Classification), record::RecordError> {
    let c = analysis::classify(content.to_vec())
        .await
        .map_err(|e| record::RecordError::Invalid(format!("classifier failed: {e}")))?;
    let folder = folder_for(&c);
    let meta = MessageMeta {
        received_at: arrival.received_at,
        verdict: Some(c.verdict.as_str().to_string()),
        reason: c.recipients.first().map(|r| r.reason.as_str().to_string()),
        original_message_id: c.original.message_id.clone(),
        mail_from: Some(arrival.mail_from.to_string()),
        rcpts: arrival.rcpts,
        queue_id: Some(arrival.queue_id),
        flags: keywords_for(&c),
    };
    let placed = store.store(account, folder, content, &meta).await?;
    Ok((placed, c))
}

/// Classification for the copies, on threads of its own at the lowest CPU
/// priority: the analysis path takes what the front line leaves. On a busy
/// machine the relay keeps its full speed and the copies wait (durably, in
/// the spool); on an idle one they run at once.
mod analysis {
    use std::sync::mpsc;
    use std::sync::{Arc, LazyLock, Mutex};

    use decide::Classification;
    use tokio::sync::oneshot;

    type Task = (Vec<u8>, oneshot::Sender<Classification>);

    static POOL: LazyLock<mpsc::Sender<Task>> = LazyLock::new(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("analysis-{i}")).spawn(move || {
                lowest_priority();
                loop {
                    let task = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((bytes, reply)) = task else { return };
                    // A panic in a parser costs this copy (the sender sees
                    // the reply dropped), never the thread or the process.
                    if let Ok(c) = std::panic::catch_unwind(|| decide::classify(&bytes)) {
                        let _ = reply.send(c);
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an analysis thread");
            }
        }
        tx
    });

    /// Classifies `bytes` on the analysis threads.
    pub(super) async fn classify(bytes: Vec<u8>) -> Result<Classification, &'static str> {
        let (tx, rx) = oneshot::channel();
        POOL.send((bytes, tx)).map_err(|_| "no analysis thread")?;
        rx.await.map_err(|_| "the classifier panicked on this message")
    }

    /// Nice 19 for the calling thread (on Linux, nice is per thread).
    fn lowest_priority() {
        // SAFETY: setpriority takes no pointers; who = 0 is this thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the analysis threads' priority");
        }
    }
}
