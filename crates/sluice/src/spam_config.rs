//! `[spam]`: what the filter-mode scan asks outside sluice — DNS for
//! sender authentication (SPF, DKIM, DMARC, ARC) and, optionally, rspamd.

use serde::Deserialize;

/// `[spam]`.
#[derive(Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SpamConfig {
    /// Check SPF, DKIM, DMARC and ARC of filter-mode mail and add an
    /// `Authentication-Results` header (true).
    pub authenticate: bool,
    /// Name servers for those checks (`"127.0.0.1:53"`); empty: the
    /// system's (`/etc/resolv.conf`).
    pub dns: Vec<String>,
    /// The `authserv-id` of the `Authentication-Results` header; default:
    /// `[server] hostname`.
    pub authserv_id: Option<String>,
    /// rspamd's controller worker, `http://127.0.0.1:11334` (a normal
    /// worker, 11333, checks but cannot learn): when set, every
    /// filter-mode message is also checked with `/checkv2` and the scores
    /// combined; IMAP moves into or out of Spam are taught to it
    /// (`/learnspam`, `/learnham`). A controller password goes in the URL
    /// (`http://:secret@host:11334`).
    pub rspamd_url: Option<String>,
    /// How long rspamd may take before the recipient's `scan_failure`
    /// policy decides (milliseconds, 5000).
    pub rspamd_timeout_ms: u64,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            authenticate: true,
            dns: Vec::new(),
            authserv_id: None,
            rspamd_url: None,
            rspamd_timeout_ms: 5000,
        }
    }
}
