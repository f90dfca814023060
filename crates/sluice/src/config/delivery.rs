//! `[relay]`, `[queue]`, `[quarantine]`, `[database]`, `[outbound]`: where mail and state go.

use std::path::PathBuf;

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[outbound] smart_host_tls`: how to use TLS with the smart host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
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

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `HOST:PORT` of the downstream system that receives every accepted
    /// inbound message. Without it, mail is only stored in the spool.
    pub host: Option<String>,
    /// Connections open to the downstream at once.
    pub max_connections: usize,
    /// Use STARTTLS when the downstream offers it (certificates not verified).
    pub starttls: bool,
    /// Seconds to wait for the downstream to accept a connection.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the reply to a command.
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

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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

/// `[outbound]`: how applications' mail leaves.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
    /// The user name for AUTH at the smart host (with `smart_host_password_file`).
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
    /// Seconds to wait for a destination to accept a connection.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the reply to a command.
    pub command_timeout_secs: u64,
    /// Seconds to wait for the reply after the message body.
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
