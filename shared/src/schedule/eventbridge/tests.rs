use super::*;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use std::str::FromStr;

fn interval(hours: Option<f64>, minutes: Option<f64>) -> ScheduleConfig {
    ScheduleConfig { interval_hours: hours, interval_minutes: minutes, ..ScheduleConfig::default() }
}

fn cron_schedule(expr: &str) -> ScheduleConfig {
    ScheduleConfig { kind: ScheduleType::Cron, cron: Some(expr.into()), ..ScheduleConfig::default() }
}

#[test]
fn intervals_become_rates() {
    assert_eq!(eventbridge_expression(&interval(Some(1.0), None)).unwrap(), "rate(1 hour)");
    assert_eq!(eventbridge_expression(&interval(Some(6.0), None)).unwrap(), "rate(6 hours)");
    assert_eq!(eventbridge_expression(&interval(Some(0.5), None)).unwrap(), "rate(30 minutes)");
    assert_eq!(eventbridge_expression(&interval(Some(24.0), None)).unwrap(), "rate(1 day)");
    assert_eq!(eventbridge_expression(&interval(Some(48.0), None)).unwrap(), "rate(2 days)");
    assert_eq!(eventbridge_expression(&interval(Some(1.0), Some(1.0))).unwrap(), "rate(1 minute)", "minutes win");
    assert_eq!(eventbridge_expression(&interval(None, Some(90.0))).unwrap(), "rate(90 minutes)");
    for bad in [Some(0.5), Some(0.0), Some(-5.0), Some(f64::NAN)] {
        let err = eventbridge_expression(&interval(None, bad)).unwrap_err().to_string();
        assert!(err.contains("whole minutes"), "{bad:?}: {err}");
    }
}

#[test]
fn cron_examples() {
    for (unix, eventbridge) in [
        ("0 2 * * *", "cron(0 2 * * ? *)"),
        ("0 9,17 * * 1-5", "cron(0 9,17 ? * MON-FRI *)"),
        ("*/15 * * * *", "cron(0/15 * * * ? *)"),
        ("5-59/20 */6 * * *", "cron(5/20 0/6 * * ? *)"),
        ("0 0 1 JAN *", "cron(0 0 1 1 ? *)"),
        ("0 0 1,15 */3 *", "cron(0 0 1,15 1/3 ? *)"),
        ("30 8 * * 0", "cron(30 8 ? * SUN *)"),
        ("30 8 * * 7", "cron(30 8 ? * SUN *)"),
        ("30 8 * * sat,sun", "cron(30 8 ? * SUN,SAT *)"),
        ("30 8 * * 5-7", "cron(30 8 ? * SUN,FRI,SAT *)"),
        ("0 12 * * */2", "cron(0 12 ? * 1/2 *)"),
        ("0 0-5 * * *", "cron(0 0-5 * * ? *)"),
        ("0 */1 * * *", "cron(0 * * * ? *)"),
    ] {
        assert_eq!(unix_cron_to_eventbridge(unix).unwrap(), eventbridge, "{unix}");
    }
}

#[test]
fn cron_refusals_say_why() {
    let both = unix_cron_to_eventbridge("0 0 1 * MON").unwrap_err().to_string();
    assert!(both.contains("both day-of-month and day-of-week") && both.contains("\"0 0 1 * MON\""), "{both}");
    let last = unix_cron_to_eventbridge("0 0 L * *").unwrap_err().to_string();
    assert!(last.contains("L, W and #"), "{last}");
    assert!(unix_cron_to_eventbridge("0 0 * *").unwrap_err().to_string().contains("5 fields"));
    assert!(unix_cron_to_eventbridge("61 0 * * *").is_err());
    let zoned = ScheduleConfig { timezone: Some("Europe/Paris".into()), ..cron_schedule("0 9 * * *") };
    assert!(eventbridge_expression(&zoned).unwrap_err().to_string().contains("UTC"));
    assert_eq!(
        eventbridge_expression(&ScheduleConfig { timezone: Some("UTC".into()), ..cron_schedule("0 9 * * *") }).unwrap(),
        "cron(0 9 * * ? *)"
    );
}

/// The EventBridge expression in the `cron` crate's 7-field form (seconds first).
fn eventbridge_schedule(expression: &str) -> cron::Schedule {
    let inner = expression.strip_prefix("cron(").and_then(|e| e.strip_suffix(')')).expect("cron(...)");
    cron::Schedule::from_str(&format!("0 {inner}")).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The firings of both forms from `start` for a year (at most `cap`) are the same.
fn same_firings(unix: &str, eventbridge: &str, start: DateTime<Utc>, cap: usize) -> Result<(), TestCaseError> {
    let unix_cron = crate::config::parse_unix_cron(unix).expect("valid");
    let eb = eventbridge_schedule(eventbridge);
    let end = start + TimeDelta::days(366);
    let mut eb_times = eb.after(&start);
    let mut at = start;
    for n in 0..cap {
        let next_unix = unix_cron.find_next_occurrence(&at, false).ok().filter(|t| *t <= end);
        let next_eb = eb_times.next().filter(|t| *t <= end);
        prop_assert_eq!(next_unix, next_eb, "{} vs {}: firing #{} after {}", unix, eventbridge, n, at);
        match next_unix {
            Some(t) => at = t,
            None => break,
        }
    }
    Ok(())
}

fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        prop::collection::btree_set(min..=max, 1..4).prop_map(|s| s
            .into_iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")),
        (1..=(max - min).max(1)).prop_map(|s| format!("*/{s}")),
        (min..=max, 1..=(max - min).max(1)).prop_map(|(a, s)| format!("{a}/{s}")),
        (min..=max, min..=max, 1u32..5).prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
    ]
}

fn weekday_field() -> impl Strategy<Value = String> {
    prop_oneof![
        field(0, 7),
        prop::sample::subsequence(DAYS.to_vec(), 1..4).prop_map(|d| d.join(",")),
        Just("MON-FRI".to_owned()),
    ]
}

fn month_field() -> impl Strategy<Value = String> {
    prop_oneof![field(1, 12), prop::sample::subsequence(MONTHS.to_vec(), 1..4).prop_map(|m| m.join(","))]
}

proptest! {
    // Each case evaluates up to a year of firings of both forms.
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever converts fires at exactly the same instants as the Unix form.
    #[test]
    fn both_forms_fire_at_the_same_times(
        minute in field(0, 59),
        hour in field(0, 23),
        dom in prop_oneof![3 => Just("*".to_owned()), 1 => field(1, 31)],
        month in month_field(),
        dow in prop_oneof![1 => Just("*".to_owned()), 1 => weekday_field()],
        start_day in 0i64..365,
    ) {
        let unix = format!("{minute} {hour} {dom} {month} {dow}");
        prop_assume!(crate::config::parse_unix_cron(&unix).is_ok());
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(start_day);
        match unix_cron_to_eventbridge(&unix) {
            Ok(eventbridge) => same_firings(&unix, &eventbridge, start, 1_500)?,
            Err(error) => prop_assert!(dom != "*" && dow != "*", "{unix} refused: {error}"),
        }
    }
}
