//! The quarantine store on SQLite: each
//! message's bytes are stored once per distinct content in the `blobs` table,
//! named by their sha256, and its metadata (verdict, reason, recipients, UID,
//! flags) lives in the `messages` table. Copies stored by versions before
//! migration 0005 keep their bytes in files (`DATA/store/blobs/xx/<sha256>`):
//! reads fall back to those files and the sweep deletes them, so an old data
//! directory keeps working without a conversion step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, watch};

use super::quarantine_writer::{STORE_BATCH, StoreReq};
use crate::quarantine::ARCHIVE_RETENTION_DAYS;
use crate::quarantine::{FOLDERS, FolderInfo, MessageRow, ReleaseInfo, Swept};
use crate::{RecordError, password};

/// Folder listings by folder id, with the modseq they were read at.
type ListingCache = Arc<std::sync::Mutex<std::collections::HashMap<i64, (i64, Arc<Vec<MessageRow>>)>>>;

#[derive(Clone)]
pub struct Quarantine {
    pub(crate) pool: SqlitePool,
    /// Where blob files of earlier versions are (read and swept, never written).
    legacy_blobs: PathBuf,
    changes: Arc<watch::Sender<u64>>,
    listings: ListingCache,
    /// (account, folder) to folder id: folders are never deleted, so an id
    /// once known stays right (the tee path saves three queries a message).
    folder_ids: Arc<std::sync::RwLock<std::collections::HashMap<(String, String), i64>>>,
    pub(crate) writer: mpsc::Sender<StoreReq>,
    /// How the writer opens its own connection.
    pub(crate) writer_opts: sqlx::sqlite::SqliteConnectOptions,
    /// The writer's end until the first store starts it.
    pub(crate) writer_rx: Arc<std::sync::Mutex<Option<mpsc::Receiver<StoreReq>>>>,
}

impl Quarantine {
    pub(crate) fn new(
        pool: SqlitePool,
        writer_opts: sqlx::sqlite::SqliteConnectOptions,
        data_dir: &Path,
        changes: Arc<watch::Sender<u64>>,
    ) -> Self {
        let (writer, writer_rx) = mpsc::channel(4 * STORE_BATCH);
        Quarantine {
            writer,
            writer_rx: Arc::new(std::sync::Mutex::new(Some(writer_rx))),
            writer_opts,
            pool,
            legacy_blobs: data_dir.join("store").join("blobs"),
            changes,
            listings: ListingCache::default(),
            folder_ids: Arc::default(),
        }
    }

    /// A receiver that sees a change whenever any folder gains or loses
    /// messages (what IMAP IDLE waits on).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Adds an account (or replaces its password) and assigns it `domains`.
    pub async fn add_account(
        &self,
        name: &str,
        password: &str,
        domains: &[String],
    ) -> Result<(), RecordError> {
        password::check_name(name)?;
        let hash = password::hash(password).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (name, password_hash, created_at) VALUES (?, ?, strftime('%s','now'))
             ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
        for d in domains {
            sqlx::query(
                "INSERT INTO account_domains (domain, account_id) SELECT ?, id FROM accounts WHERE name = ?
                 ON CONFLICT(domain) DO UPDATE SET account_id = excluded.account_id",
            )
            .bind(d.to_ascii_lowercase())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for f in std::iter::once(&"INBOX").chain(FOLDERS) {
            self.folder_id(name, f).await?;
        }
        Ok(())
    }

    pub async fn verify_account(&self, name: &str, password: &str) -> Result<bool, RecordError> {
        let sql = "SELECT password_hash FROM accounts WHERE name = ?";
        super::verify_password(&self.pool, sql, name, password).await
    }

    /// The account that receives copies of mail for `domain`.
    pub async fn account_for_domain(&self, domain: &str) -> Result<Option<String>, RecordError> {
        Ok(sqlx::query_scalar(
            "SELECT a.name FROM account_domains d JOIN accounts a ON a.id = d.account_id WHERE d.domain = ?",
        )
        .bind(domain.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every domain with the account that receives its copies.
    pub async fn domain_accounts(&self) -> Result<Vec<(String, String)>, RecordError> {
        Ok(sqlx::query_as(
            "SELECT d.domain, a.name FROM account_domains d JOIN accounts a ON a.id = d.account_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets retention for a whole account, or for one of its folders.
    pub async fn set_retention(
        &self,
        account: &str,
        folder: Option<&str>,
        days: i64,
    ) -> Result<(), RecordError> {
        if days < 1 {
            return Err(RecordError::Invalid("retention_days must be at least 1".into()));
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(RecordError::Invalid(format!("no account {account}")));
        }
        match folder {
            None => {
                sqlx::query("UPDATE accounts SET retention_days = ? WHERE name = ?")
                    .bind(days)
                    .bind(account)
                    .execute(&self.pool)
                    .await?;
            }
            Some(f) => {
                if !crate::quarantine::FOLDERS.contains(&f) && self.folder(account, f).await?.is_none() {
                    return Err(crate::quarantine::no_folder(account, f));
                }
                let id = self.folder_id(account, f).await?;
                sqlx::query("UPDATE folders SET retention_days = ? WHERE id = ?")
                    .bind(days)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The folder's id, creating it (with a fresh UIDVALIDITY) if needed.
    pub async fn folder_id(&self, account: &str, folder: &str) -> Result<i64, RecordError> {
        let key = (account.to_string(), folder.to_string());
        if let Some(id) = self.folder_ids.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        let id = self.create_folder(account, folder).await?;
        self.folder_ids.write().unwrap_or_else(|e| e.into_inner()).insert(key, id);
        Ok(id)
    }

    async fn create_folder(&self, account: &str, folder: &str) -> Result<i64, RecordError> {
        let account_id: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        let account_id = account_id.ok_or_else(|| RecordError::Invalid(format!("no account {account}")))?;
        // UIDVALIDITY: creation time in seconds, and always above any earlier
        // value of the account, so a re-created folder never repeats one.
        sqlx::query(
            "INSERT INTO folders (account_id, name, uidvalidity)
             SELECT ?1, ?2, MAX(CAST(strftime('%s','now') AS INTEGER),
                                COALESCE((SELECT MAX(uidvalidity) + 1 FROM folders WHERE account_id = ?1), 1))
             ON CONFLICT(account_id, name) DO NOTHING",
        )
        .bind(account_id)
        .bind(folder)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM folders WHERE account_id = ? AND name = ?")
            .bind(account_id)
            .bind(folder)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The file an earlier version kept `hash`'s bytes in; `None` for a
    /// name that is not a hash (it could otherwise point anywhere).
    fn legacy_path(dir: &Path, hash: &str) -> Option<PathBuf> {
        (hash.len() >= 3 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| dir.join(&hash[..2]).join(hash))
    }

    /// The exact bytes of a stored message.
    pub async fn read_blob(&self, hash: &str) -> Result<Vec<u8>, RecordError> {
        let Some(path) = Self::legacy_path(&self.legacy_blobs, hash) else {
            return Err(RecordError::Invalid("bad blob name".into()));
        };
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT bytes FROM blobs WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(bytes) => Ok(bytes),
            None => tokio::fs::read(path)
                .await
                .map_err(|e| RecordError::Unavailable(format!("reading blob: {e}"))),
        }
    }

    /// The account's folders, by name.
    pub async fn folders(&self, account: &str) -> Result<Vec<FolderInfo>, RecordError> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT f.id, f.name, f.uidvalidity, f.uidnext FROM folders f JOIN accounts a ON a.id = f.account_id
              WHERE a.name = ? ORDER BY f.name",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, uidvalidity, uidnext)| FolderInfo { id, name, uidvalidity, uidnext })
            .collect())
    }

    /// One folder of the account, if it exists.
    pub async fn folder(&self, account: &str, name: &str) -> Result<Option<FolderInfo>, RecordError> {
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT f.id, f.name, f.uidvalidity, f.uidnext FROM folders f JOIN accounts a ON a.id = f.account_id
              WHERE a.name = ? AND f.name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name, uidvalidity, uidnext)| FolderInfo { id, name, uidvalidity, uidnext }))
    }

    /// Every message of a folder, by ascending UID. Listings are cached in
    /// memory and re-read only when the folder's modseq has moved (which
    /// every writer, in any process, bumps), so re-selecting a big folder
    /// costs one indexed lookup.
    pub async fn messages(&self, folder_id: i64) -> Result<Arc<Vec<MessageRow>>, RecordError> {
        let modseq: Option<i64> = sqlx::query_scalar("SELECT modseq FROM folders WHERE id = ?")
            .bind(folder_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(modseq) = modseq else { return Ok(Arc::default()) };
        if let Some((m, rows)) = self.listings.lock().unwrap_or_else(|e| e.into_inner()).get(&folder_id)
            && *m == modseq
        {
            return Ok(rows.clone());
        }
        let rows: Vec<(i64, String, i64, i64, String)> = sqlx::query_as(
            "SELECT uid, blob, size, received_at, flags FROM messages WHERE folder_id = ? ORDER BY uid",
        )
        .bind(folder_id)
        .fetch_all(&self.pool)
        .await?;
        let rows: Arc<Vec<MessageRow>> = Arc::new(
            rows.into_iter()
                .map(|(uid, blob, size, received_at, flags)| MessageRow {
                    uid,
                    blob: blob.into(),
                    size,
                    received_at,
                    flags,
                })
                .collect(),
        );
        // Stored under the modseq read before the rows: a change in between
        // only makes the next call read again.
        self.listings.lock().unwrap_or_else(|e| e.into_inner()).insert(folder_id, (modseq, rows.clone()));
        Ok(rows)
    }

    /// The bytes of many messages at once (one query per 500 distinct
    /// blobs, one blocking task for any older blob files), in order; `None`
    /// where a blob cannot be read.
    pub async fn read_blobs(&self, hashes: Vec<String>) -> Vec<Option<Vec<u8>>> {
        let mut distinct: Vec<&str> = hashes.iter().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut found: HashMap<String, Vec<u8>> = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(500) {
            let sql =
                format!("SELECT hash, bytes FROM blobs WHERE hash IN ({})", vec!["?"; chunk.len()].join(","));
            let mut q = sqlx::query_as::<_, (String, Vec<u8>)>(sqlx::AssertSqlSafe(sql)).persistent(false);
            for h in chunk {
                q = q.bind(*h);
            }
            match q.fetch_all(&self.pool).await {
                Ok(rows) => found.extend(rows),
                Err(e) => tracing::error!(error = %e, "reading blobs"),
            }
        }
        let missing: Vec<String> =
            distinct.iter().filter(|h| !found.contains_key(**h)).map(|h| h.to_string()).collect();
        if !missing.is_empty() {
            let dir = self.legacy_blobs.clone();
            let files = tokio::task::spawn_blocking(move || {
                missing
                    .into_iter()
                    .filter_map(|h| {
                        let bytes = std::fs::read(Self::legacy_path(&dir, &h)?).ok()?;
                        Some((h, bytes))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            found.extend(files);
        }
        // Each blob moves out at its last use; only a content asked for
        // more than once is copied.
        let mut uses: HashMap<&str, usize> = HashMap::with_capacity(found.len());
        for h in &hashes {
            *uses.entry(h.as_str()).or_default() += 1;
        }
        hashes
            .iter()
            .map(|h| {
                let left = uses.get_mut(h.as_str())?;
                *left -= 1;
                if *left == 0 { found.remove(h) } else { found.get(h).cloned() }
            })
            .collect()
    }

    /// Replaces the flags of some messages: `(uid, space-separated flags)`.
    pub async fn set_flags(&self, folder_id: i64, flags: &[(i64, String)]) -> Result<(), RecordError> {
        let mut tx = self.pool.begin().await?;
        for (uid, f) in flags {
            sqlx::query("UPDATE messages SET flags = ? WHERE folder_id = ? AND uid = ?")
                .bind(f)
                .bind(folder_id)
                .bind(uid)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = ?")
            .bind(folder_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies messages to another folder (the bytes are shared, not
    /// copied). Returns `(source UID, new UID)` pairs and the destination's
    /// UIDVALIDITY, for UIDPLUS's COPYUID.
    pub async fn copy(
        &self,
        from: i64,
        uids: &[i64],
        to: i64,
    ) -> Result<(i64, Vec<(i64, i64)>), RecordError> {
        // IMMEDIATE: it reads before it writes, and a deferred transaction
        // would fail at once if another writer committed in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let uidvalidity: i64 = sqlx::query_scalar("SELECT uidvalidity FROM folders WHERE id = ?")
            .bind(to)
            .fetch_one(&mut *tx)
            .await?;
        let mut pairs = Vec::with_capacity(uids.len());
        for &uid in uids {
            let new: Option<i64> = sqlx::query_scalar(
                "UPDATE folders SET uidnext = uidnext + 1, modseq = modseq + 1 WHERE id = ?1
                    AND EXISTS (SELECT 1 FROM messages WHERE folder_id = ?2 AND uid = ?3)
                 RETURNING uidnext - 1",
            )
            .bind(to)
            .bind(from)
            .bind(uid)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(new) = new else { continue };
            sqlx::query(
                "INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason,
                                       original_message_id, mail_from, rcpts, queue_id)
                 SELECT ?, ?, blob, size, received_at, flags, verdict, reason,
                        original_message_id, mail_from, rcpts, queue_id
                   FROM messages WHERE folder_id = ? AND uid = ?",
            )
            .bind(to)
            .bind(new)
            .bind(from)
            .bind(uid)
            .execute(&mut *tx)
            .await?;
            pairs.push((uid, new));
        }
        tx.commit().await?;
        self.changed();
        Ok((uidvalidity, pairs))
    }

    /// Removes messages from a folder for good (IMAP EXPUNGE), and the
    /// bytes no other message shares.
    pub async fn expunge(&self, folder_id: i64, uids: &[i64]) -> Result<u64, RecordError> {
        let mut tx = self.pool.begin().await?;
        let mut blobs = Vec::with_capacity(uids.len());
        for uid in uids {
            let blob: Option<String> =
                sqlx::query_scalar("DELETE FROM messages WHERE folder_id = ? AND uid = ? RETURNING blob")
                    .bind(folder_id)
                    .bind(uid)
                    .fetch_optional(&mut *tx)
                    .await?;
            blobs.extend(blob);
        }
        sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = ?")
            .bind(folder_id)
            .execute(&mut *tx)
            .await?;
        let n = blobs.len() as u64;
        let unused = drop_unused_blobs(&mut tx, blobs).await?;
        tx.commit().await?;
        self.remove_legacy_files(unused).await;
        self.changed();
        Ok(n)
    }

    /// Deletes the files of blobs from earlier versions that no message
    /// refers to any more (after the commit that dropped the last reference:
    /// a crash in between only leaves a file nothing reads).
    async fn remove_legacy_files(&self, unused: Vec<String>) {
        if unused.is_empty() {
            return;
        }
        let dir = self.legacy_blobs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if !dir.is_dir() {
                return;
            }
            for path in unused.iter().filter_map(|h| Self::legacy_path(&dir, h)) {
                let _ = std::fs::remove_file(path);
            }
        })
        .await;
    }

    /// Where the copy filed from spool message `queue_id` for `account`
    /// lies (folder, UID), if it was filed: a copy repeated after a crash
    /// is not filed twice.
    pub async fn filed_from(
        &self,
        account: &str,
        queue_id: &str,
    ) -> Result<Option<(String, i64)>, RecordError> {
        Ok(sqlx::query_as(
            "SELECT f.name, m.uid FROM messages m JOIN folders f ON f.id = m.folder_id
             JOIN accounts a ON a.id = f.account_id WHERE m.queue_id = ? AND a.name = ? LIMIT 1",
        )
        .bind(queue_id)
        .bind(account)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The envelope a released message is re-injected with.
    pub async fn release_info(&self, folder_id: i64, uid: i64) -> Result<Option<ReleaseInfo>, RecordError> {
        let row: Option<(Option<String>, String, String, Option<String>)> = sqlx::query_as(
            "SELECT mail_from, rcpts, blob, queue_id FROM messages WHERE folder_id = ? AND uid = ?",
        )
        .bind(folder_id)
        .bind(uid)
        .fetch_optional(&self.pool)
        .await?;
        let Some((mail_from, rcpts, blob, queue_id)) = row else { return Ok(None) };
        let rcpts: Vec<String> = serde_json::from_str(&rcpts)
            .map_err(|e| RecordError::Unavailable(format!("stored recipients: {e}")))?;
        Ok(Some(ReleaseInfo { mail_from: mail_from.unwrap_or_default(), rcpts, blob, queue_id }))
    }

    /// UIDs in a folder, ascending.
    pub async fn uids(&self, folder_id: i64) -> Result<Vec<i64>, RecordError> {
        Ok(sqlx::query_scalar("SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid")
            .bind(folder_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The blob of one message.
    pub async fn blob_of(&self, folder_id: i64, uid: i64) -> Result<Option<String>, RecordError> {
        Ok(sqlx::query_scalar("SELECT blob FROM messages WHERE folder_id = ? AND uid = ?")
            .bind(folder_id)
            .bind(uid)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deletes messages older than their folder's retention at `as_of`
    /// (Unix seconds), and the blobs no message refers to any more. Works in
    /// small transactions so readers are never blocked for long.
    /// Each folder's (id, account, name, cutoff): its copies received
    /// before the cutoff are past retention. The days: the recipients'
    /// policy's (`retention`), else the folder's own, else the account's
    /// (Archive keeps at least ARCHIVE_RETENTION_DAYS).
    async fn cutoffs(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Vec<(i64, String, String, i64)>, RecordError> {
        let folders: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT f.id, a.name, f.name, ?1 - 86400 * COALESCE(f.retention_days,
                        CASE WHEN f.name = 'Archive' THEN MAX(a.retention_days, ?2) ELSE a.retention_days END)
               FROM folders f JOIN accounts a ON a.id = f.account_id ORDER BY a.name, f.name",
        )
        .bind(as_of)
        .bind(ARCHIVE_RETENTION_DAYS)
        .fetch_all(&self.pool)
        .await?;
        Ok(folders
            .into_iter()
            .map(|(id, a, f, cutoff)| {
                (id, a, f, retention.get(&id).map_or(cutoff, |days| as_of - 86_400 * days))
            })
            .collect())
    }

    /// What `sweep` would delete: (account, folder, messages).
    pub async fn expired(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Vec<(String, String, u64)>, RecordError> {
        let mut out = Vec::new();
        for (id, account, folder, cutoff) in self.cutoffs(as_of, retention).await? {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE folder_id = ? AND received_at < ?")
                    .bind(id)
                    .bind(cutoff)
                    .fetch_one(&self.pool)
                    .await?;
            if n > 0 {
                out.push((account, folder, n as u64));
            }
        }
        Ok(out)
    }

    /// Deletes a folder's copies received before `cutoff`, and the bytes
    /// no message refers to any more, 2,000 at a time.
    async fn expire_folder(&self, folder_id: i64, cutoff: i64, swept: &mut Swept) -> Result<(), RecordError> {
        loop {
            let mut tx = self.pool.begin().await?;
            let gone: Vec<String> = sqlx::query_scalar(
                "DELETE FROM messages WHERE id IN
                    (SELECT id FROM messages WHERE folder_id = ? AND received_at < ? LIMIT 2000)
                 RETURNING blob",
            )
            .bind(folder_id)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            if gone.is_empty() {
                return Ok(());
            }
            sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = ?")
                .bind(folder_id)
                .execute(&mut *tx)
                .await?;
            swept.messages += gone.len() as u64;
            let unused = drop_unused_blobs(&mut tx, gone).await?;
            tx.commit().await?;
            self.changed();
            // A blob counts once, whether its bytes were a row, a file of
            // an earlier version, or (stored again since) both.
            swept.blobs += unused.len() as u64;
            self.remove_legacy_files(unused).await;
        }
    }

    /// Removes an account: its copies (and bytes no one else refers to),
    /// its folders and its domains. `None` when there is no such account.
    pub async fn remove_account(&self, name: &str) -> Result<Option<Swept>, RecordError> {
        let folders: Vec<i64> = sqlx::query_scalar(
            "SELECT f.id FROM folders f JOIN accounts a ON a.id = f.account_id WHERE a.name = ?",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut swept = Swept::default();
        for folder_id in folders {
            self.expire_folder(folder_id, i64::MAX, &mut swept).await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE name = ?").bind(name).execute(&self.pool).await?;
        self.folder_ids.write().unwrap_or_else(|e| e.into_inner()).retain(|(a, _), _| a != name);
        self.changed();
        Ok((done.rows_affected() > 0).then_some(swept))
    }

    pub async fn sweep(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Swept, RecordError> {
        let mut swept = Swept::default();
        for (folder_id, _, _, cutoff) in self.cutoffs(as_of, retention).await? {
            self.expire_folder(folder_id, cutoff, &mut swept).await?;
        }
        if swept.messages > 0 {
            // The WAL still holds the pages that carried the swept bytes
            // until a checkpoint copies the zeroed ones over them; truncate
            // it so expired mail is gone from disk, not just from view.
            // Best effort: a reader in the middle of a long read only delays
            // this to the next checkpoint.
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await
            {
                Ok((0, _, _)) => {}
                Ok((_, log, done)) => tracing::warn!(log, done, "checkpoint after the sweep was busy"),
                Err(e) => tracing::warn!(error = %e, "checkpoint after the sweep"),
            }
        }
        Ok(swept)
    }
}

/// Deletes, inside the caller's transaction, the blob rows among `blobs`
/// that no message refers to any more, and returns every such hash (rowed
/// or not) so their files from earlier versions can go too. In the same
/// transaction as the deletes of the messages, so a store of the same bytes
/// either commits first (and keeps the blob) or after (and writes it anew).
async fn drop_unused_blobs(
    tx: &mut sqlx::SqliteConnection,
    mut blobs: Vec<String>,
) -> Result<Vec<String>, RecordError> {
    blobs.sort_unstable();
    blobs.dedup();
    let mut unused = Vec::with_capacity(blobs.len());
    for chunk in blobs.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT DISTINCT blob FROM messages WHERE blob IN ({marks})");
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).persistent(false);
        for b in chunk {
            q = q.bind(b);
        }
        let used: std::collections::HashSet<String> = q.fetch_all(&mut *tx).await?.into_iter().collect();
        let gone: Vec<&String> = chunk.iter().filter(|b| !used.contains(*b)).collect();
        if gone.is_empty() {
            continue;
        }
        let sql = format!("DELETE FROM blobs WHERE hash IN ({})", vec!["?"; gone.len()].join(","));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for b in &gone {
            q = q.bind(b.as_str());
        }
        q.execute(&mut *tx).await?;
        unused.extend(gone.into_iter().cloned());
    }
    Ok(unused)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::quarantine::MessageMeta;
    use crate::sqlite::Sqlite;

    use super::*;

    #[tokio::test]
    async fn store_uids_blobs_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let q = Sqlite::open_for_test(dir.path()).await.quarantine;
        q.add_account("acme", "pw", &["Bounces.Example.COM".into()]).await.unwrap();
        assert_eq!(q.account_for_domain("bounces.example.com").await.unwrap().as_deref(), Some("acme"));
        assert!(q.verify_account("acme", "pw").await.unwrap());
        assert!(!q.verify_account("acme", "nope").await.unwrap());

        let day = 86_400;
        let old =
            MessageMeta { received_at: 1_000 * day, verdict: Some("bounce".into()), ..Default::default() };
        let fresh = MessageMeta { received_at: 1_040 * day, ..Default::default() };
        let a = q.store("acme", "Bounces/Hard", b"same bytes", &old).await.unwrap();
        let b = q.store("acme", "Bounces/Hard", b"same bytes", &fresh).await.unwrap();
        let c = q.store("acme", "Archive", b"archived", &old).await.unwrap();
        assert_eq!((a.uid, b.uid), (1, 2));
        assert_eq!(a.uidvalidity, b.uidvalidity);
        assert_ne!(a.uidvalidity, c.uidvalidity, "folders of one account never share a UIDVALIDITY");
        // Stored once.
        assert_eq!(blob_rows(&q).await, 2);
        let hash = q.blob_of(a.folder_id, 1).await.unwrap().unwrap();
        assert_eq!(q.read_blob(&hash).await.unwrap(), b"same bytes");

        // 30 days after day 1000: the old bounce goes, the shared blob stays
        // (the fresh copy uses it), the archived one (365 days) stays.
        let swept = q.sweep(1_031 * day, &Default::default()).await.unwrap();
        assert_eq!(swept, Swept { messages: 1, blobs: 0 });
        assert_eq!(q.uids(a.folder_id).await.unwrap(), vec![2]);
        assert_eq!(q.uids(c.folder_id).await.unwrap(), vec![1]);
        // A new message never reuses UID 1.
        let d = q.store("acme", "Bounces/Hard", b"new", &fresh).await.unwrap();
        assert_eq!(d.uid, 3);
        // Much later everything goes, blobs included.
        let swept = q.sweep(3_000 * day, &Default::default()).await.unwrap();
        assert_eq!(swept.messages, 3);
        assert_eq!(blob_rows(&q).await, 0);
        // Per-folder retention overrides the account's.
        q.set_retention("acme", Some("Human"), 1).await.unwrap();
        let h = q
            .store("acme", "Human", b"h", &MessageMeta { received_at: 10 * day, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(q.sweep(12 * day, &Default::default()).await.unwrap().messages, 1);
        assert!(q.uids(h.folder_id).await.unwrap().is_empty());
    }

    /// How many distinct contents the store holds.
    pub(crate) async fn blob_rows(q: &Quarantine) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM blobs").fetch_one(&q.pool).await.unwrap()
    }
}
