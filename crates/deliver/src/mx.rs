//! Where to deliver mail for a recipient domain: a static override map first
//! (tests and split routing never need DNS), then MX records by preference,
//! then the domain's own address when it has no MX (RFC 5321 §5.1).
//!
//! The DNS answer → hosts decision is pure ([`plan_mx`], [`plan_address`]) so
//! it is tested without a resolver; [`MxResolver`] only performs the lookups.
//! The hickory resolver is built on first use and a failure to build it is a
//! temporary failure, not a panic: overrides keep working on a machine whose
//! DNS is unreachable or whose `/etc/resolv.conf` is missing.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use vocabulary::Reply;

use crate::smtp::Destination;

/// The SMTP port MX hosts listen on.
pub const SMTP_PORT: u16 = 25;

/// Why a domain has no host to deliver to. Each maps to the reply the
/// recipient gets ([`MxError::reply`]), so the caller does not invent codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// The domain publishes a null MX (`0 .`, RFC 7505): it takes no mail.
    #[error("{0} does not accept mail (null MX)")]
    NullMx(String),
    /// NXDOMAIN: the domain does not exist.
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// The domain exists but has neither MX nor A/AAAA records.
    #[error("domain {0} has no mail server")]
    NoMailHost(String),
    /// Timeout, SERVFAIL, no resolver: worth retrying later.
    #[error("DNS lookup for {domain} failed: {reason}")]
    Temporary { domain: String, reason: String },
}

impl MxError {
    /// The reply to record for every recipient at the domain.
    pub fn reply(&self) -> Reply {
        match self {
            MxError::NullMx(d) => Reply::new(556, "5.1.10", format!("{d} does not accept mail (null MX)")),
            MxError::NoSuchDomain(d) => Reply::new(550, "5.1.2", format!("domain {d} does not exist")),
            MxError::NoMailHost(d) => Reply::new(550, "5.1.2", format!("domain {d} has no mail server")),
            MxError::Temporary { domain, .. } => {
                // The resolver's own words stay in the logs: they can name our
                // internal name servers.
                Reply::new(451, "4.4.3", format!("DNS lookup for {domain} failed, will retry"))
            }
        }
    }

    pub fn is_permanent(&self) -> bool {
        !matches!(self, MxError::Temporary { .. })
    }
}

/// One DNS question's answer, reduced to what routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer<T> {
    Records(Vec<T>),
    /// NOERROR with no records of the asked type.
    NoData,
    NxDomain,
    /// Timeout, SERVFAIL, REFUSED, network error.
    Failed(String),
}

/// What to do after the MX question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPlan {
    /// Exchange names in the order to try them.
    Hosts(Vec<String>),
    /// No MX: the domain itself is the mail host if it has an address.
    TryAddress,
    Fail(MxError),
}

/// Turns MX records `(preference, exchange)` into the order to try them:
/// lowest preference first, shuffled within one preference (RFC 5321 §5.1
/// asks senders to spread load across equal ones) with `seed`.
/// A lone `.` exchange is a null MX; a `.` among real exchanges is ignored.
pub fn plan_mx(domain: &str, answer: DnsAnswer<(u16, String)>, seed: u64) -> MxPlan {
    let records = match answer {
        DnsAnswer::Records(r) if !r.is_empty() => r,
        DnsAnswer::Records(_) | DnsAnswer::NoData => return MxPlan::TryAddress,
        DnsAnswer::NxDomain => return MxPlan::Fail(MxError::NoSuchDomain(domain.to_string())),
        DnsAnswer::Failed(reason) => {
            return MxPlan::Fail(MxError::Temporary { domain: domain.to_string(), reason });
        }
    };
    let mut hosts: Vec<(u16, String)> = records
        .into_iter()
        .map(|(pref, name)| (pref, name.trim_end_matches('.').to_ascii_lowercase()))
        .filter(|(_, name)| !name.is_empty())
        .collect();
    if hosts.is_empty() {
        return MxPlan::Fail(MxError::NullMx(domain.to_string()));
    }
    let mut rng = SplitMix(seed);
    hosts.sort_by_key(|(pref, _)| *pref);
    let mut start = 0;
    while start < hosts.len() {
        let pref = hosts[start].0;
        let end = start + hosts[start..].iter().take_while(|(p, _)| *p == pref).count();
        rng.shuffle(&mut hosts[start..end]);
        start = end;
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|(_, name)| seen.insert(name.clone()));
    MxPlan::Hosts(hosts.into_iter().map(|(_, name)| name).collect())
}

/// The implicit MX (RFC 5321 §5.1): the domain itself, if it has an address.
pub fn plan_address<T>(domain: &str, answer: DnsAnswer<T>) -> Result<Vec<String>, MxError> {
    match answer {
        DnsAnswer::Records(r) if !r.is_empty() => Ok(vec![domain.to_ascii_lowercase()]),
        DnsAnswer::Records(_) | DnsAnswer::NoData => Err(MxError::NoMailHost(domain.to_string())),
        DnsAnswer::NxDomain => Err(MxError::NoSuchDomain(domain.to_string())),
        DnsAnswer::Failed(reason) => Err(MxError::Temporary { domain: domain.to_string(), reason }),
    }
}

/// Small deterministic generator (splitmix64) for the equal-preference
/// shuffle; the seed comes from `RandomState`, so no RNG dependency is needed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Static routes consulted before DNS: domain → `host[:port]` list, tried in
/// order. The domain `*` catches every domain without its own entry.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    routes: HashMap<String, Vec<(String, u16)>>,
}

impl Overrides {
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Adds a route. Each host is `name`, `name:port`, `1.2.3.4:port` or
    /// `[v6]:port`; without a port it is 25. The error names the bad entry.
    pub fn insert<S: AsRef<str>>(&mut self, domain: &str, hosts: &[S]) -> Result<(), String> {
        let parsed = hosts.iter().map(|h| parse_host_port(h.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(format!("route for {domain} lists no hosts"));
        }
        self.routes.insert(domain.trim_end_matches('.').to_ascii_lowercase(), parsed);
        Ok(())
    }

    /// The route for `domain`: its own entry, else `*`, else none.
    pub fn get(&self, domain: &str) -> Option<&[(String, u16)]> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.routes.get(&domain).or_else(|| self.routes.get("*")).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad = || format!("invalid host {s:?}: expected host or host:port");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (v6, Some(p)),
            None if after.is_empty() => (v6, None),
            None => return Err(bad()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((_, _)) if s.matches(':').count() > 1 => return Err(bad()), // bare IPv6 needs brackets
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => SMTP_PORT,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Resolves recipient domains to the destinations to try, in order.
pub struct MxResolver {
    overrides: Overrides,
    resolver: OnceLock<Result<TokioResolver, String>>,
    timeout: Duration,
    seeds: RandomState,
}

impl MxResolver {
    /// Uses the system DNS configuration, read on the first lookup that
    /// needs it.
    pub fn new(overrides: Overrides) -> Self {
        MxResolver {
            overrides,
            resolver: OnceLock::new(),
            timeout: Duration::from_secs(30),
            seeds: RandomState::new(),
        }
    }

    /// Uses the given resolver (e.g. a specific name server).
    pub fn with_resolver(overrides: Overrides, resolver: TokioResolver) -> Self {
        let r = MxResolver::new(overrides);
        let _ = r.resolver.set(Ok(resolver));
        r
    }

    /// Caps the time for each DNS question (the resolver retries within it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn resolver(&self) -> Result<&TokioResolver, String> {
        self.resolver
            .get_or_init(|| {
                TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| format!("no DNS resolver: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The destinations for `domain`, best first. Override hosts keep their
    /// port; DNS hosts use port 25 with opportunistic TLS.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<Destination>, MxError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(route) = self.overrides.get(&domain) {
            return Ok(route.iter().map(|(h, p)| Destination::new(h.clone(), *p)).collect());
        }
        if let Some(ip) = address_literal(&domain) {
            return Ok(vec![Destination::new(ip, SMTP_PORT)]);
        }
        let temporary = |reason: String| MxError::Temporary { domain: domain.clone(), reason };
        let resolver = self.resolver().map_err(temporary)?;
        // A trailing dot keeps the resolver from appending search domains.
        let fqdn = format!("{domain}.");
        let mx = match tokio::time::timeout(self.timeout, resolver.mx_lookup(fqdn.as_str())).await {
            Err(_) => DnsAnswer::Failed("timeout".into()),
            Ok(Ok(lookup)) => DnsAnswer::Records(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect(),
            ),
            Ok(Err(e)) => classify(&e),
        };
        let hosts = match plan_mx(&domain, mx, self.seeds.hash_one(&domain)) {
            MxPlan::Hosts(h) => h,
            MxPlan::Fail(e) => return Err(e),
            MxPlan::TryAddress => {
                let ip = match tokio::time::timeout(self.timeout, resolver.lookup_ip(fqdn.as_str())).await {
                    Err(_) => DnsAnswer::Failed("timeout".into()),
                    Ok(Ok(lookup)) => DnsAnswer::Records(lookup.iter().collect()),
                    Ok(Err(e)) => classify(&e),
                };
                plan_address(&domain, ip)?
            }
        };
        Ok(hosts.into_iter().map(|h| Destination::new(h, SMTP_PORT)).collect())
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3): delivered to
/// that address, no DNS involved.
pub fn address_literal(domain: &str) -> Option<String> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let ip = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().ok()?.to_string()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().ok()?.to_string(),
    };
    Some(ip)
}

fn classify<T>(e: &NetError) -> DnsAnswer<T> {
    if e.is_nx_domain() {
        DnsAnswer::NxDomain
    } else if e.is_no_records_found() {
        DnsAnswer::NoData
    } else {
        DnsAnswer::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(plan: MxPlan) -> Vec<String> {
        match plan {
            MxPlan::Hosts(h) => h,
            other => panic!("expected hosts, got {other:?}"),
        }
    }

    #[test]
    fn mx_by_preference_with_equal_ones_shuffled() {
        let records = vec![
            (20, "b.example.".to_string()),
            (10, "A1.example.".to_string()),
            (10, "a2.example.".to_string()),
            (30, "c.example.".to_string()),
        ];
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..64 {
            let h = hosts(plan_mx("example", DnsAnswer::Records(records.clone()), seed));
            assert_eq!(h.len(), 4);
            assert!(h[..2].contains(&"a1.example".to_string()) && h[..2].contains(&"a2.example".to_string()));
            assert_eq!(&h[2..], ["b.example", "c.example"]);
            firsts.insert(h[0].clone());
        }
        assert_eq!(firsts.len(), 2, "equal preferences are spread across seeds");
    }

    #[test]
    fn duplicate_exchanges_are_tried_once() {
        let records = vec![(10, "mx.example.".into()), (20, "MX.example".into())];
        assert_eq!(hosts(plan_mx("example", DnsAnswer::Records(records), 1)), ["mx.example"]);
    }

    #[test]
    fn null_mx_is_permanent() {
        let plan = plan_mx("example", DnsAnswer::Records(vec![(0, ".".into())]), 1);
        let MxPlan::Fail(e) = plan else { panic!("{plan:?}") };
        assert_eq!(e, MxError::NullMx("example".into()));
        let r = e.reply();
        assert_eq!((r.code, r.status.as_deref()), (556, Some("5.1.10")));
        assert!(e.is_permanent());
        // A "." beside real exchanges is ignored rather than fatal.
        let mixed = vec![(0, ".".into()), (10, "mx.example.".into())];
        assert_eq!(hosts(plan_mx("example", DnsAnswer::Records(mixed), 1)), ["mx.example"]);
    }

    #[test]
    fn no_mx_falls_back_to_the_address() {
        assert_eq!(plan_mx("example", DnsAnswer::NoData, 1), MxPlan::TryAddress);
        assert_eq!(plan_mx("example", DnsAnswer::Records(vec![]), 1), MxPlan::TryAddress);
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        assert_eq!(plan_address("Example", DnsAnswer::Records(vec![ip])), Ok(vec!["example".to_string()]));
        let e = plan_address::<std::net::IpAddr>("example", DnsAnswer::NoData).unwrap_err();
        assert_eq!(e, MxError::NoMailHost("example".into()));
        assert_eq!(e.reply().status.as_deref(), Some("5.1.2"));
    }

    #[test]
    fn nxdomain_is_permanent_and_servfail_temporary() {
        let MxPlan::Fail(e) = plan_mx("nope.example", DnsAnswer::NxDomain, 1) else { panic!() };
        assert_eq!((e.reply().code, e.reply().status.as_deref()), (550, Some("5.1.2")));
        let MxPlan::Fail(e) = plan_mx("example", DnsAnswer::Failed("SERVFAIL".into()), 1) else { panic!() };
        assert!(!e.is_permanent());
        let r = e.reply();
        assert_eq!((r.code, r.status.as_deref()), (451, Some("4.4.3")));
        assert!(!r.text.contains("SERVFAIL"), "resolver details stay out of the reply");
        let e = plan_address::<std::net::IpAddr>("example", DnsAnswer::Failed("timeout".into())).unwrap_err();
        assert!(!e.is_permanent());
    }

    #[tokio::test]
    async fn address_literals_skip_dns() {
        assert_eq!(address_literal("[192.0.2.1]").as_deref(), Some("192.0.2.1"));
        assert_eq!(address_literal("[IPv6:2001:DB8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(address_literal("[2001:db8::1]"), None, "IPv6 literals carry the tag");
        assert_eq!(address_literal("example.com"), None);
        let r = MxResolver::new(Overrides::new());
        assert_eq!(r.resolve("[192.0.2.1]").await.unwrap(), [Destination::new("192.0.2.1", 25)]);
        assert!(r.resolver.get().is_none());
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("Relay.example"), Ok(("relay.example".into(), 25)));
        assert_eq!(parse_host_port("relay.example:2525"), Ok(("relay.example".into(), 2525)));
        assert_eq!(parse_host_port("127.0.0.1:587"), Ok(("127.0.0.1".into(), 587)));
        assert_eq!(parse_host_port("[::1]:465"), Ok(("::1".into(), 465)));
        assert_eq!(parse_host_port("[::1]"), Ok(("::1".into(), 25)));
        for bad in ["", "host:", "host:0", "host:99999", "::1", "[::1", "[::1]x", "a b:25"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[tokio::test]
    async fn overrides_answer_without_dns() {
        let mut o = Overrides::new();
        o.insert("Example.COM", &["mx1.test:2525", "mx2.test"]).unwrap();
        o.insert("*", &["127.0.0.1:2626"]).unwrap();
        assert!(o.insert("bad.example", &["x:y"]).unwrap_err().contains("x:y"));
        assert!(o.insert("empty.example", &[] as &[&str]).is_err());
        // No resolver is ever built: these must work with DNS unreachable.
        let r = MxResolver::new(o);
        let d = r.resolve("example.com.").await.unwrap();
        assert_eq!(d, [Destination::new("mx1.test", 2525), Destination::new("mx2.test", 25)]);
        let d = r.resolve("other.example").await.unwrap();
        assert_eq!(d, [Destination::new("127.0.0.1", 2626)]);
        assert!(r.resolver.get().is_none(), "the resolver is built lazily");
    }

    #[test]
    fn overrides_without_catch_all_leave_other_domains_to_dns() {
        let mut o = Overrides::new();
        o.insert("example.com", &["mx.test"]).unwrap();
        assert!(o.get("example.org").is_none());
        assert!(o.get("EXAMPLE.com").is_some());
    }
}
