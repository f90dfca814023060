//! Operations on the mail sluice holds: the queue (per-route backlog, held
//! mail, hold, release, delete, flush) and the quarantine store (accounts,
//! folders, copies, release, delete), scoped to whom is asking. The API's
//! `/v1/queue…` and `/v1/quarantine…` handlers (`routes.rs`) and the
//! dashboard's Queue and Quarantine pages call the same functions here.
//!
//! The api crate does not know the spool: the server hands it an
//! [`Operations`] (as it hands [`crate::health::Health`]) that runs the
//! control socket's own handler in process. The quarantine store is read
//! straight from the record.
//!
//! **Who sees what** ([`Scope`]): an API key sees its tenant's; an
//! operator every tenant or those granted. A queue entry's tenant is the
//! one the record files the message under (`tenant_of`): the outbound
//! route's tenant, else the tenant of the first store account taking a
//! copy that belongs to one, else the `default` tenant; a message only for
//! the feedback route (reports to the bounce domain, not yet attributed)
//! has none and is seen only by operators of every tenant. A store
//! account's copies are its tenant's (`default` when unassigned). Anything
//! outside the scope is a 404, as if it did not exist.

pub mod headers;
pub mod quarantine;
pub mod queue;
pub mod routes;

use futures::future::BoxFuture;
use record::directory::Tenant;
use serde::Serialize;

/// The tenant that owns inbound mail no store account of a tenant claims
/// (`route::inbound::DEFAULT_TENANT`).
pub const DEFAULT_TENANT: &str = "default";

/// One recipient of a queued message, as `sluice queue show --json` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRcpt {
    pub address: String,
    /// `relay`, `quarantine:ACCOUNT`, `folder:ACCOUNT/FOLDER`,
    /// `outbound:TENANT_ID` or `feedback`.
    pub route: String,
    /// `scheduled`, `deferred`, `held`, `delivered`, `failed`, `expired`.
    pub status: String,
    pub attempts: u32,
    pub last_reply: Option<String>,
}

/// A queued message (`openapi.json`'s `QueueEntry`); times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    pub id: String,
    /// The tenant it belongs to (see the module's text); set by this crate.
    pub tenant: Option<String>,
    pub from: String,
    pub received_at: i64,
    pub size: u64,
    pub held: bool,
    /// Held because a recipient was refused for good and nobody can be told.
    pub dead_letter: bool,
    pub held_at: i64,
    pub next_attempt: i64,
    pub expires_at: i64,
    pub peer: String,
    pub recipients: Vec<QueueRcpt>,
}

/// What the server does for the API on its spool, in process: the control
/// socket's requests (`sluice queue …`, `sluice quarantine release`).
/// Errors are the handler's words ("no such message …").
pub trait Operations: Send + Sync + 'static {
    /// Every queued message, oldest first.
    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueEntry>, String>>;
    fn hold<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>>;
    /// Un-holds and attempts it now.
    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, String>>;
    /// Attempts these messages now; `None`: every message (`queue flush`).
    fn flush(&self, ids: Option<Vec<String>>) -> BoxFuture<'_, Result<String, String>>;
    /// Re-injects a quarantined copy to its original recipients.
    fn release_copy<'a>(
        &'a self,
        account: &'a str,
        folder: &'a str,
        uid: i64,
    ) -> BoxFuture<'a, Result<String, String>>;
    /// A queued message's content as received (its header block is read
    /// from it); `None` when the spool no longer holds it.
    fn content<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
}

/// Whose data a caller may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant, present and future (an operator without grants).
    All,
    /// These tenants (by name): an API key's one, an operator's grants.
    Tenants(Vec<String>),
}

impl Scope {
    /// An API key's: its tenant.
    pub fn key(tenant: &Tenant) -> Scope {
        Scope::Tenants(vec![tenant.name.clone()])
    }

    /// A dashboard operator's (`tenants`: those it sees).
    pub fn operator(op: &record::operators::Operator, tenants: &[Tenant]) -> Scope {
        match op.all_tenants {
            true => Scope::All,
            false => Scope::Tenants(tenants.iter().map(|t| t.name.clone()).collect()),
        }
    }

    /// Whether data of `tenant` (`None`: of no tenant) is in scope.
    pub fn sees(&self, tenant: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenants(names) => tenant.is_some_and(|t| names.iter().any(|n| n == t)),
        }
    }
}

/// Why an operation was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsError {
    /// Not there, or not the caller's (the two are not told apart).
    NotFound(&'static str),
    /// The caller's input is wrong.
    Invalid(String),
    /// The spool or the record cannot answer now.
    Unavailable(String),
    /// The server around the API runs no spool (queue operations are not
    /// offered).
    NotOffered,
}

impl From<record::RecordError> for OpsError {
    fn from(e: record::RecordError) -> Self {
        match e {
            record::RecordError::Invalid(m) => OpsError::Invalid(m),
            e => OpsError::Unavailable(e.to_string()),
        }
    }
}

impl From<OpsError> for crate::ApiError {
    fn from(e: OpsError) -> Self {
        use axum::http::StatusCode;
        match e {
            OpsError::NotFound(what) => crate::ApiError::not_found(what),
            OpsError::Invalid(m) => crate::ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            OpsError::Unavailable(m) => crate::ApiError::unavailable(m),
            OpsError::NotOffered => crate::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this server runs no spool: queue operations are not offered",
            ),
        }
    }
}

/// The operations, or [`OpsError::NotOffered`].
pub(crate) fn operations(state: &crate::AppState) -> Result<&dyn Operations, OpsError> {
    state.ops.as_deref().ok_or(OpsError::NotOffered)
}

/// Tenant names by id, and each store account's tenant name (the
/// `default` tenant's for an unassigned account, when it exists).
pub(crate) struct Owners {
    pub by_id: std::collections::HashMap<i64, String>,
    pub accounts: std::collections::HashMap<String, String>,
    pub default: Option<String>,
}

impl Owners {
    pub async fn read(record: &record::Store) -> Result<Owners, OpsError> {
        let tenants = record.directory.tenants().await?;
        let by_id: std::collections::HashMap<i64, String> =
            tenants.into_iter().map(|t| (t.id, t.name)).collect();
        let default = by_id.values().find(|n| *n == DEFAULT_TENANT).cloned();
        let accounts = record
            .directory
            .account_tenants()
            .await?
            .into_iter()
            .filter_map(|(a, id)| by_id.get(&id).map(|n| (a, n.clone())))
            .collect();
        Ok(Owners { by_id, accounts, default })
    }

    /// The tenant of a store account's copies.
    pub fn account(&self, account: &str) -> Option<&str> {
        self.accounts.get(account).or(self.default.as_ref()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sees_its_tenants_and_only_all_sees_what_has_none() {
        let acme = Scope::Tenants(vec!["acme".into()]);
        assert!(acme.sees(Some("acme")));
        assert!(!acme.sees(Some("other")));
        assert!(!acme.sees(None));
        assert!(Scope::All.sees(None) && Scope::All.sees(Some("other")));
        assert!(!Scope::Tenants(Vec::new()).sees(Some("acme")));
    }

    #[test]
    fn an_unassigned_account_is_the_default_tenants() {
        let owners = Owners {
            by_id: Default::default(),
            accounts: [("shopbox".to_string(), "shop".to_string())].into(),
            default: Some("default".into()),
        };
        assert_eq!(owners.account("shopbox"), Some("shop"));
        assert_eq!(owners.account("acme"), Some("default"));
        let none = Owners { default: None, ..owners };
        assert_eq!(none.account("acme"), None);
    }
}
