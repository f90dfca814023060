//! Group commit for blob files: writers rename their finished files into
//! place and then wait here; one thread makes everything written so far
//! durable with a single `syncfs` of the store's filesystem, and wakes every
//! writer that was waiting. Under load, one flush covers many messages
//! instead of two fsyncs each (the file and its directory entry).

use std::path::Path;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

pub struct BlobSync {
    tx: mpsc::Sender<Waiter>,
}

impl BlobSync {
    /// Starts the flushing thread for the filesystem holding `dir`.
    pub fn start(dir: &Path) -> Self {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new().name("blob-sync".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let result = sync_fs(&dir).map_err(|e| format!("syncing blobs: {e}"));
                for w in batch {
                    let _ = w.send(result.clone());
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the blob sync thread");
        }
        BlobSync { tx }
    }

    /// Returns once everything written before the call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| "blob sync thread is gone".to_string())?;
        rx.await.map_err(|_| "blob sync thread is gone".to_string())?
    }
}

fn sync_fs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes any open descriptor on the filesystem and only
    // reads it; `f` outlives the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
