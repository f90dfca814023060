//! Queue commands (`sluice queue …`) and the control socket they use.
//!
//! A running server listens on `DATA/spool/control.sock`; the CLI sends one
//! JSON request line and reads one JSON response line. With no server
//! running, the CLI opens the spool itself (taking its lock) and runs the same
//! handler, so every command works against a running or a stopped server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use queue::{Entry, Spool, Waker};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vocabulary::QueueId;

use crate::config::Config;
use route::release::Reinjector;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    Summary,
    Show {
        id: String,
    },
    Flush,
    Hold {
        id: String,
    },
    Release {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Re-inject a quarantined copy (`sluice quarantine release`).
    QuarantineRelease {
        account: String,
        folder: String,
        uid: i64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Entries(Vec<EntryView>),
    Summary(Vec<RouteBacklog>),
    Entry(Box<EntryView>),
    Done(String),
    Error(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RcptView {
    pub address: String,
    /// `relay` or `quarantine:ACCOUNT`.
    pub route: String,
    pub status: String,
    pub attempts: u32,
    pub last_reply: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EntryView {
    pub id: String,
    pub from: String,
    pub received_at: i64,
    pub size: u64,
    pub held: bool,
    /// Held because a recipient was refused for good and no DSN was
    /// possible (see `held` recipients' `last_reply`).
    #[serde(default)]
    pub dead_letter: bool,
    /// When it was held (Unix seconds; 0 when not held).
    #[serde(default)]
    pub held_at: i64,
    pub next_attempt: i64,
    pub expires_at: i64,
    pub peer: String,
    /// Bare LF/CR line ends and over-long lines as received (the relay
    /// sends them normalized; the store keeps them exactly).
    #[serde(default, skip_serializing_if = "vocabulary::LineFaults::is_clean")]
    pub line_faults: vocabulary::LineFaults,
    pub recipients: Vec<RcptView>,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        EntryView {
            id: e.id.to_string(),
            from: e.envelope.mail_from.clone(),
            received_at: e.envelope.received_at,
            size: e.size(),
            held: e.held,
            dead_letter: e.is_dead_letter(),
            held_at: e.held_at,
            next_attempt: e.next_attempt,
            expires_at: e.expires_at,
            peer: e.envelope.peer.clone(),
            line_faults: e.envelope.line_faults,
            recipients: e
                .envelope
                .rcpts
                .iter()
                .map(|r| RcptView {
                    address: r.address.clone(),
                    route: match &r.route {
                        vocabulary::Route::Relay => "relay".into(),
                        vocabulary::Route::Quarantine { account } => format!("quarantine:{account}"),
                        vocabulary::Route::Folder { account, folder } => format!("folder:{account}/{folder}"),
                        vocabulary::Route::Outbound { tenant, .. } => format!("outbound:{tenant}"),
                        vocabulary::Route::Feedback => "feedback".into(),
                    },
                    status: r.status.name().to_string(),
                    attempts: r.attempts,
                    last_reply: r.status.reply().map(ToString::to_string),
                })
                .collect(),
        }
    }
}

/// What one route has pending (the API's type, so `sluice queue summary`
/// and `GET /v1/queue` say the same). For the quarantine routes this is how
/// far the copies are behind (they give way to the front line, see
/// `route::front_line::FrontLine`, and wait in the spool meanwhile).
pub use api::ops::queue::RouteBacklog;

/// The backlog per route, counted as the API counts it.
pub fn backlog(entries: &[EntryView]) -> Vec<RouteBacklog> {
    let entries: Vec<_> = entries.iter().map(crate::ops_wiring::entry).collect();
    api::ops::queue::backlog(&entries)
}

pub fn socket_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("control.sock")
}

/// Runs one request against a spool. `waker` is the running scheduler, if any.
pub async fn handle(spool: &Spool, waker: Option<&Waker>, reinjector: &Reinjector, req: Request) -> Response {
    let parse = |id: &str| id.parse::<QueueId>();
    let result: Result<Response, String> = async {
        Ok(match req {
            Request::List => Response::Entries(spool.list().iter().map(EntryView::from).collect()),
            Request::Summary => {
                let entries: Vec<EntryView> = spool.list().iter().map(EntryView::from).collect();
                Response::Summary(backlog(&entries))
            }
            Request::Show { id } => {
                let id = parse(&id)?;
                let e = spool.get(id).ok_or(format!("no such message {id}"))?;
                Response::Entry(Box::new(EntryView::from(&e)))
            }
            Request::Flush => match waker {
                Some(w) => {
                    w.flush();
                    Response::Done(format!("flushing {} message(s)", spool.ids().len()))
                }
                None => Response::Done(
                    "no delivery is running; queued mail is attempted as soon as sluice serve (with a relay) starts"
                        .into(),
                ),
            },
            Request::Hold { id } => {
                let id = parse(&id)?;
                spool.set_held(id, true).await.map_err(|e| e.to_string())?;
                Response::Done(format!("held {id}"))
            }
            Request::Release { id } => {
                let id = parse(&id)?;
                spool.set_held(id, false).await.map_err(|e| e.to_string())?;
                if let Some(w) = waker {
                    w.now(id);
                }
                Response::Done(format!("released {id}"))
            }
            Request::Delete { id } => {
                let id = parse(&id)?;
                spool.remove(id).await.map_err(|e| e.to_string())?;
                tracing::info!(queue_id = %id, "message deleted by command");
                Response::Done(format!("deleted {id}"))
            }
            Request::QuarantineRelease { account, folder, uid } => {
                Response::Done(reinjector.release_named(&account, &folder, uid).await?)
            }
        })
    }
    .await;
    result.unwrap_or_else(Response::Error)
}

/// Serves the control socket until the task is aborted.
pub async fn serve(listener: UnixListener, reinjector: Arc<Reinjector>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let reinjector = reinjector.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let resp = match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let r = &reinjector;
                    handle(&r.spool, r.waker.as_ref(), r, req).await
                }
                Err(e) => Response::Error(format!("bad request: {e}")),
            };
            if let Ok(mut out) = serde_json::to_vec(&resp) {
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            }
        });
    }
}

/// Binds the control socket, replacing a stale one.
pub fn bind(spool_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket_path(spool_dir);
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))
}

/// The CLI side: ask the running server, or act on the stopped spool.
pub async fn request(cfg: &Config, req: Request) -> anyhow::Result<Response> {
    let spool_dir = cfg.server.data.join("spool");
    if let Ok(mut stream) = UnixStream::connect(socket_path(&spool_dir)).await {
        let mut out = serde_json::to_vec(&req)?;
        out.push(b'\n');
        stream.write_all(&out).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        return serde_json::from_str(&line).context("bad response from the server");
    }
    if !spool_dir.exists() {
        bail!("no spool at {} (is --data right?)", spool_dir.display());
    }
    let read_only = matches!(req, Request::List | Request::Summary | Request::Show { .. });
    let opened = if read_only { Spool::open_read_only(&spool_dir) } else { Spool::open(&spool_dir, true) };
    let (spool, _) = opened.with_context(|| {
        format!("the spool is in use but its control socket does not answer: {}", spool_dir.display())
    })?;
    let store = cfg.open_store().await?;
    let reinjector = Reinjector {
        spool: Arc::new(spool),
        waker: None,
        store: store.quarantine.clone(),
        hostname: cfg.server.hostname.clone(),
        max_age: cfg.queue.max_age_secs as i64,
        inbound: match read_only {
            true => None,
            false => Some(route::inbound::InboundRecord::open(store.clone()).await?),
        },
    };
    let resp = handle(&reinjector.spool, None, &reinjector, req).await;
    if let Some(r) = &reinjector.inbound {
        r.flush().await;
    }
    reinjector.spool.close();
    store.close().await;
    Ok(resp)
}

/// Prints a response for a person; returns the exit code.
pub fn print(resp: &Response, json: bool) -> i32 {
    if json {
        println!("{}", serde_json::to_string_pretty(resp).unwrap_or_default());
        return if matches!(resp, Response::Error(_)) { 1 } else { 0 };
    }
    match resp {
        Response::Entries(entries) => {
            if entries.is_empty() {
                println!("queue is empty");
            }
            for e in entries {
                let pending = e.recipients.iter().filter(|r| !is_terminal(&r.status)).count();
                println!(
                    "{}  {:>8}  {}  {}{}  from=<{}>  rcpts={}/{} pending",
                    e.id,
                    e.size,
                    fmt_time(e.received_at),
                    if e.dead_letter {
                        "DEAD-LETTER "
                    } else if e.held {
                        "HELD "
                    } else {
                        ""
                    },
                    e.peer,
                    e.from,
                    pending,
                    e.recipients.len()
                );
            }
            0
        }
        Response::Summary(routes) => {
            if routes.is_empty() {
                println!("nothing pending");
                return 0;
            }
            let now = chrono::Utc::now().timestamp();
            println!("{:<32} {:>9} {:>10} {:>6}  oldest", "route", "messages", "recipients", "held");
            for b in routes {
                println!(
                    "{:<32} {:>9} {:>10} {:>6}  {} ({} ago)",
                    b.route,
                    b.messages,
                    b.recipients,
                    b.held,
                    fmt_time(b.oldest_received_at),
                    fmt_age(now - b.oldest_received_at)
                );
            }
            0
        }
        Response::Entry(e) => {
            println!("id:          {}", e.id);
            println!("from:        <{}>", e.from);
            println!("received:    {} from {}", fmt_time(e.received_at), e.peer);
            println!("size:        {}", e.size);
            println!("held:        {}", e.held);
            if e.dead_letter {
                println!(
                    "dead letter: since {}: refused for good and no DSN is possible; `sluice queue release {}` retries it",
                    fmt_time(e.held_at),
                    e.id
                );
            }
            if !e.line_faults.is_clean() {
                let f = e.line_faults;
                println!(
                    "lines:       {} bare LF, {} bare CR, {} over 998 octets (sent normalized)",
                    f.bare_lf, f.bare_cr, f.long_lines
                );
            }
            println!("expires:     {}", fmt_time(e.expires_at));
            for r in &e.recipients {
                println!(
                    "rcpt:        <{}> {} attempts={} {}",
                    r.address,
                    r.status,
                    r.attempts,
                    r.last_reply.as_deref().unwrap_or("")
                );
            }
            0
        }
        Response::Done(msg) => {
            println!("{msg}");
            0
        }
        Response::Error(msg) => {
            eprintln!("error: {msg}");
            1
        }
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "delivered" | "failed" | "expired")
}

/// `42s`, `3m05s`, `2h07m`, `3d04h`.
fn fmt_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn fmt_time(t: i64) -> String {
    vocabulary::time::rfc3339_secs(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(route: &str, status: &str) -> RcptView {
        RcptView {
            address: "x@sluice.test".into(),
            route: route.into(),
            status: status.into(),
            attempts: 1,
            last_reply: None,
        }
    }

    fn entry(received_at: i64, held: bool, recipients: Vec<RcptView>) -> EntryView {
        EntryView {
            id: String::new(),
            from: String::new(),
            received_at,
            size: 1,
            held,
            dead_letter: false,
            held_at: 0,
            next_attempt: 0,
            expires_at: 0,
            peer: String::new(),
            line_faults: Default::default(),
            recipients,
        }
    }

    #[test]
    fn the_backlog_counts_pending_recipients_per_route_and_the_oldest_message() {
        let entries = vec![
            // Relayed (done); its copy waits.
            entry(200, false, vec![rcpt("relay", "delivered"), rcpt("quarantine:acme", "scheduled")]),
            // Two relay recipients still to go, held; its copy is filed.
            entry(
                100,
                true,
                vec![
                    rcpt("relay", "deferred"),
                    rcpt("relay", "scheduled"),
                    rcpt("quarantine:acme", "delivered"),
                ],
            ),
            // Both routes wait; one relay recipient has failed for good.
            entry(
                300,
                false,
                vec![rcpt("relay", "failed"), rcpt("relay", "deferred"), rcpt("quarantine:acme", "deferred")],
            ),
        ];
        let b = |route: &str, messages, recipients, held, oldest_received_at| RouteBacklog {
            route: route.into(),
            messages,
            recipients,
            held,
            oldest_received_at,
        };
        assert_eq!(backlog(&entries), vec![b("quarantine:acme", 2, 2, 0, 200), b("relay", 2, 3, 1, 100)]);
        assert!(backlog(&[]).is_empty());
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(fmt_age(-5), "0s");
        assert_eq!(fmt_age(42), "42s");
        assert_eq!(fmt_age(185), "3m05s");
        assert_eq!(fmt_age(2 * 3600 + 7 * 60 + 9), "2h07m");
        assert_eq!(fmt_age(3 * 86400 + 4 * 3600), "3d04h");
    }
}
