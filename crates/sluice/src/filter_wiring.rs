//! Filter mode's parts for `sluice serve`: the domains in filter mode, the
//! spam filter with the global model `sluice spam train` keeps in the
//! record (read again when its stamp moves, so training applies without a
//! restart, on every node), and each recipient's policy
//! (`record::policy`, read per message).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use record::spam_tokens::{GLOBAL, SpamTokens};

use route::filter::{FilterMode, Scanner};

use crate::config::Config;

/// How often the record is asked whether the global model was trained.
const MODEL_CHECK: Duration = Duration::from_secs(2);

/// Filter mode, when any domain is in it.
pub async fn filter_mode(
    cfg: &Config,
    data: &Path,
    store: &record::Store,
    accounts: &route::tee::Accounts,
) -> anyhow::Result<Option<FilterMode>> {
    let domains = cfg.filter_domains();
    if domains.is_empty() {
        return Ok(None);
    }
    let tokens = store.spam_tokens.clone();
    import_model_file(tokens.as_ref(), &data.join("spam-model.bin")).await?;
    let seen = tokens.stamp(GLOBAL).await?;
    let filter = load(tokens.as_ref()).await?;
    if !filter.model.is_ready(&filter.params) {
        tracing::warn!(
            "the spam filter's Bayes model is not trained yet (`sluice spam train`): rules alone score the mail"
        );
    }
    let scanner = Scanner::new(filter);
    tokio::spawn(reload(tokens, seen, scanner.clone()));
    let users = route::learn::UserModels::new(store.spam_tokens.clone(), scanner.clone());
    let rspamd = rspamd(cfg)?;
    tracing::info!(domains = ?domains, rspamd = rspamd.as_ref().map(|r| r.url()), "filter mode");
    Ok(Some(FilterMode {
        domains,
        scanner,
        policies: store.policies.clone(),
        defaults: Arc::new(cfg.policy.defaults()?),
        store: store.quarantine.clone(),
        accounts: accounts.clone(),
        users: Some(users),
        rspamd,
        auth: authenticator(cfg)?,
    }))
}

/// Sender authentication, when `[spam] authenticate` is on: a name server
/// that is not an address is a configuration error; a system without a
/// DNS configuration of its own runs without it, at WARN.
fn authenticator(cfg: &Config) -> anyhow::Result<Option<Arc<route::authenticate::Authenticator>>> {
    if !cfg.spam.authenticate {
        return Ok(None);
    }
    let id = cfg.spam.authserv_id.as_deref().unwrap_or(&cfg.server.hostname);
    match route::authenticate::Authenticator::new(&cfg.spam.dns, id) {
        Ok(a) => Ok(Some(Arc::new(a))),
        Err(e) if cfg.spam.dns.is_empty() => {
            tracing::warn!(error = %e, "sender authentication is off: set [spam] dns");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("[spam] dns: {e}")),
    }
}

/// The rspamd client, when `[spam] rspamd_url` is set.
fn rspamd(cfg: &Config) -> anyhow::Result<Option<route::rspamd::Rspamd>> {
    let Some(url) = cfg.spam.rspamd_url.as_deref().filter(|u| !u.trim().is_empty()) else { return Ok(None) };
    let timeout = Duration::from_millis(cfg.spam.rspamd_timeout_ms.max(1));
    route::rspamd::Rspamd::new(url.trim(), timeout).map(Some).map_err(|e| anyhow::anyhow!("[spam] {e}"))
}

/// The filter with the record's global model.
async fn load(tokens: &dyn SpamTokens) -> anyhow::Result<spam::Filter> {
    let counts = route::learn::counts_of(tokens.load_counts(GLOBAL).await?);
    Ok(spam::Filter::new(spam::Model::new(counts)))
}

/// Replaces the scanner's model whenever training moves the stamp.
async fn reload(tokens: Arc<dyn SpamTokens>, mut seen: Option<i64>, scanner: Scanner) {
    loop {
        tokio::time::sleep(MODEL_CHECK).await;
        let now = match tokens.stamp(GLOBAL).await {
            Ok(now) if now != seen => now,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the global spam model's stamp could not be read");
                continue;
            }
        };
        match load(tokens.as_ref()).await {
            Ok(filter) => {
                scanner.replace(filter);
                seen = now;
                tracing::info!("spam model reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "spam model not reloaded"),
        }
    }
}

/// A model an earlier version trained into the data directory's file is
/// moved into the record once (when the record has none), and the file
/// renamed so it is not imported twice.
async fn import_model_file(tokens: &dyn SpamTokens, path: &Path) -> anyhow::Result<()> {
    if !path.exists() || tokens.stamp(GLOBAL).await?.is_some() {
        return Ok(());
    }
    let counts = read_model(path)?;
    tokens.add_counts(GLOBAL, &route::learn::record_of(&counts), false).await?;
    std::fs::rename(path, path.with_extension("bin.imported"))?;
    tracing::warn!(model = %path.display(), ham = counts.ham, spam = counts.spam, "the spam model file was moved into the record");
    Ok(())
}

/// Reads a model file; a missing file is an empty model (the filter then
/// gives no Bayes opinion until trained).
pub fn read_model(path: &Path) -> anyhow::Result<spam::Counts> {
    use anyhow::Context;
    match std::fs::File::open(path) {
        Ok(f) => spam::Counts::read_from(&mut std::io::BufReader::new(f))
            .with_context(|| format!("reading the model {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(spam::Counts::default()),
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}
