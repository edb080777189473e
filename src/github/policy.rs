//! What to do with a response: the retry policy as pure functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long to wait for a rate limit that names no time.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// No single wait longer than this, whatever a header says.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: use the body.
    Success,
    /// 304: unchanged since the stored ETag.
    NotModified,
    /// 404 or 410: the resource is gone; not an error and not retried.
    Gone,
    /// A primary or secondary rate limit: wait this long, then retry.
    RateLimited { wait: Duration },
    /// 5xx: retry after a backoff.
    Retryable,
    /// Any other status: fail now with GitHub's message.
    Fatal,
}

/// The rate-limit facts of a response's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Epoch seconds.
    pub reset: Option<u64>,
    pub retry_after: Option<u64>,
}

impl LimitHeaders {
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            limit: number("x-ratelimit-limit"),
            remaining: number("x-ratelimit-remaining"),
            reset: number("x-ratelimit-reset"),
            retry_after: number("retry-after"),
        }
    }

    /// The time until `reset`, from `now`, at most [`MAX_WAIT`]. A header is
    /// a stranger's number: one beyond what the clock can represent is a
    /// reset too far away to wait for, not a reason to panic.
    pub fn until_reset(&self, now: SystemTime) -> Option<Duration> {
        Some(until_epoch(self.reset?, now))
    }
}

/// The time from `now` until `epoch_seconds`: zero when it has passed,
/// [`MAX_WAIT`] at most (also when it lies beyond the clock's range).
pub fn until_epoch(epoch_seconds: u64, now: SystemTime) -> Duration {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(epoch_seconds))
        .map_or(MAX_WAIT, |at| at.duration_since(now).unwrap_or(Duration::ZERO))
        .min(MAX_WAIT)
}

/// Classifies a response. `message` is GitHub's error message, when the body had one.
pub fn classify(status: u16, limits: &LimitHeaders, message: &str, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        304 => Verdict::NotModified,
        404 | 410 => Verdict::Gone,
        403 | 429 if is_rate_limit(status, limits, message) => {
            Verdict::RateLimited { wait: rate_limit_wait(limits, now) }
        }
        500..=599 => Verdict::Retryable,
        _ => Verdict::Fatal,
    }
}

/// A 429 is always a limit; a 403 is one only when GitHub says so (otherwise it
/// is a permission problem that waiting will not fix).
fn is_rate_limit(status: u16, limits: &LimitHeaders, message: &str) -> bool {
    status == 429
        || limits.retry_after.is_some()
        || limits.remaining == Some(0)
        || message.to_ascii_lowercase().contains("rate limit")
}

/// GitHub's documented order: `Retry-After`, else the reset time when the
/// budget is spent, else a minute.
pub fn rate_limit_wait(limits: &LimitHeaders, now: SystemTime) -> Duration {
    let wait = if let Some(seconds) = limits.retry_after {
        Duration::from_secs(seconds)
    } else if limits.remaining == Some(0) {
        // One second past the reset, so the new window has surely begun.
        limits.until_reset(now).map_or(DEFAULT_RATE_LIMIT_WAIT, |d| d.saturating_add(Duration::from_secs(1)))
    } else {
        DEFAULT_RATE_LIMIT_WAIT
    };
    wait.min(MAX_WAIT)
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half is
/// random, so retries spread out without ever collapsing to zero.
/// `retry` counts from 1; `unit` is a random number in [0, 1) (anything
/// else, NaN included, counts as 0).
pub fn backoff(base: Duration, retry: u32, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(16);
    let delay = base.saturating_mul(1u32 << exponent).min(MAX_WAIT);
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
    delay / 2 + delay.mul_f64(unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(epoch)
    }

    fn status(code: u16) -> u16 {
        code
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let none = LimitHeaders::default();
        assert_eq!(classify(status(200), &none, "", at(0)), Verdict::Success);
        assert_eq!(classify(status(304), &none, "", at(0)), Verdict::NotModified);
        assert_eq!(classify(status(404), &none, "Not Found", at(0)), Verdict::Gone);
        assert_eq!(classify(status(410), &none, "", at(0)), Verdict::Gone);
        assert_eq!(classify(status(502), &none, "", at(0)), Verdict::Retryable);
        assert_eq!(classify(status(422), &none, "Validation Failed", at(0)), Verdict::Fatal);
        assert_eq!(classify(status(401), &none, "Bad credentials", at(0)), Verdict::Fatal);
        assert_eq!(
            classify(status(403), &none, "Resource not accessible by integration", at(0)),
            Verdict::Fatal
        );
    }

    #[test]
    fn rate_limits_obey_retry_after_then_reset_then_a_minute() {
        let secondary = LimitHeaders { retry_after: Some(2), remaining: Some(100), ..Default::default() };
        assert_eq!(
            classify(status(403), &secondary, "You have exceeded a secondary rate limit", at(0)),
            Verdict::RateLimited { wait: Duration::from_secs(2) }
        );
        // GitHub answers a secondary limit with 403 or 429: both wait for Retry-After.
        assert_eq!(
            classify(status(429), &secondary, "You have exceeded a secondary rate limit", at(0)),
            Verdict::RateLimited { wait: Duration::from_secs(2) }
        );
        let primary = LimitHeaders { remaining: Some(0), reset: Some(1_000), ..Default::default() };
        assert_eq!(
            classify(status(403), &primary, "API rate limit exceeded", at(990)),
            Verdict::RateLimited { wait: Duration::from_secs(11) }
        );
        let bare = LimitHeaders::default();
        assert_eq!(
            classify(status(429), &bare, "", at(0)),
            Verdict::RateLimited { wait: DEFAULT_RATE_LIMIT_WAIT }
        );
        assert_eq!(
            classify(status(403), &bare, "You have exceeded a secondary rate limit.", at(0)),
            Verdict::RateLimited { wait: DEFAULT_RATE_LIMIT_WAIT }
        );
        let past_reset = LimitHeaders { remaining: Some(0), reset: Some(10), ..Default::default() };
        assert_eq!(rate_limit_wait(&past_reset, at(100)), Duration::from_secs(1));
        let absurd = LimitHeaders { retry_after: Some(1 << 40), ..Default::default() };
        assert_eq!(rate_limit_wait(&absurd, at(0)), MAX_WAIT);
    }

    #[test]
    fn header_values_beyond_the_clock_are_clamped_not_panics() {
        let now = SystemTime::now();
        for reset in [u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40] {
            let limits = LimitHeaders {
                limit: Some(u64::MAX),
                remaining: Some(0),
                reset: Some(reset),
                retry_after: None,
            };
            assert_eq!(limits.until_reset(now), Some(MAX_WAIT), "reset {reset}");
            assert_eq!(rate_limit_wait(&limits, now), MAX_WAIT, "reset {reset}");
            assert_eq!(
                classify(429, &limits, "", now),
                Verdict::RateLimited { wait: MAX_WAIT },
                "reset {reset}"
            );
        }
        let forever = LimitHeaders { retry_after: Some(u64::MAX), ..Default::default() };
        assert_eq!(rate_limit_wait(&forever, now), MAX_WAIT);
        assert_eq!(until_epoch(0, now), Duration::ZERO);
        for unit in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 2.0] {
            assert!(backoff(Duration::MAX, u32::MAX, unit) <= MAX_WAIT, "{unit}");
        }
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(base, 1, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(base, 3, 0.0), Duration::from_millis(200));
        assert!(backoff(base, 60, 1.0) <= MAX_WAIT);
    }

    #[test]
    fn limit_headers_parse_and_ignore_garbage() {
        let headers = |name: &str| match name {
            "x-ratelimit-limit" => Some("5000".to_owned()),
            "x-ratelimit-remaining" => Some("4999".to_owned()),
            "x-ratelimit-reset" => Some("1372700873".to_owned()),
            "retry-after" => Some("soon".to_owned()),
            _ => None,
        };
        let parsed = LimitHeaders::parse(headers);
        assert_eq!(parsed.limit, Some(5000));
        assert_eq!(parsed.remaining, Some(4999));
        assert_eq!(parsed.reset, Some(1_372_700_873));
        assert_eq!(parsed.retry_after, None);
    }
}
