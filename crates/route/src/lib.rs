//! Inbound routing: where each recipient of an accepted message goes, and
//! the transports that take it there.
//!
//! The [`Router`] is the SMTP listeners' sink. It decides each recipient's
//! route as the message is accepted: a tenant's authenticated user submits
//! to the outbound path (`submit`); mail to the bounce domain is feedback;
//! postmaster and abuse go to a person (`postmaster.rs`); everything else
//! is relayed, and a domain that belongs to a store account also gets a
//! classified copy (`tee.rs`). This is where a filter-mode policy will
//! decide each recipient's fate. The message then goes to the spool (the
//! 250 waits for its fsync) and its record to the front line's record
//! (`inbound.rs`). The transports the queue runs for these routes are here
//! too: the relay (`relay.rs`) and the store copy (`tee.rs`, classified
//! and filed off the relay's path by `copies.rs`, giving way to the front
//! line, `front_line.rs`); release puts a stored copy back in the spool
//! (`release.rs`).

pub mod authenticate;
pub mod catch_up;
pub mod copies;
pub mod filter;
pub mod front_line;
pub mod inbound;
pub mod learn;
pub mod postmaster;
pub mod relay;
pub mod release;
pub mod retention;
pub mod rspamd;
pub mod tee;

use std::sync::Arc;

use ingress::{Accepted, BoxFuture, Sink};
use queue::{Spool, Waker};
use vocabulary::Reply;

use record::events::NewEvent;

use crate::inbound::InboundRecord;

/// Routes accepted messages and writes them to the spool; the 250 waits
/// for its fsync.
pub struct Router {
    pub spool: Arc<Spool>,
    pub waker: Option<Waker>,
    pub max_age: i64,
    pub accounts: tee::Accounts,
    /// Mail to this domain is feedback for the outbound record (VERP).
    pub bounce_domain: String,
    /// Submission by a tenant's user takes the outbound path.
    pub outbox: Arc<outbound::Outbox>,
    pub hostname: String,
    /// Held for every message being accepted: the tee's copies give way meanwhile.
    pub front_line: front_line::FrontLine,
    /// postmaster and abuse: to a person, never to the feedback route.
    pub roles: postmaster::Roles,
    pub inbound: InboundRecord,
    /// Filter mode's domains, scanner and policies, when any domain is in
    /// filter mode.
    pub filter: Option<Arc<filter::FilterMode>>,
}

impl Sink for Router {
    fn accept(&self, msg: Accepted) -> BoxFuture<'_, Result<(), Reply>> {
        Box::pin(async move {
            // Until the 250 (or the refusal): the tee's copies wait meanwhile.
            let _accepting = self.front_line.accepting();
            if let Some(user) = &msg.envelope.auth_user {
                let tenant = self.outbox.record.directory.user_tenant(user).await.map_err(|e| {
                    tracing::error!(error = %e, "user tenant lookup failed");
                    Reply::new(451, "4.3.0", "Temporary local problem, please try again later")
                })?;
                if let Some(t) = tenant {
                    return submit(&self.outbox, t.id, msg, &self.hostname).await;
                }
            }
            let expires = msg.envelope.received_at + self.max_age;
            let Accepted { id, mut envelope, trace, content, tls } = msg;
            self.route(&mut envelope);
            let filtered = match &self.filter {
                Some(f) if f.applies(&envelope) => {
                    let tenant_of = |address: &str| self.inbound.rcpt_tenant(address);
                    Some(f.apply(&mut envelope, &content, &tenant_of).await)
                }
                _ => None,
            };
            let in_filter = |r: &vocabulary::Recipient| {
                self.filter.as_ref().is_some_and(|f| f.domains.contains(&vocabulary::domain_of(&r.address)))
            };
            self.accounts.tee(&mut envelope, &in_filter);
            let msg = Accepted { id, envelope, trace, content, tls };
            match filtered {
                None => self.spool(msg, expires, Vec::new()).await,
                Some(filtered) => self.spool_filtered(msg, filtered, expires).await,
            }
        })
    }

    /// A tenant user's recipient on its tenant's suppression list is
    /// refused at RCPT, with the entry's reason; a user without a tenant
    /// relays, and is not asked about.
    fn check_rcpt<'a>(&'a self, user: &'a str, rcpt: &'a str) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(async move {
            let unavailable = |e: record::RecordError| {
                tracing::error!(error = %e, user, rcpt, "suppression lookup at RCPT failed");
                Reply::new(451, "4.3.0", "Temporary local problem, please try again later")
            };
            let directory = &self.outbox.record.directory;
            let tenant = match directory.user_tenant(user).await {
                Ok(Some(t)) => t,
                Ok(None) => return None,
                Err(e) => return Some(unavailable(e)),
            };
            let now = record::events::now_ms();
            let address = [rcpt.to_string()];
            let entry = match self.outbox.record.suppressions.suppressed(tenant.id, &address, now).await {
                Ok(found) => found.into_iter().next()?,
                Err(e) => return Some(unavailable(e)),
            };
            let why: String = format!("{} ({})", entry.reason, entry.source)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            Some(Reply::new(550, "5.7.1", format!("<{rcpt}> is suppressed: {why}")))
        })
    }
}

impl Router {
    /// Spools a message and records it `received`, with `events` (its
    /// recipients' filter decisions); the 250 waits for the spool.
    async fn spool(&self, msg: Accepted, expires: i64, events: Vec<NewEvent>) -> Result<(), Reply> {
        let Accepted { id, envelope, trace, content, tls } = msg;
        let received = self.inbound.received(id, &envelope, &content, tls.as_deref()).with_events(events);
        let id = self.spool.enqueue(id, envelope, trace, content, expires).await.map_err(|e| {
            if e.is_storage_full() {
                // ingress logs the 452 at WARN with the peer.
                tracing::debug!(error = %e, "spool full");
                return storage_full_reply();
            }
            tracing::error!(error = %e, "spool write failed");
            Reply::new(451, "4.3.0", "Temporary local problem, please try again later")
        })?;
        self.inbound.keep(received);
        if let Some(w) = &self.waker {
            w.now(id);
        }
        Ok(())
    }

    /// A message filter mode decided for: refused whole, or the message as
    /// accepted (delivered, quarantined and archived recipients, and any
    /// outside filter mode) and a tagged copy per subject prefix, each
    /// spooled before the 250. (With sender authentication, filter mode's
    /// recipients get the message with an `Authentication-Results` header:
    /// as accepted when nobody else has it, else as a copy of theirs.)
    async fn spool_filtered(
        &self,
        mut msg: Accepted,
        filtered: filter::Filtered,
        expires: i64,
    ) -> Result<(), Reply> {
        let tagged_ids: Vec<_> = filtered.tagged.iter().map(|_| vocabulary::QueueId::generate()).collect();
        let mut events = filter::place(filtered.events, msg.id, &tagged_ids);
        if let Some(reply) = filtered.refuse {
            tracing::warn!(queue_id = %msg.id, from = %msg.envelope.mail_from, reply = %reply,
                "refused: every recipient's filter policy says so");
            self.note(events);
            return Err(reply);
        }
        for ((content, rcpts), id) in filtered.tagged.into_iter().zip(&tagged_ids) {
            let mine = take_events(&mut events, *id);
            let envelope = vocabulary::Envelope { rcpts, ..msg.envelope.clone() };
            let copy =
                Accepted { id: *id, envelope, trace: msg.trace.clone(), content, tls: msg.tls.clone() };
            self.spool(copy, expires, mine).await?;
        }
        if msg.envelope.rcpts.is_empty() {
            // Everyone was tagged or rejected: the decisions are recorded
            // on their own.
            self.note(events);
            return Ok(());
        }
        if let Some(content) = filtered.content {
            msg.content = content;
        }
        self.spool(msg, expires, events).await
    }

    fn note(&self, events: Vec<NewEvent>) {
        for e in events {
            self.inbound.record().events.note(e);
        }
    }

    /// Each recipient's route: postmaster and abuse to a person, the
    /// bounce domain's mail to the feedback route, the rest to the relay,
    /// and a copy for each store account whose domain is among them. (A
    /// filter-mode policy decides each recipient's fate here, once the
    /// message is scanned.)
    fn route(&self, envelope: &mut vocabulary::Envelope) {
        for r in envelope.rcpts.iter_mut() {
            if self.roles.route(r) {
                continue;
            }
            if r.route == vocabulary::Route::Relay && vocabulary::domain_of(&r.address) == self.bounce_domain
            {
                r.route = vocabulary::Route::Feedback;
            }
        }
    }
}

/// The events of message `id`, taken out of `events`.
fn take_events(events: &mut Vec<NewEvent>, id: vocabulary::QueueId) -> Vec<NewEvent> {
    let id = id.to_string();
    let (mine, rest) = std::mem::take(events).into_iter().partition(|e| e.message == id);
    *events = rest;
    mine
}

/// RFC 3463 4.3.1: the reply to every message refused for a full disk.
pub fn storage_full_reply() -> Reply {
    Reply::new(452, "4.3.1", "Insufficient system storage, please try again later")
}

/// Submission by a user who belongs to a tenant: the same outbox as the API.
async fn submit(
    outbox: &outbound::Outbox,
    tenant: i64,
    msg: ingress::Accepted,
    hostname: &str,
) -> Result<(), Reply> {
    let from = msg.envelope.mail_from.clone();
    let (content, message_id, subject) = outbound::outbox::complete_headers(msg.content, &from, hostname)
        .map_err(|m| Reply::new(554, "5.6.0", format!("Message refused: {m}")))?;
    let draft = outbound::Draft {
        from,
        recipients: msg.envelope.rcpts.iter().map(|r| (r.address.clone(), "to")).collect(),
        content,
        message_id: Some(message_id),
        subject,
        trace: msg.trace,
        smtputf8: msg.envelope.smtputf8,
        metadata: serde_json::json!({"submitted_by": msg.envelope.auth_user}),
        ..Default::default()
    };
    match outbox.send(tenant, draft).await {
        Ok(sent) => {
            tracing::info!(id = %sent.id, tenant, "submission accepted for the outbound path");
            Ok(())
        }
        Err(outbound::SendError::StorageFull(e)) => {
            tracing::warn!(error = %e, "outbound submission refused: the disk is full");
            Err(storage_full_reply())
        }
        Err(e) => {
            tracing::error!(error = ?e, "outbound submission failed");
            Err(Reply::new(451, "4.3.0", "Temporary local problem, please try again later"))
        }
    }
}
