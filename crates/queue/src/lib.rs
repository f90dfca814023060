//! The durable queue: a group-committed segment log on disk ([`log`]), the
//! messages and per-recipient states it holds ([`spool`]), and the
//! [`scheduler`] that attempts, retries, expires and reports them, with the
//! quarantine copies in a [`lane`] of their own.

pub mod journal;
pub mod lane;
pub mod log;
mod routes;
pub mod scheduler;
mod settle;
pub mod spool;

pub use journal::{Attempted, Journal};
pub use lane::COPIES_IN_FLIGHT;
pub use routes::{Concurrency, DsnPolicy, RouteSpec, Routes};
pub use scheduler::{
    AttemptOutcome, AttemptResult, BoxFuture, DsnBuilder, DsnInput, Job, Scheduler, SchedulerConfig,
    Transport, Waker, now_secs,
};
pub use spool::{Entry, Recovery, Spool, SpoolError, is_locked, is_storage_full};
