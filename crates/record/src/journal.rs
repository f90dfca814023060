//! A durable journal in front of the event log, for events that come in
//! floods and must each be on disk before their answer (an open, a click):
//! appending a line to a file and one `fdatasync` for everything that
//! arrived meanwhile costs far less than a database transaction each, and
//! the events reach the record behind it, many to a transaction.
//!
//! `append` returns once the event's line is synced. A loader task reads
//! what was synced, hands it to the record's front-line writer
//! ([`EventLog::note`]), waits for it to be committed ([`EventLog::flush`])
//! and then forgets those lines: a file is deleted once it is read to its
//! end and a newer one is being written. At start, what a crash left in the
//! journal is loaded first; each event carries a unique `source`, so one
//! the record already has is not written twice.
//!
//! The same pattern as the spool and the front line's record: what the
//! answer promised is on disk, the record catches up. Like the store's
//! copies, the loader gives way to a flood (up to [`LAG_MAX`]): a burst of
//! clicks is answered at full speed and recorded after it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::events::{EventKind, EventLog, NewEvent};

/// A journal file's size: made zero-filled in advance, so a sync flushes
/// data only (no block allocation, no size change: half the cost of
/// syncing an append, as the spool's segments do); a new one is started
/// when it is full.
const FILE_MAX: u64 = 1 << 20;
/// How often the loader looks for synced lines.
const LOAD_EVERY: Duration = Duration::from_millis(100);
/// Lines in one batch, at most.
const BATCH_MAX: usize = 4096;
/// Appends between two looks of a loader above which it gives way (a
/// thousand events a second).
const BUSY_PER_TICK: u64 = 100;
/// How long a loader gives way at most: how far behind the journal the
/// record may fall in a flood.
const LAG_MAX: Duration = Duration::from_secs(10);
/// Events handed to the record at once, at most.
const LOAD_BATCH: usize = 20_000;

/// One journaled event: what an open or a click records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub tenant: i64,
    pub message: String,
    pub idx: Option<i64>,
    pub address: Option<String>,
    pub kind: EventKind,
    pub at: i64,
    pub reason: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// Unique: the record writes an entry once however often it is loaded.
    pub source: String,
}

impl Entry {
    /// The event it records.
    pub fn into_event(self) -> NewEvent {
        NewEvent {
            tenant: Some(self.tenant),
            message: self.message,
            idx: self.idx,
            address: self.address,
            kind: self.kind,
            at: self.at,
            reason: self.reason,
            smtp: None,
            detail: self.detail,
            suppress: None,
            source: Some(self.source),
            group: Vec::new(),
        }
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;
type Line = (Vec<u8>, Waiter);

/// Lines waiting for the writer. An append wakes the writer only when it
/// is idle and the queue was empty: under a flood the writer finds the
/// lines when it comes back from a sync (a wake-up is a system call each,
/// on both sides).
struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

struct Pending {
    lines: Vec<Line>,
    /// Whether the writer waits for a line.
    idle: bool,
    /// False once every handle is gone: the writer stops when it is empty.
    open: bool,
}

impl Queue {
    fn push(&self, line: Line) -> Result<(), String> {
        let Ok(mut p) = self.pending.lock() else { return Err("the event journal stopped".into()) };
        p.lines.push(line);
        let wake = p.idle && p.lines.len() == 1;
        drop(p);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next batch: everything waiting (what arrived during the last
    /// sync), up to [`BATCH_MAX`]; `None` once closed and drained.
    fn batch(&self) -> Option<Vec<Line>> {
        let mut p = self.pending.lock().ok()?;
        while p.lines.is_empty() {
            if !p.open {
                return None;
            }
            p.idle = true;
            p = self.ready.wait(p).ok()?;
            p.idle = false;
        }
        let n = p.lines.len().min(BATCH_MAX);
        Some(p.lines.drain(..n).collect())
    }
}

/// Closes the queue when the last handle goes.
struct Closer(Arc<Queue>);

impl Drop for Closer {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.pending.lock() {
            p.open = false;
        }
        self.0.ready.notify_all();
    }
}

/// The journal's handle (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    queue: Arc<Closer>,
    /// Events appended so far: how busy the journal is, which the loader
    /// reads to give way.
    appended: Arc<AtomicU64>,
}

impl Journal {
    /// Opens the journal in `dir` (made if missing), loads into `log` what
    /// an earlier run left there, and starts its writer thread and loader
    /// task.
    pub async fn open(dir: &Path, log: Arc<dyn EventLog>) -> io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        // What earlier layouts left: files in `dir` itself (one writer),
        // then one directory per writer (`w0` to `w3`).
        load_leftovers(dir, log.as_ref()).await?;
        for w in 1..=3 {
            let old = dir.join(format!("w{w}"));
            if old.is_dir() {
                load_leftovers(&old, log.as_ref()).await?;
                std::fs::remove_dir(&old)?;
            }
        }
        let dir = dir.join("w0");
        std::fs::create_dir_all(&dir)?;
        let next = load_leftovers(&dir, log.as_ref()).await?;
        let first = open_file(&dir, next)?;
        let pending = Pending { lines: Vec::new(), idle: false, open: true };
        let queue = Arc::new(Queue { pending: Mutex::new(pending), ready: Condvar::new() });
        let appended = Arc::new(AtomicU64::new(0));
        std::thread::Builder::new().name("event-journal".into()).spawn({
            let (dir, queue) = (dir.clone(), queue.clone());
            move || write_loop(&dir, next, first, &queue)
        })?;
        tokio::spawn(load_loop(dir, next, log, appended.clone()));
        Ok(Journal { queue: Arc::new(Closer(queue)), appended })
    }

    /// Appends `entry`; returns once it is on disk.
    pub async fn append(&self, entry: &Entry) -> Result<(), String> {
        let mut line = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let (done, wait) = oneshot::channel();
        self.appended.fetch_add(1, Ordering::Relaxed);
        self.queue.0.push((line, done))?;
        wait.await.map_err(|_| "the event journal stopped".to_string())?
    }
}

fn name(n: u64) -> String {
    format!("events-{n:010}.journal")
}

/// Makes journal file `n`, zero-filled and synced, under its final name
/// only once complete.
fn open_file(dir: &Path, n: u64) -> io::Result<File> {
    let tmp = dir.join(format!("{}.tmp", name(n)));
    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_MAX / zeros.len() as u64 {
        f.write_all(&zeros)?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name(n)))?;
    // The new file's name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// The journal's files, oldest first.
fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("events-")?.strip_suffix(".journal")?.parse().ok());
        if let Some(n) = n {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and removes the files a stop left in `dir`; the number the next
/// file there takes.
async fn load_leftovers(dir: &Path, log: &dyn EventLog) -> io::Result<u64> {
    let files = files(dir)?;
    for (_, path) in &files {
        load_whole(path, log).await?;
        std::fs::remove_file(path)?;
    }
    Ok(files.last().map_or(1, |(n, _)| n + 1))
}

/// The writer: takes everything that arrived while the last sync ran
/// (group commit), writes and syncs it, then answers each waiter. One
/// writer, and no waiting for company: under load a batch is what came
/// during one sync, so batches grow with the load by themselves. (Four
/// writers overlapping their syncs, each waiting a fraction of a sync for
/// company, made twice the syncs and a sleep per batch: 13.5 to 17.8 µs of
/// CPU per click against one writer's 12.0 to 15.6, `bench/clicks.py`.)
fn write_loop(dir: &Path, mut n: u64, mut file: File, queue: &Queue) {
    use std::os::unix::fs::FileExt;
    let mut size = 0u64;
    while let Some(batch) = queue.batch() {
        let mut buf = Vec::with_capacity(batch.iter().map(|(line, _)| line.len()).sum());
        for (line, _) in &batch {
            buf.extend_from_slice(line);
        }
        let written = file.write_all_at(&buf, size).and_then(|()| file.sync_data());
        let answer = written.as_ref().map(|_| ()).map_err(|e| format!("the event journal: {e}"));
        if let Err(e) = &written {
            tracing::error!(error = %e, "event journal write failed");
        }
        for (_, waiter) in batch {
            let _ = waiter.send(answer.clone());
        }
        size += buf.len() as u64;
        if size >= FILE_MAX {
            match open_file(dir, n + 1) {
                Ok(f) => (file, n, size) = (f, n + 1, 0),
                Err(e) => tracing::error!(error = %e, "event journal: a new file could not be made"),
            }
        }
    }
}

/// The loader: moves synced lines into the record, file by file.
///
/// In a flood (more than [`BUSY_PER_TICK`] appends since the last look) it
/// gives way: the record's writes would take the cores the answers need,
/// and what is in the journal is safe. It loads anyway once it has waited
/// [`LAG_MAX`], so under a flood that never ends the record is that far
/// behind, and loading takes what it needs.
async fn load_loop(dir: PathBuf, mut n: u64, log: Arc<dyn EventLog>, appended: Arc<AtomicU64>) {
    let mut offset = 0u64;
    let (mut seen, mut loaded) = (0u64, Instant::now());
    loop {
        tokio::time::sleep(LOAD_EVERY).await;
        let now = appended.load(Ordering::Relaxed);
        let busy = now - seen > BUSY_PER_TICK;
        seen = now;
        if busy && loaded.elapsed() < LAG_MAX {
            continue;
        }
        loaded = Instant::now();
        if let Err(e) = catch_up(&dir, &mut n, &mut offset, log.as_ref()).await {
            tracing::warn!(error = %e, file = %dir.join(name(n)).display(), "event journal: loading failed, will retry");
        }
    }
}

/// Loads what is synced, file after file without a pause (after a flood
/// the files wait in a row), up to the file being written; then waits for
/// the record to commit it all, and removes the files read to their end.
async fn catch_up(dir: &Path, n: &mut u64, offset: &mut u64, log: &dyn EventLog) -> io::Result<()> {
    let (mut done, mut noted) = (Vec::new(), 0);
    let read = read_complete(dir, n, offset, log, &mut done, &mut noted).await;
    // An idle tick costs the record nothing.
    if noted > 0 || !done.is_empty() {
        log.flush().await;
    }
    for path in done {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(error = %e, "event journal: a loaded file could not be removed");
        }
    }
    read
}

/// Hands the record each synced line from file `n` at `offset` on; files
/// read to their end (a newer one exists) go into `done`.
async fn read_complete(
    dir: &Path,
    n: &mut u64,
    offset: &mut u64,
    log: &dyn EventLog,
    done: &mut Vec<PathBuf>,
    noted: &mut usize,
) -> io::Result<()> {
    loop {
        let path = dir.join(name(*n));
        *offset += read_from(&path, *offset, log, noted).await?;
        // A newer file means this one is complete: once read to its end
        // (after the newer one appeared), it goes.
        if !dir.join(name(*n + 1)).exists() {
            return Ok(());
        }
        let more = read_from(&path, *offset, log, noted).await?;
        *offset += more;
        if more == 0 {
            done.push(path);
            (*n, *offset) = (*n + 1, 0);
        }
    }
}

/// Hands the record the complete lines after `offset` (waiting for a
/// commit every [`LOAD_BATCH`] events, so a backlog is never all in
/// memory); how many bytes that was.
async fn read_from(path: &Path, offset: u64, log: &dyn EventLog, noted: &mut usize) -> io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(64 << 20).read_to_end(&mut buf)?;
    // Written lines end where the zeros the file was made of begin.
    let written = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let Some(end) = buf[..written].iter().rposition(|&b| b == b'\n').map(|i| i + 1) else { return Ok(0) };
    for line in buf[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => {
                log.note(entry.into_event());
                *noted += 1;
                if noted.is_multiple_of(LOAD_BATCH) {
                    log.flush().await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "event journal: an unreadable line skipped"),
        }
    }
    Ok(end as u64)
}

/// What a crash left in one file, loaded without writing twice what the
/// record already has.
async fn load_whole(path: &Path, log: &dyn EventLog) -> io::Result<()> {
    let text = std::fs::read(path)?;
    let written = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let entries: Vec<Entry> = text[..written]
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Entry>(l).ok())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let sources: Vec<String> = entries.iter().map(|e| e.source.clone()).collect();
    let known: std::collections::HashSet<String> = log
        .recorded_sources(&sources)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
        .into_iter()
        .collect();
    let fresh: Vec<Entry> = entries.into_iter().filter(|e| !known.contains(&e.source)).collect();
    tracing::info!(events = fresh.len(), file = %path.display(), "event journal: loading what a stop left");
    for entry in fresh {
        log.note(entry.into_event());
    }
    log.flush().await;
    Ok(())
}
