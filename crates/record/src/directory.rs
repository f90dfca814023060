//! Who is who: tenants, their API keys, submission users and which tenant
//! each sends for, and which tenant a store account's inbound mail belongs
//! to. [`Directory`] is what a backend implements; the SQLite one is
//! `crate::sqlite::Log`. The rules every backend shares (what a tenant's
//! name may be, how a key is made, kept and matched) are here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// A tenant, as an API key or a submission user resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
}

/// An API key as listed: its clear prefix, when it was made, when revoked.
pub type KeyInfo = (String, i64, Option<i64>);

/// How much of an API key is kept in clear (`sk_` and 8 characters), to
/// list and revoke it by.
pub const KEY_PREFIX_LEN: usize = 11;

/// A trimmed tenant name, or why it is not one.
pub fn tenant_name(name: &str) -> Result<&str, RecordError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(RecordError::Invalid(format!(
            "tenant names are 1-64 characters of letters, digits, '-', '_' or '.': {name:?}"
        )));
    }
    Ok(name)
}

/// A new API key: `sk_` and 256 random bits. Only its hash is kept.
pub fn new_api_key() -> String {
    let random = [uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string()];
    format!("sk_{}{}", random[0], random[1])
}

/// What is kept of a key to find it by: its SHA-256.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// An API key's length: `sk_` and 64 hex digits.
pub const KEY_LEN: usize = 67;

/// How a revocation names keys: by their start (8 characters or more; only
/// the first [`KEY_PREFIX_LEN`] are kept in clear, so a longer start is
/// matched by those), or the whole key, matched by its hash so that a
/// mistyped tail revokes nothing.
pub enum KeyRef {
    Prefix(String),
    Hash(Vec<u8>),
}

impl KeyRef {
    /// Any start of a key of at least 8 characters (as `api_keys` shows
    /// it, or longer), or the key.
    pub fn parse(given: &str) -> Result<KeyRef, RecordError> {
        if given.len() < 8 || !given.is_ascii() {
            return Err(RecordError::Invalid("give at least 8 characters of the key".into()));
        }
        Ok(match given.len() >= KEY_LEN {
            true => KeyRef::Hash(key_hash(given)),
            false => KeyRef::Prefix(given[..given.len().min(KEY_PREFIX_LEN)].to_string()),
        })
    }
}

/// Recently seen API keys (by hash) and their tenants: a request need not
/// read the database to know its tenant. An entry lives [`KeyCache::TTL`],
/// so a key revoked elsewhere stops working within that time; a backend
/// that hears of revocations sooner clears it at once.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<Vec<u8>, (Tenant, Instant)>>);

impl KeyCache {
    pub const TTL: Duration = Duration::from_secs(30);
    /// Entries kept, at most (past it the cache starts again empty).
    const MAX: usize = 10_000;

    pub fn get(&self, hash: &[u8]) -> Option<Tenant> {
        let keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(hash).filter(|(_, at)| at.elapsed() < Self::TTL).map(|(t, _)| t.clone())
    }

    pub fn put(&self, hash: Vec<u8>, tenant: Tenant) {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= Self::MAX {
            keys.clear();
        }
        keys.insert(hash, (tenant, Instant::now()));
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Waits until `changes` ([`Directory::changes`]) moves, or at most
/// `every`: what a server keeps in memory is read again then, so even a
/// change that was never heard of is caught up.
pub async fn next_change(changes: &mut tokio::sync::watch::Receiver<u64>, every: Duration) {
    tokio::select! {
        heard = changes.changed() => {
            if heard.is_err() {
                tokio::time::sleep(every).await;
            }
        }
        _ = tokio::time::sleep(every) => {}
    }
}

/// A DKIM signing key as kept in the database, where every node finds the
/// same keys. Its PEM is a secret: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub pem: String,
    pub created_at: i64,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}._domainkey.{}", self.selector, self.domain)
    }
}

/// Tenants, keys, users and accounts' tenants.
pub trait Directory: Send + Sync + 'static {
    /// The tenant called `name`, created if new.
    fn tenant<'a>(&'a self, name: &'a str) -> Res<'a, Tenant>;
    /// Every tenant, by name.
    fn tenants(&self) -> Res<'_, Vec<Tenant>>;
    /// A new API key for `tenant` (created if new), shown once: only its
    /// hash is kept.
    fn create_api_key<'a>(&'a self, tenant: &'a str) -> Res<'a, String>;
    /// A tenant's keys, oldest first.
    fn api_keys<'a>(&'a self, tenant: &'a str) -> Res<'a, Vec<KeyInfo>>;
    /// Revokes a tenant's keys that `key` names ([`KeyRef::parse`]); how
    /// many. Every node stops accepting them within a short while.
    fn revoke_api_key<'a>(&'a self, tenant: &'a str, key: &'a str) -> Res<'a, u64>;
    /// The tenant of a (not revoked) API key.
    fn authenticate<'a>(&'a self, key: &'a str) -> Res<'a, Option<Tenant>>;
    /// Adds a submission user or replaces their password.
    fn set_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, ()>;
    /// True when the user exists and `password` matches (in the same time
    /// for an unknown user as for a known one).
    fn verify_user<'a>(&'a self, name: &'a str, password: &'a str) -> Res<'a, bool>;
    /// Submission users, by name.
    fn users(&self) -> Res<'_, Vec<String>>;
    /// Removes a submission user; false when there was none.
    fn remove_user<'a>(&'a self, name: &'a str) -> Res<'a, bool>;
    /// Makes a submission user send on behalf of `tenant`.
    fn set_user_tenant<'a>(&'a self, user: &'a str, tenant: &'a str) -> Res<'a, ()>;
    /// The tenant a submission user sends for, if any.
    fn user_tenant<'a>(&'a self, user: &'a str) -> Res<'a, Option<Tenant>>;
    /// The store accounts that belong to a tenant, with its id: their
    /// domains' inbound mail is that tenant's.
    fn account_tenants(&self) -> Res<'_, Vec<(String, i64)>>;
    /// Makes a store account (and so its domains' inbound mail) a tenant's.
    fn set_account_tenant<'a>(&'a self, account: &'a str, tenant: &'a str) -> Res<'a, ()>;
    /// The secret called `name` that every node shares: the one stored,
    /// or `made` (stored now) when there is none yet. The first node to
    /// ask decides; the others get its value.
    fn secret<'a>(&'a self, name: &'a str, made: &'a [u8]) -> Res<'a, Vec<u8>>;
    /// Every DKIM signing key, by domain and selector.
    fn dkim_keys(&self) -> Res<'_, Vec<DkimKey>>;
    /// Stores a DKIM key unless its domain has one by that selector (the
    /// one published in DNS is never replaced): true when stored.
    fn add_dkim_key<'a>(&'a self, key: &'a DkimKey) -> Res<'a, bool>;
    /// Removes a domain's DKIM key by selector: true when there was one.
    fn remove_dkim_key<'a>(&'a self, domain: &'a str, selector: &'a str) -> Res<'a, bool>;
    /// Moves whenever what a running server keeps in memory changes (store
    /// accounts, their domains and tenants, API keys, DKIM keys), whoever
    /// changed it: another node (PostgreSQL announces it at commit) or
    /// another process (SQLite's counter, read every second).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}
