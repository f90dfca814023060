//! `[[accounts]]`, `[domains.D]`, `[policy]`, `[tracking]`, `[webhooks]`: per-tenant and per-domain settings.

use std::path::PathBuf;

use anyhow::bail;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[domains."example.net"]`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// `relay` (relayed unchanged) or `filter` (scanned; each recipient's policy decides).
    pub mode: DomainMode,
}

/// How a domain's inbound mail is handled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DomainMode {
    /// Relayed unchanged (and teed when a store account takes the domain).
    #[default]
    Relay,
    /// Scanned for spam; each recipient's policy decides deliver, tag,
    /// quarantine or reject (`route::filter`).
    Filter,
}

/// `[policy]`: the per-recipient policy's defaults for every tenant, keys
/// as `sluice policy set` takes them (`record::policy` lists them and their
/// built-in values), e.g. `spam_threshold = 6.0`, `unsure_action = "tag"`,
/// `block_senders = ["*.bulk.example"]`, `retention_days = { Spam = 14 }`.
/// A tenant's `global`, domain and address scopes override them.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct PolicyConfig(pub std::collections::BTreeMap<String, serde_json::Value>);

impl PolicyConfig {
    /// The defaults these keys make (an unknown key or a bad value names it).
    pub fn defaults(&self) -> anyhow::Result<record::policy::Defaults> {
        record::policy::Defaults::from_config(&self.0).map_err(|e| anyhow::anyhow!("policy.{e}"))
    }
}

/// `[[accounts]]`: one quarantine-store account.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The account's name: its IMAP login.
    pub name: String,
    /// File whose first line is the password (never the password itself).
    pub password_file: PathBuf,
    /// Domains whose copies this account receives.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Days copies are kept (default 30; Archive 365).
    pub retention_days: Option<i64>,
    /// Per-folder overrides, e.g. `{ "Human" = 7 }`.
    #[serde(default)]
    pub folder_retention_days: std::collections::BTreeMap<String, i64>,
}

/// `[tracking]`: open and click tracking of application mail. Nothing is
/// tracked until `base_url` names where sluice's HTTP listener is reached.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// The URL tracked links and the pixel point at (`https://t.example.com`,
    /// any host you point at sluice's HTTP listener, usually through a TLS
    /// proxy); `/t/c/TOKEN` and `/t/o/TOKEN` are served under it.
    pub base_url: Option<String>,
    /// Track opens when neither the send nor its stream says (false).
    pub opens: bool,
    /// Track clicks when neither the send nor its stream says (false).
    pub clicks: bool,
    /// Per stream defaults: `[tracking.streams.newsletter] opens = true`.
    pub streams: std::collections::BTreeMap<String, StreamTracking>,
    /// Take an open's or click's client address from the last
    /// `X-Forwarded-For` entry (set only behind a proxy of your own).
    pub trust_forwarded_for: bool,
}

/// `[tracking.streams.NAME]`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamTracking {
    /// Track opens of this stream's mail (default: `[tracking] opens`).
    pub opens: Option<bool>,
    /// Track clicks in this stream's mail (default: `[tracking] clicks`).
    pub clicks: Option<bool>,
}

impl TrackingConfig {
    /// The policy the outbox decides by; `None` without a base URL.
    pub fn policy(&self) -> Option<outbound::tracking::Policy> {
        use outbound::tracking::{Policy, Track};
        let base_url = self.base_url.as_deref()?.trim_end_matches('/').to_string();
        let streams = self
            .streams
            .iter()
            .map(|(name, s)| (name.clone(), Track { opens: s.opens, clicks: s.clicks }))
            .collect();
        Some(Policy { base_url, default: Track { opens: self.opens, clicks: self.clicks }, streams })
    }
}

/// `[webhooks]`: webhooks out to the endpoints tenants make (Standard
/// Webhooks, signed, retried, claimed through the database on every node).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Seconds to wait after the 1st, 2nd, ... failed attempt, each moved
    /// by up to ±20 %; one attempt more than there are entries. Default 5,
    /// 300, 1800, 7200, 18000, then 36000 seven times: about three days.
    pub retry_schedule_secs: Vec<u64>,
    /// An endpoint whose every attempt has failed for this long is
    /// disabled (default 3 days); a 410 Gone disables it at once.
    pub disable_after_secs: u64,
    /// CIDR ranges webhooks may go to although they are loopback, private,
    /// link-local, unique-local, CGNAT, multicast or reserved (refused by
    /// default, checked after DNS), e.g. `["10.20.0.0/16"]`.
    pub allow_destinations: Vec<String>,
    /// Days the per-attempt delivery log is kept.
    pub delivery_log_days: u32,
    /// Attempts in flight at once on this node.
    pub workers: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            retry_schedule_secs: api::webhooks_out::DEFAULT_SECS.to_vec(),
            disable_after_secs: 3 * 24 * 3600,
            allow_destinations: Vec::new(),
            delivery_log_days: 30,
            workers: 32,
        }
    }
}

impl WebhooksConfig {
    /// The dispatcher's settings, checked (the error names the key).
    pub fn settings(&self) -> anyhow::Result<api::webhooks_out::Settings> {
        let guard = api::webhooks_out::Guard::new(&self.allow_destinations)
            .map_err(|e| anyhow::anyhow!("webhooks.allow_destinations: {e}"))?;
        if self.retry_schedule_secs.is_empty() || self.retry_schedule_secs.contains(&0) {
            bail!("webhooks.retry_schedule_secs must list at least one delay, each at least 1 second");
        }
        for (key, v) in [
            ("webhooks.disable_after_secs", self.disable_after_secs),
            ("webhooks.delivery_log_days", u64::from(self.delivery_log_days)),
            ("webhooks.workers", self.workers as u64),
        ] {
            if v == 0 {
                bail!("{key} must be at least 1");
            }
        }
        Ok(api::webhooks_out::Settings {
            schedule: api::webhooks_out::Schedule::from_secs(&self.retry_schedule_secs),
            disable_after: std::time::Duration::from_secs(self.disable_after_secs),
            guard: std::sync::Arc::new(guard),
            log_days: self.delivery_log_days,
            workers: self.workers,
        })
    }
}
