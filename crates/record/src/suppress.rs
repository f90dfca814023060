//! The suppression list: addresses a tenant must not send to, with why
//! (the event that put them there) and until when. [`Suppressions`] is
//! what a backend implements; the SQLite one is `crate::sqlite::Log`.
//! (Events that suppress, a hard bounce or a complaint, add their entry in
//! the same write as the event: `NewEvent::suppress`.)

use serde::Serialize;

use crate::directory::Tenant;
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    /// `bounced`, `rejected`, `complained`, `unsubscribed` or `manual`.
    pub source: String,
    pub event_id: Option<i64>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl Suppression {
    /// An entry made by hand (not by an event), from now.
    pub fn manual(address: &str, reason: &str, expires_at: Option<i64>) -> Self {
        Suppression {
            address: crate::events::normalize(address),
            reason: reason.to_string(),
            source: "manual".into(),
            event_id: None,
            created_at: crate::events::now_ms(),
            expires_at,
        }
    }
}

/// An entry's columns as every backend selects them ([`COLUMNS`]).
pub(crate) type Row = (String, String, String, Option<i64>, i64, Option<i64>);

pub(crate) const COLUMNS: &str = "address, reason, source, event_id, created_at, expires_at";

impl From<Row> for Suppression {
    fn from((address, reason, source, event_id, created_at, expires_at): Row) -> Self {
        Suppression { address, reason, source, event_id, created_at, expires_at }
    }
}

/// A tenant's suppression list.
pub trait Suppressions: Send + Sync + 'static {
    /// The entries in force at `at` (ms) among `addresses`.
    fn suppressed<'a>(&'a self, tenant: i64, addresses: &'a [String], at: i64) -> Res<'a, Vec<Suppression>>;
    /// One address's entry in force at `at`.
    fn suppression<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        at: i64,
    ) -> Res<'a, Option<Suppression>>;
    /// Entries in address order, after `cursor`.
    fn suppressions<'a>(
        &'a self,
        tenant: &'a Tenant,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> Res<'a, Vec<Suppression>>;
    /// Adds (or replaces) an entry by hand.
    fn suppress<'a>(
        &'a self,
        tenant: &'a Tenant,
        address: &'a str,
        reason: &'a str,
        expires_at: Option<i64>,
    ) -> Res<'a, Suppression>;
    /// Removes an entry; false when there was none.
    fn unsuppress<'a>(&'a self, tenant: &'a Tenant, address: &'a str) -> Res<'a, bool>;
}
