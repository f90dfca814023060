//! The feedback route: mail to the bounce domain (bounces, delays,
//! complaints, auto-replies, unsubscribes) is classified and attached to
//! the recipient it is about. The VERP token names that recipient, and its
//! signature must hold; a report without a token is matched by the
//! Message-ID it returns and the recipient it names. A forged token is
//! logged and dropped, never attached.

use std::sync::Arc;

use decide::{Classification, RecipientReport};
use queue::{AttemptOutcome, AttemptResult, BoxFuture, Job, Transport};
use record::EventLog;
use record::events::{EventKind, NewEvent, SmtpResponse, Suppress};
use vocabulary::{QueueId, Reply};

use crate::Verp;

pub struct FeedbackTransport {
    pub verp: Verp,
    pub record: Arc<dyn EventLog>,
}

/// What one report says about one recipient.
struct Attach {
    tenant: i64,
    message: String,
    idx: i64,
    address: String,
}

impl Transport for FeedbackTransport {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let content = job.content.to_vec();
            // The report's own Message-ID: a sender that resends a report
            // whose 250 it never saw sends the same one (RFC 5322 3.6.4).
            let report_id = own_message_id(job.content);
            let class = match tokio::task::spawn_blocking(move || decide::classify(&content)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(queue_id = %job.id, error = %e, "classifier failed on feedback");
                    return done(job, Reply::new(250, "2.0.0", "not classified"));
                }
            };
            let mut replies = Vec::with_capacity(job.rcpts.len());
            for rcpt in &job.rcpts {
                replies.push(match self.attach_all(job.id, report_id.as_deref(), rcpt, &class).await {
                    Ok(n) => Reply::new(
                        250,
                        "2.0.0",
                        format!("{} attached to {n} recipient(s)", class.verdict.as_str()),
                    ),
                    Err(e) => {
                        tracing::error!(queue_id = %job.id, error = %e, "attaching feedback");
                        Reply::new(451, "4.3.0", "record unavailable")
                    }
                });
            }
            AttemptResult {
                remote: "feedback".into(),
                tls: None,
                downstream_dsn: false,
                outcome: AttemptOutcome::PerRecipient(replies),
            }
        })
    }
}

fn done(job: &Job<'_>, reply: Reply) -> AttemptResult {
    AttemptResult {
        remote: "feedback".into(),
        tls: None,
        downstream_dsn: false,
        outcome: AttemptOutcome::PerRecipient(vec![reply; job.rcpts.len()]),
    }
}

impl FeedbackTransport {
    /// Attaches the report to the recipients it concerns; returns how many.
    async fn attach_all(
        &self,
        queue_id: QueueId,
        report_id: Option<&str>,
        rcpt: &str,
        class: &Classification,
    ) -> Result<usize, String> {
        let Some(kind) = class.verdict.event() else {
            tracing::info!(%queue_id, verdict = class.verdict.as_str(), "feedback not attached: nothing to record");
            return Ok(0);
        };
        let mut targets: Vec<(Attach, Option<&RecipientReport>)> = Vec::new();
        if let Some(token) = decide::verp::parse(rcpt) {
            let Some((message, idx)) = self.verp.open(&token) else {
                tracing::warn!(%queue_id, to = rcpt, "feedback with a forged or foreign VERP token: not attached");
                return Ok(0);
            };
            let message = message.to_string();
            match self.record.recipient_of(&message, idx as i64).await.map_err(|e| e.to_string())? {
                Some((tenant, address)) => {
                    let report = class
                        .recipients
                        .iter()
                        .find(|r| r.address.eq_ignore_ascii_case(&address))
                        .or(class.recipients.first());
                    targets.push((Attach { tenant, message, idx: idx as i64, address }, report));
                }
                None => tracing::warn!(%queue_id, %message, idx, "VERP token for an unknown message"),
            }
        } else if let Some(mid) = class.original.message_id.as_deref() {
            // No token: the returned Message-ID and the recipient named.
            let named: Vec<(String, Option<&RecipientReport>)> = if class.recipients.is_empty() {
                class.original.to.iter().map(|a| (a.clone(), None)).collect()
            } else {
                class.recipients.iter().map(|r| (r.address.clone(), Some(r))).collect()
            };
            for (address, report) in named {
                if let Some((tenant, message, idx)) =
                    self.record.by_message_id(mid, &address).await.map_err(|e| e.to_string())?
                {
                    targets.push((Attach { tenant, message, idx, address }, report));
                }
            }
        }
        if targets.is_empty() {
            tracing::info!(%queue_id, to = rcpt, verdict = class.verdict.as_str(), "feedback matched no message");
        }
        let n = targets.len();
        for (t, report) in targets {
            // A report attached before a crash (its spool outcome lost), or
            // sent again by a peer that missed our 250, is attached once.
            let source = match report_id {
                Some(mid) => format!("feedback:{mid}:{}:{}", t.message, t.idx),
                None => format!("feedback:{queue_id}:{}:{}", t.message, t.idx),
            };
            // Two copies of one report can be attempted at once: the check
            // and the write are one step per source.
            let _one_at_a_time = stripe(&source).lock().await;
            if self.record.recorded(&source).await.map_err(|e| e.to_string())? {
                tracing::info!(%queue_id, source, "feedback already attached (a resend, or repeated after a restart)");
                continue;
            }
            self.record.record(event(t, kind, class, report, source)).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

/// One of 64 locks, chosen by `source`: reports about different
/// recipients are attached in parallel, the same one never twice at once.
fn stripe(source: &str) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    static STRIPES: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    &STRIPES[(h.finish() % 64) as usize]
}

/// The Message-ID field of a message's own header section, if any.
fn own_message_id(content: &[u8]) -> Option<String> {
    let end = content.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(content.len().min(64 * 1024));
    let head = String::from_utf8_lossy(&content[..end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(more) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push_str(more.trim());
        }
        return (!value.is_empty()).then_some(value);
    }
    None
}

fn event(
    t: Attach,
    kind: EventKind,
    class: &Classification,
    report: Option<&RecipientReport>,
    source: String,
) -> NewEvent {
    let reason = match kind {
        EventKind::Complained => Some(class.feedback_type.clone().unwrap_or_else(|| "abuse".into())),
        EventKind::Unsubscribed => Some("unsubscribe".into()),
        _ => report.map(|r| r.reason.as_str().to_string()),
    };
    // Suppress: an address-level bounce, a suspended mailbox too though it
    // is soft (never a block, reputation or policy rejection, nor a delay),
    // any complaint, any unsubscribe.
    let suppress = match kind {
        EventKind::Bounced => {
            report.filter(|r| r.is_address_failure()).map(|r| r.reason.as_str().to_string())
        }
        EventKind::Complained => Some(format!("complaint: {}", reason.as_deref().unwrap_or("abuse"))),
        EventKind::Unsubscribed => Some("unsubscribed".into()),
        _ => None,
    }
    .map(|reason| Suppress { reason, expires_at: None });
    NewEvent {
        tenant: Some(t.tenant),
        message: t.message,
        idx: Some(t.idx),
        address: Some(t.address),
        kind,
        at: record::events::now_ms(),
        reason,
        smtp: report.map(|r| SmtpResponse {
            code: r.reply_code,
            status: r.status.clone(),
            text: r.diagnostic.clone(),
            remote: r.remote_mta.clone(),
            tls: None,
        }),
        detail: Some(serde_json::json!({
            "verdict": class.verdict.as_str(),
            "mta": class.mta,
            "source_ip": class.source_ip,
            "autoreply_from": class.autoreply_from,
        })),
        suppress,
        source: Some(source),
        group: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use decide::Reason;

    use super::*;

    /// Whether a bounce for one recipient, as decide reports it, suppresses.
    fn suppresses(reason: Reason, hard: bool, status: &str, action: &str) -> bool {
        let raw =
            b"From: MAILER-DAEMON@mx.example.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n\
<kijitora@example.test>: 550 5.2.1 Account disabled\r\n";
        let class = decide::classify(raw);
        let mut r = RecipientReport::bare("kijitora@example.test", reason);
        (r.hard, r.status, r.action) = (hard, Some(status.into()), Some(action.into()));
        let t = Attach { tenant: 1, message: "m".into(), idx: 0, address: r.address.clone() };
        event(t, EventKind::Bounced, &class, Some(&r), String::new()).suppress.is_some()
    }

    #[test]
    fn the_report_s_own_message_id_names_a_resend() {
        let m = b"From: a@b\r\nMessage-ID:\r\n <r1@mx.example>\r\nSubject: x\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(own_message_id(m).as_deref(), Some("<r1@mx.example>"));
        assert_eq!(own_message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
    }

    #[test]
    fn address_level_bounces_suppress_even_when_soft() {
        assert!(suppresses(Reason::Userunknown, true, "5.1.1", "failed"));
        // A suspended mailbox is a soft bounce, but the address is still bad...
        assert!(suppresses(Reason::Suspend, false, "5.2.1", "failed"));
        // ...unless it is only a delay.
        assert!(!suppresses(Reason::Suspend, false, "4.2.1", "delayed"));
        assert!(!suppresses(Reason::Blocked, false, "5.7.1", "failed"));
    }
}
