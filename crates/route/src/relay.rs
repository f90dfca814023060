//! The relay route: hands queued messages to the downstream system through the
//! deliver crate's pooled SMTP client, and builds DSNs for the queue.

use std::sync::Arc;

use deliver::smtp::{Client, Destination, DsnParams, OutboundMessage, Outcome};
use queue::{AttemptOutcome, AttemptResult, BoxFuture, DsnBuilder, DsnInput, Job, Transport};
use vocabulary::RcptStatus;

pub struct RelayTransport {
    pub client: Arc<Client>,
    pub dest: Destination,
}

impl Transport for RelayTransport {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            // What a strict downstream accepts: CRLF line ends, no line over
            // 998 octets (the spool keeps the bytes exactly as received).
            let body = vocabulary::lines::normalize(job.content);
            let content: [&[u8]; 2] = [job.trace.as_bytes(), &body];
            let msg = OutboundMessage {
                mail_from: &job.envelope.mail_from,
                rcpts: &job.rcpts,
                smtputf8: job.envelope.smtputf8,
                eight_bit: job.envelope.eight_bit,
                content: &content,
                dsn: Some(dsn_params(job)),
            };
            let attempt = self.client.send(&self.dest, &msg).await;
            AttemptResult {
                remote: attempt.remote,
                tls: attempt.tls,
                downstream_dsn: attempt.dsn,
                outcome: match attempt.outcome {
                    Outcome::PerRecipient(replies) => AttemptOutcome::PerRecipient(replies),
                    Outcome::Failed(reply) => AttemptOutcome::Failed(reply),
                },
            }
        })
    }
}

/// The sender's RFC 3461 requests, for a downstream that offers DSN.
fn dsn_params<'a>(job: &'a Job<'a>) -> DsnParams<'a> {
    let env = job.envelope;
    let rcpts = job
        .rcpts
        .iter()
        .map(|a| {
            let r = env.rcpts.iter().find(|r| r.route == vocabulary::Route::Relay && r.address == *a);
            (r.and_then(|r| r.notify), r.and_then(|r| r.orcpt.as_deref()))
        })
        .collect();
    DsnParams { ret: env.dsn_ret, envid: env.dsn_envid.as_deref(), rcpts }
}

/// DSNs reported by `hostname`: each recipient's action follows its state
/// (failed or expired, delayed, or relayed to a downstream without DSN).
pub fn dsn_builder(hostname: String) -> DsnBuilder {
    Arc::new(move |input: &DsnInput<'_>| {
        use deliver::dsn::{DsnRecipient, DsnRequest, build};
        let recipients = input
            .recipients
            .iter()
            .map(|r| {
                let reply = r.status.reply();
                let (action, fallback) = dsn_action(&r.status);
                // An expiry reports 4.4.7 whatever the last reply said.
                let status = reply
                    .and_then(|r| r.status.clone())
                    .filter(|_| !matches!(r.status, RcptStatus::Expired { .. }))
                    .unwrap_or_else(|| fallback.to_string());
                DsnRecipient {
                    address: &r.address,
                    orcpt: r.orcpt.as_deref(),
                    action,
                    status,
                    diagnostic: reply,
                    remote_mta: Some(input.remote),
                }
            })
            .collect();
        build(&DsnRequest {
            reporting_mta: &hostname,
            queue_id: &input.id.to_string(),
            original_sender: &input.envelope.mail_from,
            arrival: chrono::DateTime::from_timestamp(input.envelope.received_at, 0).unwrap_or_default(),
            recipients,
            original: input.original,
            envid: input.envelope.dsn_envid.as_deref(),
            headers_only: input.envelope.dsn_ret == Some(vocabulary::dsn::Ret::Hdrs),
        })
    })
}

/// What a DSN reports for a recipient in this state (RFC 3464 action),
/// and the status code it gives when the last reply had none.
pub fn dsn_action(status: &RcptStatus) -> (deliver::dsn::DsnAction, &'static str) {
    use deliver::dsn::DsnAction;
    match status {
        RcptStatus::Expired { .. } => (DsnAction::Failed, "4.4.7"),
        RcptStatus::TempFail { .. } => (DsnAction::Delayed, "4.0.0"),
        RcptStatus::Delivered { .. } => (DsnAction::Relayed, "2.0.0"),
        _ => (DsnAction::Failed, "5.0.0"),
    }
}
