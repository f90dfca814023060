//! Wiring of the outbound path: the VERP key, where mail goes next (smart
//! host, static routes, MX), the outbound and feedback transports, and the
//! submission sink that sends a tenant's mail through the outbox.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use deliver::smtp::Destination;
use outbound::{NextHop, Outbox};
use queue::BoxFuture;
use vocabulary::Reply;

use crate::config::{Config, parse_host_port};

/// The VERP signing key, made on first start (`DATA/verp.key`, mode 0600).
pub fn verp_key(data: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data.join("verp.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_string();
        anyhow::ensure!(key.len() >= 32, "{} is too short to be a key", path.display());
        return Ok(key.into_bytes());
    }
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
    }
    Ok(key.into_bytes())
}

/// Smart host, static routes, then the domain's MX.
pub struct Hops {
    smart: Option<Destination>,
    routes: HashMap<String, Destination>,
}

impl Hops {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let smart = match &cfg.outbound.smart_host {
            Some(h) => {
                let (host, port) = parse_host_port(h)?;
                Some(Destination { host, port })
            }
            None => None,
        };
        let mut routes = HashMap::new();
        for (domain, h) in &cfg.outbound.mx_override {
            let (host, port) = parse_host_port(h)?;
            routes.insert(domain.to_ascii_lowercase(), Destination { host, port });
        }
        Ok(Hops { smart, routes })
    }
}

impl NextHop for Hops {
    fn resolve<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Destination>, Reply>> {
        Box::pin(async move {
            if let Some(s) = &self.smart {
                return Ok(vec![s.clone()]);
            }
            if let Some(d) = self.routes.get(domain).or_else(|| self.routes.get("*")) {
                return Ok(vec![d.clone()]);
            }
            Err(Reply::new(451, "4.4.3", format!("no route to {domain}")))
        })
    }

    fn is_smart_host(&self) -> bool {
        self.smart.is_some()
    }
}

/// Submission by a user who belongs to a tenant: the same outbox as the API.
pub async fn submit(
    outbox: &Outbox,
    tenant: i64,
    msg: ingress::Accepted,
    hostname: &str,
) -> Result<(), Reply> {
    let from = msg.envelope.mail_from.clone();
    let (content, message_id, subject) = outbound::outbox::complete_headers(msg.content, &from, hostname)
        .map_err(|m| Reply::new(554, "5.6.0", format!("Message refused: {m}")))?;
    let draft = outbound::Draft {
        from,
        recipients: msg.envelope.rcpts.iter().map(|r| (r.address.clone(), "to")).collect(),
        content,
        message_id: Some(message_id),
        subject,
        trace: msg.trace,
        smtputf8: msg.envelope.smtputf8,
        metadata: serde_json::json!({"submitted_by": msg.envelope.auth_user}),
        ..Default::default()
    };
    match outbox.send(tenant, draft).await {
        Ok(sent) => {
            tracing::info!(id = %sent.id, tenant, "submission accepted for the outbound path");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = ?e, "outbound submission failed");
            Err(Reply::new(451, "4.3.0", "Temporary local problem, please try again later"))
        }
    }
}
