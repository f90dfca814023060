//! rspamd as a second opinion in filter mode (`[spam] rspamd_url`).
//!
//! Each filter-mode message is posted once to rspamd's `/checkv2` with its
//! envelope in rspamd's request headers: `From` (the envelope sender),
//! one `Rcpt` per filter-mode recipient, `IP` (the client's address, no
//! port) and `Helo`. Its answer becomes one signal, `RSPAMD`, added to our
//! own verdict: rspamd's score scaled so that its `required_score` (the
//! reject threshold, 15 by default) lands on our filter's spam threshold
//! (`spam::Filter::required`, 5.0):
//!
//! `points = score * ours / required_score`, kept within `[-ours, 2 * ours]`
//!
//! so rspamd saying "reject" is enough, alone, for spam at our default
//! threshold; its "add header" (6 of 15) adds 2 points; a strongly hammy
//! rspamd can take back at most one threshold's worth. The signal's detail
//! names rspamd's score, action and top symbols; each recipient's
//! `filtered` event says rspamd was consulted (`"rspamd"` in its detail).
//!
//! When rspamd does not answer in `rspamd_timeout_ms`, cannot be reached or
//! answers something that is not a `/checkv2` reply, the message is logged
//! once at WARN and counts as not scanned for every recipient: each
//! recipient's `scan_failure` decides (`tempfail`: 451 for the whole
//! message; `accept_unscanned`: delivered untagged), and the events say
//! why (`rspamd unavailable: ...`).
//!
//! Learning: an IMAP move into or out of `Spam` also posts the message to
//! `/learnspam` or `/learnham`. Those are endpoints of rspamd's controller
//! worker (port 11334), which also answers `/checkv2`: point `rspamd_url`
//! at the controller for both. A password (the controller's `password`,
//! needed from outside its `secure_ip`) goes in the URL's user information
//! (`http://:secret@host:11334`) and is sent as the `Password` header.
//! A failed lesson is a WARN, never a failed IMAP command.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use record::events::NewEvent;
use serde::Deserialize;
use vocabulary::Envelope;

/// The name of the signal rspamd's opinion becomes.
pub const SIGNAL: &str = "RSPAMD";

/// rspamd's `required_score` when a reply has none (its reject default).
const RSPAMD_REJECT: f64 = 15.0;

/// Symbols named in the signal's detail.
const TOP_SYMBOLS: usize = 6;

/// A client of one rspamd (cheap to clone).
#[derive(Clone, Debug)]
pub struct Rspamd {
    base: String,
    password: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

/// rspamd's `/checkv2` reply, the parts used.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Reply {
    pub score: f64,
    #[serde(default)]
    pub required_score: f64,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub is_skipped: bool,
    #[serde(default)]
    pub symbols: BTreeMap<String, Symbol>,
}

/// One symbol of a reply.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Symbol {
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// What asking rspamd about one message gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Scored(Reply),
    /// Why there is no answer (timeout, connection, HTTP status, JSON).
    Failed(String),
}

impl Rspamd {
    /// A client of the rspamd at `url` (`http://127.0.0.1:11334`).
    pub fn new(url: &str, timeout: Duration) -> Result<Rspamd, String> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("rspamd_url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("rspamd_url {url:?}: http or https, not {}", parsed.scheme()));
        }
        let password = parsed.password().map(str::to_string);
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("");
        // reqwest takes the process's rustls provider (for https): ring,
        // as everywhere in sluice.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("rspamd client: {e}"))?;
        let base = parsed.as_str().trim_end_matches('/').to_string();
        Ok(Rspamd { base, password, http, timeout })
    }

    /// Where it asks.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `/checkv2` for `content`, from `envelope`'s sender and client, to
    /// `rcpts`.
    pub async fn check(
        &self,
        envelope: &Envelope,
        rcpts: &[String],
        content: &[u8],
    ) -> Result<Reply, String> {
        let mut req = self.post("checkv2", content);
        if !envelope.mail_from.is_empty() {
            req = req.header("From", &envelope.mail_from);
        }
        for r in rcpts {
            req = req.header("Rcpt", r);
        }
        if let Some(ip) = ip_of(&envelope.peer) {
            req = req.header("IP", ip.to_string());
        }
        if !envelope.helo.is_empty() {
            req = req.header("Helo", &envelope.helo);
        }
        if let Some(user) = &envelope.auth_user {
            req = req.header("User", user);
        }
        let (status, body) = self.send(req).await?;
        if !status.is_success() {
            return Err(format!("/checkv2 answered {status}: {}", excerpt(&body)));
        }
        parse(&body)
    }

    /// Teaches rspamd that `raw` is spam (or ham): rspamd's answer, said
    /// in words (learnt, already learnt, declined), or why it failed.
    pub async fn learn(&self, raw: &[u8], is_spam: bool) -> Result<String, String> {
        let path = if is_spam { "learnspam" } else { "learnham" };
        let (status, body) = self.send(self.post(path, raw)).await?;
        match status.as_u16() {
            200 => Ok(format!("learnt: {}", excerpt(&body))),
            // rspamd's "already learned" and "learn conditions denied".
            204 | 208 => Ok(format!("declined: {status}")),
            _ => Err(format!("/{path} answered {status}: {}", excerpt(&body))),
        }
    }

    /// Learns, logging what came of it (a failure at WARN).
    pub async fn teach(&self, account: &str, raw: &[u8], is_spam: bool) {
        match self.learn(raw, is_spam).await {
            Ok(what) => {
                tracing::info!(account, is_spam, rspamd = %self.base, %what, "rspamd taught from an IMAP move")
            }
            Err(e) => {
                tracing::warn!(account, is_spam, rspamd = %self.base, error = %e, "rspamd could not be taught")
            }
        }
    }

    fn post(&self, path: &str, body: &[u8]) -> reqwest::RequestBuilder {
        let req = self.http.post(format!("{}/{path}", self.base)).body(body.to_vec());
        match &self.password {
            Some(p) => req.header("Password", p),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let res = req.send().await.map_err(|e| self.describe(&e))?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| self.describe(&e))?;
        Ok((status, body.to_vec()))
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer in {} ms", self.timeout.as_millis());
        }
        let mut out = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            out = format!("{out}: {s}");
            source = s.source();
        }
        out
    }
}

/// Asks `rspamd`, when there is one, about a message to `rcpts`; a failure
/// is logged here, once for the message.
pub async fn consult(
    rspamd: Option<&Rspamd>,
    envelope: &Envelope,
    rcpts: &[String],
    content: &[u8],
) -> Option<Outcome> {
    let rspamd = rspamd?;
    Some(match rspamd.check(envelope, rcpts, content).await {
        Ok(reply) => Outcome::Scored(reply),
        Err(e) => {
            tracing::warn!(rspamd = %rspamd.base, error = %e, rcpts = rcpts.len(), "rspamd unavailable: the message counts as not scanned");
            Outcome::Failed(e)
        }
    })
}

/// A `/checkv2` reply from its JSON.
pub fn parse(body: &[u8]) -> Result<Reply, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a /checkv2 reply ({e}): {}", excerpt(body)))
}

/// rspamd's score on our scale: its `required_score` on `ours`.
pub fn points(score: f64, required: f64, ours: f64) -> f64 {
    let required = if required.is_finite() && required > 0.0 { required } else { RSPAMD_REJECT };
    let p = if score.is_finite() { score * ours / required } else { 0.0 };
    (p.clamp(-ours, 2.0 * ours) * 100.0).round() / 100.0
}

/// The `RSPAMD` signal of a reply, on `filter`'s scale.
pub fn signal(reply: &Reply, ours: f64) -> spam::Signal {
    let mut top: Vec<(&String, &Symbol)> = reply.symbols.iter().collect();
    top.sort_by(|a, b| b.1.score.abs().total_cmp(&a.1.score.abs()).then(a.0.cmp(b.0)));
    let names: Vec<String> =
        top.iter().take(TOP_SYMBOLS).map(|(n, s)| format!("{n}({:.2})", s.score)).collect();
    let detail = format!(
        "rspamd {:.2}/{:.2} {}: {}",
        reply.score,
        reply.required_score,
        reply.action,
        names.join(" ")
    );
    spam::Signal::new(SIGNAL, points(reply.score, reply.required_score, ours), detail)
}

/// `verdict` with rspamd's opinion added, when it gave one.
pub fn combine(filter: &spam::Filter, verdict: spam::Verdict, outcome: Option<&Outcome>) -> spam::Verdict {
    match outcome {
        Some(Outcome::Scored(reply)) => {
            let mut signals = verdict.signals;
            signals.push(signal(reply, filter.required));
            filter.verdict(signals)
        }
        _ => verdict,
    }
}

/// Why the message counts as not scanned, if rspamd failed.
pub fn failure(outcome: Option<&Outcome>) -> Option<&str> {
    match outcome {
        Some(Outcome::Failed(why)) => Some(why),
        _ => None,
    }
}

/// Notes in a `filtered` event that rspamd was asked, and what it said.
pub fn note(event: &mut NewEvent, outcome: Option<&Outcome>) {
    let Some(outcome) = outcome else { return };
    let said = match outcome {
        Outcome::Scored(r) => serde_json::json!({
            "score": r.score, "required_score": r.required_score, "action": r.action,
        }),
        Outcome::Failed(why) => serde_json::json!({ "error": why }),
    };
    if let Some(serde_json::Value::Object(detail)) = event.detail.as_mut() {
        detail.insert("rspamd".into(), said);
    }
}

/// The address of a peer as the envelope has it (`1.2.3.4:25`,
/// `[::1]:25`, or a bare address).
fn ip_of(peer: &str) -> Option<IpAddr> {
    peer.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| peer.parse::<IpAddr>()).ok()
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_string()
}

/// Teaches rspamd, then the next learner (users' own counts), from the
/// same IMAP move.
pub struct Teacher {
    pub rspamd: Rspamd,
    pub then: Option<std::sync::Arc<dyn imap::Learner>>,
}

impl imap::Learner for Teacher {
    fn learn<'a>(
        &'a self,
        account: &'a str,
        message: Vec<u8>,
        hash: &'a str,
        is_spam: bool,
    ) -> imap::BoxFuture<'a, ()> {
        Box::pin(async move {
            self.rspamd.teach(account, &message, is_spam).await;
            if let Some(then) = &self.then {
                then.learn(account, message, hash, is_spam).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/checkv2` reply as rspamd 3.4 writes it (Debian's, to a message
    /// from an address without reverse DNS).
    const REPLY: &str = r#"{"is_skipped":false,"score":7.0,"required_score":15.0,"action":"add header",
        "symbols":{"ARC_NA":{"name":"ARC_NA","score":0.0,"metric_score":0.0,"description":"ARC signature absent"},
        "RDNS_NONE":{"name":"RDNS_NONE","score":1.0,"metric_score":1.0,"description":"Cannot resolve reverse DNS for sender's IP"},
        "MIME_GOOD":{"name":"MIME_GOOD","score":-0.100000,"metric_score":-0.100000,"description":"Known content-type","options":["text/plain"]},
        "HFILTER_HOSTNAME_UNKNOWN":{"name":"HFILTER_HOSTNAME_UNKNOWN","score":2.500000,"metric_score":2.500000,"description":"Unknown client hostname (PTR or FCrDNS verification failed)"},
        "HFILTER_FROMHOST_NORES_A_OR_MX":{"name":"HFILTER_FROMHOST_NORES_A_OR_MX","score":1.500000,"metric_score":1.500000,"options":["example.com"]},
        "MISSING_DATE":{"name":"MISSING_DATE","score":1.0,"metric_score":1.0,"description":"Message date is missing"},
        "AUTH_NA":{"name":"AUTH_NA","score":1.0,"metric_score":1.0},
        "ONCE_RECEIVED":{"name":"ONCE_RECEIVED","score":0.100000,"metric_score":0.100000}},
        "messages":{},"message-id":"x2@example.com","time_real":0.006954,"milter":{"remove_headers":{"X-Spam":0}}}"#;

    #[test]
    fn a_checkv2_reply_parses_and_becomes_one_signal_naming_the_top_symbols() {
        let r = parse(REPLY.as_bytes()).unwrap();
        assert_eq!(
            (r.score, r.required_score, r.action.as_str(), r.is_skipped),
            (7.0, 15.0, "add header", false)
        );
        assert_eq!(r.symbols.len(), 8);
        assert_eq!(r.symbols["MIME_GOOD"].options, vec!["text/plain".to_string()]);
        assert_eq!(
            r.symbols["RDNS_NONE"].description.as_deref(),
            Some("Cannot resolve reverse DNS for sender's IP")
        );
        let s = signal(&r, 5.0);
        assert_eq!((s.name.as_str(), s.score), (SIGNAL, 2.33));
        assert!(
            s.detail.starts_with("rspamd 7.00/15.00 add header: HFILTER_HOSTNAME_UNKNOWN(2.50) "),
            "{}",
            s.detail
        );
        assert_eq!(s.detail.matches('(').count(), TOP_SYMBOLS, "{}", s.detail);
        assert!(!s.detail.contains("ARC_NA"), "zero scores come last: {}", s.detail);
    }

    #[test]
    fn gtube_is_a_skipped_reply_at_the_reject_score() {
        let gtube = br#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject",
            "symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0}},
            "messages":{"smtp_message":"Gtube pattern"},"message-id":"x1@example.com","time_real":0.079308}"#;
        let r = parse(gtube).unwrap();
        assert!(r.is_skipped);
        let s = signal(&r, 5.0);
        assert_eq!(s.score, 5.0);
        assert!(s.detail.ends_with("reject: GTUBE(0.00)"), "{}", s.detail);
    }

    #[test]
    fn what_is_not_a_reply_is_an_error_naming_it() {
        let e = parse(b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(e.contains("not a /checkv2 reply") && e.contains("502 Bad Gateway"), "{e}");
        assert!(parse(br#"{"error":"invalid command"}"#).is_err());
    }

    #[test]
    fn rspamds_reject_score_maps_on_our_spam_threshold_within_bounds() {
        assert_eq!(points(15.0, 15.0, 5.0), 5.0);
        assert_eq!(points(6.0, 15.0, 5.0), 2.0);
        assert_eq!(points(-3.0, 15.0, 5.0), -1.0);
        assert_eq!(points(100.0, 15.0, 5.0), 10.0, "capped at twice ours");
        assert_eq!(points(-100.0, 15.0, 5.0), -5.0, "floored at minus ours");
        assert_eq!(points(7.5, 0.0, 5.0), 2.5, "no required_score: rspamd's default, 15");
        assert_eq!(points(f64::NAN, 15.0, 5.0), 0.0);
        assert_eq!(points(10.0, 20.0, 6.0), 3.0);
    }

    #[test]
    fn combining_adds_the_signal_and_recomputes_the_class() {
        let filter = spam::Filter::new(spam::Model::new(spam::Counts::default()));
        let ours = filter.verdict(vec![spam::Signal::new("MISSING_DATE", 1.0, String::new())]);
        assert_eq!(ours.class, spam::Class::Ham);
        let r = parse(REPLY.replace("\"score\":7.0", "\"score\":12.0").as_bytes()).unwrap();
        let both = combine(&filter, ours.clone(), Some(&Outcome::Scored(r)));
        assert_eq!((both.score, both.class), (5.0, spam::Class::Spam));
        assert_eq!(both.signals.last().map(|s| s.name.as_str()), Some(SIGNAL));
        let failed = Outcome::Failed("no answer in 200 ms".into());
        assert_eq!(combine(&filter, ours.clone(), Some(&failed)), ours);
        assert_eq!(failure(Some(&failed)), Some("no answer in 200 ms"));
        assert_eq!(combine(&filter, ours.clone(), None), ours);
    }

    #[test]
    fn the_peer_is_sent_without_its_port() {
        assert_eq!(ip_of("192.0.2.1:25"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip_of("[2001:db8::1]:25"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ip_of("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ip_of("unknown"), None);
    }

    #[test]
    fn the_url_keeps_its_password_apart() {
        let r = Rspamd::new("http://:q1@127.0.0.1:11334/", Duration::from_millis(100)).unwrap();
        assert_eq!((r.url(), r.password.as_deref()), ("http://127.0.0.1:11334", Some("q1")));
        assert!(Rspamd::new("ftp://x", Duration::from_millis(1)).is_err());
        assert!(Rspamd::new("not a url", Duration::from_millis(1)).is_err());
    }
}
