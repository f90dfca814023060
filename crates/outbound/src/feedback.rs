//! The feedback route: mail to the bounce domain (bounces, delays,
//! complaints, auto-replies, unsubscribes) is classified and attached to
//! the recipient it is about. The VERP token names that recipient, and its
//! signature must hold; a report without a token is matched by the
//! Message-ID it returns and the recipient it names. A forged token is
//! logged and dropped, never attached.

use decide::{Classification, RecipientReport, Verdict};
use queue::{AttemptOutcome, AttemptResult, BoxFuture, Job, Transport};
use record::Outbound;
use record::outbound::{EventType, NewEvent, SmtpResponse, Suppress};
use vocabulary::{QueueId, Reply};

use crate::Verp;

pub struct FeedbackTransport {
    pub verp: Verp,
    pub record: Outbound,
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
            let class = match tokio::task::spawn_blocking(move || decide::classify(&content)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(queue_id = %job.id, error = %e, "classifier failed on feedback");
                    return done(job, Reply::new(250, "2.0.0", "not classified"));
                }
            };
            let mut replies = Vec::with_capacity(job.rcpts.len());
            for rcpt in &job.rcpts {
                replies.push(match self.attach_all(job.id, rcpt, &class).await {
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
                outcome: AttemptOutcome::PerRecipient(replies),
            }
        })
    }
}

fn done(job: &Job<'_>, reply: Reply) -> AttemptResult {
    AttemptResult {
        remote: "feedback".into(),
        tls: None,
        outcome: AttemptOutcome::PerRecipient(vec![reply; job.rcpts.len()]),
    }
}

impl FeedbackTransport {
    /// Attaches the report to the recipients it concerns; returns how many.
    async fn attach_all(
        &self,
        queue_id: QueueId,
        rcpt: &str,
        class: &Classification,
    ) -> Result<usize, String> {
        let Some(kind) = event_of(class.verdict) else {
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
        for (i, (t, report)) in targets.into_iter().enumerate() {
            // A report attached before a crash, whose spool outcome was
            // lost, is seen again: attached once.
            let source = format!("feedback:{queue_id}:{i}");
            if self.record.recorded(&source).await.map_err(|e| e.to_string())? {
                tracing::info!(%queue_id, source, "feedback already attached (repeated after a restart)");
                continue;
            }
            self.record.record(event(t, kind, class, report, source)).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

/// The event a verdict records; `None` for mail that says nothing about a
/// delivery (a human writing to the bounce address).
fn event_of(v: Verdict) -> Option<EventType> {
    Some(match v {
        Verdict::Bounce => EventType::Bounced,
        Verdict::Delay => EventType::Deferred,
        Verdict::Delivered => EventType::Delivered,
        Verdict::Autoreply | Verdict::Challenge => EventType::Autoreplied,
        Verdict::Complaint => EventType::Complained,
        Verdict::Unsubscribe => EventType::Unsubscribed,
        Verdict::Human => return None,
    })
}

fn event(
    t: Attach,
    kind: EventType,
    class: &Classification,
    report: Option<&RecipientReport>,
    source: String,
) -> NewEvent {
    let reason = match kind {
        EventType::Complained => Some(class.feedback_type.clone().unwrap_or_else(|| "abuse".into())),
        EventType::Unsubscribed => Some("unsubscribe".into()),
        _ => report.map(|r| r.reason.as_str().to_string()),
    };
    // Suppress: an address-level bounce, a suspended mailbox too though it
    // is soft (never a block, reputation or policy rejection, nor a delay),
    // any complaint, any unsubscribe.
    let suppress = match kind {
        EventType::Bounced => {
            report.filter(|r| r.is_address_failure()).map(|r| r.reason.as_str().to_string())
        }
        EventType::Complained => Some(format!("complaint: {}", reason.as_deref().unwrap_or("abuse"))),
        EventType::Unsubscribed => Some("unsubscribed".into()),
        _ => None,
    }
    .map(|reason| Suppress { reason, expires_at: None });
    NewEvent {
        tenant: t.tenant,
        message: t.message,
        idx: Some(t.idx),
        address: Some(t.address),
        kind,
        at: record::outbound::now_ms(),
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
        event(t, EventType::Bounced, &class, Some(&r), String::new()).suppress.is_some()
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
