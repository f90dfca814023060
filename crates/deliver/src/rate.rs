//! A token bucket per destination (a domain or a host), so one busy receiver
//! is not sent more than it accepts (receivers throttle and then defer or
//! block senders that burst). Waiting callers reserve their slot when they
//! ask: each gets the next free instant, first come first served, without
//! polling or a background task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Messages per second and how many may go at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Rate { per_second, burst: burst.max(1) }
    }

    /// A rate that is not finite and positive means "no limit".
    fn is_limited(&self) -> bool {
        self.per_second.is_finite() && self.per_second > 0.0
    }
}

struct Bucket {
    /// May go negative: slots reserved by callers still waiting.
    tokens: f64,
    at: Instant,
}

/// Buckets beyond this many are pruned of full (idle) ones, so a stream of
/// one-off domains does not grow the map forever.
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimiter {
    default: Option<Rate>,
    limits: HashMap<String, Rate>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `default` applies to every key without its own limit; `None` leaves
    /// those unlimited.
    pub fn new(default: Option<Rate>) -> Self {
        RateLimiter { default, limits: HashMap::new(), buckets: Mutex::default() }
    }

    /// A limit for one key (lower-cased, like the keys passed to `acquire`).
    pub fn with_limit(mut self, key: &str, rate: Rate) -> Self {
        self.limits.insert(key.to_ascii_lowercase(), rate);
        self
    }

    fn rate(&self, key: &str) -> Option<Rate> {
        self.limits.get(key).copied().or(self.default).filter(Rate::is_limited)
    }

    /// Takes one slot for `key`, returning how long the caller must wait for
    /// it (zero when a token was free). The slot is taken even if the caller
    /// then gives up, which errs on the side of sending less.
    pub fn reserve(&self, key: &str) -> Duration {
        let key = key.to_ascii_lowercase();
        let Some(rate) = self.rate(&key) else { return Duration::ZERO };
        let now = Instant::now();
        let burst = f64::from(rate.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            // A bucket that has refilled is the same as no bucket.
            buckets.retain(|k, b| {
                self.rate(k).is_some_and(|r| {
                    b.tokens + now.duration_since(b.at).as_secs_f64() * r.per_second < f64::from(r.burst)
                })
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(burst);
        bucket.at = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / rate.per_second)
        }
    }

    /// Waits until `key` may send one more message.
    pub async fn acquire(&self, key: &str) {
        let wait = self.reserve(key);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let limiter = RateLimiter::new(Some(Rate::new(2.0, 3)));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("example.com").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        limiter.acquire("example.com").await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        limiter.acquire("EXAMPLE.com").await;
        assert_eq!(start.elapsed(), Duration::from_millis(1000), "keys ignore case");
        // Another key has its own bucket.
        limiter.acquire("example.org").await;
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_the_burst() {
        let limiter = RateLimiter::new(Some(Rate::new(1.0, 2)));
        limiter.acquire("k").await;
        limiter.acquire("k").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        limiter.acquire("k").await;
        limiter.acquire("k").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("k").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1), "no more than the burst was saved");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_get_successive_slots() {
        let limiter = Arc::new(RateLimiter::new(Some(Rate::new(10.0, 1))));
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.acquire("mx.example").await;
                    start.elapsed()
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        done.sort();
        let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(100 * i)).collect();
        assert_eq!(done, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn per_key_limits_and_unlimited_default() {
        let limiter = RateLimiter::new(None).with_limit("Slow.example", Rate::new(1.0, 1));
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire("fast.example").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("slow.example").await;
        limiter.acquire("slow.example").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(RateLimiter::new(Some(Rate::new(0.0, 1))).reserve("x"), Duration::ZERO);
    }
}
