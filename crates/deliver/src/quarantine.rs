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

/// Classifies `content` and stores it for `account`. Both happen on the
/// store's writer thread, at the analysis path's low priority: the copy
/// crosses threads once, and on a busy machine takes only what the relay
/// leaves. Returns where it went and the classification.
pub async fn file(
    store: &dyn QuarantineStore,
    account: &str,
    content: &[u8],
    arrival: Arrival<'_>,
) -> Result<(Placed, Classification), record::RecordError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let Arrival { received_at, mail_from, rcpts, queue_id } = arrival;
    let mail_from = mail_from.to_string();
    let filing: record::Filing = Box::new(move |bytes: &[u8]| {
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
    let placed = store.store_filed(account, received_at, content.to_vec(), filing).await?;
    let c =
        rx.await.map_err(|_| record::RecordError::Unavailable("the copy was stored unclassified".into()))?;
    Ok((placed, c))
}
