//! Open and click tracking for application mail: the pure parts.
//!
//! Why: the application team wants to know, per message and over time,
//! who opened and who clicked, and to tell people from machines (privacy
//! proxies load every pixel, link scanners follow every link).
//!
//! How the pieces fit:
//!
//! - [`rewrite`] runs on a message's bytes before DKIM signing. It points
//!   every tracked link of its HTML parts at `{base_url}/t/c/TOKEN` and puts
//!   a pixel `{base_url}/t/o/TOKEN` before `</body>`; everything else stays
//!   byte for byte. [`tracked_links`] lists the destinations in the same
//!   order, and a link's id is its index there; the record keeps that list
//!   with the message.
//! - [`token`] makes TOKEN: opaque, naming (message, recipient index, link
//!   id) with a truncated HMAC-SHA256 under the shared secret (domain
//!   separated from VERP's). The click endpoint opens the token and looks
//!   the destination up in the record by (message, link id); it never reads
//!   a destination from the URL, so a tampered or unknown token gets a 404
//!   and redirects nowhere (no open redirect).
//! - [`machine`] classifies each open or click as `human`, `privacy_proxy`,
//!   `scanner` or `unknown` with its reasons, from the request and the
//!   recipient's earlier clicks, using lists shipped in
//!   `crates/outbound/data/tracking/` (their sources in `SOURCES.md` there).
//!
//! No IO here: the endpoints, the record and the configuration live
//! elsewhere and call in.

pub mod machine;
pub mod policy;
pub mod rewrite;
pub mod token;

pub use machine::{
    Activity, ActivityKind, BUILTIN_AGENTS, BUILTIN_RANGES, ListError, Lists, MachineClass, Verdict,
    classify, classify_with,
};
pub use policy::{Policy, Track};
pub use rewrite::{NOTRACK_ATTRIBUTE, Rewrite, rewrite, tracked_links};
pub use token::{Tracked, Tracker};
