//! Prometheus metrics of the service, in the text exposition format 0.0.4.
//!
//! Written by hand (a few maps behind a mutex) rather than with
//! `prometheus-client`: that crate speaks OpenMetrics and renames counters
//! to `*_total`, while the reference names `memory_connector_memories_processed`
//! and the output must pass `promtool check metrics`. See decision 0005.

use crate::ids::ConnectorId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const SYNC_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const REQUEST_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Every family, in the order of the exposition.
const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "memory_connector_syncs_total",
        Kind::Counter,
        "Sync runs by final status (completed, partial, failed, timed_out).",
    ),
    (
        "memory_connector_memories_processed",
        Kind::Gauge,
        "Memories whose document is in LightRAG (ledger), after the last run.",
    ),
    ("memory_connector_memories_new_total", Kind::Counter, "Memories inserted for the first time."),
    ("memory_connector_memories_updated_total", Kind::Counter, "Changed memories whose document was replaced."),
    ("memory_connector_memories_skipped_total", Kind::Counter, "Memories skipped while waiting for a transcript."),
    ("memory_connector_memories_failed_total", Kind::Counter, "Memory deliveries that failed (kept for retry)."),
    ("memory_connector_memories_dead_total", Kind::Counter, "Memories dead (attempts exhausted) met by a run."),
    (
        "memory_connector_truncated_fetches_total",
        Kind::Counter,
        "Fetches that returned a full page (more memories may be waiting).",
    ),
    (
        "memory_connector_errors_total",
        Kind::Counter,
        "Errors by type (run_failed, memory_failed, malformed, timed_out, already_running).",
    ),
    ("memory_connector_sync_duration_seconds", Kind::Histogram(SYNC_BUCKETS), "Duration of sync runs."),
    (
        "memory_connector_memory_api_request_duration_seconds",
        Kind::Histogram(REQUEST_BUCKETS),
        "Duration of Memory API fetches (retries included).",
    ),
    (
        "memory_connector_lightrag_request_duration_seconds",
        Kind::Histogram(REQUEST_BUCKETS),
        "Duration of LightRAG deliveries (insert or replace).",
    ),
    ("memory_connector_active_jobs", Kind::Gauge, "Sync runs in progress in this process."),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
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

fn kind_of(name: &str) -> Option<Kind> {
    FAMILIES.iter().find(|(n, _, _)| *n == name).map(|(_, k, _)| *k)
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, name: &'static str, labels: Labels, by: f64) {
        *self.lock().values.entry((name, labels)).or_insert(0.0) += by;
    }

    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        self.lock().values.insert((name, labels), value);
    }

    pub fn observe(&self, name: &'static str, labels: Labels, seconds: f64) {
        let Some(Kind::Histogram(bounds)) = kind_of(name) else { return };
        let mut inner = self.lock();
        let h = inner.histograms.entry((name, labels)).or_default();
        if h.buckets.len() != bounds.len() {
            h.buckets = vec![0; bounds.len()];
        }
        for (i, bound) in bounds.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn record_error(&self, connector: &ConnectorId, error_type: &str) {
        self.add(
            "memory_connector_errors_total",
            vec![("connector_id", connector.to_string()), ("error_type", error_type.to_owned())],
            1.0,
        );
    }

    /// Makes a connector's series exist (at zero) before its first run, so
    /// dashboards and `rate()` see them from the start.
    pub fn register_connector(&self, connector: &ConnectorId) {
        let mut inner = self.lock();
        for (name, kind, _) in FAMILIES {
            if *kind == Kind::Counter
                && *name != "memory_connector_syncs_total"
                && *name != "memory_connector_errors_total"
            {
                inner.values.entry((name, vec![("connector_id", connector.to_string())])).or_insert(0.0);
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let type_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {type_name}");
            match kind {
                Kind::Histogram(bounds) => {
                    for ((_, labels), h) in
                        inner.histograms.range((*name, Vec::new())..).take_while(|((n, _), _)| n == name)
                    {
                        let mut cumulative = 0;
                        for (i, bound) in bounds.iter().enumerate() {
                            cumulative = h.buckets.get(i).copied().unwrap_or(cumulative);
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
                        inner.values.range((*name, Vec::new())..).take_while(|((n, _), _)| n == name)
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
        m.add("memory_connector_syncs_total", vec![("connector_id", "c1".into()), ("status", "completed".into())], 1.0);
        m.observe("memory_connector_sync_duration_seconds", vec![("connector_id", "c1".into())], 0.3);
        m.observe("memory_connector_sync_duration_seconds", vec![("connector_id", "c1".into())], 7.0);
        m.set("memory_connector_memories_processed", vec![("connector_id", "c1".into())], 25.0);
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
