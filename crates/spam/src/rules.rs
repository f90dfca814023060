//! Header and structure rules: facts about a message's form that spam
//! software gets wrong and mail clients get right, each worth a few points.
//!
//! The rules are data (`data/rules.toml`: name, score, source, which check
//! and its argument) so scores can change without touching code; the checks
//! are code, because each is a small piece of MIME logic a pattern
//! language would express badly. Every rule cites where it comes from (a
//! SpamAssassin rule or an RFC requirement), not a sample message.

use std::net::IpAddr;

use mail_parser::{Address, HeaderName, Message, MimeHeaders, PartType};
use serde::Deserialize;

use crate::Signal;
use crate::auth::{AuthResults, Dkim, Spf};
use crate::patterns::{self, Pattern, Target, Texts};

/// The rules shipped with sluice.
pub const DEFAULT_RULES: &str = include_str!("../data/rules.toml");

/// One rule as written in the data file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub name: String,
    pub score: f64,
    pub check: String,
    pub describe: String,
    pub source: String,
    #[serde(default)]
    pub arg: Option<String>,
    #[serde(default)]
    pub n: Option<f64>,
    #[serde(default)]
    pub list: Vec<String>,
    /// A pattern rule's regular expression (`header`, `body`, `rawbody`,
    /// `uri`; see `patterns.rs`) and the one that must not match.
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub unless: Option<String>,
    /// A `meta` rule's parts, by name.
    #[serde(default)]
    pub all: Vec<String>,
    #[serde(default)]
    pub any: Vec<String>,
    #[serde(default)]
    pub none: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleDef>,
}

/// The checks the data file can name.
#[derive(Clone, Debug)]
enum Check {
    MissingHeader(String),
    InvalidDate,
    DateInFuture(f64),
    DateInPast(f64),
    HtmlOnly,
    ImageOnly(usize),
    SubjectAllCaps,
    FromNameAddrMismatch,
    RcvdIllegalIp,
    RcvdNumericHelo,
    AttachmentExt(Vec<String>),
    ManyRecipients(usize),
    EmptyMessage,
    Base64Text,
    MimeWithoutVersion,
    OutlookMsgidTime,
    FreemailFrom,
    /// SPF or DKIM passed: the sender is who it says (SpamAssassin's
    /// `__NOT_SPOOFED`, from the caller's authentication results).
    Authenticated,
    Pattern(Pattern),
    /// A `meta` rule, its parts as indexes of the rules before it.
    Meta {
        all: Vec<usize>,
        any: Vec<usize>,
        none: Vec<usize>,
    },
}

/// A loaded rule: its definition and its check.
#[derive(Clone, Debug)]
pub struct Rule {
    pub def: RuleDef,
    check: Check,
}

/// The rule set.
#[derive(Clone, Debug)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Parses a rules file; an unknown check or a missing argument is an
    /// error at load time, never a silently dead rule.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rule.len());
        for def in file.rule {
            if def.name.starts_with("__") && def.score != 0.0 {
                return Err(format!("rule {}: a part of a meta rule scores nothing", def.name));
            }
            let rule = compile(def, &rules)?;
            rules.push(rule);
        }
        Ok(Rules { rules })
    }

    /// The shipped rule set.
    pub fn builtin() -> Rules {
        Rules::parse(DEFAULT_RULES).unwrap_or(Rules { rules: Vec::new() })
    }

    /// The rules that fire on `msg`, as signals, given what sender
    /// authentication found.
    pub fn evaluate(&self, msg: &Message<'_>, auth: &AuthResults) -> Vec<Signal> {
        let facts = Facts::of(msg);
        let needs_texts = self.rules.iter().any(|r| matches!(r.check, Check::Pattern(Pattern::Text { .. })));
        let texts = needs_texts.then(|| Texts::of(msg));
        let headers = HeaderIndex::of(msg);
        let mut fired = Vec::with_capacity(self.rules.len());
        let mut signals = Vec::new();
        for r in &self.rules {
            let hit = match &r.check {
                Check::Meta { all, any, none } => {
                    let on = |i: &usize| fired.get(*i).copied().unwrap_or(false);
                    let holds =
                        all.iter().all(on) && (any.is_empty() || any.iter().any(on)) && !none.iter().any(on);
                    holds.then(String::new)
                }
                Check::Pattern(p) => pattern_fires(p, &headers, texts.as_ref()),
                Check::Authenticated => (auth.spf == Spf::Pass || auth.dkim == Dkim::Pass).then(String::new),
                check => fires(check, msg, &headers, &facts),
            };
            fired.push(hit.is_some());
            if let Some(detail) = hit.filter(|_| !r.def.name.starts_with("__")) {
                signals.push(Signal::new(&r.def.name, r.def.score, detail));
            }
        }
        signals
    }
}

fn compile(def: RuleDef, before: &[Rule]) -> Result<Rule, String> {
    let n = || def.n.ok_or_else(|| format!("rule {}: check {} needs n", def.name, def.check));
    let check = match def.check.as_str() {
        "missing_header" => {
            Check::MissingHeader(def.arg.clone().ok_or_else(|| format!("rule {}: needs arg", def.name))?)
        }
        "invalid_date" => Check::InvalidDate,
        "date_in_future" => Check::DateInFuture(n()?),
        "date_in_past" => Check::DateInPast(n()?),
        "outlook_msgid_time" => Check::OutlookMsgidTime,
        "freemail_from" => Check::FreemailFrom,
        "authenticated" => Check::Authenticated,
        "html_only" => Check::HtmlOnly,
        "image_only" => Check::ImageOnly(n()? as usize),
        "subject_all_caps" => Check::SubjectAllCaps,
        "from_name_addr_mismatch" => Check::FromNameAddrMismatch,
        "rcvd_illegal_ip" => Check::RcvdIllegalIp,
        "rcvd_numeric_helo" => Check::RcvdNumericHelo,
        "attachment_ext" => Check::AttachmentExt(def.list.iter().map(|s| s.to_ascii_lowercase()).collect()),
        "many_recipients" => Check::ManyRecipients(n()? as usize),
        "empty_message" => Check::EmptyMessage,
        "base64_text" => Check::Base64Text,
        "mime_without_version" => Check::MimeWithoutVersion,
        "header" | "exists" | "body" | "rawbody" | "uri" => Check::Pattern(pattern(&def)?),
        "meta" => meta(&def, before)?,
        other => return Err(format!("rule {}: unknown check {other:?}", def.name)),
    };
    Ok(Rule { def, check })
}

/// A pattern rule from its definition: `header` takes the header's name
/// in `arg`, `exists` only that.
fn pattern(def: &RuleDef) -> Result<Pattern, String> {
    let name = &def.name;
    // Lowercase: matched against the message's header index (`HeaderIndex`).
    let header = || {
        def.arg
            .as_deref()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("rule {name}: needs arg (a header name)"))
    };
    if def.check == "exists" {
        return Ok(Pattern::Exists(header()?));
    }
    let source = def.pattern.as_deref().ok_or_else(|| format!("rule {name}: needs pattern"))?;
    let pattern = patterns::regex(name, source)?;
    let unless = def.unless.as_deref().map(|u| patterns::regex(name, u)).transpose()?;
    Ok(match def.check.as_str() {
        "header" => Pattern::Header { name: header()?, pattern, unless },
        "body" => Pattern::Text { target: Target::Body, pattern, unless },
        "rawbody" => Pattern::Text { target: Target::RawBody, pattern, unless },
        _ => Pattern::Text { target: Target::Uri, pattern, unless },
    })
}

/// A meta rule, its parts looked up among the rules above it (so a meta
/// rule can never depend on itself or on one not yet evaluated).
fn meta(def: &RuleDef, before: &[Rule]) -> Result<Check, String> {
    let index = |names: &[String]| -> Result<Vec<usize>, String> {
        names
            .iter()
            .map(|n| {
                before
                    .iter()
                    .position(|r| &r.def.name == n)
                    .ok_or_else(|| format!("rule {}: {n} is not defined above it", def.name))
            })
            .collect()
    };
    if def.all.is_empty() && def.any.is_empty() {
        return Err(format!("rule {}: a meta rule needs all or any", def.name));
    }
    Ok(Check::Meta { all: index(&def.all)?, any: index(&def.any)?, none: index(&def.none)? })
}

/// A message's raw header values by lowercase name, read once for all the
/// header rules (each read of a raw header checks its bytes are UTF-8).
struct HeaderIndex<'a>(std::collections::HashMap<String, Vec<&'a str>>);

impl<'a> HeaderIndex<'a> {
    fn of(msg: &'a Message<'_>) -> HeaderIndex<'a> {
        let mut map: std::collections::HashMap<String, Vec<&'a str>> =
            std::collections::HashMap::with_capacity(32);
        for (n, v) in msg.headers_raw() {
            map.entry(n.to_ascii_lowercase()).or_default().push(v);
        }
        HeaderIndex(map)
    }

    /// The values of the header `name` (lowercase), in order.
    fn values(&self, name: &str) -> &[&'a str] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}

fn pattern_fires(p: &Pattern, headers: &HeaderIndex<'_>, texts: Option<&Texts>) -> Option<String> {
    match p {
        Pattern::Exists(name) => (!headers.values(name).is_empty()).then(String::new),
        Pattern::Header { name, pattern, unless } => headers
            .values(name)
            .iter()
            .map(|v| unfold(v))
            .find(|v| pattern.is_match(v) && !unless.as_ref().is_some_and(|u| u.is_match(v)))
            .map(|v| v.chars().take(60).collect()),
        Pattern::Text { target, pattern, unless } => texts?.matches(*target, pattern, unless.as_ref()),
    }
}

/// A raw header value as SpamAssassin matches it: unfolded, trimmed.
fn unfold(v: &str) -> String {
    v.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// What several checks need, gathered in one pass over the parts.
#[derive(Default)]
struct Facts {
    text_parts: usize,
    html_parts: usize,
    images: usize,
    attachments: usize,
    /// Characters of visible text (text parts, and HTML without its tags).
    text_chars: usize,
    base64_ascii_text: bool,
    multipart_or_encoded: bool,
}

impl Facts {
    fn of(msg: &Message<'_>) -> Facts {
        let mut f = Facts::default();
        for part in &msg.parts {
            let ct = part.content_type();
            let is_image = ct.is_some_and(|c| c.ctype().eq_ignore_ascii_case("image"));
            let b64 = part.content_transfer_encoding().is_some_and(|e| e.eq_ignore_ascii_case("base64"));
            f.multipart_or_encoded |= part.is_multipart() || b64;
            match &part.body {
                PartType::Text(t) => {
                    f.text_parts += 1;
                    f.text_chars += t.trim().len();
                    f.base64_ascii_text |= b64 && t.len() > 100 && t.bytes().all(|b| b.is_ascii());
                }
                PartType::Html(h) => {
                    f.html_parts += 1;
                    f.text_chars += visible_len(h);
                    f.images += count_ci(h.as_bytes(), b"<img");
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    f.attachments += 1;
                    f.images += usize::from(is_image);
                }
                PartType::Message(_) => f.attachments += 1,
                PartType::Multipart(_) => {}
            }
        }
        f
    }
}

/// Length of the text outside tags (trimmed runs), a cheap measure of how
/// much an HTML part says in words.
fn visible_len(h: &str) -> usize {
    let mut n = 0;
    let mut in_tag = false;
    for b in h.bytes() {
        match b {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            b if !in_tag && !b.is_ascii_whitespace() => n += 1,
            _ => {}
        }
    }
    n
}

fn count_ci(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| w.eq_ignore_ascii_case(needle)).count()
}

/// `Some(detail)` when the check fires.
fn fires(check: &Check, msg: &Message<'_>, headers: &HeaderIndex<'_>, f: &Facts) -> Option<String> {
    match check {
        Check::MissingHeader(name) => {
            let present = msg.headers().iter().any(|h| h.name().eq_ignore_ascii_case(name));
            (!present).then(String::new)
        }
        Check::InvalidDate => {
            let present = msg.headers().iter().any(|h| h.name == HeaderName::Date);
            let valid = msg.date().is_some_and(|d| d.is_valid());
            (present && !valid).then(String::new)
        }
        Check::DateInFuture(hours) => date_skew(msg).filter(|s| *s >= hours * 3600.0).map(hours_detail),
        Check::DateInPast(hours) => date_skew(msg).filter(|s| -*s >= hours * 3600.0).map(hours_detail),
        Check::HtmlOnly => (f.html_parts > 0 && f.text_parts == 0).then(String::new),
        Check::ImageOnly(max) => (f.images > 0 && f.text_chars < *max && f.html_parts > 0)
            .then(|| format!("{} chars", f.text_chars)),
        Check::SubjectAllCaps => {
            let s = msg.subject()?;
            // ASCII letters only, as SpamAssassin's rule: scripts without
            // case (CJK) are not "all capitals".
            let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
            (letters >= 10 && !s.bytes().any(|c| c.is_ascii_lowercase())).then(String::new)
        }
        Check::FromNameAddrMismatch => from_mismatch(msg),
        Check::RcvdIllegalIp => received_ips(msg).find(illegal).map(|ip| ip.to_string()),
        Check::RcvdNumericHelo => numeric_helo(headers),
        Check::AttachmentExt(exts) => msg.parts.iter().filter_map(|p| p.attachment_name()).find_map(|name| {
            let ext = name.rsplit_once('.')?.1.trim().to_ascii_lowercase();
            exts.contains(&ext).then(|| name.to_string())
        }),
        Check::ManyRecipients(n) => {
            let count = count_addrs(msg.to()) + count_addrs(msg.cc());
            (count >= *n).then(|| count.to_string())
        }
        Check::EmptyMessage => (f.text_chars == 0 && f.attachments == 0).then(String::new),
        Check::Base64Text => f.base64_ascii_text.then(String::new),
        Check::MimeWithoutVersion => {
            let has = msg.headers().iter().any(|h| h.name == HeaderName::MimeVersion);
            (f.multipart_or_encoded && !has).then(String::new)
        }
        Check::OutlookMsgidTime => outlook_msgid_time(msg, headers),
        Check::FreemailFrom => {
            let addr = msg.from()?.first()?.address()?;
            crate::freemail::is_freemail(addr).then(|| addr.to_string())
        }
        Check::Authenticated | Check::Pattern(_) | Check::Meta { .. } => None,
    }
}

/// An Outlook Express Message-ID (`<xxxxTTTTTTTT$xxxxxxxx$xxxxxxxx@host>`)
/// whose time token `T` is far from both the Date: header and the first
/// relay's stamp: it was not made when the message was written, as
/// Outlook Express makes it, but copied or invented (SpamAssassin's
/// `check_outlook_message_id`, with its constants: the token counts
/// 2^32/10^7/... units, linear in Unix time).
fn outlook_msgid_time(msg: &Message<'_>, headers: &HeaderIndex<'_>) -> Option<String> {
    let id = headers.values("message-id").first()?;
    let id = id.trim();
    let b = id.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b.get(r).is_some_and(|s| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
    };
    let shaped = b.first() == Some(&b'<')
        && hex(1..13)
        && b.get(13) == Some(&b'$')
        && hex(14..22)
        && b.get(22) == Some(&b'$')
        && hex(23..31)
        && b.get(31) == Some(&b'@');
    if !shaped {
        return None;
    }
    let token = i64::from_str_radix(id.get(5..13)?, 16).ok()?;
    let off = |unix: i64| (token - (unix as f64 * 0.0023283064365387 + 27111902.8329849) as i64).abs();
    let stamp =
        |d: Option<&mail_parser::DateTime>| d.filter(|d| d.is_valid()).map_or(0, |d| d.to_timestamp());
    if off(stamp(msg.date())) < 250 {
        return None;
    }
    let first_relay = msg.received_all().last().and_then(|r| r.date.as_ref());
    (off(stamp(first_relay)) >= 250).then(|| id.chars().take(40).collect())
}

fn hours_detail(seconds: f64) -> String {
    format!("{:.0}h", seconds / 3600.0)
}

fn count_addrs(a: Option<&Address<'_>>) -> usize {
    a.map_or(0, |a| a.iter().count())
}

/// Date: minus the time the nearest relay (the topmost Received:) stamped,
/// in seconds; positive when the sender's clock claims the future.
fn date_skew(msg: &Message<'_>) -> Option<f64> {
    let date = msg.date().filter(|d| d.is_valid())?;
    let rcvd = msg.received()?.date.filter(|d| d.is_valid())?;
    Some((date.to_timestamp() - rcvd.to_timestamp()) as f64)
}

/// The display name contains an address whose domain differs from the
/// real address's: "paypal@paypal.com" <x@elsewhere.example>.
fn from_mismatch(msg: &Message<'_>) -> Option<String> {
    let from = msg.from()?.first()?;
    let name = from.name()?;
    let addr = from.address()?;
    let real_domain = addr.rsplit_once('@')?.1.to_ascii_lowercase();
    let shown =
        name.split(|c: char| c.is_whitespace() || "<>()\"'[],;".contains(c)).find(|w| w.contains('@'))?;
    let (_, shown_domain) = shown.rsplit_once('@')?;
    let shown_domain = shown_domain.trim_end_matches('.').to_ascii_lowercase();
    (shown_domain.contains('.') && shown_domain != real_domain).then(|| format!("{shown} <{addr}>"))
}

fn received_ips<'a>(msg: &'a Message<'_>) -> impl Iterator<Item = IpAddr> + 'a {
    msg.received_all().filter_map(|r| r.from_ip)
}

/// 0.0.0.0/8 ("this network") and 224.0.0.0/3 (multicast and reserved) can
/// never be the source of a TCP connection.
fn illegal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets()[0];
            o == 0 || o >= 224
        }
        IpAddr::V6(_) => false,
    }
}

/// A HELO/EHLO argument that is a bare dotted quad (RFC 5321 wants a name
/// or a bracketed address literal). Read from the raw header: a parsed
/// host no longer shows whether the literal had its brackets.
fn numeric_helo(headers: &HeaderIndex<'_>) -> Option<String> {
    headers.values("received").iter().find_map(|v| {
        let mut words = v.split_whitespace();
        words.find(|w| w.eq_ignore_ascii_case("from"))?;
        let helo = words.next()?;
        let parts: Vec<&str> = helo.split('.').collect();
        let bare = parts.len() == 4
            && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        bare.then(|| helo.to_string())
    })
}
