//! Ingress: the ESMTP listeners (MX and submission). Bytes come in, complete
//! messages go to a [`Sink`] (the durable queue), and every client gets an
//! answer with an enhanced status code.

pub mod framing;
mod server;
mod session;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use vocabulary::{Envelope, QueueId, Reply};

pub use server::{Listener, serve};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A complete message as received, ready to be made durable.
pub struct Accepted {
    pub id: QueueId,
    pub envelope: Envelope,
    /// Our `Received:` header, CRLF-terminated, prepended only when relaying.
    pub trace: String,
    /// The content exactly as the client sent it (dot-unstuffed).
    pub content: Vec<u8>,
    /// The TLS version the client used (`TLSv1.3`), if any.
    pub tls: Option<String>,
}

/// Where accepted messages go. `accept` resolves only when the message is
/// durable; its error is the reply the client gets.
pub trait Sink: Send + Sync + 'static {
    fn accept(&self, msg: Accepted) -> BoxFuture<'_, Result<(), Reply>>;

    /// At RCPT TO from an authenticated submission `user`: the refusal of
    /// `rcpt` (a tenant's suppressed address, or a lookup that failed), or
    /// `None` to accept it. Never asked on the MX listener.
    fn check_rcpt<'a>(&'a self, user: &'a str, rcpt: &'a str) -> BoxFuture<'a, Option<Reply>> {
        let _ = (user, rcpt);
        Box::pin(async { None })
    }
}

/// Checks submission credentials: whether they match, or the reply to give
/// when they cannot be checked now (RFC 4954 §6: `454 4.7.0`, a temporary
/// failure the client retries, never counted as a wrong password).
pub trait Authenticator: Send + Sync + 'static {
    fn verify<'a>(&'a self, user: &'a str, password: &'a str) -> BoxFuture<'a, Result<bool, Reply>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Inbound MX: accepts mail for the configured domains from anyone.
    Mx,
    /// Submission: requires AUTH (over TLS) and then relays anywhere.
    Submission,
}

impl ListenerKind {
    /// Its name in logs and metrics: `mx`, `submission`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Mx => "mx",
            ListenerKind::Submission => "submission",
        }
    }
}

/// A refusal (a reply of 400 or more) counted for Prometheus by listener
/// and code (`docs/metrics.md`).
pub(crate) fn count_refusal(kind: ListenerKind, code: u16) {
    if code >= 400 {
        metrics::counter!("sluice_smtp_refusals_total", "listener" => kind.as_str(), "code" => code.to_string())
            .increment(1);
    }
}

/// The protocol limits; each is answered with its own reply code.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub max_line_length: usize,
    pub max_bad_commands: u32,
    /// Refuse content with bare LF or bare CR line ends at the end of DATA
    /// (like Postfix's `smtpd_forbid_bare_newline`) instead of accepting it
    /// and normalizing it on the wire.
    pub reject_bare_newlines: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 1000,
            max_connections: 10_000,
            max_connections_per_ip: 200,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_line_length: 2048,
            max_bad_commands: 20,
            reject_bare_newlines: false,
        }
    }
}

pub struct SessionConfig {
    pub hostname: String,
    pub kind: ListenerKind,
    /// Lower-case domains accepted from anyone.
    pub accept_domains: HashSet<String>,
    pub limits: Limits,
    pub tls: Option<TlsAcceptor>,
    pub sink: Arc<dyn Sink>,
    pub auth: Arc<dyn Authenticator>,
}

impl SessionConfig {
    pub fn accepts(&self, domain: &str) -> bool {
        self.accept_domains.contains(domain)
    }

    /// A recipient anyone may send to: an accepted domain, or this host's
    /// own `postmaster` (RFC 5321 §4.5.1) and `abuse` (RFC 2142).
    pub fn accepts_rcpt(&self, address: &str) -> bool {
        let domain = vocabulary::domain_of(address);
        if self.accepts(&domain) {
            return true;
        }
        let Some((local, _)) = address.rsplit_once('@') else { return false };
        domain.eq_ignore_ascii_case(&self.hostname) && vocabulary::is_role_local(local)
    }
}
