//! The bench's output: rows of (figure, value, target, verdict), printed as a
//! table, written as JSON, and compared with the previous JSON file.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// How a row compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Reported, no target (a breakdown, a size, a cost).
    Info,
    /// Cannot be measured yet; the note says why.
    NotYet,
}

impl Verdict {
    pub fn of(pass: bool) -> Self {
        if pass { Verdict::Pass } else { Verdict::Fail }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
            Verdict::NotYet => "n/a",
        }
    }
}

/// One figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Stable key, e.g. `1.throughput_ratio.b10` (the delta is matched on it).
    pub key: String,
    pub figure: String,
    pub value: Option<f64>,
    pub unit: String,
    pub target: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub note: String,
}

impl Row {
    pub fn new(key: impl Into<String>, figure: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            key: key.into(),
            figure: figure.into(),
            value: Some(value),
            unit: unit.into(),
            target: String::new(),
            verdict: Verdict::Info,
            note: String::new(),
        }
    }

    pub fn not_yet(key: &str, figure: &str, reason: &str) -> Self {
        Self {
            key: key.into(),
            figure: figure.into(),
            value: None,
            unit: String::new(),
            target: String::new(),
            verdict: Verdict::NotYet,
            note: reason.into(),
        }
    }

    /// Target `value <= limit` (`< limit` when `strict`).
    pub fn at_most(mut self, limit: f64, strict: bool) -> Self {
        let value = self.value.unwrap_or(f64::INFINITY);
        self.target = format!("{} {}", if strict { "<" } else { "<=" }, fmt_num(limit));
        self.verdict = Verdict::of(if strict { value < limit } else { value <= limit });
        self
    }

    pub fn at_least(mut self, limit: f64) -> Self {
        let value = self.value.unwrap_or(f64::NEG_INFINITY);
        self.target = format!(">= {}", fmt_num(limit));
        self.verdict = Verdict::of(value >= limit);
        self
    }

    pub fn equals(mut self, expected: f64) -> Self {
        self.target = format!("= {}", fmt_num(expected));
        self.verdict = Verdict::of(self.value == Some(expected));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Everything one `bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub created_at: String,
    /// Memories of the end-to-end workloads.
    pub n: usize,
    pub smoke: bool,
    pub profile: String,
    pub machine: String,
    pub rows: Vec<Row>,
    /// Wall time of the whole bench, seconds.
    pub duration_s: f64,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| r.verdict == Verdict::Fail).count()
    }
}

pub fn fmt_num(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 0.01 {
        format!("{value:.3}")
    } else {
        format!("{value:.2e}")
    }
}

/// The table, with a delta column when a previous report is given.
pub fn table(report: &Report, previous: Option<&Report>) -> String {
    let mut out = String::new();
    let delta = |row: &Row| -> String {
        let Some(prev) = previous.and_then(|p| p.rows.iter().find(|r| r.key == row.key)) else {
            return String::new();
        };
        match (prev.value, row.value) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
            (Some(a), Some(b)) if a == b => "=".into(),
            _ => String::new(),
        }
    };
    let rows: Vec<[String; 6]> = report
        .rows
        .iter()
        .map(|r| {
            let value = r.value.map(|v| format!("{} {}", fmt_num(v), r.unit)).unwrap_or_else(|| "-".into());
            [
                r.figure.clone(),
                value.trim().to_owned(),
                r.target.clone(),
                r.verdict.label().into(),
                delta(r),
                r.note.clone(),
            ]
        })
        .collect();
    let headers = ["figure", "value", "target", "result", if previous.is_some() { "delta" } else { "" }, "note"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(5) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 5 {
                let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(headers));
    let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 12));
    for row in &rows {
        let _ = writeln!(out, "{}", line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
    }
    out
}

pub fn read(path: &Path) -> Option<Report> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `latest.json`, keeping the file it replaces as `previous.json`.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let latest = dir.join("latest.json");
    if latest.exists() {
        std::fs::rename(&latest, dir.join("previous.json")).with_context(|| format!("keep {}", latest.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&latest, text).with_context(|| format!("write {}", latest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_targets() {
        assert_eq!(Row::new("a", "a", 1.2, "x").at_most(1.15, false).verdict, Verdict::Fail);
        assert_eq!(Row::new("a", "a", 1.15, "x").at_most(1.15, false).verdict, Verdict::Pass);
        assert_eq!(Row::new("a", "a", 20.0, "x").at_most(20.0, true).verdict, Verdict::Fail);
        assert_eq!(Row::new("a", "a", 9.0, "x").at_least(10.0).verdict, Verdict::Fail);
        assert_eq!(Row::new("a", "a", 10.0, "x").equals(10.0).verdict, Verdict::Pass);
    }

    #[test]
    fn table_shows_the_delta_against_the_previous_run() {
        let report = |v: f64| Report {
            created_at: String::new(),
            n: 1,
            smoke: true,
            profile: String::new(),
            machine: String::new(),
            rows: vec![Row::new("k", "fig", v, "ms")],
            duration_s: 0.0,
        };
        let text = table(&report(11.0), Some(&report(10.0)));
        assert!(text.contains("+10.0%"), "{text}");
    }
}
