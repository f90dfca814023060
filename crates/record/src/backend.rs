//! The storage trait the quarantine store is used through: everything the
//! IMAP server, the tee and release need, so that a PostgreSQL backend can
//! stand in for the SQLite one (`Quarantine`) without those callers changing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::RecordError;
use crate::quarantine::{FolderInfo, MessageMeta, MessageRow, Placed, Quarantine, ReleaseInfo, Swept};
use crate::writer::Filing;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// A quarantine store: accounts, their folders, and the stored copies.
pub trait QuarantineStore: Send + Sync + 'static {
    /// Changes whenever any folder gains or loses messages.
    fn changes(&self) -> watch::Receiver<u64>;
    fn verify_account<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool>;
    /// Every (domain, account) whose copies are kept.
    fn domain_accounts(&self) -> Res<'_, Vec<(String, String)>>;
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
    /// Stores a copy where `filing` says, run where the store writes (for
    /// the tee: classification and storage in one place, off the relay).
    fn store_filed<'a>(
        &'a self,
        account: &'a str,
        received_at: i64,
        bytes: Vec<u8>,
        filing: Filing,
    ) -> Res<'a, Placed>;
    fn set_flags<'a>(&'a self, folder_id: i64, flags: &'a [(i64, String)]) -> Res<'a, ()>;
    /// Copies to another folder: (destination UIDVALIDITY, (source UID, new UID) pairs).
    fn copy<'a>(&'a self, from: i64, uids: &'a [i64], to: i64) -> Res<'a, (i64, Vec<(i64, i64)>)>;
    fn expunge<'a>(&'a self, folder_id: i64, uids: &'a [i64]) -> Res<'a, u64>;
    fn release_info(&self, folder_id: i64, uid: i64) -> Res<'_, Option<ReleaseInfo>>;
    /// Where `account`'s copy of spool message `queue_id` was filed, if it was.
    fn filed_from<'a>(&'a self, account: &'a str, queue_id: &'a str) -> Res<'a, Option<(String, i64)>>;
    /// Deletes what is past its retention at `as_of` (Unix seconds).
    fn sweep(&self, as_of: i64) -> Res<'_, Swept>;
}

impl QuarantineStore for Quarantine {
    fn changes(&self) -> watch::Receiver<u64> {
        Quarantine::changes(self)
    }
    fn verify_account<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool> {
        Box::pin(Quarantine::verify_account(self, name, password))
    }
    fn domain_accounts(&self) -> Res<'_, Vec<(String, String)>> {
        Box::pin(Quarantine::domain_accounts(self))
    }
    fn folders<'a>(&'a self, account: &'a str) -> Res<'a, Vec<FolderInfo>> {
        Box::pin(Quarantine::folders(self, account))
    }
    fn folder<'a>(&'a self, account: &'a str, name: &'a str) -> Res<'a, Option<FolderInfo>> {
        Box::pin(Quarantine::folder(self, account, name))
    }
    fn messages(&self, folder_id: i64) -> Res<'_, Arc<Vec<MessageRow>>> {
        Box::pin(Quarantine::messages(self, folder_id))
    }
    fn read_blob<'a>(&'a self, hash: &'a str) -> Res<'a, Vec<u8>> {
        Box::pin(Quarantine::read_blob(self, hash))
    }
    fn read_blobs(&self, hashes: Vec<String>) -> BoxFuture<'_, Vec<Option<Vec<u8>>>> {
        Box::pin(Quarantine::read_blobs(self, hashes))
    }
    fn store<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        bytes: &'a [u8],
        meta: &'a MessageMeta,
    ) -> Res<'a, Placed> {
        Box::pin(Quarantine::store(self, account, folder, bytes, meta))
    }
    fn store_filed<'a>(
        &'a self,
        account: &'a str,
        received_at: i64,
        bytes: Vec<u8>,
        filing: Filing,
    ) -> Res<'a, Placed> {
        Box::pin(Quarantine::store_filed(self, account, received_at, bytes, filing))
    }
    fn set_flags<'a>(&'a self, folder_id: i64, flags: &'a [(i64, String)]) -> Res<'a, ()> {
        Box::pin(Quarantine::set_flags(self, folder_id, flags))
    }
    fn copy<'a>(&'a self, from: i64, uids: &'a [i64], to: i64) -> Res<'a, (i64, Vec<(i64, i64)>)> {
        Box::pin(Quarantine::copy(self, from, uids, to))
    }
    fn expunge<'a>(&'a self, folder_id: i64, uids: &'a [i64]) -> Res<'a, u64> {
        Box::pin(Quarantine::expunge(self, folder_id, uids))
    }
    fn release_info(&self, folder_id: i64, uid: i64) -> Res<'_, Option<ReleaseInfo>> {
        Box::pin(Quarantine::release_info(self, folder_id, uid))
    }
    fn filed_from<'a>(&'a self, account: &'a str, queue_id: &'a str) -> Res<'a, Option<(String, i64)>> {
        Box::pin(Quarantine::filed_from(self, account, queue_id))
    }
    fn sweep(&self, as_of: i64) -> Res<'_, Swept> {
        Box::pin(Quarantine::sweep(self, as_of))
    }
}
