//! The accept loop: connection limits (total and per client address), one task
//! per session, and a clean stop on shutdown that lets sessions finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::SessionConfig;
use crate::session::Session;
use conn::Conn;

pub struct Listener {
    pub listener: TcpListener,
    pub cfg: Arc<SessionConfig>,
}

/// Counts connections per client address; the guard gives its slot back.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until shutdown, then waits up to `grace` for sessions
/// to finish (a session mid-DATA completes its message first).
pub async fn serve(l: Listener, mut shutdown: watch::Receiver<bool>, grace: Duration) {
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = l.listener.accept() => a,
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (mut tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let refusal = {
            let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
            let per_ip = c.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if c.total >= l.cfg.limits.max_connections {
                Some("421 4.7.0 Too many connections, try again later\r\n")
            } else if per_ip >= l.cfg.limits.max_connections_per_ip {
                Some("421 4.7.0 Too many connections from your address, try again later\r\n")
            } else {
                c.total += 1;
                *c.per_ip.entry(peer.ip()).or_default() += 1;
                None
            }
        };
        if let Some(text) = refusal {
            tracing::info!(peer = %peer, "connection refused: limit reached");
            crate::count_refusal(l.cfg.kind, 421);
            sessions.spawn(async move {
                let _ = tcp.write_all(text.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
            continue;
        }
        let slot = Slot { counts: counts.clone(), ip: peer.ip() };
        let cfg = l.cfg.clone();
        let stop = shutdown.clone();
        sessions.spawn(async move {
            let session = Session::new(cfg, Conn::new(tcp), peer_string(peer));
            session.run(stop).await;
            drop(slot);
        });
    }
    drop(l.listener);
    let _ = tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await;
}

fn peer_string(peer: SocketAddr) -> String {
    peer.to_string()
}
