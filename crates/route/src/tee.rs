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

/// Which account receives the copies of which domain, and every
/// account's name; refreshed from the database so `sluice account add`
/// takes effect on a running server.
#[derive(Clone, Default)]
pub struct Accounts(Arc<RwLock<Known>>);

#[derive(Default)]
struct Known {
    by_domain: HashMap<String, String>,
    /// Lowercased name → the name as stored.
    names: HashMap<String, String>,
}

impl Accounts {
    pub async fn load(store: &dyn record::QuarantineStore) -> Self {
        let a = Accounts::default();
        a.refresh(store).await;
        a
    }

    pub async fn refresh(&self, store: &dyn record::QuarantineStore) {
        match tokio::try_join!(store.domain_accounts(), store.accounts()) {
            Ok((rows, names)) => {
                *self.0.write().unwrap_or_else(|e| e.into_inner()) = Known {
                    by_domain: rows.into_iter().collect(),
                    names: names.into_iter().map(|n| (n.to_ascii_lowercase(), n)).collect(),
                }
            }
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

    /// The store account that takes `domain`'s copies.
    pub fn account_of(&self, domain: &str) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).by_domain.get(domain).cloned()
    }

    /// A recipient's own store account (named by the address), else its
    /// domain's; none when neither exists.
    pub fn account_for(&self, address: &str) -> Option<String> {
        let known = self.0.read().unwrap_or_else(|e| e.into_inner());
        let address = address.to_ascii_lowercase();
        if let Some(name) = known.names.get(&address) {
            return Some(name.clone());
        }
        known.by_domain.get(&domain_of(&address)).cloned()
    }

    /// Adds one quarantine recipient per account that takes a copy of this
    /// inbound message (authenticated submissions are not teed; nor are
    /// recipients filter mode decided for, whose copies go to folders of
    /// their own).
    pub fn tee(&self, envelope: &mut Envelope, filtered: &dyn Fn(&Recipient) -> bool) {
        if envelope.auth_user.is_some() {
            return;
        }
        let known = self.0.read().unwrap_or_else(|e| e.into_inner());
        let map = &known.by_domain;
        if map.is_empty() {
            return;
        }
        let accounts: BTreeSet<String> = envelope
            .rcpts
            .iter()
            .filter(|r| !matches!(r.route, Route::Folder { .. }) && !filtered(r))
            .filter_map(|r| map.get(&domain_of(&r.address)).cloned())
            .collect();
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
            if let Route::Folder { account, folder } = job.route {
                return self.file_as_is(job, account, folder).await;
            }
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

impl QuarantineTransport {
    /// Filter mode's copies: the message as received, into `folder` of
    /// `account` (one copy for the job's recipients, who share the folder).
    async fn file_as_is(&self, job: &Job<'_>, account: &str, folder: &str) -> AttemptResult {
        let reply = match filed_before(self.store.as_ref(), job, account).await {
            Some(reply) => reply,
            None => {
                let meta = record::quarantine::MessageMeta {
                    received_at: job.envelope.received_at,
                    verdict: Some(if folder == "Spam" { "spam" } else { "archived" }.to_string()),
                    reason: None,
                    original_message_id: None,
                    mail_from: Some(job.envelope.mail_from.clone()),
                    rcpts: job.rcpts.iter().map(|r| r.to_string()).collect(),
                    queue_id: Some(job.id.to_string()),
                    flags: if folder == "Spam" { vec!["$Junk".to_string()] } else { Vec::new() },
                };
                let to = folder.to_string();
                let filing: crate::copies::Filing = Box::new(move |_: &[u8]| (to, meta));
                match self.copies.file(account, job.envelope.received_at, job.content.to_vec(), filing).await
                {
                    Ok(placed) => {
                        for rcpt in &job.rcpts {
                            self.inbound.filed_for(job.id, job.envelope, job.route, rcpt, placed.uid);
                        }
                        Reply::new(
                            250,
                            "2.0.0",
                            format!("stored in {account}'s {folder} as UID {}", placed.uid),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(queue_id = %job.id, account, folder, error = %e, "a filter-mode copy could not be stored: it waits in the queue");
                        Reply::new(451, "4.3.0", format!("store account {account} unavailable: {e}"))
                    }
                }
            }
        };
        AttemptResult {
            remote: "quarantine".into(),
            tls: None,
            downstream_dsn: false,
            outcome: AttemptOutcome::PerRecipient(vec![reply; job.rcpts.len()]),
        }
    }
}
