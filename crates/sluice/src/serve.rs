//! `sluice serve`: opens the data directory, recovers the spool, starts the
//! listeners, the scheduler and the control socket, and stops them in order
//! on SIGTERM (sessions finish or are told 421; attempts in flight complete;
//! the spool is flushed last).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ingress::{Accepted, Authenticator, BoxFuture, ListenerKind, Sink};
use queue::{Scheduler, SchedulerConfig, Spool, Waker};
use tokio::net::TcpListener;
use tokio::sync::watch;
use vocabulary::Reply;

use crate::config::{Config, parse_host_port};
use crate::{control, outbound_wiring, relay, release, tee, tls};

/// Accepted messages go to the spool; the 250 waits for its fsync.
struct SpoolSink {
    spool: Arc<Spool>,
    waker: Option<Waker>,
    max_age: i64,
    accounts: tee::Accounts,
    /// Mail to this domain is feedback for the outbound record (VERP).
    bounce_domain: String,
    /// Submission by a tenant's user takes the outbound path.
    outbox: Arc<outbound::Outbox>,
    hostname: String,
    /// Held for every message being accepted: the tee's copies give way meanwhile.
    front_line: record::FrontLine,
    /// postmaster and abuse: to a person, never to the feedback route.
    roles: crate::postmaster::Roles,
}

impl Sink for SpoolSink {
    fn accept(&self, msg: Accepted) -> BoxFuture<'_, Result<(), Reply>> {
        Box::pin(async move {
            // Until the 250 (or the refusal): the tee's copies wait meanwhile.
            let _accepting = self.front_line.accepting();
            if let Some(user) = &msg.envelope.auth_user {
                let tenant = self.outbox.record.user_tenant(user).await.map_err(|e| {
                    tracing::error!(error = %e, "user tenant lookup failed");
                    Reply::new(451, "4.3.0", "Temporary local problem, please try again later")
                })?;
                if let Some(t) = tenant {
                    return outbound_wiring::submit(&self.outbox, t.id, msg, &self.hostname).await;
                }
            }
            let expires = msg.envelope.received_at + self.max_age;
            let mut envelope = msg.envelope;
            for r in envelope.rcpts.iter_mut() {
                if self.roles.route(r) {
                    continue;
                }
                if r.route == vocabulary::Route::Relay
                    && vocabulary::domain_of(&r.address) == self.bounce_domain
                {
                    r.route = vocabulary::Route::Feedback;
                }
            }
            self.accounts.tee(&mut envelope);
            let id =
                self.spool.enqueue(msg.id, envelope, msg.trace, msg.content, expires).await.map_err(|e| {
                    if e.is_storage_full() {
                        // ingress logs the 452 at WARN with the peer.
                        tracing::debug!(error = %e, "spool full");
                        return storage_full_reply();
                    }
                    tracing::error!(error = %e, "spool write failed");
                    Reply::new(451, "4.3.0", "Temporary local problem, please try again later")
                })?;
            if let Some(w) = &self.waker {
                w.now(id);
            }
            Ok(())
        })
    }
}

/// RFC 3463 4.3.1: the reply to every message refused for a full disk.
pub fn storage_full_reply() -> Reply {
    Reply::new(452, "4.3.1", "Insufficient system storage, please try again later")
}

struct UsersAuth(record::Users);

impl Authenticator for UsersAuth {
    fn verify<'a>(&'a self, user: &'a str, password: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.0.verify(user, password).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "user lookup failed");
                false
            })
        })
    }
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let data = cfg.server.data.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store = record::Store::open(&data).await.context("opening the database")?;

    let spool_dir = data.join("spool");
    let (spool, recovery) = Spool::open(&spool_dir, cfg.queue.fsync).context("opening the spool")?;
    let spool = Arc::new(spool);
    tracing::info!(
        segments = recovery.segments,
        messages = recovery.messages,
        torn_tails = recovery.torn_tails,
        "spool recovered"
    );

    let (acceptor, cert) =
        tls::acceptor(&data, cfg.tls.cert.as_deref(), cfg.tls.key.as_deref(), &cfg.server.hostname)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    // Routes: the relay when configured (otherwise relayed recipients wait
    // in the spool), and the quarantine store for teed copies.
    apply_accounts(&store.quarantine(), &cfg.accounts).await?;
    // Everything else uses the store through its trait (SQLite today).
    let quarantine: Arc<dyn record::QuarantineStore> = Arc::new(store.quarantine());
    let accounts = tee::Accounts::load(quarantine.as_ref()).await;
    let accounts_task =
        tokio::spawn(accounts.clone().keep_fresh(quarantine.clone(), Duration::from_secs(10)));
    // Outbound: applications' mail (API, tenant submission) with VERP
    // return paths, and the feedback that comes back to the bounce domain.
    let bounce_domain = cfg.bounce_domain();
    let verp =
        outbound::Verp::new(&outbound_wiring::verp_key(&data)?, &cfg.outbound.bounce_local, &bounce_domain);
    let o = &cfg.outbound;
    let outbound_client = Arc::new(deliver::smtp::Client::new(deliver::smtp::ClientConfig {
        helo: cfg.server.hostname.clone(),
        max_connections: o.max_connections_per_host,
        connect_timeout: Duration::from_secs(o.connect_timeout_secs),
        command_timeout: Duration::from_secs(o.command_timeout_secs),
        data_timeout: Duration::from_secs(o.data_timeout_secs),
        idle_timeout: Duration::from_secs(30),
        starttls: o.smart_host_tls != "none",
        max_messages_per_connection: 1000,
    }));
    let record = store.outbound();
    match outbound::outbox::reconcile(&spool, &record).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(messages = n, "outbound sends found in the spool without a record: recorded"),
        Err(e) => tracing::error!(error = %e, "reconciling the spool with the outbound record"),
    }
    let dkim_dir = o.dkim_dir.clone().unwrap_or_else(|| data.join("dkim"));
    let dkim_keys = if dkim_dir.is_dir() {
        let keys = deliver::dkim::DkimKeys::load(&dkim_dir).context("loading DKIM keys")?;
        tracing::info!(keys = ?keys, dir = %dkim_dir.display(), "DKIM keys loaded");
        (!keys.is_empty()).then_some(keys)
    } else {
        None
    };
    let mut routes = queue::Routes {
        relay: None,
        quarantine: Some(Arc::new(tee::QuarantineTransport { store: quarantine.clone() })),
        outbound: Some(Arc::new(outbound::OutboundTransport {
            client: outbound_client.clone(),
            hops: Arc::new(outbound_wiring::Hops::new(&cfg)?),
            signer: dkim_keys.map(|k| Arc::new(outbound_wiring::Dkim(k)) as Arc<dyn outbound::Signer>),
            pace: (o.rate_per_domain > 0).then(|| {
                let rate = deliver::rate::Rate::new(o.rate_per_domain as f64, o.rate_per_domain.max(1));
                Arc::new(outbound_wiring::Paced(deliver::rate::RateLimiter::new(Some(rate))))
                    as Arc<dyn outbound::transport::Pace>
            }),
            verp: verp.clone(),
            record: record.clone(),
            public_url: cfg.http.public_url.clone(),
        })),
        feedback: Some(Arc::new(outbound::FeedbackTransport { verp: verp.clone(), record: record.clone() })),
    };
    let mut relay_client = None;
    if let Some(relay_addr) = &cfg.relay.host {
        let (host, port) = parse_host_port(relay_addr)?;
        let r = &cfg.relay;
        let client = Arc::new(deliver::smtp::Client::new(deliver::smtp::ClientConfig {
            helo: cfg.server.hostname.clone(),
            max_connections: r.max_connections,
            connect_timeout: Duration::from_secs(r.connect_timeout_secs),
            command_timeout: Duration::from_secs(r.command_timeout_secs),
            data_timeout: Duration::from_secs(r.data_timeout_secs),
            idle_timeout: Duration::from_secs(r.idle_timeout_secs),
            starttls: r.starttls,
            max_messages_per_connection: r.max_messages_per_connection,
        }));
        routes.relay = Some(Arc::new(relay::RelayTransport {
            client: client.clone(),
            dest: deliver::smtp::Destination::new(host, port),
        }));
        relay_client = Some(client);
    }
    let scheduler = Scheduler::new(
        spool.clone(),
        routes,
        relay::dsn_builder(cfg.server.hostname.clone()),
        SchedulerConfig {
            retry_initial: Duration::from_secs(cfg.queue.retry_initial_secs),
            retry_max: Duration::from_secs(cfg.queue.retry_max_secs),
            max_parallel: cfg.queue.max_parallel,
            hostname: cfg.server.hostname.clone(),
            held_retention: (cfg.queue.held_retention_secs > 0)
                .then(|| Duration::from_secs(cfg.queue.held_retention_secs)),
            delay_warning: (cfg.queue.delay_warning_secs > 0)
                .then(|| Duration::from_secs(cfg.queue.delay_warning_secs)),
        },
    );
    let waker = Some(scheduler.waker());
    let scheduler_task = Some(tokio::spawn(scheduler.run(stop_rx.clone())));

    let limits = ingress::Limits {
        max_message_size: cfg.smtp.max_message_size,
        max_recipients: cfg.smtp.max_recipients,
        max_connections: cfg.smtp.max_connections,
        max_connections_per_ip: cfg.smtp.max_connections_per_ip,
        command_timeout: Duration::from_secs(cfg.smtp.command_timeout_secs),
        data_timeout: Duration::from_secs(cfg.smtp.data_timeout_secs),
        max_line_length: cfg.smtp.max_line_length,
        max_bad_commands: cfg.smtp.max_bad_commands,
        reject_bare_newlines: cfg.smtp.bare_newlines == crate::config::BareNewlines::Reject,
    };
    let outbox = Arc::new(outbound::Outbox {
        record: record.clone(),
        spool: spool.clone(),
        waker: waker.clone(),
        max_age: cfg.queue.max_age_secs as i64,
    });
    let sink: Arc<dyn Sink> = Arc::new(SpoolSink {
        spool: spool.clone(),
        waker: waker.clone(),
        max_age: cfg.queue.max_age_secs as i64,
        accounts,
        bounce_domain: bounce_domain.clone(),
        outbox: outbox.clone(),
        hostname: cfg.server.hostname.clone(),
        front_line: store.quarantine().front_line(),
        roles: crate::postmaster::Roles::new(
            &cfg.server.hostname,
            cfg.server.accept_domains.iter().cloned().chain([bounce_domain.clone()]),
            cfg.relay.host.is_some(),
            cfg.server.postmaster.as_deref(),
        ),
    });
    let auth: Arc<dyn Authenticator> = Arc::new(UsersAuth(store.users()));
    let mut accept_domains: HashSet<String> =
        cfg.server.accept_domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    accept_domains.insert(bounce_domain.clone());
    let grace = Duration::from_secs(cfg.smtp.shutdown_grace_secs);

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for (kind, addr) in
        [(ListenerKind::Mx, &cfg.smtp.listen), (ListenerKind::Submission, &cfg.smtp.submission)]
    {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        bound.push(listener.local_addr()?);
        let session_cfg = Arc::new(ingress::SessionConfig {
            hostname: cfg.server.hostname.clone(),
            kind,
            accept_domains: accept_domains.clone(),
            limits: limits.clone(),
            tls: Some(acceptor.clone()),
            sink: sink.clone(),
            auth: auth.clone(),
        });
        let l = ingress::Listener { listener, cfg: session_cfg };
        listeners.push(tokio::spawn(ingress::serve(l, stop_rx.clone(), grace)));
    }
    let reinjector = Arc::new(release::Reinjector {
        spool: spool.clone(),
        waker: waker.clone(),
        store: quarantine.clone(),
        hostname: cfg.server.hostname.clone(),
        max_age: cfg.queue.max_age_secs as i64,
    });
    let control_task = tokio::spawn(control::serve(control::bind(&spool_dir)?, reinjector.clone()));

    // IMAP over the quarantine store: STARTTLS, and implicit TLS if asked for.
    let lockout =
        Arc::new(imap::Lockout::new(cfg.imap.max_login_failures, Duration::from_secs(cfg.imap.lockout_secs)));
    let mut imap_tasks = Vec::new();
    let mut imap_bound = Vec::new();
    for (addr, implicit_tls) in
        std::iter::once((&cfg.imap.listen, false)).chain(cfg.imap.imaps.iter().map(|a| (a, true)))
    {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        imap_bound.push(listener.local_addr()?);
        let mut icfg = imap::Config::new(cfg.server.hostname.clone(), quarantine.clone(), acceptor.clone());
        icfg.implicit_tls = implicit_tls;
        icfg.plaintext_loopback = cfg.imap.plaintext_loopback;
        icfg.max_command = cfg.imap.max_command_bytes;
        icfg.releaser = Some(reinjector.clone());
        icfg.lockout = lockout.clone();
        icfg.login_timeout = Duration::from_secs(cfg.imap.login_timeout_secs);
        icfg.idle_timeout = Duration::from_secs(cfg.imap.idle_timeout_secs);
        imap_tasks.push(tokio::spawn(imap::serve(listener, Arc::new(icfg), stop_rx.clone())));
    }
    let http_listener =
        TcpListener::bind(&cfg.http.listen).await.with_context(|| format!("binding {}", cfg.http.listen))?;
    let http_bound = http_listener.local_addr()?;
    let api_state = api::AppState::new(
        record.clone(),
        outbox.clone(),
        verp.clone(),
        api::Config {
            hostname: cfg.server.hostname.clone(),
            max_body: cfg.http.max_body_bytes,
            max_batch: cfg.http.max_batch,
            rate_per_sec: cfg.http.rate_per_sec,
            request_timeout: Duration::from_secs(cfg.http.request_timeout_secs.max(1)),
        },
    );
    let http_task = tokio::spawn(api::serve(http_listener, api_state, stop_rx.clone()));
    let sweeper_task = tokio::spawn(sweep_every(
        quarantine.clone(),
        Duration::from_secs(cfg.quarantine.sweep_interval_secs),
    ));

    println!(
        "sluice listening: smtp={} submission={} imap={} data={} relay={} tls-cert={} http={} bounce-domain={}",
        bound[0],
        bound[1],
        imap_bound.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
        data.display(),
        cfg.relay.host.as_deref().unwrap_or("none (mail is stored only)"),
        cert.display(),
        http_bound,
        bounce_domain,
    );
    tracing::info!(smtp = %bound[0], submission = %bound[1], accept_domains = ?cfg.server.accept_domains, "started");

    wait_for_signal().await;
    tracing::info!("shutting down: finishing sessions and deliveries in flight");
    let _ = stop_tx.send(true);
    for l in listeners.into_iter().chain(imap_tasks).chain(std::iter::once(http_task)) {
        let _ = l.await;
    }
    sweeper_task.abort();
    if let Some(t) = scheduler_task {
        let _ = t.await;
    }
    if let Some(c) = relay_client {
        c.shutdown().await;
    }
    outbound_client.shutdown().await;
    control_task.abort();
    accounts_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&spool_dir));
    spool.close();
    store.close().await;
    tracing::info!(peak_rss_kb = peak_rss_kb(), "stopped");
    Ok(())
}

/// Creates or updates the `[[accounts]]` of the config file.
async fn apply_accounts(
    store: &record::Quarantine,
    accounts: &[crate::config::AccountConfig],
) -> anyhow::Result<()> {
    for a in accounts {
        let text = std::fs::read_to_string(&a.password_file)
            .with_context(|| format!("accounts.{}: reading {}", a.name, a.password_file.display()))?;
        let password = text.lines().next().unwrap_or("");
        anyhow::ensure!(!password.is_empty(), "accounts.{}: the password file is empty", a.name);
        store.add_account(&a.name, password, &a.domains).await?;
        if let Some(days) = a.retention_days {
            store.set_retention(&a.name, None, days).await?;
        }
        for (folder, days) in &a.folder_retention_days {
            store.set_retention(&a.name, Some(folder), *days).await?;
        }
    }
    Ok(())
}

/// The retention sweeper: deletes expired quarantine copies on its own
/// schedule, in small transactions so IMAP sessions are never held up.
async fn sweep_every(store: Arc<dyn record::QuarantineStore>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let started = std::time::Instant::now();
        match store.sweep(chrono::Utc::now().timestamp()).await {
            Ok(s) if s.messages > 0 => tracing::info!(
                messages = s.messages,
                blobs = s.blobs,
                ms = started.elapsed().as_millis() as u64,
                "retention sweep"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

/// The process's peak resident set size (VmHWM), for the stop log line.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
