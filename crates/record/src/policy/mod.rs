//! Per-recipient policy (issue 20): what happens to a scanned message for
//! each of its recipients. Pure rules here (no SQL); the table is
//! `policy_sql.rs`, behind [`Policies`].
//!
//! **Levels.** A value comes from the most specific level that sets it:
//! the built-in `default`, the configuration file's `[policy]` table
//! (`config`), then the tenant's stored scopes `global`, the recipient's
//! domain, and the recipient's exact address. Each level overrides only
//! the keys it sets; a list (`allow_senders`, `block_senders`) set at a
//! level replaces the lists below it, it is not merged with them.
//!
//! **Scopes** are written `global`, `example.net` (a domain: lowercase
//! ASCII labels, at least one dot; `@example.net` is read as the same) or
//! `ann@example.net` (an exact address, lowercased).
//!
//! **Keys** (built-in defaults in brackets):
//!
//! - `spam_action` [`quarantine`], `unsure_action` [`tag`]: one of
//!   `deliver`, `tag` (an `X-Spam-Status` header and `subject_prefix`),
//!   `quarantine` (the recipient's Spam folder) or `reject`.
//! - `spam_threshold` [5.0], `unsure_threshold` [3.0]: SpamAssassin-like
//!   points. A score at or above `spam_threshold` is spam; in
//!   [`unsure_threshold`, `spam_threshold`) unsure; below, ham (delivered).
//!   The effective `unsure_threshold` may not be above the effective
//!   `spam_threshold` at any scope (a change that would make it so is
//!   refused, [`check_change`]).
//! - `subject_prefix` [""]: put before the subject of tagged mail (none
//!   when empty).
//! - `archive` [false]: also keep a copy in the recipient's Archive folder.
//! - `retention_days.FOLDER` [30; Archive 365]: days the recipient's copies
//!   in FOLDER (one of the store's [`FOLDERS`](crate::quarantine::FOLDERS), e.g. `retention_days.Spam`)
//!   are kept, 1 to 3650.
//! - `allow_senders`, `block_senders` [none]: sender patterns, each an
//!   address (`bob@example.com`), a domain (`example.com`: any address at
//!   it) or a pattern with `*` standing for any characters
//!   (`*.example.com`: any subdomain, not example.com itself;
//!   `*@*.example.com`; `news-*@example.com`). A sender on either list is
//!   decided before the score: allowed is delivered; blocked is never
//!   delivered: it gets `spam_action` when that is `quarantine` or
//!   `reject`, and `quarantine` otherwise. On both lists, the list of the
//!   more specific level wins (at the same level, the block).
//! - `scan_failure` [`tempfail`]: when the message could not be scanned,
//!   `tempfail` (4xx, the sender retries) or `accept_unscanned` (delivered).

mod decide;
mod keys;
mod resolve;
mod scope;
mod senders;
mod simulate;
mod store;

pub use decide::{Decision, decide};
pub use keys::{Action, Class, Key, ScanFailure, Value};
pub use resolve::{Defaults, Effective, Layer, PolicyRow, Setting, explain, layers_for, resolve};
pub use scope::{Level, Scope};
pub use senders::{matches, sender_pattern};
pub use simulate::{Change, FilterRecord, Simulation, check_change, simulate};
pub use store::{Policies, apply, effective_at, effective_for, effective_in, rows_for, set, simulate_days};

use crate::RecordError;

/// The event kind filter mode records, one per recipient (its `reason` the
/// action taken, its `detail` [`FilterRecord`]'s fields as JSON).
pub const FILTERED: &str = "filtered";

/// Largest `retention_days`.
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// What is wrong with a scope, a key or a value (the API's 422: `field`
/// names the key, or `scope`), or the record's error.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl PolicyError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError::Invalid { field: field.into(), message: message.into() }
    }
}
