//! The IMAP server over the quarantine store: IMAP4rev1 (RFC 3501) with
//! STARTTLS, UIDPLUS, MOVE and IDLE, so that Thunderbird, mutt, mbsync or a
//! script can browse the classified copies. Commands are framed and parsed
//! by imap-codec; responses are written here, straight from the stored bytes.
//!
//! An account sees only its own folders; a logged-in session holds nothing
//! but the account name. Moving a message into `Release` re-injects it to its
//! original recipients through the [`Releaser`].

mod fetch;
mod lockout;
pub mod mime;
mod search;
mod session;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use lockout::Lockout;

pub use record::BoxFuture;

/// Re-injects a quarantined message to its original recipients; returns a
/// description of what was queued.
pub trait Releaser: Send + Sync + 'static {
    fn release<'a>(
        &'a self,
        account: &'a str,
        folder_id: i64,
        uid: i64,
    ) -> BoxFuture<'a, Result<String, String>>;
}

/// Learns from a user's own filing: a message moved (or copied) into
/// `Spam` is spam to that user; one moved out of `Spam` into another
/// folder is not (train on errors is the learner's business).
pub trait Learner: Send + Sync + 'static {
    fn learn<'a>(
        &'a self,
        account: &'a str,
        message: Vec<u8>,
        hash: &'a str,
        is_spam: bool,
    ) -> BoxFuture<'a, ()>;
}

pub struct Config {
    pub hostname: String,
    pub store: Arc<dyn record::QuarantineStore>,
    pub tls: TlsAcceptor,
    /// TLS from the first byte (`--imaps`) instead of STARTTLS.
    pub implicit_tls: bool,
    /// Allow LOGIN/AUTHENTICATE without TLS from loopback addresses
    /// (development only).
    pub plaintext_loopback: bool,
    /// Largest command, literals included.
    pub max_command: u32,
    /// Logged-out or idle sessions are closed after this long (RFC 3501: at
    /// least 30 minutes once logged in).
    pub login_timeout: Duration,
    pub idle_timeout: Duration,
    pub releaser: Option<Arc<dyn Releaser>>,
    /// Spam-filter learning from moves into and out of `Spam`.
    pub learner: Option<Arc<dyn Learner>>,
    pub lockout: Arc<Lockout>,
}

impl Config {
    pub fn new(hostname: String, store: Arc<dyn record::QuarantineStore>, tls: TlsAcceptor) -> Self {
        Config {
            hostname,
            store,
            tls,
            implicit_tls: false,
            plaintext_loopback: false,
            max_command: 64 * 1024,
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            releaser: None,
            learner: None,
            lockout: Arc::new(Lockout::default()),
        }
    }
}

/// Accepts IMAP connections until `shutdown`; open sessions are then told BYE.
pub async fn serve(listener: TcpListener, cfg: Arc<Config>, mut shutdown: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "imap accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let cfg = cfg.clone();
        let stop = shutdown.clone();
        sessions.spawn(async move {
            session::run(tcp, peer, cfg, stop).await;
        });
    }
    // Sessions see the shutdown themselves and say BYE.
    let _ =
        tokio::time::timeout(Duration::from_secs(5), async { while sessions.join_next().await.is_some() {} })
            .await;
}
