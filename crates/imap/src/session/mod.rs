//! One IMAP connection: framing (imap-codec's fragmentizer, so literals are
//! bounded and only accepted after a continuation), the RFC 3501 states, and
//! each command answered from the quarantine store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use conn::{Conn, ReadError};
use imap_codec::CommandCodec;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;
use record::quarantine::FolderInfo;
use tokio::net::TcpStream;
use tokio::sync::watch;

mod messages;

use self::messages::deleted_uids;
use crate::Config;
use crate::wire::Out;

/// Failed logins on one connection before it is closed.
const MAX_FAILURES_PER_CONNECTION: u32 = 3;
/// Folder that re-injects what is moved or copied into it.
const RELEASE: &str = "Release";
/// How often an idling session looks for changes made by other processes.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_secs(5);
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

struct Msg {
    uid: u32,
    blob: Arc<str>,
    size: i64,
    received_at: i64,
    /// Shared between messages with the same flags (copy on write), so a
    /// big folder is selected without a vector per message.
    flags: Arc<Vec<String>>,
}

struct Selected {
    folder: FolderInfo,
    read_only: bool,
    msgs: Vec<Msg>,
}

enum Mode {
    Commands,
    /// AUTHENTICATE PLAIN waiting for the client's response line.
    AuthData(String),
    /// IDLE until DONE.
    Idle(String),
}

struct Session {
    conn: Conn,
    peer: SocketAddr,
    cfg: Arc<Config>,
    account: Option<String>,
    selected: Option<Selected>,
    mode: Mode,
    failures: u32,
    closing: bool,
    start_tls: bool,
}

pub async fn run(tcp: TcpStream, peer: SocketAddr, cfg: Arc<Config>, mut stop: watch::Receiver<bool>) {
    let mut s = Session {
        conn: Conn::new(tcp),
        peer,
        cfg: cfg.clone(),
        account: None,
        selected: None,
        mode: Mode::Commands,
        failures: 0,
        closing: false,
        start_tls: false,
    };
    if cfg.implicit_tls && s.conn.start_tls(&cfg.tls, cfg.login_timeout).await.is_err() {
        return;
    }
    let caps = s.capabilities();
    s.line(&format!("* OK [CAPABILITY {caps}] {} sluice IMAP ready", cfg.hostname));
    let mut frag = Fragmentizer::new(cfg.max_command);
    let mut changes = cfg.store.changes();
    loop {
        if let Some(info) = frag.progress() {
            if let FragmentInfo::Line { announcement: Some(ann), .. } = info {
                if frag.is_max_message_size_exceeded() || ann.length > cfg.max_command {
                    let tag = frag.decode_tag().map(|t| t.as_ref().to_string()).unwrap_or("*".into());
                    if ann.mode == LiteralMode::Sync {
                        // Not accepted: the client does not send it.
                        s.line(&format!(
                            "{tag} BAD [TOOBIG] literal too large (max {} bytes)",
                            cfg.max_command
                        ));
                        frag.skip_message();
                    } else {
                        frag.poison_message();
                    }
                    continue;
                }
                if ann.mode == LiteralMode::Sync && !frag.is_message_poisoned() {
                    s.line("+ send literal");
                }
            }
            if !frag.is_message_complete() {
                continue;
            }
            s.message(&frag).await;
            if s.closing {
                break;
            }
            if s.start_tls {
                s.start_tls = false;
                if s.conn.start_tls(&cfg.tls, cfg.login_timeout).await.is_err() {
                    break;
                }
                // Anything pipelined in plaintext is discarded with the old framer.
                frag = Fragmentizer::new(cfg.max_command);
            }
            continue;
        }
        let timeout = if s.account.is_some() { cfg.idle_timeout } else { cfg.login_timeout };
        let idling = matches!(s.mode, Mode::Idle(_));
        if let Err(e) = s.conn.flush().await {
            tracing::debug!(error = %e, "imap write failed");
            break;
        }
        tokio::select! {
            r = s.conn.read_more(timeout) => match r {
                Ok(_) => {
                    frag.enqueue_bytes(s.conn.pending());
                    s.conn.pos = s.conn.rbuf.len();
                    s.conn.shrink_if_idle();
                }
                Err(ReadError::Timeout) => {
                    s.line("* BYE idle for too long");
                    break;
                }
                Err(_) => break,
            },
            _ = changes.changed(), if idling => {
                s.sync().await;
            }
            // Changes made by other processes (a sweep from the command line)
            // do not ring the in-process bell: look now and then.
            _ = tokio::time::sleep(IDLE_POLL), if idling => {
                s.sync().await;
            }
            _ = stop.changed() => {
                s.line("* BYE server shutting down");
                break;
            }
        }
    }
    s.conn.close().await;
}

impl Session {
    fn line(&mut self, l: &str) {
        self.conn.write(l.as_bytes());
        self.conn.write(b"\r\n");
    }

    fn tls_ok(&self) -> bool {
        self.conn.is_tls() || (self.cfg.plaintext_loopback && self.peer.ip().is_loopback())
    }

    fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1");
        if self.account.is_some() {
            c.push_str(" UIDPLUS MOVE IDLE UNSELECT CHILDREN LITERAL+");
            return c;
        }
        if !self.conn.is_tls() {
            c.push_str(" STARTTLS");
        }
        if self.tls_ok() {
            c.push_str(" AUTH=PLAIN SASL-IR");
        } else {
            c.push_str(" LOGINDISABLED");
        }
        c
    }

    /// One complete client message, read in the current mode.
    async fn message(&mut self, frag: &Fragmentizer) {
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::AuthData(tag) => {
                let line = frag.message_bytes().trim_ascii_end();
                if line == b"*" {
                    self.line(&format!("{tag} BAD authentication cancelled"));
                    return;
                }
                match base64::engine::general_purpose::STANDARD.decode(line) {
                    Ok(data) => self.plain(&tag, &data).await,
                    Err(_) => self.line(&format!("{tag} BAD invalid base64")),
                }
            }
            Mode::Idle(tag) => {
                if frag.message_bytes().trim_ascii().eq_ignore_ascii_case(b"DONE") {
                    self.line(&format!("{tag} OK IDLE terminated"));
                } else {
                    self.line(&format!("{tag} BAD expected DONE"));
                }
            }
            Mode::Commands => match frag.decode_message(&CommandCodec::default()) {
                Ok(cmd) => self.command(cmd).await,
                Err(e) => {
                    let tag = frag.decode_tag().map(|t| t.as_ref().to_string()).unwrap_or("*".into());
                    let why = match e {
                        DecodeMessageError::MessageTooLong { .. } => "[TOOBIG] command too long",
                        DecodeMessageError::MessagePoisoned { .. } => "[TOOBIG] literal too large",
                        _ => "syntax error in command",
                    };
                    tracing::debug!(peer = %self.peer, "imap: {why}");
                    self.line(&format!("{tag} BAD {why}"));
                }
            },
        }
    }

    async fn command(&mut self, cmd: Command<'_>) {
        let tag = cmd.tag.as_ref().to_string();
        let logged_in = self.account.is_some();
        let selected = self.selected.is_some();
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                self.line(&format!("{tag} OK CAPABILITY completed"));
            }
            CommandBody::Noop | CommandBody::Check => {
                self.sync().await;
                self.line(&format!("{tag} OK done"));
            }
            CommandBody::Logout => {
                self.line("* BYE logging out");
                self.line(&format!("{tag} OK LOGOUT completed"));
                self.closing = true;
            }
            CommandBody::StartTLS if !self.conn.is_tls() => {
                self.line(&format!("{tag} OK begin TLS negotiation now"));
                self.start_tls = true;
            }
            CommandBody::StartTLS => self.line(&format!("{tag} BAD TLS is already active")),
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } if logged_in => {
                self.line(&format!("{tag} BAD already logged in"));
            }
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&tag, &user, &pw).await;
            }
            CommandBody::Authenticate { mechanism: AuthMechanism::Plain, initial_response } => {
                if !self.tls_ok() {
                    self.line(&format!("{tag} NO [PRIVACYREQUIRED] use STARTTLS first"));
                } else if let Some(ir) = initial_response.filter(|r| !r.declassify().is_empty()) {
                    self.plain(&tag, ir.declassify()).await;
                } else {
                    self.line("+ ");
                    self.mode = Mode::AuthData(tag);
                }
            }
            CommandBody::Authenticate { .. } => self.line(&format!("{tag} NO [CANNOT] only AUTH=PLAIN")),
            _ if !logged_in => self.line(&format!("{tag} NO log in first")),
            CommandBody::Select { mailbox, .. } => self.select(&tag, &mailbox_name(&mailbox), false).await,
            CommandBody::Examine { mailbox, .. } => self.select(&tag, &mailbox_name(&mailbox), true).await,
            CommandBody::List { reference, mailbox_wildcard } => {
                self.list(&tag, "LIST", &mailbox_name(&reference), &list_pattern(&mailbox_wildcard)).await;
            }
            CommandBody::Lsub { reference, mailbox_wildcard } => {
                self.list(&tag, "LSUB", &mailbox_name(&reference), &list_pattern(&mailbox_wildcard)).await;
            }
            CommandBody::Status { mailbox, item_names } => {
                self.status(&tag, &mailbox_name(&mailbox), item_names.as_ref()).await;
            }
            CommandBody::Subscribe { .. } | CommandBody::Unsubscribe { .. } => {
                self.line(&format!("{tag} OK every folder is subscribed"));
            }
            CommandBody::Create { .. } | CommandBody::Delete { .. } | CommandBody::Rename { .. } => {
                self.line(&format!("{tag} NO [CANNOT] folders are fixed: one per verdict"));
            }
            CommandBody::Append { .. } => {
                self.line(&format!("{tag} NO [CANNOT] the store is filled by mail flow, not APPEND"));
            }
            CommandBody::Idle => {
                self.line("+ idling");
                self.mode = Mode::Idle(tag);
            }
            _ if !selected => self.line(&format!("{tag} NO select a folder first")),
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid } => {
                self.fetch(&tag, &sequence_set, macro_or_item_names, uid).await;
            }
            CommandBody::Store { sequence_set, kind, response, flags, uid } => {
                let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
                self.store(&tag, &sequence_set, kind, response, &flags, uid).await;
            }
            CommandBody::Search { criteria, uid, .. } => {
                self.search(&tag, criteria.as_ref(), uid).await;
            }
            CommandBody::Copy { sequence_set, mailbox, uid } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, false).await;
            }
            CommandBody::Move { sequence_set, mailbox, uid } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, true).await;
            }
            CommandBody::Expunge => self.expunge(&tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(&sequence_set)).await,
            CommandBody::Close => {
                if let Some(sel) = &self.selected
                    && !sel.read_only
                {
                    let uids = deleted_uids(sel, None);
                    if let Err(e) = self.cfg.store.expunge(sel.folder.id, &uids).await {
                        tracing::error!(error = %e, "imap close: expunge failed");
                    }
                }
                self.selected = None;
                self.line(&format!("{tag} OK CLOSE completed"));
            }
            CommandBody::Unselect => {
                self.selected = None;
                self.line(&format!("{tag} OK UNSELECT completed"));
            }
            _ => self.line(&format!("{tag} BAD command not supported")),
        }
    }

    async fn plain(&mut self, tag: &str, data: &[u8]) {
        let mut it = data.split(|&b| b == 0);
        let (authz, authc, pw) = (it.next(), it.next(), it.next());
        match (authz, authc, pw, it.next()) {
            (Some(z), Some(c), Some(p), None) if z.is_empty() || z == c => {
                let (user, pw) =
                    (String::from_utf8_lossy(c).into_owned(), String::from_utf8_lossy(p).into_owned());
                self.login(tag, &user, &pw).await;
            }
            _ => self.line(&format!("{tag} BAD malformed PLAIN response")),
        }
    }

    async fn login(&mut self, tag: &str, user: &str, password: &str) {
        let ip = self.peer.ip();
        if !self.tls_ok() {
            self.line(&format!("{tag} NO [PRIVACYREQUIRED] LOGIN needs TLS: use STARTTLS first"));
            return;
        }
        if !self.cfg.lockout.allowed(ip) {
            tracing::warn!(peer = %self.peer, account = %user, "imap login refused: too many failures");
            self.line(&format!("{tag} NO [UNAVAILABLE] too many failed logins, try again later"));
            return;
        }
        let ok = self.cfg.store.verify_account(user, password).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "imap: account lookup failed");
            false
        });
        if ok {
            self.cfg.lockout.succeeded(ip);
            self.account = Some(user.to_string());
            tracing::info!(peer = %self.peer, account = %user, "imap login");
            let caps = self.capabilities();
            self.line(&format!("{tag} OK [CAPABILITY {caps}] logged in"));
            return;
        }
        self.failures += 1;
        tracing::warn!(peer = %self.peer, account = %user, failures = self.failures, "imap login failed");
        tokio::time::sleep(self.cfg.lockout.failed(ip)).await;
        self.line(&format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials"));
        if self.failures >= MAX_FAILURES_PER_CONNECTION {
            self.line("* BYE too many failed logins");
            self.closing = true;
        }
    }

    fn account(&self) -> &str {
        self.account.as_deref().unwrap_or_default()
    }

    async fn folder(&self, name: &str) -> Option<FolderInfo> {
        let name = if name.eq_ignore_ascii_case("INBOX") { "INBOX" } else { name };
        self.cfg.store.folder(self.account(), name).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "imap: folder lookup failed");
            None
        })
    }

    async fn load(&self, folder_id: i64) -> Option<Vec<Msg>> {
        match self.cfg.store.messages(folder_id).await {
            Ok(rows) => {
                let mut shared: HashMap<&str, Arc<Vec<String>>> = HashMap::new();
                Some(
                    rows.iter()
                        .map(|r| Msg {
                            uid: u32::try_from(r.uid).unwrap_or(u32::MAX),
                            blob: r.blob.clone(),
                            size: r.size,
                            received_at: r.received_at,
                            flags: shared
                                .entry(r.flags.as_str())
                                .or_insert_with(|| {
                                    Arc::new(r.flags.split_whitespace().map(str::to_string).collect())
                                })
                                .clone(),
                        })
                        .collect(),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "imap: reading folder failed");
                None
            }
        }
    }

    /// A folder and its messages, or the tagged NO that says why not.
    async fn open(&mut self, tag: &str, name: &str) -> Option<(FolderInfo, Vec<Msg>)> {
        let Some(folder) = self.folder(name).await else {
            self.line(&format!("{tag} NO [NONEXISTENT] no such folder"));
            return None;
        };
        let Some(msgs) = self.load(folder.id).await else {
            self.line(&format!("{tag} NO [SERVERBUG] cannot read the folder"));
            return None;
        };
        Some((folder, msgs))
    }

    async fn select(&mut self, tag: &str, name: &str, read_only: bool) {
        self.selected = None;
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let Some((folder, msgs)) = self.open(tag, name).await else { return };
        // Each distinct (shared) flag set once, then its keywords.
        let mut seen = HashSet::new();
        let mut keywords: Vec<&str> = Vec::new();
        for m in &msgs {
            if seen.insert(Arc::as_ptr(&m.flags)) {
                keywords.extend(m.flags.iter().map(String::as_str).filter(|f| !f.starts_with('\\')));
            }
        }
        keywords.sort_unstable();
        keywords.dedup();
        let kw = if keywords.is_empty() { String::new() } else { format!(" {}", keywords.join(" ")) };
        self.line(&format!("* FLAGS ({SYSTEM_FLAGS}{kw})"));
        if read_only {
            self.line("* OK [PERMANENTFLAGS ()] read-only");
        } else {
            self.line(&format!("* OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{kw} \\*)] flags persist"));
        }
        self.line(&format!("* {} EXISTS", msgs.len()));
        self.line("* 0 RECENT");
        if let Some(i) = msgs.iter().position(|m| !m.flags.iter().any(|f| f == "\\Seen")) {
            self.line(&format!("* OK [UNSEEN {}] first unseen", i + 1));
        }
        self.line(&format!("* OK [UIDVALIDITY {}] UIDs valid", folder.uidvalidity));
        self.line(&format!("* OK [UIDNEXT {}] predicted next UID", folder.uidnext));
        let access = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.line(&format!("{tag} OK [{access}] {verb} completed"));
        self.selected = Some(Selected { folder, read_only, msgs });
    }

    /// Brings the selected folder up to date, telling the client what was
    /// expunged, what arrived, and whose flags changed.
    async fn sync(&mut self) {
        let Some(sel) = &self.selected else { return };
        let Some(fresh) = self.load(sel.folder.id).await else { return };
        let mut out = Vec::new();
        let fresh_uids: std::collections::HashSet<u32> = fresh.iter().map(|m| m.uid).collect();
        // Expunged: highest sequence number first, so each stays valid.
        for (i, m) in sel.msgs.iter().enumerate().rev() {
            if !fresh_uids.contains(&m.uid) {
                out.push(format!("* {} EXPUNGE", i + 1));
            }
        }
        let old: HashMap<u32, &[String]> = sel.msgs.iter().map(|m| (m.uid, m.flags.as_slice())).collect();
        for (i, m) in fresh.iter().enumerate() {
            if let Some(flags) = old.get(&m.uid)
                && *flags != m.flags.as_slice()
            {
                out.push(format!("* {} FETCH (UID {} FLAGS ({}))", i + 1, m.uid, m.flags.join(" ")));
            }
        }
        let exists_changed = fresh.len() != sel.msgs.len() || fresh.iter().any(|m| !old.contains_key(&m.uid));
        if exists_changed {
            out.push(format!("* {} EXISTS", fresh.len()));
        }
        if let Some(sel) = &mut self.selected {
            sel.msgs = fresh;
        }
        for l in out {
            self.line(&l);
        }
    }

    async fn list(&mut self, tag: &str, verb: &str, reference: &str, pattern: &str) {
        if pattern.is_empty() {
            self.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            self.line(&format!("{tag} OK {verb} completed"));
            return;
        }
        let folders = match self.cfg.store.folders(self.account()).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "imap list failed");
                self.line(&format!("{tag} NO [SERVERBUG] cannot list folders"));
                return;
            }
        };
        let names: Vec<String> = folders.into_iter().map(|f| f.name).collect();
        // Parents that are only a level of the hierarchy (e.g. `Bounces`).
        let mut all: Vec<(String, bool)> = names.iter().map(|n| (n.clone(), true)).collect();
        for n in &names {
            let mut p = n.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                if !all.iter().any(|(a, _)| a == parent) {
                    all.push((parent.to_string(), false));
                }
                p = parent;
            }
        }
        all.sort();
        let full = format!("{reference}{pattern}");
        for (name, selectable) in &all {
            if !wildcard(&full, name) {
                continue;
            }
            let children = all.iter().any(|(a, _)| {
                a.len() > name.len() && a.starts_with(name.as_str()) && a.as_bytes()[name.len()] == b'/'
            });
            let mut attrs = vec![if children { "\\HasChildren" } else { "\\HasNoChildren" }];
            if !selectable {
                attrs.insert(0, "\\Noselect");
            }
            let mut out = Out::default();
            out.raw(&format!("* {verb} ({}) \"/\" ", attrs.join(" ")));
            out.string(name.as_bytes());
            out.raw("\r\n");
            self.conn.write(&out.into_bytes());
        }
        self.line(&format!("{tag} OK {verb} completed"));
    }

    async fn status(&mut self, tag: &str, name: &str, items: &[StatusDataItemName]) {
        let Some((folder, msgs)) = self.open(tag, name).await else { return };
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", msgs.len())),
                StatusDataItemName::Recent => parts.push("RECENT 0".into()),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", folder.uidnext)),
                StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {}", folder.uidvalidity)),
                StatusDataItemName::Unseen => parts.push(format!(
                    "UNSEEN {}",
                    msgs.iter().filter(|m| !m.flags.iter().any(|f| f == "\\Seen")).count()
                )),
                _ => {}
            }
        }
        let mut out = Out::default();
        out.raw("* STATUS ");
        out.string(folder.name.as_bytes());
        out.raw(&format!(" ({})\r\n", parts.join(" ")));
        self.conn.write(&out.into_bytes());
        self.line(&format!("{tag} OK STATUS completed"));
    }
}

fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    }
}

/// LIST pattern matching: `*` matches anything, `%` anything but `/`.
fn wildcard(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'%', rest)) => {
                let stop = n.iter().position(|&b| b == b'/').unwrap_or(n.len());
                (0..=stop).any(|i| go(rest, &n[i..]))
            }
            Some((c, rest)) => n.first().is_some_and(|b| b.eq_ignore_ascii_case(c)) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard("*", "Bounces/Hard"));
        assert!(!wildcard("%", "Bounces/Hard"));
        assert!(wildcard("%", "Bounces"));
        assert!(wildcard("Bounces/%", "Bounces/Soft"));
        assert!(wildcard("inbox", "INBOX"));
        assert!(!wildcard("Bounces/%", "Bounces"));
    }
}
