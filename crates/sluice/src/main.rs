//! The `sluice` binary: one command, many subcommands. Parses flags, loads the
//! config, sets up logging, and hands over to the module for each subcommand.

mod classify_cmd;
mod cli;
mod config_cmd;
mod manual_cmd;
mod operator_cmd;
mod outbound_cmd;
mod policy_cmd;
mod spam_cmd;
mod stats_cmd;
mod store_cmd;
mod webhook_cmd;

use anyhow::Context;
use clap::FromArgMatches;

use cli::{Cli, Command, Common, DbCommand, QueueCommand, WebhookCommand};
use sluice::config::Config;
use sluice::{control, logbuf, serve};

/// mimalloc, not glibc's malloc: a message's buffers are allocated on one
/// thread and freed on another (session, scheduler, store writer), which
/// glibc answers with arena locking and consolidation.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `sluice --version`: the package's version and the commit it is built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SLUICE_COMMIT"), ")");

/// The file with `--data` and `--database` over it (as `serve` loads it).
fn load_config(common: &Common) -> anyhow::Result<Config> {
    Ok(config_cmd::load(common)?.0)
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

/// `sluice db forget --before YYYY-MM`.
fn db_forget(before: &str, common: &Common) -> anyhow::Result<i32> {
    let cfg = load_config(common)?;
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
    let matches = cli::command(VERSION).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
            let first_run = args.common.config.is_none();
            let level_flag = args.log_level.is_some();
            let (mut cfg, mut origins) = config_cmd::load(&args.common)?;
            config_cmd::apply_serve_flags(&mut cfg, *args, &mut origins);
            cfg.validate()?;
            let filter = log_filter(cfg.server.log_level.as_deref(), level_flag)?;
            let _log = init_server_logging(&cfg.server.log_format, filter)?;
            runtime()?.block_on(serve::run(cfg, first_run))?;
            Ok(0)
        }
        Command::Init { path, force } => config_cmd::init(&path, force),
        Command::Config { command: cli::ConfigCommand::Check { common } } => config_cmd::check(&common),
        Command::Config { command: cli::ConfigCommand::Print { serve, json } } => {
            config_cmd::print(*serve, json)
        }
        Command::User { command } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::user(command))
        }
        Command::Account { command } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::account(command))
        }
        Command::Quarantine { command: cli::QuarantineCommand::Sweep { as_of, dry_run, common } } => {
            init_logging("text");
            runtime()?.block_on(store_cmd::sweep(as_of, dry_run, common))
        }
        Command::Db { command: DbCommand::Forget { before, common } } => {
            init_logging("text");
            db_forget(&before, &common)
        }
        Command::Db { command: DbCommand::Migrate { common } } => {
            init_logging("text");
            runtime()?.block_on(db_command(&load_config(&common)?, false))
        }
        Command::Db { command: DbCommand::Check { common } } => {
            init_logging("text");
            runtime()?.block_on(db_command(&load_config(&common)?, true))
        }
        Command::Quarantine { command: cli::QuarantineCommand::Release { account, folder, uid, common } } => {
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
        Command::Completions { shell, dir } => manual_cmd::completions(shell, dir.as_deref()),
        Command::Man { command, dir } => manual_cmd::man(&command, dir.as_deref()),
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
