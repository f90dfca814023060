//! `[provider_webhooks.PROVIDER]`: which email providers' webhooks
//! `POST /v1/webhooks/{provider}` receives, for which tenant, and how each
//! proves a post is its own. Secrets are read from files, never written in
//! the configuration itself (which is shown and copied around).
//!
//! ```toml
//! [provider_webhooks.ses]
//! tenant = "shop"
//! # sns_cert_hosts = ["sns.*.amazonaws.com"]   (the default)
//!
//! [provider_webhooks.sendgrid]
//! public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE..."
//!
//! [provider_webhooks.mailgun]
//! signing_key_file = "/etc/sluice/mailgun-signing-key"
//!
//! [provider_webhooks.postmark]
//! basic_auth_file = "/etc/sluice/postmark-hook"   # one line: user:password
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use outbound::providers::Provider;
use serde::Deserialize;

/// One provider's webhooks.
#[derive(Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderWebhookConfig {
    /// The tenant whose record the events go into (made if new).
    pub tenant: String,
    /// A file whose first line is `user:password`: HTTP basic auth, as in
    /// the webhook URL given to the provider (`https://user:password@...`).
    pub basic_auth_file: Option<PathBuf>,
    /// A file whose first line is a bearer token (SparkPost).
    pub bearer_file: Option<PathBuf>,
    /// A header the provider sends with a secret value (Postmark's custom
    /// headers), and the file holding that value.
    pub header: Option<String>,
    /// A file whose first line is the value of `header`.
    pub header_value_file: Option<PathBuf>,
    /// SendGrid's signed Event Webhook verification key (base64, as its
    /// settings page shows it; not a secret).
    pub public_key: Option<String>,
    /// A file whose first line is Mailgun's HTTP webhook signing key.
    pub signing_key_file: Option<PathBuf>,
    /// Host patterns SNS signing certificates and subscription URLs may
    /// come from, always over HTTPS (`*` is one DNS label; `host:port` or
    /// `host:*` for a port other than 443).
    pub sns_cert_hosts: Vec<String>,
    /// A PEM file of certificate authorities to trust, besides the
    /// system's, when fetching from those hosts (a test's own server, a
    /// TLS-inspecting proxy).
    pub sns_ca_file: Option<PathBuf>,
    /// Seconds a signed timestamp stays acceptable (Mailgun); a replayed
    /// token is refused for twice as long.
    pub max_age_secs: u64,
}

impl Default for ProviderWebhookConfig {
    fn default() -> Self {
        ProviderWebhookConfig {
            tenant: "default".into(),
            basic_auth_file: None,
            bearer_file: None,
            header: None,
            header_value_file: None,
            public_key: None,
            signing_key_file: None,
            sns_ca_file: None,
            sns_cert_hosts: outbound::providers::sns::DEFAULT_SNS_CERT_HOSTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_age_secs: 900,
        }
    }
}

/// The first line of a secret file, which must not be empty.
fn secret(path: &Path, key: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        bail!("{key}: {} is empty", path.display());
    }
    Ok(line)
}

/// The configured providers as the API receives them; an unknown
/// provider, an unreadable secret or a provider left without any check is
/// an error naming its key.
pub fn hooks(cfg: &BTreeMap<String, ProviderWebhookConfig>) -> anyhow::Result<api::ProviderHooks> {
    let mut hooks = HashMap::new();
    for (name, c) in cfg {
        let provider: Provider =
            name.parse().map_err(|e: String| anyhow::anyhow!("provider_webhooks: {e}"))?;
        let key = |k: &str| format!("provider_webhooks.{name}.{k}");
        let basic = match &c.basic_auth_file {
            Some(p) => {
                let line = secret(p, &key("basic_auth_file"))?;
                let (user, password) = line
                    .split_once(':')
                    .with_context(|| format!("{}: expected user:password", key("basic_auth_file")))?;
                Some((user.to_string(), password.to_string()))
            }
            None => None,
        };
        let header = match (&c.header, &c.header_value_file) {
            (Some(h), Some(p)) => Some((h.to_ascii_lowercase(), secret(p, &key("header_value_file"))?)),
            (None, None) => None,
            _ => bail!("{} and {} go together", key("header"), key("header_value_file")),
        };
        let hook = api::Hook {
            tenant: c.tenant.clone(),
            basic,
            bearer: c.bearer_file.as_deref().map(|p| secret(p, &key("bearer_file"))).transpose()?,
            header,
            public_key: c.public_key.clone(),
            signing_key: c
                .signing_key_file
                .as_deref()
                .map(|p| secret(p, &key("signing_key_file")).map(String::into_bytes))
                .transpose()?,
            sns_hosts: c.sns_cert_hosts.clone(),
            sns_roots: match &c.sns_ca_file {
                Some(p) => std::fs::read(p)
                    .with_context(|| format!("{}: reading {}", key("sns_ca_file"), p.display()))?,
                None => Vec::new(),
            },
            max_age_secs: c.max_age_secs.max(1),
        };
        hooks.insert(provider, hook);
    }
    api::ProviderHooks::new(hooks).map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_without_a_check_or_an_unknown_one_is_refused() {
        let cfg: crate::config::Config =
            toml::from_str("[provider_webhooks.postmark]\ntenant = \"a\"\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("postmark") && err.contains("basic_auth_file"), "{err}");
        let cfg: crate::config::Config = toml::from_str("[provider_webhooks.sesame]\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("sesame"));
        // SES needs nothing more: every SNS message is signed.
        let cfg: crate::config::Config = toml::from_str("[provider_webhooks.ses]\n").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hook");
        std::fs::write(&f, "user:pa:ss\n").unwrap();
        let text = format!("[provider_webhooks.sparkpost]\nbasic_auth_file = {:?}\n", f);
        let cfg: crate::config::Config = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        let dbg = format!("{:?}", hooks(&cfg.provider_webhooks).is_ok());
        assert_eq!(dbg, "true");
        std::fs::write(&f, "\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("empty"));
    }
}
