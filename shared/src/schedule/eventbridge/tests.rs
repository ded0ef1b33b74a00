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
        ("0 12 * * */2", "cron(0 12 ? * SUN,TUE,THU,SAT *)"),
        ("0 12 * * 1-5/2", "cron(0 12 ? * MON,WED,FRI *)"),
        ("0 12 * * 0-6/3", "cron(0 12 ? * SUN,WED,SAT *)"),
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
    // The zone is not part of the expression (Scheduler's ScheduleExpressionTimezone).
    let zoned = ScheduleConfig { timezone: Some("Europe/Paris".into()), ..cron_schedule("0 9 * * *") };
    assert_eq!(eventbridge_expression(&zoned).unwrap(), "cron(0 9 * * ? *)");
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

/// AWS's cron reference (EventBridge and EventBridge Scheduler share it):
/// each field's values and the only wildcards it allows.
/// Minutes `0-59` `, - * /`; Hours `0-23` `, - * /`; Day-of-month `1-31`
/// `, - * ? / L W`; Month `1-12` or `JAN-DEC` `, - * /`; Day-of-week `1-7`
/// or `SUN-SAT` `, - * ? L #`; Year `1970-2199` `, - * /`.
const AWS_FIELDS: [(&str, u32, u32, &[&str], &str); 6] = [
    ("minutes", 0, 59, &[], ",-*/"),
    ("hours", 0, 23, &[], ",-*/"),
    ("day-of-month", 1, 31, &[], ",-*?/LW"),
    ("month", 1, 12, &MONTHS, ",-*/"),
    ("day-of-week", 1, 7, &DAYS, ",-*?L#"),
    ("year", 1970, 2199, &[], ",-*/"),
];

/// Every field of `cron(...)` uses only the characters AWS documents for it,
/// numbers in its range (a `/` step at least 1), names of its own; exactly
/// one day field is `?`.
fn check_aws_fields(expression: &str) -> Result<(), String> {
    let inner = expression.strip_prefix("cron(").and_then(|e| e.strip_suffix(')')).ok_or("not cron(...)")?;
    let fields: Vec<&str> = inner.split(' ').collect();
    if fields.len() != 6 {
        return Err(format!("{expression}: {} fields, AWS wants 6", fields.len()));
    }
    for (text, (name, min, max, names, wildcards)) in fields.iter().zip(AWS_FIELDS) {
        let fail = |why: String| Err(format!("{expression}: {name} field {text:?}: {why}"));
        if let Some(c) = text.chars().find(|c| !c.is_ascii_alphanumeric() && !wildcards.contains(*c)) {
            return fail(format!("{c:?} is not one of {wildcards:?}"));
        }
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            if let Some(step) = step
                && !step.parse::<u32>().is_ok_and(|s| s >= 1)
            {
                return fail(format!("step {step:?} is not a positive number"));
            }
            for value in range.split('-') {
                let ok = match value.parse::<u32>() {
                    Ok(v) => (min..=max).contains(&v),
                    Err(_) => names.contains(&value) || (value.len() == 1 && wildcards.contains(value)),
                };
                if !ok {
                    return fail(format!("{value:?} is not a value of this field"));
                }
            }
        }
    }
    if (fields[2] == "?") == (fields[4] == "?") {
        return Err(format!("{expression}: exactly one of day-of-month and day-of-week must be `?`"));
    }
    Ok(())
}

#[test]
fn the_field_check_refuses_what_aws_refuses() {
    check_aws_fields("cron(0/15 9-17 ? * MON-FRI *)").unwrap();
    check_aws_fields("cron(0 12 1,15 JAN/3 ? *)").unwrap();
    for bad in [
        "cron(0 12 ? * 1/2 *)", // a step in day-of-week (what the old conversion wrote)
        "cron(0 12 ? * 0 *)",   // Sunday is 1 in AWS
        "cron(60 12 * * ? *)",  // minute out of range
        "cron(0 12 * * * *)",   // no `?`
        "cron(0 12 ? * ? *)",   // two `?`
        "cron(0 12 * MON * ?)", // a day name in the month field
        "cron(0 12 * * ?)",     // five fields
    ] {
        assert!(check_aws_fields(bad).is_err(), "{bad} should be refused");
    }
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever converts uses, field by field, only what AWS's cron reference allows.
    #[test]
    fn every_field_uses_only_what_aws_documents(
        minute in field(0, 59),
        hour in field(0, 23),
        dom in prop_oneof![3 => Just("*".to_owned()), 1 => field(1, 31)],
        month in month_field(),
        dow in prop_oneof![1 => Just("*".to_owned()), 2 => weekday_field()],
    ) {
        let unix = format!("{minute} {hour} {dom} {month} {dow}");
        prop_assume!(crate::config::parse_unix_cron(&unix).is_ok());
        if let Ok(eventbridge) = unix_cron_to_eventbridge(&unix) {
            prop_assert!(check_aws_fields(&eventbridge).is_ok(), "{} -> {}", unix, check_aws_fields(&eventbridge).unwrap_err());
        }
    }
}
