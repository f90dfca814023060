//! The outbound SMTP client: one pool of connections per destination, reused
//! across messages, capped at `max_connections` each. A transaction pipelines
//! MAIL/RCPT(/DATA) when the server offers PIPELINING, sends BDAT when it
//! offers CHUNKING (exact bytes, no stuffing), upgrades with STARTTLS when
//! offered, and returns one reply per recipient.
//!
//! Each [`Destination`] says how to use TLS ([`TlsMode`]: opportunistic for
//! MX hosts, required or implicit for smart hosts) and may carry
//! [`Credentials`] for AUTH PLAIN/LOGIN, so one client serves MX delivery and
//! authenticated relays alike; the whole destination is the pool key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use conn::Stream;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use vocabulary::Reply;

use crate::tls::{Connectors, opportunistic_connector};
use crate::wire::{Caps, Parsed, dot_stuff, parse_reply};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our name for EHLO.
    pub helo: String,
    /// Connections open at once per destination (idle and busy).
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// Wait for each reply.
    pub command_timeout: Duration,
    /// Wait for the reply after the message body.
    pub data_timeout: Duration,
    /// Idle pooled connections older than this are closed.
    pub idle_timeout: Duration,
    /// Use STARTTLS when offered. Opportunistic: certificates are not verified
    /// (downstream relays commonly present self-signed certificates).
    pub starttls: bool,
    pub max_messages_per_connection: usize,
}

/// Where to send, and how. Also the key of the connection pool, so two
/// destinations share connections only if they agree on TLS and credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// AUTH after EHLO (and after TLS); `None` sends no AUTH.
    pub auth: Option<Credentials>,
}

impl Destination {
    /// An MX host or an unauthenticated relay: opportunistic STARTTLS, no AUTH.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Destination { host: host.into(), port, tls: TlsMode::Opportunistic, auth: None }
    }

    pub fn with_tls(mut self, tls: TlsMode) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_auth(mut self, credentials: Credentials) -> Self {
        self.auth = Some(credentials);
        self
    }
}

/// How a connection gets (or does without) TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// STARTTLS when offered and [`ClientConfig::starttls`] is set, without
    /// verifying the certificate; plaintext otherwise (RFC 7435). For MX hosts.
    #[default]
    Opportunistic,
    /// STARTTLS must be offered and succeed, else the attempt fails
    /// temporarily. `verify` checks the certificate chain and name; leave it
    /// off for relays with self-signed certificates.
    Required { verify: bool },
    /// TLS from the first byte ("submissions", port 465, RFC 8314).
    Implicit { verify: bool },
}

/// AUTH credentials for a smart host. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Send the credentials over a connection without TLS. Off by default:
    /// PLAIN and LOGIN are readable by anyone on the path.
    pub allow_plaintext: bool,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { username: username.into(), password: password.into(), allow_plaintext: false }
    }

    /// Allows AUTH without TLS (e.g. a relay on the loopback interface).
    pub fn allow_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

pub struct OutboundMessage<'a> {
    /// Reverse path; empty for the null sender.
    pub mail_from: &'a str,
    pub rcpts: &'a [&'a str],
    pub smtputf8: bool,
    pub eight_bit: bool,
    /// Sent concatenated, byte for byte (e.g. our trace header, then the original).
    pub content: &'a [&'a [u8]],
    /// The sender's DSN requests (RFC 3461), passed on when the server
    /// offers DSN.
    pub dsn: Option<DsnParams<'a>>,
}

/// RET/ENVID of the MAIL command and NOTIFY/ORCPT of each RCPT, in the
/// order of `OutboundMessage::rcpts`.
#[derive(Default)]
pub struct DsnParams<'a> {
    pub ret: Option<vocabulary::dsn::Ret>,
    pub envid: Option<&'a str>,
    pub rcpts: Vec<(Option<vocabulary::dsn::Notify>, Option<&'a str>)>,
}

impl DsnParams<'_> {
    fn mail(&self) -> String {
        let mut out = String::new();
        if let Some(ret) = self.ret {
            out.push_str(&format!(" RET={}", ret.as_str()));
        }
        if let Some(envid) = self.envid {
            out.push_str(&format!(" ENVID={}", vocabulary::dsn::xtext(envid)));
        }
        out
    }

    fn rcpt(&self, i: usize) -> String {
        let mut out = String::new();
        let Some((notify, orcpt)) = self.rcpts.get(i) else { return out };
        if let Some(n) = notify {
            out.push_str(&format!(" NOTIFY={}", n.param()));
        }
        if let Some(o) = orcpt {
            out.push_str(&format!(" ORCPT=rfc822;{}", vocabulary::dsn::xtext(o)));
        }
        out
    }
}

pub struct Attempt {
    pub remote: String,
    pub tls: Option<String>,
    /// The downstream offered DSN (RFC 3461), so the sender's requests were
    /// passed on and it reports from here on.
    pub dsn: bool,
    pub outcome: Outcome,
}

pub enum Outcome {
    /// One reply per recipient, in order.
    PerRecipient(Vec<Reply>),
    /// The whole attempt failed; the reply applies to every recipient.
    Failed(Reply),
}

/// Why a connection-level step failed.
#[derive(Debug)]
enum ConnError {
    /// The server answered, but not with what we needed.
    Reply(Reply),
    Io(String),
    Timeout(&'static str),
    Malformed,
}

impl ConnError {
    fn into_reply(self) -> Reply {
        match self {
            ConnError::Reply(r) => r,
            ConnError::Io(e) => Reply::new(451, "4.4.2", format!("connection lost: {e}")),
            ConnError::Timeout(what) => Reply::new(451, "4.4.2", format!("timeout waiting for {what}")),
            ConnError::Malformed => Reply::new(451, "4.5.0", "malformed reply from the server"),
        }
    }
}

struct Connection {
    stream: Stream,
    rbuf: Vec<u8>,
    caps: Caps,
    tls: Option<String>,
    remote: String,
    messages: usize,
}

impl Connection {
    async fn read_reply(&mut self, timeout: Duration, what: &'static str) -> Result<Reply, ConnError> {
        loop {
            match parse_reply(&self.rbuf) {
                Parsed::Reply(r, used) => {
                    self.rbuf.drain(..used);
                    return Ok(r);
                }
                Parsed::Malformed => return Err(ConnError::Malformed),
                Parsed::Incomplete if self.rbuf.len() > 64 * 1024 => return Err(ConnError::Malformed),
                Parsed::Incomplete => {}
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ConnError::Timeout(what))?
                .map_err(|e| ConnError::Io(e.to_string()))?;
            if n == 0 {
                return Err(ConnError::Io("closed by the server".into()));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ConnError> {
        tokio::time::timeout(timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ConnError::Timeout("write"))?
        .map_err(|e| ConnError::Io(e.to_string()))
    }

    async fn command(
        &mut self,
        line: &str,
        timeout: Duration,
        what: &'static str,
    ) -> Result<Reply, ConnError> {
        self.write(line.as_bytes(), timeout).await?;
        self.read_reply(timeout, what).await
    }

    async fn ehlo(&mut self, helo: &str, timeout: Duration) -> Result<(), ConnError> {
        let r = self.command(&format!("EHLO {helo}\r\n"), timeout, "EHLO reply").await?;
        if r.is_positive() {
            self.caps = Caps::from_ehlo(&r);
            return Ok(());
        }
        let r = self.command(&format!("HELO {helo}\r\n"), timeout, "HELO reply").await?;
        if !r.is_positive() {
            return Err(ConnError::Reply(r));
        }
        self.caps = Caps::default();
        Ok(())
    }

    async fn open(dest: &Destination, cfg: &ClientConfig, tls: &Connectors) -> Result<Connection, ConnError> {
        let addr = format!("{}:{}", dest.host, dest.port);
        let tcp = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| ConnError::Timeout("connect"))?
            .map_err(|e| {
                ConnError::Reply(Reply::new(451, "4.4.1", format!("cannot connect to {addr}: {e}")))
            })?;
        let _ = tcp.set_nodelay(true);
        let remote = tcp.peer_addr().map(|a| a.to_string()).unwrap_or(addr);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            caps: Caps::default(),
            tls: None,
            remote,
            messages: 0,
        };
        if let TlsMode::Implicit { verify } = dest.tls {
            conn.start_tls(dest, tls.get(verify).map_err(ConnError::Reply)?, verify, cfg.command_timeout)
                .await?;
        }
        let greeting = conn.read_reply(cfg.command_timeout, "greeting").await?;
        if !greeting.is_positive() {
            return Err(ConnError::Reply(greeting));
        }
        conn.ehlo(&cfg.helo, cfg.command_timeout).await?;
        match dest.tls {
            TlsMode::Opportunistic if cfg.starttls && conn.caps.starttls => {
                let r = conn.command("STARTTLS\r\n", cfg.command_timeout, "STARTTLS reply").await?;
                if r.code == 220 {
                    conn.start_tls(dest, &tls.any, false, cfg.command_timeout).await?;
                    conn.ehlo(&cfg.helo, cfg.command_timeout).await?;
                }
            }
            TlsMode::Opportunistic | TlsMode::Implicit { .. } => {}
            TlsMode::Required { verify } => {
                if !conn.caps.starttls {
                    return Err(ConnError::Reply(Reply::new(
                        451,
                        "4.7.4",
                        format!("TLS is required but {} does not offer STARTTLS", dest.host),
                    )));
                }
                let connector = tls.get(verify).map_err(ConnError::Reply)?;
                let r = conn.command("STARTTLS\r\n", cfg.command_timeout, "STARTTLS reply").await?;
                if r.code != 220 {
                    return Err(ConnError::Reply(Reply::new(
                        451,
                        "4.7.4",
                        format!("TLS is required but {} refused STARTTLS: {} {}", dest.host, r.code, r.text),
                    )));
                }
                conn.start_tls(dest, connector, verify, cfg.command_timeout).await?;
                conn.ehlo(&cfg.helo, cfg.command_timeout).await?;
            }
        }
        if let Some(credentials) = &dest.auth {
            conn.authenticate(&dest.host, credentials, cfg.command_timeout).await?;
        }
        Ok(conn)
    }

    /// AUTH PLAIN, or LOGIN when PLAIN is not offered or not accepted as a
    /// mechanism. A rejection becomes a temporary failure: wrong credentials
    /// are our configuration error, to fix and retry, not the recipients'
    /// (Postfix's `smtp_sasl_auth_soft_bounce` makes the same choice). The
    /// password never reaches a reply text or a log line.
    async fn authenticate(&mut self, host: &str, creds: &Credentials, t: Duration) -> Result<(), ConnError> {
        let fail = |text: String| ConnError::Reply(Reply::new(451, "4.7.0", text));
        if self.tls.is_none() && !creds.allow_plaintext {
            return Err(fail(format!("refusing to send credentials to {host} without TLS")));
        }
        let plain = self.caps.auth.iter().any(|m| m == "PLAIN");
        let login = self.caps.auth.iter().any(|m| m == "LOGIN");
        if !plain && !login {
            let offered = if self.caps.auth.is_empty() { "none".into() } else { self.caps.auth.join(" ") };
            return Err(fail(format!("{host} offers no AUTH mechanism we support (offered: {offered})")));
        }
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let rejected = |r: &Reply| {
            ConnError::Reply(Reply::new(
                451,
                "4.7.8",
                format!("authentication at {host} failed: {} {}", r.code, r.text),
            ))
        };
        if plain {
            let token = b64(format!("\0{}\0{}", creds.username, creds.password).as_bytes());
            let mut r = self.command(&format!("AUTH PLAIN {token}\r\n"), t, "AUTH reply").await?;
            if r.code == 334 {
                // A server that ignores the initial response asks again.
                r = self.command(&format!("{token}\r\n"), t, "AUTH reply").await?;
            }
            match r.code {
                235 => return Ok(()),
                504 if login => {} // PLAIN not accepted after all: try LOGIN
                _ => return Err(rejected(&r)),
            }
        }
        let r = self.command("AUTH LOGIN\r\n", t, "AUTH reply").await?;
        if r.code != 334 {
            return Err(rejected(&r));
        }
        let r = self.command(&format!("{}\r\n", b64(creds.username.as_bytes())), t, "AUTH reply").await?;
        if r.code != 334 {
            return Err(rejected(&r));
        }
        let r = self.command(&format!("{}\r\n", b64(creds.password.as_bytes())), t, "AUTH reply").await?;
        if r.code != 235 {
            return Err(rejected(&r));
        }
        Ok(())
    }

    async fn start_tls(
        &mut self,
        dest: &Destination,
        tls: &TlsConnector,
        verify: bool,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        let tcp = self.stream.take_plain().map_err(|e| ConnError::Io(e.to_string()))?;
        self.rbuf.clear();
        let name = match ServerName::try_from(dest.host.clone()) {
            Ok(name) => name,
            Err(_) if verify => {
                return Err(ConnError::Reply(Reply::new(
                    451,
                    "4.7.5",
                    format!("cannot verify a certificate for {:?}: not a host name", dest.host),
                )));
            }
            // Unverified: the name only feeds SNI.
            Err(_) => ServerName::try_from("localhost").expect("static name is valid"),
        };
        let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
            .await
            .map_err(|_| ConnError::Timeout("TLS handshake"))?
            .map_err(|e| ConnError::Reply(Reply::new(451, "4.7.5", format!("TLS handshake failed: {e}"))))?;
        self.stream = Stream::Tls(Box::new(stream.into()));
        self.tls = self.stream.tls_version();
        Ok(())
    }

    async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.stream.write_all(b"QUIT\r\n").await;
            let _ = self.stream.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// The connections of one destination.
struct Pool {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(Connection, OwnedSemaphorePermit, Instant)>>,
    /// Signalled when a connection is returned or closed.
    returned: Notify,
}

pub struct Client {
    cfg: ClientConfig,
    tls: Connectors,
    pools: Mutex<HashMap<Destination, Arc<Pool>>>,
}

/// The result of one transaction on one connection.
enum TxResult {
    Done(Vec<Reply>),
    /// Failed before the server said anything about this transaction, on a
    /// reused connection: safe to retry on a fresh one.
    StaleConnection,
    Failed(Reply),
}

impl Client {
    /// Verified TLS (`verify: true`) trusts the system's CA bundle, read on
    /// first use.
    pub fn new(cfg: ClientConfig) -> Self {
        Client { cfg, tls: Connectors::new(opportunistic_connector(), None), pools: Mutex::default() }
    }

    /// Verified TLS trusts exactly `roots` (a private CA, or a test's).
    pub fn with_root_certificates(cfg: ClientConfig, roots: rustls::RootCertStore) -> Self {
        Client { cfg, tls: Connectors::new(opportunistic_connector(), Some(roots)), pools: Mutex::default() }
    }

    fn pool(&self, dest: &Destination) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(dest.clone())
            .or_insert_with(|| {
                Arc::new(Pool {
                    permits: Arc::new(Semaphore::new(self.cfg.max_connections.max(1))),
                    idle: Mutex::default(),
                    returned: Notify::new(),
                })
            })
            .clone()
    }

    /// A pooled connection, or a permit to open a new one.
    async fn checkout(&self, pool: &Pool) -> (Option<Connection>, OwnedSemaphorePermit) {
        loop {
            let notified = pool.returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                while let Some((conn, permit, since)) = idle.pop() {
                    if since.elapsed() < self.cfg.idle_timeout {
                        return (Some(conn), permit);
                    }
                    drop((conn, permit)); // too old: close it
                }
            }
            if let Ok(permit) = pool.permits.clone().try_acquire_owned() {
                return (None, permit);
            }
            notified.await;
        }
    }

    fn checkin(&self, pool: &Pool, conn: Connection, permit: OwnedSemaphorePermit) {
        if conn.messages < self.cfg.max_messages_per_connection {
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push((conn, permit, Instant::now()));
        } else {
            tokio::spawn(conn.quit());
            drop(permit);
        }
        pool.returned.notify_one();
    }

    /// Sends one message to all its recipients at `dest`.
    pub async fn send(&self, dest: &Destination, msg: &OutboundMessage<'_>) -> Attempt {
        let pool = self.pool(dest);
        let mut fresh_retry = false;
        loop {
            let (pooled, permit) = self.checkout(&pool).await;
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match Connection::open(dest, &self.cfg, &self.tls).await {
                    Ok(c) => c,
                    Err(e) => {
                        drop(permit);
                        pool.returned.notify_one();
                        let reply = e.into_reply();
                        tracing::debug!(dest = %dest.host, port = dest.port, reply = %reply, "connection failed");
                        return Attempt {
                            remote: format!("{}:{}", dest.host, dest.port),
                            tls: None,
                            dsn: false,
                            outcome: Outcome::Failed(reply),
                        };
                    }
                },
            };
            let result = self.transaction(&mut conn, msg, reused && !fresh_retry).await;
            let (remote, tls, dsn) = (conn.remote.clone(), conn.tls.clone(), conn.caps.dsn);
            match result {
                TxResult::StaleConnection => {
                    drop(conn);
                    drop(permit);
                    pool.returned.notify_one();
                    fresh_retry = true;
                    continue;
                }
                TxResult::Done(replies) => {
                    conn.messages += 1;
                    self.checkin(&pool, conn, permit);
                    return Attempt { remote, tls, dsn, outcome: Outcome::PerRecipient(replies) };
                }
                TxResult::Failed(reply) => {
                    drop(conn);
                    drop(permit);
                    pool.returned.notify_one();
                    return Attempt { remote, tls, dsn, outcome: Outcome::Failed(reply) };
                }
            }
        }
    }

    async fn transaction(
        &self,
        conn: &mut Connection,
        msg: &OutboundMessage<'_>,
        may_be_stale: bool,
    ) -> TxResult {
        let t = self.cfg.command_timeout;
        let needs_utf8 = msg.smtputf8 || !msg.mail_from.is_ascii() || msg.rcpts.iter().any(|r| !r.is_ascii());
        if needs_utf8
            && !conn.caps.smtputf8
            && (!msg.mail_from.is_ascii() || msg.rcpts.iter().any(|r| !r.is_ascii()))
        {
            let r = Reply::new(
                553,
                "5.6.7",
                "the downstream does not support SMTPUTF8, required for this address",
            );
            return TxResult::Done(msg.rcpts.iter().map(|_| r.clone()).collect());
        }
        let size: usize = msg.content.iter().map(|p| p.len()).sum();
        if let Some(max) = conn.caps.size
            && size > max
        {
            let r = Reply::new(552, "5.3.4", format!("message too big for the downstream ({size} > {max})"));
            return TxResult::Done(msg.rcpts.iter().map(|_| r.clone()).collect());
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.mail_from);
        if msg.eight_bit && conn.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 && conn.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if conn.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        let dsn = msg.dsn.as_ref().filter(|_| conn.caps.dsn);
        if let Some(d) = dsn {
            mail.push_str(&d.mail());
        }
        mail.push_str("\r\n");
        let chunking = conn.caps.chunking;
        let pipelining = conn.caps.pipelining;

        let mut envelope_cmds = vec![mail];
        envelope_cmds.extend(msg.rcpts.iter().enumerate().map(|(i, r)| {
            let params = dsn.map(|d| d.rcpt(i)).unwrap_or_default();
            format!("RCPT TO:<{r}>{params}\r\n")
        }));
        if !chunking {
            envelope_cmds.push("DATA\r\n".into());
        }

        // Envelope phase: one write with PIPELINING, else a round trip each.
        let mut replies: Vec<Reply> = Vec::with_capacity(envelope_cmds.len());
        if pipelining {
            if let Err(e) = conn.write(envelope_cmds.concat().as_bytes(), t).await {
                return self.failed(e, may_be_stale);
            }
            for i in 0..envelope_cmds.len() {
                match conn.read_reply(t, "envelope reply").await {
                    Ok(r) => replies.push(r),
                    Err(e) => return self.failed(e, may_be_stale && i == 0),
                }
            }
        } else {
            // One round trip each; stop at a refused MAIL, and skip DATA when
            // every RCPT was refused.
            let rcpt_end = 1 + msg.rcpts.len();
            for (i, cmd) in envelope_cmds.iter().enumerate() {
                if i == rcpt_end && !replies[1..].iter().any(Reply::is_positive) {
                    break;
                }
                let r = match conn.command(cmd, t, "envelope reply").await {
                    Ok(r) => r,
                    Err(e) => return self.failed(e, may_be_stale && i == 0),
                };
                let refused_mail = i == 0 && !r.is_positive();
                replies.push(r);
                if refused_mail {
                    break;
                }
            }
        }
        let mail_reply = replies[0].clone();
        if !mail_reply.is_positive() {
            // Answer any pipelined DATA 354 by ending it, then reset.
            let _ = self.reset(conn, &replies).await;
            return TxResult::Failed(mail_reply);
        }
        let rcpt_replies: Vec<Reply> = (0..msg.rcpts.len())
            .map(|i| replies.get(1 + i).cloned().unwrap_or_else(|| Reply::new(451, "4.5.0", "no RCPT reply")))
            .collect();
        if !rcpt_replies.iter().any(Reply::is_positive) {
            let _ = self.reset(conn, &replies).await;
            return TxResult::Done(rcpt_replies);
        }

        // Content phase.
        let final_reply = if chunking {
            let mut bytes = format!("BDAT {size} LAST\r\n").into_bytes();
            bytes.reserve(size);
            for p in msg.content {
                bytes.extend_from_slice(p);
            }
            if let Err(e) = conn.write(&bytes, self.cfg.data_timeout).await {
                return TxResult::Failed(e.into_reply());
            }
            conn.read_reply(self.cfg.data_timeout, "reply after BDAT").await
        } else {
            let Some(data_reply) = replies.get(1 + msg.rcpts.len()) else {
                return TxResult::Failed(Reply::new(451, "4.5.0", "no reply to DATA"));
            };
            if data_reply.code != 354 {
                let r = data_reply.clone();
                return TxResult::Done(
                    rcpt_replies
                        .iter()
                        .map(|rr| if rr.is_positive() { r.clone() } else { rr.clone() })
                        .collect(),
                );
            }
            let stuffed = dot_stuff(msg.content);
            if let Err(e) = conn.write(&stuffed, self.cfg.data_timeout).await {
                return TxResult::Failed(e.into_reply());
            }
            conn.read_reply(self.cfg.data_timeout, "reply after DATA").await
        };
        let final_reply = match final_reply {
            Ok(r) => r,
            Err(e) => return TxResult::Failed(e.into_reply()),
        };
        TxResult::Done(
            rcpt_replies.into_iter().map(|r| if r.is_positive() { final_reply.clone() } else { r }).collect(),
        )
    }

    fn failed(&self, e: ConnError, may_be_stale: bool) -> TxResult {
        match e {
            ConnError::Io(_) | ConnError::Timeout(_) if may_be_stale => TxResult::StaleConnection,
            e => TxResult::Failed(e.into_reply()),
        }
    }

    /// Leaves the connection ready for the next transaction after an abort: a
    /// pipelined DATA that got 354 is closed with an empty body, then RSET.
    async fn reset(&self, conn: &mut Connection, replies: &[Reply]) -> Result<(), ConnError> {
        let t = self.cfg.command_timeout;
        if replies.last().is_some_and(|r| r.code == 354) {
            conn.write(b".\r\n", t).await?;
            conn.read_reply(t, "reply to aborted DATA").await?;
        }
        let r = conn.command("RSET\r\n", t, "RSET reply").await?;
        if r.is_positive() { Ok(()) } else { Err(ConnError::Reply(r)) }
    }

    /// Closes every idle connection politely (QUIT).
    pub async fn shutdown(&self) {
        let pools: Vec<Arc<Pool>> =
            self.pools.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for pool in pools {
            let idle: Vec<_> = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
            for (conn, _permit, _) in idle {
                conn.quit().await;
            }
        }
    }
}
