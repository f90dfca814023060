//! When a failed delivery is tried again. The default schedule is Svix's
//! and the Standard Webhooks guidance's shape (5 s, 5 min, 30 min, 2 h,
//! 5 h, then every 10 h), seven 10-hour steps so the last attempt comes
//! about three days (77.6 h) after the first, each delay moved by up to
//! ±20 % so that the deliveries of one outage do not all return at once.
//! A receiver that answers 429 or 503 with `Retry-After` is retried then
//! instead (at most a day later). Pure: the caller passes the random draw
//! and the clock.

use std::time::Duration;

/// `[webhooks] retry_schedule_secs` by default: the delay after the 1st,
/// 2nd, ... failed attempt: thirteen attempts in all.
pub const DEFAULT_SECS: [u64; 12] =
    [5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000, 36000];

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The delays between attempts.
#[derive(Debug, Clone)]
pub struct Schedule {
    delays: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::from_secs(&DEFAULT_SECS)
    }
}

impl Schedule {
    pub fn from_secs(secs: &[u64]) -> Schedule {
        Schedule { delays: secs.iter().map(|s| Duration::from_secs(*s)).collect() }
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> usize {
        self.delays.len() + 1
    }

    /// The wait after `made` failed attempts (1 after the first), or
    /// `None` when that was the last. `retry_after` (the receiver's own
    /// word) replaces the schedule's delay; `draw` is a uniform random
    /// number that places the jitter.
    pub fn after(&self, made: usize, retry_after: Option<Duration>, draw: u64) -> Option<Duration> {
        let base = *self.delays.get(made.checked_sub(1)?)?;
        if let Some(asked) = retry_after {
            return Some(asked.clamp(Duration::from_secs(1), MAX_RETRY_AFTER));
        }
        Some(jitter(base, draw))
    }
}

/// `d` moved by -20 % to +20 %, as `draw` falls in its range.
pub fn jitter(d: Duration, draw: u64) -> Duration {
    let unit = draw as f64 / u64::MAX as f64;
    d.mul_f64(0.8 + 0.4 * unit)
}

/// A `Retry-After` header (RFC 9110 10.2.3): seconds, or an HTTP date
/// (taken relative to `now`).
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lasts_about_three_days_in_thirteen_attempts() {
        let s = Schedule::default();
        assert_eq!(s.attempts(), 13);
        let total: u64 = DEFAULT_SECS.iter().sum();
        assert!((72 * 3600..80 * 3600).contains(&total), "{total}");
        assert_eq!(s.after(0, None, 0), None, "no attempt made yet");
        let last = s.after(12, None, u64::MAX / 2).unwrap().as_secs_f64();
        assert!((last - 36000.0).abs() < 1.0, "{last}");
        assert_eq!(s.after(13, None, 0), None, "the thirteenth was the last");
        assert_eq!(s.after(13, Some(Duration::from_secs(5)), 0), None, "Retry-After gives no more attempts");
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = Schedule::from_secs(&[100]);
        assert_eq!(s.after(1, None, 0), Some(Duration::from_secs(80)));
        assert_eq!(s.after(1, None, u64::MAX), Some(Duration::from_secs(120)));
        for draw in [1u64, 7 << 40, u64::MAX / 3, u64::MAX - 5] {
            let d = s.after(1, None, draw).unwrap();
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120), "{d:?}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_is_bounded() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Mon, 23 Nov 2026 10:01:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        let s = Schedule::from_secs(&[5, 5]);
        assert_eq!(s.after(1, Some(Duration::ZERO), 0), Some(Duration::from_secs(1)));
        assert_eq!(s.after(1, Some(Duration::from_secs(999_999)), 0), Some(MAX_RETRY_AFTER));
        assert_eq!(s.after(2, Some(Duration::from_secs(30)), 0), Some(Duration::from_secs(30)));
    }
}
