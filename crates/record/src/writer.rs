//! The store's writer: concurrent `store` calls are gathered into batches,
//! their bytes written as blob files and made durable with one flush, and
//! their rows inserted in one transaction (group commit).

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::RecordError;
use crate::quarantine::{MessageMeta, Placed, Quarantine, hex};

/// One `store` call waiting for the writer.
pub(crate) struct StoreReq {
    pub(crate) account: String,
    pub(crate) folder: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) meta: MessageMeta,
    pub(crate) reply: oneshot::Sender<Result<Placed, String>>,
}

/// Stores gathered into one batch at most.
pub(crate) const STORE_BATCH: usize = 256;

impl Quarantine {
    /// Stores a copy of a message in `account`/`folder`, giving it the next
    /// UID. Calls made at the same time are written together: one flush for
    /// their bytes and one transaction for their rows (group commit).
    pub async fn store(
        &self,
        account: &str,
        folder: &str,
        bytes: &[u8],
        meta: &MessageMeta,
    ) -> Result<Placed, RecordError> {
        if let Some(rx) = self.writer_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(self.clone().write_loop(rx));
        }
        let (reply, answer) = oneshot::channel();
        let req = StoreReq {
            account: account.to_string(),
            folder: folder.to_string(),
            bytes: bytes.to_vec(),
            meta: meta.clone(),
            reply,
        };
        let gone = || RecordError::Invalid("the store writer stopped".into());
        self.writer.send(req).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(RecordError::Invalid)
    }

    async fn write_loop(self, mut rx: mpsc::Receiver<StoreReq>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < STORE_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            // A request whose folder cannot be had fails alone.
            let mut ready = Vec::with_capacity(batch.len());
            for req in batch {
                match self.folder_id(&req.account, &req.folder).await {
                    Ok(id) => ready.push((id, req)),
                    Err(e) => {
                        let _ = req.reply.send(Err(e.to_string()));
                    }
                }
            }
            if ready.is_empty() {
                continue;
            }
            match self.write_batch(&mut ready).await {
                Ok(placed) => {
                    for ((_, req), p) in ready.into_iter().zip(placed) {
                        let _ = req.reply.send(Ok(p));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, messages = ready.len(), "quarantine store batch failed");
                    for (_, req) in ready {
                        let _ = req.reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    async fn write_batch(&self, batch: &mut [(i64, StoreReq)]) -> Result<Vec<Placed>, RecordError> {
        let contents = batch.iter_mut().map(|(_, r)| std::mem::take(&mut r.bytes)).collect::<Vec<_>>();
        let sizes: Vec<i64> = contents.iter().map(|c| c.len() as i64).collect();
        let hashes = self.put_blobs(contents).await?;
        let mut tx = self.pool.begin().await?;
        // UIDs handed out in memory from each folder's UIDNEXT, written back once.
        let mut next: std::collections::BTreeMap<i64, (i64, i64)> = std::collections::BTreeMap::new();
        for (folder_id, _) in batch.iter() {
            if !next.contains_key(folder_id) {
                // A write first, so the transaction holds the write lock from
                // here on and nobody hands out the same UIDs meanwhile.
                let row: (i64, i64) = sqlx::query_as(
                    "UPDATE folders SET modseq = modseq + 1 WHERE id = ? RETURNING uidnext, uidvalidity",
                )
                .bind(folder_id)
                .fetch_one(&mut *tx)
                .await?;
                next.insert(*folder_id, row);
            }
        }
        let mut placed = Vec::with_capacity(batch.len());
        for (((folder_id, req), blob), size) in batch.iter().zip(&hashes).zip(&sizes) {
            let Some((uidnext, uidvalidity)) = next.get_mut(folder_id) else { continue };
            let uid = *uidnext;
            *uidnext += 1;
            let meta = &req.meta;
            let rcpts =
                serde_json::to_string(&meta.rcpts).map_err(|e| RecordError::Invalid(e.to_string()))?;
            sqlx::query(
                "INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason,
                                       original_message_id, mail_from, rcpts, queue_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(folder_id)
            .bind(uid)
            .bind(blob)
            .bind(size)
            .bind(meta.received_at)
            .bind(meta.flags.join(" "))
            .bind(&meta.verdict)
            .bind(&meta.reason)
            .bind(&meta.original_message_id)
            .bind(&meta.mail_from)
            .bind(rcpts)
            .bind(&meta.queue_id)
            .execute(&mut *tx)
            .await?;
            placed.push(Placed { folder_id: *folder_id, uidvalidity: *uidvalidity, uid });
        }
        for (folder_id, (uidnext, _)) in &next {
            sqlx::query("UPDATE folders SET uidnext = ? WHERE id = ?")
                .bind(uidnext)
                .bind(folder_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.changed();
        Ok(placed)
    }

    /// Writes each content once (named by its hash), then makes them all
    /// durable with one flush. Returns the hashes in order.
    async fn put_blobs(&self, contents: Vec<Vec<u8>>) -> Result<Vec<String>, RecordError> {
        let dir = self.blobs.clone();
        let hashes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            use std::io::Write;
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let mut hashes = Vec::with_capacity(contents.len());
            for bytes in &contents {
                let hash = hex(&Sha256::digest(bytes));
                let sub = dir.join(&hash[..2]);
                let path = sub.join(&hash);
                // Already there (the same bytes stored before). A file of
                // another size is what a crash left before its flush.
                if !std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
                    std::fs::create_dir_all(&sub)?;
                    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(bytes)?;
                    std::fs::rename(&tmp, &path)?;
                }
                hashes.push(hash);
            }
            Ok(hashes)
        })
        .await
        .map_err(|e| RecordError::Invalid(e.to_string()))?
        .map_err(|e| RecordError::Invalid(format!("writing blob: {e}")))?;
        // Durable before any message row (and the caller's "stored") exists;
        // this also covers a file another writer renamed but has not flushed.
        self.sync.wait().await.map_err(RecordError::Invalid)?;
        Ok(hashes)
    }
}
