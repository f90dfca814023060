//! One ESMTP session (RFC 5321) from greeting to QUIT: command dispatch,
//! envelope checks (never an open relay), DATA and BDAT, STARTTLS, AUTH.
//!
//! Every refusal is a [`Reply`] with an enhanced status code; the session never
//! drops a connection without saying why. **The 250 after DATA/BDAT is sent
//! only after the [`Sink`] reports the message durable.**

use std::sync::Arc;

use base64::Engine;
use smtp_proto::{
    MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8, Request,
};
use tokio::sync::watch;
use vocabulary::{Envelope, LineFaults, QueueId, Recipient, Reply};

use crate::framing::{DotReader, Frame, LineFramer, trim_eol};
use crate::{Accepted, ListenerKind, SessionConfig};
use conn::{Conn, ReadError};

/// What the dispatcher wants the read loop to do next.
enum Next {
    Continue,
    Quit,
    StartTls,
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    /// Close after flushing (too many errors, shutdown...).
    Close,
}

/// Progress of an AUTH exchange that needs more lines from the client.
enum AuthStep {
    PlainResponse,
    LoginUser,
    LoginPass { user: String },
}

struct Transaction {
    mail_from: String,
    smtputf8: bool,
    eight_bit: bool,
    rcpts: Vec<Recipient>,
    /// RFC 3461 RET and ENVID.
    dsn_ret: Option<vocabulary::dsn::Ret>,
    dsn_envid: Option<String>,
    /// BDAT chunks received so far.
    content: Vec<u8>,
    bdat_seen: bool,
    bdat_oversize: bool,
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    conn: Conn,
    peer: String,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    auth_failures: u32,
    auth_step: Option<AuthStep>,
    tx: Option<Transaction>,
    bad_commands: u32,
    framer: LineFramer,
}

fn reply(code: u16, status: &str, text: &str) -> Reply {
    Reply::new(code, status, text)
}

impl Session {
    pub fn new(cfg: Arc<SessionConfig>, conn: Conn, peer: String) -> Self {
        let framer = LineFramer::new(cfg.limits.max_line_length);
        Session {
            cfg,
            conn,
            peer,
            helo: None,
            esmtp: false,
            auth_user: None,
            auth_failures: 0,
            auth_step: None,
            tx: None,
            bad_commands: 0,
            framer,
        }
    }

    /// Runs the session to its end. Errors are the client's or the network's;
    /// they end the session and are logged by the caller at debug level.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        metrics::counter!("sluice_smtp_sessions_total", "listener" => self.cfg.kind.as_str()).increment(1);
        let greeting = format!("220 {} ESMTP sluice", self.cfg.hostname);
        self.conn.reply_raw(&greeting);
        loop {
            let next = match self.dispatch_buffered().await {
                Some(next) => next,
                None => {
                    // Need more input: wait for it, a timeout, or shutdown.
                    self.conn.shrink_if_idle();
                    let timeout = self.cfg.limits.command_timeout;
                    let read = tokio::select! {
                        r = self.conn.read_more(timeout) => r,
                        _ = shutdown.changed() => {
                            self.say(&reply(421, "4.3.2", "Service shutting down, closing channel"));
                            break;
                        }
                    };
                    match read {
                        Ok(_) => continue,
                        Err(ReadError::Timeout) => {
                            let text = format!("{} Error: timeout exceeded", self.cfg.hostname);
                            self.say(&reply(421, "4.4.2", &text));
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, error = ?e, in_transaction = self.tx.is_some(), "client went away");
                            return;
                        }
                    }
                }
            };
            match next {
                Next::Continue => {}
                Next::Quit | Next::Close => break,
                Next::StartTls => {
                    let Some(acceptor) = self.cfg.tls.clone() else { continue };
                    if let Err(e) = self.conn.start_tls(&acceptor, self.cfg.limits.command_timeout).await {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    // RFC 3207: forget everything learned before TLS.
                    self.helo = None;
                    self.esmtp = false;
                    self.tx = None;
                }
                Next::Data => {
                    if !self.receive_data().await {
                        return;
                    }
                }
                Next::Bdat { size, last } => {
                    if !self.receive_bdat(size, last).await {
                        return;
                    }
                }
            }
        }
        self.conn.close().await;
    }

    /// Handles every complete command line already buffered. Returns `None`
    /// when more input is needed.
    async fn dispatch_buffered(&mut self) -> Option<Next> {
        loop {
            let frame = self.framer.next(&self.conn.rbuf, &mut self.conn.pos)?;
            let next = match frame {
                Frame::TooLong => self.bad(reply(500, "5.5.2", "Line too long")),
                Frame::Line(line) => {
                    let line = line.to_vec();
                    if self.auth_step.is_some() {
                        self.auth_continue(trim_eol(&line)).await
                    } else {
                        self.command(&line).await
                    }
                }
            };
            if !matches!(next, Next::Continue) {
                return Some(next);
            }
        }
    }

    /// Sends a reply; a refusal is counted (`docs/metrics.md`).
    fn say(&mut self, r: &Reply) {
        crate::count_refusal(self.cfg.kind, r.code);
        self.conn.reply(r);
    }

    /// Answers a bad command; too many of them end the session.
    fn bad(&mut self, r: Reply) -> Next {
        self.bad_commands += 1;
        if self.bad_commands > self.cfg.limits.max_bad_commands {
            self.say(&reply(421, "4.7.0", "Too many errors, closing connection"));
            tracing::info!(peer = %self.peer, "closing session after too many errors");
            return Next::Close;
        }
        self.say(&r);
        Next::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Next {
        if line.contains(&0) {
            return self.bad(reply(500, "5.5.2", "Invalid character in command"));
        }
        if std::str::from_utf8(line).is_err() {
            // RFC 6531: even with SMTPUTF8, commands are UTF-8.
            return self.bad(reply(501, "5.6.7", "Invalid UTF-8 in command"));
        }
        let mut request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => return self.parse_error(line, e),
        };
        // smtp-proto reads both `<>` and `<Postmaster>` as an empty recipient;
        // only the second is valid (RFC 5321 4.5.1: it must be accepted).
        if let Request::Rcpt { to } = &mut request
            && to.address.is_empty()
        {
            if !is_bare_postmaster(line) {
                return self.bad(reply(501, "5.1.3", "Bad recipient address syntax"));
            }
            to.address = "postmaster".into();
        }
        match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Lhlo { .. } => self.bad(reply(500, "5.5.1", "LHLO is for LMTP")),
            Request::StartTls => self.starttls(),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data(),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.tx = None;
                self.say(&reply(250, "2.0.0", "Ok"));
                Next::Continue
            }
            Request::Noop { .. } => {
                self.say(&reply(250, "2.0.0", "Ok"));
                Next::Continue
            }
            Request::Quit => {
                self.say(&reply(221, "2.0.0", "Bye"));
                Next::Quit
            }
            Request::Vrfy { .. } => {
                self.say(&reply(252, "2.5.0", "Cannot VRFY user, but will accept message"));
                Next::Continue
            }
            Request::Help { .. } => {
                self.say(&reply(214, "2.0.0", "See RFC 5321"));
                Next::Continue
            }
            Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.bad(reply(502, "5.5.1", "Command not implemented"))
            }
        }
    }

    fn parse_error(&mut self, line: &[u8], e: smtp_proto::Error) -> Next {
        use smtp_proto::Error as E;
        let verb = line.split(|b| *b == b' ' || *b == b':').next().unwrap_or_default().to_ascii_uppercase();
        let r = match e {
            E::UnknownCommand => reply(500, "5.5.2", "Syntax error, command unrecognized"),
            E::InvalidSenderAddress => reply(501, "5.1.7", "Bad sender address syntax"),
            E::InvalidRecipientAddress => reply(501, "5.1.3", "Bad recipient address syntax"),
            E::SyntaxError { syntax } => reply(501, "5.5.4", &format!("Syntax: {syntax}")),
            E::InvalidParameter { param } => reply(501, "5.5.4", &format!("Invalid parameter {param}")),
            E::UnsupportedParameter { .. } => reply(555, "5.5.4", "Unsupported parameter"),
            E::ResponseTooLong => reply(500, "5.5.2", "Line too long"),
            E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
                reply(500, "5.5.2", "Syntax error, command unrecognized")
            }
        };
        tracing::debug!(peer = %self.peer, verb = %String::from_utf8_lossy(&verb), reply = %r, "bad command");
        self.bad(r)
    }

    fn hello(&mut self, host: String, esmtp: bool) -> Next {
        if host.is_empty() || host.chars().any(|c| c.is_control() || c == ' ') {
            return self.bad(reply(501, "5.5.4", "Invalid domain name"));
        }
        self.helo = Some(host);
        self.esmtp = esmtp;
        self.tx = None;
        if !esmtp {
            let text = format!("{} Hello", self.cfg.hostname);
            self.conn.reply_raw(&format!("250 {text}"));
            return Next::Continue;
        }
        let mut caps = vec![
            self.cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.cfg.tls.is_some() && !self.conn.is_tls() {
            caps.push("STARTTLS".into());
        }
        if self.cfg.kind == ListenerKind::Submission && self.conn.is_tls() {
            caps.push("AUTH PLAIN LOGIN".into());
        }
        for (i, cap) in caps.iter().enumerate() {
            let sep = if i + 1 == caps.len() { ' ' } else { '-' };
            self.conn.reply_raw(&format!("250{sep}{cap}"));
        }
        Next::Continue
    }

    fn starttls(&mut self) -> Next {
        if self.conn.is_tls() {
            return self.bad(reply(503, "5.5.1", "TLS already active"));
        }
        if self.cfg.tls.is_none() {
            return self.bad(reply(502, "5.5.1", "STARTTLS not available"));
        }
        self.say(&reply(220, "2.0.0", "Ready to start TLS"));
        Next::StartTls
    }

    async fn auth(&mut self, mechanism: u64, initial: String) -> Next {
        if self.cfg.kind != ListenerKind::Submission {
            return self.bad(reply(502, "5.5.1", "AUTH not available on this port"));
        }
        if !self.conn.is_tls() {
            return self.bad(reply(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.auth_user.is_some() {
            return self.bad(reply(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.bad(reply(503, "5.5.1", "AUTH not permitted during a mail transaction"));
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.auth_step = Some(AuthStep::PlainResponse);
                self.conn.reply_raw("334 ");
                Next::Continue
            }
            smtp_proto::AUTH_PLAIN => self.auth_plain(initial.as_bytes()).await,
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                self.auth_step = Some(AuthStep::LoginUser);
                self.conn.reply_raw("334 VXNlcm5hbWU6");
                Next::Continue
            }
            smtp_proto::AUTH_LOGIN => match decode_b64(initial.as_bytes()) {
                Some(user) => {
                    self.auth_step = Some(AuthStep::LoginPass { user });
                    self.conn.reply_raw("334 UGFzc3dvcmQ6");
                    Next::Continue
                }
                None => self.bad(reply(501, "5.5.2", "Invalid base64 data")),
            },
            _ => self.bad(reply(504, "5.5.4", "Unrecognized authentication type")),
        }
    }

    async fn auth_continue(&mut self, line: &[u8]) -> Next {
        let Some(step) = self.auth_step.take() else { return Next::Continue };
        if line == b"*" {
            return self.bad(reply(501, "5.0.0", "Authentication cancelled"));
        }
        match step {
            AuthStep::PlainResponse => self.auth_plain(line).await,
            AuthStep::LoginUser => match decode_b64(line) {
                Some(user) => {
                    self.auth_step = Some(AuthStep::LoginPass { user });
                    self.conn.reply_raw("334 UGFzc3dvcmQ6");
                    Next::Continue
                }
                None => self.bad(reply(501, "5.5.2", "Invalid base64 data")),
            },
            AuthStep::LoginPass { user } => match decode_b64(line) {
                Some(pass) => self.auth_check(user, pass).await,
                None => self.bad(reply(501, "5.5.2", "Invalid base64 data")),
            },
        }
    }

    async fn auth_plain(&mut self, b64: &[u8]) -> Next {
        let Some(decoded) = base64::engine::general_purpose::STANDARD.decode(b64).ok() else {
            return self.bad(reply(501, "5.5.2", "Invalid base64 data"));
        };
        // authzid NUL authcid NUL passwd
        let mut parts = decoded.split(|b| *b == 0);
        let (Some(_authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.bad(reply(501, "5.5.2", "Malformed AUTH PLAIN response"));
        };
        let (Ok(user), Ok(pass)) = (String::from_utf8(user.to_vec()), String::from_utf8(pass.to_vec()))
        else {
            return self.bad(reply(501, "5.5.2", "Malformed AUTH PLAIN response"));
        };
        self.auth_check(user, pass).await
    }

    async fn auth_check(&mut self, user: String, pass: String) -> Next {
        let verified = match self.cfg.auth.verify(&user, &pass).await {
            Ok(v) => v,
            Err(unavailable) => {
                tracing::warn!(peer = %self.peer, user = %user, reply = %unavailable, "authentication unavailable");
                self.say(&unavailable);
                return Next::Continue;
            }
        };
        if verified {
            tracing::info!(peer = %self.peer, user = %user, "authenticated");
            self.auth_user = Some(user);
            self.say(&reply(235, "2.7.0", "Authentication successful"));
            return Next::Continue;
        }
        self.auth_failures += 1;
        tracing::warn!(peer = %self.peer, user = %user, failures = self.auth_failures, "authentication failed");
        // Slow down guessing; a few failures end the session.
        tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(self.auth_failures.min(6))))
            .await;
        if self.auth_failures >= 3 {
            self.say(&reply(421, "4.7.0", "Too many authentication failures"));
            return Next::Close;
        }
        self.bad(reply(535, "5.7.8", "Authentication credentials invalid"))
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Next {
        if self.helo.is_none() {
            return self.bad(reply(503, "5.5.1", "Send EHLO/HELO first"));
        }
        if self.tx.is_some() {
            return self.bad(reply(503, "5.5.1", "Nested MAIL command"));
        }
        if self.cfg.kind == ListenerKind::Submission && self.auth_user.is_none() {
            return self.bad(reply(530, "5.7.0", "Authentication required"));
        }
        if from.size > self.cfg.limits.max_message_size {
            return self.bad(reply(552, "5.3.4", "Message size exceeds fixed maximum message size"));
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !from.address.is_ascii() && !smtputf8 {
            return self.bad(reply(553, "5.6.7", "SMTPUTF8 is required for a non-ASCII address"));
        }
        if !from.address.is_empty() && !valid_address(&from.address) {
            return self.bad(reply(501, "5.1.7", "Bad sender address syntax"));
        }
        let dsn_ret = if from.flags & MAIL_RET_HDRS != 0 {
            Some(vocabulary::dsn::Ret::Hdrs)
        } else if from.flags & MAIL_RET_FULL != 0 {
            Some(vocabulary::dsn::Ret::Full)
        } else {
            None
        };
        if from.env_id.as_ref().is_some_and(|e| e.len() > 100 || e.chars().any(char::is_control)) {
            return self.bad(reply(501, "5.5.4", "Invalid ENVID"));
        }
        self.tx = Some(Transaction {
            mail_from: from.address,
            smtputf8,
            eight_bit: from.flags & (MAIL_BODY_8BITMIME | MAIL_BODY_BINARYMIME) != 0,
            dsn_ret,
            dsn_envid: from.env_id,
            rcpts: Vec::new(),
            content: Vec::new(),
            bdat_seen: false,
            bdat_oversize: false,
        });
        self.say(&reply(250, "2.1.0", "Ok"));
        Next::Continue
    }

    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Next {
        let authenticated = self.auth_user.is_some();
        let max = self.cfg.limits.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return self.bad(reply(503, "5.5.1", "Need MAIL command first"));
        };
        if !to.address.is_ascii() && !tx.smtputf8 {
            return self.bad(reply(553, "5.6.7", "SMTPUTF8 is required for a non-ASCII address"));
        }
        let postmaster = to.address.eq_ignore_ascii_case("postmaster");
        if !postmaster && !valid_address(&to.address) {
            return self.bad(reply(501, "5.1.3", "Bad recipient address syntax"));
        }
        if tx.rcpts.len() >= max {
            self.say(&reply(452, "4.5.3", "Too many recipients"));
            return Next::Continue;
        }
        if !authenticated && !postmaster && !self.cfg.accepts_rcpt(&to.address) {
            tracing::info!(peer = %self.peer, rcpt = %to.address, "relay denied");
            return self.bad(reply(550, "5.7.1", "Relaying denied"));
        }
        if let Some(user) = self.auth_user.as_deref().filter(|_| self.cfg.kind == ListenerKind::Submission)
            && let Some(refusal) = self.cfg.sink.check_rcpt(user, &to.address).await
        {
            tracing::info!(peer = %self.peer, user, rcpt = %to.address, reply = %refusal, "recipient refused");
            self.say(&refusal);
            return Next::Continue;
        }
        let mut r = Recipient::new(to.address);
        r.orcpt = to.orcpt;
        r.notify = notify_of(to.flags);
        tx.rcpts.push(r);
        self.say(&reply(250, "2.1.5", "Ok"));
        Next::Continue
    }

    fn data(&mut self) -> Next {
        match &self.tx {
            None => self.bad(reply(503, "5.5.1", "Need MAIL command first")),
            Some(tx) if tx.rcpts.is_empty() => self.bad(reply(554, "5.5.1", "No valid recipients")),
            Some(tx) if tx.bdat_seen => self.bad(reply(503, "5.5.1", "DATA not allowed after BDAT")),
            Some(_) => {
                self.say(&reply(354, "", "End data with <CR><LF>.<CR><LF>"));
                Next::Data
            }
        }
    }

    fn bdat(&mut self, size: usize, last: bool) -> Next {
        Next::Bdat { size, last }
    }

    /// Reads DATA content to the terminating dot, then commits it.
    async fn receive_data(&mut self) -> bool {
        let mut reader = DotReader::new(self.cfg.limits.max_message_size);
        let mut content = Vec::with_capacity(8192);
        loop {
            let (used, done) = reader.feed(self.conn.pending(), &mut content);
            self.conn.pos += used;
            if done {
                break;
            }
            match self.conn.read_more(self.cfg.limits.data_timeout).await {
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    self.tx = None;
                    let text = format!("{} Error: timeout exceeded", self.cfg.hostname);
                    self.say(&reply(421, "4.4.2", &text));
                    self.conn.close().await;
                    return false;
                }
                Err(_) => {
                    tracing::info!(peer = %self.peer, bytes = reader.size(), "client disconnected during DATA; nothing kept");
                    return false;
                }
            }
        }
        let Some(tx) = self.tx.take() else { return true };
        if reader.exceeded() {
            self.say(&reply(552, "5.3.4", "Message size exceeds fixed maximum message size"));
            return true;
        }
        self.commit(tx, content).await;
        true
    }

    /// Reads one BDAT chunk; the LAST chunk commits the message.
    async fn receive_bdat(&mut self, size: usize, last: bool) -> bool {
        let limit = self.cfg.limits.max_message_size;
        let mut left = size;
        let mut keep = match &mut self.tx {
            Some(tx) if !tx.rcpts.is_empty() => {
                tx.bdat_seen = true;
                if tx.content.len() + size > limit {
                    tx.bdat_oversize = true;
                }
                !tx.bdat_oversize
            }
            _ => false,
        };
        loop {
            let take = left.min(self.conn.pending().len());
            if keep && let Some(tx) = self.tx.as_mut() {
                let start = self.conn.pos;
                tx.content.extend_from_slice(&self.conn.rbuf[start..start + take]);
            }
            self.conn.pos += take;
            left -= take;
            if left == 0 {
                break;
            }
            match self.conn.read_more(self.cfg.limits.data_timeout).await {
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    self.tx = None;
                    self.say(&reply(421, "4.4.2", "Error: timeout exceeded"));
                    self.conn.close().await;
                    return false;
                }
                Err(_) => return false,
            }
            keep = keep && self.tx.is_some();
        }
        let r = match &self.tx {
            None => reply(503, "5.5.1", "Need MAIL command first"),
            Some(tx) if tx.rcpts.is_empty() => reply(554, "5.5.1", "No valid recipients"),
            Some(tx) if tx.bdat_oversize && last => {
                self.tx = None;
                reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
            }
            Some(_) if last => {
                let Some(mut tx) = self.tx.take() else { return true };
                let content = std::mem::take(&mut tx.content);
                self.commit(tx, content).await;
                return true;
            }
            Some(_) => reply(250, "2.0.0", &format!("{size} bytes received")),
        };
        if r.is_positive() {
            self.say(&r);
        } else {
            let _ = self.bad(r);
        }
        true
    }

    /// Hands a complete message to the sink and answers with its verdict.
    async fn commit(&mut self, tx: Transaction, content: Vec<u8>) {
        let line_faults = LineFaults::of(&content);
        if line_faults.bare_newlines() && self.cfg.limits.reject_bare_newlines {
            tracing::warn!(peer = %self.peer, from = %tx.mail_from, bare_lf = line_faults.bare_lf,
                bare_cr = line_faults.bare_cr, "message refused: bare LF or CR line ends");
            let text =
                "Message refused: bare LF or CR line ends; every line must end in CRLF (RFC 5321 2.3.8)";
            self.say(&reply(550, "5.6.0", text));
            return;
        }
        let id = QueueId::generate();
        let received_at = chrono::Utc::now();
        let envelope = Envelope {
            mail_from: tx.mail_from,
            rcpts: tx.rcpts,
            smtputf8: tx.smtputf8,
            eight_bit: tx.eight_bit,
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer.clone(),
            auth_user: self.auth_user.clone(),
            received_at: received_at.timestamp(),
            line_faults,
            dsn_ret: tx.dsn_ret,
            dsn_envid: tx.dsn_envid,
        };
        let trace = self.trace_header(id, &envelope, received_at);
        let size = content.len();
        let (from, rcpts) = (envelope.mail_from.clone(), envelope.rcpts.len());
        let tls = self.conn.tls_version.clone();
        match self.cfg.sink.accept(Accepted { id, envelope, trace, content, tls }).await {
            Ok(()) => {
                tracing::info!(
                    target: "sluice::accept",
                    queue_id = %id,
                    from = %from,
                    rcpts,
                    size,
                    peer = %self.peer,
                    tls = self.conn.tls_version.as_deref().unwrap_or("none"),
                    auth = self.auth_user.as_deref().unwrap_or(""),
                    bare_lf = line_faults.bare_lf,
                    bare_cr = line_faults.bare_cr,
                    long_lines = line_faults.long_lines,
                    "message accepted"
                );
                self.say(&reply(250, "2.0.0", &format!("Ok: queued as {id}")));
            }
            Err(r) => {
                tracing::warn!(peer = %self.peer, reply = %r, "message not accepted");
                self.say(&r);
            }
        }
    }

    fn trace_header(&self, id: QueueId, env: &Envelope, at: chrono::DateTime<chrono::Utc>) -> String {
        let mut proto = String::from(if env.smtputf8 {
            "UTF8SMTP"
        } else if self.esmtp {
            "ESMTP"
        } else {
            "SMTP"
        });
        if self.conn.is_tls() {
            proto.push('S');
        }
        if self.auth_user.is_some() {
            proto.push('A');
        }
        let ip = self.peer.rsplit_once(':').map_or(self.peer.as_str(), |(ip, _)| ip);
        let tls = match &self.conn.tls_version {
            Some(v) => format!("\r\n\t(using {v})"),
            None => String::new(),
        };
        let helo: String = env.helo.chars().filter(|c| !c.is_control()).take(255).collect();
        let for_clause = match env.rcpts.as_slice() {
            [one] if !one.address.contains(['\r', '\n']) => format!("\r\n\tfor <{}>", one.address),
            _ => String::new(),
        };
        format!(
            "Received: from {helo} ([{ip}]){tls}\r\n\tby {} (sluice) with {proto} id {id}{for_clause};\r\n\t{}\r\n",
            self.cfg.hostname,
            at.to_rfc2822()
        )
    }
}

/// RCPT's NOTIFY (RFC 3461 §4.1), when given.
fn notify_of(flags: u64) -> Option<vocabulary::dsn::Notify> {
    use smtp_proto::{RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS};
    if flags & RCPT_NOTIFY_NEVER != 0 {
        return Some(vocabulary::dsn::Notify::NEVER);
    }
    let notify = vocabulary::dsn::Notify {
        success: flags & RCPT_NOTIFY_SUCCESS != 0,
        failure: flags & RCPT_NOTIFY_FAILURE != 0,
        delay: flags & RCPT_NOTIFY_DELAY != 0,
    };
    (notify != vocabulary::dsn::Notify::NEVER).then_some(notify)
}

fn is_bare_postmaster(line: &[u8]) -> bool {
    let upper = trim_eol(line).to_ascii_uppercase();
    upper.windows(12).any(|w| w == b"<POSTMASTER>")
}

fn decode_b64(data: &[u8]) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    String::from_utf8(bytes).ok()
}

/// `local@domain` with both parts non-empty and no whitespace or controls.
fn valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && addr.len() <= 320
        && !addr.chars().any(|c| c.is_control() || c.is_whitespace())
}
