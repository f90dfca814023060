//! `[server]`, `[smtp]`, `[tls]`, `[imap]`, `[http]`: the listeners and the server itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{default_hostname, loopback};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
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

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. Without cert and key, a self-signed certificate
    /// is generated into `DATA/tls/` on first start.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
    /// Seconds an address is refused after `max_login_failures`.
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

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
