//! `sluice policy`: a tenant's per-recipient policy (`record::policy` says
//! the keys, their built-in values and how the levels resolve), read and
//! written in the record, so a running server (every node) applies a change
//! to the next message. The configuration's `[policy]` is the `config`
//! level, below the tenant's `global`.

use anyhow::Context;
use record::Store;
use record::policy::{self, Change, Defaults, Key, PolicyError, Scope};

use crate::cli::PolicyCommand;
use crate::{Common, load_config};

/// A policy error as the CLI says it (the API's field is the message's head).
fn say(e: PolicyError) -> anyhow::Error {
    anyhow::anyhow!(e.to_string())
}

/// The store and the `[policy]` defaults of `common`'s configuration.
async fn open(common: &Common) -> anyhow::Result<(Store, Defaults)> {
    let cfg = load_config(common)?;
    let defaults = cfg.policy.defaults()?;
    if cfg.database.url()? == record::DatabaseUrl::Sqlite(None) {
        std::fs::create_dir_all(&cfg.server.data)?;
    }
    Ok((cfg.open_store().await?, defaults))
}

pub async fn run(command: PolicyCommand) -> anyhow::Result<i32> {
    let common = match &command {
        PolicyCommand::Get { common, .. }
        | PolicyCommand::Set { common, .. }
        | PolicyCommand::Unset { common, .. }
        | PolicyCommand::Explain { common, .. }
        | PolicyCommand::Simulate { common, .. } => common.clone(),
    };
    let (store, defaults) = open(&common).await?;
    let result = run_in(&store, &defaults, command).await;
    store.close().await;
    result
}

async fn run_in(store: &Store, defaults: &Defaults, command: PolicyCommand) -> anyhow::Result<i32> {
    let p = &*store.policies;
    match command {
        PolicyCommand::Get { scope, key, tenant, json, .. } => {
            let scope = Scope::parse(&scope).map_err(say)?;
            let key = key.map(|k| Key::parse(&k)).transpose().map_err(say)?;
            let t = store.directory.tenant(&tenant).await?;
            let rows = p.list_policy(t.id, Some(scope.as_str())).await?;
            let rows: Vec<_> =
                rows.into_iter().filter(|r| key.as_ref().is_none_or(|k| r.key == k.name())).collect();
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                for r in &rows {
                    let shown = Key::parse(&r.key).and_then(|k| k.value_from_json(&r.value));
                    match shown {
                        Ok(v) => println!("{} {v}", r.key),
                        Err(_) => println!("{} {}", r.key, r.value),
                    }
                }
            }
            if let Some(k) = key
                && rows.is_empty()
            {
                let e = policy::effective_at(p, t.id, defaults, &scope).await.map_err(say)?;
                let s = &e.settings.get(&k).map(|s| format!("{} from {}", s.value, s.level));
                eprintln!(
                    "{k} is not set at {scope} (effective: {})",
                    s.clone().unwrap_or_else(|| k.builtin().to_string())
                );
                return Ok(1);
            }
            Ok(0)
        }
        PolicyCommand::Set { scope, key, value, tenant, .. } => {
            let scope = Scope::parse(&scope).map_err(say)?;
            let k = Key::parse(&key).map_err(say)?;
            let v = k.value_from_text(&value).map_err(say)?;
            let t = store.directory.tenant(&tenant).await?;
            policy::set(p, t.id, defaults, &scope, k.clone(), v.clone()).await.map_err(say)?;
            println!("{k} {v} at {scope} (tenant {})", t.name);
            Ok(0)
        }
        PolicyCommand::Unset { scope, key, tenant, .. } => {
            let scope = Scope::parse(&scope).map_err(say)?;
            let k = Key::parse(&key).map_err(say)?;
            let t = store.directory.tenant(&tenant).await?;
            let set = p.list_policy(t.id, Some(scope.as_str())).await?;
            if !set.iter().any(|r| r.key == k.name()) {
                eprintln!("{k} is not set at {scope} (tenant {})", t.name);
                return Ok(1);
            }
            let change = Change { set: vec![(k.clone(), None)], unset_all: false };
            policy::apply(p, t.id, defaults, &scope, &change).await.map_err(say)?;
            println!("{k} unset at {scope} (tenant {})", t.name);
            Ok(0)
        }
        PolicyCommand::Explain { address, tenant, json, .. } => {
            let scope = Scope::parse(&address).map_err(say)?;
            let t = store.directory.tenant(&tenant).await?;
            let e = policy::effective_at(p, t.id, defaults, &scope).await.map_err(say)?;
            if json {
                println!("{}", serde_json::to_string(&e.to_json())?);
            } else {
                for line in policy::explain(&e) {
                    println!("{line}");
                }
            }
            Ok(0)
        }
        PolicyCommand::Simulate { scope, key, value, days, tenant, json, .. } => {
            let scope = Scope::parse(&scope).map_err(say)?;
            let k = Key::parse(&key).map_err(say)?;
            let v = k.value_from_text(&value).map_err(say)?;
            anyhow::ensure!(days >= 1, "--days must be at least 1");
            let t = store.directory.tenant(&tenant).await?;
            let now = record::events::now_ms();
            let sim = policy::simulate_days(p, t.id, defaults, &scope, k.clone(), v.clone(), days, now)
                .await
                .map_err(say)
                .with_context(|| format!("simulating {k} {v} at {scope}"))?;
            if json {
                println!("{}", serde_json::to_string(&sim)?);
            } else {
                println!("{k} {v} at {scope}, over the last {days} days (tenant {}):", t.name);
                for line in sim.lines() {
                    println!("{line}");
                }
            }
            Ok(0)
        }
    }
}
