//! The quarantine store on PostgreSQL: accounts' folders and copies,
//! metadata and bytes, shared by every node. A copy's bytes are stored once
//! per distinct content (`blobs`, by SHA-256); a folder's row is its lock
//! (handing out UIDs takes it), so nodes filing into one folder at once
//! take turns. Every change is announced on the channel `sluice_store`,
//! so each node's IMAP IDLE hears of copies another node filed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::PgConnection;

use super::Postgres;
use crate::quarantine::{
    ARCHIVE_RETENTION_DAYS, FOLDERS, FolderInfo, MessageMeta, MessageRow, NewCopy, Placed, ReleaseInfo,
    Swept, content_hash,
};
use crate::{RecordError, password};

/// The channel store changes are announced on.
pub(super) const CHANGES: &str = "sluice_store";

fn folder_info((id, name, uidvalidity, uidnext): (i64, String, i64, i64)) -> FolderInfo {
    FolderInfo { id, name, uidvalidity, uidnext }
}

/// Announces a change to every node (sent when the transaction commits).
async fn announce(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')").bind(CHANGES).execute(&mut *tx).await?;
    Ok(())
}

impl Postgres {
    pub(super) async fn add_store_account(
        &self,
        name: &str,
        password: &str,
        domains: &[String],
    ) -> Result<(), RecordError> {
        password::check_name(name)?;
        let hash = password::hash(password).await?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(crate::events::now_ms() / 1000)
        .fetch_one(&mut *tx)
        .await?;
        let domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        sqlx::query(
            "INSERT INTO account_domains (domain, account_id) SELECT d, $2 FROM unnest($1::text[]) d
             ON CONFLICT (domain) DO UPDATE SET account_id = excluded.account_id",
        )
        .bind(&domains)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for f in std::iter::once(&"INBOX").chain(FOLDERS) {
            create_folder(&mut tx, id, f).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn account_password(&self, name: &str, password: &str) -> Result<bool, RecordError> {
        let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        password::verify(stored, password).await
    }

    pub(super) async fn retention(
        &self,
        account: &str,
        folder: Option<&str>,
        days: i64,
    ) -> Result<(), RecordError> {
        if days < 1 {
            return Err(RecordError::Invalid("retention_days must be at least 1".into()));
        }
        let done = match folder {
            None => {
                sqlx::query("UPDATE accounts SET retention_days = $1 WHERE name = $2")
                    .bind(days)
                    .bind(account)
                    .execute(&self.pool)
                    .await?
            }
            Some(f) => {
                if !crate::quarantine::FOLDERS.contains(&f)
                    && self.account_folder(account, f).await?.is_none()
                {
                    return Err(crate::quarantine::no_folder(account, f));
                }
                let id = self.folder_id(account, f).await?;
                sqlx::query("UPDATE folders SET retention_days = $1 WHERE id = $2")
                    .bind(days)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        match done.rows_affected() {
            0 => Err(RecordError::Invalid(format!("no account {account}"))),
            _ => Ok(()),
        }
    }

    /// The folder's id, created (with a fresh UIDVALIDITY) if need be.
    /// Folders are never deleted, so an id once known stays right.
    pub(super) async fn folder_id(&self, account: &str, folder: &str) -> Result<i64, RecordError> {
        let key = (account.to_string(), folder.to_string());
        if let Some(id) = self.folder_ids.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        let mut tx = self.pool.begin().await?;
        let account_id: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
            .bind(account)
            .fetch_optional(&mut *tx)
            .await?;
        let account_id = account_id.ok_or_else(|| RecordError::Invalid(format!("no account {account}")))?;
        let id = create_folder(&mut tx, account_id, folder).await?;
        tx.commit().await?;
        self.folder_ids.write().unwrap_or_else(|e| e.into_inner()).insert(key, id);
        Ok(id)
    }

    pub(super) async fn account_folders(&self, account: &str) -> Result<Vec<FolderInfo>, RecordError> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT f.id, f.name, f.uidvalidity, f.uidnext FROM folders f JOIN accounts a ON a.id = f.account_id
             WHERE a.name = $1 ORDER BY f.name",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(folder_info).collect())
    }

    pub(super) async fn account_folder(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<FolderInfo>, RecordError> {
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT f.id, f.name, f.uidvalidity, f.uidnext FROM folders f JOIN accounts a ON a.id = f.account_id
             WHERE a.name = $1 AND f.name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(folder_info))
    }

    pub(super) async fn folder_messages(&self, folder_id: i64) -> Result<Arc<Vec<MessageRow>>, RecordError> {
        let rows: Vec<(i64, String, i64, i64, String)> = sqlx::query_as(
            "SELECT uid, blob, size, received_at, flags FROM messages WHERE folder_id = $1 ORDER BY uid",
        )
        .bind(folder_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Arc::new(
            rows.into_iter()
                .map(|(uid, blob, size, received_at, flags)| MessageRow {
                    uid,
                    blob: blob.into(),
                    size,
                    received_at,
                    flags,
                })
                .collect(),
        ))
    }

    pub(super) async fn blob(&self, hash: &str) -> Result<Vec<u8>, RecordError> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT bytes FROM blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        bytes.ok_or_else(|| RecordError::Unavailable(format!("no stored bytes {hash}")))
    }

    /// Many messages' bytes in one query, in order; `None` where missing.
    pub(super) async fn blobs(&self, hashes: Vec<String>) -> Vec<Option<Vec<u8>>> {
        let found: HashMap<String, Vec<u8>> =
            match sqlx::query_as("SELECT hash, bytes FROM blobs WHERE hash = ANY($1)")
                .bind(&hashes)
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(e) => {
                    tracing::error!(error = %e, "reading blobs");
                    HashMap::new()
                }
            };
        hashes.iter().map(|h| found.get(h).cloned()).collect()
    }

    /// Files copies in one transaction: each content's bytes once, each
    /// folder's UIDs handed out under its row's lock.
    pub(super) async fn file(&self, copies: Vec<NewCopy>) -> Vec<Result<Placed, RecordError>> {
        let mut ready = Vec::with_capacity(copies.len());
        let mut placed: Vec<Option<Result<Placed, RecordError>>> = Vec::with_capacity(copies.len());
        for copy in copies {
            match self.folder_id(&copy.account, &copy.folder).await {
                Ok(id) => {
                    ready.push((placed.len(), id, copy));
                    placed.push(None);
                }
                Err(e) => placed.push(Some(Err(e))),
            }
        }
        match self.file_ready(&ready).await {
            Ok(done) => {
                for ((i, ..), p) in ready.iter().zip(done) {
                    placed[*i] = Some(Ok(p));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, messages = ready.len(), "quarantine store batch failed");
                for (i, ..) in &ready {
                    placed[*i] = Some(Err(RecordError::Unavailable(e.to_string())));
                }
            }
        }
        placed
            .into_iter()
            .map(|p| p.unwrap_or_else(|| Err(RecordError::Unavailable("not filed".into()))))
            .collect()
    }

    async fn file_ready(&self, ready: &[(usize, i64, NewCopy)]) -> Result<Vec<Placed>, RecordError> {
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // Each folder's row locked (and its modseq moved) in id order, so
        // two nodes filing into the same folders never wait on each other
        // in a circle.
        let mut next: BTreeMap<i64, (i64, i64)> = ready.iter().map(|(_, f, _)| (*f, (0, 0))).collect();
        for (folder, slot) in next.iter_mut() {
            *slot = sqlx::query_as(
                "UPDATE folders SET modseq = modseq + 1 WHERE id = $1 RETURNING uidnext, uidvalidity",
            )
            .bind(folder)
            .fetch_one(&mut *tx)
            .await?;
        }
        // Each distinct content's row upserted (not DO NOTHING: the upsert
        // locks it, so a sweep cannot drop these bytes before the copies
        // refer to them), in hash order, so filings that share contents
        // never wait on each other in a circle.
        let hashes: Vec<String> = ready.iter().map(|(_, _, c)| content_hash(&c.bytes)).collect();
        let mut contents: Vec<(&String, &Vec<u8>)> =
            hashes.iter().zip(ready.iter().map(|(_, _, c)| &c.bytes)).collect();
        contents.sort_unstable_by_key(|(h, _)| *h);
        contents.dedup_by_key(|(h, _)| *h);
        for (hash, bytes) in contents {
            sqlx::query("INSERT INTO blobs (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO UPDATE SET bytes = blobs.bytes")
                .bind(hash)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
        }
        let mut placed = Vec::with_capacity(ready.len());
        for ((_, folder, copy), hash) in ready.iter().zip(&hashes) {
            let Some((uidnext, uidvalidity)) = next.get_mut(folder) else { continue };
            let uid = *uidnext;
            *uidnext += 1;
            insert_message(&mut tx, *folder, uid, hash, copy.bytes.len() as i64, &copy.meta).await?;
            placed.push(Placed { folder_id: *folder, uidvalidity: *uidvalidity, uid });
        }
        for (folder, (uidnext, _)) in &next {
            sqlx::query("UPDATE folders SET uidnext = $1 WHERE id = $2")
                .bind(uidnext)
                .bind(folder)
                .execute(&mut *tx)
                .await?;
        }
        announce(&mut tx).await?;
        tx.commit().await?;
        Ok(placed)
    }
}

/// The folder's id, created if missing. UIDVALIDITY: creation time in
/// seconds, and always above any earlier value of the account, so a
/// re-created folder never repeats one.
async fn create_folder(tx: &mut PgConnection, account_id: i64, folder: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO folders (account_id, name, uidvalidity)
         SELECT $1, $2, GREATEST(extract(epoch FROM now())::bigint,
                                 COALESCE((SELECT MAX(uidvalidity) + 1 FROM folders WHERE account_id = $1), 1))
         ON CONFLICT (account_id, name) DO NOTHING",
    )
    .bind(account_id)
    .bind(folder)
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar("SELECT id FROM folders WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(folder)
        .fetch_one(&mut *tx)
        .await
}

async fn insert_message(
    tx: &mut PgConnection,
    folder: i64,
    uid: i64,
    blob: &str,
    size: i64,
    meta: &MessageMeta,
) -> Result<(), RecordError> {
    let rcpts = serde_json::to_string(&meta.rcpts).map_err(|e| RecordError::Unavailable(e.to_string()))?;
    sqlx::query(
        "INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason,
                               original_message_id, mail_from, rcpts, queue_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(folder)
    .bind(uid)
    .bind(blob)
    .bind(size)
    .bind(meta.received_at)
    .bind(meta.flags.join(" "))
    .bind(meta.verdict.as_deref())
    .bind(meta.reason.as_deref())
    .bind(meta.original_message_id.as_deref())
    .bind(meta.mail_from.as_deref())
    .bind(rcpts)
    .bind(meta.queue_id.as_deref())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes, in the caller's transaction, the blobs among `blobs` that no
/// message refers to; those a copy being filed holds are left for the
/// next sweep. How many went.
async fn drop_unused_blobs(tx: &mut PgConnection, blobs: &[String]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM blobs WHERE hash IN (
            SELECT b.hash FROM blobs b WHERE b.hash = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.hash)
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(blobs)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

impl Postgres {
    pub(super) async fn flags(&self, folder_id: i64, flags: &[(i64, String)]) -> Result<(), RecordError> {
        let (uids, values): (Vec<i64>, Vec<String>) = flags.iter().cloned().unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE messages m SET flags = v.flags FROM unnest($2::bigint[], $3::text[]) AS v (uid, flags)
             WHERE m.folder_id = $1 AND m.uid = v.uid",
        )
        .bind(folder_id)
        .bind(&uids)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = $1")
            .bind(folder_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies messages to another folder (the bytes shared): the
    /// destination's UIDVALIDITY and (source UID, new UID) pairs.
    pub(super) async fn copy_messages(
        &self,
        from: i64,
        uids: &[i64],
        to: i64,
    ) -> Result<(i64, Vec<(i64, i64)>), RecordError> {
        let mut tx = self.pool.begin().await?;
        let (mut uidnext, uidvalidity): (i64, i64) = sqlx::query_as(
            "UPDATE folders SET modseq = modseq + 1 WHERE id = $1 RETURNING uidnext, uidvalidity",
        )
        .bind(to)
        .fetch_one(&mut *tx)
        .await?;
        let present: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM messages WHERE folder_id = $1 AND uid = ANY($2) ORDER BY uid",
        )
        .bind(from)
        .bind(uids)
        .fetch_all(&mut *tx)
        .await?;
        let mut pairs = Vec::with_capacity(present.len());
        for uid in uids.iter().filter(|u| present.contains(u)) {
            sqlx::query(
                "INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason,
                                       original_message_id, mail_from, rcpts, queue_id)
                 SELECT $1, $2, blob, size, received_at, flags, verdict, reason, original_message_id, mail_from,
                        rcpts, queue_id FROM messages WHERE folder_id = $3 AND uid = $4",
            )
            .bind(to)
            .bind(uidnext)
            .bind(from)
            .bind(uid)
            .execute(&mut *tx)
            .await?;
            pairs.push((*uid, uidnext));
            uidnext += 1;
        }
        sqlx::query("UPDATE folders SET uidnext = $1 WHERE id = $2")
            .bind(uidnext)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        announce(&mut tx).await?;
        tx.commit().await?;
        Ok((uidvalidity, pairs))
    }

    /// Removes messages for good (IMAP EXPUNGE), and the bytes no other
    /// message shares.
    pub(super) async fn expunge_messages(&self, folder_id: i64, uids: &[i64]) -> Result<u64, RecordError> {
        let mut tx = self.pool.begin().await?;
        let blobs: Vec<String> =
            sqlx::query_scalar("DELETE FROM messages WHERE folder_id = $1 AND uid = ANY($2) RETURNING blob")
                .bind(folder_id)
                .bind(uids)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = $1")
            .bind(folder_id)
            .execute(&mut *tx)
            .await?;
        drop_unused_blobs(&mut tx, &blobs).await?;
        announce(&mut tx).await?;
        tx.commit().await?;
        Ok(blobs.len() as u64)
    }

    pub(super) async fn filed(
        &self,
        account: &str,
        queue_id: &str,
    ) -> Result<Option<(String, i64)>, RecordError> {
        Ok(sqlx::query_as(
            "SELECT f.name, m.uid FROM messages m JOIN folders f ON f.id = m.folder_id
             JOIN accounts a ON a.id = f.account_id WHERE m.queue_id = $1 AND a.name = $2 LIMIT 1",
        )
        .bind(queue_id)
        .bind(account)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn release(&self, folder_id: i64, uid: i64) -> Result<Option<ReleaseInfo>, RecordError> {
        let row: Option<(Option<String>, String, String, Option<String>)> = sqlx::query_as(
            "SELECT mail_from, rcpts, blob, queue_id FROM messages WHERE folder_id = $1 AND uid = $2",
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

    /// Each folder's (id, account, name, cutoff), as SQLite's `cutoffs`.
    async fn cutoffs(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Vec<(i64, String, String, i64)>, RecordError> {
        let folders: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT f.id, a.name, f.name, $1 - 86400 * COALESCE(f.retention_days,
                        CASE WHEN f.name = 'Archive' THEN GREATEST(a.retention_days, $2) ELSE a.retention_days END)
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

    /// What `sweep_expired` would delete: (account, folder, messages).
    pub(super) async fn expired(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Vec<(String, String, u64)>, RecordError> {
        let mut out = Vec::new();
        for (id, account, folder, cutoff) in self.cutoffs(as_of, retention).await? {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE folder_id = $1 AND received_at < $2")
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

    /// Deletes what is past its folder's retention at `as_of` (Unix
    /// seconds), and the bytes no message refers to any more, in small
    /// transactions. Nodes sweeping at once share the work: each takes
    /// rows the others have not locked (`SKIP LOCKED`).
    /// Deletes a folder's copies received before `cutoff`, and the bytes
    /// no message refers to any more, 2,000 at a time; rows another node
    /// is sweeping are left to it (`SKIP LOCKED`).
    async fn expire_folder(&self, folder_id: i64, cutoff: i64, swept: &mut Swept) -> Result<(), RecordError> {
        loop {
            let mut tx = self.pool.begin().await?;
            let gone: Vec<String> = sqlx::query_scalar(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE folder_id = $1 AND received_at < $2
                                                    LIMIT 2000 FOR UPDATE SKIP LOCKED)
                 RETURNING blob",
            )
            .bind(folder_id)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            if gone.is_empty() {
                return Ok(());
            }
            sqlx::query("UPDATE folders SET modseq = modseq + 1 WHERE id = $1")
                .bind(folder_id)
                .execute(&mut *tx)
                .await?;
            swept.messages += gone.len() as u64;
            swept.blobs += drop_unused_blobs(&mut tx, &gone).await?;
            announce(&mut tx).await?;
            tx.commit().await?;
        }
    }

    /// Removes an account: its copies (and bytes no one else refers to),
    /// its folders and its domains. `None` when there is no such account.
    pub(super) async fn remove_account(&self, name: &str) -> Result<Option<Swept>, RecordError> {
        let folders: Vec<i64> = sqlx::query_scalar(
            "SELECT f.id FROM folders f JOIN accounts a ON a.id = f.account_id WHERE a.name = $1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut swept = Swept::default();
        for folder_id in folders {
            self.expire_folder(folder_id, i64::MAX, &mut swept).await?;
        }
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM accounts WHERE name = $1").bind(name).execute(&mut *tx).await?;
        announce(&mut tx).await?;
        tx.commit().await?;
        self.folder_ids.write().unwrap_or_else(|e| e.into_inner()).retain(|(a, _), _| a != name);
        Ok((done.rows_affected() > 0).then_some(swept))
    }

    pub(super) async fn sweep_expired(
        &self,
        as_of: i64,
        retention: &crate::quarantine::Retention,
    ) -> Result<Swept, RecordError> {
        let mut swept = Swept::default();
        for (folder_id, _, _, cutoff) in self.cutoffs(as_of, retention).await? {
            self.expire_folder(folder_id, cutoff, &mut swept).await?;
        }
        Ok(swept)
    }
}
