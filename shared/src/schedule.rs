//! Schedules: when a connector runs next, and the same schedule as an
//! EventBridge expression ([`eventbridge`]).

pub mod eventbridge;
#[cfg(feature = "aws")]
pub mod rules;

pub use eventbridge::{ScheduleError, eventbridge_expression};

use crate::config::{ScheduleConfig, ScheduleType};
use chrono::{DateTime, Utc};

/// The interval of an `interval` schedule (`interval_minutes` wins over
/// `interval_hours`); `None` for cron schedules or a non-positive interval.
pub fn interval(schedule: &ScheduleConfig) -> Option<chrono::Duration> {
    if schedule.kind != ScheduleType::Interval {
        return None;
    }
    let minutes = schedule
        .interval_minutes
        .or(schedule.interval_hours.map(|h| h * 60.0))
        .filter(|m| m.is_finite() && *m > 0.0)?;
    chrono::Duration::try_milliseconds((minutes * 60_000.0) as i64)
}

/// The next time the connector is due after a run that started at
/// `last_started` (or now, when it never ran).
pub fn next_run(schedule: &ScheduleConfig, last_started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule.kind {
        ScheduleType::Interval => {
            let every = interval(schedule)?;
            Some(match last_started {
                Some(last) => (last + every).max(now),
                None => now,
            })
        }
        ScheduleType::Cron => next_cron(schedule.cron.as_deref()?, now),
    }
}

/// The next firing of a 5-field Unix cron expression after `after` (UTC).
/// (`schedule.timezone` is not applied yet: cron schedules are UTC.)
pub fn next_cron(expression: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = crate::config::parse_unix_cron(expression).ok()?;
    cron.find_next_occurrence(&after, false).ok()
}

/// When a connector is due, seen from a scheduler that starts (or wakes) at
/// `now`: a missed run is due *now*, once, never a burst of catch-up runs.
/// An interval connector that never ran is due now; a cron connector that
/// never ran waits for its next firing.
pub fn due_at(schedule: &ScheduleConfig, last_started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule.kind {
        ScheduleType::Interval => next_run(schedule, last_started, now),
        ScheduleType::Cron => {
            let expression = schedule.cron.as_deref()?;
            match last_started {
                Some(last) => next_cron(expression, last).map(|at| at.max(now)),
                None => next_cron(expression, now),
            }
        }
    }
}

/// A random delay in `0..=jitter_seconds` added to each scheduled start.
pub fn jitter(schedule: &ScheduleConfig) -> std::time::Duration {
    if schedule.jitter_seconds == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(fastrand::u64(0..=schedule.jitter_seconds * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn interval_next_run() {
        let s = ScheduleConfig { interval_hours: Some(1.0), ..Default::default() };
        let now = Utc.with_ymd_and_hms(2025, 12, 18, 15, 30, 0).unwrap();
        let last = Utc.with_ymd_and_hms(2025, 12, 18, 15, 0, 0).unwrap();
        assert_eq!(next_run(&s, Some(last), now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 16, 0, 0).unwrap()));
        assert_eq!(next_run(&s, None, now), Some(now));
        let m = ScheduleConfig { interval_minutes: Some(5.0), ..Default::default() };
        assert_eq!(interval(&m), Some(chrono::Duration::minutes(5)));
    }

    #[test]
    fn cron_next_and_missed_runs() {
        let s = ScheduleConfig { kind: ScheduleType::Cron, cron: Some("0 9,17 * * 1-5".into()), ..Default::default() };
        // Thursday 2025-12-18 10:00 UTC
        let now = Utc.with_ymd_and_hms(2025, 12, 18, 10, 0, 0).unwrap();
        assert_eq!(next_cron("0 9,17 * * 1-5", now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        // Friday 17:00 -> Monday 09:00
        let fri = Utc.with_ymd_and_hms(2025, 12, 19, 17, 0, 0).unwrap();
        assert_eq!(next_cron("0 9,17 * * 1-5", fri), Some(Utc.with_ymd_and_hms(2025, 12, 22, 9, 0, 0).unwrap()));
        // Never ran: wait for the next firing.
        assert_eq!(due_at(&s, None, now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        // Last ran two days ago: several firings missed, due once, now.
        let old = Utc.with_ymd_and_hms(2025, 12, 16, 9, 0, 0).unwrap();
        assert_eq!(due_at(&s, Some(old), now), Some(now));
        // Ran at 09:00 today: next is 17:00.
        let nine = Utc.with_ymd_and_hms(2025, 12, 18, 9, 0, 0).unwrap();
        assert_eq!(due_at(&s, Some(nine), now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        assert_eq!(next_cron("not cron", now), None);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let s = ScheduleConfig { interval_hours: Some(1.0), jitter_seconds: 2, ..Default::default() };
        for _ in 0..100 {
            assert!(jitter(&s) <= std::time::Duration::from_secs(2));
        }
        assert_eq!(jitter(&ScheduleConfig::default()), std::time::Duration::ZERO);
    }
}
