//! Sender authentication for filter mode: SPF, DKIM, ARC and DMARC of an
//! inbound message, checked with mail-auth against DNS through a cache of
//! our own (bounded, honouring each answer's TTL), and reduced to
//! [`spam::AuthResults`]: the spam filter's signals and the
//! `Authentication-Results` header filter-mode recipients get.
//!
//! The checks never hold a message up for long and never fail it: the whole
//! check has a budget ([`BUDGET`]); whatever has not answered by then is a
//! `temperror` (RFC 8601 §2.7), as is any DNS failure. A temperror gives no
//! spam signal.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::common::resolver::ToFqdn;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MX, MessageAuthenticator, Parameters,
    RecordSet, ResolverCache, SpfOutput, SpfResult, Txt,
};
use record::events::NewEvent;
use spam::auth::{Arc as ArcResult, AuthResults, Dkim, Dmarc, DmarcPolicy, Spf};
use vocabulary::{Envelope, Recipient};

use crate::filter::Placed;

/// How long all the checks of one message may take together.
pub const BUDGET: Duration = Duration::from_secs(5);
/// How long one DNS question waits for its answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries each cache keeps; when full, expired ones go, then all.
const CACHE_ENTRIES: usize = 8192;

/// Checks senders; one per server, shared by every message.
pub struct Authenticator {
    resolver: MessageAuthenticator,
    caches: Caches,
    authserv_id: String,
    budget: Duration,
}

impl Authenticator {
    /// With the name servers `servers` (`"ip:port"`, or an IP for port
    /// 53); none: the system's (`/etc/resolv.conf`). `authserv_id` names
    /// this server in the header.
    pub fn new(servers: &[String], authserv_id: &str) -> Result<Authenticator, String> {
        let (config, mut opts) = if servers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("reading the system's DNS configuration: {e}"))?
        } else {
            let servers = servers.iter().map(|s| name_server(s)).collect::<Result<Vec<_>, _>>()?;
            (ResolverConfig::from_parts(None, Vec::new(), servers), ResolverOpts::default())
        };
        opts.timeout = DNS_TIMEOUT;
        opts.attempts = 1;
        let resolver = MessageAuthenticator::new(config, opts).map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Authenticator {
            resolver,
            caches: Caches::default(),
            authserv_id: authserv_id.to_string(),
            budget: BUDGET,
        })
    }

    /// The time all the checks of one message may take (default [`BUDGET`]).
    pub fn with_budget(mut self, budget: Duration) -> Authenticator {
        self.budget = budget;
        self
    }

    /// The DNS caches (tests fill them in advance).
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// SPF (the MAIL FROM identity; HELO's for a null sender), DKIM (every
    /// signature, the best result), ARC and DMARC of `content` as received
    /// from `peer` (`"ip:port"` or an IP).
    pub async fn check(&self, content: &[u8], peer: &str, helo: &str, mail_from: &str) -> AuthResults {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut out = AuthResults { authserv_id: self.authserv_id.clone(), ..AuthResults::default() };
        let message = AuthenticatedMessage::parse(content);
        out.header_from = message.as_ref().and_then(|m| m.from.first()).and_then(|f| domain(f));
        let ip = peer_ip(peer);
        // The identity SPF and DMARC's SPF alignment use: MAIL FROM's
        // domain, or the HELO name for a null sender (RFC 7208 §2.4).
        let spf_domain = match mail_from.rsplit_once('@') {
            Some((_, d)) if !mail_from.is_empty() => d.to_ascii_lowercase(),
            _ => helo.to_ascii_lowercase(),
        };
        out.smtp_mailfrom = Some(if mail_from.is_empty() { helo.to_string() } else { mail_from.to_string() });
        let spf = async {
            let ip = ip?;
            let params = if mail_from.is_empty() {
                SpfParameters::verify_ehlo(ip, helo, &self.authserv_id)
            } else {
                SpfParameters::verify_mail_from(ip, helo, &self.authserv_id, mail_from)
            };
            Some(self.resolver.verify_spf(self.caches.params(params)).await)
        };
        let dkim = async {
            let m = message.as_ref()?;
            Some(self.resolver.verify_dkim(self.caches.params(m)).await)
        };
        let arc = async {
            let m = message.as_ref()?;
            Some(arc_result(self.resolver.verify_arc(self.caches.params(m)).await.result()))
        };
        let (spf, dkim, arc) = tokio::join!(
            tokio::time::timeout_at(deadline, spf),
            tokio::time::timeout_at(deadline, dkim),
            tokio::time::timeout_at(deadline, arc),
        );
        out.spf = match &spf {
            Ok(Some(o)) => spf_result(o.result()),
            Ok(None) => Spf::None,
            Err(_) => Spf::TempError,
        };
        out.arc = arc.ok().flatten().unwrap_or(ArcResult::None);
        let (best, d) = match &dkim {
            Ok(Some(outputs)) => best_dkim(outputs),
            Ok(None) => (Dkim::None, None),
            Err(_) => (Dkim::TempError, None),
        };
        (out.dkim, out.dkim_domain) = (best, d);
        if spf.is_err() || dkim.is_err() {
            // A check that ran out of time leaves DMARC undecidable.
            out.dmarc = Dmarc::TempError;
            return out;
        }
        let Some(m) = message.as_ref() else { return out };
        let spf = spf.ok().flatten().unwrap_or_else(|| SpfOutput::new(spf_domain.clone()));
        let dkim = dkim.ok().flatten().unwrap_or_default();
        let params = DmarcParameters::new(m, &dkim, &spf_domain, &spf);
        let dmarc = self.resolver.verify_dmarc(self.caches.params(params));
        match tokio::time::timeout_at(deadline, dmarc).await {
            Ok(d) => {
                out.dmarc = dmarc_result(&d.result());
                if out.dmarc != Dmarc::None {
                    out.dmarc_policy = policy(d.policy());
                }
                if !d.domain().is_empty() {
                    out.header_from = Some(d.domain().to_string());
                }
            }
            Err(_) => out.dmarc = Dmarc::TempError,
        }
        out
    }
}

/// The results for a message, when there is an authenticator.
pub async fn run(auth: Option<&Authenticator>, envelope: &Envelope, content: &[u8]) -> Option<AuthResults> {
    let auth = auth?;
    Some(auth.check(content, &envelope.peer, &envelope.helo, &envelope.mail_from).await)
}

/// Adds the results to a `filtered` event's detail (`auth`).
pub fn note(event: &mut NewEvent, results: Option<&AuthResults>) {
    if let (Some(r), Some(serde_json::Value::Object(detail))) = (results, event.detail.as_mut()) {
        detail.insert("auth".into(), self::detail(r));
    }
}

/// One more copy, `content` (stamped) for the filter-mode recipients
/// `rcpts` when the message also has others; their events placed in it.
pub fn copy(
    copies: &mut Vec<(Vec<u8>, Vec<Recipient>)>,
    events: &mut Vec<(Placed, NewEvent)>,
    rcpts: Vec<(Recipient, Option<NewEvent>)>,
    content: &[u8],
) {
    if rcpts.is_empty() {
        return;
    }
    let n = copies.len();
    let mut mine = Vec::with_capacity(rcpts.len());
    for (i, (r, e)) in rcpts.into_iter().enumerate() {
        mine.push(r);
        events.extend(e.map(|e| (Placed::Tagged(n, i), e)));
    }
    copies.push((content.to_vec(), mine));
}

/// The message with the `Authentication-Results` header of `results`
/// first. Such headers already there that claim to be ours are forgeries
/// (or an earlier pass of ours) and go (RFC 8601 §5); the rest of the
/// message stays byte for byte.
pub fn stamp(content: &[u8], results: &AuthResults) -> Vec<u8> {
    let value = spam::auth::authentication_results(results);
    let mut out = Vec::with_capacity(content.len() + value.len() + 32);
    out.extend_from_slice(b"Authentication-Results: ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    let id = value.split(';').next().unwrap_or_default();
    let (head, body) = content.split_at(deliver::dsn::header_end(content));
    // One header field at a time: a line break not followed by folding
    // whitespace ends one.
    let mut start = 0;
    for at in 0..head.len() {
        let ends = head[at] == b'\n' && !matches!(head.get(at + 1), Some(b' ' | b'\t'));
        if ends || at + 1 == head.len() {
            let field = &head[start..=at];
            if !claims(field, id) {
                out.extend_from_slice(field);
            }
            start = at + 1;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Whether a header field is an `Authentication-Results` of authserv-id `id`.
fn claims(field: &[u8], id: &str) -> bool {
    const NAME: &[u8] = b"authentication-results:";
    if field.len() < NAME.len() || !field[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = String::from_utf8_lossy(&field[NAME.len()..]);
    let theirs = value.trim_start().split(|c: char| c == ';' || c == '(' || c.is_whitespace()).next();
    theirs.is_some_and(|t| t.eq_ignore_ascii_case(id))
}

/// The results for a `filtered` event's detail.
pub fn detail(results: &AuthResults) -> serde_json::Value {
    serde_json::json!({
        "spf": results.spf,
        "dkim": results.dkim,
        "dmarc": results.dmarc,
        "policy": results.dmarc_policy,
        "arc": results.arc,
        "smtp_mailfrom": results.smtp_mailfrom,
        "header_d": results.dkim_domain,
        "header_from": results.header_from,
    })
}

/// `"ip:port"`, `"ip"`, or `"[v6]:port"` as a name server on UDP and TCP.
fn name_server(s: &str) -> Result<NameServerConfig, String> {
    let addr = match s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let ip = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>();
            SocketAddr::new(ip.map_err(|_| format!("not a name server address: {s:?}"))?, 53)
        }
    };
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in ns.connections.iter_mut() {
        c.port = addr.port();
    }
    Ok(ns)
}

/// The client's address from the envelope's `peer` (`"ip:port"`).
fn peer_ip(peer: &str) -> Option<IpAddr> {
    peer.parse::<SocketAddr>().map(|a| a.ip()).ok().or_else(|| peer.parse::<IpAddr>().ok())
}

fn domain(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).filter(|d| !d.is_empty())
}

fn spf_result(r: SpfResult) -> Spf {
    match r {
        SpfResult::Pass => Spf::Pass,
        SpfResult::Fail => Spf::Fail,
        SpfResult::SoftFail => Spf::SoftFail,
        SpfResult::Neutral => Spf::Neutral,
        SpfResult::TempError => Spf::TempError,
        SpfResult::PermError => Spf::PermError,
        SpfResult::None => Spf::None,
    }
}

/// One signature's result. A body that no longer matches its hash is a
/// failed verification (RFC 6376 §6.1.3, "body hash did not verify"),
/// which mail-auth reports as neutral.
fn dkim_result(r: &DkimResult) -> Dkim {
    use mail_auth::{DkimResult as R, Error};
    match r {
        R::Pass => Dkim::Pass,
        R::Fail(_) => Dkim::Fail,
        R::Neutral(Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => Dkim::Fail,
        R::Neutral(_) => Dkim::Neutral,
        R::PermError(_) => Dkim::PermError,
        R::TempError(_) => Dkim::TempError,
        R::None => Dkim::None,
    }
}

/// The best of every signature's result, and the `d=` it is about.
fn best_dkim(outputs: &[DkimOutput<'_>]) -> (Dkim, Option<String>) {
    let rank = |d: Dkim| match d {
        Dkim::Pass => 0,
        Dkim::TempError => 1,
        Dkim::Fail => 2,
        Dkim::PermError => 3,
        Dkim::Neutral => 4,
        Dkim::Policy => 5,
        Dkim::None => 6,
    };
    outputs
        .iter()
        .map(|o| (dkim_result(o.result()), o.signature().map(|s| s.d.to_ascii_lowercase())))
        .min_by_key(|(d, _)| rank(*d))
        .unwrap_or((Dkim::None, None))
}

fn arc_result(r: &DkimResult) -> ArcResult {
    match r {
        DkimResult::Pass => ArcResult::Pass,
        DkimResult::None | DkimResult::TempError(_) => ArcResult::None,
        DkimResult::Fail(_) | DkimResult::Neutral(_) | DkimResult::PermError(_) => ArcResult::Fail,
    }
}

fn dmarc_result(r: &DmarcResult) -> Dmarc {
    match r {
        DmarcResult::Pass => Dmarc::Pass,
        DmarcResult::Fail(_) => Dmarc::Fail,
        DmarcResult::TempError(_) => Dmarc::TempError,
        DmarcResult::PermError(_) => Dmarc::PermError,
        DmarcResult::None => Dmarc::None,
    }
}

fn policy(p: Policy) -> DmarcPolicy {
    match p {
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    }
}

/// One kind of DNS answer, kept until its TTL runs out.
pub struct Cache<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Cache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// The caches mail-auth looks in before asking DNS.
#[derive(Default)]
pub struct Caches {
    pub txt: Cache<Box<str>, Txt>,
    pub mx: Cache<Box<str>, RecordSet<MX>>,
    pub ptr: Cache<IpAddr, RecordSet<Box<str>>>,
    pub ipv4: Cache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: Cache<Box<str>, RecordSet<Ipv6Addr>>,
}

type Cached<'x, P> = Parameters<
    'x,
    P,
    Cache<Box<str>, Txt>,
    Cache<Box<str>, RecordSet<MX>>,
    Cache<Box<str>, RecordSet<Ipv4Addr>>,
    Cache<Box<str>, RecordSet<Ipv6Addr>>,
    Cache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    /// A TXT record for `name`, as if DNS had answered it, for `ttl`.
    pub fn txt_add(&self, name: &str, record: impl Into<Txt>, ttl: Duration) {
        let key = name.to_fqdn().into_owned().into_boxed_str();
        self.txt.insert(key, record.into(), Instant::now() + ttl);
    }

    fn params<P>(&self, p: P) -> Cached<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_servers_and_peers_parse() {
        assert_eq!(name_server("127.0.0.1:5353").map(|n| n.connections[0].port), Ok(5353));
        assert_eq!(name_server("::1").map(|n| n.connections[0].port), Ok(53));
        assert!(name_server("dns.example").is_err());
        assert_eq!(peer_ip("127.0.0.1:4321"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(peer_ip("[::1]:25"), Some("::1".parse().unwrap()));
        assert_eq!(peer_ip("unknown"), None);
    }

    #[test]
    fn the_header_comes_first_and_the_rest_is_untouched() {
        let msg = b"From: a@example.org\r\n\r\nbody\r\n";
        let r = AuthResults { authserv_id: "mx.test".into(), spf: Spf::Pass, ..AuthResults::default() };
        let out = stamp(msg, &r);
        assert!(out.starts_with(b"Authentication-Results: mx.test;\r\n\tspf=pass;"));
        assert!(out.ends_with(msg));
    }

    #[test]
    fn a_header_claiming_to_be_ours_goes_and_others_stay() {
        let msg = b"Authentication-Results: MX.test; dkim=pass\r\n\theader.d=bank.example\r\n\
            Authentication-Results: upstream.example; spf=pass\r\n\
            From: a@example.org\r\n\r\nAuthentication-Results: mx.test; in the body\r\n";
        let r = AuthResults { authserv_id: "mx.test".into(), ..AuthResults::default() };
        let out = String::from_utf8(stamp(msg, &r)).unwrap();
        assert_eq!(out.matches("Authentication-Results: mx.test;").count(), 2, "ours, and the body's: {out}");
        assert!(!out.contains("bank.example"), "{out}");
        assert!(out.ends_with(
            "Authentication-Results: upstream.example; spf=pass\r\nFrom: a@example.org\r\n\r\n\
             Authentication-Results: mx.test; in the body\r\n"
        ));
    }
}
