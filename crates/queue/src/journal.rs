//! What the scheduler did, told as it happens, for whoever keeps a record
//! of it (the front line's event log). The scheduler calls a [`Journal`]
//! inline: an implementation hands the facts on and returns, never waits.

use vocabulary::{Envelope, QueueId, Recipient};

/// One recipient after an attempt: its index in the envelope, its state
/// before and after, and the host and TLS version of its route's attempt.
pub struct Attempted<'a> {
    pub idx: usize,
    pub rcpt: &'a Recipient,
    /// Its state before this attempt.
    pub was: &'a vocabulary::RcptStatus,
    pub remote: &'a str,
    pub tls: Option<&'a str>,
}

pub trait Journal: Send + Sync + 'static {
    /// The recipients of message `id` an attempt tried, each in the state
    /// it is left in (after any DSN was queued for it).
    fn attempted(&self, id: QueueId, envelope: &Envelope, rcpts: &[Attempted<'_>]);
    /// A DSN (`dsn`, a message of its own) was queued to the sender of
    /// `id`, reporting on these recipients (index, state).
    fn dsn_queued(&self, id: QueueId, dsn: QueueId, rcpts: &[(usize, &Recipient)]);
}
