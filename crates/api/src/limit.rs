//! Requests per second per tenant: a token bucket each, refilled
//! continuously, holding up to two seconds' worth (a burst).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct Limiter {
    rate: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl Limiter {
    /// `rate` requests per second; 0 for no limit.
    pub fn new(rate: u32) -> Self {
        Limiter { rate: rate as f64, buckets: Mutex::default() }
    }

    pub fn allow(&self, tenant: i64) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets.entry(tenant).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn burst_then_refuse_per_tenant() {
        let l = super::Limiter::new(5);
        assert!((0..10).all(|_| l.allow(1)));
        assert!(!l.allow(1));
        assert!(l.allow(2), "another tenant has its own bucket");
        assert!((0..1000).all(|_| super::Limiter::new(0).allow(1)));
    }
}
