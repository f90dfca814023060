//! The quarantine copies' lane: a fixed number of places, and a line of
//! messages whose copy waits for one.
//!
//! The relay never waits for the lane. When every place is taken, an
//! attempt relays the original and leaves its copy pending in the spool
//! (durable, and off the heap); the message joins the line. A place that
//! frees up is handed straight to the first in line, so a message that has
//! waited is not overtaken by one that just arrived.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vocabulary::QueueId;

/// Quarantine copies being made at once. Beyond this, copies wait in the
/// spool rather than in memory, and the relay goes on at full speed.
pub const COPIES_IN_FLIGHT: usize = 32;

pub(crate) struct CopyLane {
    places: Arc<Semaphore>,
    state: Mutex<Line>,
}

#[derive(Default)]
struct Line {
    waiting: VecDeque<QueueId>,
    queued: HashSet<QueueId>,
    /// Places handed to a message that has been woken but not yet attempted.
    granted: HashMap<QueueId, OwnedSemaphorePermit>,
}

/// A place in the lane, held while one message's copy is made.
pub(crate) type Place = OwnedSemaphorePermit;

impl Default for CopyLane {
    fn default() -> Self {
        CopyLane { places: Arc::new(Semaphore::new(COPIES_IN_FLIGHT)), state: Mutex::default() }
    }
}

impl CopyLane {
    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `id`'s copy now: the one it was handed, or a free one if
    /// nobody is waiting. `None`: it must wait (see [`CopyLane::wait`]).
    pub(crate) fn take(&self, id: QueueId) -> Option<Place> {
        let mut line = self.line();
        if let Some(place) = line.granted.remove(&id) {
            return Some(place);
        }
        if !line.waiting.is_empty() {
            return None;
        }
        self.places.clone().try_acquire_owned().ok()
    }

    /// Puts `id` in line (once). Returns the message to wake, if a place
    /// was free meanwhile and has been handed on.
    pub(crate) fn wait(&self, id: QueueId) -> Option<QueueId> {
        {
            let mut line = self.line();
            if line.queued.insert(id) {
                line.waiting.push_back(id);
            }
        }
        let place = self.places.clone().try_acquire_owned().ok()?;
        self.hand_on(place)
    }

    /// A copy is done with its place: it goes to the first in line (whose
    /// id is returned, to be woken), or back to the lane.
    pub(crate) fn hand_on(&self, place: Place) -> Option<QueueId> {
        let mut line = self.line();
        let next = line.waiting.pop_front();
        match next {
            Some(id) => {
                line.queued.remove(&id);
                line.granted.insert(id, place);
            }
            // Given back under the lock, so a `wait` that pushes after this
            // sees the place free.
            None => drop(place),
        }
        next
    }

    /// `id` left the spool (delivered, deleted): whatever place it held or
    /// waited for moves on. Returns the message to wake.
    pub(crate) fn forget(&self, id: QueueId) -> Option<QueueId> {
        let place = {
            let mut line = self.line();
            if line.queued.remove(&id) {
                line.waiting.retain(|w| *w != id);
            }
            line.granted.remove(&id)
        };
        self.hand_on(place?)
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.places.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<QueueId> {
        (0..n).map(|_| QueueId::generate()).collect()
    }

    #[test]
    fn places_run_out_and_are_handed_on_in_order() {
        let lane = CopyLane::default();
        let early = ids(COPIES_IN_FLIGHT);
        let mut held: Vec<Place> = early.iter().map(|id| lane.take(*id).expect("a free place")).collect();
        assert_eq!(lane.free(), 0);
        let [a, b, c] = ids(3)[..] else { unreachable!() };
        assert!(lane.take(a).is_none());
        assert_eq!(lane.wait(a), None);
        assert_eq!(lane.wait(b), None);
        assert_eq!(lane.wait(a), None, "in line once");
        // A place frees up: it goes to a, not to the newcomer c.
        assert_eq!(lane.hand_on(held.pop().unwrap()), Some(a));
        assert!(lane.take(c).is_none(), "c may not overtake b");
        let pa = lane.take(a).expect("a was handed a place");
        assert_eq!(lane.hand_on(pa), Some(b));
        // b left the spool before its attempt: its place goes back.
        assert_eq!(lane.forget(b), None);
        assert_eq!(lane.free(), 1);
        assert!(lane.take(c).is_some());
    }

    #[test]
    fn a_place_freed_while_joining_the_line_is_not_lost() {
        let lane = CopyLane::default();
        let all: Vec<Place> = ids(COPIES_IN_FLIGHT).iter().map(|id| lane.take(*id).unwrap()).collect();
        drop(all);
        // Every place is free again; whoever joins the line is handed one.
        let id = QueueId::generate();
        assert_eq!(lane.wait(id), Some(id));
        assert!(lane.take(id).is_some());
    }
}
