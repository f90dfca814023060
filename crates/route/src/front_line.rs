//! The front line (SMTP acceptance) as the work that must not slow it
//! sees it: whatever runs beside the relay (the store's copies,
//! `copies.rs`; the front line's record, through `record::Busy`) gives way
//! while a message is being accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a batch that gives way looks again.
pub(crate) const GIVE_WAY_POLL: Duration = Duration::from_millis(1);

/// A copy waits for the front line at most until its message arrived this
/// long ago (seconds).
pub const COPY_LAG_MAX: i64 = 10;

/// How long the front line still counts as busy after an accept that had
/// company (another message being accepted at the same time).
pub const CROWD_HOLD: Duration = Duration::from_millis(2);

/// The front line (SMTP acceptance), as the copies see it: how many
/// messages are being accepted right now (from the end of their data to
/// their 250, spool fsync included), and until when it was last crowded.
///
/// It is busy while a message is being accepted, and for [`CROWD_HOLD`]
/// after an accept that overlapped another. Serial mail (one message at a
/// time) leaves the whole rest of each cycle, the relay's round trip and
/// the client's next commands, to the copies. Concurrent mail leaves gaps
/// of a fraction of a millisecond between accepts; a batch started in one
/// runs into the next accepts, and the relay's threads pay for the core it
/// holds, so copies wait until the crowd has thinned for [`CROWD_HOLD`].
/// Cheap: two relaxed atomic adds per message, and a clock read only for
/// accepts that overlap.
#[derive(Clone)]
pub struct FrontLine(Arc<Crowd>);

struct Crowd {
    accepting: AtomicUsize,
    /// How many accepts began while another was under way.
    overlaps: AtomicU64,
    /// Microseconds after `epoch` until which the front line counts as busy.
    crowded_until: AtomicU64,
    epoch: Instant,
}

impl Default for FrontLine {
    fn default() -> Self {
        FrontLine(Arc::new(Crowd {
            accepting: AtomicUsize::new(0),
            overlaps: AtomicU64::new(0),
            crowded_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }
}

/// One message being accepted; see [`FrontLine`].
pub struct Accepting<'a> {
    crowd: &'a Crowd,
    /// `overlaps` when this one began: if it has moved when this one ends,
    /// another accept overlapped it.
    overlaps: u64,
}

impl Crowd {
    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn hold(&self) {
        let until = self.micros().saturating_add(CROWD_HOLD.as_micros() as u64);
        self.crowded_until.fetch_max(until, Ordering::Relaxed);
    }
}

impl FrontLine {
    /// A message is being accepted until the guard is dropped.
    pub fn accepting(&self) -> Accepting<'_> {
        let crowd = &*self.0;
        let mut overlaps = crowd.overlaps.load(Ordering::Relaxed);
        if crowd.accepting.fetch_add(1, Ordering::Relaxed) > 0 {
            // Counted before this one's mark is taken: it sees it moved.
            overlaps = crowd.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        Accepting { crowd, overlaps }
    }

    pub fn busy(&self) -> bool {
        let crowd = &*self.0;
        crowd.accepting.load(Ordering::Relaxed) > 0
            || crowd.micros() < crowd.crowded_until.load(Ordering::Relaxed)
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        let others = self.crowd.accepting.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if others > 0 || self.crowd.overlaps.load(Ordering::Relaxed) != self.overlaps {
            self.crowd.hold();
        }
    }
}

impl record::Busy for FrontLine {
    fn busy(&self) -> bool {
        FrontLine::busy(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_line_stays_busy_a_moment_after_a_crowded_accept_only() {
        let front = FrontLine::default();
        assert!(!front.busy());
        // Serial mail: busy while a message is accepted, quiet at once after.
        drop(front.accepting());
        assert!(!front.busy(), "a lone accept left a hold");
        // Two at once: busy while either is accepted, and for CROWD_HOLD
        // after the last of them.
        let a = front.accepting();
        let b = front.accepting();
        drop(a);
        assert!(front.busy());
        drop(b);
        let ended = std::time::Instant::now();
        assert!(front.busy() || ended.elapsed() >= CROWD_HOLD, "no hold after a crowded accept");
        std::thread::sleep(CROWD_HOLD + std::time::Duration::from_millis(1));
        assert!(!front.busy(), "the hold outlasted CROWD_HOLD");
        // The first of an overlapping pair, ending last, holds too.
        let a = front.accepting();
        drop(front.accepting());
        std::thread::sleep(CROWD_HOLD + std::time::Duration::from_millis(1));
        assert!(front.busy());
        drop(a);
        let ended = std::time::Instant::now();
        assert!(front.busy() || ended.elapsed() >= CROWD_HOLD, "no hold after the first of a pair");
        std::thread::sleep(CROWD_HOLD + std::time::Duration::from_millis(1));
        // And a lone accept after the crowd has gone leaves none.
        drop(front.accepting());
        assert!(!front.busy());
    }
}
