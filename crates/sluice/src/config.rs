//! The TOML configuration. Every key is documented here; unknown keys are
//! errors; command-line flags override the file. With no file at all, the
//! defaults run a complete local sluice on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub smtp: SmtpConfig,
    pub tls: TlsConfig,
    pub relay: RelayConfig,
    pub queue: QueueConfig,
    pub imap: ImapConfig,
    pub quarantine: QuarantineConfig,
    pub http: HttpConfig,
    pub outbound: OutboundConfig,
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

/// `[domains."example.net"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub mode: DomainMode,
}

/// How a domain's inbound mail is handled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainMode {
    /// Relayed unchanged (and teed when a store account takes the domain).
    #[default]
    Relay,
    /// Scanned for spam; each recipient's policy decides deliver, tag,
    /// quarantine or reject (`route::filter`).
    Filter,
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

/// `[policy]`: the per-recipient policy's defaults for every tenant, keys
/// as `sluice policy set` takes them (`record::policy` lists them and their
/// built-in values), e.g. `spam_threshold = 6.0`, `unsure_action = "tag"`,
/// `block_senders = ["*.bulk.example"]`, `retention_days = { Spam = 14 }`.
/// A tenant's `global`, domain and address scopes override them.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct PolicyConfig(pub std::collections::BTreeMap<String, serde_json::Value>);

impl PolicyConfig {
    /// The defaults these keys make (an unknown key or a bad value names it).
    pub fn defaults(&self) -> anyhow::Result<record::policy::Defaults> {
        record::policy::Defaults::from_config(&self.0).map_err(|e| anyhow::anyhow!("policy.{e}"))
    }
}

/// `[[accounts]]`: one quarantine-store account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    /// File whose first line is the password (never the password itself).
    pub password_file: PathBuf,
    /// Domains whose copies this account receives.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Days copies are kept (default 30; Archive 365).
    pub retention_days: Option<i64>,
    /// Per-folder overrides, e.g. `{ "Human" = 7 }`.
    #[serde(default)]
    pub folder_retention_days: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the spool, database and generated certificate live.
    pub data: PathBuf,
    /// The name in the SMTP greeting and in trace headers.
    pub hostname: String,
    /// Domains whose mail is accepted from anyone (the MX role).
    pub accept_domains: Vec<String>,
    /// `text` (human-readable key=value) or `json` (one JSON object per line).
    pub log_format: String,
    /// `error`, `warn`, `info`, `debug`, `trace` or a tracing EnvFilter
    /// directive (`info,sluice=debug`); `--log-level` and SLUICE_LOG win.
    pub log_level: Option<String>,
    /// Where mail to `postmaster` and `abuse` goes when no relay is set: a
    /// store account (its copies land in that account's folders). Without
    /// either, such mail waits in the queue, visible, until one is set.
    pub postmaster: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data: PathBuf::from("./sluice-data"),
            hostname: default_hostname(),
            accept_domains: Vec::new(),
            log_format: "text".into(),
            log_level: None,
            postmaster: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The MX listener (an IP address and port).
    pub listen: SocketAddr,
    /// The authenticated submission listener.
    pub submission: SocketAddr,
    /// Largest message accepted, in bytes (SIZE; 552 5.3.4 beyond it).
    pub max_message_size: usize,
    /// Recipients per message (452 4.5.3 beyond it).
    pub max_recipients: usize,
    /// Concurrent connections over all clients (421 4.7.0 beyond it).
    pub max_connections: usize,
    /// Concurrent connections from one IP address (421 4.7.0 beyond it).
    pub max_connections_per_ip: usize,
    /// Seconds to wait for a command (421 4.4.2 after it).
    pub command_timeout_secs: u64,
    /// Seconds to wait for more DATA/BDAT bytes (421 4.4.2 after it).
    pub data_timeout_secs: u64,
    /// Longest command line in bytes (500 5.5.2 beyond it).
    pub max_line_length: usize,
    /// Rejected commands before the session is closed with 421 4.7.0.
    pub max_bad_commands: u32,
    /// Seconds sessions get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// What a bare LF or bare CR line end in DATA gets: `normalize` (accept;
    /// the spool and the store keep the exact bytes, the relay and outbound
    /// send CRLF, as Postfix does) or `reject` (550 5.6.0 at the end of
    /// DATA, like Postfix's `smtpd_forbid_bare_newline`).
    pub bare_newlines: BareNewlines,
}

/// `[outbound] smart_host_tls`: how to use TLS with the smart host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmartHostTls {
    /// Never, not even when offered (AUTH then goes in plain text).
    None,
    /// STARTTLS when offered.
    #[default]
    Opportunistic,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BareNewlines {
    #[default]
    Normalize,
    Reject,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        let l = ingress::Limits::default();
        SmtpConfig {
            listen: loopback(2525),
            submission: loopback(2587),
            max_message_size: l.max_message_size,
            max_recipients: l.max_recipients,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            command_timeout_secs: l.command_timeout.as_secs(),
            data_timeout_secs: l.data_timeout.as_secs(),
            max_line_length: l.max_line_length,
            max_bad_commands: l.max_bad_commands,
            shutdown_grace_secs: 30,
            bare_newlines: BareNewlines::Normalize,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. Without cert and key, a self-signed certificate
    /// is generated into `DATA/tls/` on first start.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `HOST:PORT` of the downstream system that receives every accepted
    /// inbound message. Without it, mail is only stored in the spool.
    pub host: Option<String>,
    /// Connections open to the downstream at once.
    pub max_connections: usize,
    /// Use STARTTLS when the downstream offers it (certificates not verified).
    pub starttls: bool,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    /// Wait for the reply after the message body.
    pub data_timeout_secs: u64,
    /// Idle pooled connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Messages sent over one connection before it is replaced.
    pub max_messages_per_connection: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            host: None,
            max_connections: 16,
            starttls: true,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            idle_timeout_secs: 30,
            max_messages_per_connection: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// First retry after this many seconds; the delay doubles per attempt.
    pub retry_initial_secs: u64,
    /// The retry delay never exceeds this.
    pub retry_max_secs: u64,
    /// Recipients still undelivered after this many seconds expire (DSN).
    pub max_age_secs: u64,
    /// Relay attempts running at once (copies and outbound mail have bounds of their own).
    pub max_parallel: usize,
    /// fsync the spool before acknowledging. Turn off only to measure it.
    pub fsync: bool,
    /// Seconds a dead letter (refused for good, no DSN possible) stays held
    /// before it is deleted, logged at WARN and counted (default 30 days);
    /// 0 keeps it until an operator releases or deletes it.
    pub held_retention_secs: u64,
    /// How long a relayed recipient that asked for `NOTIFY=DELAY` waits
    /// before its one delay DSN (default 4 hours, as Sendmail); 0 sends none.
    pub delay_warning_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_initial_secs: 60,
            retry_max_secs: 900,
            max_age_secs: 5 * 24 * 3600,
            max_parallel: 64,
            held_retention_secs: 30 * 24 * 3600,
            delay_warning_secs: 4 * 3600,
            fsync: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// The IMAP listener (STARTTLS).
    pub listen: SocketAddr,
    /// An implicit-TLS (IMAPS) listener, off unless set.
    pub imaps: Option<SocketAddr>,
    /// Allow LOGIN without TLS from loopback addresses. For development only:
    /// by default passwords are only accepted over TLS.
    pub plaintext_loopback: bool,
    /// Largest command in bytes, literals included (BAD [TOOBIG] beyond it).
    pub max_command_bytes: u32,
    /// Failed logins from one address before it is refused for `lockout_secs`.
    pub max_login_failures: u32,
    pub lockout_secs: u64,
    /// Seconds a client may stay connected without logging in.
    pub login_timeout_secs: u64,
    /// Seconds a logged-in session may stay silent (RFC 3501: at least 30
    /// minutes, so IDLE clients are not cut off).
    pub idle_timeout_secs: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: loopback(1143),
            imaps: None,
            plaintext_loopback: false,
            max_command_bytes: 64 * 1024,
            max_login_failures: 5,
            lockout_secs: 300,
            login_timeout_secs: 60,
            idle_timeout_secs: 30 * 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// How often the retention sweeper runs, in seconds.
    pub sweep_interval_secs: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig { sweep_interval_secs: 3600 }
    }
}

/// `[database]`: where the record (tenants, keys, users, suppressions,
/// events, the quarantine store) is kept. Each node's spool stays in its
/// own data directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH`, or `postgres://USER:PASS@HOST:PORT/DB` for state
    /// shared by many nodes. Default: `sluice.db` in the data directory.
    /// `--database` (or the `SLUICE_DATABASE` environment variable)
    /// overrides it.
    pub url: Option<String>,
    /// Connections to a database server, at most (PostgreSQL).
    pub connections: u32,
    /// Months of events kept besides the current one; older months are
    /// forgotten (PostgreSQL drops their partitions) by a running server.
    /// 0 (the default) keeps every event.
    pub event_retention_months: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, connections: 16, event_retention_months: 0 }
    }
}

impl DatabaseConfig {
    /// The parsed URL (SQLite in the data directory when none is set).
    pub fn url(&self) -> anyhow::Result<record::DatabaseUrl> {
        match &self.url {
            None => Ok(record::DatabaseUrl::Sqlite(None)),
            Some(u) => record::DatabaseUrl::parse(u).context("database.url"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The HTTP API listener.
    pub listen: SocketAddr,
    /// Largest request body in bytes (413 beyond it); base64 attachments
    /// take a third more than the message they make.
    pub max_body_bytes: usize,
    /// Messages in one `POST /v1/messages/batch`.
    pub max_batch: usize,
    /// Requests per second per tenant before 429 (0: no limit).
    pub rate_per_sec: u32,
    /// Seconds a request may take to arrive and be answered (408 after).
    pub request_timeout_secs: u64,
    /// The URL the API is reachable at from the internet (e.g.
    /// `https://mail.example.com`, behind a TLS proxy): with it, messages
    /// sent with `list_unsubscribe` carry an RFC 8058 one-click link.
    pub public_url: Option<String>,
    /// A file whose first line is the bearer token `/metrics` requires
    /// (`Authorization: Bearer TOKEN`); without it `/metrics` is open to
    /// whoever reaches the listener (docs/metrics.md).
    pub metrics_token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: loopback(8025),
            max_body_bytes: 40 * 1024 * 1024,
            max_batch: 500,
            rate_per_sec: 10_000,
            request_timeout_secs: 60,
            public_url: None,
            metrics_token_file: None,
        }
    }
}

/// `[tracking]`: open and click tracking of application mail. Nothing is
/// tracked until `base_url` names where sluice's HTTP listener is reached.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// The URL tracked links and the pixel point at (`https://t.example.com`,
    /// any host you point at sluice's HTTP listener, usually through a TLS
    /// proxy); `/t/c/TOKEN` and `/t/o/TOKEN` are served under it.
    pub base_url: Option<String>,
    /// Track opens when neither the send nor its stream says (false).
    pub opens: bool,
    /// Track clicks when neither the send nor its stream says (false).
    pub clicks: bool,
    /// Per stream defaults: `[tracking.streams.newsletter] opens = true`.
    pub streams: std::collections::BTreeMap<String, StreamTracking>,
    /// Take an open's or click's client address from the last
    /// `X-Forwarded-For` entry (set only behind a proxy of your own).
    pub trust_forwarded_for: bool,
}

/// `[tracking.streams.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamTracking {
    pub opens: Option<bool>,
    pub clicks: Option<bool>,
}

impl TrackingConfig {
    /// The policy the outbox decides by; `None` without a base URL.
    pub fn policy(&self) -> Option<outbound::tracking::Policy> {
        use outbound::tracking::{Policy, Track};
        let base_url = self.base_url.as_deref()?.trim_end_matches('/').to_string();
        let streams = self
            .streams
            .iter()
            .map(|(name, s)| (name.clone(), Track { opens: s.opens, clicks: s.clicks }))
            .collect();
        Some(Policy { base_url, default: Track { opens: self.opens, clicks: self.clicks }, streams })
    }
}

/// `[webhooks]`: webhooks out to the endpoints tenants make (Standard
/// Webhooks, signed, retried, claimed through the database on every node).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Seconds to wait after the 1st, 2nd, ... failed attempt, each moved
    /// by up to ±20 %; one attempt more than there are entries. Default 5,
    /// 300, 1800, 7200, 18000, then 36000 seven times: about three days.
    pub retry_schedule_secs: Vec<u64>,
    /// An endpoint whose every attempt has failed for this long is
    /// disabled (default 3 days); a 410 Gone disables it at once.
    pub disable_after_secs: u64,
    /// CIDR ranges webhooks may go to although they are loopback, private,
    /// link-local, unique-local, CGNAT, multicast or reserved (refused by
    /// default, checked after DNS), e.g. `["10.20.0.0/16"]`.
    pub allow_destinations: Vec<String>,
    /// Days the per-attempt delivery log is kept.
    pub delivery_log_days: u32,
    /// Attempts in flight at once on this node.
    pub workers: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            retry_schedule_secs: api::webhooks_out::DEFAULT_SECS.to_vec(),
            disable_after_secs: 3 * 24 * 3600,
            allow_destinations: Vec::new(),
            delivery_log_days: 30,
            workers: 32,
        }
    }
}

impl WebhooksConfig {
    /// The dispatcher's settings, checked (the error names the key).
    pub fn settings(&self) -> anyhow::Result<api::webhooks_out::Settings> {
        let guard = api::webhooks_out::Guard::new(&self.allow_destinations)
            .map_err(|e| anyhow::anyhow!("webhooks.allow_destinations: {e}"))?;
        if self.retry_schedule_secs.is_empty() || self.retry_schedule_secs.contains(&0) {
            bail!("webhooks.retry_schedule_secs must list at least one delay, each at least 1 second");
        }
        for (key, v) in [
            ("webhooks.disable_after_secs", self.disable_after_secs),
            ("webhooks.delivery_log_days", u64::from(self.delivery_log_days)),
            ("webhooks.workers", self.workers as u64),
        ] {
            if v == 0 {
                bail!("{key} must be at least 1");
            }
        }
        Ok(api::webhooks_out::Settings {
            schedule: api::webhooks_out::Schedule::from_secs(&self.retry_schedule_secs),
            disable_after: std::time::Duration::from_secs(self.disable_after_secs),
            guard: std::sync::Arc::new(guard),
            log_days: self.delivery_log_days,
            workers: self.workers,
        })
    }
}

/// `[outbound]`: how applications' mail leaves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// The domain of VERP return paths (`bounce+TOKEN@DOMAIN`); the MX
    /// listener accepts it. Default: the server's hostname.
    pub bounce_domain: Option<String>,
    /// The local part before `+`.
    pub bounce_local: String,
    /// `HOST:PORT` of a smart host that takes all outbound mail; without
    /// one, mail goes to each recipient domain's MX.
    pub smart_host: Option<String>,
    /// `none`, `opportunistic` (STARTTLS when offered), `starttls`
    /// (required) or `implicit` (TLS from the start, port 465).
    pub smart_host_tls: SmartHostTls,
    /// Verify the smart host's certificate (system CAs) with `starttls`/`implicit`.
    pub smart_host_verify: bool,
    pub smart_host_user: Option<String>,
    /// File whose first line is the smart host password.
    pub smart_host_password_file: Option<PathBuf>,
    /// Static routes: domain (or `*`) to `HOST:PORT`, tried before DNS.
    pub mx_override: std::collections::BTreeMap<String, String>,
    /// DKIM key files of earlier versions, `DOMAIN/SELECTOR.pem` (default:
    /// DATA/dkim): imported into the database at start, where keys live now.
    pub dkim_dir: Option<PathBuf>,
    /// Connections open at once per destination host.
    pub max_connections_per_host: usize,
    /// Messages per second per recipient domain (0: no limit).
    pub rate_per_domain: u32,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            bounce_domain: None,
            bounce_local: "bounce".into(),
            smart_host: None,
            smart_host_tls: SmartHostTls::Opportunistic,
            smart_host_verify: true,
            smart_host_user: None,
            smart_host_password_file: None,
            mx_override: Default::default(),
            dkim_dir: None,
            max_connections_per_host: 8,
            rate_per_domain: 0,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
        }
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
