//! Provider webhooks in: `POST /v1/webhooks/{provider}` takes what Amazon
//! SES (through SNS), SendGrid, Mailgun, Postmark and SparkPost post about
//! the mail they sent, checks that the provider sent it, and records its
//! events in the one schema (`outbound::provider_feed`).
//!
//! No API key: each provider proves itself its own way, and an endpoint
//! nobody configured is a 404. A signature or credential that does not
//! hold is a 401; a body that is not the provider's a 400 (nothing of it is
//! recorded); a record that cannot write a 503, so the provider retries.
//!
//! - **SES**: every SNS message is verified (SignatureVersion 1, RSA-SHA1,
//!   or 2, RSA-SHA256) with the certificate at `SigningCertURL`, fetched
//!   only from a host the configuration allows (`sns.*.amazonaws.com`) and
//!   kept; a `SubscriptionConfirmation` is confirmed by a GET of its
//!   `SubscribeURL`, which must be on an allowed host too.
//! - **SendGrid**: ECDSA P-256 over timestamp and body with the account's
//!   verification key, and/or basic auth.
//! - **Mailgun**: HMAC-SHA256 of timestamp and token with the signing key;
//!   a timestamp older than `max_age_secs` or a token seen before (a
//!   replay) is refused.
//! - **Postmark**: basic auth or a header and value. **SparkPost**: basic
//!   auth or a bearer token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outbound::providers::{self, Notice, Provider, signature, sns};
use serde_json::json;

use crate::{ApiError, AppState};

/// How one provider's webhooks are received.
#[derive(Clone, Default)]
pub struct Hook {
    /// The tenant whose record its events go into.
    pub tenant: String,
    /// `user`, `password` of HTTP basic auth in the webhook's URL.
    pub basic: Option<(String, String)>,
    /// A bearer token (SparkPost).
    pub bearer: Option<String>,
    /// A header and the value it must carry (Postmark's custom headers).
    pub header: Option<(String, String)>,
    /// SendGrid's verification key (base64 DER or PEM).
    pub public_key: Option<String>,
    /// Mailgun's webhook signing key.
    pub signing_key: Option<Vec<u8>>,
    /// Hosts SNS certificates and subscription URLs may come from.
    pub sns_hosts: Vec<String>,
    /// Certificate authorities (PEM) trusted besides the system's when
    /// fetching from them.
    pub sns_roots: Vec<u8>,
    /// A signed timestamp older than this is refused (Mailgun).
    pub max_age_secs: u64,
}

impl std::fmt::Debug for Hook {
    // Credentials never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("tenant", &self.tenant)
            .field("basic", &self.basic.is_some())
            .field("bearer", &self.bearer.is_some())
            .field("header", &self.header.as_ref().map(|h| &h.0))
            .field("public_key", &self.public_key.is_some())
            .field("signing_key", &self.signing_key.is_some())
            .field("sns_hosts", &self.sns_hosts)
            .finish()
    }
}

impl Hook {
    /// Why a hook could not prove its posts, if it cannot: a provider
    /// configured without any check is refused at start, not left open.
    pub fn check(&self, provider: Provider) -> Result<(), String> {
        let any = self.basic.is_some() || self.bearer.is_some() || self.header.is_some();
        let ok = match provider {
            Provider::Ses => true,
            Provider::Sendgrid => any || self.public_key.is_some(),
            Provider::Mailgun => self.signing_key.is_some(),
            Provider::Postmark | Provider::Sparkpost => any,
        };
        if let Some(key) = &self.public_key {
            signature::check_sendgrid_public_key(key).map_err(|e| format!("{provider}: {e}"))?;
        }
        ok.then_some(()).ok_or_else(|| {
            let needs = match provider {
                Provider::Sendgrid => "public_key or basic_auth_file",
                Provider::Mailgun => "signing_key_file",
                Provider::Postmark => "basic_auth_file or header",
                _ => "basic_auth_file or bearer_file",
            };
            format!("[provider_webhooks.{provider}] needs {needs}: its posts could not be checked")
        })
    }
}

/// Every configured provider, and what receiving them needs.
#[derive(Clone, Default)]
pub struct ProviderHooks {
    hooks: HashMap<Provider, Hook>,
    http: Option<reqwest::Client>,
    /// SNS signing certificates by URL (there are a handful).
    certs: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
    /// Each provider's tenant id, once looked up (tenants are never removed).
    tenants: Arc<Mutex<HashMap<Provider, i64>>>,
}

/// Certificates kept, at most (an attacker cannot get past the host
/// allow-list, so this only bounds AWS's rotations).
const MAX_CERTS: usize = 64;

impl ProviderHooks {
    pub fn new(hooks: HashMap<Provider, Hook>) -> Result<Self, String> {
        for (p, h) in &hooks {
            h.check(*p)?;
        }
        // reqwest takes the process's rustls provider: ring, as every
        // other TLS config of sluice names it (a second call is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true);
        for (p, h) in &hooks {
            if h.sns_roots.is_empty() {
                continue;
            }
            let roots = reqwest::Certificate::from_pem_bundle(&h.sns_roots)
                .map_err(|e| format!("[provider_webhooks.{p}] sns_ca_file: {e}"))?;
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http.build().map_err(|e| format!("an HTTP client for SNS: {e}"))?;
        Ok(ProviderHooks { hooks, http: Some(http), certs: Arc::default(), tenants: Arc::default() })
    }

    fn client(&self) -> Result<&reqwest::Client, ApiError> {
        self.http.as_ref().ok_or_else(|| ApiError::unavailable("no HTTP client"))
    }
}

pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider: Provider = provider.parse().map_err(|_| ApiError::not_found("webhook provider"))?;
    let hooks = &state.providers;
    let hook = hooks.hooks.get(&provider).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("webhooks from {provider} are not configured ([provider_webhooks.{provider}])"),
        )
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let nonce = authenticate(&state, provider, hook, &headers, content_type, &body).await?;
    let payload = providers::parse_payload(provider, content_type, &body)
        .map_err(|e| ApiError::bad_request(format!("{provider} webhook body: {e}")))?;
    let mut confirmed = false;
    for notice in &payload.notices {
        if let Notice::SnsSubscriptionConfirmation { subscribe_url: Some(url), topic_arn } = notice {
            confirm(hooks, hook, url).await?;
            tracing::info!(topic = ?topic_arn, "SNS subscription confirmed");
            confirmed = true;
        }
    }
    let tenant = tenant_of(&state, provider, hook).await?;
    let ingested =
        outbound::provider_feed::ingest(&*state.record.events, provider, tenant, &payload.events).await;
    let ingested = match ingested {
        Ok(i) => i,
        Err(e) => {
            // Not recorded: the provider's retry must not be refused as a replay.
            if let Some(token) = &nonce {
                let _ = state.record.events.release_nonce(provider.as_str(), token).await;
            }
            return Err(e.into());
        }
    };
    for s in &payload.skipped {
        tracing::info!(%provider, event = %s.provider_event, why = s.why, "provider webhook: event skipped");
    }
    Ok(Json(json!({
        "recorded": ingested.recorded,
        "matched": ingested.matched,
        "duplicates": ingested.duplicates,
        "skipped": payload.skipped.len(),
        "confirmed": confirmed,
    }))
    .into_response())
}

/// The hook's tenant's id (made on first use, then remembered).
async fn tenant_of(state: &AppState, provider: Provider, hook: &Hook) -> Result<i64, ApiError> {
    let known = state.providers.tenants.lock().ok().and_then(|m| m.get(&provider).copied());
    if let Some(id) = known {
        return Ok(id);
    }
    let id = state.record.directory.tenant(&hook.tenant).await?.id;
    if let Ok(mut m) = state.providers.tenants.lock() {
        m.insert(provider, id);
    }
    Ok(id)
}

fn unauthorized(provider: Provider, why: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%provider, why = %why, "provider webhook refused");
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", format!("{provider} webhook not verified: {why}"))
}

/// Checks that the provider sent the post; Mailgun's token, once claimed.
async fn authenticate(
    state: &AppState,
    provider: Provider,
    hook: &Hook,
    headers: &HeaderMap,
    content_type: &str,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = h("authorization");
    if let Some((user, password)) = &hook.basic
        && !signature::check_basic(authorization, user, password)
    {
        return Err(unauthorized(provider, "basic auth"));
    }
    if let Some(token) = &hook.bearer
        && !signature::check_bearer(authorization, token)
    {
        return Err(unauthorized(provider, "bearer token"));
    }
    if let Some((name, value)) = &hook.header
        && !signature::check_header_value(h(name), value)
    {
        return Err(unauthorized(provider, format!("header {name}")));
    }
    match provider {
        Provider::Ses => verify_sns(&state.providers, hook, body).await.map(|()| None),
        Provider::Sendgrid => {
            if let Some(key) = &hook.public_key {
                let sig = h("x-twilio-email-event-webhook-signature").unwrap_or("");
                let ts = h("x-twilio-email-event-webhook-timestamp").unwrap_or("");
                signature::verify_sendgrid(key, sig, ts, body).map_err(|e| unauthorized(provider, e))?;
            }
            Ok(None)
        }
        Provider::Mailgun => mailgun(state, hook, content_type, body).await.map(Some),
        Provider::Postmark | Provider::Sparkpost => Ok(None),
    }
}

/// Mailgun's signature, freshness and one-time token; the token claimed.
async fn mailgun(state: &AppState, hook: &Hook, content_type: &str, body: &[u8]) -> Result<String, ApiError> {
    let p = Provider::Mailgun;
    let key = hook.signing_key.as_deref().ok_or_else(|| unauthorized(p, "no signing key"))?;
    let (timestamp, token, sig) =
        providers::mailgun::signed_with(content_type, body).ok_or_else(|| unauthorized(p, "no signature"))?;
    signature::verify_mailgun(key, &timestamp, &token, &sig).map_err(|e| unauthorized(p, e))?;
    let now = record::events::now_ms();
    if !signature::mailgun_fresh(&timestamp, now / 1000, hook.max_age_secs) {
        return Err(unauthorized(p, "timestamp too old or in the future"));
    }
    let forget_before = now - 2 * 1000 * hook.max_age_secs as i64;
    if !state.record.events.claim_nonce(p.as_str(), &token, now, forget_before).await? {
        return Err(unauthorized(p, "token already used (a replay)"));
    }
    Ok(token)
}

/// An SNS message's signature, by the certificate its URL names.
async fn verify_sns(hooks: &ProviderHooks, hook: &Hook, body: &[u8]) -> Result<(), ApiError> {
    let p = Provider::Ses;
    let msg: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("ses webhook body: not JSON: {e}")))?;
    let url = msg.get("SigningCertURL").or_else(|| msg.get("SigningCertUrl")).and_then(|v| v.as_str());
    let url = url.ok_or_else(|| unauthorized(p, "no SigningCertURL"))?;
    if !sns::sns_cert_url_allowed(url, &hook.sns_hosts) {
        return Err(unauthorized(p, format!("certificate URL {url:?} is not on an allowed host")));
    }
    let cert = certificate(hooks, url).await?;
    sns::verify_sns(&msg, &cert).map_err(|e| unauthorized(p, e))
}

async fn certificate(hooks: &ProviderHooks, url: &str) -> Result<Arc<Vec<u8>>, ApiError> {
    if let Some(c) = hooks.certs.lock().ok().and_then(|m| m.get(url).cloned()) {
        return Ok(c);
    }
    let fetched = hooks.client()?.get(url).send().await.and_then(|r| r.error_for_status());
    let bytes = match fetched {
        Ok(r) => r.bytes().await.map_err(ApiError::unavailable)?,
        Err(e) => return Err(ApiError::unavailable(format!("fetching the SNS certificate {url}: {e}"))),
    };
    let cert = Arc::new(bytes.to_vec());
    if let Ok(mut m) = hooks.certs.lock() {
        if m.len() >= MAX_CERTS {
            m.clear();
        }
        m.insert(url.to_string(), cert.clone());
    }
    Ok(cert)
}

/// Confirms an SNS subscription: a GET of its SubscribeURL, on an allowed
/// host only (the message is signed, but the URL is still not ours to
/// follow anywhere).
async fn confirm(hooks: &ProviderHooks, hook: &Hook, url: &str) -> Result<(), ApiError> {
    if !sns::sns_cert_url_allowed(url, &hook.sns_hosts) {
        return Err(ApiError::bad_request(format!("SubscribeURL {url:?} is not on an allowed host")));
    }
    match hooks.client()?.get(url).send().await.and_then(|r| r.error_for_status()) {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::unavailable(format!("confirming the SNS subscription: {e}"))),
    }
}
