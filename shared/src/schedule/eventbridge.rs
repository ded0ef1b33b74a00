//! A connector's schedule as an EventBridge schedule expression:
//! `rate(N hours|minutes|days)` for intervals, `cron(min hour dom month dow year)`
//! for 5-field Unix cron.
//!
//! The Unix expression is validated with the config's own parser
//! (`parse_unix_cron`), then every field is expanded to the set of values it
//! allows and written back in a canonical form EventBridge accepts: `*`, a
//! `start/step` progression, or a list of values and ranges. That makes the
//! conversion of day-of-week (Unix 0-6 or 7 with Sunday 0/7, EventBridge 1-7
//! with Sunday 1) a mapping of sets, written with names (`MON-FRI`).
//!
//! Refused, with a reason: both day-of-month and day-of-week restricted
//! (Unix fires when either matches, EventBridge needs one of them `?`),
//! `L`/`W`/`#` (not converted), a time zone other than UTC (EventBridge rules
//! run in UTC; EventBridge Scheduler would be needed), intervals that are not
//! whole minutes.

use crate::config::{ScheduleConfig, ScheduleType};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule cron {expression:?}: {reason}")]
    Cron { expression: String, reason: String },
    #[error("schedule interval: {0}")]
    Interval(String),
    #[error("schedule: {0}")]
    Other(String),
}

/// The EventBridge expression for `schedule`.
pub fn eventbridge_expression(schedule: &ScheduleConfig) -> Result<String, ScheduleError> {
    if schedule.kind == ScheduleType::Cron
        && let Some(zone) = schedule.timezone.as_deref().filter(|z| !crate::config::is_utc(z.trim()))
    {
        return Err(ScheduleError::Other(format!(
            "timezone {zone:?}: EventBridge rules run in UTC; write the cron in UTC or drop the timezone"
        )));
    }
    match schedule.kind {
        ScheduleType::Interval => {
            let minutes = schedule
                .interval_minutes
                .or(schedule.interval_hours.map(|h| h * 60.0))
                .ok_or_else(|| ScheduleError::Interval("neither interval_hours nor interval_minutes is set".into()))?;
            rate_expression(minutes)
        }
        ScheduleType::Cron => {
            let cron = schedule.cron.as_deref().ok_or_else(|| ScheduleError::Other("type cron without cron".into()))?;
            unix_cron_to_eventbridge(cron)
        }
    }
}

/// `rate(...)` for an interval of `minutes` (whole minutes, at least one),
/// in the largest unit that divides it; singular for 1.
pub fn rate_expression(minutes: f64) -> Result<String, ScheduleError> {
    if !minutes.is_finite() || minutes < 1.0 || minutes.fract() != 0.0 || minutes > 1.0e9 {
        return Err(ScheduleError::Interval(format!(
            "{minutes} minutes: EventBridge rates are whole minutes, at least 1"
        )));
    }
    let minutes = minutes as u64;
    let (value, unit) = if minutes.is_multiple_of(1440) {
        (minutes / 1440, "day")
    } else if minutes.is_multiple_of(60) {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    Ok(format!("rate({value} {unit}{})", if value == 1 { "" } else { "s" }))
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One Unix cron field: its bounds and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (JAN = 1, SUN = 0).
    names_from: u32,
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], names_from: 0 };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], names_from: 0 };
const DOM: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[], names_from: 0 };
const MONTH: Field = Field { name: "month", min: 1, max: 12, names: &MONTHS, names_from: 1 };
/// Unix day of week: 0-7, both 0 and 7 are Sunday.
const DOW: Field = Field { name: "day-of-week", min: 0, max: 7, names: &DAYS, names_from: 0 };

/// `cron(...)` for a 5-field Unix cron expression.
pub fn unix_cron_to_eventbridge(expression: &str) -> Result<String, ScheduleError> {
    let fail = |reason: String| ScheduleError::Cron { expression: expression.to_owned(), reason };
    crate::config::parse_unix_cron(expression).map_err(fail)?;
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(fail("expected 5 fields".into()));
    };
    let minutes = expand(minute, &MINUTE).map_err(fail)?;
    let hours = expand(hour, &HOUR).map_err(fail)?;
    let days = expand(dom, &DOM).map_err(fail)?;
    let months = expand(month, &MONTH).map_err(fail)?;
    let weekdays: BTreeSet<u32> = expand(dow, &DOW).map_err(fail)?.into_iter().map(|d| d % 7).collect();
    let dom_free = dom == "*";
    let dow_free = dow == "*";
    let (dom_out, dow_out) = match (dom_free, dow_free) {
        (_, true) => (render(&days, &DOM, None), "?".to_owned()),
        (true, false) => ("?".to_owned(), render_weekdays(&weekdays)),
        (false, false) => {
            return Err(fail(
                "both day-of-month and day-of-week are restricted: Unix cron fires when either matches, \
                 EventBridge needs one of them to be `?`; use two connectors or two schedules"
                    .into(),
            ));
        }
    };
    Ok(format!(
        "cron({} {} {dom_out} {} {dow_out} *)",
        render(&minutes, &MINUTE, None),
        render(&hours, &HOUR, None),
        render(&months, &MONTH, None)
    ))
}

/// The values a Unix field allows.
fn expand(text: &str, field: &Field) -> Result<BTreeSet<u32>, String> {
    let mut values = BTreeSet::new();
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && !part.chars().all(|c| c.is_ascii_alphabetic()) || part == "L" {
            return Err(format!(
                "{} {part:?}: L, W and # are not converted to EventBridge; use an explicit list",
                field.name
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("{} step {step:?} is not a number", field.name))?;
                if step == 0 {
                    return Err(format!("{} step is 0", field.name));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" {
            (field.min, if field.name == "day-of-week" { 6 } else { field.max })
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field)?, value(b, field)?)
        } else {
            let v = value(range, field)?;
            // `a/step` runs from a to the end of the field.
            (v, if step.is_some() { field.max } else { v })
        };
        if low > high {
            return Err(format!("{} range {range:?} runs backwards", field.name));
        }
        values.extend((low..=high).step_by(step.unwrap_or(1) as usize));
    }
    Ok(values)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(i) = field.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(field.names_from + i as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        _ => Err(format!("{} value {text:?} is out of range {}-{}", field.name, field.min, field.max)),
    }
}

/// `*`, `start/step` (a progression from the field's start to its end) or a
/// list of values and ranges.
fn render(values: &BTreeSet<u32>, field: &Field, names: Option<&dyn Fn(u32) -> String>) -> String {
    let all = values.len() as u32 == field.max - field.min + 1;
    if all {
        return "*".into();
    }
    let list: Vec<u32> = values.iter().copied().collect();
    let show = |v: u32| names.map_or_else(|| v.to_string(), |n| n(v));
    if list.len() > 2 {
        let step = list[1] - list[0];
        let progression = list.windows(2).all(|w| w[1] - w[0] == step);
        if progression && step > 1 && list[list.len() - 1] + step > field.max && list[0] < step + field.min {
            return format!("{}/{step}", show(list[0]));
        }
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < list.len() {
        let mut j = i;
        while j + 1 < list.len() && list[j + 1] == list[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => show(list[i]),
            1 => format!("{},{}", show(list[i]), show(list[j])),
            _ => format!("{}-{}", show(list[i]), show(list[j])),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Days of week (0 = Sunday) as EventBridge names: `MON-FRI`, `SUN,SAT`...
fn render_weekdays(days: &BTreeSet<u32>) -> String {
    let field = Field { name: "day-of-week", min: 0, max: 6, names: &DAYS, names_from: 0 };
    let name = |d: u32| DAYS[d as usize % 7].to_owned();
    let rendered = render(days, &field, Some(&name));
    // A progression renders as `SUN/2`; EventBridge wants the number (1-7, SUN = 1).
    match rendered.split_once('/') {
        Some((start, step)) => {
            let day = DAYS.iter().position(|d| *d == start).unwrap_or(0) + 1;
            format!("{day}/{step}")
        }
        None => rendered,
    }
}

#[cfg(test)]
mod tests;
