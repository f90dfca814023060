//! The spool's on-disk form: an append-only log of segment files with group
//! commit.
//!
//! Every change to the queue (a new message, a recipient's new state, a message
//! finished) is one record appended to the active segment. One writer thread
//! owns the active segment; callers hand it records and wait for the
//! `fdatasync` that makes them durable. While one fsync runs, the next batch
//! gathers, so many concurrent SMTP sessions share each fsync (group commit)
//! and durability does not cap throughput.
//!
//! Record layout (little endian):
//!
//! ```text
//! u32 payload length | u32 crc32(kind ‖ payload) | u8 kind | payload
//! ```
//!
//! A torn tail (crash mid-write) fails its length or CRC check and is ignored on
//! replay: it was never acknowledged, because acknowledgement follows the fsync.
//! Segments are deleted when no live message has a record in them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

const HEADER_LEN: usize = 9;
/// The most bytes gathered into one write+fsync.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// A record larger than this is corrupt (messages are capped far below it).
const MAX_RECORD: usize = 1 << 30;

type Pins = Arc<Mutex<HashMap<SegmentId, usize>>>;

pub type SegmentId = u64;

/// Where a record's payload lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: SegmentId,
    /// Offset of the payload (after the header) in the segment file.
    pub offset: u64,
    pub len: u64,
}

/// One record read back on replay.
pub struct Replayed {
    pub kind: u8,
    pub payload: Vec<u8>,
    pub location: Location,
}

struct Request {
    kind: u8,
    parts: Vec<Vec<u8>>,
    /// Must be on disk before `done` fires; otherwise synced within LAZY_SYNC.
    durable: bool,
    /// A done record: it may use the reserve at the end of the segment, so
    /// a full disk never stops the records that let segments go and free
    /// space.
    reserve: bool,
    done: oneshot::Sender<io::Result<Location>>,
}

impl Request {
    fn bytes(&self) -> u64 {
        (HEADER_LEN + self.parts.iter().map(Vec::len).sum::<usize>()) as u64
    }
}

/// Handle to the segment log: appends go through the writer thread; reads use
/// positioned reads on shared file handles.
pub struct SegmentLog {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    files: Arc<Mutex<HashMap<SegmentId, Arc<File>>>>,
    /// Records written but not yet registered by their owner: a pinned
    /// segment is never deleted (closes the window between the fsync and the
    /// caller recording which segment holds its record).
    pins: Pins,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    fsync: bool,
}

fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("seg-{id:016}.log"))
}

fn parse_segment_name(name: &str) -> Option<SegmentId> {
    name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
}

/// Whether segment `id` still exists on disk.
pub fn segment_exists(dir: &Path, id: SegmentId) -> bool {
    segment_path(dir, id).exists()
}

/// Lists the segment ids present in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads every intact record of one segment, stopping at the first torn or
/// corrupt record (everything after it was never acknowledged).
pub fn replay_segment(dir: &Path, id: SegmentId) -> io::Result<(Vec<Replayed>, bool)> {
    let mut data = Vec::new();
    File::open(segment_path(dir, id))?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut clean = true;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + HEADER_LEN) else {
            clean = false;
            break;
        };
        if header.iter().all(|b| *b == 0) {
            // The zero-filled rest of a preallocated segment: a clean end.
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let kind = header[8];
        let start = pos + HEADER_LEN;
        let Some(payload) = (len <= MAX_RECORD).then(|| data.get(start..start + len)).flatten() else {
            clean = false;
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(payload);
        if hasher.finalize() != crc {
            clean = false;
            break;
        }
        out.push(Replayed {
            kind,
            payload: payload.to_vec(),
            location: Location { segment: id, offset: start as u64, len: len as u64 },
        });
        pos = start + len;
    }
    Ok((out, clean))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SegmentLog {
    /// Opens the log for appending into a fresh segment numbered after
    /// `last_existing`. `fsync: false` is for benchmarks that want to see the
    /// cost of durability; production always syncs.
    pub fn open(dir: &Path, last_existing: Option<SegmentId>, fsync: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let files: Arc<Mutex<HashMap<SegmentId, Arc<File>>>> = Arc::default();
        let pins: Pins = Arc::default();
        let first = last_existing.map_or(1, |id| id + 1);
        let writer = Writer::create(dir, first, files.clone(), pins.clone(), fsync)?;
        let (tx, rx) = mpsc::channel::<Request>();
        let handle = thread::Builder::new().name("spool-writer".into()).spawn(move || writer.run(rx))?;
        Ok(SegmentLog {
            dir: dir.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            files,
            pins,
            writer: Mutex::new(Some(handle)),
            fsync,
        })
    }

    /// Opens the log for reading only: no writer, nothing created or changed.
    pub fn open_read_only(dir: &Path) -> Self {
        SegmentLog {
            dir: dir.to_path_buf(),
            tx: Mutex::new(None),
            files: Arc::default(),
            pins: Arc::default(),
            writer: Mutex::new(None),
            fsync: false,
        }
    }

    /// Appends one record; resolves once it is durable on disk, or fails
    /// with `StorageFull` when the disk is full. The returned segment is
    /// pinned until the caller calls [`SegmentLog::unpin`].
    pub async fn append(&self, kind: u8, parts: Vec<Vec<u8>>) -> io::Result<Location> {
        self.submit(kind, parts, true, false).await
    }

    /// Appends a record whose loss in a crash is harmless (it would only
    /// repeat work); resolves once written, and it is synced within 100 ms
    /// or with the next durable record.
    pub async fn append_lazy(&self, kind: u8, parts: Vec<Vec<u8>>) -> io::Result<Location> {
        self.submit(kind, parts, false, false).await
    }

    /// Appends a record that finishes a message (`durable` or lazily): it
    /// may use the segment's reserve, so it is written even when the disk
    /// is full, and the segments it lets go free the space.
    pub async fn append_final(&self, kind: u8, parts: Vec<Vec<u8>>, durable: bool) -> io::Result<Location> {
        self.submit(kind, parts, durable, true).await
    }

    async fn submit(
        &self,
        kind: u8,
        parts: Vec<Vec<u8>>,
        durable: bool,
        reserve: bool,
    ) -> io::Result<Location> {
        let (done, wait) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let Some(tx) = tx.as_ref() else {
                return Err(io::Error::other("spool is closed or read-only"));
            };
            tx.send(Request { kind, parts, durable, reserve, done })
                .map_err(|_| io::Error::other("spool writer stopped"))?;
        }
        wait.await.map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// Reads a payload back (positioned read; the page cache usually has it).
    pub fn read(&self, loc: Location) -> io::Result<Vec<u8>> {
        let file = self.file(loc.segment)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)?;
        Ok(buf)
    }

    /// Reads `len` bytes at `offset` of a segment.
    pub fn read_at(&self, segment: SegmentId, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.read(Location { segment, offset, len })
    }

    fn file(&self, id: SegmentId) -> io::Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&id) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment_path(&self.dir, id))?);
        files.insert(id, f.clone());
        Ok(f)
    }

    /// The caller has recorded where its appended record lives.
    pub fn unpin(&self, id: SegmentId) {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pins.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&id);
            }
        }
    }

    fn is_pinned(&self, id: SegmentId) -> bool {
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    /// Deletes a segment that no live message needs any more, unless it is
    /// the active one or a fresh record in it is not yet registered.
    /// Returns whether it was deleted.
    pub fn remove_segment(&self, id: SegmentId) -> io::Result<bool> {
        if self.is_active(id) || self.is_pinned(id) {
            return Ok(false);
        }
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        fs::remove_file(segment_path(&self.dir, id))?;
        if self.fsync {
            fsync_dir(&self.dir)?;
        }
        Ok(true)
    }

    /// The segment currently being appended to (never removed while active).
    pub fn is_active(&self, id: SegmentId) -> bool {
        // The writer publishes the active segment by being the newest file.
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.keys().max().is_some_and(|max| *max == id)
    }

    /// Stops the writer after it has made everything queued so far durable.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Preallocated size of a segment. Records overwrite zeroed blocks, so an
/// fdatasync flushes data only (no size change, no journal commit): about half
/// the cost of syncing an append on ext4.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Lazy records (whose loss only means a repeated attempt) are synced at
/// least this often, or with the next durable record, whichever comes first.
const LAZY_SYNC: std::time::Duration = std::time::Duration::from_millis(100);
const SPARE: &str = "spare.tmp";

/// The end of every segment kept for done records: when the disk is full
/// and no new segment can be made, everything else is refused
/// (`StorageFull`) but the records that finish messages, and so free whole
/// segments, still fit (40,000 of them).
const RESERVE: u64 = 1024 * 1024;

/// Creates `path` filled with `SEGMENT_BYTES` zeros, synced. A fill that
/// fails (the disk is full) leaves no partial file eating the space.
fn zero_filled(path: &Path, fsync: bool) -> io::Result<()> {
    let fill = || -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
            f.write_all(&zeros)?;
        }
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    };
    fill().inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// Whether the filesystem of `dir` has room for another segment, and room
/// left after it (checked before a fill is tried, so a full disk costs a
/// syscall, not a write).
fn room_for_segment(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return true };
    // SAFETY: statvfs writes into the zeroed struct we own; `path` is a
    // valid NUL-terminated string for the duration of the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return true;
    }
    // Room for the segment and half as much again: the spool never takes
    // the last of the disk from the store, which needs some to file the
    // copies of what the spool holds (and so to let its segments go).
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) > SEGMENT_BYTES + SEGMENT_BYTES / 2 + RESERVE
}

fn storage_full() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left for a new spool segment")
}

/// The single owner of the active segment.
struct Writer {
    dir: PathBuf,
    id: SegmentId,
    file: Arc<File>,
    size: u64,
    files: Arc<Mutex<HashMap<SegmentId, Arc<File>>>>,
    pins: Pins,
    fsync: bool,
    /// Written but not yet synced (lazy records only).
    dirty: bool,
    /// The next segment, being zero-filled in the background.
    spare: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Writer {
    fn create(
        dir: &Path,
        id: SegmentId,
        files: Arc<Mutex<HashMap<SegmentId, Arc<File>>>>,
        pins: Pins,
        fsync: bool,
    ) -> io::Result<Self> {
        let _ = fs::remove_file(dir.join(SPARE));
        zero_filled(&dir.join(SPARE), fsync)?;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            id: id.saturating_sub(1),
            file: Arc::new(File::open(dir.join(SPARE))?),
            size: 0,
            files,
            pins,
            fsync,
            dirty: false,
            spare: None,
        };
        writer.install(id)?;
        Ok(writer)
    }

    /// Makes the (zero-filled) spare file segment `id` and starts the next spare.
    fn install(&mut self, id: SegmentId) -> io::Result<()> {
        let path = segment_path(&self.dir, id);
        fs::rename(self.dir.join(SPARE), &path)?;
        if self.fsync {
            fsync_dir(&self.dir)?;
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path)?);
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(id, file.clone());
        self.id = id;
        self.file = file;
        self.size = 0;
        let (spare, fsync) = (self.dir.join(SPARE), self.fsync);
        self.spare = Some(
            thread::Builder::new().name("spool-spare".into()).spawn(move || zero_filled(&spare, fsync))?,
        );
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut batch: Vec<Request> = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            // Block for the first request (but not past a pending lazy sync),
            // then take whatever else is waiting.
            let first = if self.dirty {
                match rx.recv_timeout(LAZY_SYNC) {
                    Ok(req) => req,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(req) => req,
                    Err(_) => break,
                }
            };
            batch.push(first);
            let mut bytes = 0usize;
            while bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.parts.iter().map(Vec::len).sum::<usize>();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch, &mut buf);
            for (req, res) in batch.drain(..).zip(result) {
                let _ = req.done.send(res);
            }
        }
        // Channel closed: make lazy records durable too before stopping.
        self.sync();
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }

    fn sync(&mut self) {
        if self.dirty
            && self.fsync
            && let Err(e) = self.file.sync_data()
        {
            tracing::error!(error = %e, "spool sync failed");
        }
        self.dirty = false;
    }

    /// Writes the batch, syncs once if any record in it must be durable, and
    /// returns one result per request. A batch that would reach into the
    /// reserve goes to a new segment; when none can be made (the disk is
    /// full), its done records go into the reserve and the rest is refused.
    fn write_batch(&mut self, batch: &[Request], buf: &mut Vec<u8>) -> Vec<io::Result<Location>> {
        let bytes: u64 = batch.iter().map(Request::bytes).sum();
        if self.size > 0
            && self.size + bytes > SEGMENT_BYTES - RESERVE
            && let Err(e) = self.roll()
        {
            if e.kind() != io::ErrorKind::StorageFull {
                tracing::error!(error = %e, "cannot start a new spool segment");
            }
            return self.write_into_reserve(batch, buf, &e);
        }
        let all: Vec<&Request> = batch.iter().collect();
        self.write_records(&all, buf)
    }

    /// The disk is full: done records that fit in the segment's reserve
    /// are written, everything else fails with `e`.
    fn write_into_reserve(
        &mut self,
        batch: &[Request],
        buf: &mut Vec<u8>,
        e: &io::Error,
    ) -> Vec<io::Result<Location>> {
        let mut room = SEGMENT_BYTES.saturating_sub(self.size);
        let fits: Vec<bool> = batch
            .iter()
            .map(|r| {
                let ok = r.reserve && r.bytes() <= room;
                if ok {
                    room -= r.bytes();
                }
                ok
            })
            .collect();
        let chosen: Vec<&Request> = batch.iter().zip(&fits).filter(|(_, ok)| **ok).map(|(r, _)| r).collect();
        let mut written = self.write_records(&chosen, buf).into_iter();
        fits.iter()
            .map(|ok| match ok {
                true => written.next().unwrap_or_else(|| Err(io::Error::other("spool write lost"))),
                false => Err(io::Error::new(e.kind(), e.to_string())),
            })
            .collect()
    }

    fn write_records(&mut self, batch: &[&Request], buf: &mut Vec<u8>) -> Vec<io::Result<Location>> {
        if batch.is_empty() {
            return Vec::new();
        }
        buf.clear();
        let mut locations = Vec::with_capacity(batch.len());
        for req in batch {
            let len: usize = req.parts.iter().map(Vec::len).sum();
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[req.kind]);
            for p in &req.parts {
                hasher.update(p);
            }
            buf.extend_from_slice(&(len as u32).to_le_bytes());
            buf.extend_from_slice(&hasher.finalize().to_le_bytes());
            buf.push(req.kind);
            let offset = self.size + buf.len() as u64;
            for p in &req.parts {
                buf.extend_from_slice(p);
            }
            locations.push(Location { segment: self.id, offset, len: len as u64 });
        }
        let durable = batch.iter().any(|r| r.durable);
        let written = self
            .file
            .write_all_at(buf, self.size)
            .and_then(|()| if durable && self.fsync { self.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.dirty = !durable;
                *self.pins.lock().unwrap_or_else(|e| e.into_inner()).entry(self.id).or_default() +=
                    batch.len();
                locations.into_iter().map(Ok).collect()
            }
            Err(e) => {
                // A failed write may have left a partial record: continue in a
                // fresh segment so the next records are not behind garbage.
                let _ = self.roll();
                batch.iter().map(|_| Err(io::Error::new(e.kind(), e.to_string()))).collect()
            }
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync();
        match self.spare.take().map(|h| h.join()) {
            Some(Ok(Ok(()))) => {}
            // The background fill failed (a full disk) or panicked: fill it
            // here, once there is room again.
            _ if !room_for_segment(&self.dir) => return Err(storage_full()),
            _ => zero_filled(&self.dir.join(SPARE), self.fsync)?,
        }
        self.install(self.id + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn append_replay_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), None, true).unwrap();
        let a = log.append(1, vec![b"hello".to_vec(), b" world".to_vec()]).await.unwrap();
        let b = log.append(2, vec![b"second".to_vec()]).await.unwrap();
        assert_eq!(log.read(a).unwrap(), b"hello world");
        assert_eq!(log.read(b).unwrap(), b"second");
        log.close();

        let (records, clean) = replay_segment(dir.path(), a.segment).unwrap();
        assert!(clean, "the zero-filled rest is a clean end");
        assert_eq!(records.len(), 2);

        // Simulate a crash mid-write: a truncated record after the last one.
        let path = segment_path(dir.path(), a.segment);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 1, b'x'], b.offset + b.len).unwrap();

        let (records, clean) = replay_segment(dir.path(), a.segment).unwrap();
        assert!(!clean);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].payload, b"hello world");
        assert_eq!(records[1].kind, 2);
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SegmentLog::open(dir.path(), None, true).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.append(1, vec![i.to_le_bytes().to_vec()]).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        log.close();
        let (records, clean) = replay_segment(dir.path(), 1).unwrap();
        assert!(clean);
        assert_eq!(records.len(), 200);
    }
}
