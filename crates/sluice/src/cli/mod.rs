//! `sluice`'s command line as clap types, and nothing else: this module
//! depends only on clap and std, so `build.rs` includes it (`#[path]`) to
//! render a man page per command and the shell completions. `main.rs` runs
//! what it parses; the subcommand groups are in `groups.rs`.
//!
//! A new top-level command is a variant of `Command` (and an arm in
//! `main.rs`'s `run`).

mod groups;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub use groups::*;

/// The whole command line, `--version` saying `version` (the build's
/// commit is known to the binary, not to `build.rs`).
pub fn command(version: &'static str) -> clap::Command {
    Cli::command().version(version)
}

#[derive(Parser)]
#[command(name = "sluice", about = "Email message processing: accept, spool, classify, relay, record")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Common {
    /// TOML configuration file (unknown keys are errors).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory: spool, database, generated certificate [default: ./sluice-data].
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The record's database: sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB
    /// [default: sluice.db in the data directory].
    #[arg(long, global = true, env = "SLUICE_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: SMTP listeners, durable queue, relay.
    Serve(Box<ServeArgs>),
    /// Write a commented sluice.toml: every key with one line of help and
    /// its default, commented out (docs/config.md).
    Init {
        /// Where to write it.
        #[arg(default_value = "sluice.toml")]
        path: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration file, or print the effective configuration
    /// with the source of each value (docs/config.md).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Web dashboard operators (docs/dashboard.md).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Manage submission users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage quarantine-store accounts (IMAP logins that own folders).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Quarantine store maintenance.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
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
        command: ApikeyCommand,
    },
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// A tenant's suppression list.
    Suppress {
        #[command(subcommand)]
        command: SuppressCommand,
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
        command: PolicyCommand,
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
        command: SpamCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Provider webhooks (Amazon SES, SendGrid, Mailgun, Postmark, SparkPost).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Print the shell completions of bash, zsh or fish (`source <(sluice
    /// completions bash)`), or write them into --dir.
    Completions {
        shell: Shell,
        /// Write the file (sluice.bash, _sluice, sluice.fish) into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a man page (`sluice man serve | man -l -`), or write every
    /// page into --dir (sluice.1, sluice-serve.1, sluice-user-add.1, ...).
    Man {
        /// The command whose page to print, e.g. `serve` or `user add` [default: sluice's own].
        command: Vec<String>,
        /// Write every page into this directory instead.
        #[arg(long, conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// The shells `sluice completions` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate as `serve` would (unknown keys and bad values are
    /// errors naming the key and line); exit status 2 when it fails.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// The effective configuration as TOML, each value followed by its
    /// source (default, file, flag, env); passwords in URLs masked. Takes
    /// `serve`'s flags.
    Print {
        #[command(flatten)]
        serve: Box<ServeArgs>,
        /// One JSON object instead: {"smtp.listen": {"value": ..., "source": ...}, ...}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum WebhookCommand {
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
pub enum DbCommand {
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
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    /// MX listener address [default: 127.0.0.1:2525].
    #[arg(long)]
    pub smtp: Option<SocketAddr>,
    /// Submission listener address [default: 127.0.0.1:2587].
    #[arg(long)]
    pub submission: Option<SocketAddr>,
    /// IMAP listener address (STARTTLS) [default: 127.0.0.1:1143].
    #[arg(long)]
    pub imap: Option<SocketAddr>,
    /// Implicit-TLS IMAP listener address (off unless given).
    #[arg(long)]
    pub imaps: Option<SocketAddr>,
    /// Downstream HOST:PORT that receives the original of every accepted message.
    #[arg(long)]
    pub relay: Option<String>,
    /// Domain accepted from anyone (repeatable).
    #[arg(long = "accept-domain")]
    pub accept_domain: Vec<String>,
    /// Domain in filter mode: accepted from anyone, scanned once, each
    /// recipient's policy decides (repeatable; `[domains.D] mode = "filter"`).
    #[arg(long = "filter-domain")]
    pub filter_domain: Vec<String>,
    /// Name in the greeting and trace headers.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Log level: error, warn, info, debug, trace, or an EnvFilter directive
    /// (`info,sluice=debug`). Wins over SLUICE_LOG and `[server] log_level`;
    /// RUST_LOG is not read [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// HTTP API listener address [default: 127.0.0.1:8025].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Domain of VERP return paths; the MX listener accepts it [default: the hostname].
    #[arg(long)]
    pub bounce_domain: Option<String>,
    /// HOST:PORT of a smart host for outbound mail (otherwise each domain's MX).
    #[arg(long)]
    pub smart_host: Option<String>,
}

#[derive(Subcommand)]
pub enum QueueCommand {
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
