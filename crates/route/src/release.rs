//! Release: a quarantined copy re-injected to the recipients of the original,
//! as a new spool entry routed to the relay. Used by `sluice quarantine
//! release` and by IMAP moves into the `Release` folder.

use std::sync::Arc;

use queue::{Spool, Waker};
use vocabulary::{Envelope, QueueId, Recipient};

pub struct Reinjector {
    pub spool: Arc<Spool>,
    pub waker: Option<Waker>,
    pub store: Arc<dyn record::QuarantineStore>,
    pub hostname: String,
    pub max_age: i64,
    /// Where `released` is recorded (`None` for the queue commands that
    /// only read a stopped spool).
    pub inbound: Option<crate::inbound::InboundRecord>,
}

impl Reinjector {
    /// Queues the message `uid` of `folder` for its original recipients.
    pub async fn release_named(&self, account: &str, folder: &str, uid: i64) -> Result<String, String> {
        let f = self
            .store
            .folder(account, folder)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("account {account} has no folder {folder}"))?;
        self.release(account, f.id, uid).await
    }

    pub async fn release(&self, account: &str, folder_id: i64, uid: i64) -> Result<String, String> {
        let info = self
            .store
            .release_info(folder_id, uid)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no message with UID {uid}"))?;
        if info.rcpts.is_empty() {
            return Err(format!("UID {uid} has no original recipients to release to"));
        }
        let content = self.store.read_blob(&info.blob).await.map_err(|e| e.to_string())?;
        let now = chrono::Utc::now();
        let id = QueueId::generate();
        let envelope = Envelope {
            mail_from: info.mail_from,
            rcpts: info.rcpts.iter().map(Recipient::new).collect(),
            smtputf8: false,
            eight_bit: content.iter().any(|&b| b >= 0x80),
            helo: self.hostname.clone(),
            peer: "quarantine".into(),
            auth_user: None,
            received_at: now.timestamp(),
            line_faults: Default::default(),
            dsn_ret: None,
            dsn_envid: None,
        };
        let trace = format!(
            "Received: from quarantine (released by {account})\r\n\tby {} with local id {id};\r\n\t{}\r\n",
            self.hostname,
            now.to_rfc2822()
        );
        let expires = envelope.received_at + self.max_age;
        let folders = self.store.folders(account).await.unwrap_or_default();
        let folder = folders.iter().find(|f| f.id == folder_id).map_or("", |f| f.name.as_str());
        let from = crate::inbound::Filed { account, folder, uid, verdict: "", reason: None };
        let received = match &self.inbound {
            Some(r) => Some(r.released(info.queue_id.as_deref(), (id, &envelope, &content), from).await),
            None => None,
        };
        self.spool.enqueue(id, envelope, trace, content, expires).await.map_err(|e| e.to_string())?;
        if let (Some(r), Some(received)) = (&self.inbound, received) {
            r.keep(received);
        }
        if let Some(w) = &self.waker {
            w.now(id);
        }
        tracing::info!(queue_id = %id, account, uid, rcpts = ?info.rcpts, "quarantined message released");
        Ok(format!("released UID {uid} as {id} to {}", info.rcpts.join(", ")))
    }
}

impl imap::Releaser for Reinjector {
    fn release<'a>(
        &'a self,
        account: &'a str,
        folder_id: i64,
        uid: i64,
    ) -> imap::BoxFuture<'a, Result<String, String>> {
        Box::pin(Reinjector::release(self, account, folder_id, uid))
    }
}
