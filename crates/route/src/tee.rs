//! Tee routing: inbound mail for a domain with a quarantine account gets a
//! second route, a classified copy in that account's store. The copy is a
//! recipient of its own in the spool, so it is as durable as the original
//! from the 250 on, and the scheduler runs it beside the relay, never in its
//! way.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use queue::{AttemptOutcome, AttemptResult, BoxFuture, Job, Transport};
use vocabulary::{Envelope, Recipient, Reply, Route, domain_of};

/// Which account receives the copies of which domain; refreshed from the
/// database so `sluice account add` takes effect on a running server.
#[derive(Clone, Default)]
pub struct Accounts(Arc<RwLock<HashMap<String, String>>>);

impl Accounts {
    pub async fn load(store: &dyn record::QuarantineStore) -> Self {
        let a = Accounts::default();
        a.refresh(store).await;
        a
    }

    pub async fn refresh(&self, store: &dyn record::QuarantineStore) {
        match store.domain_accounts().await {
            Ok(rows) => *self.0.write().unwrap_or_else(|e| e.into_inner()) = rows.into_iter().collect(),
            Err(e) => tracing::warn!(error = %e, "cannot read quarantine accounts"),
        }
    }

    /// Refreshes whenever the directory changes (on any node), and at
    /// least every `every`, until the task is aborted.
    pub async fn keep_fresh(
        self,
        store: Arc<dyn record::QuarantineStore>,
        mut changes: tokio::sync::watch::Receiver<u64>,
        every: Duration,
    ) {
        loop {
            record::directory::next_change(&mut changes, every).await;
            self.refresh(store.as_ref()).await;
        }
    }

    /// Adds one quarantine recipient per account that takes a copy of this
    /// inbound message (authenticated submissions are not teed).
    pub fn tee(&self, envelope: &mut Envelope) {
        if envelope.auth_user.is_some() {
            return;
        }
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        let accounts: BTreeSet<String> =
            envelope.rcpts.iter().filter_map(|r| map.get(&domain_of(&r.address)).cloned()).collect();
        for account in accounts {
            envelope.rcpts.push(Recipient::routed(account.clone(), Route::Quarantine { account }));
        }
    }
}

/// For a message recovered after a restart, the copy an earlier run filed
/// (its outcome lost in a crash): reported stored, not filed twice.
async fn filed_before(store: &dyn record::QuarantineStore, job: &Job<'_>, account: &str) -> Option<Reply> {
    if !job.recovered {
        return None;
    }
    let (folder, uid) = store.filed_from(account, &job.id.to_string()).await.ok().flatten()?;
    Some(Reply::new(250, "2.0.0", format!("stored in {folder} as UID {uid} before a restart")))
}

/// The quarantine route: classify and store the exact bytes received.
pub struct QuarantineTransport {
    pub store: Arc<dyn record::QuarantineStore>,
    /// Classifies and files the copies, off the relay's path.
    pub copies: crate::copies::Copies,
    /// Where `filed` is recorded.
    pub inbound: crate::inbound::InboundRecord,
}

impl Transport for QuarantineTransport {
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let relay_rcpts: Vec<String> = job
                .envelope
                .rcpts
                .iter()
                .filter(|r| r.route == Route::Relay)
                .map(|r| r.address.clone())
                .collect();
            let mut replies = Vec::with_capacity(job.rcpts.len());
            for account in &job.rcpts {
                let arrival = crate::copies::Arrival {
                    received_at: job.envelope.received_at,
                    mail_from: &job.envelope.mail_from,
                    rcpts: relay_rcpts.clone(),
                    queue_id: job.id.to_string(),
                };
                if let Some(reply) = filed_before(self.store.as_ref(), job, account).await {
                    replies.push(reply);
                    continue;
                }
                let reply = match self.copies.classify_and_file(account, job.content, arrival).await {
                    // The scheduler's "delivery attempt" line carries this
                    // reply: where the copy went and why, in one line.
                    Ok((placed, c)) => {
                        let folder = crate::copies::folder_for(&c);
                        self.inbound.filed(
                            job.id,
                            job.envelope,
                            crate::inbound::Filed {
                                account,
                                folder,
                                uid: placed.uid,
                                verdict: c.verdict.as_str(),
                                reason: c.recipients.first().map(|r| r.reason.as_str()),
                            },
                        );
                        Reply::new(
                            250,
                            "2.0.0",
                            format!(
                                "stored in {folder} as UID {} (verdict {})",
                                placed.uid,
                                c.verdict.as_str()
                            ),
                        )
                    }
                    Err(e) => {
                        if e.is_storage_full() {
                            tracing::debug!(queue_id = %job.id, account = %account, "quarantine store full");
                        } else {
                            tracing::error!(queue_id = %job.id, account = %account, error = %e, "quarantine store failed");
                        }
                        Reply::new(451, "4.3.0", "quarantine store unavailable")
                    }
                };
                replies.push(reply);
            }
            AttemptResult {
                remote: "quarantine".into(),
                tls: None,
                downstream_dsn: false,
                outcome: AttemptOutcome::PerRecipient(replies),
            }
        })
    }
}
