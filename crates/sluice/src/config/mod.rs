//! The TOML configuration. Every key is documented on its type (the doc
//! comments are read back through `schemars`: `describe.rs` lists every key
//! with its type, default and help, which `sluice init` writes out and
//! `sluice config print` walks); unknown keys are errors; command-line flags
//! override the file. With no file at all, the defaults run a complete local
//! sluice on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod delivery;
pub mod describe;
pub mod effective;
mod listeners;
pub mod template;
mod tenants;

pub use delivery::{
    DatabaseConfig, OutboundConfig, QuarantineConfig, QueueConfig, RelayConfig, SmartHostTls,
};
pub use listeners::{BareNewlines, HttpConfig, ImapConfig, ServerConfig, SmtpConfig, TlsConfig};
pub use tenants::{
    AccountConfig, DomainConfig, DomainMode, PolicyConfig, StreamTracking, TrackingConfig, WebhooksConfig,
};

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The server itself: data directory, host name, accepted domains, logs.
    pub server: ServerConfig,
    /// The SMTP listeners (MX and submission) and their limits.
    pub smtp: SmtpConfig,
    /// The certificate of every TLS listener (STARTTLS, IMAPS).
    pub tls: TlsConfig,
    /// The downstream system that receives every accepted inbound message.
    pub relay: RelayConfig,
    /// The durable queue: retries, expiry, held mail, delay warnings.
    pub queue: QueueConfig,
    /// The IMAP listener over the quarantine store.
    pub imap: ImapConfig,
    /// The quarantine store's retention sweeper.
    pub quarantine: QuarantineConfig,
    /// The HTTP listener: API, dashboard, tracking, `/metrics`.
    pub http: HttpConfig,
    /// How applications' mail leaves: VERP, smart host or MX, DKIM, limits.
    pub outbound: OutboundConfig,
    /// Where the record (tenants, keys, users, events, the store) is kept.
    pub database: DatabaseConfig,
    /// Store accounts, applied on `sluice serve` (same as `sluice account add`).
    pub accounts: Vec<AccountConfig>,
    /// Open and click tracking of application mail.
    pub tracking: TrackingConfig,
    /// `[provider_webhooks.ses]` and so on: the email providers whose
    /// webhooks `POST /v1/webhooks/{provider}` receives (none by default).
    pub provider_webhooks: std::collections::BTreeMap<String, crate::provider_hooks::ProviderWebhookConfig>,
    /// Webhooks out: how events are pushed to the endpoints tenants make
    /// with `/v1/webhook-endpoints`.
    pub webhooks: WebhooksConfig,
    /// Per-recipient policy defaults (the `config` level, below each
    /// tenant's `global`): the keys of `sluice policy set`.
    pub policy: PolicyConfig,
    /// `[domains."example.net"]`: how each inbound domain's mail is
    /// handled (`mode = "filter"`: scanned once, then each recipient's
    /// policy decides; a filter-mode domain is accepted from anyone).
    pub domains: std::collections::BTreeMap<String, DomainConfig>,
    /// `[spam]`: the filter-mode scan's outside parts (sender
    /// authentication's DNS, rspamd).
    pub spam: crate::spam_config::SpamConfig,
}

impl Config {
    /// The domains in filter mode, lower case.
    pub fn filter_domains(&self) -> std::collections::HashSet<String> {
        self.domains
            .iter()
            .filter(|(_, d)| d.mode == DomainMode::Filter)
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect()
    }
}

/// A listener on 127.0.0.1: every default is local until configured.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Config {
    /// The VERP domain: configured, or the hostname.
    pub fn bounce_domain(&self) -> String {
        self.outbound
            .bounce_domain
            .clone()
            .unwrap_or_else(|| self.server.hostname.clone())
            .to_ascii_lowercase()
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: Config = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// Opens the record the configuration names, its schema brought up to
    /// date; background writes wait while `busy` says so.
    pub async fn open_store_with(
        &self,
        busy: std::sync::Arc<dyn record::Busy>,
    ) -> anyhow::Result<record::Store> {
        let url = self.database.url()?;
        record::Store::connect(&url, &self.server.data, busy, self.database.connections)
            .await
            .with_context(|| format!("opening the database ({url})"))
    }

    /// As [`Config::open_store_with`], for a command that serves no mail.
    pub async fn open_store(&self) -> anyhow::Result<record::Store> {
        self.open_store_with(std::sync::Arc::new(record::NeverBusy)).await
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.hostname.is_empty() || self.server.hostname.contains(char::is_whitespace) {
            bail!("server.hostname must be a host name without spaces");
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            bail!("server.log_format must be \"text\" or \"json\"");
        }
        if let Some(level) = &self.server.log_level {
            log_filter(level).context("server.log_level")?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key must be given together");
        }
        self.database.url()?;
        if self.database.connections == 0 {
            bail!("database.connections must be at least 1");
        }
        if self.smtp.max_message_size < 1024 {
            bail!("smtp.max_message_size must be at least 1024 bytes");
        }
        for (key, v) in [
            ("smtp.max_recipients", self.smtp.max_recipients),
            ("smtp.max_connections", self.smtp.max_connections),
            ("smtp.max_connections_per_ip", self.smtp.max_connections_per_ip),
            ("relay.max_connections", self.relay.max_connections),
            ("queue.max_parallel", self.queue.max_parallel),
            ("imap.max_login_failures", self.imap.max_login_failures as usize),
            ("quarantine.sweep_interval_secs", self.quarantine.sweep_interval_secs as usize),
        ] {
            if v == 0 {
                bail!("{key} must be at least 1");
            }
        }
        if self.smtp.max_line_length < 512 {
            bail!("smtp.max_line_length must be at least 512 (RFC 5321)");
        }
        if self.imap.max_command_bytes < 1024 {
            bail!("imap.max_command_bytes must be at least 1024");
        }
        if let Some(host) = &self.relay.host {
            parse_host_port(host).with_context(|| "relay.host")?;
        }
        if let Some(host) = &self.outbound.smart_host {
            parse_host_port(host).with_context(|| "outbound.smart_host")?;
        }
        for (domain, host) in &self.outbound.mx_override {
            parse_host_port(host).with_context(|| format!("outbound.mx_override.{domain}"))?;
        }
        if self.outbound.smart_host_user.is_some() != self.outbound.smart_host_password_file.is_some() {
            bail!("outbound.smart_host_user and outbound.smart_host_password_file go together");
        }
        crate::provider_hooks::hooks(&self.provider_webhooks)?;
        self.webhooks.settings()?;
        self.policy.defaults()?;
        if let Some(url) = &self.tracking.base_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("tracking.base_url must be an http or https URL, not {url:?}");
        }
        if self.http.max_batch == 0 || self.outbound.max_connections_per_host == 0 {
            bail!("http.max_batch and outbound.max_connections_per_host must be at least 1");
        }
        Ok(())
    }
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:25`).
pub fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{s:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{s:?}: empty host");
    }
    Ok((host.to_string(), port))
}

/// A log level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing
/// EnvFilter directive (`info,sluice=debug`) as a filter. A lone word that
/// is no level is refused: EnvFilter would read it as a target and log
/// nothing else.
pub fn log_filter(level: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let word = !level.contains(['=', ',', '[', ':']);
    if level.trim().is_empty() || (word && !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())) {
        bail!("{level:?} is not a log level (error, warn, info, debug, trace) nor a filter directive");
    }
    tracing_subscriber::EnvFilter::try_new(level.trim())
        .map_err(|e| anyhow::anyhow!("{level:?} is not a log filter directive: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[smtp]\nlisten = \"127.0.0.1:25\"\nlistn = 1\n").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let cfg: Config = toml::from_str("[queue]\nretry_initial_secs = 2\n").unwrap();
        assert_eq!(cfg.queue.retry_initial_secs, 2);
        assert_eq!(cfg.smtp.listen.to_string(), "127.0.0.1:2525");
        let err = toml::from_str::<Config>("[http]\nlisten = \"localhost:80\"\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        cfg.validate().unwrap();
    }

    #[test]
    fn smart_host_tls_is_one_of_its_modes() {
        let cfg: Config = toml::from_str("[outbound]\nsmart_host_tls = \"implicit\"\n").unwrap();
        assert_eq!(cfg.outbound.smart_host_tls, SmartHostTls::Implicit);
        assert_eq!(Config::default().outbound.smart_host_tls, SmartHostTls::Opportunistic);
        let err = toml::from_str::<Config>("[outbound]\nsmart_host_tls = \"sometimes\"\n").unwrap_err();
        let err = err.to_string();
        assert!(err.contains("smart_host_tls") && err.contains("starttls"), "{err}");
    }

    #[test]
    fn log_level_is_a_level_or_a_directive() {
        for ok in ["warn", "DEBUG", "info,sluice=debug", "sqlx=warn"] {
            log_filter(ok).unwrap();
        }
        for bad in ["", "loud", "info,=x[", "warnn"] {
            assert!(log_filter(bad).is_err(), "{bad:?}");
        }
        let cfg: Config = toml::from_str("[server]\nlog_level = \"loud\"\n").unwrap();
        assert!(format!("{:#}", cfg.validate().unwrap_err()).contains("server.log_level"));
    }

    #[test]
    fn validation_names_the_key() {
        let cfg: Config = toml::from_str("[smtp]\nmax_recipients = 0\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("smtp.max_recipients"));
        assert_eq!(parse_host_port("[::1]:25").unwrap(), ("::1".to_string(), 25));
        assert!(parse_host_port("nohost").is_err());
    }

    #[test]
    fn policy_defaults_are_checked_and_name_the_key() {
        let cfg: Config = toml::from_str(
            "[policy]\nspam_threshold = 6.5\nblock_senders = [\"*.bulk.test\"]\nretention_days = { Spam = 14 }\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let e = record::policy::resolve(&cfg.policy.defaults().unwrap(), &[]);
        assert_eq!((e.spam_threshold(), e.retention_days("Spam")), (6.5, 14));
        let cfg: Config = toml::from_str("[policy]\nspam_acton = \"reject\"\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().starts_with("policy.spam_acton"));
        let cfg: Config = toml::from_str("[policy]\nunsure_threshold = 9.0\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("unsure_threshold"));
    }
}
