//! What a provider's webhook events do to the record: each is matched to
//! the message of ours it is about, recorded once, and may suppress the
//! address by the same rules as a bounce that came back to our own bounce
//! domain.
//!
//! - **Matching.** By our own Message-ID header when the provider passes it
//!   on (SES `commonHeaders.messageId`, SendGrid `smtp-id`, Mailgun's
//!   `message-id`), then by the provider's own message id once an earlier
//!   event taught it ([`EventLog::link_provider_id`]: SendGrid's opens carry
//!   only `sg_message_id`). A match must be the webhook's tenant's message:
//!   a provider account configured for one tenant never writes into
//!   another's. An event that matches nothing is still kept, on the
//!   address, under `PROVIDER:PROVIDER_MESSAGE_ID`.
//! - **Once.** Each event's `source` is `provider:NAME:EVENT_ID:RECIPIENT`
//!   (the raw object's SHA-256 when the provider gives no id): a retried
//!   post records nothing twice, and `GET /v1/events?source=NAME` finds
//!   them by that prefix.
//! - **Whole.** A body's events are recorded in one transaction
//!   ([`EventLog::record_all`]): all, or none and the provider retries.
//! - **Suppression.** A bounce suppresses when the receiving server's reply
//!   says the address is bad (decide's rules, the same as for our own
//!   bounces: a block or a policy refusal never does, even when the
//!   provider calls it permanent); without a readable reply, when the
//!   provider itself says hard. Complaints and unsubscribes suppress.

use std::collections::HashSet;

use decide::{Reason, RecipientReport};
use record::RecordError;
use record::events::{EventKind, EventLog, NewEvent, ProviderLink, SmtpResponse, Suppress, now_ms};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::providers::{Provider, ProviderEvent};
use crate::tracking::{Activity, ActivityKind, Verdict, classify};

/// What one body came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    /// Events recorded now.
    pub recorded: usize,
    /// Of those, matched to one of our messages.
    pub matched: usize,
    /// Events recorded by an earlier post (a provider's retry).
    pub duplicates: usize,
}

/// Records a body's events for `tenant`, once each, all together.
pub async fn ingest(
    log: &dyn EventLog,
    provider: Provider,
    tenant: i64,
    events: &[ProviderEvent],
) -> Result<Ingested, RecordError> {
    let sources: Vec<String> = events.iter().map(|e| source(provider, e)).collect();
    let seen: HashSet<String> = log.recorded_sources(&sources).await?.into_iter().collect();
    let mut out = Ingested::default();
    let mut fresh = HashSet::new();
    let (mut new, mut links) = (Vec::new(), Vec::new());
    for (e, source) in events.iter().zip(sources) {
        // Seen before, or twice in this body: one event.
        if seen.contains(&source) || !fresh.insert(source.clone()) {
            out.duplicates += 1;
            continue;
        }
        let found = matched(log, provider, tenant, e).await?;
        if let Some(m) = &found {
            out.matched += 1;
            if let (Some(id), false) = (&e.message_id, m.by_provider_id) {
                links.push(ProviderLink {
                    provider: provider.as_str().into(),
                    provider_id: id.clone(),
                    tenant,
                    message_id: m.message_id.clone(),
                    at: now_ms(),
                });
            }
        }
        new.push(event(provider, tenant, e, found, source));
    }
    out.recorded = new.len();
    if !new.is_empty() {
        log.record_all(new).await?;
    }
    for link in &links {
        log.link_provider_id(link).await?;
    }
    Ok(out)
}

/// One of our messages, the recipient an event is about, and the
/// Message-ID it was found by.
struct Match {
    message: String,
    idx: i64,
    message_id: String,
    by_provider_id: bool,
}

async fn matched(
    log: &dyn EventLog,
    provider: Provider,
    tenant: i64,
    e: &ProviderEvent,
) -> Result<Option<Match>, RecordError> {
    let Some(rcpt) = e.recipient.as_deref() else { return Ok(None) };
    // Our Message-ID, as the provider passed it on (brackets or not);
    // the provider's own id too, when it is a Message-ID (Mailgun's is).
    let mut headers = vec![e.header_message_id.as_deref()];
    if e.message_id.as_deref().is_some_and(|id| id.contains('@')) && e.message_id != e.header_message_id {
        headers.push(e.message_id.as_deref());
    }
    for header in headers.into_iter().flatten() {
        if let Some(m) = by_header(log, tenant, header, rcpt).await? {
            return Ok(Some(m));
        }
    }
    // The provider's own id, when an earlier event linked it to ours.
    let Some(id) = e.message_id.as_deref() else { return Ok(None) };
    let Some((t, header)) = log.provider_message(provider.as_str(), id).await? else { return Ok(None) };
    if t != tenant {
        return Ok(None);
    }
    Ok(by_header(log, tenant, &header, rcpt).await?.map(|m| Match { by_provider_id: true, ..m }))
}

/// The tenant's message sent with this Message-ID to `rcpt`.
async fn by_header(
    log: &dyn EventLog,
    tenant: i64,
    header: &str,
    rcpt: &str,
) -> Result<Option<Match>, RecordError> {
    // The record keeps Message-IDs without their angle brackets, and
    // reads them so.
    let bare = header.trim().trim_start_matches('<').trim_end_matches('>');
    if bare.is_empty() {
        return Ok(None);
    }
    Ok(match log.by_message_id(bare, rcpt).await? {
        Some((t, message, idx)) if t == tenant => {
            Some(Match { message, idx, message_id: bare.to_string(), by_provider_id: false })
        }
        _ => None,
    })
}

/// Where an event came from: the key that makes a retried post a duplicate.
pub fn source(provider: Provider, e: &ProviderEvent) -> String {
    let id = match &e.event_id {
        Some(id) => id.clone(),
        None => {
            let digest = Sha256::digest(e.raw.to_string().as_bytes());
            format!("sha256-{}", data_encoding::HEXLOWER.encode(&digest[..16]))
        }
    };
    let rcpt = e.recipient.as_deref().map(record::events::normalize).unwrap_or_default();
    format!("provider:{provider}:{id}:{rcpt}")
}

/// The prefix every source of `provider`'s events has (`source=` in
/// `GET /v1/events`).
pub fn source_prefix(provider: Provider) -> String {
    format!("provider:{provider}:")
}

fn event(
    provider: Provider,
    tenant: i64,
    e: &ProviderEvent,
    found: Option<Match>,
    source: String,
) -> NewEvent {
    let (message, idx) = match found {
        Some(m) => (m.message, Some(m.idx)),
        None => (format!("{provider}:{}", e.message_id.as_deref().unwrap_or("-")), None),
    };
    // An open or a click a provider saw is classed as our own are (the
    // provider's reason, if any, stays in the detail).
    let class = machine_class(e);
    NewEvent {
        tenant: Some(tenant),
        message,
        idx,
        address: e.recipient.clone(),
        kind: e.event,
        at: e.at.unwrap_or_else(now_ms),
        reason: class.as_ref().map(|v| v.class.as_str().to_string()).or_else(|| e.reason.clone()),
        smtp: e.smtp_response.as_deref().map(smtp),
        detail: Some(serde_json::json!({
            "provider": provider.as_str(),
            "provider_event": e.provider_event,
            "event_id": e.event_id,
            "provider_message_id": e.message_id,
            "header_message_id": e.header_message_id,
            "description": e.description,
            "click_url": e.click_url,
            "user_agent": e.user_agent,
            "ip": e.ip,
            "provider_reason": class.as_ref().and(e.reason.as_deref()),
            "reasons": class.map(|v| v.reasons),
            "raw": e.raw,
        })),
        suppress: suppression(provider, e),
        source: Some(source),
        group: Vec::new(),
    }
}

/// The machine class of an open or a click, from what the provider saw of
/// the reader (its address and user agent; when the message was delivered
/// is not known here).
fn machine_class(e: &ProviderEvent) -> Option<Verdict> {
    let kind = match e.event {
        EventKind::Opened => ActivityKind::Open,
        EventKind::Clicked => ActivityKind::Click,
        _ => return None,
    };
    Some(classify(&Activity {
        kind,
        at_ms: e.at.unwrap_or_else(now_ms),
        delivered_at_ms: None,
        ip: e.ip.as_deref().and_then(|ip| ip.trim().parse().ok()),
        user_agent: e.user_agent.clone(),
        head_request: false,
        link: None,
        other_clicks: Vec::new(),
        links_in_message: 0,
    }))
}

/// The receiving server's reply as a provider passes it on (`smtp; 550
/// 5.1.1 ...`), read into code, enhanced status and text.
fn smtp(text: &str) -> SmtpResponse {
    let t = text.trim();
    let t = t.strip_prefix("smtp;").or_else(|| t.strip_prefix("SMTP;")).unwrap_or(t).trim();
    let mut words = t.split_whitespace();
    let code = words.next().and_then(|w| w.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
    let status = code
        .and(words.next())
        .map(|w| w.trim_end_matches([',', ';', ':']))
        .filter(|w| is_enhanced_status(w))
        .map(str::to_string);
    SmtpResponse { code, status, text: Some(text.to_string()), remote: None, tls: None }
}

fn is_enhanced_status(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a provider event suppresses its address, and why.
pub fn suppression(provider: Provider, e: &ProviderEvent) -> Option<Suppress> {
    let reason = match e.event {
        EventKind::Bounced => bounce_suppresses(provider, e)?,
        EventKind::Complained => format!("complaint ({provider})"),
        EventKind::Unsubscribed => format!("unsubscribed ({provider})"),
        _ => return None,
    };
    Some(Suppress { reason, expires_at: None })
}

/// A bounce suppresses when the reply names a bad address; a reply that
/// names another cause (a block, a full mailbox) never does; with no
/// readable reply, the provider's own word that it is hard decides.
fn bounce_suppresses(provider: Provider, e: &ProviderEvent) -> Option<String> {
    if let Some(text) = e.smtp_response.as_deref().filter(|t| !t.trim().is_empty()) {
        let reply = smtp(text);
        if reply.code.is_some_and(|c| c < 500) {
            return None;
        }
        let reason = decide::reason_of_reply(text, reply.status.as_deref());
        if reason != Reason::Undefined {
            let report = RecipientReport {
                status: reply.status.clone(),
                reply_code: reply.code,
                action: Some("failed".into()),
                ..RecipientReport::bare(e.recipient.clone().unwrap_or_default(), reason)
            };
            return report.is_address_failure().then(|| format!("{} ({provider})", reason.as_str()));
        }
    }
    provider_says_hard(provider, e.reason.as_deref()?).then(|| format!("hard bounce ({provider})"))
}

/// The provider's own classification of a bounce as permanent and about
/// the address, as each documents it: SES `Permanent` bounce types
/// (General, NoEmail, Suppressed, OnAccountSuppressionList), SendGrid's
/// `bounce` type (not `blocked`), Mailgun's `bounce` reasons, Postmark's
/// `HardBounce` and `BadEmailAddress`, SparkPost's hard bounce classes.
fn provider_says_hard(provider: Provider, reason: &str) -> bool {
    let r = reason.trim();
    match provider {
        Provider::Ses => r.starts_with("Permanent"),
        Provider::Sendgrid => r.eq_ignore_ascii_case("bounce"),
        Provider::Mailgun => matches!(r, "bounce" | "suppress-bounce" | "hardfail"),
        Provider::Postmark => matches!(r, "HardBounce" | "BadEmailAddress"),
        Provider::Sparkpost => r.starts_with("hard"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounce(reason: Option<&str>, smtp: Option<&str>) -> ProviderEvent {
        ProviderEvent {
            recipient: Some("a@example.com".into()),
            reason: reason.map(str::to_string),
            smtp_response: smtp.map(str::to_string),
            ..ProviderEvent::new(EventKind::Bounced, "Bounce", &serde_json::Value::Null)
        }
    }

    #[test]
    fn an_unknown_user_suppresses_and_a_block_never_does() {
        let unknown =
            bounce(Some("Permanent: General"), Some("smtp; 550 5.1.1 <a@example.com>... User unknown"));
        assert!(suppression(Provider::Ses, &unknown).is_some());
        // SES calls a block permanent too; the reply says it is a block.
        let block = bounce(
            Some("Permanent: General"),
            Some("550 5.7.1 Service unavailable; client host blocked using Spamhaus"),
        );
        assert_eq!(suppression(Provider::Ses, &block).map(|s| s.reason), None);
        // A soft bounce, by the reply's class.
        let full = bounce(Some("Transient: MailboxFull"), Some("452 4.2.2 Mailbox full"));
        assert!(suppression(Provider::Ses, &full).is_none());
    }

    #[test]
    fn without_a_reply_the_provider_s_own_word_decides() {
        assert!(suppression(Provider::Postmark, &bounce(Some("HardBounce"), None)).is_some());
        assert!(suppression(Provider::Postmark, &bounce(Some("SoftBounce"), None)).is_none());
        assert!(
            suppression(Provider::Sparkpost, &bounce(Some("hard: Invalid Recipient (10)"), None)).is_some()
        );
        assert!(suppression(Provider::Sparkpost, &bounce(Some("block: Spam Block (51)"), None)).is_none());
        assert!(suppression(Provider::Sendgrid, &bounce(Some("blocked"), None)).is_none());
        assert!(suppression(Provider::Ses, &bounce(Some("Undetermined: Undetermined"), None)).is_none());
    }

    #[test]
    fn complaints_and_unsubscribes_suppress_and_deliveries_do_not() {
        let mut e = bounce(None, None);
        e.event = EventKind::Complained;
        assert!(suppression(Provider::Ses, &e).is_some());
        e.event = EventKind::Unsubscribed;
        assert!(suppression(Provider::Sendgrid, &e).is_some());
        e.event = EventKind::Delivered;
        assert!(suppression(Provider::Sendgrid, &e).is_none());
    }

    #[test]
    fn a_provider_s_reply_is_read_into_code_and_status() {
        let r = smtp("smtp; 550 5.1.1 <jane@example.com>... User");
        assert_eq!((r.code, r.status.as_deref()), (Some(550), Some("5.1.1")));
        let r = smtp("MAIL REFUSED - IP (17.99.99.99) is in black list");
        assert_eq!((r.code, r.status), (None, None));
    }

    #[test]
    fn the_source_names_the_provider_the_event_and_the_recipient() {
        let mut e = bounce(None, None);
        e.event_id = Some("ev1".into());
        assert_eq!(source(Provider::Ses, &e), "provider:ses:ev1:a@example.com");
        assert!(source(Provider::Ses, &e).starts_with(&source_prefix(Provider::Ses)));
        // No id: the raw object's digest, so the same object is the same event.
        e.event_id = None;
        e.raw = serde_json::json!({"x": 1});
        let a = source(Provider::Postmark, &e);
        assert_eq!(a, source(Provider::Postmark, &e));
        e.raw = serde_json::json!({"x": 2});
        assert_ne!(a, source(Provider::Postmark, &e));
    }
}
