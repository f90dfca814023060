//! The recipients' `retention_days.FOLDER` policies, as the store's sweep
//! takes them: days per folder id.
//!
//! A store account named by an address (`alice@example.net`) is that
//! user's: the user's effective policy applies to its folders. An account
//! that takes whole domains applies each domain's policy; when its domains
//! disagree, the longest wins (mail is never dropped sooner than one of
//! them asked). Only a level above the built-in value counts: without
//! one, the store's own retention (`sluice account retention`) decides.

use std::collections::HashMap;

use record::policy::{self, Defaults, Key, Level, Scope, Value};
use record::quarantine::Retention;

/// Each folder's days where a policy sets them, read fresh for a sweep
/// (a policy change applies at the next sweep, on every node).
pub async fn policy_retention(
    store: &record::Store,
    defaults: &Defaults,
) -> Result<Retention, policy::PolicyError> {
    let default_tenant = store.directory.tenant(crate::inbound::DEFAULT_TENANT).await?.id;
    let tenants: HashMap<String, i64> = store.directory.account_tenants().await?.into_iter().collect();
    let mut domains: HashMap<String, Vec<String>> = HashMap::new();
    for (domain, account) in store.quarantine.domain_accounts().await? {
        domains.entry(account).or_default().push(domain);
    }
    let mut retention = Retention::new();
    for account in store.quarantine.accounts().await? {
        let tenant = tenants.get(&account).copied().unwrap_or(default_tenant);
        let scopes: Vec<Scope> = match Scope::parse(&account) {
            Ok(user @ Scope::User(_)) => vec![user],
            _ => domains.remove(&account).unwrap_or_default().into_iter().map(Scope::Domain).collect(),
        };
        let mut effective = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            effective.push(policy::effective_at(store.policies.as_ref(), tenant, defaults, scope).await?);
        }
        for folder in store.quarantine.folders(&account).await? {
            let key = Key::RetentionDays(folder.name.clone());
            let days = effective
                .iter()
                .filter_map(|e| e.settings.get(&key))
                .filter(|s| s.level != Level::Default)
                .filter_map(|s| match s.value {
                    Value::Days(d) => Some(d),
                    _ => None,
                })
                .max();
            if let Some(days) = days {
                retention.insert(folder.id, days);
            }
        }
    }
    Ok(retention)
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::quarantine::MessageMeta;

    async fn file(store: &record::Store, account: &str, folder: &str, at: i64) {
        let meta = MessageMeta { received_at: at, ..MessageMeta::default() };
        store
            .quarantine
            .store(account, folder, format!("{account}{folder}{at}").as_bytes(), &meta)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn each_user_and_domain_account_sweeps_by_its_own_policy() {
        let dir = tempfile::tempdir().unwrap();
        let store = record::Store::open(dir.path()).await.unwrap();
        let q = &store.quarantine;
        q.add_account("alice@example.net", "pw", &[]).await.unwrap();
        q.add_account("bob@example.net", "pw", &[]).await.unwrap();
        q.add_account("shop", "pw", &["example.org".to_string(), "example.com".to_string()]).await.unwrap();
        let day = 86_400;
        for account in ["alice@example.net", "bob@example.net", "shop"] {
            file(&store, account, "Spam", 100 * day).await;
        }
        let tenant = store.directory.tenant(crate::inbound::DEFAULT_TENANT).await.unwrap().id;
        let defaults = Defaults::builtin();
        let set = |scope: &str, days: i64| {
            let scope = Scope::parse(scope).unwrap();
            let store = &store;
            let defaults = &defaults;
            async move {
                let key = Key::parse("retention_days.Spam").unwrap();
                policy::set(store.policies.as_ref(), tenant, defaults, &scope, key, Value::Days(days))
                    .await
                    .unwrap()
            }
        };
        set("example.net", 7).await;
        set("alice@example.net", 2).await;
        set("example.org", 3).await;
        set("example.com", 5).await;
        let retention = policy_retention(&store, &defaults).await.unwrap();
        let spam = |a: &'static str| async move { q.folder(a, "Spam").await.unwrap().unwrap().id };
        assert_eq!(retention.get(&spam("alice@example.net").await), Some(&2), "the user's own");
        assert_eq!(retention.get(&spam("bob@example.net").await), Some(&7), "the domain's");
        assert_eq!(retention.get(&spam("shop").await), Some(&5), "the longest of the account's domains");
        // Day 104: alice's 2 days and shop's... 5 are not past for shop.
        let swept = q.sweep(104 * day, &retention).await.unwrap();
        assert_eq!(swept.messages, 1, "alice's copy only");
        let swept = q.sweep(106 * day, &retention).await.unwrap();
        assert_eq!(swept.messages, 1, "shop's copy");
        let swept = q.sweep(108 * day, &retention).await.unwrap();
        assert_eq!(swept.messages, 1, "bob's copy");
        store.close().await;
    }

    #[tokio::test]
    async fn without_a_policy_the_store_decides() {
        let dir = tempfile::tempdir().unwrap();
        let store = record::Store::open(dir.path()).await.unwrap();
        store.quarantine.add_account("carol@example.net", "pw", &[]).await.unwrap();
        file(&store, "carol@example.net", "Spam", 0).await;
        let retention = policy_retention(&store, &Defaults::builtin()).await.unwrap();
        assert!(retention.is_empty(), "{retention:?}");
        store.close().await;
    }
}
