//! `sluice operator add|list`: the web dashboard's operators (`record::operators`).
//! The password is read from a file (never a flag, which `ps` shows);
//! an operator sees every tenant unless `--tenant` grants it some.

use std::path::PathBuf;

use anyhow::Context;
use record::Store;

use crate::cli::OperatorCommand;
use crate::{Common, load_config};

async fn open(common: &Common) -> anyhow::Result<Store> {
    let cfg = load_config(common)?;
    std::fs::create_dir_all(&cfg.server.data)?;
    cfg.open_store().await
}

/// The first line of `path`, without its line end.
fn read_password(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(!line.is_empty(), "{} holds no password", path.display());
    Ok(line)
}

pub async fn run(cmd: OperatorCommand) -> anyhow::Result<i32> {
    match cmd {
        OperatorCommand::Add { name, password_file, tenants, common } => {
            let password = read_password(&password_file)?;
            let store = open(&common).await?;
            let mut ids = Vec::new();
            for t in &tenants {
                ids.push(store.directory.tenant(t).await.with_context(|| format!("tenant {t}"))?.id);
            }
            let grants = (!tenants.is_empty()).then_some(ids.as_slice());
            store.operators.set_operator(&name, &password, grants).await?;
            store.close().await;
            let sees = if tenants.is_empty() { "every tenant".to_string() } else { tenants.join(", ") };
            eprintln!("operator {name} sees {sees}");
        }
        OperatorCommand::List { common } => {
            let store = open(&common).await?;
            let names: std::collections::HashMap<i64, String> =
                store.directory.tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
            for op in store.operators.operators().await? {
                let sees = if op.all_tenants {
                    "*".to_string()
                } else {
                    let list: Vec<String> = op
                        .tenants
                        .iter()
                        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
                        .collect();
                    list.join(",")
                };
                println!("{}\t{sees}", op.name);
            }
            store.close().await;
        }
    }
    Ok(0)
}
