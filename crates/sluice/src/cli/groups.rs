//! The subcommand groups below `sluice`'s top-level commands: operators,
//! users, accounts, quarantine, API keys, DKIM keys, suppressions, policy
//! and the spam filter. Definitions only (clap and std); the `*_cmd.rs`
//! modules run them, and `build.rs` renders them as man pages.

use std::path::PathBuf;

use clap::Subcommand;

use super::Common;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Add an operator, or replace its password and tenants (its sessions end).
    Add {
        name: String,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: PathBuf,
        /// A tenant it sees (repeat for more) [default: every tenant].
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Every operator and the tenants it sees.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (or set a new password).
    Add {
        name: String,
        /// File holding the password (first line); `-` for standard input.
        #[arg(long)]
        password_file: String,
        /// The user submits for this tenant: the outbound path (suppression, record, VERP).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List users.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove a user: it can no longer log in to submit.
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Add an account (or set a new password) and the domains whose copies it receives.
    Add {
        name: String,
        /// File holding the password (first line); `-` for standard input.
        #[arg(long)]
        password_file: String,
        /// Domain whose quarantined copies go to this account (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List accounts: name, tenant, the domains whose copies each takes.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove an account with everything it holds: its copies, folders
    /// and domains (a running server stops teeing to it within a minute).
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Make an account's domains' inbound mail a tenant's: its events are
    /// that tenant's to see (`sluice track`, `/v1/events`). Unassigned
    /// inbound mail is the `default` tenant's.
    Tenant {
        name: String,
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set how many days copies are kept, for the whole account or one
    /// folder (an account or folder that does not exist is refused).
    Retention {
        name: String,
        days: i64,
        /// Only this folder (e.g. `Human`); otherwise the account's default.
        #[arg(long)]
        folder: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Delete messages past their retention, and their bytes.
    Sweep {
        /// Sweep as if it were this time (RFC 3339) instead of now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print what would be deleted (per account and folder), delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Re-inject a quarantined message to the recipients of the original.
    Release {
        account: String,
        /// Folder, e.g. `Bounces/Hard`.
        folder: String,
        uid: i64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key for a tenant (created if new); the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// A tenant's keys (their first characters only).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key by any start of it of 8 characters or more (as `list`
    /// shows it, or longer), or the whole key; a running server refuses it
    /// within 30 seconds.
    Revoke {
        prefix: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum SuppressCommand {
    /// The tenant's suppressed addresses.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Suppress an address by hand.
    Add {
        address: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Until when (RFC 3339); forever without it.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Lift a suppression.
    Remove {
        address: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Every entry as CSV.
    Export {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a signing key for DOMAIN, kept in the database (every node signs
    /// with it, a running server within a second), and print its DNS record.
    Generate {
        domain: String,
        #[arg(long, default_value = "sluice")]
        selector: String,
        /// rsa (RSA-2048, verified everywhere) or ed25519.
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        #[command(flatten)]
        common: Common,
    },
    /// The signing keys: domain, selector, when made.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Stop signing with a domain's key by SELECTOR (remove its DNS record after).
    Remove {
        domain: String,
        selector: String,
        #[command(flatten)]
        common: Common,
    },
    /// Store the keys of DIR (`DOMAIN/SELECTOR.pem`, as earlier versions kept
    /// them) in the database; `serve` does this for outbound.dkim_dir at start.
    Import {
        dir: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// The keys set at a scope (global, example.net or ann@example.net), or one key's value.
    Get {
        scope: String,
        key: Option<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Set a key at a scope: spam_action, spam_threshold, unsure_action,
    /// unsure_threshold, subject_prefix, archive, retention_days.FOLDER,
    /// allow_senders, block_senders (comma-separated), scan_failure.
    Set {
        scope: String,
        key: String,
        /// (A negative threshold is a value, not an option.)
        #[arg(allow_negative_numbers = true)]
        value: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Unset a key at a scope (the level below applies again).
    Unset {
        scope: String,
        key: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Every effective value for an address (or a domain, or global) and the level that set it.
    Explain {
        address: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// What-if: replay the recorded filter decisions of the last N days
    /// against KEY set to VALUE at SCOPE, and count the changes of fate.
    Simulate {
        scope: String,
        key: String,
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// Days of recorded decisions to replay.
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum SpamCommand {
    /// Score messages: one JSON line each,
    /// {"file","score","class","is_spam","signals":[...]}.
    Score {
        /// Model file [default: the global model in the record].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Before each message's line, its most significant Bayes tokens
        /// (lines starting with `#`: token, f(w), ham and spam counts).
        #[arg(long)]
        explain: bool,
        /// Override a tunable, KEY=VALUE (s, x, min_strength, max_tokens,
        /// min_ham, min_spam, min_total, user_weight, bayes_spam, bayes_ham,
        /// required, unsure); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Message files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Train the Bayes model on folders of ham and spam (every file in
    /// them, recursively); adds to the model unless --reset.
    Train {
        /// Folder of ham messages.
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// Folder of spam messages.
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Model file [default: the global model in the record].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Start from an empty model instead of adding to the one there.
        #[arg(long)]
        reset: bool,
    },
}
