//! The one timestamp format people read, in the CLI and beside the API's
//! numbers: RFC 3339 in UTC with a `Z` (`2026-12-07T00:12:47.120Z`), to the
//! millisecond when the value has milliseconds, to the second when it is
//! kept in seconds.

use chrono::{DateTime, SecondsFormat};

/// Milliseconds since the epoch as RFC 3339 UTC, millisecond precision
/// (`2026-12-07T00:12:47.120Z`); the number itself when out of range.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-07T00:12:47Z`); the
/// number itself when out of range.
pub fn rfc3339_secs(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_with_z_at_the_value_s_precision() {
        assert_eq!(rfc3339_ms(1_796_602_367_120), "2026-12-07T00:12:47.120Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_secs(1_796_602_367), "2026-12-07T00:12:47Z");
        assert_eq!(rfc3339_ms(i64::MAX), i64::MAX.to_string());
    }
}
