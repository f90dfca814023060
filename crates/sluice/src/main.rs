//! The `sluice` binary: one command, many subcommands. Parses flags, loads the
//! config, sets up logging, and hands over to the module for each subcommand.

mod classify_cmd;
mod operator_cmd;
mod outbound_cmd;
mod policy_cmd;
mod spam_cmd;
mod stats_cmd;
mod store_cmd;
mod webhook_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use sluice::config::Config;
use sluice::{control, logbuf, serve};

/// mimalloc, not glibc's malloc: a message's buffers are allocated on one
/// thread and freed on another (session, scheduler, store writer), which
/// glibc answers with arena locking and consolidation.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SLUICE_COMMIT"), ")"),
    about = "Email message processing: accept, spool, classify, relay, record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file (unknown keys are errors).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory: spool, database, generated certificate [default: ./sluice-data].
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// The record's database: sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB
    /// [default: sluice.db in the data directory].
    #[arg(long, global = true, env = "SLUICE_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: SMTP listeners, durable queue, relay.
    Serve(Box<ServeArgs>),
    /// Web dashboard operators (docs/dashboard.md).
    Operator {
        #[command(subcommand)]
        command: operator_cmd::OperatorCommand,
    },
    /// Manage submission users.
    User {
        #[command(subcommand)]
        command: store_cmd::UserCommand,
    },
    /// Manage quarantine-store accounts (IMAP logins that own folders).
    Account {
        #[command(subcommand)]
        command: store_cmd::AccountCommand,
    },
    /// Quarantine store maintenance.
    Quarantine {
        #[command(subcommand)]
        command: store_cmd::QuarantineCommand,
    },
    /// Inspect and steer the queue of a running or stopped server.
    Queue {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// API keys for the HTTP API.
    Apikey {
        #[command(subcommand)]
        command: outbound_cmd::ApikeyCommand,
    },
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        command: outbound_cmd::DkimCommand,
    },
    /// A tenant's suppression list.
    Suppress {
        #[command(subcommand)]
        command: outbound_cmd::SuppressCommand,
    },
    /// Where did a message go? Each recipient's status and timeline, or one address's history.
    Track {
        /// Message id, Message-ID header, or recipient address.
        target: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Statistics over a window, from the record: sent, delivered, deferred,
    /// bounced (by reason), complained, unsubscribed, opens and clicks
    /// (total, unique, human) and rates, as `GET /v1/stats` counts them.
    Stats {
        /// Only this tenant's [default: every tenant's, added up].
        #[arg(long)]
        tenant: Option<String>,
        /// Start of the window, RFC 3339 or ms [default: a week before --to].
        #[arg(long)]
        from: Option<String>,
        /// End of the window (not in it), RFC 3339 or ms [default: now].
        #[arg(long)]
        to: Option<String>,
        /// hour, day, tag, domain, reason, provider or machine_class.
        #[arg(long)]
        group_by: Option<String>,
        /// JSON lines (each group, then the window's with "total": true) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Per-recipient policy (global, domain, address): get, set, unset,
    /// explain, simulate.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// The record's database (SQLite, or PostgreSQL shared by many nodes).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Classify messages (bounce, delay, auto-reply, complaint, ...); one JSON line each.
    Classify {
        /// Output format (only jsonl).
        #[arg(long)]
        format: Option<String>,
        /// Evaluate against a corpus folder with labels.jsonl instead.
        #[arg(long)]
        eval: Option<PathBuf>,
        /// Before each message's line, say how it was decided: the format
        /// parser, each recipient's status source, the rule and its source,
        /// every adjustment (lines starting with `#`).
        #[arg(long)]
        explain: bool,
        /// Threads for many files (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Message files; `-` reads standard input.
        files: Vec<String>,
    },
    /// The built-in spam filter: train its Bayes model, score messages.
    Spam {
        #[command(subcommand)]
        command: spam_cmd::SpamCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Provider webhooks (Amazon SES, SendGrid, Mailgun, Postmark, SparkPost).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Print the normalized events of saved webhook bodies, one JSON line
    /// each, through the endpoint's parser; nothing is recorded.
    Parse {
        /// ses, sendgrid, mailgun, postmark or sparkpost.
        provider: String,
        /// Saved request bodies.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The body's Content-Type [default: from the file name: .json is
        /// JSON, .form a form (multipart when it starts with a boundary)].
        #[arg(long)]
        content_type: Option<String>,
        /// Print the provider's event object too (`raw`).
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Bring the schema up to date (every node does so when it starts).
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Connect, bring the schema up to date, and make a round trip; fails
    /// (exit status 2) when the database cannot be reached.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// The record's retention: forget the events of every month before
    /// this one (messages stay; on PostgreSQL each month goes as a
    /// partition).
    Forget {
        /// The first month kept, YYYY-MM.
        #[arg(long)]
        before: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// MX listener address [default: 127.0.0.1:2525].
    #[arg(long)]
    smtp: Option<SocketAddr>,
    /// Submission listener address [default: 127.0.0.1:2587].
    #[arg(long)]
    submission: Option<SocketAddr>,
    /// IMAP listener address (STARTTLS) [default: 127.0.0.1:1143].
    #[arg(long)]
    imap: Option<SocketAddr>,
    /// Implicit-TLS IMAP listener address (off unless given).
    #[arg(long)]
    imaps: Option<SocketAddr>,
    /// Downstream HOST:PORT that receives the original of every accepted message.
    #[arg(long)]
    relay: Option<String>,
    /// Domain accepted from anyone (repeatable).
    #[arg(long = "accept-domain")]
    accept_domain: Vec<String>,
    /// Domain in filter mode: accepted from anyone, scanned once, each
    /// recipient's policy decides (repeatable; `[domains.D] mode = "filter"`).
    #[arg(long = "filter-domain")]
    filter_domain: Vec<String>,
    /// Name in the greeting and trace headers.
    #[arg(long)]
    hostname: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Log level: error, warn, info, debug, trace, or an EnvFilter directive
    /// (`info,sluice=debug`). Wins over SLUICE_LOG and `[server] log_level`;
    /// RUST_LOG is not read [default: info].
    #[arg(long)]
    log_level: Option<String>,
    /// HTTP API listener address [default: 127.0.0.1:8025].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Domain of VERP return paths; the MX listener accepts it [default: the hostname].
    #[arg(long)]
    bounce_domain: Option<String>,
    /// HOST:PORT of a smart host for outbound mail (otherwise each domain's MX).
    #[arg(long)]
    smart_host: Option<String>,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// One line per queued message.
    List,
    /// What is pending per route (the relay, each account's quarantine
    /// copies): messages, recipients, and how long the oldest has waited.
    Summary,
    /// Everything about one message.
    Show { id: String },
    /// Attempt everything waiting, now.
    Flush,
    /// Stop attempting a message until released.
    Hold { id: String },
    /// Release a held message.
    Release { id: String },
    /// Remove a message without delivering it (no DSN).
    Delete { id: String },
}

fn load_config(common: &Common) -> anyhow::Result<Config> {
    let mut cfg = Config::load(common.config.as_deref())?;
    if let Some(d) = &common.data {
        cfg.server.data = d.clone();
    }
    if let Some(url) = &common.database {
        cfg.database.url = Some(url.clone());
    }
    Ok(cfg)
}

/// `sluice db migrate` and `sluice db check`.
async fn db_command(cfg: &Config, round_trip: bool) -> anyhow::Result<i32> {
    let url = cfg.database.url()?;
    if url == record::DatabaseUrl::Sqlite(None) {
        std::fs::create_dir_all(&cfg.server.data)?;
    }
    let started = std::time::Instant::now();
    let store = cfg.open_store().await?;
    let version = match round_trip {
        true => store.check().await,
        false => store.schema_version().await,
    };
    store.close().await;
    let version = version.with_context(|| format!("database {url}"))?;
    match round_trip {
        true => println!(
            "database {url}: reachable, schema version {version}, {} ms",
            started.elapsed().as_millis()
        ),
        false => println!("database {url}: schema version {version}, up to date"),
    }
    Ok(0)
}

/// Logs to stderr, for the commands that run and exit.
fn init_logging(format: &str) {
    use std::io::IsTerminal;
    init_logging_to(format, std::io::stderr, std::io::stderr().is_terminal(), env_filter());
}

/// Logs to stderr for `serve` through `logbuf`: a log line costs the
/// session that logs it a copy into a buffer instead of a write(2) (there
/// are two or three per message), and a thread of its own writes what has
/// gathered every few milliseconds. Nothing is dropped; the guard writes
/// out what is left when `serve` returns.
fn init_server_logging(format: &str, filter: EnvFilter) -> anyhow::Result<logbuf::Guard> {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = logbuf::start(std::io::stderr()).context("starting the log writer")?;
    init_logging_to(format, writer, ansi, filter);
    Ok(guard)
}

use tracing_subscriber::EnvFilter;

/// What `serve` logs: `--log-level` when given, else SLUICE_LOG when set,
/// else `[server] log_level`, else `info` (RUST_LOG is not read).
fn log_filter(level: Option<&str>, from_flag: bool) -> anyhow::Result<EnvFilter> {
    let parse = |l: &str| sluice::config::log_filter(l).context("--log-level / [server] log_level");
    match level {
        Some(l) if from_flag => parse(l),
        _ if std::env::var_os("SLUICE_LOG").is_some() => Ok(env_filter()),
        Some(l) => parse(l),
        None => Ok(EnvFilter::new("info")),
    }
}

/// SLUICE_LOG, else `info`.
fn env_filter() -> EnvFilter {
    EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

fn init_logging_to<W>(format: &str, writer: W, ansi: bool, filter: EnvFilter)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.compact().init();
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => {
            let mut cfg = load_config(&args.common)?;
            if let Some(v) = args.smtp {
                cfg.smtp.listen = v;
            }
            if let Some(v) = args.submission {
                cfg.smtp.submission = v;
            }
            if let Some(v) = args.imap {
                cfg.imap.listen = v;
            }
            if let Some(v) = args.imaps {
                cfg.imap.imaps = Some(v);
            }
            if let Some(v) = args.relay {
                cfg.relay.host = Some(v);
            }
            cfg.server.accept_domains.extend(args.accept_domain);
            for d in args.filter_domain {
                cfg.domains.entry(d).or_default().mode = sluice::config::DomainMode::Filter;
            }
            if let Some(v) = args.hostname {
                cfg.server.hostname = v;
            }
            if let Some(v) = args.log_format {
                cfg.server.log_format = v;
            }
            let level_flag = args.log_level.is_some();
            if let Some(v) = args.log_level {
                cfg.server.log_level = Some(v);
            }
            if let Some(v) = args.http {
                cfg.http.listen = v;
            }
            if let Some(v) = args.bounce_domain {
                cfg.outbound.bounce_domain = Some(v);
            }
            if let Some(v) = args.smart_host {
                cfg.outbound.smart_host = Some(v);
            }
            cfg.validate()?;
            let filter = log_filter(cfg.server.log_level.as_deref(), level_flag)?;
            let _log = init_server_logging(&cfg.server.log_format, filter)?;
            runtime()?.block_on(serve::run(cfg))?;
            Ok(0)
        }
        Command::User { command } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::user(command))
        }
        Command::Account { command } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::account(command))
        }
        Command::Quarantine { command: store_cmd::QuarantineCommand::Sweep { as_of, dry_run, common } } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::sweep(as_of, dry_run, common))
        }
        Command::Db { command: DbCommand::Forget { before, common } } => {
            init_logging("text");
            let cfg = load_config(&common)?;
            let month = chrono::NaiveDate::parse_from_str(&format!("{before}-01"), "%Y-%m-%d")
                .with_context(|| format!("--before {before:?} is not a month (YYYY-MM)"))?;
            let month = month.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis();
            runtime()?.block_on(async {
                let store = cfg.open_store().await?;
                let gone = store.events.forget_months_before(month).await;
                store.close().await;
                println!("forgot {} event(s) from before {before}", gone?);
                Ok(0)
            })
        }
        Command::Db { command: DbCommand::Migrate { common } } => {
            init_logging("text");
            runtime()?.block_on(db_command(&load_config(&common)?, false))
        }
        Command::Db { command: DbCommand::Check { common } } => {
            init_logging("text");
            runtime()?.block_on(db_command(&load_config(&common)?, true))
        }
        Command::Quarantine {
            command: store_cmd::QuarantineCommand::Release { account, folder, uid, common },
        } => {
            init_logging("text");
            let cfg = load_config(&common)?;
            let req = control::Request::QuarantineRelease { account, folder, uid };
            let resp = runtime()?.block_on(control::request(&cfg, req))?;
            Ok(control::print(&resp, false))
        }
        Command::Queue { common, json, command } => {
            let cfg = load_config(&common)?;
            let req = match command {
                QueueCommand::List => control::Request::List,
                QueueCommand::Summary => control::Request::Summary,
                QueueCommand::Show { id } => control::Request::Show { id },
                QueueCommand::Flush => control::Request::Flush,
                QueueCommand::Hold { id } => control::Request::Hold { id },
                QueueCommand::Release { id } => control::Request::Release { id },
                QueueCommand::Delete { id } => control::Request::Delete { id },
            };
            let resp = runtime()?.block_on(control::request(&cfg, req))?;
            Ok(control::print(&resp, json))
        }
        Command::Apikey { command } => runtime()?.block_on(outbound_cmd::apikey(command)),
        Command::Dkim { command } => runtime()?.block_on(outbound_cmd::dkim(command)),
        Command::Suppress { command } => runtime()?.block_on(outbound_cmd::suppress(command)),
        Command::Track { target, tenant, json, common } => {
            let cfg = load_config(&common)?;
            let code = runtime()?.block_on(outbound_cmd::track(target.clone(), tenant, json, common))?;
            // Not in the outbound record: a queue id may still be in the
            // spool (a deferred original, a dead letter).
            if code != 0 && target.parse::<vocabulary::QueueId>().is_ok() {
                let req = control::Request::Show { id: target };
                if let Ok(resp @ control::Response::Entry(_)) =
                    runtime()?.block_on(control::request(&cfg, req))
                {
                    if !json {
                        println!("in the queue:");
                    }
                    return Ok(control::print(&resp, json));
                }
            }
            Ok(code)
        }
        Command::Stats { tenant, from, to, group_by, json, common } => runtime()?
            .block_on(stats_cmd::run(stats_cmd::Options { tenant, from, to, group_by, json, common })),
        Command::Policy { command } => runtime()?.block_on(policy_cmd::run(command)),
        Command::Operator { command } => runtime()?.block_on(operator_cmd::run(command)),
        Command::Classify { format, eval, explain, jobs, files } => {
            classify_cmd::run(classify_cmd::Options { format, eval, explain, jobs, files })
        }
        Command::Spam { command, common } => {
            init_logging("text");
            spam_cmd::run(command, &load_config(&common)?)
        }
        Command::Webhook { command: WebhookCommand::Parse { provider, files, content_type, raw } } => {
            webhook_cmd::run(webhook_cmd::Options { provider, files, content_type, raw })
        }
    }
}

/// The first line of a file (or stdin), without its line ending.
fn read_password(path: &str) -> anyhow::Result<String> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
    };
    let line = text.lines().next().unwrap_or("").to_string();
    anyhow::ensure!(!line.is_empty(), "the password file is empty");
    Ok(line)
}
