//! The quarantine store as its users see it (the IMAP server, the tee,
//! release, the retention sweep): accounts own folders named after
//! verdicts, folders hold copies by UID. [`QuarantineStore`] is what a
//! backend implements; the SQLite one is `crate::sqlite::Quarantine`.
//!
//! **UIDs follow RFC 3501:** a folder's UIDVALIDITY is fixed at creation and
//! its UIDs only grow; a UID is never given out twice, not even after the
//! message it named was swept.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{BoxFuture, RecordError};

/// The name a copy's bytes are stored under, on every backend: their
/// SHA-256, in lower-case hex (one stored content per distinct bytes).
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// The folders every account has (IMAP hierarchy with `/`): one per
/// verdict (`vocabulary::Verdict::folder`), then Spam, Archive and Release.
pub const FOLDERS: &[&str] = &[
    "Bounces/Hard",
    "Bounces/Soft",
    "Delays",
    "Delivered",
    "AutoReplies",
    "Complaints",
    "Unsubscribes",
    "Challenges",
    "Human",
    "Spam",
    "Archive",
    "Release",
];

/// Retention in days when nothing else is configured.
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// The Archive folder keeps mail longer by default.
pub const ARCHIVE_RETENTION_DAYS: i64 = 365;

/// What is known about a message when it is stored.
#[derive(Debug, Clone, Default)]
pub struct MessageMeta {
    pub received_at: i64,
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub original_message_id: Option<String>,
    pub mail_from: Option<String>,
    pub rcpts: Vec<String>,
    pub queue_id: Option<String>,
    /// IMAP flags and keywords (e.g. `$Bounce`, `$Reason_userunknown`).
    pub flags: Vec<String>,
}

/// Where a stored message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub folder_id: i64,
    pub uidvalidity: i64,
    pub uid: i64,
}

/// A folder that is neither one of [`FOLDERS`] nor made by the account.
pub(crate) fn no_folder(account: &str, folder: &str) -> RecordError {
    RecordError::Invalid(format!(
        "no folder {folder:?} in account {account} (the store's: {})",
        FOLDERS.join(", ")
    ))
}

/// Days kept per folder id, overriding what the store says.
pub type Retention = std::collections::HashMap<i64, i64>;

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub messages: u64,
    pub blobs: u64,
}

/// A folder as IMAP sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub id: i64,
    pub name: String,
    pub uidvalidity: i64,
    pub uidnext: i64,
}

/// One message's row, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub uid: i64,
    /// Shared, so a session's view of a big folder copies no hashes.
    pub blob: Arc<str>,
    pub size: i64,
    pub received_at: i64,
    /// Space-separated flags and keywords.
    pub flags: String,
}

/// What re-injecting a released message needs.
#[derive(Debug, Clone)]
pub struct ReleaseInfo {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub blob: String,
    /// The spool id of the message the copy was filed from.
    pub queue_id: Option<String>,
}

/// A copy to store: where, its bytes, and what is known of it.
#[derive(Debug, Clone)]
pub struct NewCopy {
    pub account: String,
    pub folder: String,
    pub bytes: Vec<u8>,
    pub meta: MessageMeta,
}

/// A quarantine store: accounts, their folders, and the stored copies.
pub trait QuarantineStore: Send + Sync + 'static {
    /// Adds an account (or replaces its password) and assigns it `domains`.
    fn add_account<'a>(&'a self, name: &'a str, password: &'a str, domains: &'a [String]) -> Res<'a, ()>;
    /// Sets retention for a whole account, or for one of its folders.
    fn set_retention<'a>(&'a self, account: &'a str, folder: Option<&'a str>, days: i64) -> Res<'a, ()>;
    /// Changes whenever any folder gains or loses messages.
    fn changes(&self) -> watch::Receiver<u64>;
    fn verify_account<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool>;
    /// Every (domain, account) whose copies are kept.
    fn domain_accounts(&self) -> Res<'_, Vec<(String, String)>>;
    /// Every account's name, in order.
    fn accounts(&self) -> Res<'_, Vec<String>>;
    /// Removes an account with its copies, folders and domains; what went
    /// (`None`: there was no such account).
    fn remove_account<'a>(&'a self, name: &'a str) -> Res<'a, Option<Swept>>;
    fn folders<'a>(&'a self, account: &'a str) -> Res<'a, Vec<FolderInfo>>;
    fn folder<'a>(&'a self, account: &'a str, name: &'a str) -> Res<'a, Option<FolderInfo>>;
    /// A folder's messages by ascending UID.
    fn messages(&self, folder_id: i64) -> Res<'_, Arc<Vec<MessageRow>>>;
    fn read_blob<'a>(&'a self, hash: &'a str) -> Res<'a, Vec<u8>>;
    /// Many messages' bytes in order; `None` where one cannot be read.
    fn read_blobs(&self, hashes: Vec<String>) -> BoxFuture<'_, Vec<Option<Vec<u8>>>>;
    /// Files a copy, giving it the folder's next UID.
    fn store<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        bytes: &'a [u8],
        meta: &'a MessageMeta,
    ) -> Res<'a, Placed>;
    /// Stores many copies in one write (one transaction where the backend
    /// has them); each has its own answer, in order.
    fn store_many(&self, copies: Vec<NewCopy>) -> BoxFuture<'_, Vec<Result<Placed, RecordError>>>;
    fn set_flags<'a>(&'a self, folder_id: i64, flags: &'a [(i64, String)]) -> Res<'a, ()>;
    /// Copies to another folder: (destination UIDVALIDITY, (source UID, new UID) pairs).
    fn copy<'a>(&'a self, from: i64, uids: &'a [i64], to: i64) -> Res<'a, (i64, Vec<(i64, i64)>)>;
    fn expunge<'a>(&'a self, folder_id: i64, uids: &'a [i64]) -> Res<'a, u64>;
    fn release_info(&self, folder_id: i64, uid: i64) -> Res<'_, Option<ReleaseInfo>>;
    /// Where `account`'s copy of spool message `queue_id` was filed, if it was.
    fn filed_from<'a>(&'a self, account: &'a str, queue_id: &'a str) -> Res<'a, Option<(String, i64)>>;
    /// Deletes what is past its retention at `as_of` (Unix seconds):
    /// a folder's days from `retention` (folder id → days, the
    /// recipients' policies), else its own, else its account's.
    fn sweep<'a>(&'a self, as_of: i64, retention: &'a Retention) -> Res<'a, Swept>;
    /// What [`sweep`](QuarantineStore::sweep) would delete, deleting
    /// nothing: (account, folder, messages) for each folder with any.
    fn expired<'a>(&'a self, as_of: i64, retention: &'a Retention) -> Res<'a, Vec<(String, String, u64)>>;
}

#[cfg(test)]
mod tests {
    use vocabulary::Verdict;

    #[test]
    fn every_verdict_has_its_folder_in_every_account() {
        for v in Verdict::ALL {
            for hard in [false, true] {
                assert!(super::FOLDERS.contains(&v.folder(hard)), "{v:?} files in a folder no account has");
            }
        }
    }
}
