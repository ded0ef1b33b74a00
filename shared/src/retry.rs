//! Retry rules, in one place: which HTTP outcomes are worth another try, how
//! long to wait (exponential backoff with jitter, `Retry-After` honoured up to
//! a cap), and the per-memory retry budget of the ledger.
//!
//! Request retries use `backon`; [`request_backoff`] builds its policy from
//! the config and [`wait_before_retry`] folds a server's `Retry-After` in.

use backon::ExponentialBuilder;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The longest a server's `Retry-After` may make one request wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The first retry's delay before the multiplier applies.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The longest exponential delay between two attempts of one request.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How an HTTP status should be treated by a client that may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    /// 408, 429, 5xx: try again later.
    Retryable,
    /// Everything else (401, 403, 404, 400, 409, 422...): retrying will not help.
    Permanent,
}

pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// The backoff for retrying one request: `max_retries` more attempts, the
/// delay multiplied by `multiplier` each time, with jitter.
pub fn request_backoff(max_retries: u32, multiplier: f64) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(multiplier.max(1.0) as f32)
        .with_max_times(max_retries as usize)
        .with_jitter()
}

/// The delay before the next attempt: the server's `Retry-After` when it gave
/// one (capped at [`MAX_RETRY_AFTER`]), else the backoff's own delay. `None`
/// from the backoff means the attempts are used up, whatever the server said.
pub fn wait_before_retry(backoff_delay: Option<Duration>, retry_after: Option<Duration>) -> Option<Duration> {
    let delay = backoff_delay?;
    Some(match retry_after {
        Some(after) => after.min(MAX_RETRY_AFTER),
        None => delay,
    })
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let when: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// The ledger's wait after a memory failed `attempts` times:
/// `multiplier^(attempts-1)` minutes' worth of seconds, capped.
pub fn item_backoff(attempts: u32, multiplier: f64, max_backoff_seconds: u64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30) as i32;
    let seconds = multiplier.max(1.0).powi(exponent);
    Duration::from_secs_f64(seconds.min(max_backoff_seconds as f64).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(429), StatusClass::Retryable);
        assert_eq!(classify_status(503), StatusClass::Retryable);
        assert_eq!(classify_status(401), StatusClass::Permanent);
        assert_eq!(classify_status(404), StatusClass::Permanent);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_is_capped_and_cannot_extend_attempts() {
        assert_eq!(
            wait_before_retry(Some(Duration::from_secs(1)), Some(Duration::from_secs(9999))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(wait_before_retry(None, Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn item_backoff_grows_and_caps() {
        assert_eq!(item_backoff(1, 2.0, 60), Duration::from_secs(1));
        assert_eq!(item_backoff(3, 2.0, 60), Duration::from_secs(4));
        assert_eq!(item_backoff(20, 2.0, 60), Duration::from_secs(60));
    }
}
