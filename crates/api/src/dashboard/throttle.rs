//! Login throttling: after `MAX_FAILURES` failed logins for one name, or
//! from one address, within `WINDOW`, that name (or address) is refused
//! (429) until the oldest failure leaves the window. Kept in memory, per
//! node: a restart forgets it, which costs an attacker a restart's worth
//! of tries at most, never a lockout of its own making.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures within the window that close it.
pub const MAX_FAILURES: usize = 5;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most (the oldest are forgotten beyond).
const MAX_KEYS: usize = 100_000;

/// Recent failures per login name and per client address.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn keys(name: &str, ip: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("name:{}", name.to_lowercase())];
    if let Some(ip) = ip {
        keys.push(format!("ip:{ip}"));
    }
    keys
}

impl Throttle {
    /// How long until `name` from `ip` may try again; `None` when it may now.
    pub fn refused(&self, name: &str, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys(name, ip)
            .iter()
            .filter_map(|k| {
                let list = map.get_mut(k)?;
                list.retain(|t| now.duration_since(*t) < WINDOW);
                (list.len() >= MAX_FAILURES).then(|| list.front().map(|t| WINDOW - now.duration_since(*t)))?
            })
            .max()
    }

    /// Counts a failed login.
    pub fn failed(&self, name: &str, ip: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, l| l.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for k in keys(name, ip) {
            let list = map.entry(k).or_default();
            list.push_back(now);
            while list.len() > MAX_FAILURES {
                list.pop_front();
            }
        }
    }

    /// A successful login clears its name's failures (not its address's).
    pub fn succeeded(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("name:{}", name.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_close_the_name_and_the_address_for_the_window() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        let other: IpAddr = "192.0.2.2".parse().expect("an address");
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.refused("ann", Some(ip), start), None, "try {i}");
            t.failed("ann", Some(ip), start);
        }
        assert!(t.refused("ann", Some(other), start).is_some(), "the name is closed from anywhere");
        assert!(t.refused("bob", Some(ip), start).is_some(), "the address is closed for any name");
        assert_eq!(t.refused("bob", Some(other), start), None);
        let later = start + WINDOW;
        assert_eq!(t.refused("ann", Some(ip), later), None, "open again after the window");
    }

    #[test]
    fn a_success_clears_the_name_only() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("an address");
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed("Ann", Some(ip), now);
        }
        t.succeeded("ann");
        t.failed("ann", None, now);
        assert_eq!(t.refused("ann", None, now), None);
        t.failed("carl", Some(ip), now);
        assert!(t.refused("dora", Some(ip), now).is_some());
    }
}
