//! Prometheus metrics of the service, in the text exposition format 0.0.4.
//!
//! Written by hand (a few maps behind a mutex) rather than with
//! `prometheus-client`: that crate speaks OpenMetrics and renames counters
//! to `*_total`, while the reference names `memory_connector_memories_processed`
//! and the output must pass `promtool check metrics`. See decision 0005.

use crate::ids::ConnectorId;
use crate::state::RunStatus;
use crate::sync::RunReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const SYNC_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const REQUEST_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A counter family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Sync runs by final status.
    Syncs,
    MemoriesNew,
    MemoriesUpdated,
    MemoriesSkipped,
    MemoriesFailed,
    MemoriesDead,
    TruncatedFetches,
    /// Errors by `error_type`.
    Errors,
}

/// A gauge family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    MemoriesProcessed,
    ActiveJobs,
}

/// A histogram family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    SyncDuration,
    MemoryApiRequestDuration,
    LightragRequestDuration,
}

/// One family of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// Every family, in the order of the exposition.
const FAMILIES: [Family; 13] = [
    Family::Counter(Counter::Syncs),
    Family::Gauge(Gauge::MemoriesProcessed),
    Family::Counter(Counter::MemoriesNew),
    Family::Counter(Counter::MemoriesUpdated),
    Family::Counter(Counter::MemoriesSkipped),
    Family::Counter(Counter::MemoriesFailed),
    Family::Counter(Counter::MemoriesDead),
    Family::Counter(Counter::TruncatedFetches),
    Family::Counter(Counter::Errors),
    Family::Histogram(Histogram::SyncDuration),
    Family::Histogram(Histogram::MemoryApiRequestDuration),
    Family::Histogram(Histogram::LightragRequestDuration),
    Family::Gauge(Gauge::ActiveJobs),
];

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Counter(c) => c.name(),
            Family::Gauge(g) => g.name(),
            Family::Histogram(h) => h.name(),
        }
    }

    fn help(self) -> &'static str {
        match self {
            Family::Counter(Counter::Syncs) => "Sync runs by final status (completed, partial, failed, timed_out).",
            Family::Counter(Counter::MemoriesNew) => "Memories inserted for the first time.",
            Family::Counter(Counter::MemoriesUpdated) => "Changed memories whose document was replaced.",
            Family::Counter(Counter::MemoriesSkipped) => "Memories skipped while waiting for a transcript.",
            Family::Counter(Counter::MemoriesFailed) => "Memory deliveries that failed (kept for retry).",
            Family::Counter(Counter::MemoriesDead) => "Memories dead (attempts exhausted) met by a run.",
            Family::Counter(Counter::TruncatedFetches) => {
                "Fetches that returned a full page (more memories may be waiting)."
            }
            Family::Counter(Counter::Errors) => {
                "Errors by type (run_failed, memory_failed, malformed, timed_out, already_running)."
            }
            Family::Gauge(Gauge::MemoriesProcessed) => {
                "Memories whose document is in LightRAG (ledger), after the last run."
            }
            Family::Gauge(Gauge::ActiveJobs) => "Sync runs in progress in this process.",
            Family::Histogram(Histogram::SyncDuration) => "Duration of sync runs.",
            Family::Histogram(Histogram::MemoryApiRequestDuration) => {
                "Duration of Memory API fetches (retries included)."
            }
            Family::Histogram(Histogram::LightragRequestDuration) => {
                "Duration of LightRAG deliveries (insert or replace)."
            }
        }
    }
}

impl Counter {
    pub fn name(self) -> &'static str {
        match self {
            Counter::Syncs => "memory_connector_syncs_total",
            Counter::MemoriesNew => "memory_connector_memories_new_total",
            Counter::MemoriesUpdated => "memory_connector_memories_updated_total",
            Counter::MemoriesSkipped => "memory_connector_memories_skipped_total",
            Counter::MemoriesFailed => "memory_connector_memories_failed_total",
            Counter::MemoriesDead => "memory_connector_memories_dead_total",
            Counter::TruncatedFetches => "memory_connector_truncated_fetches_total",
            Counter::Errors => "memory_connector_errors_total",
        }
    }
}

impl Gauge {
    pub fn name(self) -> &'static str {
        match self {
            Gauge::MemoriesProcessed => "memory_connector_memories_processed",
            Gauge::ActiveJobs => "memory_connector_active_jobs",
        }
    }
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Histogram::SyncDuration => "memory_connector_sync_duration_seconds",
            Histogram::MemoryApiRequestDuration => "memory_connector_memory_api_request_duration_seconds",
            Histogram::LightragRequestDuration => "memory_connector_lightrag_request_duration_seconds",
        }
    }

    fn bounds(self) -> &'static [f64] {
        match self {
            Histogram::SyncDuration => SYNC_BUCKETS,
            Histogram::MemoryApiRequestDuration | Histogram::LightragRequestDuration => REQUEST_BUCKETS,
        }
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Buckets>,
}

/// The registry; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, counter: Counter, labels: Labels, by: f64) {
        *self.lock().values.entry((counter.name(), labels)).or_insert(0.0) += by;
    }

    pub fn set(&self, gauge: Gauge, labels: Labels, value: f64) {
        self.lock().values.insert((gauge.name(), labels), value);
    }

    pub fn observe(&self, histogram: Histogram, labels: Labels, seconds: f64) {
        let bounds = histogram.bounds();
        let mut inner = self.lock();
        let h = inner.histograms.entry((histogram.name(), labels)).or_default();
        if h.counts.len() != bounds.len() {
            h.counts = vec![0; bounds.len()];
        }
        for (i, bound) in bounds.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Feeds the metrics from one finished run. `processed` is the number of
    /// delivered memories in the ledger after it (when known).
    pub fn record_run(&self, report: &RunReport, processed: Option<u64>) {
        let id = || vec![("connector_id", report.connector_id.to_string())];
        let c = &report.counts;
        self.add(
            Counter::Syncs,
            vec![("connector_id", report.connector_id.to_string()), ("status", report.status.as_str().to_owned())],
            1.0,
        );
        for (name, n) in [
            (Counter::MemoriesNew, c.new),
            (Counter::MemoriesUpdated, c.updated),
            (Counter::MemoriesSkipped, c.skipped),
            (Counter::MemoriesFailed, c.failed),
            (Counter::MemoriesDead, c.dead),
        ] {
            self.add(name, id(), n as f64);
        }
        self.add(Counter::TruncatedFetches, id(), if report.possibly_truncated { 1.0 } else { 0.0 });
        let error = |kind: &str, n: u64| {
            if n > 0 {
                self.add(
                    Counter::Errors,
                    vec![("connector_id", report.connector_id.to_string()), ("error_type", kind.to_owned())],
                    n as f64,
                );
            }
        };
        error("run_failed", u64::from(report.error.is_some()));
        error("memory_failed", c.failed);
        error("malformed", c.rejected);
        error("timed_out", u64::from(report.status == RunStatus::TimedOut));
        self.observe(Histogram::SyncDuration, id(), report.duration_ms as f64 / 1000.0);
        if let Some(processed) = processed {
            self.set(Gauge::MemoriesProcessed, id(), processed as f64);
        }
    }

    pub fn record_error(&self, connector: &ConnectorId, error_type: &str) {
        self.add(
            Counter::Errors,
            vec![("connector_id", connector.to_string()), ("error_type", error_type.to_owned())],
            1.0,
        );
    }

    /// Makes a connector's series exist (at zero) before its first run, so
    /// dashboards and `rate()` see them from the start.
    pub fn register_connector(&self, connector: &ConnectorId) {
        let mut inner = self.lock();
        for family in FAMILIES {
            if let Family::Counter(counter) = family
                && !matches!(counter, Counter::Syncs | Counter::Errors)
            {
                inner.values.entry((counter.name(), vec![("connector_id", connector.to_string())])).or_insert(0.0);
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for family in FAMILIES {
            let (name, help) = (family.name(), family.help());
            let type_name = match family {
                Family::Counter(_) => "counter",
                Family::Gauge(_) => "gauge",
                Family::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {type_name}");
            match family {
                Family::Histogram(histogram) => {
                    for ((_, labels), h) in
                        inner.histograms.range((name, Vec::new())..).take_while(|((n, _), _)| *n == name)
                    {
                        let mut cumulative = 0;
                        for (i, bound) in histogram.bounds().iter().enumerate() {
                            cumulative = h.counts.get(i).copied().unwrap_or(cumulative);
                            let mut with_le = labels.clone();
                            with_le.push(("le", format_float(*bound)));
                            let _ = writeln!(out, "{name}_bucket{} {cumulative}", render_labels(&with_le));
                        }
                        let mut inf = labels.clone();
                        inf.push(("le", "+Inf".into()));
                        let _ = writeln!(out, "{name}_bucket{} {}", render_labels(&inf), h.count);
                        let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels), format_float(h.sum));
                        let _ = writeln!(out, "{name}_count{} {}", render_labels(labels), h.count);
                    }
                }
                _ => {
                    for ((_, labels), value) in
                        inner.values.range((name, Vec::new())..).take_while(|((n, _), _)| *n == name)
                    {
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels), format_float(*value));
                    }
                }
            }
        }
        out
    }
}

fn render_labels(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn format_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::new();
        m.register_connector(&ConnectorId::new("a\"b"));
        m.add(Counter::Syncs, vec![("connector_id", "c1".into()), ("status", "completed".into())], 1.0);
        m.observe(Histogram::SyncDuration, vec![("connector_id", "c1".into())], 0.3);
        m.observe(Histogram::SyncDuration, vec![("connector_id", "c1".into())], 7.0);
        m.set(Gauge::MemoriesProcessed, vec![("connector_id", "c1".into())], 25.0);
        let text = m.render();
        assert!(text.contains("memory_connector_syncs_total{connector_id=\"c1\",status=\"completed\"} 1\n"), "{text}");
        assert!(
            text.contains("memory_connector_sync_duration_seconds_bucket{connector_id=\"c1\",le=\"0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("memory_connector_sync_duration_seconds_bucket{connector_id=\"c1\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("memory_connector_sync_duration_seconds_bucket{connector_id=\"c1\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("memory_connector_sync_duration_seconds_bucket{connector_id=\"c1\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("memory_connector_sync_duration_seconds_count{connector_id=\"c1\"} 2\n"), "{text}");
        assert!(text.contains("memory_connector_memories_processed{connector_id=\"c1\"} 25\n"), "{text}");
        assert!(text.contains("memory_connector_memories_dead_total{connector_id=\"a\\\"b\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE memory_connector_errors_total counter\n"));
    }
}
