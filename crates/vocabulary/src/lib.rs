//! The words every stage of sluice shares: queue identifiers, envelopes, SMTP
//! replies. Kept free of IO and of heavy dependencies so that every crate,
//! including the pure `decide` crate, can speak them.

pub mod dsn;
mod envelope;
pub mod event;
pub mod lines;
mod reply;
pub mod time;
pub mod verdict;

pub use envelope::{Envelope, QueueId, RcptStatus, Recipient, Route, RouteKind, domain_of, is_role_local};
pub use event::{Direction, EventKind};
pub use lines::LineFaults;
pub use reply::{Reply, Severity};
pub use verdict::{Reason, Verdict};
