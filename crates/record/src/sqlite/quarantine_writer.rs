//! The store's writer: concurrent `store` calls are gathered into batches,
//! and each batch's bytes and rows are written in one transaction that is
//! flushed once (group commit).
//!
//! The bytes go into the `blobs` table, not into a file per message: on
//! ext4, creating one inode per 4 KiB copy (and a `syncfs` per batch to make
//! the files and their directory entries durable) cost more CPU than all the
//! rest of the tee. In the database a blob is a row in the same transaction
//! as the message that refers to it, so there is no window where a row
//! points at bytes that are not there yet, and one WAL flush covers both.
//! (SQLite measures small blobs as faster in the database than as files:
//! <https://www.sqlite.org/fasterthanfs.html>.) Appending to preallocated
//! segment files like the spool's would also avoid the inodes, but needs a
//! second flush beside the database's, its own crash recovery and a
//! compactor to give space back; the database already has all three.
//!
//! The writer runs on a thread of its own in the idle scheduling class, with
//! its own connection (whose SQLite thread, started from there, inherits
//! that priority): storing copies is background work, and on a busy
//! machine it takes what the relay leaves. When copies are written (and
//! how they give way to the front line) is the routing stage's to decide
//! (`route::copies`); the writer only writes what it is handed, together.

use sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use super::quarantine::Quarantine;
use super::spawn_idle;
use crate::RecordError;
use crate::quarantine::{MessageMeta, NewCopy, Placed, content_hash};

/// Copies handed to the writer together (written in the same
/// transaction), each with where its answer goes.
pub(crate) struct StoreReq(Vec<(NewCopy, oneshot::Sender<Result<Placed, String>>)>);

/// A request whose folder and metadata are known.
struct Filed {
    bytes: Vec<u8>,
    meta: MessageMeta,
    reply: oneshot::Sender<Result<Placed, String>>,
}

/// Stores gathered into one batch at most.
pub(crate) const STORE_BATCH: usize = 256;

/// Rows per multi-row INSERT: a statement is one round trip to SQLite's
/// worker thread, however many rows it carries (12 columns × 64 rows stays
/// far below SQLite's limit on bound parameters).
const ROWS_PER_INSERT: usize = 64;

fn gone() -> RecordError {
    RecordError::Unavailable("the store writer stopped".into())
}

impl Quarantine {
    /// Stores a copy of a message in `account`/`folder`, giving it the next
    /// UID. Calls made at the same time are written together, in one
    /// transaction with one flush (group commit). Returns only once the copy
    /// is durable.
    pub async fn store(
        &self,
        account: &str,
        folder: &str,
        bytes: &[u8],
        meta: &MessageMeta,
    ) -> Result<Placed, RecordError> {
        let copy = NewCopy {
            account: account.to_string(),
            folder: folder.to_string(),
            bytes: bytes.to_vec(),
            meta: meta.clone(),
        };
        let mut answer = self.send_to_writer(vec![copy]).await?;
        answer.pop().ok_or_else(gone)?.await.map_err(|_| gone())?.map_err(RecordError::Unavailable)
    }

    /// Stores many copies, handed to the writer together so that they are
    /// written in one transaction; each has its own answer.
    pub async fn store_many(&self, copies: Vec<NewCopy>) -> Vec<Result<Placed, RecordError>> {
        let n = copies.len();
        let answers = match self.send_to_writer(copies).await {
            Ok(answers) => answers,
            Err(e) => return (0..n).map(|_| Err(RecordError::Unavailable(e.to_string()))).collect(),
        };
        let mut placed = Vec::with_capacity(n);
        for answer in answers {
            placed.push(answer.await.map_err(|_| gone()).and_then(|r| r.map_err(RecordError::Unavailable)));
        }
        placed
    }

    async fn send_to_writer(
        &self,
        copies: Vec<NewCopy>,
    ) -> Result<Vec<oneshot::Receiver<Result<Placed, String>>>, RecordError> {
        if let Some(rx) = self.writer_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.start_writer(rx)?;
        }
        let (req, answers): (Vec<_>, Vec<_>) = copies
            .into_iter()
            .map(|copy| {
                let (reply, answer) = oneshot::channel();
                ((copy, reply), answer)
            })
            .unzip();
        self.writer.send(StoreReq(req)).await.map_err(|_| gone())?;
        Ok(answers)
    }

    /// Starts the writer's thread: the idle scheduling class, a runtime of
    /// its own, a connection of its own that flushes every commit (a stored
    /// copy must survive a power cut: the spool forgets it once we answer).
    fn start_writer(&self, rx: mpsc::Receiver<StoreReq>) -> Result<(), RecordError> {
        let this = self.clone();
        let opts = this.writer_opts.clone().synchronous(SqliteSynchronous::Full);
        // Every store fails (its reply is dropped) if the thread cannot
        // open the database, and is retried by the spool.
        spawn_idle("store-writer", opts, move |pool| this.write_loop(pool, rx))
            .map_err(|e| RecordError::Unavailable(format!("cannot start the store writer: {e}")))
    }

    async fn write_loop(self, pool: SqlitePool, mut rx: mpsc::Receiver<StoreReq>) {
        while let Some(StoreReq(mut batch)) = rx.recv().await {
            while batch.len() < STORE_BATCH {
                match rx.try_recv() {
                    Ok(StoreReq(more)) => batch.extend(more),
                    Err(_) => break,
                }
            }
            // A copy whose folder cannot be had fails alone.
            let mut ready = Vec::with_capacity(batch.len());
            for (copy, reply) in batch {
                let NewCopy { account, folder, bytes, meta } = copy;
                match self.folder_id(&account, &folder).await {
                    Ok(id) => ready.push((id, Filed { bytes, meta, reply })),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            if ready.is_empty() {
                continue;
            }
            match self.write_batch(&pool, &ready).await {
                Ok(placed) => {
                    for ((_, req), p) in ready.into_iter().zip(placed) {
                        let _ = req.reply.send(Ok(p));
                    }
                }
                Err(e) if e.is_storage_full() => {
                    crate::warn_disk_full("copies for the store", &e);
                    for (_, req) in ready {
                        let _ = req.reply.send(Err(e.to_string()));
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

    /// Writes a batch in one transaction on the writer's connection, which
    /// flushes its commit: bytes and rows together, one fsync. A connection
    /// whose batch failed (a full disk) is closed, never reused: SQLite may
    /// leave its transaction open, and every later batch would then only
    /// nest a savepoint in it and never be committed.
    async fn write_batch(
        &self,
        pool: &SqlitePool,
        batch: &[(i64, Filed)],
    ) -> Result<Vec<Placed>, RecordError> {
        let mut conn = pool.acquire().await?;
        let written = self.write_batch_on(&mut conn, batch).await;
        if written.is_err() {
            conn.close_on_drop();
        }
        written
    }

    async fn write_batch_on(
        &self,
        conn: &mut sqlx::SqliteConnection,
        batch: &[(i64, Filed)],
    ) -> Result<Vec<Placed>, RecordError> {
        let hashes: Vec<String> = batch.iter().map(|(_, r)| content_hash(&r.bytes)).collect();
        let mut tx = sqlx::Connection::begin(conn).await?;
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

        // Each distinct content once; what is already stored is left as it
        // is (same hash, same bytes).
        let mut seen = std::collections::HashSet::with_capacity(hashes.len());
        let fresh: Vec<(&String, &Vec<u8>)> = hashes
            .iter()
            .zip(batch)
            .map(|(h, (_, r))| (h, &r.bytes))
            .filter(|(h, _)| seen.insert(h.as_str()))
            .collect();
        for chunk in fresh.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO blobs (hash, bytes) VALUES {} ON CONFLICT(hash) DO NOTHING",
                vec!["(?, ?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for (h, bytes) in chunk {
                q = q.bind(h.as_str()).bind(bytes.as_slice());
            }
            q.execute(&mut *tx).await?;
        }

        let mut placed = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for ((folder_id, req), blob) in batch.iter().zip(&hashes) {
            let Some((uidnext, uidvalidity)) = next.get_mut(folder_id) else { continue };
            let uid = *uidnext;
            *uidnext += 1;
            let rcpts = serde_json::to_string(&req.meta.rcpts)
                .map_err(|e| RecordError::Unavailable(e.to_string()))?;
            rows.push((*folder_id, uid, blob, req.bytes.len() as i64, &req.meta, rcpts));
            placed.push(Placed { folder_id: *folder_id, uidvalidity: *uidvalidity, uid });
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO messages (folder_id, uid, blob, size, received_at, flags, verdict, reason,
                                       original_message_id, mail_from, rcpts, queue_id)
                 VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for (folder_id, uid, blob, size, meta, rcpts) in chunk {
                q = q
                    .bind(*folder_id)
                    .bind(*uid)
                    .bind(blob.as_str())
                    .bind(*size)
                    .bind(meta.received_at)
                    .bind(meta.flags.join(" "))
                    .bind(meta.verdict.as_deref())
                    .bind(meta.reason.as_deref())
                    .bind(meta.original_message_id.as_deref())
                    .bind(meta.mail_from.as_deref())
                    .bind(rcpts.as_str())
                    .bind(meta.queue_id.as_deref());
            }
            q.execute(&mut *tx).await?;
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
}

#[cfg(test)]
mod tests {
    use super::super::quarantine::Quarantine;
    use crate::quarantine::content_hash;
    use crate::quarantine::{MessageMeta, Placed, Swept};
    use crate::sqlite::Sqlite;
    use crate::sqlite::quarantine::tests::blob_rows;

    fn meta(day: i64) -> MessageMeta {
        MessageMeta { received_at: day * 86_400, ..Default::default() }
    }

    /// A fresh store with one account, `acme`.
    async fn acme() -> (tempfile::TempDir, Sqlite, Quarantine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open_for_test(dir.path()).await;
        let q = store.quarantine.clone();
        q.add_account("acme", "pw", &[]).await.unwrap();
        (dir, store, q)
    }

    #[tokio::test]
    async fn bytes_come_back_exactly_and_are_stored_once() {
        let (dir, store, q) = acme().await;
        // Bare LF, lone CR, NUL, 0xFF, a line that is just a dot, no final
        // CRLF; nothing empty, and big enough to need overflow pages.
        let odd = b"Subject: x\r\n\r\nline\nbare\rcr\0nul\xff\r\n.\r\nend".to_vec();
        let mut big = Vec::with_capacity(3 << 20);
        let mut x: u32 = 1;
        while big.len() < 3 << 20 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            big.extend_from_slice(&x.to_le_bytes());
        }
        let empty: Vec<u8> = Vec::new();
        // Concurrent stores land in one batch; the repeated content too.
        let m = meta(1);
        let (a, b, c, d, e) = tokio::join!(
            q.store("acme", "Human", &odd, &m),
            q.store("acme", "Human", &big, &m),
            q.store("acme", "Spam", &odd, &m),
            q.store("acme", "Human", &empty, &m),
            q.store("acme", "Archive", &big, &m),
        );
        let (a, b, c, d, e) = (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap(), e.unwrap());
        assert_eq!((a.uid, b.uid, d.uid), (1, 2, 3));
        assert_eq!(blob_rows(&store.quarantine).await, 3, "one row per distinct content");
        // Stored again later: still one row.
        q.store("acme", "Delays", &odd, &m).await.unwrap();
        assert_eq!(blob_rows(&store.quarantine).await, 3);

        let hash = |p: &Placed| {
            let q = q.clone();
            let (f, u) = (p.folder_id, p.uid);
            async move { q.blob_of(f, u).await.unwrap().unwrap() }
        };
        let (ha, hb, hc, hd, he) =
            (hash(&a).await, hash(&b).await, hash(&c).await, hash(&d).await, hash(&e).await);
        assert_eq!(ha, hc);
        assert_eq!(hb, he);
        assert_eq!(q.read_blob(&ha).await.unwrap(), odd);
        assert_eq!(q.read_blob(&hb).await.unwrap(), big);
        assert_eq!(q.read_blob(&hd).await.unwrap(), empty);
        let sizes = q.messages(a.folder_id).await.unwrap();
        assert_eq!(
            sizes.iter().map(|r| r.size).collect::<Vec<_>>(),
            vec![odd.len() as i64, big.len() as i64, 0]
        );
        // Many at once, in order, repeats and unknowns included.
        let unknown = "ab".repeat(32);
        let got =
            q.read_blobs(vec![hb.clone(), ha.clone(), unknown.clone(), ha.clone(), "../x".into()]).await;
        assert_eq!(got, vec![Some(big.clone()), Some(odd.clone()), None, Some(odd.clone()), None]);
        assert!(q.read_blob(&unknown).await.is_err());
        assert!(q.read_blob("../../etc/passwd").await.is_err());

        // Still there after a reopen (the bytes are in the database file).
        store.pool.close().await;
        let store = Sqlite::open_for_test(dir.path()).await;
        assert_eq!(store.quarantine.read_blob(&hb).await.unwrap(), big);
        // No file per message any more.
        assert!(!dir.path().join("store/blobs").exists());
    }

    #[tokio::test]
    async fn expunge_and_sweep_reclaim_bytes_no_message_uses() {
        let (_dir, store, q) = acme().await;
        let a = q.store("acme", "Human", b"shared", &meta(1)).await.unwrap();
        let (_, pairs) =
            q.copy(a.folder_id, &[a.uid], q.folder_id("acme", "Spam").await.unwrap()).await.unwrap();
        assert_eq!(pairs.len(), 1);
        q.store("acme", "Human", b"alone", &meta(1)).await.unwrap();
        assert_eq!(blob_rows(&store.quarantine).await, 2);
        // The copy still uses "shared": expunging the original keeps it.
        q.expunge(a.folder_id, &[a.uid]).await.unwrap();
        assert_eq!(blob_rows(&store.quarantine).await, 2);
        let spam = q.folder_id("acme", "Spam").await.unwrap();
        let h = q.blob_of(spam, pairs[0].1).await.unwrap().unwrap();
        assert_eq!(q.read_blob(&h).await.unwrap(), b"shared");
        q.expunge(spam, &[pairs[0].1]).await.unwrap();
        assert_eq!(blob_rows(&store.quarantine).await, 1);
        assert!(q.read_blob(&h).await.is_err());
        // Past retention the last message and its bytes go.
        assert_eq!(
            q.sweep(100 * 86_400, &Default::default()).await.unwrap(),
            Swept { messages: 1, blobs: 1 }
        );
        assert_eq!(blob_rows(&store.quarantine).await, 0);
        // The same bytes stored after they were swept are written anew.
        let b = q.store("acme", "Human", b"alone", &meta(200)).await.unwrap();
        let h = q.blob_of(b.folder_id, b.uid).await.unwrap().unwrap();
        assert_eq!(q.read_blob(&h).await.unwrap(), b"alone");
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_no_bytes_and_no_uids() {
        let (_dir, store, q) = acme().await;
        // Make the batch fail after its bytes were inserted (the messages
        // insert comes after the blobs insert).
        sqlx::query(
            "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.size = 4
             BEGIN SELECT RAISE(ABORT, 'boom'); END",
        )
        .execute(&q.pool)
        .await
        .unwrap();
        let m = meta(1);
        let (a, b) =
            tokio::join!(q.store("acme", "Human", b"fine", &m), q.store("acme", "Human", b"fails", &m));
        // Both were in the batch: both fail, and nothing of either stays.
        assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
        assert_eq!(blob_rows(&store.quarantine).await, 0);
        let human = q.folder("acme", "Human").await.unwrap().unwrap();
        assert_eq!(human.uidnext, 1);
        sqlx::query("DROP TRIGGER boom").execute(&q.pool).await.unwrap();
        let p = q.store("acme", "Human", b"fine", &m).await.unwrap();
        assert_eq!(p.uid, 1);
        assert_eq!(blob_rows(&store.quarantine).await, 1);
        // Every connection is back to the pool's flush setting (NORMAL = 1).
        for _ in 0..4 {
            let s: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&q.pool).await.unwrap();
            assert_eq!(s, 1);
        }
    }

    #[tokio::test]
    async fn blob_files_of_earlier_versions_are_read_and_swept() {
        let (dir, store, q) = acme().await;
        // What a version before 0005 left: a file named by the hash, and a
        // row pointing at it.
        let old = b"stored by an earlier version\r\n".to_vec();
        let h = content_hash(&old);
        let path = dir.path().join("store/blobs").join(&h[..2]).join(&h);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &old).unwrap();
        let folder = q.folder_id("acme", "Human").await.unwrap();
        sqlx::query(
            "INSERT INTO messages (folder_id, uid, blob, size, received_at) VALUES (?, 1, ?, ?, 86400)",
        )
        .bind(folder)
        .bind(&h)
        .bind(old.len() as i64)
        .execute(&q.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE folders SET uidnext = 2 WHERE id = ?")
            .bind(folder)
            .execute(&q.pool)
            .await
            .unwrap();
        let new = q.store("acme", "Human", b"new", &meta(1)).await.unwrap();
        assert_eq!(new.uid, 2);
        let hn = q.blob_of(folder, 2).await.unwrap().unwrap();
        assert_eq!(q.read_blob(&h).await.unwrap(), old);
        assert_eq!(q.read_blobs(vec![hn, h.clone()]).await, vec![Some(b"new".to_vec()), Some(old.clone())]);
        // Both expire: the row's bytes and the old file go.
        assert_eq!(
            q.sweep(100 * 86_400, &Default::default()).await.unwrap(),
            Swept { messages: 2, blobs: 2 }
        );
        assert!(!path.exists());
        assert_eq!(blob_rows(&store.quarantine).await, 0);
    }
}
