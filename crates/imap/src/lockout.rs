//! Slows down password guessing: every failed login waits a little longer,
//! and an address with too many recent failures is refused outright for a
//! while (even with the right password, so guessing gains nothing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Lockout {
    /// Failures from one address before it is locked out.
    pub max_failures: u32,
    /// How long failures are remembered, and how long a lock-out lasts.
    pub window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout::new(5, Duration::from_secs(300))
    }
}

impl Lockout {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Lockout { max_failures, window, failures: Mutex::default() }
    }

    /// Whether `ip` may try to log in now.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some(&(_, since)) if since.elapsed() > self.window => {
                map.remove(&ip);
                true
            }
            Some(&(n, _)) => n < self.max_failures,
            None => true,
        }
    }

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(ip).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
        Duration::from_millis(250 * u64::from(e.0.min(8)))
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_repeated_failures() {
        let l = Lockout::new(3, Duration::from_secs(300));
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(l.allowed(ip));
        let d1 = l.failed(ip);
        let d2 = l.failed(ip);
        assert!(d2 > d1, "each failure waits longer");
        assert!(l.allowed(ip));
        l.failed(ip);
        assert!(!l.allowed(ip));
        assert!(l.allowed([10, 0, 0, 2].into()), "other addresses are not affected");
        l.succeeded(ip);
        assert!(l.allowed(ip));
    }
}
