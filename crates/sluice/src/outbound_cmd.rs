//! Operator commands of the outbound path: API keys, the suppression list,
//! and `sluice track`, which answers "did that email reach X, and if not,
//! why?" from the record (safe beside a running server: SQLite in WAL mode).

use record::Store;
use record::directory::Tenant;
use record::events::EventRow;

use crate::cli::{ApikeyCommand, DkimCommand, SuppressCommand};
use crate::{Common, load_config};

async fn open(common: &Common) -> anyhow::Result<Store> {
    let cfg = load_config(common)?;
    std::fs::create_dir_all(&cfg.server.data)?;
    cfg.open_store().await
}

pub async fn apikey(cmd: ApikeyCommand) -> anyhow::Result<i32> {
    match cmd {
        ApikeyCommand::Create { tenant, common } => {
            let store = open(&common).await?;
            let key = store.directory.create_api_key(&tenant).await?;
            store.close().await;
            eprintln!("API key for tenant {tenant} (shown once; only its hash is stored):");
            println!("{key}");
        }
        ApikeyCommand::List { tenant, common } => {
            let store = open(&common).await?;
            for (prefix, created, revoked) in store.directory.api_keys(&tenant).await? {
                let state =
                    revoked.map(|r| format!("revoked {}", time(r))).unwrap_or_else(|| "active".into());
                println!("{prefix}...  created {}  {state}", time(created));
            }
            store.close().await;
        }
        ApikeyCommand::Revoke { prefix, tenant, common } => {
            let store = open(&common).await?;
            let n = store.directory.revoke_api_key(&tenant, prefix.trim_end_matches('.')).await?;
            store.close().await;
            if n == 0 {
                eprintln!("no active key of tenant {tenant} starts with {prefix}");
                return Ok(1);
            }
            println!("revoked {n} key(s)");
        }
    }
    Ok(0)
}

pub async fn suppress(cmd: SuppressCommand) -> anyhow::Result<i32> {
    match cmd {
        SuppressCommand::List { tenant, common } | SuppressCommand::Export { tenant, common } => {
            let store = open(&common).await?;
            let t = store.directory.tenant(&tenant).await?;
            println!("address,reason,source,created_at,expires_at");
            let mut cursor: Option<String> = None;
            loop {
                let page = store.suppressions.suppressions(&t, cursor.as_deref(), 10_000).await?;
                for s in &page {
                    println!(
                        "{},{},{},{},{}",
                        api::csv(&s.address),
                        api::csv(&s.reason),
                        s.source,
                        time(s.created_at),
                        s.expires_at.map(time).unwrap_or_default()
                    );
                }
                match page.last() {
                    Some(l) if page.len() == 10_000 => cursor = Some(l.address.clone()),
                    _ => break,
                }
            }
            store.close().await;
        }
        SuppressCommand::Add { address, tenant, reason, expires, common } => {
            anyhow::ensure!(
                outbound::outbox::valid_address(&address),
                "not a valid email address: {address}"
            );
            let expires = match expires {
                Some(e) => Some(chrono::DateTime::parse_from_rfc3339(&e)?.timestamp_millis()),
                None => None,
            };
            let store = open(&common).await?;
            let t = store.directory.tenant(&tenant).await?;
            let s = store.suppressions.suppress(&t, &address, &reason, expires).await?;
            store.close().await;
            println!("suppressed {} ({})", s.address, s.reason);
        }
        SuppressCommand::Remove { address, tenant, common } => {
            let store = open(&common).await?;
            let t = store.directory.tenant(&tenant).await?;
            let removed = store.suppressions.unsuppress(&t, &address).await?;
            store.close().await;
            if !removed {
                eprintln!("{address} was not suppressed");
                return Ok(1);
            }
            println!("{address} is no longer suppressed");
        }
    }
    Ok(0)
}

fn time(ms: i64) -> String {
    vocabulary::time::rfc3339_ms(ms)
}

fn event_line(e: &EventRow) -> String {
    let mut line = format!("  {}  {:<12}", time(e.at), e.kind.as_str());
    if let Some(a) = &e.address {
        line.push_str(&format!(" {a}"));
    }
    if let Some(r) = &e.reason {
        line.push_str(&format!("  reason={r}"));
    }
    if let Some(c) = e.smtp_code {
        line.push_str(&format!("  {c}"));
        if let Some(s) = &e.smtp_status {
            line.push_str(&format!(" {s}"));
        }
        if let Some(t) = &e.smtp_text {
            line.push_str(&format!(" {}", t.chars().take(160).collect::<String>()));
        }
    }
    if let Some(r) = &e.remote {
        line.push_str(&format!("  via {r}"));
    }
    if let Some(t) = &e.tls {
        line.push_str(&format!(" ({t})"));
    }
    line.push_str(&detail_words(e.detail.as_deref()));
    line
}

/// An event's detail as `key=value` words (where a copy was filed, who
/// sent a received message), for a person.
fn detail_words(detail: Option<&str>) -> String {
    let Some(serde_json::Value::Object(fields)) = detail.and_then(|d| serde_json::from_str(d).ok()) else {
        return String::new();
    };
    let mut words = String::new();
    for (k, v) in fields {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) if s.is_empty() => {}
            serde_json::Value::String(s) => words.push_str(&format!("  {k}={s}")),
            v => words.push_str(&format!("  {k}={v}")),
        }
    }
    words
}

/// `sluice track MESSAGE|ADDRESS`: a message (our queue id or its
/// Message-ID, sent or received) with each recipient's status and
/// timeline, or an address's history.
pub async fn track(
    target: String,
    tenant: Option<String>,
    json: bool,
    common: Common,
) -> anyhow::Result<i32> {
    let store = open(&common).await?;
    let result = track_in(&store, &target, tenant.as_deref(), json).await;
    store.close().await;
    result
}

async fn track_in(store: &Store, target: &str, tenant: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let tenants: Vec<Tenant> = match tenant {
        Some(t) => vec![store.directory.tenant(t).await?],
        None => store.directory.tenants().await?,
    };
    if let Some((t, id)) = store.events.find_message(target).await?
        && tenants.contains(&t)
        && let Some(m) = store.events.message(&t, &id, None).await?
    {
        if json {
            println!("{}", serde_json::to_string_pretty(&api::view::Message::from(m))?);
            return Ok(0);
        }
        println!("message {} ({}, tenant {})", m.id, m.direction.as_str(), t.name);
        println!("  Message-ID: <{}>", m.message_id.as_deref().unwrap_or(""));
        println!("  from {}  subject {:?}", m.from, m.subject.as_deref().unwrap_or(""));
        for r in &m.recipients {
            println!(
                "{} ({}): {}{}",
                r.address,
                r.kind,
                r.status,
                r.reason.as_deref().map(|x| format!(" ({x})")).unwrap_or_default()
            );
            for e in &r.events {
                println!("{}", event_line(e));
            }
        }
        return Ok(0);
    }
    let mut found = false;
    for t in &tenants {
        let h = store.events.recipient(t, target, None, None, 200).await?;
        if h.events.is_empty() && h.suppression.is_none() {
            continue;
        }
        found = true;
        if json {
            println!("{}", serde_json::to_string_pretty(&api::view::History::from(h))?);
            continue;
        }
        println!("{} (tenant {})", h.address, t.name);
        if let Some(s) = &h.suppression {
            println!("  SUPPRESSED since {}: {} ({})", time(s.created_at), s.reason, s.source);
        }
        for e in h.events.iter().rev() {
            println!("{}  message {}", event_line(e), e.message);
        }
    }
    if !found {
        eprintln!("nothing recorded for {target}");
        return Ok(1);
    }
    Ok(0)
}

pub async fn dkim(cmd: DkimCommand) -> anyhow::Result<i32> {
    match cmd {
        DkimCommand::Generate { domain, selector, algorithm, common } => {
            let algorithm = match algorithm.as_str() {
                "rsa" => deliver::dkim::Algorithm::RsaSha256,
                "ed25519" => deliver::dkim::Algorithm::Ed25519Sha256,
                other => anyhow::bail!("--algorithm must be rsa or ed25519, not {other:?}"),
            };
            let key = deliver::dkim::generate(&domain, &selector, algorithm)?;
            let store = open(&common).await?;
            let stored = record::directory::DkimKey {
                domain: key.domain.clone(),
                selector: key.selector.clone(),
                pem: key.private_key_pem.clone(),
                created_at: record::events::now_ms(),
            };
            let added = store.directory.add_dkim_key(&stored).await?;
            store.close().await;
            if !added {
                eprintln!(
                    "{domain} has a key by selector {selector} already (it may be the one in DNS): none made"
                );
                return Ok(1);
            }
            eprintln!("private key stored in the database (every node signs with it from now on)");
            eprintln!("publish this TXT record:");
            let txt = deliver::dkim::txt_strings(&key.dns_value);
            let quoted: Vec<String> = txt.iter().map(|s| format!("\"{s}\"")).collect();
            println!("{} IN TXT {}", key.dns_name, quoted.join(" "));
        }
        DkimCommand::List { common } => {
            let store = open(&common).await?;
            for k in store.directory.dkim_keys().await? {
                println!("{}  {}  created {}", k.domain, k.selector, time(k.created_at));
            }
            store.close().await;
        }
        DkimCommand::Remove { domain, selector, common } => {
            let domain = deliver::dkim::check_name("domain", &domain)?;
            let selector = deliver::dkim::check_name("selector", &selector)?;
            let store = open(&common).await?;
            let removed = store.directory.remove_dkim_key(&domain, &selector).await?;
            store.close().await;
            if !removed {
                eprintln!("{domain} has no key by selector {selector}");
                return Ok(1);
            }
            println!("removed {selector}._domainkey.{domain}");
        }
        DkimCommand::Import { dir, common } => {
            let store = open(&common).await?;
            let done = sluice::outbound_wiring::import_dkim_dir(&dir, store.directory.as_ref()).await;
            store.close().await;
            println!("imported {} key(s)", done?);
        }
    }
    Ok(0)
}
