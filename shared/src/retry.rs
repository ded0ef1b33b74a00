//! Retry rules, in one place: which HTTP outcomes are worth another try, how
//! long to wait (exponential backoff with jitter, `Retry-After` honoured up to
//! a cap), the one retry loop every caller uses ([`retrying`], around
//! `backon`), and the per-memory retry budget of the ledger.
//!
//! Callers: the Memory API client, the LightRAG sink, enrichment's services
//! and the DynamoDB store's own loops (unprocessed items, transaction
//! conflicts). Each brings a [`Policy`] and an error type that says whether
//! an attempt is worth repeating ([`Transient`]).

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The longest a server's `Retry-After` may make one request wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The first retry's delay before the multiplier applies.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The longest exponential delay between two attempts of one request.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How one kind of call is retried: attempts after the first, the
/// exponential delays between them (each with up to as much again of
/// jitter), and the longest wait a server's `Retry-After` may ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub max_retry_after: Duration,
}

impl Policy {
    /// A request to an HTTP service: `retries` more attempts, from
    /// [`FIRST_RETRY_DELAY`] growing by `multiplier` up to [`MAX_RETRY_DELAY`].
    pub fn requests(retries: u32, multiplier: f64) -> Self {
        Self {
            retries,
            first_delay: FIRST_RETRY_DELAY,
            max_delay: MAX_RETRY_DELAY,
            multiplier,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }

    /// The same policy with another first delay (tests make it short).
    pub fn with_first_delay(self, first_delay: Duration) -> Self {
        Self { first_delay, ..self }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay.max(self.first_delay))
            .with_factor(if self.multiplier.is_finite() { self.multiplier.max(1.0) as f32 } else { 1.0 })
            .with_max_times(self.retries as usize)
            .with_jitter()
    }

    /// The (jittered) delay before retry number `retry` (from 1), `None`
    /// past the policy's retries: for a loop that repeats part of a larger
    /// step and so cannot be one [`retrying`] call.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        let index = usize::try_from(retry.checked_sub(1)?).ok()?;
        self.backoff().build().nth(index)
    }
}

/// What a failed attempt says about trying again.
pub trait Transient {
    /// Whether the same call may work later (and so is retried).
    fn is_transient(&self) -> bool;

    /// How long the other side asked to wait (`Retry-After`), when it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// A retried call's outcome and how many attempts it took.
#[derive(Debug)]
pub struct Retried<T, E> {
    pub result: Result<T, E>,
    pub attempts: u32,
}

/// The retry loop: calls `attempt` until it succeeds, fails in a way that is
/// not [`Transient`], or `policy`'s retries are used up. Between attempts it
/// waits the policy's delay, or the server's `Retry-After` (up to the
/// policy's `max_retry_after`); `on_retry(error, wait, attempts_so_far)` hears of
/// each retry first (for the caller's log line). Waits run on tokio's clock.
pub async fn retrying<T, E, Fut>(
    policy: Policy,
    mut attempt: impl FnMut() -> Fut,
    mut on_retry: impl FnMut(&E, Duration, u32),
) -> Retried<T, E>
where
    E: Transient,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = AtomicU32::new(0);
    let result = (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        attempt()
    })
    .retry(policy.backoff())
    .sleep(tokio::time::sleep)
    .when(E::is_transient)
    .adjust(|error: &E, delay| wait_before_retry(delay, error.retry_after(), policy.max_retry_after))
    .notify(|error: &E, wait| on_retry(error, wait, attempts.load(Ordering::Relaxed)))
    .await;
    Retried { result, attempts: attempts.into_inner() }
}

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

/// The delay before the next attempt: the server's `Retry-After` when it gave
/// one (capped at `cap`), else the backoff's own delay. `None` from the
/// backoff means the attempts are used up, whatever the server said.
fn wait_before_retry(
    backoff_delay: Option<Duration>,
    retry_after: Option<Duration>,
    cap: Duration,
) -> Option<Duration> {
    let delay = backoff_delay?;
    Some(match retry_after {
        Some(after) => after.min(cap),
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
        let cap = MAX_RETRY_AFTER;
        assert_eq!(wait_before_retry(Some(Duration::from_secs(1)), Some(Duration::from_secs(9999)), cap), Some(cap));
        assert_eq!(wait_before_retry(None, Some(Duration::from_secs(1)), cap), None);
    }

    #[derive(Debug)]
    struct Outcome {
        transient: bool,
        after: Option<Duration>,
    }

    impl Transient for Outcome {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_retries_transient_failures_then_gives_up() {
        let policy = Policy::requests(3, 2.0);
        let mut heard = Vec::new();
        let started = tokio::time::Instant::now();
        let retried: Retried<(), Outcome> = retrying(
            policy,
            || async { Err(Outcome { transient: true, after: None }) },
            |_, wait, attempts| heard.push((wait, attempts)),
        )
        .await;
        assert_eq!(retried.attempts, 4);
        assert_eq!(heard.iter().map(|h| h.1).collect::<Vec<_>>(), [1, 2, 3]);
        // 0.5, 1, 2 s, each with up to as much again of jitter.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(3500) && waited <= Duration::from_secs(7), "{waited:?}");

        let permanent: Retried<(), Outcome> =
            retrying(policy, || async { Err(Outcome { transient: false, after: None }) }, |_, _, _| {}).await;
        assert_eq!(permanent.attempts, 1);

        let mut calls = 0;
        let recovered: Retried<u32, Outcome> = retrying(
            policy,
            || {
                calls += 1;
                let call = calls;
                async move { if call < 3 { Err(Outcome { transient: true, after: None }) } else { Ok(call) } }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!((recovered.result.unwrap(), recovered.attempts), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_waits_what_the_server_asks_within_the_cap() {
        let mut waits = Vec::new();
        let _: Retried<(), Outcome> = retrying(
            Policy::requests(2, 2.0),
            || async { Err(Outcome { transient: true, after: Some(Duration::from_secs(9999)) }) },
            |_, wait, _| waits.push(wait),
        )
        .await;
        assert_eq!(waits, [MAX_RETRY_AFTER, MAX_RETRY_AFTER]);
    }

    #[test]
    fn policy_delays_for_hand_written_loops() {
        let policy = Policy {
            retries: 3,
            first_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(60),
            multiplier: 2.0,
            max_retry_after: MAX_RETRY_AFTER,
        };
        let first = policy.delay(1).unwrap();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50), "{first:?}");
        assert!(policy.delay(3).unwrap() <= Duration::from_millis(120));
        assert_eq!(policy.delay(0), None);
        assert_eq!(policy.delay(4), None);
    }

    #[test]
    fn item_backoff_grows_and_caps() {
        assert_eq!(item_backoff(1, 2.0, 60), Duration::from_secs(1));
        assert_eq!(item_backoff(3, 2.0, 60), Duration::from_secs(4));
        assert_eq!(item_backoff(20, 2.0, 60), Duration::from_secs(60));
    }
}
