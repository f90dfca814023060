//! Filter mode's parts for `sluice serve`: the domains in filter mode, the
//! spam filter with the model `sluice spam train` keeps in the data
//! directory (read again when the file changes, so training applies
//! without a restart), and each recipient's policy (`record::policy`,
//! read per message).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use route::filter::{FilterMode, Scanner};

use crate::config::Config;

/// How often the model file is looked at for a newer version.
const MODEL_CHECK: Duration = Duration::from_secs(2);

/// Filter mode, when any domain is in it.
pub fn filter_mode(
    cfg: &Config,
    data: &Path,
    store: &record::Store,
    accounts: &route::tee::Accounts,
) -> anyhow::Result<Option<FilterMode>> {
    let domains = cfg.filter_domains();
    if domains.is_empty() {
        return Ok(None);
    }
    let path = data.join("spam-model.bin");
    let (filter, seen) = load(&path)?;
    if !filter.model.is_ready(&filter.params) {
        tracing::warn!(model = %path.display(), "the spam filter's Bayes model is not trained yet (`sluice spam train`): rules alone score the mail");
    }
    let scanner = Scanner::new(filter);
    tokio::spawn(reload(path, seen, scanner.clone()));
    let users = route::learn::UserModels::new(store.spam_tokens.clone(), scanner.clone());
    tracing::info!(domains = ?domains, "filter mode");
    Ok(Some(FilterMode {
        domains,
        scanner,
        policies: store.policies.clone(),
        defaults: Arc::new(cfg.policy.defaults()?),
        store: store.quarantine.clone(),
        accounts: accounts.clone(),
        users: Some(users),
    }))
}

/// The filter with the model at `path` (none yet: an empty model), and
/// the file's time.
fn load(path: &Path) -> anyhow::Result<(spam::Filter, Option<SystemTime>)> {
    let seen = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let counts = read_model(path)?;
    Ok((spam::Filter::new(spam::Model::new(counts)), seen))
}

/// Replaces the scanner's model whenever the file changes.
async fn reload(path: PathBuf, mut seen: Option<SystemTime>, scanner: Scanner) {
    loop {
        tokio::time::sleep(MODEL_CHECK).await;
        let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if now == seen {
            continue;
        }
        match load(&path) {
            Ok((filter, at)) => {
                scanner.replace(filter);
                seen = at;
                tracing::info!(model = %path.display(), "spam model reloaded");
            }
            Err(e) => tracing::warn!(model = %path.display(), error = %e, "spam model not reloaded"),
        }
    }
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
