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
