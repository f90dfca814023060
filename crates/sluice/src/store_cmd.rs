//! Operator commands of the store and the directory: submission users
//! (`sluice user`), store accounts (`sluice account`) and the store's
//! upkeep (`sluice quarantine sweep`). Each refuses what does not exist
//! rather than reporting success for it.

use anyhow::Context;
use record::Store;

use crate::cli::{AccountCommand, UserCommand};
use crate::{Common, load_config};

async fn open(common: &Common) -> anyhow::Result<(crate::Config, Store)> {
    let cfg = load_config(common)?;
    std::fs::create_dir_all(&cfg.server.data)?;
    let store = cfg.open_store().await?;
    Ok((cfg, store))
}

pub async fn user(cmd: UserCommand) -> anyhow::Result<i32> {
    match cmd {
        UserCommand::Add { name, password_file, tenant, common } => {
            let password = crate::read_password(&password_file)?;
            let (_, store) = open(&common).await?;
            store.directory.set_user(&name, &password).await?;
            if let Some(t) = &tenant {
                store.directory.set_user_tenant(&name, t).await?;
            }
            store.close().await;
            println!("user {name} saved");
        }
        UserCommand::List { common } => {
            let (_, store) = open(&common).await?;
            for u in store.directory.users().await? {
                println!("{u}");
            }
            store.close().await;
        }
        UserCommand::Remove { name, common } => {
            let (_, store) = open(&common).await?;
            let gone = store.directory.remove_user(&name).await;
            store.close().await;
            if !gone? {
                eprintln!("no user {name}");
                return Ok(1);
            }
            println!("user {name} removed");
        }
    }
    Ok(0)
}

pub async fn account(cmd: AccountCommand) -> anyhow::Result<i32> {
    match cmd {
        AccountCommand::Add { name, password_file, domains, common } => {
            let password = crate::read_password(&password_file)?;
            let (_, store) = open(&common).await?;
            store.quarantine.add_account(&name, &password, &domains).await?;
            store.close().await;
            println!("account {name} saved");
        }
        AccountCommand::List { common } => {
            let (_, store) = open(&common).await?;
            let listed = list_accounts(&store).await;
            store.close().await;
            for line in listed? {
                println!("{line}");
            }
        }
        AccountCommand::Remove { name, common } => {
            let (_, store) = open(&common).await?;
            let gone = store.quarantine.remove_account(&name).await;
            store.close().await;
            let Some(swept) = gone? else {
                eprintln!("no account {name}");
                return Ok(1);
            };
            println!("account {name} removed with {} message(s), {} blob(s)", swept.messages, swept.blobs);
        }
        AccountCommand::Tenant { name, tenant, common } => {
            let (_, store) = open(&common).await?;
            let done = store.directory.set_account_tenant(&name, &tenant).await;
            store.close().await;
            done?;
            println!("account {name}: inbound mail of its domains belongs to tenant {tenant}");
        }
        AccountCommand::Retention { name, days, folder, common } => {
            let (_, store) = open(&common).await?;
            let done = store.quarantine.set_retention(&name, folder.as_deref(), days).await;
            store.close().await;
            done?;
            println!(
                "{name}{}: copies kept {days} day(s)",
                folder.map(|f| format!("/{f}")).unwrap_or_default()
            );
        }
    }
    Ok(0)
}

/// `NAME  tenant=T  domains=a,b` per account, by name.
async fn list_accounts(store: &Store) -> anyhow::Result<Vec<String>> {
    let tenants: std::collections::HashMap<i64, String> =
        store.directory.tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
    let owners: std::collections::HashMap<String, i64> =
        store.directory.account_tenants().await?.into_iter().collect();
    let mut domains: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (domain, account) in store.quarantine.domain_accounts().await? {
        domains.entry(account).or_default().push(domain);
    }
    Ok(store
        .quarantine
        .accounts()
        .await?
        .into_iter()
        .map(|a| {
            let tenant = owners.get(&a).and_then(|id| tenants.get(id)).map_or("default", String::as_str);
            let mut ds = domains.remove(&a).unwrap_or_default();
            ds.sort();
            format!("{a}\ttenant={tenant}\tdomains={}", ds.join(","))
        })
        .collect())
}

/// `sluice quarantine sweep`: the recipients' retention policies, then
/// the sweep (or, dry, what it would take).
pub async fn sweep(as_of: Option<String>, dry_run: bool, common: Common) -> anyhow::Result<i32> {
    let as_of = match as_of {
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .with_context(|| format!("--as-of {t:?} is not RFC 3339"))?
            .timestamp(),
        None => chrono::Utc::now().timestamp(),
    };
    let (cfg, store) = open(&common).await?;
    let done = async {
        let retention = route::retention::policy_retention(&store, &cfg.policy.defaults()?).await?;
        if dry_run {
            let would = store.quarantine.expired(as_of, &retention).await?;
            for (account, folder, n) in &would {
                println!("{account}/{folder}: {n} message(s)");
            }
            println!("would sweep {} message(s); nothing deleted", would.iter().map(|w| w.2).sum::<u64>());
        } else {
            let swept = store.quarantine.sweep(as_of, &retention).await?;
            println!("swept {} message(s), {} blob(s)", swept.messages, swept.blobs);
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    done.map(|()| 0)
}
