//! The durable queue: messages and per-recipient state, kept in memory and
//! mirrored to the segment log.
//!
//! **A message is acknowledged (the SMTP 250) only after its record is fsync'd.**
//! Content is stored once, inside the message record; later state changes are
//! small update records naming the message. A message leaves the queue when
//! every recipient is terminal, and its segments go when no live message has a
//! record in them.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use vocabulary::{Envelope, QueueId, RcptStatus, Recipient};

use crate::log::{self, Location, SegmentId, SegmentLog};

mod for_record;

const KIND_MESSAGE: u8 = 1;
const KIND_UPDATE: u8 = 2;
const KIND_DONE: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool io: {0}")]
    Io(#[from] io::Error),
    #[error("no such message {0}")]
    NotFound(QueueId),
    #[error("spool is locked by a running sluice (pid file {0})")]
    Locked(PathBuf),
}

impl SpoolError {
    /// The disk (or the quota) is full: answered `452 4.3.1` / HTTP 507,
    /// and over once space is freed.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, SpoolError::Io(e) if is_storage_full(e))
    }
}

/// ENOSPC or EDQUOT.
pub fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// What is stored with the content: the envelope and our trace header.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMeta {
    envelope: Envelope,
    /// The `Received:` header sluice prepends when relaying (CRLF-terminated).
    trace: String,
    /// Give up on recipients still undelivered after this time (Unix seconds).
    expires_at: i64,
}

/// A state change: the recipients' states and the hold flag, as a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUpdate {
    rcpts: Vec<Recipient>,
    held: bool,
    /// When it was held (Unix seconds; 0 when not held).
    #[serde(default, skip_serializing_if = "is_zero")]
    held_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One queued message as the scheduler and the queue commands see it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: QueueId,
    pub envelope: Envelope,
    pub trace: Arc<str>,
    pub content: Location,
    pub expires_at: i64,
    pub held: bool,
    /// When it was held (Unix seconds; 0 when not held).
    pub held_at: i64,
    /// A delivery attempt is running right now.
    pub in_flight: bool,
    /// Unix seconds of the next scheduled attempt (0 = as soon as possible).
    pub next_attempt: i64,
    /// Read back from the spool at start: accepted before a restart (or a
    /// crash), so work for it may have been done and its outcome lost.
    pub recovered: bool,
    segments: Vec<SegmentId>,
}

impl Entry {
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.envelope.rcpts.iter().enumerate().filter(|(_, r)| !r.status.is_terminal())
    }

    pub fn is_done(&self) -> bool {
        self.envelope.rcpts.iter().all(|r| r.status.is_terminal())
    }

    /// A dead letter: held because a recipient was refused for good where
    /// nobody could be told (see `RcptStatus::Held`).
    pub fn is_dead_letter(&self) -> bool {
        self.held && self.envelope.rcpts.iter().any(|r| matches!(r.status, RcptStatus::Held { .. }))
    }

    pub fn size(&self) -> u64 {
        self.content.len
    }

    fn touch(&mut self, seg: SegmentId, refs: &mut HashMap<SegmentId, usize>) {
        if !self.segments.contains(&seg) {
            self.segments.push(seg);
            *refs.entry(seg).or_default() += 1;
        }
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<QueueId, Entry>,
    /// How many live messages have a record in each segment.
    refs: HashMap<SegmentId, usize>,
    /// Tombstone dependencies: a segment holding a message's done record must
    /// outlive every other segment holding a record of that message, or a
    /// replay would bring the message back.
    deps: HashMap<SegmentId, HashSet<SegmentId>>,
    /// Messages a replay found finished (a done record after their message
    /// record), with their recipients' final states: what a record that
    /// lost its last writes in a crash catches up from. Their segments are
    /// kept until [`Spool::release_finished`].
    finished: HashMap<QueueId, Entry>,
    /// Segments no live message needs any more, kept (with
    /// [`Spool::keep_for_record`]) until the record has written what
    /// happened to their messages: oldest first.
    retiring: Vec<SegmentId>,
}

impl State {
    /// Drops `entry`'s references to its segments; the segments no message
    /// refers to any more.
    fn release(&mut self, entry: &Entry) -> Vec<SegmentId> {
        let mut freed = Vec::new();
        for seg in &entry.segments {
            let count = self.refs.entry(*seg).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.refs.remove(seg);
                freed.push(*seg);
            }
        }
        freed
    }

    /// Records that `entry` was finished by a done record in `done_seg`.
    fn bury(&mut self, entry: &Entry, done_seg: SegmentId) {
        let others = entry.segments.iter().copied().filter(|s| *s != done_seg);
        self.deps.entry(done_seg).or_default().extend(others);
    }
}

/// The spool of one data directory.
pub struct Spool {
    dir: PathBuf,
    log: SegmentLog,
    state: Mutex<State>,
    /// Whether freed segments wait for [`Spool::retire`].
    keep_for_record: std::sync::atomic::AtomicBool,
    _lock: Option<LockFile>,
}

/// The process-wide lock on a spool directory: one sluice at a time.
struct LockFile {
    _file: std::fs::File,
}

impl LockFile {
    fn acquire(dir: &Path) -> Result<Self, SpoolError> {
        use std::os::fd::AsRawFd;
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(SpoolError::Locked(path));
        }
        Ok(LockFile { _file: file })
    }
}

/// True when a running process holds the spool in `dir`.
pub fn is_locked(dir: &Path) -> bool {
    match LockFile::acquire(dir) {
        Ok(_) => false,
        Err(SpoolError::Locked(_)) => true,
        Err(_) => false,
    }
}

/// What replay found, for the start-up log line.
#[derive(Debug, Default)]
pub struct Recovery {
    pub segments: usize,
    pub messages: usize,
    pub torn_tails: usize,
    /// Finished messages whose records were still on disk.
    pub finished: usize,
}

fn id_bytes(id: QueueId) -> [u8; 16] {
    id.0.to_le_bytes()
}

fn read_id(payload: &[u8]) -> Option<QueueId> {
    let bytes: [u8; 16] = payload.get(..16)?.try_into().ok()?;
    Some(QueueId(u128::from_le_bytes(bytes)))
}

impl Spool {
    /// Opens (and recovers) the spool under `dir`, taking its lock.
    pub fn open(dir: &Path, fsync: bool) -> Result<(Self, Recovery), SpoolError> {
        std::fs::create_dir_all(dir)?;
        let lock = LockFile::acquire(dir)?;
        let (state, segments, recovery) = Self::replay(dir)?;
        let log = SegmentLog::open(dir, segments.last().copied(), fsync)?;
        let spool = Spool {
            dir: dir.to_path_buf(),
            log,
            state: Mutex::new(state),
            keep_for_record: false.into(),
            _lock: Some(lock),
        };
        spool.collect_garbage()?;
        Ok((spool, recovery))
    }

    /// Opens a spool for inspection only (`queue list`/`show` on a stopped
    /// server): no lock, no new segment, nothing written.
    pub fn open_read_only(dir: &Path) -> Result<(Self, Recovery), SpoolError> {
        let (state, _, recovery) = Self::replay(dir)?;
        let log = SegmentLog::open_read_only(dir);
        let state = Mutex::new(state);
        Ok((
            Spool { dir: dir.to_path_buf(), log, state, keep_for_record: false.into(), _lock: None },
            recovery,
        ))
    }

    fn replay(dir: &Path) -> Result<(State, Vec<SegmentId>, Recovery), SpoolError> {
        let segments = log::list_segments(dir)?;
        let mut state = State::default();
        let mut recovery = Recovery { segments: segments.len(), ..Recovery::default() };
        for &seg in &segments {
            let (records, clean) = log::replay_segment(dir, seg)?;
            if !clean {
                recovery.torn_tails += 1;
                tracing::warn!(
                    segment = seg,
                    "spool segment has a torn or corrupt tail; unacknowledged records ignored"
                );
            }
            for rec in records {
                apply_replayed(&mut state, rec);
            }
        }
        // Recount segment references from the surviving entries only (and
        // the finished ones, until the record has caught up from them).
        state.refs.clear();
        for entry in state.entries.values().chain(state.finished.values()) {
            for seg in &entry.segments {
                *state.refs.entry(*seg).or_default() += 1;
            }
        }
        recovery.messages = state.entries.len();
        recovery.finished = state.finished.len();
        Ok((state, segments, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a new message durably and returns its id. Returns only after the
    /// fsync: this is what the SMTP 250 waits for.
    pub async fn enqueue(
        &self,
        id: QueueId,
        envelope: Envelope,
        trace: String,
        content: Vec<u8>,
        expires_at: i64,
    ) -> Result<QueueId, SpoolError> {
        let meta = StoredMeta { envelope, trace, expires_at };
        let meta_json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        let mut head = Vec::with_capacity(20 + meta_json.len());
        head.extend_from_slice(&id_bytes(id));
        head.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
        head.extend_from_slice(&meta_json);
        let head_len = head.len() as u64;
        let loc = self.log.append(KIND_MESSAGE, vec![head, content]).await?;
        let content_loc =
            Location { segment: loc.segment, offset: loc.offset + head_len, len: loc.len - head_len };
        let mut state = self.state();
        let State { entries, refs, .. } = &mut *state;
        let mut entry = Entry {
            id,
            envelope: meta.envelope,
            trace: meta.trace.into(),
            content: content_loc,
            expires_at,
            held: false,
            held_at: 0,
            in_flight: false,
            next_attempt: 0,
            recovered: false,
            segments: Vec::new(),
        };
        entry.touch(loc.segment, refs);
        entries.insert(id, entry);
        drop(state);
        self.log.unpin(loc.segment);
        Ok(id)
    }

    /// The message's content bytes (as received, without our trace header).
    pub fn content(&self, loc: Location) -> io::Result<Vec<u8>> {
        self.log.read(loc)
    }

    pub fn get(&self, id: QueueId) -> Option<Entry> {
        self.state().entries.get(&id).cloned()
    }

    /// All entries, oldest first.
    pub fn list(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self.state().entries.values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    pub fn ids(&self) -> Vec<QueueId> {
        let mut ids: Vec<QueueId> = self.state().entries.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Marks a message in flight if it may be attempted now; returns a copy.
    /// A message whose recipients are all terminal is claimed too: its done
    /// record could not be written (a full disk) and is due again.
    pub fn claim(&self, id: QueueId) -> Option<Entry> {
        let mut state = self.state();
        let entry = state.entries.get_mut(&id)?;
        if entry.in_flight || entry.held {
            return None;
        }
        entry.in_flight = true;
        Some(entry.clone())
    }

    /// Ends an attempt: stores the recipients' new states durably, or removes
    /// the message when every recipient is terminal. Returns true when done.
    /// With `hold`, the message is held (a dead letter) instead of retried.
    pub async fn finish_attempt(
        &self,
        id: QueueId,
        rcpts: Vec<Recipient>,
        next_attempt: i64,
        hold: bool,
    ) -> Result<bool, SpoolError> {
        let done = rcpts.iter().all(|r| r.status.is_terminal());
        let (held, held_at, changed) = {
            let mut state = self.state();
            let entry = state.entries.get_mut(&id).ok_or(SpoolError::NotFound(id))?;
            let changed =
                entry.envelope.rcpts.len() != rcpts.len()
                    || entry.envelope.rcpts.iter().zip(&rcpts).any(|(a, b)| {
                        a.status.name() != b.status.name() || a.delay_reported != b.delay_reported
                    });
            entry.envelope.rcpts = rcpts.clone();
            entry.next_attempt = next_attempt;
            if hold && !entry.held {
                entry.held = true;
                entry.held_at = chrono::Utc::now().timestamp();
            }
            (entry.held, entry.held_at, changed)
        };
        // Outcomes are written lazily: losing one in a crash only repeats an
        // attempt (a rare duplicate), never loses mail. A retry that changed
        // no recipient's state (deferred again) writes nothing: a long
        // outage must not fill the disk with the same news.
        let result = if done {
            self.bury(id, false).await
        } else if !changed && !hold {
            Ok(())
        } else {
            self.write_update(id, StoredUpdate { rcpts, held, held_at }, false).await
        };
        if let Some(entry) = self.state().entries.get_mut(&id) {
            entry.in_flight = false;
        }
        result.map(|()| done)
    }

    /// Ends an attempt that recorded nothing: the message is due again at `at`.
    pub fn reschedule(&self, id: QueueId, at: i64) {
        if let Some(entry) = self.state().entries.get_mut(&id) {
            entry.in_flight = false;
            entry.next_attempt = at;
        }
    }

    async fn write_update(&self, id: QueueId, update: StoredUpdate, durable: bool) -> Result<(), SpoolError> {
        let json = serde_json::to_vec(&update).map_err(io::Error::other)?;
        let parts = vec![id_bytes(id).to_vec(), json];
        let loc = if durable {
            self.log.append(KIND_UPDATE, parts).await?
        } else {
            self.log.append_lazy(KIND_UPDATE, parts).await?
        };
        {
            let mut state = self.state();
            let State { entries, refs, .. } = &mut *state;
            if let Some(entry) = entries.get_mut(&id) {
                entry.touch(loc.segment, refs);
            }
        }
        self.log.unpin(loc.segment);
        Ok(())
    }

    /// Sets or clears the hold flag. A held message is never attempted.
    pub async fn set_held(&self, id: QueueId, held: bool) -> Result<(), SpoolError> {
        let update = {
            let mut state = self.state();
            let entry = state.entries.get_mut(&id).ok_or(SpoolError::NotFound(id))?;
            if held && !entry.held {
                entry.held_at = chrono::Utc::now().timestamp();
            }
            entry.held = held;
            if !held {
                entry.next_attempt = 0;
                entry.held_at = 0;
            }
            StoredUpdate { rcpts: entry.envelope.rcpts.clone(), held, held_at: entry.held_at }
        };
        self.write_update(id, update, true).await
    }

    /// Messages neither held nor in flight that have been due since before
    /// `cutoff` (Unix seconds), with that time: read under the lock, no
    /// entry copied (the scheduler asks every 2 s, whatever the queue's size).
    pub fn idle_due_before(&self, cutoff: i64) -> Vec<(QueueId, i64)> {
        let state = self.state();
        state
            .entries
            .values()
            .filter(|e| !e.held && !e.in_flight)
            .map(|e| (e.id, e.next_attempt.max(e.envelope.received_at)))
            .filter(|(_, due)| *due < cutoff)
            .collect()
    }

    /// Dead letters held since before `cutoff` (Unix seconds): what the hold
    /// retention lets go.
    pub fn dead_letters_before(&self, cutoff: i64) -> Vec<Entry> {
        let state = self.state();
        state.entries.values().filter(|e| e.is_dead_letter() && e.held_at < cutoff).cloned().collect()
    }

    /// Makes one waiting message due now (an attempt in flight is left alone).
    pub fn make_due(&self, id: QueueId) {
        if let Some(entry) = self.state().entries.get_mut(&id) {
            entry.next_attempt = 0;
        }
    }

    /// Makes every waiting message due now; returns their ids.
    pub fn flush(&self) -> Vec<QueueId> {
        let mut state = self.state();
        let mut due = Vec::new();
        for entry in state.entries.values_mut() {
            if !entry.held && !entry.in_flight {
                entry.next_attempt = 0;
                due.push(entry.id);
            }
        }
        due
    }

    /// Removes a message durably (deleted by command).
    pub async fn remove(&self, id: QueueId) -> Result<(), SpoolError> {
        self.bury(id, true).await
    }

    /// Appends the message's done record (with its recipients' final
    /// states, which a record that lost its last writes reads back after a
    /// crash) and forgets it.
    async fn bury(&self, id: QueueId, durable: bool) -> Result<(), SpoolError> {
        let statuses = {
            let state = self.state();
            let entry = state.entries.get(&id).ok_or(SpoolError::NotFound(id))?;
            entry.envelope.rcpts.iter().map(|r| &r.status).cloned().collect::<Vec<_>>()
        };
        let mut payload = id_bytes(id).to_vec();
        serde_json::to_writer(&mut payload, &statuses).map_err(io::Error::other)?;
        let done = self.log.append_final(KIND_DONE, vec![payload], durable).await?;
        let freed: Vec<SegmentId> = {
            let mut state = self.state();
            let Some(entry) = state.entries.remove(&id) else {
                drop(state);
                self.log.unpin(done.segment);
                return Ok(());
            };
            state.bury(&entry, done.segment);
            state.release(&entry)
        };
        self.log.unpin(done.segment);
        self.free(freed)
    }

    /// Deletes `seg` if no live message and no tombstone needs it.
    fn try_remove_segment(&self, seg: SegmentId) -> io::Result<bool> {
        let blocked = {
            let state = self.state();
            state.refs.contains_key(&seg)
                || state.retiring.contains(&seg)
                || state.deps.get(&seg).is_some_and(|d| d.iter().any(|s| log::segment_exists(&self.dir, *s)))
        };
        if blocked || !self.log.remove_segment(seg)? {
            return Ok(false);
        }
        self.state().deps.remove(&seg);
        Ok(true)
    }

    /// Drops segments that neither a live message nor a tombstone needs (e.g.
    /// the former active segment after a roll-over). Repeats while deleting
    /// one segment frees another. Cheap; called from the scheduler's tick.
    pub fn collect_garbage(&self) -> io::Result<usize> {
        let mut removed = 0;
        loop {
            let mut progress = false;
            for seg in log::list_segments(&self.dir)? {
                if self.try_remove_segment(seg)? {
                    removed += 1;
                    progress = true;
                }
            }
            if !progress {
                return Ok(removed);
            }
        }
    }

    /// Flushes and stops the writer. Pending appends complete first.
    pub fn close(&self) {
        self.log.close();
    }
}

fn apply_replayed(state: &mut State, rec: log::Replayed) {
    let Some(id) = read_id(&rec.payload) else { return };
    let seg = rec.location.segment;
    match rec.kind {
        KIND_MESSAGE => {
            let Some(meta_len) =
                rec.payload.get(16..20).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            else {
                return;
            };
            let meta_end = 20 + meta_len as usize;
            let Some(meta) =
                rec.payload.get(20..meta_end).and_then(|m| serde_json::from_slice::<StoredMeta>(m).ok())
            else {
                tracing::error!(%id, "unreadable message record in spool; skipped");
                return;
            };
            let content = Location {
                segment: seg,
                offset: rec.location.offset + meta_end as u64,
                len: rec.location.len - meta_end as u64,
            };
            state.entries.insert(
                id,
                Entry {
                    id,
                    envelope: meta.envelope,
                    trace: meta.trace.into(),
                    content,
                    expires_at: meta.expires_at,
                    held: false,
                    held_at: 0,
                    in_flight: false,
                    next_attempt: 0,
                    recovered: true,
                    segments: vec![seg],
                },
            );
        }
        KIND_UPDATE => {
            let Some(update) =
                rec.payload.get(16..).and_then(|j| serde_json::from_slice::<StoredUpdate>(j).ok())
            else {
                return;
            };
            if let Some(entry) = state.entries.get_mut(&id) {
                entry.envelope.rcpts = update.rcpts;
                entry.held = update.held;
                entry.held_at = update.held_at;
                if !entry.segments.contains(&seg) {
                    entry.segments.push(seg);
                }
            }
        }
        KIND_DONE => {
            if let Some(mut entry) = state.entries.remove(&id) {
                state.bury(&entry, seg);
                // The final states (absent from done records of earlier versions).
                let statuses =
                    rec.payload.get(16..).and_then(|j| serde_json::from_slice::<Vec<RcptStatus>>(j).ok());
                if let Some(statuses) = statuses.filter(|s| s.len() == entry.envelope.rcpts.len()) {
                    for (r, status) in entry.envelope.rcpts.iter_mut().zip(statuses) {
                        r.status = status;
                    }
                    if !entry.segments.contains(&seg) {
                        entry.segments.push(seg);
                    }
                    state.finished.insert(id, entry);
                }
            }
        }
        _ => {}
    }
}

/// A recipient whose state changed to `status` after one more attempt.
pub fn with_status(mut r: Recipient, status: RcptStatus) -> Recipient {
    r.status = status;
    r.attempts += 1;
    r
}

#[cfg(test)]
mod tests;
