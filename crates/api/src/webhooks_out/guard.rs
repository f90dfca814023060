//! Where webhooks may go: never to this machine or its networks (loopback,
//! private RFC 1918, link-local and cloud metadata, unique-local, CGNAT
//! 100.64/10, unspecified, multicast, broadcast and reserved addresses),
//! unless `[webhooks] allow_destinations` lists the address. An endpoint
//! URL is a request the tenant makes *from* sluice's network, so this is
//! checked on every connection, after DNS: [`GuardedResolver`] is the HTTP
//! client's resolver and hands it only addresses that pass, so a name that
//! resolved to a public address when the endpoint was made and to
//! 127.0.0.1 later (DNS rebinding) is refused at connect time. A URL whose
//! host is an address (which no resolver sees) is checked by
//! [`Guard::check_url`] before the request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::IpNet;

/// The ranges no webhook goes to, each with what it is.
static REFUSED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved or broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .filter_map(|(net, what)| Some((net.parse().ok()?, what)))
    .collect()
});

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// An address in a refused range, and which.
    Address(IpAddr, &'static str),
    Scheme(String),
    Url(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Address(ip, what) => {
                write!(f, "{ip} is {what} (allow it with [webhooks] allow_destinations)")
            }
            Refused::Scheme(s) => write!(f, "{s}: only http and https URLs"),
            Refused::Url(e) => write!(f, "not a URL: {e}"),
        }
    }
}

impl std::error::Error for Refused {}

/// The allow-list and the rules.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    /// With these CIDR ranges allowed (`127.0.0.0/8`, `10.1.2.3/32`,
    /// `fd00::/8`); an address alone is its own /32 or /128.
    pub fn new(allow: &[String]) -> Result<Guard, String> {
        let allow = allow
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR range (like 127.0.0.0/8)"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Guard { allow })
    }

    /// Whether a webhook may connect to `ip`: the reason when not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let inner = embedded_v4(ip);
        if let Some(v4) = inner
            && self.allow.iter().any(|n| n.contains(&IpAddr::V4(v4)))
        {
            return Ok(());
        }
        for candidate in std::iter::once(ip).chain(inner.map(IpAddr::V4)) {
            if let Some((_, what)) = REFUSED.iter().find(|(n, _)| n.contains(&candidate)) {
                return Err(Refused::Address(ip, what));
            }
        }
        Ok(())
    }

    /// A URL webhooks may be sent to, as far as it says: http(s), and an
    /// address host that passes. A name is checked when it is resolved.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Refused::Url(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Refused::Scheme(parsed.scheme().to_string()));
        }
        let host = parsed.host_str().ok_or_else(|| Refused::Url("no host".into()))?;
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            self.check(ip)?;
        }
        Ok(parsed)
    }

    /// [`Guard::check_url`], and a name resolved now: refused when every
    /// address it has is. A name that does not resolve (yet) passes:
    /// its deliveries are checked, and retried, when they are sent.
    pub async fn check_destination(&self, url: &str) -> Result<reqwest::Url, Refused> {
        let parsed = self.check_url(url)?;
        let Some(host) = parsed.host_str().filter(|h| !h.starts_with('[') && h.parse::<IpAddr>().is_err())
        else {
            return Ok(parsed);
        };
        let lookup = tokio::net::lookup_host((host, 0));
        let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(5), lookup).await else {
            return Ok(parsed);
        };
        let addrs: Vec<SocketAddr> = addrs.collect();
        match addrs.iter().map(|a| self.check(a.ip())).find(|r| r.is_ok()) {
            Some(_) => Ok(parsed),
            None => match addrs.first() {
                Some(a) => Err(self.check(a.ip()).err().unwrap_or(Refused::Url(host.into()))),
                None => Ok(parsed),
            },
        }
    }
}

/// A URL as logs show it: without a password in it.
pub fn for_log(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address
/// it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16)
/// address, which reaches it.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(v4(s[6], s[7]));
    }
    (s[0] == 0x2002).then(|| v4(s[1], s[2]))
}

/// The HTTP client's resolver: the system's (getaddrinfo), less every
/// address the guard refuses; a name left with none fails to resolve,
/// with the reason.
pub struct GuardedResolver {
    pub guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.map_or_else(|| format!("{host}: no address"), |r| format!("{host}: {r}"));
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> Option<&'static str> {
        match Guard::default().check(ip.parse().unwrap()) {
            Ok(()) => None,
            Err(Refused::Address(_, what)) => Some(what),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn private_and_local_ranges_are_refused() {
        for (ip, what) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.255", "shared address space (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "reserved or broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(refused(ip), Some(what), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2001:db8::1",
            "2606:4700::1111",
        ] {
            assert_eq!(refused(ip), None, "{ip}");
        }
        let public = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888));
        assert!(Guard::default().check(public).is_ok());
    }

    #[test]
    fn the_allow_list_opens_what_it_names_only() {
        let g = Guard::new(&["127.0.0.0/8".into(), "fd00::1".into()]).unwrap();
        assert!(g.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check("::ffff:127.0.0.2".parse().unwrap()).is_ok());
        assert!(g.check("fd00::1".parse().unwrap()).is_ok());
        assert!(g.check("fd00::2".parse().unwrap()).is_err());
        assert!(g.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(g.check("::1".parse().unwrap()).is_err(), "IPv6 loopback is not 127/8");
        assert!(Guard::new(&["localhost".into()]).unwrap_err().contains("CIDR"));
        assert!(Guard::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn urls_are_http_and_address_hosts_are_checked_as_written() {
        let g = Guard::default();
        assert!(g.check_url("https://hooks.example.com/x?y=1").is_ok());
        assert!(matches!(g.check_url("ftp://example.com/"), Err(Refused::Scheme(_))));
        assert!(matches!(g.check_url("file:///etc/passwd"), Err(Refused::Scheme(_))));
        assert!(matches!(g.check_url("not a url"), Err(Refused::Url(_))));
        for bad in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:169.254.169.254]/",
            "http://10.0.0.1/",
        ] {
            assert!(matches!(g.check_url(bad), Err(Refused::Address(..))), "{bad}");
        }
    }

    #[test]
    fn logs_never_show_a_url_s_password() {
        assert_eq!(for_log("https://hook:s3cret@example.com/x"), "https://hook:***@example.com/x");
        assert_eq!(for_log("https://example.com/x"), "https://example.com/x");
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let g = Arc::new(Guard::default());
        let err = g.check_destination("http://localhost:9/").await.unwrap_err();
        assert!(matches!(err, Refused::Address(_, "loopback")), "{err}");
        let r = GuardedResolver { guard: g.clone() };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = reqwest::dns::Resolve::resolve(&r, name).await.err().expect("refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        let open =
            GuardedResolver { guard: Arc::new(Guard::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap()) };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = reqwest::dns::Resolve::resolve(&open, name).await.unwrap().collect();
        assert!(!addrs.is_empty());
    }
}
