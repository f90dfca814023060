//! What the spool keeps for the record: a finished message's segments
//! stay until the record has written what happened to it (the front line's
//! events are written without waiting, so a crash can lose the last of
//! them), and what a replay found finished is handed to the record's
//! catch-up before its segments go.

use std::io;

use super::{Entry, Spool, SpoolError};
use crate::log::SegmentId;

/// Segments kept for the record at most (16 MiB each): past them, while the
/// record cannot keep up (its database down for long), the oldest goes and
/// a crash could then lose the record of what it held (said at WARN).
const MAX_RETIRING: usize = 64;

impl Spool {
    /// Segments no live message needs: deleted now, or kept for the record
    /// ([`Spool::keep_for_record`]).
    pub(super) fn free(&self, mut freed: Vec<SegmentId>) -> Result<(), SpoolError> {
        if freed.is_empty() {
            return Ok(());
        }
        // Oldest first: a tombstone is newer than the records it buries,
        // and goes only after them.
        freed.sort_unstable();
        freed.dedup();
        if !self.keep_for_record.load(std::sync::atomic::Ordering::Relaxed) {
            for seg in freed {
                self.try_remove_segment(seg)?;
            }
            return Ok(());
        }
        let over = {
            let mut state = self.state();
            for seg in freed {
                // The active segment can be freed, written to, and freed again.
                if !state.retiring.contains(&seg) {
                    state.retiring.push(seg);
                }
            }
            let over = state.retiring.len().saturating_sub(MAX_RETIRING);
            state.retiring.drain(..over).collect::<Vec<_>>()
        };
        for seg in over {
            tracing::warn!(
                segment = seg,
                "spool segment deleted before the record caught up with it: a crash now could lose its events"
            );
            self.try_remove_segment(seg)?;
        }
        Ok(())
    }

    /// From now on, segments no message needs are kept until [`Spool::retire`]
    /// is told the record has written what happened to their messages.
    pub fn keep_for_record(&self) {
        self.keep_for_record.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The segments waiting for the record, oldest first.
    pub fn retiring(&self) -> Vec<SegmentId> {
        self.state().retiring.clone()
    }

    /// The record has written everything about `segs`' messages: they go
    /// (once no tombstone needs them).
    pub fn retire(&self, segs: &[SegmentId]) -> io::Result<()> {
        self.state().retiring.retain(|s| !segs.contains(s));
        let mut segs = segs.to_vec();
        segs.sort_unstable();
        for seg in segs {
            self.try_remove_segment(seg)?;
        }
        Ok(())
    }

    /// Messages finished before a restart whose records were still on
    /// disk, each with its recipients' final states, oldest first.
    pub fn finished(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self.state().finished.values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// The record has caught up from [`Spool::finished`]: their segments go.
    pub fn release_finished(&self) -> Result<(), SpoolError> {
        let freed = {
            let mut state = self.state();
            let finished: Vec<Entry> = state.finished.drain().map(|(_, e)| e).collect();
            finished.iter().flat_map(|e| state.release(e)).collect()
        };
        self.free(freed)
    }
}
