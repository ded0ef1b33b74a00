//! Schedules: when a connector runs next, and the same schedule as an
//! EventBridge expression ([`eventbridge`]).

pub mod eventbridge;
#[cfg(feature = "aws")]
pub mod rules;

pub use eventbridge::{ScheduleError, eventbridge_expression};

use crate::config::{ScheduleConfig, ScheduleType, time_zone};
use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;

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
pub fn next_run(
    schedule: &ScheduleConfig,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule.kind {
        ScheduleType::Interval => {
            let every = interval(schedule)?;
            Some(match last_started {
                Some(last) => (last + every).max(now),
                None => now,
            })
        }
        ScheduleType::Cron => next_cron(schedule.cron.as_deref()?, zone(schedule).as_ref(), now),
    }
}

/// The zone a schedule's cron is read in: `None` for UTC (unset, `UTC`,
/// `Etc/UTC`), else the named zone from the system's tz database, cached by
/// jiff after the first look-up. A name that is not found (validation
/// refuses those; the database may change after) counts as UTC, with a warning.
pub fn zone(schedule: &ScheduleConfig) -> Option<TimeZone> {
    let name = schedule.timezone.as_deref()?;
    match time_zone(name) {
        Ok(zone) => zone,
        Err(e) => {
            // Validated at load; gone since (tzdata removed, another TZDIR).
            tracing::warn!(timezone = name.trim(), error = %e, "schedule.timezone is not in the tz database any more; the cron runs in UTC");
            None
        }
    }
}

/// The next firing of a 5-field Unix cron expression after `after`, its
/// fields read as wall-clock time in `zone` (UTC when `None`). Across
/// daylight-saving changes it fires once: a time the clock skips fires right
/// after the jump, a time it passes twice fires the first time (croner, as
/// Vixie cron does).
pub fn next_cron(expression: &str, zone: Option<&TimeZone>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = crate::config::parse_unix_cron(expression).ok()?;
    let Some(zone) = zone else {
        return cron.find_next_occurrence(&after, false).ok();
    };
    let nanos = i32::try_from(after.timestamp_subsec_nanos()).ok()?;
    let start = jiff::Timestamp::new(after.timestamp(), nanos).ok()?.to_zoned(zone.clone());
    let next = cron.find_next_occurrence(&start, false).ok()?.timestamp();
    DateTime::from_timestamp(next.as_second(), u32::try_from(next.subsec_nanosecond()).ok()?)
}

/// When a connector is due, seen from a scheduler that starts (or wakes) at
/// `now`: a missed run is due *now*, once, never a burst of catch-up runs.
/// An interval connector that never ran is due now; a cron connector that
/// never ran waits for its next firing.
pub fn due_at(
    schedule: &ScheduleConfig,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule.kind {
        ScheduleType::Interval => next_run(schedule, last_started, now),
        ScheduleType::Cron => {
            let expression = schedule.cron.as_deref()?;
            let zone = zone(schedule);
            match last_started {
                Some(last) => next_cron(expression, zone.as_ref(), last).map(|at| at.max(now)),
                None => next_cron(expression, zone.as_ref(), now),
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
        assert_eq!(next_cron("0 9,17 * * 1-5", None, now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        // Friday 17:00 -> Monday 09:00
        let fri = Utc.with_ymd_and_hms(2025, 12, 19, 17, 0, 0).unwrap();
        assert_eq!(next_cron("0 9,17 * * 1-5", None, fri), Some(Utc.with_ymd_and_hms(2025, 12, 22, 9, 0, 0).unwrap()));
        // Never ran: wait for the next firing.
        assert_eq!(due_at(&s, None, now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        // Last ran two days ago: several firings missed, due once, now.
        let old = Utc.with_ymd_and_hms(2025, 12, 16, 9, 0, 0).unwrap();
        assert_eq!(due_at(&s, Some(old), now), Some(now));
        // Ran at 09:00 today: next is 17:00.
        let nine = Utc.with_ymd_and_hms(2025, 12, 18, 9, 0, 0).unwrap();
        assert_eq!(due_at(&s, Some(nine), now), Some(Utc.with_ymd_and_hms(2025, 12, 18, 17, 0, 0).unwrap()));
        assert_eq!(next_cron("not cron", None, now), None);
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// Every firing in `[from, to)`.
    fn firings(
        expression: &str,
        zone: &jiff::tz::TimeZone,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from - chrono::Duration::seconds(1);
        while let Some(next) = next_cron(expression, Some(zone), at).filter(|n| *n < to) {
            out.push(next);
            at = next;
        }
        out
    }

    #[test]
    fn cron_in_a_named_zone_follows_its_wall_clock() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let s = ScheduleConfig {
            kind: ScheduleType::Cron,
            cron: Some("0 9 * * *".into()),
            timezone: Some("Europe/Paris".into()),
            ..Default::default()
        };
        assert_eq!(zone(&s), Some(paris));
        // 09:00 in Paris is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST);
        // 2026-03-29 is the day the clocks go forward.
        assert_eq!(next_run(&s, None, utc(2026, 3, 27, 12, 0)), Some(utc(2026, 3, 28, 8, 0)));
        assert_eq!(next_run(&s, None, utc(2026, 3, 28, 12, 0)), Some(utc(2026, 3, 29, 7, 0)));
        assert_eq!(due_at(&s, Some(utc(2026, 3, 29, 7, 0)), utc(2026, 3, 29, 7, 1)), Some(utc(2026, 3, 30, 7, 0)));
        // The same cron in UTC and in a zone without DST.
        assert_eq!(zone(&ScheduleConfig::default()), None);
        assert_eq!(zone(&ScheduleConfig { timezone: Some("Etc/UTC".into()), ..Default::default() }), None);
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(next_cron("0 9 * * *", Some(&tokyo), utc(2026, 3, 28, 12, 0)), Some(utc(2026, 3, 29, 0, 0)));
    }

    #[test]
    fn daylight_saving_changes_fire_once() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        // Spring: 02:30 does not exist on 2026-03-29 (02:00 CET -> 03:00 CEST, at 01:00 UTC).
        // The firing is not skipped: it happens once, right after the jump.
        let spring = firings("30 2 * * *", &paris, utc(2026, 3, 28, 12, 0), utc(2026, 3, 30, 12, 0));
        assert_eq!(spring.len(), 2, "{spring:?}");
        assert_eq!(spring[0], utc(2026, 3, 29, 1, 0), "{spring:?}");
        assert_eq!(spring[1], utc(2026, 3, 30, 0, 30));
        // Autumn: 02:30 happens twice on 2026-10-25 (03:00 CEST -> 02:00 CET, at 01:00 UTC).
        let autumn = firings("30 2 * * *", &paris, utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0));
        assert_eq!(autumn, [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)], "once on the day the clock goes back");
        // An hourly cron keeps firing every hour of real time across both changes.
        let hourly = firings("0 * * * *", &paris, utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 4, 0));
        assert_eq!(hourly.len(), 6, "{hourly:?}");
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

#[cfg(test)]
mod review_tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// A run starts a few seconds after its firing (jitter, launch): the
    /// next due time is computed from that start. On the day the clock goes
    /// back the 02:30 firing must still happen once.
    #[test]
    fn autumn_firing_once_when_the_run_started_after_it() {
        let s = ScheduleConfig {
            kind: ScheduleType::Cron,
            cron: Some("30 2 * * *".into()),
            timezone: Some("Europe/Paris".into()),
            ..Default::default()
        };
        // First 02:30 (CEST) is 00:30 UTC; the run started 7 s later.
        let started = utc(2026, 10, 25, 0, 30, 7);
        let next = due_at(&s, Some(started), started).unwrap();
        assert_eq!(next, utc(2026, 10, 26, 1, 30, 0), "the repeated 02:30 (CET) must not fire again");
    }

    /// `" UTC"` is UTC for validation and the scheduler (both trim); the
    /// EventBridge expression must agree.
    #[test]
    fn eventbridge_accepts_what_validation_calls_utc() {
        for tz in [" UTC", "UTC ", "  ", "Etc/UTC\n"] {
            let s = ScheduleConfig {
                kind: ScheduleType::Cron,
                cron: Some("0 9 * * *".into()),
                timezone: Some(tz.into()),
                ..Default::default()
            };
            assert!(zone(&s).is_none(), "{tz:?} is UTC for the scheduler");
            assert!(eventbridge_expression(&s).is_ok(), "{tz:?}: {:?}", eventbridge_expression(&s));
        }
    }
}
