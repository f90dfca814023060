//! `sluice serve`: opens the data directory, recovers the spool, starts the
//! listeners, the scheduler and the control socket, and stops them in order
//! on SIGTERM (sessions finish or are told 421; attempts in flight complete;
//! the spool is flushed last).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ingress::{Authenticator, BoxFuture, ListenerKind, Sink};
use queue::{Scheduler, SchedulerConfig, Spool, Waker};
use tokio::net::TcpListener;
use tokio::sync::watch;
use vocabulary::Reply;

use crate::config::{Config, SmartHostTls, parse_host_port};
use crate::{control, outbound_wiring, tls};
use route::inbound::InboundRecord;
use route::{relay, release, tee};

struct UsersAuth(Arc<dyn record::Directory>);

impl Authenticator for UsersAuth {
    fn verify<'a>(&'a self, user: &'a str, password: &'a str) -> BoxFuture<'a, Result<bool, Reply>> {
        Box::pin(async move {
            self.0.verify_user(user, password).await.map_err(|e| {
                tracing::error!(error = %e, "user lookup failed");
                Reply::new(454, "4.7.0", "Temporary authentication failure, please try again later")
            })
        })
    }
}

/// The sockets `serve` answers on, bound before it starts (on port 0 in
/// tests).
pub struct Listeners {
    pub smtp: TcpListener,
    pub submission: TcpListener,
    /// IMAP listeners, each with whether it speaks TLS from the first byte.
    pub imap: Vec<(TcpListener, bool)>,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds every address the configuration names.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let smtp = bind(cfg.smtp.listen).await?;
        let submission = bind(cfg.smtp.submission).await?;
        let mut imap = vec![(bind(cfg.imap.listen).await?, false)];
        if let Some(addr) = cfg.imap.imaps {
            imap.push((bind(addr).await?, true));
        }
        let http = bind(cfg.http.listen).await?;
        Ok(Listeners { smtp, submission, imap, http })
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

/// `sluice serve`: binds the configured addresses and serves until SIGTERM
/// or Ctrl-C. `first_run` (no config file given) adds the listeners and the
/// next commands to try to the start line (`first_run.rs`).
pub async fn run(cfg: Config, first_run: bool) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&cfg).await?;
    serve_saying(cfg, listeners, wait_for_signal(), first_run).await
}

/// The whole server on `listeners` until `shutdown` resolves, then stopped
/// in order: sessions finish or are told 421, attempts in flight complete,
/// the spool and the store are flushed last.
pub async fn serve(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_saying(cfg, listeners, shutdown, false).await
}

async fn serve_saying(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    first_run: bool,
) -> anyhow::Result<()> {
    // Before anything is counted (the record's catch-up counts its events).
    crate::metrics_wiring::install();
    let core = Core::open(&cfg).await?;
    let (acceptor, cert) =
        tls::acceptor(&core.data, cfg.tls.cert.as_deref(), cfg.tls.key.as_deref(), &cfg.server.hostname)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let clients = Clients::new(&cfg)?;
    let scheduler = Scheduler::new(
        core.spool.clone(),
        routes(&cfg, &core, &clients).await?,
        relay::dsn_builder(cfg.server.hostname.clone()),
        scheduler_config(&cfg),
    )
    .with_journal(Arc::new(core.inbound.clone()));
    let waker = Some(scheduler.waker());
    let scheduler_task = tokio::spawn(scheduler.run(stop_rx.clone()));
    let outbox = Arc::new(outbound::Outbox {
        record: core.store.clone(),
        spool: core.spool.clone(),
        waker: waker.clone(),
        max_age: cfg.queue.max_age_secs as i64,
        tracking: cfg.tracking.policy().map(Arc::new),
    });
    let addrs = Addresses::of(&listeners)?;
    let mut tasks =
        start_smtp(&cfg, &core, listeners.smtp, listeners.submission, &outbox, &waker, &acceptor, &stop_rx);
    let reinjector = Arc::new(release::Reinjector {
        spool: core.spool.clone(),
        waker: waker.clone(),
        store: core.store.quarantine.clone(),
        hostname: cfg.server.hostname.clone(),
        max_age: cfg.queue.max_age_secs as i64,
        inbound: Some(core.inbound.clone()),
    });
    let control_task = tokio::spawn(control::serve(control::bind(&core.spool_dir)?, reinjector.clone()));
    tasks.extend(start_imap(&cfg, &core, listeners.imap, &acceptor, &reinjector, &stop_rx));
    core.listening.track(&tasks);
    tasks.push(start_http(&cfg, &core, listeners.http, &outbox, &reinjector, &stop_rx));
    tasks.push(start_webhooks(&cfg, &core, &stop_rx)?);
    let background = [
        control_task,
        tokio::spawn(core.accounts.clone().keep_fresh(
            core.store.quarantine.clone(),
            core.store.directory.changes(),
            Duration::from_secs(60),
        )),
        tokio::spawn(core.inbound.clone().keep_fresh(Duration::from_secs(60))),
        tokio::spawn(sweep_every(
            core.store.clone(),
            cfg.policy.defaults()?,
            Duration::from_secs(cfg.quarantine.sweep_interval_secs),
        )),
        tokio::spawn(record_upkeep(core.store.clone(), cfg.database.event_retention_months)),
        tokio::spawn(route::catch_up::retire_written(
            core.spool.clone(),
            core.inbound.clone(),
            Duration::from_secs(1),
        )),
    ];
    addrs.announce(&cfg, &core, &cert);
    if first_run {
        let on = crate::first_run::Listening {
            smtp: addrs.smtp,
            submission: addrs.submission,
            imap: addrs.imap.clone(),
            http: addrs.http,
        };
        print!("{}", crate::first_run::hints(&on, &core.data));
    }

    shutdown.await;
    tracing::info!("shutting down: finishing sessions and deliveries in flight");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = scheduler_task.await;
    clients.shutdown().await;
    for t in background {
        t.abort();
    }
    let _ = std::fs::remove_file(control::socket_path(&core.spool_dir));
    core.spool.close();
    // The front line's last events, then the database; the spool's
    // segments kept for them are not needed then.
    core.store.events.flush().await;
    if let Err(e) = core.spool.retire(&core.spool.retiring()) {
        tracing::warn!(error = %e, "cannot delete spool segments the record is done with");
    }
    core.store.close().await;
    tracing::info!(peak_rss_kb = peak_rss_kb(), "stopped");
    Ok(())
}

/// What every stage shares: the record (its parts behind their traits)
/// and the spool, the store accounts' domains, the front line's record and
/// the VERP key.
struct Core {
    data: PathBuf,
    store: record::Store,
    spool: Arc<Spool>,
    spool_dir: PathBuf,
    accounts: tee::Accounts,
    /// The front line's events, written beside the applications'.
    inbound: InboundRecord,
    /// The SMTP listeners mark each message they accept; the copies and
    /// the front line's record give way meanwhile.
    front_line: route::front_line::FrontLine,
    verp: outbound::Verp,
    /// Signs open and click tokens, with the VERP key (domain separated).
    tracker: outbound::tracking::Tracker,
    /// Opens and clicks, on disk before their answer; the record follows.
    journal: record::journal::Journal,
    bounce_domain: String,
    /// Filter mode, when a domain is in it.
    filter: Option<Arc<route::filter::FilterMode>>,
    /// The listener tasks `/readyz` watches.
    listening: crate::metrics_wiring::Listening,
}

impl Core {
    async fn open(cfg: &Config) -> anyhow::Result<Self> {
        let data = cfg.server.data.clone();
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let front_line = route::front_line::FrontLine::default();
        let store = cfg.open_store_with(Arc::new(front_line.clone())).await?;
        let spool_dir = data.join("spool");
        let (spool, recovery) = Spool::open(&spool_dir, cfg.queue.fsync).context("opening the spool")?;
        let spool = Arc::new(spool);
        tracing::info!(
            segments = recovery.segments,
            messages = recovery.messages,
            torn_tails = recovery.torn_tails,
            "spool recovered"
        );
        apply_accounts(store.quarantine.as_ref(), &cfg.accounts).await?;
        let accounts = tee::Accounts::load(store.quarantine.as_ref()).await;
        let bounce_domain = cfg.bounce_domain();
        let key = outbound_wiring::verp_key(&data, store.directory.as_ref()).await?;
        let verp = outbound::Verp::new(&key, &cfg.outbound.bounce_local, &bounce_domain);
        let tracker = outbound::tracking::Tracker::new(&key);
        let journal = record::journal::Journal::open(&data.join("journal"), store.events.clone())
            .await
            .context("opening the event journal")?;
        match outbound::outbox::reconcile(&spool, store.events.as_ref()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(messages = n, "outbound sends found in the spool without a record: recorded")
            }
            Err(e) => tracing::error!(error = %e, "reconciling the spool with the outbound record"),
        }
        let inbound = InboundRecord::open(store.clone()).await.context("opening the inbound record")?;
        catch_up(&spool, &inbound).await;
        let filter = crate::filter_wiring::filter_mode(cfg, &data, &store, &accounts).await?.map(Arc::new);
        Ok(Core {
            data,
            store,
            spool,
            spool_dir,
            accounts,
            inbound,
            front_line,
            verp,
            tracker,
            journal,
            bounce_domain,
            filter,
            listening: Default::default(),
        })
    }
}

/// The SMTP clients: the outbound path's, and the relay's when one is set.
struct Clients {
    outbound: Arc<deliver::smtp::Client>,
    relay: Option<(Arc<deliver::smtp::Client>, deliver::smtp::Destination)>,
}

impl Clients {
    fn new(cfg: &Config) -> anyhow::Result<Self> {
        let o = &cfg.outbound;
        let outbound = Arc::new(deliver::smtp::Client::new(deliver::smtp::ClientConfig {
            helo: cfg.server.hostname.clone(),
            max_connections: o.max_connections_per_host,
            connect_timeout: Duration::from_secs(o.connect_timeout_secs),
            command_timeout: Duration::from_secs(o.command_timeout_secs),
            data_timeout: Duration::from_secs(o.data_timeout_secs),
            idle_timeout: Duration::from_secs(30),
            starttls: o.smart_host_tls != SmartHostTls::None,
            max_messages_per_connection: 1000,
        }));
        let Some(relay_addr) = &cfg.relay.host else { return Ok(Clients { outbound, relay: None }) };
        let (host, port) = parse_host_port(relay_addr)?;
        let r = &cfg.relay;
        let relay = Arc::new(deliver::smtp::Client::new(deliver::smtp::ClientConfig {
            helo: cfg.server.hostname.clone(),
            max_connections: r.max_connections,
            connect_timeout: Duration::from_secs(r.connect_timeout_secs),
            command_timeout: Duration::from_secs(r.command_timeout_secs),
            data_timeout: Duration::from_secs(r.data_timeout_secs),
            idle_timeout: Duration::from_secs(r.idle_timeout_secs),
            starttls: r.starttls,
            max_messages_per_connection: r.max_messages_per_connection,
        }));
        Ok(Clients { outbound, relay: Some((relay, deliver::smtp::Destination::new(host, port))) })
    }

    async fn shutdown(&self) {
        if let Some((c, _)) = &self.relay {
            c.shutdown().await;
        }
        self.outbound.shutdown().await;
    }
}

/// Routes: the relay when configured (otherwise relayed recipients wait in
/// the spool), the quarantine store for teed copies, and the outbound path
/// with the feedback that comes back to its bounce domain.
async fn routes(cfg: &Config, core: &Core, clients: &Clients) -> anyhow::Result<queue::Routes> {
    let o = &cfg.outbound;
    let dkim_dir = o.dkim_dir.clone().unwrap_or_else(|| core.data.join("dkim"));
    outbound_wiring::import_dkim_dir(&dkim_dir, core.store.directory.as_ref()).await?;
    let dkim = outbound_wiring::Dkim::load(core.store.directory.clone()).await;
    use queue::{Concurrency, DsnPolicy, RouteSpec};
    use vocabulary::RouteKind;
    let outbound = outbound::OutboundTransport {
        client: clients.outbound.clone(),
        hops: Arc::new(outbound_wiring::Hops::new(cfg)?),
        signer: Some(dkim as Arc<dyn outbound::Signer>),
        pace: (o.rate_per_domain > 0).then(|| {
            let rate = deliver::rate::Rate::new(o.rate_per_domain as f64, o.rate_per_domain.max(1));
            Arc::new(outbound_wiring::Paced(deliver::rate::RateLimiter::new(Some(rate))))
                as Arc<dyn outbound::transport::Pace>
        }),
        verp: core.verp.clone(),
        record: core.store.events.clone(),
        public_url: cfg.http.public_url.clone(),
        tracking: cfg.tracking.policy().map(|p| (core.tracker.clone(), p.base_url)),
    };
    let feedback = outbound::FeedbackTransport { verp: core.verp.clone(), record: core.store.events.clone() };
    let copies = tee::QuarantineTransport {
        store: core.store.quarantine.clone(),
        copies: route::copies::Copies::new(core.store.quarantine.clone(), core.front_line.clone()),
        inbound: core.inbound.clone(),
    };
    // The relay is the downstream: its attempts hold the scheduler's slots
    // and its senders are told by DSN. Copies run in their lane and tell
    // nobody (a refused copy is held). The outbound path paces itself per
    // destination and records each recipient's fate, as feedback does.
    let mut routes = queue::Routes::default()
        .with(
            RouteKind::Quarantine,
            RouteSpec { transport: Arc::new(copies), concurrency: Concurrency::Lane, dsn: DsnPolicy::Nobody },
        )
        .with(
            RouteKind::Outbound,
            RouteSpec {
                transport: Arc::new(outbound),
                concurrency: Concurrency::Unbounded,
                dsn: DsnPolicy::Transport,
            },
        )
        .with(
            RouteKind::Feedback,
            RouteSpec {
                transport: Arc::new(feedback),
                concurrency: Concurrency::Unbounded,
                dsn: DsnPolicy::Transport,
            },
        );
    if let Some((client, dest)) = &clients.relay {
        let relay = relay::RelayTransport { client: client.clone(), dest: dest.clone() };
        let spec = RouteSpec {
            transport: Arc::new(relay),
            concurrency: Concurrency::Downstream,
            dsn: DsnPolicy::Sender,
        };
        routes = routes.with(RouteKind::Relay, spec);
    }
    Ok(routes)
}

fn scheduler_config(cfg: &Config) -> SchedulerConfig {
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    SchedulerConfig {
        retry_initial: Duration::from_secs(cfg.queue.retry_initial_secs),
        retry_max: Duration::from_secs(cfg.queue.retry_max_secs),
        max_parallel: cfg.queue.max_parallel,
        hostname: cfg.server.hostname.clone(),
        held_retention: secs(cfg.queue.held_retention_secs),
        delay_warning: secs(cfg.queue.delay_warning_secs),
    }
}

/// The MX and submission listeners, sharing one sink and one authenticator.
#[allow(clippy::too_many_arguments)]
fn start_smtp(
    cfg: &Config,
    core: &Core,
    smtp: TcpListener,
    submission: TcpListener,
    outbox: &Arc<outbound::Outbox>,
    waker: &Option<Waker>,
    acceptor: &tokio_rustls::TlsAcceptor,
    stop_rx: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
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
    let sink: Arc<dyn Sink> = Arc::new(route::Router {
        spool: core.spool.clone(),
        waker: waker.clone(),
        max_age: cfg.queue.max_age_secs as i64,
        accounts: core.accounts.clone(),
        bounce_domain: core.bounce_domain.clone(),
        outbox: outbox.clone(),
        hostname: cfg.server.hostname.clone(),
        front_line: core.front_line.clone(),
        roles: route::postmaster::Roles::new(
            &cfg.server.hostname,
            cfg.server
                .accept_domains
                .iter()
                .cloned()
                .chain(cfg.filter_domains())
                .chain([core.bounce_domain.clone()]),
            cfg.relay.host.is_some(),
            cfg.server.postmaster.as_deref(),
        ),
        inbound: core.inbound.clone(),
        filter: core.filter.clone(),
    });
    let auth: Arc<dyn Authenticator> = Arc::new(UsersAuth(core.store.directory.clone()));
    let mut accept_domains: HashSet<String> =
        cfg.server.accept_domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    accept_domains.extend(cfg.filter_domains());
    accept_domains.insert(core.bounce_domain.clone());
    let grace = Duration::from_secs(cfg.smtp.shutdown_grace_secs);
    [(ListenerKind::Mx, smtp), (ListenerKind::Submission, submission)]
        .into_iter()
        .map(|(kind, listener)| {
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
            tokio::spawn(ingress::serve(l, stop_rx.clone(), grace))
        })
        .collect()
}

/// IMAP over the quarantine store: STARTTLS, and implicit TLS if asked for.
fn start_imap(
    cfg: &Config,
    core: &Core,
    listeners: Vec<(TcpListener, bool)>,
    acceptor: &tokio_rustls::TlsAcceptor,
    reinjector: &Arc<release::Reinjector>,
    stop_rx: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lockout =
        Arc::new(imap::Lockout::new(cfg.imap.max_login_failures, Duration::from_secs(cfg.imap.lockout_secs)));
    listeners
        .into_iter()
        .map(|(listener, implicit_tls)| {
            let mut icfg = imap::Config::new(
                cfg.server.hostname.clone(),
                core.store.quarantine.clone(),
                acceptor.clone(),
            );
            icfg.implicit_tls = implicit_tls;
            icfg.plaintext_loopback = cfg.imap.plaintext_loopback;
            icfg.max_command = cfg.imap.max_command_bytes;
            icfg.releaser = Some(reinjector.clone());
            icfg.learner =
                core.filter.as_ref().and_then(|f| route::learn::learner(f.users.clone(), f.rspamd.clone()));
            icfg.lockout = lockout.clone();
            icfg.login_timeout = Duration::from_secs(cfg.imap.login_timeout_secs);
            icfg.idle_timeout = Duration::from_secs(cfg.imap.idle_timeout_secs);
            tokio::spawn(imap::serve(listener, Arc::new(icfg), stop_rx.clone()))
        })
        .collect()
}

/// The HTTP API over the outbox and the outbound record.
fn start_http(
    cfg: &Config,
    core: &Core,
    listener: TcpListener,
    outbox: &Arc<outbound::Outbox>,
    reinjector: &Arc<release::Reinjector>,
    stop_rx: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let state = api::AppState::new(
        core.store.clone(),
        outbox.clone(),
        core.verp.clone(),
        api::Config {
            hostname: cfg.server.hostname.clone(),
            max_body: cfg.http.max_body_bytes,
            max_batch: cfg.http.max_batch,
            rate_per_sec: cfg.http.rate_per_sec,
            request_timeout: Duration::from_secs(cfg.http.request_timeout_secs.max(1)),
        },
    );
    let state = match cfg.tracking.base_url {
        Some(_) => state.with_tracking(api::Tracking::new(
            core.tracker.clone(),
            cfg.tracking.trust_forwarded_for,
            Some(core.journal.clone()),
        )),
        None => state,
    };
    // Checked when the configuration was validated: a failure here is a
    // file that changed since, and the API answers 404 for the providers.
    let state = match crate::provider_hooks::hooks(&cfg.provider_webhooks) {
        Ok(hooks) => state.with_providers(hooks),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "provider webhooks not received");
            state
        }
    };
    // The same allow-list as the dispatcher's (`start_webhooks`): an
    // endpoint is refused at creation where its deliveries would be.
    let state = match cfg.webhooks.settings() {
        Ok(s) => state.with_webhooks_out(s.guard),
        Err(_) => state,
    };
    // The queue and quarantine release, as the control socket does them.
    let state = state.with_operations(Arc::new(crate::ops_wiring::Ops(reinjector.clone())));
    // `[policy]` was checked when the configuration was validated.
    let state = state.with_policy_defaults(cfg.policy.defaults().unwrap_or_default());
    // `/metrics` and `/readyz` (docs/metrics.md).
    let node = crate::metrics_wiring::install().map(|handle| crate::metrics_wiring::Node {
        handle,
        spool: core.spool.clone(),
        spool_dir: core.spool_dir.clone(),
        store: core.store.clone(),
        listening: core.listening.clone(),
        probing: Default::default(),
    });
    let state =
        crate::metrics_wiring::attach(state, node, cfg.http.metrics_token_file.as_deref(), stop_rx.clone());
    tokio::spawn(api::serve(listener, state, stop_rx.clone()))
}

/// Webhooks out: this node's dispatcher (scanner, workers, recorder),
/// stopped with the listeners; the attempts in flight end and are
/// recorded first.
fn start_webhooks(
    cfg: &Config,
    core: &Core,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let settings = cfg.webhooks.settings()?;
    api::webhooks_out::spawn(core.store.webhooks.clone(), settings, stop_rx.clone())
        .map_err(anyhow::Error::msg)
}

/// Where the listeners ended up (port 0 picks one), for the start line.
struct Addresses {
    smtp: std::net::SocketAddr,
    submission: std::net::SocketAddr,
    imap: Vec<std::net::SocketAddr>,
    http: std::net::SocketAddr,
}

impl Addresses {
    fn of(l: &Listeners) -> std::io::Result<Self> {
        Ok(Addresses {
            smtp: l.smtp.local_addr()?,
            submission: l.submission.local_addr()?,
            imap: l.imap.iter().map(|(l, _)| l.local_addr()).collect::<Result<_, _>>()?,
            http: l.http.local_addr()?,
        })
    }

    fn announce(&self, cfg: &Config, core: &Core, cert: &std::path::Path) {
        println!(
            "sluice listening: smtp={} submission={} imap={} data={} relay={} tls-cert={} http={} bounce-domain={}",
            self.smtp,
            self.submission,
            self.imap.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            core.data.display(),
            cfg.relay.host.as_deref().unwrap_or("none (mail is stored only)"),
            cert.display(),
            self.http,
            core.bounce_domain,
        );
        tracing::info!(smtp = %self.smtp, submission = %self.submission, accept_domains = ?cfg.server.accept_domains, "started");
    }
}

/// Creates or updates the `[[accounts]]` of the config file.
async fn apply_accounts(
    store: &dyn record::QuarantineStore,
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
/// The recipients' retention policies are read fresh for each sweep.
async fn sweep_every(store: record::Store, defaults: record::policy::Defaults, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let started = std::time::Instant::now();
        let retention = match route::retention::policy_retention(&store, &defaults).await {
            Ok(r) => r,
            Err(e) => {
                // Never sweep by the store's days alone when a policy
                // (which may keep mail longer) could not be read.
                tracing::error!(error = %e, "retention policies unreadable: sweep skipped");
                continue;
            }
        };
        match store.quarantine.sweep(chrono::Utc::now().timestamp(), &retention).await {
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

/// After a crash the front line's record may lack its last writes: it
/// catches up from what the spool holds; from then on the spool keeps a
/// finished message's segments until the record has written its events.
async fn catch_up(spool: &Spool, inbound: &InboundRecord) {
    match route::catch_up::catch_up(spool, inbound).await {
        Ok(c) => {
            if c != route::catch_up::CaughtUp::default() {
                tracing::warn!(
                    messages = c.received,
                    outcomes = c.outcomes,
                    "the record lacked what a crash took; caught up from the spool"
                );
            }
            if let Err(e) = spool.release_finished() {
                tracing::warn!(error = %e, "cannot delete spool segments the record is done with");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the record cannot catch up from the spool now; it will at the next start")
        }
    }
    spool.keep_for_record();
}

/// The record's upkeep, at start and then every hour: the database's own
/// (PostgreSQL's partitions ahead), and forgetting the events of months
/// past `[database] event_retention_months` when it is set.
async fn record_upkeep(store: record::Store, months: u32) {
    loop {
        if let Err(e) = store.upkeep().await {
            tracing::warn!(error = %e, "record upkeep failed; retried in an hour");
        }
        if months > 0 {
            let before = record::events::months_before(record::events::now_ms(), months);
            match store.events.forget_months_before(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, months_kept = months, "events past retention forgotten"),
                Err(e) => {
                    tracing::warn!(error = %e, "forgetting events past retention failed; retried in an hour")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
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
