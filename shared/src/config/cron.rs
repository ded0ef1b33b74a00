//! The one parser of the 5-field Unix cron expressions of the config
//! (`schedule.cron`, `state.cleanup.cleanup_cron`) and the one reading of
//! `schedule.timezone`; validation and the scheduler both use them.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Parses `minute hour day-of-month month day-of-week`.
///
/// `croner` alone would read a 6th field as seconds and accept `@daily`;
/// the config promises plain 5-field cron, so the field count is checked
/// first and seconds/years are disallowed. The error says what is wrong
/// without repeating the expression (the caller names field and value).
pub fn parse_unix_cron(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!("expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string().trim_end_matches('.').to_owned())
}

/// `schedule.timezone` values that mean UTC without a tz database.
pub fn is_utc(name: &str) -> bool {
    matches!(name, "" | "UTC" | "Etc/UTC")
}

/// The zone a `schedule.timezone` names (surrounding blanks ignored):
/// `None` for UTC (see [`is_utc`]), else the zone from the system's tz
/// database (`/usr/share/zoneinfo` or `TZDIR`), cached by jiff after the
/// first look-up; an error when the database has no such zone.
pub fn time_zone(name: &str) -> Result<Option<jiff::tz::TimeZone>, jiff::Error> {
    let name = name.trim();
    if is_utc(name) {
        return Ok(None);
    }
    jiff::tz::TimeZone::get(name).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn accepts_the_reference_expressions() {
        for expr in ["0 9,17 * * 1-5", "0 */1 * * *", "0 2 * * *", "*/5 * * * *", "0 0 1 JAN MON"] {
            assert!(parse_unix_cron(expr).is_ok(), "{expr}");
        }
    }

    #[test]
    fn first_field_is_minutes() {
        let cron = parse_unix_cron("30 9 * * *").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let next = cron.find_next_occurrence(&from, false).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 1, 1, 9, 30, 0).unwrap());
    }

    #[test]
    fn rejects_wrong_field_counts_and_bad_values() {
        assert!(parse_unix_cron("0 0 9 * * *").unwrap_err().contains("found 6"));
        assert!(parse_unix_cron("0 9 * *").unwrap_err().contains("found 4"));
        assert!(parse_unix_cron("@daily").unwrap_err().contains("found 1"));
        assert!(parse_unix_cron("").unwrap_err().contains("found 0"));
        assert!(parse_unix_cron("61 * * * *").is_err());
        assert!(parse_unix_cron("0 25 * * *").is_err());
        assert!(parse_unix_cron("0 9 * * funday").is_err());
    }

    #[test]
    fn utc_needs_no_tz_database_and_unknown_zones_are_errors() {
        for utc in ["", " ", "UTC", " Etc/UTC "] {
            assert!(time_zone(utc).unwrap().is_none(), "{utc:?}");
        }
        assert!(time_zone("Mars/Olympus_Mons").is_err());
    }
}
