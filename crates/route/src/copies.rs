//! The store's copies: classified and filed off the relay's path.
//!
//! A copy crosses threads once. Classification and the hand-over to the
//! store both run on the `copies` thread, in the idle scheduling class (a
//! waking relay thread takes its core at once): the analysis path takes
//! only what the front line leaves. The idle class is not enough on its
//! own: on a small machine a relay that is latency-bound (sessions waiting
//! on fsyncs and round trips) still pays for every core a copy holds when
//! one of its threads wakes. So copies also give way to the front line
//! ([`FrontLine`]): while it is busy (a message is being accepted, or
//! concurrent accepts overlapped less than [`CROWD_HOLD`] ago), a batch
//! waits, until it is quiet or the batch's oldest copy's message arrived
//! [`COPY_LAG_MAX`] ago. A burst is relayed at full speed and its copies
//! are filed after it; serial mail leaves them the rest of each cycle. Past
//! the lag copies flow whatever the front line does, still in the idle
//! class: under load that never stops they fall behind as far as the spare
//! CPU leaves them, and wait in the spool meanwhile.
//!
//! [`CROWD_HOLD`]: crate::front_line::CROWD_HOLD

use std::sync::{Arc, Mutex};

use decide::Classification;
use record::quarantine::{MessageMeta, NewCopy, Placed};
use record::{QuarantineStore, RecordError};
use tokio::sync::{mpsc, oneshot};

use crate::front_line::{COPY_LAG_MAX, FrontLine, GIVE_WAY_POLL};

/// Decides, on the copies' thread, where a copy goes and what is known of
/// it: the folder and the metadata.
pub type Filing = Box<dyn FnOnce(&[u8]) -> (String, MessageMeta) + Send>;

type Reply = oneshot::Sender<Result<Placed, RecordError>>;

/// Copies gathered into one batch at most (the store writes a batch in
/// one transaction).
const BATCH: usize = 256;

/// One copy waiting to be filed.
struct Request {
    account: String,
    /// When its message arrived (Unix seconds): how long it may wait.
    received_at: i64,
    bytes: Vec<u8>,
    filing: Filing,
    reply: Reply,
}

/// Files copies in the store (cheap to clone; clones share the thread).
#[derive(Clone)]
pub struct Copies {
    tx: mpsc::Sender<Request>,
    /// The thread's end until the first copy starts it.
    rx: Arc<Mutex<Option<mpsc::Receiver<Request>>>>,
    store: Arc<dyn QuarantineStore>,
    front_line: FrontLine,
}

impl Copies {
    pub fn new(store: Arc<dyn QuarantineStore>, front_line: FrontLine) -> Copies {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        Copies { tx, rx: Arc::new(Mutex::new(Some(rx))), store, front_line }
    }

    /// Files a copy of a message that arrived at `received_at` (Unix
    /// seconds) where `filing`, run on the copies' thread, says. Returns
    /// once the copy is durable.
    pub async fn file(
        &self,
        account: &str,
        received_at: i64,
        bytes: Vec<u8>,
        filing: Filing,
    ) -> Result<Placed, RecordError> {
        if let Some(rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let (store, front_line) = (self.store.clone(), self.front_line.clone());
            record::idle::spawn("copies", move || run(rx, store, front_line))
                .map_err(|e| RecordError::Unavailable(format!("cannot start the copies' thread: {e}")))?;
        }
        let (reply, answer) = oneshot::channel();
        let req = Request { account: account.to_string(), received_at, bytes, filing, reply };
        let gone = || RecordError::Unavailable("the copies' thread stopped".into());
        self.tx.send(req).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(mut rx: mpsc::Receiver<Request>, store: Arc<dyn QuarantineStore>, front_line: FrontLine) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        loop {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.len() >= BATCH || !must_give_way(&front_line, &batch) {
                break;
            }
            tokio::time::sleep(GIVE_WAY_POLL).await;
        }
        let (copies, replies) = classify(batch);
        for (placed, reply) in store.store_many(copies).await.into_iter().zip(replies) {
            let _ = reply.send(placed);
        }
    }
}

/// Whether `batch` waits: the front line is busy and none of the batch's
/// messages arrived [`COPY_LAG_MAX`] ago. Copies that arrive while it
/// waits join it.
fn must_give_way(front_line: &FrontLine, batch: &[Request]) -> bool {
    let oldest = batch.iter().map(|r| r.received_at).min().unwrap_or(i64::MIN);
    front_line.busy() && chrono::Utc::now().timestamp() - oldest < COPY_LAG_MAX
}

/// Runs each copy's filing; a copy whose filing panics fails alone.
fn classify(batch: Vec<Request>) -> (Vec<NewCopy>, Vec<Reply>) {
    let mut copies = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for Request { account, bytes, filing, reply, .. } in batch {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filing(&bytes))) {
            Ok((folder, meta)) => {
                copies.push(NewCopy { account, folder, bytes, meta });
                replies.push(reply);
            }
            Err(_) => {
                let _ = reply
                    .send(Err(RecordError::Unavailable("filing the copy failed (a parser panicked)".into())));
            }
        }
    }
    (copies, replies)
}

/// The folder a classified message belongs in.
pub fn folder_for(c: &Classification) -> &'static str {
    c.verdict.folder(c.recipients.iter().any(|r| r.hard))
}

/// IMAP keywords: the verdict's and one per reason.
pub fn keywords_for(c: &Classification) -> Vec<String> {
    let mut k = vec![c.verdict.keyword()];
    for r in &c.recipients {
        let kw = r.reason.keyword();
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

impl Copies {
    /// Classifies `content` and files it for `account`, in the folder of
    /// its verdict with the verdict and reasons as IMAP keywords (so mail
    /// clients can sort by them). Returns where it went and the
    /// classification.
    pub async fn classify_and_file(
        &self,
        account: &str,
        content: &[u8],
        arrival: Arrival<'_>,
    ) -> Result<(Placed, Classification), RecordError> {
        let (tx, rx) = oneshot::channel();
        let Arrival { received_at, mail_from, rcpts, queue_id } = arrival;
        let mail_from = mail_from.to_string();
        let filing: Filing = Box::new(move |bytes: &[u8]| {
            let c = decide::classify(bytes);
            let meta = MessageMeta {
                received_at,
                verdict: Some(c.verdict.as_str().to_string()),
                reason: c.recipients.first().map(|r| r.reason.as_str().to_string()),
                original_message_id: c.original.message_id.clone(),
                mail_from: Some(mail_from),
                rcpts,
                queue_id: Some(queue_id),
                flags: keywords_for(&c),
            };
            let folder = folder_for(&c).to_string();
            let _ = tx.send(c);
            (folder, meta)
        });
        let placed = self.file(account, received_at, content.to_vec(), filing).await?;
        let c = rx.await.map_err(|_| RecordError::Unavailable("the copy was stored unclassified".into()))?;
        Ok((placed, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn meta(received_at: i64) -> MessageMeta {
        MessageMeta { received_at, ..Default::default() }
    }

    /// A fresh store with one account, `acme`, and its copies.
    async fn acme() -> (tempfile::TempDir, record::Store, Copies, FrontLine) {
        let dir = tempfile::tempdir().unwrap();
        let store = record::Store::open(dir.path()).await.unwrap();
        store.quarantine.add_account("acme", "pw", &[]).await.unwrap();
        let front = FrontLine::default();
        let copies = Copies::new(store.quarantine.clone(), front.clone());
        (dir, store, copies, front)
    }

    fn to(folder: &'static str) -> Filing {
        Box::new(move |_: &[u8]| (folder.to_string(), meta(now())))
    }

    #[tokio::test]
    async fn a_filing_decides_the_folder_and_a_panicking_one_fails_alone() {
        let (_dir, store, copies, _front) = acme().await;
        let by_subject: Filing = Box::new(|bytes: &[u8]| {
            let folder = if bytes.starts_with(b"Subject: bounce") { "Bounces/Hard" } else { "Human" };
            (folder.to_string(), MessageMeta { verdict: Some(folder.into()), ..meta(86_400) })
        });
        let panics: Filing = Box::new(|_: &[u8]| panic!("a parser bug"));
        let (a, b) = tokio::join!(
            copies.file("acme", 86_400, b"Subject: bounce\r\n\r\nx".to_vec(), by_subject),
            copies.file("acme", 86_400, b"Subject: boom\r\n\r\nx".to_vec(), panics),
        );
        let a = a.unwrap();
        assert!(b.is_err(), "{b:?}");
        let q = &store.quarantine;
        let hard = q.folder("acme", "Bounces/Hard").await.unwrap().expect("the folder");
        assert_eq!(a.folder_id, hard.id);
        let rows = q.messages(hard.id).await.unwrap();
        assert_eq!(q.read_blob(&rows[0].blob).await.unwrap(), b"Subject: bounce\r\n\r\nx");
        let human = q.folder("acme", "Human").await.unwrap().expect("the folder");
        assert!(q.messages(human.id).await.unwrap().is_empty(), "nothing of the failed copy is stored");
        // The thread is still there.
        copies.file("acme", now(), b"after".to_vec(), to("Human")).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_give_way_to_a_busy_front_line_but_not_past_their_lag() {
        let (_dir, store, copies, front) = acme().await;
        // A quiet front line: a fresh copy is stored at once.
        let t = Instant::now();
        copies.file("acme", now(), b"quiet".to_vec(), to("Human")).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());

        // A busy one (a message is being accepted until `busy` is dropped):
        // a fresh copy waits.
        let busy = front.accepting();
        let (c2, t) = (copies.clone(), Instant::now());
        let fresh = tokio::spawn(async move {
            c2.file("acme", now(), b"fresh".to_vec(), to("Human")).await.unwrap();
            t.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!fresh.is_finished(), "a fresh copy went ahead of a busy front line");
        // One whose message is about to reach the lag goes even so.
        let t = Instant::now();
        copies.file("acme", now() - COPY_LAG_MAX + 1, b"old".to_vec(), to("Human")).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
        // The fresh one went in the old one's batch (a batch goes whole),
        // having waited for it.
        drop(busy);
        let waited = fresh.await.unwrap();
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        let human = store.quarantine.folder("acme", "Human").await.unwrap().expect("the folder");
        assert_eq!(store.quarantine.messages(human.id).await.unwrap().len(), 3);
    }
}
