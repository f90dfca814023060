//! Operator commands of the store and the directory: submission users
//! (`sluice user`), store accounts (`sluice account`) and the store's
//! upkeep (`sluice quarantine sweep`). Each refuses what does not exist
//! rather than reporting success for it.

use anyhow::Context;
use clap::Subcommand;
use record::Store;

use crate::{Common, load_config};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (or set a new password).
    Add {
        name: String,
        /// File holding the password (first line); `-` for standard input.
        #[arg(long)]
        password_file: String,
        /// The user submits for this tenant: the outbound path (suppression, record, VERP).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List users.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove a user: it can no longer log in to submit.
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Add an account (or set a new password) and the domains whose copies it receives.
    Add {
        name: String,
        /// File holding the password (first line); `-` for standard input.
        #[arg(long)]
        password_file: String,
        /// Domain whose quarantined copies go to this account (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List accounts: name, tenant, the domains whose copies each takes.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove an account with everything it holds: its copies, folders
    /// and domains (a running server stops teeing to it within a minute).
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Make an account's domains' inbound mail a tenant's: its events are
    /// that tenant's to see (`sluice track`, `/v1/events`). Unassigned
    /// inbound mail is the `default` tenant's.
    Tenant {
        name: String,
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set how many days copies are kept, for the whole account or one
    /// folder (an account or folder that does not exist is refused).
    Retention {
        name: String,
        days: i64,
        /// Only this folder (e.g. `Human`); otherwise the account's default.
        #[arg(long)]
        folder: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Delete messages past their retention, and their bytes.
    Sweep {
        /// Sweep as if it were this time (RFC 3339) instead of now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print what would be deleted (per account and folder), delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Re-inject a quarantined message to the recipients of the original.
    Release {
        account: String,
        /// Folder, e.g. `Bounces/Hard`.
        folder: String,
        uid: i64,
        #[command(flatten)]
        common: Common,
    },
}

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
