//! The outbound route's transport: one SMTP transaction per recipient (each
//! has its own VERP return path), to the smart host or the recipient
//! domain's MX, DKIM-signed once per message; every attempt's SMTP response
//! becomes an event on that recipient.

use std::sync::Arc;

use deliver::smtp::{Client, Destination, OutboundMessage, Outcome};
use queue::{AttemptOutcome, AttemptResult, BoxFuture, Job, Transport};
use record::EventLog;
use record::events::{EventKind, NewEvent, SmtpResponse, Suppress};
use vocabulary::{Reply, domain_of};

use crate::Verp;

/// Signatures computed at once: every core but one.
static SIGNING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
});

/// Where mail for a domain goes.
pub trait NextHop: Send + Sync + 'static {
    /// The hosts to try, in order; a reply when the domain cannot be
    /// reached (permanent: no such domain, null MX; temporary: DNS trouble).
    fn resolve<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Destination>, Reply>>;
    /// A smart host hands mail on: its 250 means `sent`, not `delivered`.
    fn is_smart_host(&self) -> bool;
}

/// Signs a message for the domain of its sender (DKIM).
pub trait Signer: Send + Sync + 'static {
    /// The header to prepend, CRLF-terminated, or `None` without a key.
    fn sign(&self, domain: &str, content: &[u8]) -> Option<String>;
    /// False while there is no key at all (nothing to sign with: no need
    /// to hand the message to a signing thread).
    fn has_keys(&self) -> bool {
        true
    }
}

/// Waits for a destination's turn under its rate limit.
pub trait Pace: Send + Sync + 'static {
    fn wait<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, ()>;
}

pub struct OutboundTransport {
    pub client: Arc<Client>,
    pub hops: Arc<dyn NextHop>,
    pub signer: Option<Arc<dyn Signer>>,
    pub pace: Option<Arc<dyn Pace>>,
    pub verp: Verp,
    pub record: Arc<dyn EventLog>,
    /// `https://host` where `/v1/unsubscribe/TOKEN` is served (one-click).
    pub public_url: Option<String>,
    /// Signs open and click tokens; with the tracking base URL.
    pub tracking: Option<(crate::tracking::Tracker, String)>,
}

impl Transport for OutboundTransport {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            // An RSA signature is about a millisecond of CPU: off the async
            // workers, so it never stalls the sessions and requests they
            // run, and on all cores but one, so acceptance keeps a core.
            // List-Unsubscribe and tracked links differ per recipient, and
            // so does the signature over them.
            let per_recipient = match job.route {
                vocabulary::Route::Outbound { unsubscribe, opens, clicks, .. } => {
                    *unsubscribe || *opens || *clicks
                }
                _ => false,
            };
            let signature =
                if per_recipient { String::new() } else { self.sign(job, job.content.to_vec(), true).await };
            let sends = job.rcpts.iter().map(|rcpt| self.one(job, rcpt, &signature, per_recipient));
            let results = futures::future::join_all(sends).await;
            let remote = results.iter().map(|(_, r, _)| r.as_str()).find(|r| !r.is_empty()).unwrap_or("");
            let tls = results.iter().find_map(|(_, _, t)| t.clone());
            AttemptResult {
                remote: remote.to_string(),
                tls,
                downstream_dsn: false,
                outcome: AttemptOutcome::PerRecipient(
                    results.iter().map(|(reply, _, _)| reply.clone()).collect(),
                ),
            }
        })
    }
}

impl OutboundTransport {
    /// The DKIM-Signature header for `content`, or "" without a key (said
    /// at WARN with the domain when `warn`: once per message and attempt).
    async fn sign(&self, job: &Job<'_>, content: Vec<u8>, warn: bool) -> String {
        let domain = domain_of(&job.envelope.mail_from);
        let signature = match self.signer.as_ref().filter(|s| s.has_keys()) {
            None => None,
            Some(signer) => {
                let _slot = SIGNING.acquire().await;
                let (signer, domain) = (signer.clone(), domain.clone());
                tokio::task::spawn_blocking(move || signer.sign(&domain, &content)).await.ok().flatten()
            }
        };
        if signature.is_none() && warn {
            let from = deliver::dkim::from_domain(job.content).unwrap_or(domain);
            tracing::warn!(queue_id = %job.id, domain = %from,
                "sent unsigned: no DKIM key for the From domain (sluice dkim generate)");
        }
        signature.unwrap_or_default()
    }

    /// The message as recipient `idx` gets it: its HTML links and pixel
    /// pointing at the tracker with this recipient's tokens (before DKIM
    /// signs it), or as it is when not tracked.
    fn tracked<'j>(&self, job: &'j Job<'_>, idx: u16) -> std::borrow::Cow<'j, [u8]> {
        let (opens, clicks) = match job.route {
            vocabulary::Route::Outbound { opens, clicks, .. } => (*opens, *clicks),
            _ => (false, false),
        };
        let Some((tracker, base_url)) = self.tracking.as_ref().filter(|_| opens || clicks) else {
            return std::borrow::Cow::Borrowed(job.content);
        };
        let opts = crate::tracking::Rewrite { base_url: base_url.clone(), clicks, opens };
        let rewritten = crate::tracking::rewrite(job.content, &opts, |link| match link {
            Some(link) => tracker.click_token(job.id, idx, link),
            None => tracker.open_token(job.id, idx),
        });
        std::borrow::Cow::Owned(rewritten)
    }

    /// `List-Unsubscribe` for one recipient: a mail to its VERP address
    /// (which the feedback route reads as an unsubscribe) and, with a public
    /// URL, the RFC 8058 one-click link, both carrying the signed token.
    fn unsubscribe_headers(&self, token: &str, verp: &str) -> String {
        match &self.public_url {
            Some(base) => format!(
                "List-Unsubscribe: <{}/v1/unsubscribe/{token}>,\r\n <mailto:{verp}?subject=unsubscribe>\r\n\
                 List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                base.trim_end_matches('/')
            ),
            None => format!("List-Unsubscribe: <mailto:{verp}?subject=unsubscribe>\r\n"),
        }
    }

    /// Sends to one recipient and records the outcome. Returns the reply,
    /// the remote host and the TLS version.
    async fn one(
        &self,
        job: &Job<'_>,
        rcpt: &str,
        signature: &str,
        per_recipient: bool,
    ) -> (Reply, String, Option<String>) {
        let idx = job.envelope.rcpts.iter().position(|r| r.address == rcpt).unwrap_or(0);
        if let Some(done) = self.done_before(job, idx).await {
            return done;
        }
        let token = self.verp.token(job.id, idx as u16);
        let mail_from = self.verp.address_of(&token);
        // With List-Unsubscribe the bytes differ per recipient, and so does
        // the signature (RFC 8058 wants the headers signed).
        let (own, own_signature) = if per_recipient {
            let mut bytes = match job.route {
                vocabulary::Route::Outbound { unsubscribe: true, .. } => {
                    self.unsubscribe_headers(&token, &mail_from).into_bytes()
                }
                _ => Vec::new(),
            };
            bytes.extend_from_slice(&self.tracked(job, idx as u16));
            let first = job.rcpts.first().is_some_and(|r| *r == rcpt);
            let sig = self.sign(job, bytes.clone(), first).await;
            (bytes, sig)
        } else {
            (Vec::new(), String::new())
        };
        let (body, signature): (&[u8], &str) =
            if per_recipient { (&own, &own_signature) } else { (job.content, signature) };
        let domain = domain_of(rcpt);
        let (reply, remote, tls) = match self.hops.resolve(&domain).await {
            Err(reply) => (reply, String::new(), None),
            Ok(hosts) => {
                if let Some(p) = &self.pace {
                    p.wait(&domain).await;
                }
                let content: [&[u8]; 3] = [signature.as_bytes(), job.trace.as_bytes(), body];
                let rcpts = [rcpt];
                let msg = OutboundMessage {
                    mail_from: &mail_from,
                    rcpts: &rcpts,
                    smtputf8: job.envelope.smtputf8,
                    eight_bit: job.envelope.eight_bit,
                    content: &content,
                    dsn: None,
                };
                let mut last = (Reply::new(451, "4.4.4", "no host to deliver to"), String::new(), None);
                for host in hosts {
                    let attempt = self.client.send(&host, &msg).await;
                    let reply = match attempt.outcome {
                        Outcome::PerRecipient(mut r) => {
                            r.pop().unwrap_or_else(|| Reply::new(451, "4.3.0", "no reply"))
                        }
                        Outcome::Failed(r) => r,
                    };
                    let next = reply.is_transient();
                    last = (reply, attempt.remote, attempt.tls);
                    // A temporary failure at one MX: the next may take it.
                    if !next {
                        break;
                    }
                }
                last
            }
        };
        self.note(job, idx as i64, rcpt, &reply, &remote, tls.as_deref()).await;
        (reply, remote, tls)
    }

    /// For a message recovered after a restart: the outcome an earlier run
    /// already recorded for this recipient (sent, refused), so it is
    /// neither sent nor recorded twice.
    async fn done_before(&self, job: &Job<'_>, idx: usize) -> Option<(Reply, String, Option<String>)> {
        if !job.recovered {
            return None;
        }
        let status = self.record.recipient_status(&job.id.to_string(), idx as i64).await.ok().flatten()?;
        let reply = match status.as_str() {
            "queued" | "deferred" => return None,
            "rejected" | "failed" => Reply::new(550, "5.0.0", format!("already {status} before a restart")),
            _ => Reply::new(250, "2.0.0", format!("already {status} before a restart")),
        };
        tracing::info!(queue_id = %job.id, idx, status, "outbound recipient already done before a restart; not sent again");
        Some((reply, String::new(), None))
    }

    async fn note(
        &self,
        job: &Job<'_>,
        idx: i64,
        rcpt: &str,
        reply: &Reply,
        remote: &str,
        tls: Option<&str>,
    ) {
        let message = job.id.to_string();
        let vocabulary::Route::Outbound { tenant, .. } = *job.route else { return };
        let now = record::events::now_ms();
        let (kind, reason, suppress) = if reply.is_positive() {
            let kind = if self.hops.is_smart_host() { EventKind::Sent } else { EventKind::Delivered };
            (kind, None, None)
        } else {
            let reason = decide::reason_of_reply(&reply.text, reply.status.as_deref());
            let suppress = reply.is_permanent() && reason.is_address_level();
            // A refusal in the SMTP conversation is `rejected`; a domain
            // that cannot receive mail at all (no such domain, null MX), or
            // a temporary failure past the message's expiry, is `failed`.
            let kind = if reply.is_permanent() && !remote.is_empty() {
                EventKind::Rejected
            } else if reply.is_permanent() || now / 1000 >= job.expires_at {
                EventKind::Failed
            } else {
                EventKind::Deferred
            };
            let s = suppress.then(|| Suppress { reason: reason.as_str().to_string(), expires_at: None });
            (kind, Some(reason.as_str().to_string()), s)
        };
        let event = NewEvent {
            tenant: Some(tenant),
            message,
            idx: Some(idx),
            address: Some(rcpt.to_string()),
            kind,
            at: now,
            reason,
            smtp: Some(SmtpResponse {
                code: Some(reply.code),
                status: reply.status.clone(),
                text: Some(reply.text.clone()),
                remote: (!remote.is_empty()).then(|| remote.to_string()),
                tls: tls.map(str::to_string),
            }),
            detail: None,
            suppress,
            source: None,
            group: Vec::new(),
        };
        if let Err(e) = self.record.record(event).await {
            tracing::error!(error = %e, "recording an outbound attempt");
        }
    }
}
