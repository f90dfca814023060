//! Wiring of the outbound path: the VERP key, where mail goes next (smart
//! host, static routes, MX), the outbound and feedback transports, and the
//! submission sink that sends a tenant's mail through the outbox.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use deliver::dkim::{self, DkimKeys};
use deliver::mx::{MxResolver, Overrides};
use deliver::rate::RateLimiter;
use deliver::smtp::{Credentials, Destination, TlsMode};
use outbound::transport::Pace;
use outbound::{NextHop, Signer};
use queue::BoxFuture;
use vocabulary::Reply;

use crate::config::{Config, SmartHostTls, parse_host_port};

/// The VERP/token HMAC key every node shares, kept in the record's
/// database: the first node to start decides it. A `verp.key` file that
/// an earlier version left in the data directory is what a single node
/// offers first, so the tokens it handed out stay valid; a node whose file
/// disagrees with the database uses the database's (and says so).
pub async fn verp_key(data: &Path, directory: &dyn record::Directory) -> anyhow::Result<Vec<u8>> {
    let path = data.join("verp.key");
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().as_bytes().to_vec();
            anyhow::ensure!(key.len() >= 32, "{} is too short to be a key", path.display());
            Some(key)
        }
        Err(_) => None,
    };
    let made = match &file {
        Some(key) => key.clone(),
        None => format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()).into_bytes(),
    };
    let key = directory.secret("verp", &made).await.context("reading the VERP key")?;
    if file.is_some_and(|f| f != key) {
        tracing::warn!(file = %path.display(), "the VERP key file differs from the shared key: the shared key is used");
    }
    Ok(key)
}

/// Smart host, or the static routes and then the domain's MX (DNS).
pub struct Hops {
    smart: Option<Destination>,
    mx: MxResolver,
}

impl Hops {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let o = &cfg.outbound;
        let smart = match &o.smart_host {
            Some(h) => {
                let (host, port) = parse_host_port(h)?;
                let tls = match o.smart_host_tls {
                    SmartHostTls::Starttls => TlsMode::Required { verify: o.smart_host_verify },
                    SmartHostTls::Implicit => TlsMode::Implicit { verify: o.smart_host_verify },
                    SmartHostTls::None | SmartHostTls::Opportunistic => TlsMode::Opportunistic,
                };
                let mut d = Destination::new(host, port).with_tls(tls);
                if let (Some(user), Some(file)) = (&o.smart_host_user, &o.smart_host_password_file) {
                    let text = std::fs::read_to_string(file).with_context(|| {
                        format!("outbound.smart_host_password_file: reading {}", file.display())
                    })?;
                    let password = text.lines().next().unwrap_or("").to_string();
                    anyhow::ensure!(!password.is_empty(), "outbound.smart_host_password_file is empty");
                    let mut c = Credentials::new(user.clone(), password);
                    if o.smart_host_tls == SmartHostTls::None {
                        c = c.allow_plaintext();
                    }
                    d = d.with_auth(c);
                }
                Some(d)
            }
            None => None,
        };
        let mut routes = Overrides::new();
        for (domain, h) in &o.mx_override {
            routes
                .insert(domain, &[h.as_str()])
                .map_err(|e| anyhow::anyhow!("outbound.mx_override.{domain}: {e}"))?;
        }
        Ok(Hops { smart, mx: MxResolver::new(routes) })
    }
}

impl NextHop for Hops {
    fn resolve<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Destination>, Reply>> {
        Box::pin(async move {
            if let Some(s) = &self.smart {
                return Ok(vec![s.clone()]);
            }
            self.mx.resolve(domain).await.map_err(|e| e.reply())
        })
    }

    fn is_smart_host(&self) -> bool {
        self.smart.is_some()
    }
}

/// DKIM: the keys in the database (every node signs with the same ones),
/// read again whenever they change on any node; a message is signed with
/// the key of its From header's domain (DMARC alignment), else of the
/// sender's.
pub struct Dkim(std::sync::RwLock<Arc<DkimKeys>>);

impl Dkim {
    /// The stored keys, kept fresh by a task until the server stops.
    pub async fn load(directory: Arc<dyn record::Directory>) -> Arc<Dkim> {
        let me = Arc::new(Dkim(std::sync::RwLock::new(Arc::new(stored_keys(directory.as_ref()).await))));
        let weak = Arc::downgrade(&me);
        let mut changes = directory.changes();
        tokio::spawn(async move {
            loop {
                record::directory::next_change(&mut changes, std::time::Duration::from_secs(60)).await;
                let Some(me) = weak.upgrade() else { return };
                let keys = Arc::new(stored_keys(directory.as_ref()).await);
                *me.0.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
        });
        me
    }
}

/// The database's DKIM keys; a key that cannot sign is named in a warning
/// and left out (the others still sign).
async fn stored_keys(directory: &dyn record::Directory) -> DkimKeys {
    let mut keys = DkimKeys::default();
    match directory.dkim_keys().await {
        Ok(stored) => {
            for k in stored {
                if let Err(e) = keys.insert_pem(&k.domain, &k.selector, k.pem.as_bytes()) {
                    tracing::warn!(key = ?k, error = %e, "a stored DKIM key cannot sign: mail of its domain goes unsigned by it");
                }
            }
            tracing::info!(keys = ?keys, "DKIM keys loaded");
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the DKIM keys: the ones in use stay"),
    }
    keys
}

/// Moves the keys an earlier version kept as files (`DIR/DOMAIN/SELECTOR.pem`)
/// into the database, where every node finds them. A selector the database
/// already has keeps the database's key (and a differing file is named).
/// How many keys were stored.
pub async fn import_dkim_dir(dir: &Path, directory: &dyn record::Directory) -> anyhow::Result<usize> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut imported = 0;
    let stored = directory.dkim_keys().await.context("reading the DKIM keys")?;
    for (domain, selector, pem, path) in dkim::read_dir(dir)? {
        let pem = String::from_utf8(pem).with_context(|| format!("{} is not PEM text", path.display()))?;
        DkimKeys::default().insert_pem(&domain, &selector, pem.as_bytes())?;
        match stored.iter().find(|k| k.domain == domain && k.selector == selector) {
            Some(k) if k.pem.trim() != pem.trim() => tracing::warn!(
                file = %path.display(), "a DKIM key file differs from the database's key by that selector: the database's is used"
            ),
            Some(_) => {}
            None => {
                let key = record::directory::DkimKey {
                    domain,
                    selector,
                    pem,
                    created_at: record::events::now_ms(),
                };
                directory.add_dkim_key(&key).await.context("storing a DKIM key")?;
                tracing::info!(key = ?key, file = %path.display(), "DKIM key file imported into the database");
                imported += 1;
            }
        }
    }
    Ok(imported)
}

impl Signer for Dkim {
    fn sign(&self, domain: &str, content: &[u8]) -> Option<String> {
        let from = dkim::from_domain(content);
        let keys = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        keys.sign(from.as_deref().unwrap_or(domain), content)
    }

    fn has_keys(&self) -> bool {
        !self.0.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Per recipient domain rate limits.
pub struct Paced(pub RateLimiter);

impl Pace for Paced {
    fn wait<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.acquire(domain))
    }
}
