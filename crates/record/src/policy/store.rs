//! The policy store ([`Policies`]) and what reads and writes through it.

use serde_json::Value as Json;

use super::simulate::Replay;
use super::{
    Change, Defaults, Effective, FilterRecord, Key, PolicyError, PolicyRow, Scope, Simulation, Value,
    check_change, layers_for, resolve,
};
use crate::{BoxFuture, RecordError};

type Res<'a, T> = BoxFuture<'a, Result<T, RecordError>>;

/// The policy store: each tenant's rows (`policy_sql.rs`, both backends),
/// and the decisions filter mode recorded, for [`simulate`].
pub trait Policies: Send + Sync + 'static {
    /// The tenant's rows at these scopes (stored forms, [`Scope::as_str`]),
    /// in one query: read for every message (on SQLite, kept until a write
    /// from any process says they changed: `policy_cache.rs`), so a change
    /// applies to the next one on every node.
    fn policy_rows<'a>(&'a self, tenant: i64, scopes: &'a [&'a str]) -> Res<'a, Vec<PolicyRow>>;
    /// Sets these keys of a scope (and unsets those with no value), in one
    /// transaction. Values are checked by the caller ([`set`]).
    fn set_policy<'a>(
        &'a self,
        tenant: i64,
        scope: &'a str,
        values: &'a [(String, Option<Json>)],
    ) -> Res<'a, ()>;
    /// Unsets a key of a scope, or all its keys; how many rows went.
    fn unset_policy<'a>(&'a self, tenant: i64, scope: &'a str, key: Option<&'a str>) -> Res<'a, u64>;
    /// The tenant's rows at one scope, or at every scope, by scope and key.
    fn list_policy<'a>(&'a self, tenant: i64, scope: Option<&'a str>) -> Res<'a, Vec<PolicyRow>>;
    /// Up to `limit` `filtered` events of the tenant from `from` (ms) up
    /// to `to`, with event ids above `after`, by id (a page; the last id
    /// is the next page's `after`).
    fn filter_records(
        &self,
        tenant: i64,
        from: i64,
        to: i64,
        after: i64,
        limit: u32,
    ) -> Res<'_, Vec<(i64, FilterRecord)>>;
}

/// The rows that decide for any of `addresses` (one tenant's), in one
/// query: `global`, their domains and themselves. [`effective_in`] then
/// resolves each address from them.
pub async fn rows_for(
    store: &dyn Policies,
    tenant: i64,
    addresses: &[&str],
) -> Result<Vec<PolicyRow>, PolicyError> {
    let mut scopes = std::collections::BTreeSet::from(["global".to_string()]);
    for a in addresses {
        // An address that is not one is refused by `effective_in`.
        if let Ok((d, u)) = Scope::of_address(a) {
            scopes.extend([d.as_str().to_string(), u.as_str().to_string()]);
        }
    }
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    Ok(store.policy_rows(tenant, &scopes).await?)
}

/// The effective policy of `address` from `rows` ([`rows_for`]).
pub fn effective_in(
    rows: &[PolicyRow],
    defaults: &Defaults,
    address: &str,
) -> Result<Effective, PolicyError> {
    let (_, u) = Scope::of_address(address)?;
    Ok(resolve(defaults, &layers_for(rows, &u)))
}

/// The effective policy of a recipient, read from the store now.
pub async fn effective_for(
    store: &dyn Policies,
    tenant: i64,
    defaults: &Defaults,
    address: &str,
) -> Result<Effective, PolicyError> {
    let (d, u) = Scope::of_address(address)?;
    let rows = store.policy_rows(tenant, &["global", d.as_str(), u.as_str()]).await?;
    Ok(resolve(defaults, &layers_for(&rows, &u)))
}

/// The effective policy at a scope (an address's, a domain's, global's).
pub async fn effective_at(
    store: &dyn Policies,
    tenant: i64,
    defaults: &Defaults,
    scope: &Scope,
) -> Result<Effective, PolicyError> {
    let d = match scope {
        Scope::User(a) => a.rsplit_once('@').map(|(_, d)| d.to_string()),
        Scope::Domain(d) => Some(d.clone()),
        Scope::Global => None,
    };
    let mut scopes = vec!["global"];
    scopes.extend(d.as_deref());
    scopes.push(scope.as_str());
    let rows = store.policy_rows(tenant, &scopes).await?;
    Ok(resolve(defaults, &layers_for(&rows, scope)))
}

/// Applies `change` to `scope` once it is checked against every scope of
/// the tenant ([`check_change`]).
pub async fn apply(
    store: &dyn Policies,
    tenant: i64,
    defaults: &Defaults,
    scope: &Scope,
    change: &Change,
) -> Result<u64, PolicyError> {
    let rows = store.list_policy(tenant, None).await?;
    check_change(defaults, &rows, scope, change)?;
    if change.unset_all {
        return Ok(store.unset_policy(tenant, scope.as_str(), None).await?);
    }
    let values: Vec<(String, Option<Json>)> =
        change.set.iter().map(|(k, v)| (k.name(), v.as_ref().map(Value::to_json))).collect();
    store.set_policy(tenant, scope.as_str(), &values).await?;
    Ok(values.len() as u64)
}

/// Sets one key ([`apply`]).
pub async fn set(
    store: &dyn Policies,
    tenant: i64,
    defaults: &Defaults,
    scope: &Scope,
    key: Key,
    value: Value,
) -> Result<(), PolicyError> {
    apply(store, tenant, defaults, scope, &Change { set: vec![(key, Some(value))], unset_all: false })
        .await?;
    Ok(())
}

/// Recorded decisions read at once by [`simulate_days`].
const SIMULATE_PAGE: u32 = 20_000;

/// Replays the last `days` days of recorded decisions (up to `now`) against
/// `key` set to `value` at `scope` ([`simulate`]).
#[allow(clippy::too_many_arguments)]
pub async fn simulate_days(
    store: &dyn Policies,
    tenant: i64,
    defaults: &Defaults,
    scope: &Scope,
    key: Key,
    value: Value,
    days: u32,
    now: i64,
) -> Result<Simulation, PolicyError> {
    let (from, to) = (now.saturating_sub(i64::from(days) * 86_400_000), now.saturating_add(1));
    let rows = store.list_policy(tenant, None).await?;
    let change = Change { set: vec![(key, Some(value))], unset_all: false };
    // Page by page, so a busy tenant's month is never all in memory.
    let mut replay = Replay::new(defaults, &rows, scope, &change);
    let mut after = 0;
    loop {
        let page = store.filter_records(tenant, from, to, after, SIMULATE_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        replay.add(page.iter().map(|(_, r)| r));
    }
    let mut sim = replay.finish();
    sim.refused = check_change(defaults, &rows, scope, &change).err().map(|e| e.to_string());
    Ok(sim)
}
