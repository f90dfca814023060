//! Who opened or clicked: a person, a privacy proxy, a link scanner, or
//! nobody can tell. Raw open and click counts mislead because machines
//! load every pixel (Apple Mail Privacy Protection, Gmail's image proxy)
//! and follow every link (Microsoft Safe Links, Proofpoint, Mimecast…), so
//! each open and click is recorded with a class and the reasons for it,
//! and statistics can show raw and human counts side by side. Pure: the
//! caller hands in everything it knows about the request and the
//! recipient's earlier clicks.
//!
//! The rules, in order:
//!
//! 1. An open whose user agent or address is a known privacy proxy's
//!    (`data/tracking/agents.txt`, `ranges.txt`) is `privacy_proxy`.
//! 2. `scanner` when any of: a HEAD request; a known scanner's user agent
//!    or address; for a click, that it came less than
//!    [`SCAN_AFTER_DELIVERY_MS`] after delivery (or before delivery was
//!    recorded: scanners may click while the receiving server still holds
//!    the message), that [`BURST_LINKS`] or more different links of the
//!    message were clicked within [`BURST_MS`], or that every link of a
//!    message with two or more was.
//! 3. `unknown` when the request carried neither a user agent nor an address.
//! 4. Otherwise `human`.
//!
//! A burst is seen from its later clicks: the first click of a scanner's
//! sweep looks human until the next ones arrive (unless it came right after
//! delivery, as sweeps usually do).

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::LazyLock;

/// A click this soon after delivery is a scanner's: people do not read
/// mail within seconds of its arrival, link scanners do (at delivery).
pub const SCAN_AFTER_DELIVERY_MS: i64 = 10_000;
/// The window in which several different links clicked make a burst.
pub const BURST_MS: i64 = 5_000;
/// How many different links clicked within [`BURST_MS`] make a burst.
pub const BURST_LINKS: usize = 3;

/// The shipped user-agent list (`data/tracking/agents.txt`).
pub const BUILTIN_AGENTS: &str = include_str!("../../data/tracking/agents.txt");
/// The shipped address list (`data/tracking/ranges.txt`); append lines
/// (e.g. Apple's egress ranges, see `SOURCES.md` there) and [`Lists::parse`]
/// the result to classify with more.
pub const BUILTIN_RANGES: &str = include_str!("../../data/tracking/ranges.txt");

/// The shipped lists, parsed once (a unit test checks that they parse, so
/// the empty fallback is never what runs).
static BUILTIN: LazyLock<Lists> =
    LazyLock::new(|| Lists::parse(BUILTIN_AGENTS, BUILTIN_RANGES).unwrap_or_default());

/// An open (the pixel was loaded) or a click (a tracked link was followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    Open,
    Click,
}

/// One open or click as the tracking endpoint saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub kind: ActivityKind,
    /// When the request arrived (ms since the Unix epoch).
    pub at_ms: i64,
    /// When this recipient's copy was delivered, if that is recorded.
    pub delivered_at_ms: Option<i64>,
    /// The client address, if known.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if sent.
    pub user_agent: Option<String>,
    /// The request was HEAD: browsers never HEAD a link, checkers do.
    pub head_request: bool,
    /// For a click, the link followed (its id in the message).
    pub link: Option<u16>,
    /// This recipient's earlier clicks of this message: (at_ms, link id).
    pub other_clicks: Vec<(i64, u16)>,
    /// How many tracked links the message has.
    pub links_in_message: usize,
}

/// Who made an open or click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineClass {
    Human,
    PrivacyProxy,
    Scanner,
    Unknown,
}

impl MachineClass {
    /// The word the event schema, API and statistics use.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineClass::Human => "human",
            MachineClass::PrivacyProxy => "privacy_proxy",
            MachineClass::Scanner => "scanner",
            MachineClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MachineClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A class and the evidence for it (short snake_case words; empty for
/// `human`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: MachineClass,
    pub reasons: Vec<String>,
}

/// Classify with the lists shipped in `data/tracking/`.
pub fn classify(activity: &Activity) -> Verdict {
    classify_with(activity, Lists::builtin())
}

/// Classify with other lists (e.g. the shipped ones plus a fresh copy of
/// Apple's egress ranges, see [`Lists::parse`]).
pub fn classify_with(activity: &Activity, lists: &Lists) -> Verdict {
    let agent = activity.user_agent.as_deref().map(str::trim).filter(|ua| !ua.is_empty());
    let ip = activity.ip.map(|ip| ip.to_canonical());
    if activity.kind == ActivityKind::Open {
        let reasons = lists.matches(Class::PrivacyProxy, agent, ip);
        if !reasons.is_empty() {
            return Verdict { class: MachineClass::PrivacyProxy, reasons };
        }
    }
    let mut reasons = Vec::new();
    if activity.head_request {
        reasons.push("head_request".to_string());
    }
    reasons.extend(lists.matches(Class::Scanner, agent, ip));
    if activity.kind == ActivityKind::Click {
        reasons.extend(click_timing(activity).into_iter().map(String::from));
    }
    if !reasons.is_empty() {
        return Verdict { class: MachineClass::Scanner, reasons };
    }
    if agent.is_none() && ip.is_none() {
        return Verdict { class: MachineClass::Unknown, reasons: vec!["no_client_info".to_string()] };
    }
    Verdict { class: MachineClass::Human, reasons: Vec::new() }
}

/// The timing evidence that a click is a scanner's.
fn click_timing(a: &Activity) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if let Some(delivered) = a.delivered_at_ms
        && a.at_ms.saturating_sub(delivered) < SCAN_AFTER_DELIVERY_MS
    {
        reasons.push("soon_after_delivery");
    }
    let mut links: BTreeSet<u16> = a
        .other_clicks
        .iter()
        .filter(|(at, _)| at.abs_diff(a.at_ms) <= BURST_MS.unsigned_abs())
        .map(|&(_, link)| link)
        .collect();
    links.extend(a.link);
    if links.len() >= BURST_LINKS {
        reasons.push("click_burst");
    }
    if a.links_in_message >= 2 && links.len() >= a.links_in_message {
        reasons.push("all_links_clicked");
    }
    reasons
}

/// The two classes a list entry can vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    PrivacyProxy,
    Scanner,
}

impl FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privacy_proxy" => Ok(Class::PrivacyProxy),
            "scanner" => Ok(Class::Scanner),
            other => Err(format!("unknown class {other:?} (privacy_proxy or scanner)")),
        }
    }
}

#[derive(Debug, Clone)]
struct AgentRule {
    class: Class,
    label: String,
    exact: bool,
    /// Lower case.
    pattern: String,
}

/// User-agent and address lists of privacy proxies and link scanners.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    agents: Vec<AgentRule>,
    privacy: RangeSet,
    scanner: RangeSet,
}

/// A line of a list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// Which text: `agents` or `ranges`.
    pub list: &'static str,
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} list, line {}: {}", self.list, self.line, self.message)
    }
}

impl std::error::Error for ListError {}

impl Lists {
    /// The lists shipped in `data/tracking/`, parsed once.
    pub fn builtin() -> &'static Lists {
        &BUILTIN
    }

    /// Parse lists in the format of `data/tracking/agents.txt` and
    /// `ranges.txt` (each file's header says it).
    pub fn parse(agents: &str, ranges: &str) -> Result<Lists, ListError> {
        let mut lists = Lists::default();
        for (line, fields) in entries(agents) {
            let err = |message: String| ListError { list: "agents", line, message };
            let [class, label, how, pattern] = fields.splitn(4, ' ').collect::<Vec<_>>()[..] else {
                return Err(err("expected CLASS LABEL MATCH PATTERN".to_string()));
            };
            let class = class.parse().map_err(err)?;
            let exact = match how {
                "exact" => true,
                "contains" => false,
                other => return Err(err(format!("unknown match {other:?} (exact or contains)"))),
            };
            let pattern = pattern.trim().to_ascii_lowercase();
            check_label(label).map_err(err)?;
            lists.agents.push(AgentRule { class, label: label.to_string(), exact, pattern });
        }
        for (line, fields) in entries(ranges) {
            let err = |message: String| ListError { list: "ranges", line, message };
            // Anything from a ',' on is dropped: Apple's CSV has the
            // network first, then country, region and city.
            let address = fields.split(',').next().unwrap_or_default();
            let [class, label, address] = address.split(' ').collect::<Vec<_>>()[..] else {
                return Err(err("expected CLASS LABEL ADDRESS".to_string()));
            };
            let class: Class = class.parse().map_err(err)?;
            check_label(label).map_err(err)?;
            let net = parse_net(address).map_err(err)?;
            match class {
                Class::PrivacyProxy => lists.privacy.push(net, label),
                Class::Scanner => lists.scanner.push(net, label),
            }
        }
        lists.privacy.finish();
        lists.scanner.finish();
        Ok(lists)
    }

    /// The labels of `class`'s entries that match, agents first.
    fn matches(&self, class: Class, agent: Option<&str>, ip: Option<IpAddr>) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        let mut add = |label: &str| {
            if !reasons.iter().any(|r| r == label) {
                reasons.push(label.to_string());
            }
        };
        if let Some(agent) = agent {
            let lower = agent.to_ascii_lowercase();
            for rule in self.agents.iter().filter(|r| r.class == class) {
                let hit = if rule.exact { lower == rule.pattern } else { lower.contains(&rule.pattern) };
                if hit {
                    add(&rule.label);
                }
            }
        }
        let set = match class {
            Class::PrivacyProxy => &self.privacy,
            Class::Scanner => &self.scanner,
        };
        if let Some(label) = ip.and_then(|ip| set.find(ip)) {
            add(label);
        }
        reasons
    }
}

/// The meaningful lines of a list: (1-based number, fields joined by one
/// space).
fn entries(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some((i + 1, line.split_whitespace().collect::<Vec<_>>().join(" ")))
    })
}

fn check_label(label: &str) -> Result<(), String> {
    let ok =
        !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(format!("label {label:?} is not snake_case")) }
}

/// A CIDR network or a single address.
fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(text) {
        return Ok(net.trunc());
    }
    IpAddr::from_str(text).map(IpNet::from).map_err(|_| format!("not an address or network: {text:?}"))
}

/// Address ranges with their labels, searchable by address.
#[derive(Debug, Clone, Default)]
struct RangeSet {
    labels: Vec<String>,
    v4: Spans,
    v6: Spans,
}

/// Ranges `[first, last]` sorted by `first`, with the running maximum of
/// `last`, so a lookup is a binary search plus a short walk back; of
/// nested networks the most specific one answers.
#[derive(Debug, Clone, Default)]
struct Spans {
    spans: Vec<(u128, u128, usize)>,
    max_last: Vec<u128>,
}

impl RangeSet {
    fn push(&mut self, net: IpNet, label: &str) {
        let index = match self.labels.iter().position(|l| l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label.to_string());
                self.labels.len() - 1
            }
        };
        let (spans, first, last) = match net {
            IpNet::V4(n) => (&mut self.v4, u32::from(n.network()).into(), u32::from(n.broadcast()).into()),
            IpNet::V6(n) => (&mut self.v6, u128::from(n.network()), u128::from(n.broadcast())),
        };
        spans.spans.push((first, last, index));
    }

    fn finish(&mut self) {
        self.v4.finish();
        self.v6.finish();
    }

    fn find(&self, ip: IpAddr) -> Option<&str> {
        let index = match ip {
            IpAddr::V4(ip) => self.v4.find(u32::from(ip).into()),
            IpAddr::V6(ip) => self.v6.find(u128::from(ip)),
        }?;
        self.labels.get(index).map(String::as_str)
    }
}

impl Spans {
    fn finish(&mut self) {
        // Same start: the wider first, so the walk back meets the narrower
        // (the most specific) first.
        self.spans.sort_unstable_by_key(|&(first, last, label)| (first, std::cmp::Reverse(last), label));
        let mut max = 0;
        self.max_last = self
            .spans
            .iter()
            .map(|&(_, last, _)| {
                max = max.max(last);
                max
            })
            .collect();
    }

    fn find(&self, addr: u128) -> Option<usize> {
        let end = self.spans.partition_point(|&(first, _, _)| first <= addr);
        (0..end)
            .rev()
            .take_while(|&i| self.max_last.get(i).is_some_and(|&max| max >= addr))
            .find_map(|i| self.spans.get(i).filter(|&&(_, last, _)| last >= addr).map(|&(_, _, l)| l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/140.0.0.0 Safari/537.36";
    const GMAIL_PROXY: &str =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn open() -> Activity {
        Activity {
            kind: ActivityKind::Open,
            at_ms: T0 + 3_600_000,
            delivered_at_ms: Some(T0),
            ip: ip("198.51.100.7"),
            user_agent: Some(CHROME.to_string()),
            head_request: false,
            link: None,
            other_clicks: Vec::new(),
            links_in_message: 4,
        }
    }

    fn click(link: u16) -> Activity {
        Activity { kind: ActivityKind::Click, link: Some(link), ..open() }
    }

    fn verdict(class: MachineClass, reasons: &[&str]) -> Verdict {
        Verdict { class, reasons: reasons.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn builtin_lists_parse() {
        let lists = Lists::parse(BUILTIN_AGENTS, BUILTIN_RANGES).unwrap();
        assert!(lists.agents.len() >= 3);
        assert!(!lists.scanner.v4.spans.is_empty() && !lists.scanner.v6.spans.is_empty());
        assert_eq!(Lists::builtin().agents.len(), lists.agents.len());
    }

    #[test]
    fn words() {
        let all =
            [MachineClass::Human, MachineClass::PrivacyProxy, MachineClass::Scanner, MachineClass::Unknown];
        let words: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(words, ["human", "privacy_proxy", "scanner", "unknown"]);
        assert_eq!(MachineClass::PrivacyProxy.to_string(), "privacy_proxy");
    }

    #[test]
    fn human_open_and_click() {
        assert_eq!(classify(&open()), verdict(MachineClass::Human, &[]));
        assert_eq!(classify(&click(0)), verdict(MachineClass::Human, &[]));
        // Only a user agent, or only an address, is still a person.
        assert_eq!(classify(&Activity { ip: None, ..open() }).class, MachineClass::Human);
        assert_eq!(classify(&Activity { user_agent: None, ..click(1) }).class, MachineClass::Human);
        // Delivery not recorded: no timing evidence either way.
        assert_eq!(classify(&Activity { delivered_at_ms: None, ..click(1) }).class, MachineClass::Human);
    }

    #[test]
    fn gmail_image_proxy() {
        let a = Activity { user_agent: Some(GMAIL_PROXY.to_string()), ip: ip("66.249.84.1"), ..open() };
        assert_eq!(classify(&a), verdict(MachineClass::PrivacyProxy, &["gmail_image_proxy"]));
        // Only opens: the proxy fetches images, it never follows links.
        let a = Activity { user_agent: Some(GMAIL_PROXY.to_string()), ..click(0) };
        assert_eq!(classify(&a).class, MachineClass::Human);
    }

    #[test]
    fn apple_mpp_agent() {
        let a = Activity { user_agent: Some(" Mozilla/5.0 ".to_string()), ..open() };
        assert_eq!(classify(&a), verdict(MachineClass::PrivacyProxy, &["apple_mpp"]));
        // "exact": a real browser's longer agent is not the proxy.
        assert_eq!(classify(&open()).class, MachineClass::Human);
    }

    #[test]
    fn privacy_proxy_range_from_extra_lists() {
        // Apple's egress CSV lines, prefixed, parse as they are.
        let ranges = "privacy_proxy apple_private_relay 172.224.226.0/27,GB,GB-EN,London,\n\
                      privacy_proxy apple_private_relay 2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n\
                      privacy_proxy apple_private_relay 104.28.28.76,US,US-NY,New York,";
        let lists = Lists::parse(BUILTIN_AGENTS, &format!("{BUILTIN_RANGES}\n{ranges}")).unwrap();
        for addr in ["172.224.226.31", "2a02:26f7:b3c0:4000::1", "104.28.28.76", "::ffff:172.224.226.1"] {
            let a = Activity { ip: ip(addr), ..open() };
            assert_eq!(
                classify_with(&a, &lists),
                verdict(MachineClass::PrivacyProxy, &["apple_private_relay"])
            );
        }
        let a = Activity { ip: ip("172.224.226.32"), ..open() };
        assert_eq!(classify_with(&a, &lists).class, MachineClass::Human);
        // Not for clicks: a person browsing through Private Relay clicks.
        let a = Activity { ip: ip("172.224.226.1"), ..click(0) };
        assert_eq!(classify_with(&a, &lists).class, MachineClass::Human);
    }

    #[test]
    fn scanner_ranges() {
        for (addr, label) in [
            ("40.107.1.2", "microsoft_eop"),
            ("52.103.255.255", "microsoft_eop"),
            ("52.238.78.88", "microsoft_eop"),
            ("2a01:111:f403:c000::1", "microsoft_eop"),
            ("67.231.159.200", "proofpoint"),
            ("209.66.100.100", "proofpoint"),
        ] {
            assert_eq!(
                classify(&Activity { ip: ip(addr), ..click(0) }),
                verdict(MachineClass::Scanner, &[label])
            );
            assert_eq!(
                classify(&Activity { ip: ip(addr), ..open() }),
                verdict(MachineClass::Scanner, &[label])
            );
        }
        for addr in ["52.238.78.89", "104.47.128.0", "209.66.100.128", "67.231.160.0"] {
            assert_eq!(classify(&Activity { ip: ip(addr), ..click(0) }).class, MachineClass::Human, "{addr}");
        }
    }

    #[test]
    fn scanner_agent_from_extra_lists() {
        let lists = Lists::parse("scanner some_scanner contains ExampleScan/", "").unwrap();
        let a = Activity { user_agent: Some("examplescan/2.0".to_string()), ..click(0) };
        assert_eq!(classify_with(&a, &lists), verdict(MachineClass::Scanner, &["some_scanner"]));
    }

    #[test]
    fn head_request() {
        let a = Activity { head_request: true, ..click(0) };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["head_request"]));
        let a = Activity { head_request: true, ..open() };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["head_request"]));
        // Evidence beats anonymity.
        let a = Activity { head_request: true, ip: None, user_agent: None, ..open() };
        assert_eq!(classify(&a).class, MachineClass::Scanner);
    }

    #[test]
    fn soon_after_delivery() {
        let a = Activity { at_ms: T0 + 2_000, ..click(0) };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["soon_after_delivery"]));
        // Before delivery was recorded counts too; just past the window does not.
        assert_eq!(classify(&Activity { at_ms: T0 - 500, ..click(0) }).class, MachineClass::Scanner);
        let a = Activity { at_ms: T0 + SCAN_AFTER_DELIVERY_MS, ..click(0) };
        assert_eq!(classify(&a).class, MachineClass::Human);
        // Opens soon after delivery are left alone (a person may be reading).
        assert_eq!(classify(&Activity { at_ms: T0 + 2_000, ..open() }).class, MachineClass::Human);
    }

    #[test]
    fn click_burst() {
        let at = T0 + 60_000;
        let a = Activity { at_ms: at, other_clicks: vec![(at - 1_000, 0), (at - 400, 1)], ..click(2) };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["click_burst"]));
        // The same link thrice is a person double-clicking, not a sweep.
        let a = Activity { at_ms: at, other_clicks: vec![(at - 1_000, 2), (at - 400, 2)], ..click(2) };
        assert_eq!(classify(&a).class, MachineClass::Human);
        // Spread over more than the window.
        let a = Activity { at_ms: at, other_clicks: vec![(at - 9_000, 0), (at - 400, 1)], ..click(2) };
        assert_eq!(classify(&a).class, MachineClass::Human);
    }

    #[test]
    fn all_links_clicked() {
        let at = T0 + 60_000;
        let a = Activity { at_ms: at, links_in_message: 2, other_clicks: vec![(at - 2_000, 0)], ..click(1) };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["all_links_clicked"]));
        let others = vec![(at - 3_000, 0), (at - 2_000, 1)];
        let a = Activity { at_ms: at, links_in_message: 3, other_clicks: others, ..click(2) };
        assert_eq!(classify(&a), verdict(MachineClass::Scanner, &["click_burst", "all_links_clicked"]));
        // A message with one link: clicking it is not "every link".
        let a = Activity { at_ms: at, links_in_message: 1, ..click(0) };
        assert_eq!(classify(&a).class, MachineClass::Human);
    }

    #[test]
    fn several_reasons_together() {
        let at = T0 + 1_000;
        let a = Activity {
            at_ms: at,
            head_request: true,
            ip: ip("40.92.5.5"),
            other_clicks: vec![(at - 100, 0), (at - 50, 1), (at - 10, 2)],
            ..click(3)
        };
        assert_eq!(
            classify(&a),
            verdict(
                MachineClass::Scanner,
                &["head_request", "microsoft_eop", "soon_after_delivery", "click_burst", "all_links_clicked"]
            )
        );
    }

    #[test]
    fn unknown() {
        let a = Activity { ip: None, user_agent: None, ..open() };
        assert_eq!(classify(&a), verdict(MachineClass::Unknown, &["no_client_info"]));
        let a = Activity { ip: None, user_agent: Some("   ".to_string()), ..click(0) };
        assert_eq!(classify(&a), verdict(MachineClass::Unknown, &["no_client_info"]));
    }

    #[test]
    fn list_errors_name_the_line() {
        let err = Lists::parse("# c\n\nprivacy_proxy x sometimes y", "").unwrap_err();
        assert_eq!((err.list, err.line), ("agents", 3));
        assert!(Lists::parse("robot x exact y", "").is_err());
        assert!(Lists::parse("scanner Bad-Label exact y", "").is_err());
        assert!(Lists::parse("scanner x exact", "").is_err());
        let err = Lists::parse("", "scanner x 10.0.0.0/33").unwrap_err();
        assert_eq!((err.list, err.line), ("ranges", 1));
        assert!(Lists::parse("", "scanner x").is_err());
        assert!(Lists::parse("", "scanner x 10.0.0.1 extra").is_err());
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn overlapping_and_nested_ranges() {
        let ranges = "scanner wide 10.0.0.0/8\nscanner narrow 10.1.2.0/24\nscanner far 11.0.0.0/24\n\
                      scanner host 10.200.0.1";
        let lists = Lists::parse("", ranges).unwrap();
        let find = |s: &str| lists.scanner.find(s.parse().unwrap());
        assert_eq!(find("10.1.2.3"), Some("narrow"));
        assert_eq!(find("10.1.3.0"), Some("wide"));
        assert_eq!(find("10.200.0.1"), Some("host"));
        assert_eq!(find("10.255.255.255"), Some("wide"));
        assert_eq!(find("11.0.0.9"), Some("far"));
        assert_eq!(find("11.0.1.0"), None);
        assert_eq!(find("9.255.255.255"), None);
        assert_eq!(find("::a00:1"), None, "v4 and v6 stay apart");
        let narrow_first = Lists::parse("", "scanner narrow 10.1.2.0/24\nscanner far 10.9.0.0/16").unwrap();
        assert_eq!(narrow_first.scanner.find("10.1.2.200".parse().unwrap()), Some("narrow"));
        assert_eq!(narrow_first.scanner.find("10.5.0.0".parse().unwrap()), None);
    }
}
