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
    // Classification is CPU work: off the async task, so the relay attempt
    // running beside this one is never held up by it.
    let owned = content.to_vec();
    let c = tokio::task::spawn_blocking(move || decide::classify(&owned))
        .await
        .map_err(|e| record::RecordError::Invalid(format!("classifier task failed: {e}")))?;
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
