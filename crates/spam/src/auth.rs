//! Sender authentication results as spam signals, and the
//! `Authentication-Results` header (RFC 8601) that reports them.
//!
//! The checks themselves (SPF, DKIM, DMARC, ARC with DNS through a cache)
//! are run by the caller with mail-auth: this crate does no IO. It only
//! decides what each outcome is worth. The weights follow SpamAssassin's
//! defaults (its `50_scores.cf` / `60_whitelist_auth.cf` families) in
//! spirit: a pass is barely evidence (spammers authenticate their own
//! domains), a failure of a domain's own published policy is.

use serde::Serialize;

use crate::Signal;

/// An SPF result (RFC 7208 §2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spf {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    #[default]
    None,
    TempError,
    PermError,
}

/// A DKIM result (RFC 8601 §2.7.1), for the best signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dkim {
    Pass,
    Fail,
    Neutral,
    #[default]
    None,
    TempError,
    PermError,
    Policy,
}

/// A DMARC result (RFC 7489 §11.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dmarc {
    Pass,
    Fail,
    #[default]
    None,
    TempError,
    PermError,
}

/// The policy the From domain publishes (`p=`), which says how sure the
/// domain owner is that unaligned mail is forged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    #[default]
    None,
    Quarantine,
    Reject,
}

/// An ARC chain validation result (RFC 8617 §4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arc {
    Pass,
    Fail,
    #[default]
    None,
}

/// What the caller found out about the sender; every field defaults to
/// "not checked / no result", which gives no signal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    /// The `authserv-id` of the header: this server's name.
    pub authserv_id: String,
    pub spf: Spf,
    /// The MAIL FROM address (or HELO domain) SPF checked.
    pub smtp_mailfrom: Option<String>,
    pub dkim: Dkim,
    /// The `d=` of the signature the DKIM result is about.
    pub dkim_domain: Option<String>,
    pub dmarc: Dmarc,
    pub dmarc_policy: DmarcPolicy,
    /// The RFC5322.From domain DMARC evaluated.
    pub header_from: Option<String>,
    pub arc: Arc,
}

/// Signals and their points for a set of results.
///
/// Sources: SpamAssassin SPF_PASS (−0.001), SPF_FAIL (0.9), SPF_SOFTFAIL
/// (0.665), DKIM_VALID (−0.1), DKIM_INVALID (0.1), DMARC_REJECT / DMARC_QUAR
/// / DMARC_NONE (failure under each published policy); ARC: a validated
/// chain means a forwarder we can see vouched for the original results,
/// RFC 8617 §7.2, so it softens a DMARC failure caused by forwarding.
pub fn signals(a: &AuthResults) -> Vec<Signal> {
    let mut out = Vec::new();
    let mut push = |name: &str, score: f64, detail: String| out.push(Signal::new(name, score, detail));
    match a.spf {
        Spf::Pass => push("SPF_PASS", -0.001, domain_detail("smtp.mailfrom", &a.smtp_mailfrom)),
        Spf::Fail => push("SPF_FAIL", 0.9, domain_detail("smtp.mailfrom", &a.smtp_mailfrom)),
        Spf::SoftFail => push("SPF_SOFTFAIL", 0.665, domain_detail("smtp.mailfrom", &a.smtp_mailfrom)),
        Spf::PermError => push("SPF_PERMERROR", 0.01, String::new()),
        _ => {}
    }
    match a.dkim {
        Dkim::Pass => push("DKIM_VALID", -0.1, domain_detail("header.d", &a.dkim_domain)),
        Dkim::Fail => push("DKIM_INVALID", 0.1, domain_detail("header.d", &a.dkim_domain)),
        _ => {}
    }
    let forwarded_ok = a.arc == Arc::Pass;
    if a.dmarc == Dmarc::Fail {
        let (name, points) = match a.dmarc_policy {
            DmarcPolicy::Reject => ("DMARC_REJECT", 3.0),
            DmarcPolicy::Quarantine => ("DMARC_QUAR", 1.5),
            DmarcPolicy::None => ("DMARC_NONE", 0.1),
        };
        let points = if forwarded_ok { points / 3.0 } else { points };
        push(name, points, domain_detail("header.from", &a.header_from));
    }
    match a.arc {
        Arc::Pass => push("ARC_VALID", -0.1, String::new()),
        Arc::Fail => push("ARC_INVALID", 0.1, String::new()),
        Arc::None => {}
    }
    out
}

fn domain_detail(key: &str, v: &Option<String>) -> String {
    v.as_deref().map(|d| format!("{key}={d}")).unwrap_or_default()
}

/// The value of an `Authentication-Results` header (RFC 8601 §2.2): the
/// authserv-id, then one `method=result` with its property for each
/// method, separated by `;`. Values that are not RFC 5322 tokens are
/// quoted, so an address in `smtp.mailfrom` cannot break the syntax.
pub fn authentication_results(a: &AuthResults) -> String {
    let id = if a.authserv_id.is_empty() { "localhost" } else { &a.authserv_id };
    let mut out = String::from(id);
    let spf = ser(&a.spf);
    out.push_str(&format!(";\r\n\tspf={spf}{}", prop("smtp.mailfrom", &a.smtp_mailfrom)));
    out.push_str(&format!(";\r\n\tdkim={}{}", ser(&a.dkim), prop("header.d", &a.dkim_domain)));
    out.push_str(&format!(";\r\n\tdmarc={}{}", ser(&a.dmarc), prop("header.from", &a.header_from)));
    if a.dmarc != Dmarc::None {
        out.push_str(&format!(" policy.dmarc={}", ser(&a.dmarc_policy)));
    }
    out.push_str(&format!(";\r\n\tarc={}", ser(&a.arc)));
    out
}

fn ser<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// ` key=value`, the value quoted when it is not a plain token.
fn prop(key: &str, v: &Option<String>) -> String {
    let Some(v) = v.as_deref() else { return String::new() };
    let plain = !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@".contains(&b));
    if plain {
        format!(" {key}={v}")
    } else {
        let escaped: String = v
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| {
                let esc = matches!(c, '"' | '\\');
                [esc.then_some('\\'), Some(c)].into_iter().flatten()
            })
            .collect();
        format!(" {key}=\"{escaped}\"")
    }
}
