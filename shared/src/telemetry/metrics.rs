//! Prometheus metrics of the service, in the text exposition format 0.0.4.
//!
//! Written by hand (a few maps behind a mutex) rather than with
//! `prometheus-client`: that crate speaks OpenMetrics and renames counters
//! to `*_total`, while the reference names `memory_connector_memories_processed`
//! and the output must pass `promtool check metrics`. See decision 0006.
//!
//! Three kinds of series (decision 0018 says why):
//! - counters and histograms of what this process did: runs, memories,
//!   requests to the Memory API and LightRAG;
//! - gauges read from the state store at scrape time
//!   ([`Metrics::record_connector`]): the ledger by status, failures in a
//!   row, the last success, paused. They are right after a restart and after
//!   changes made elsewhere (`retry-failed` from the CLI, a one-shot `sync`);
//! - every label value known in advance (run statuses, error types) starts
//!   at zero, so `rate()` and `increase()` see the first event.

use crate::ids::ConnectorId;
use crate::state::{EntryStatus, RunStatus, StatusSnapshot};
use crate::sync::RunReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const SYNC_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const REQUEST_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub const SYNCS_TOTAL: &str = "memory_connector_syncs_total";
pub const ERRORS_TOTAL: &str = "memory_connector_errors_total";
pub const MEMORIES_PROCESSED: &str = "memory_connector_memories_processed";
pub const SYNC_DURATION: &str = "memory_connector_sync_duration_seconds";
pub const SYNC_RUN_DURATION: &str = "memory_connector_sync_run_duration_seconds";
pub const MEMORY_API_REQUEST_DURATION: &str = "memory_connector_memory_api_request_duration_seconds";
pub const LIGHTRAG_REQUEST_DURATION: &str = "memory_connector_lightrag_request_duration_seconds";
pub const ACTIVE_JOBS: &str = "memory_connector_active_jobs";
pub const LEDGER_MEMORIES: &str = "memory_connector_ledger_memories";
pub const CONSECUTIVE_FAILURES: &str = "memory_connector_consecutive_failures";
pub const LAST_SUCCESS: &str = "memory_connector_last_success_timestamp_seconds";
pub const PAUSED: &str = "memory_connector_paused";
pub const PROCESS_START: &str = "process_start_time_seconds";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Every family, in the order of the exposition.
const FAMILIES: &[(&str, Kind, &str)] = &[
    (SYNCS_TOTAL, Kind::Counter, "Sync runs by final status: success (the run completed), partial, failed, timed_out."),
    (MEMORIES_PROCESSED, Kind::Gauge, "Memories whose document is in LightRAG, per the ledger."),
    ("memory_connector_memories_new_total", Kind::Counter, "Memories inserted for the first time."),
    ("memory_connector_memories_updated_total", Kind::Counter, "Changed memories whose document was replaced."),
    ("memory_connector_memories_skipped_total", Kind::Counter, "Memories skipped while waiting for a transcript."),
    ("memory_connector_memories_failed_total", Kind::Counter, "Memory deliveries that failed (kept for retry)."),
    (
        "memory_connector_memories_dead_total",
        Kind::Counter,
        "Dead memories (attempts exhausted) met by runs, counted once per run.",
    ),
    (
        "memory_connector_truncated_fetches_total",
        Kind::Counter,
        "Fetches that returned a full page (more memories may be waiting).",
    ),
    (
        ERRORS_TOTAL,
        Kind::Counter,
        "Errors by type (run_failed, memory_failed, lightrag_failed, malformed, timed_out, already_running).",
    ),
    (SYNC_DURATION, Kind::Gauge, "Duration of the connector's newest finished run, per the run history."),
    (SYNC_RUN_DURATION, Kind::Histogram(SYNC_BUCKETS), "Duration of the sync runs of this process."),
    (
        MEMORY_API_REQUEST_DURATION,
        Kind::Histogram(REQUEST_BUCKETS),
        "Duration of Memory API fetches (retries included).",
    ),
    (
        LIGHTRAG_REQUEST_DURATION,
        Kind::Histogram(REQUEST_BUCKETS),
        "Duration of LightRAG requests (health check, deliveries, status reads).",
    ),
    (ACTIVE_JOBS, Kind::Gauge, "Sync runs in progress in this process."),
    (
        LEDGER_MEMORIES,
        Kind::Gauge,
        "Memories in the ledger by status (waiting_transcript, submitted, processed, lightrag_failed, update_pending, failed, dead).",
    ),
    (CONSECUTIVE_FAILURES, Kind::Gauge, "Failed runs in a row (0 after a run that did not fail)."),
    (
        LAST_SUCCESS,
        Kind::Gauge,
        "When the newest run that did not fail finished, in Unix seconds; absent until one did.",
    ),
    (PAUSED, Kind::Gauge, "1 while the connector is paused (the scheduler skips it), else 0."),
    (PROCESS_START, Kind::Gauge, "Start time of the process since unix epoch in seconds."),
];

/// The families the binary exposes, with their kind: the truth that the
/// Grafana dashboard and the alert rules are checked against.
pub fn families() -> impl Iterator<Item = (&'static str, Kind)> {
    FAMILIES.iter().map(|(name, kind, _)| (*name, *kind))
}

/// The `status` label of `memory_connector_syncs_total` for a finished run:
/// the run status, except that a completed run is `success`, the value the
/// configuration reference's queries select.
pub fn sync_status_label(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Completed => "success",
        other => other.as_str(),
    }
}

/// The statuses a finished run can have, as labels; each starts at zero.
const FINISHED: [RunStatus; 4] = [RunStatus::Completed, RunStatus::Partial, RunStatus::Failed, RunStatus::TimedOut];

/// The `error_type` label of `memory_connector_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The run failed as a whole (Memory API or LightRAG unusable, state error).
    RunFailed,
    /// A memory's delivery failed on the connector side (kept for retry).
    MemoryFailed,
    /// LightRAG reported a document failed in its pipeline (sent again later).
    LightragFailed,
    /// A Memory API item that could not be read (skipped, reported by id).
    Malformed,
    /// The run reached `job_timeout_minutes`.
    TimedOut,
    /// A start refused because the connector was already running.
    AlreadyRunning,
}

impl ErrorType {
    pub const ALL: [ErrorType; 6] = [
        ErrorType::RunFailed,
        ErrorType::MemoryFailed,
        ErrorType::LightragFailed,
        ErrorType::Malformed,
        ErrorType::TimedOut,
        ErrorType::AlreadyRunning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::RunFailed => "run_failed",
            ErrorType::MemoryFailed => "memory_failed",
            ErrorType::LightragFailed => "lightrag_failed",
            ErrorType::Malformed => "malformed",
            ErrorType::TimedOut => "timed_out",
            ErrorType::AlreadyRunning => "already_running",
        }
    }
}

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

fn connector_label(connector: &ConnectorId) -> Labels {
    vec![("connector_id", connector.to_string())]
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

    fn remove(&self, name: &'static str, labels: Labels) {
        self.lock().values.remove(&(name, labels));
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

    /// Makes a histogram series exist with no observations, so that the
    /// first one is seen by `increase()` (e.g. the first LightRAG error).
    pub fn register_histogram(&self, name: &'static str, labels: Labels) {
        let Some(Kind::Histogram(bounds)) = kind_of(name) else { return };
        let mut inner = self.lock();
        let h = inner.histograms.entry((name, labels)).or_default();
        if h.buckets.len() != bounds.len() {
            h.buckets = vec![0; bounds.len()];
        }
    }

    /// The process start (`process_start_time_seconds`), in Unix seconds.
    pub fn set_process_start(&self, at: chrono::DateTime<chrono::Utc>) {
        self.set(PROCESS_START, Vec::new(), unix_seconds(at));
    }

    /// Feeds the counters and histograms from one finished run.
    pub fn record_run(&self, report: &RunReport) {
        let id = || connector_label(&report.connector_id);
        let c = &report.counts;
        let status = sync_status_label(report.status).to_owned();
        self.add(SYNCS_TOTAL, vec![("connector_id", report.connector_id.to_string()), ("status", status)], 1.0);
        for (name, n) in [
            ("memory_connector_memories_new_total", c.new),
            ("memory_connector_memories_updated_total", c.updated),
            ("memory_connector_memories_skipped_total", c.skipped),
            ("memory_connector_memories_failed_total", c.failed),
            ("memory_connector_memories_dead_total", c.dead),
        ] {
            self.add(name, id(), n as f64);
        }
        self.add("memory_connector_truncated_fetches_total", id(), if report.possibly_truncated { 1.0 } else { 0.0 });
        for (kind, n) in [
            (ErrorType::RunFailed, u64::from(report.error.is_some())),
            (ErrorType::MemoryFailed, c.failed),
            (ErrorType::LightragFailed, c.lightrag_failed),
            (ErrorType::Malformed, c.rejected),
            (ErrorType::TimedOut, u64::from(report.status == RunStatus::TimedOut)),
        ] {
            if n > 0 {
                self.add_error(&report.connector_id, kind, n as f64);
            }
        }
        self.observe(SYNC_RUN_DURATION, id(), report.duration_ms as f64 / 1000.0);
    }

    pub fn record_error(&self, connector: &ConnectorId, error_type: ErrorType) {
        self.add_error(connector, error_type, 1.0);
    }

    fn add_error(&self, connector: &ConnectorId, error_type: ErrorType, by: f64) {
        let labels = vec![("connector_id", connector.to_string()), ("error_type", error_type.as_str().to_owned())];
        self.add(ERRORS_TOTAL, labels, by);
    }

    /// Makes a connector's counters and run-duration histogram exist (at
    /// zero) before its first run, one counter per run status and error type
    /// too, so dashboards and `rate()` see them from the start.
    pub fn register_connector(&self, connector: &ConnectorId) {
        self.register_histogram(SYNC_RUN_DURATION, connector_label(connector));
        let mut inner = self.lock();
        for (name, kind, _) in FAMILIES {
            if *kind == Kind::Counter && *name != SYNCS_TOTAL && *name != ERRORS_TOTAL {
                inner.values.entry((name, connector_label(connector))).or_insert(0.0);
            }
        }
        for status in FINISHED {
            let labels =
                vec![("connector_id", connector.to_string()), ("status", sync_status_label(status).to_owned())];
            inner.values.entry((SYNCS_TOTAL, labels)).or_insert(0.0);
        }
        for error_type in ErrorType::ALL {
            let labels = vec![("connector_id", connector.to_string()), ("error_type", error_type.as_str().to_owned())];
            inner.values.entry((ERRORS_TOTAL, labels)).or_insert(0.0);
        }
    }

    /// The gauges that come from the state store, from one read of a
    /// connector's state, ledger counts and newest run (at scrape time).
    pub fn record_connector(&self, connector: &ConnectorId, snapshot: &StatusSnapshot) {
        let id = || connector_label(connector);
        let count = |status: EntryStatus| snapshot.counts.get(&status).copied().unwrap_or(0);
        for status in EntryStatus::ALL {
            let labels = vec![("connector_id", connector.to_string()), ("status", status.as_str().to_owned())];
            self.set(LEDGER_MEMORIES, labels, count(status) as f64);
        }
        let processed: u64 = EntryStatus::ALL.into_iter().filter(|s| s.is_delivered()).map(count).sum();
        self.set(MEMORIES_PROCESSED, id(), processed as f64);
        let state = snapshot.state.as_ref();
        self.set(CONSECUTIVE_FAILURES, id(), state.map_or(0, |s| s.consecutive_failures) as f64);
        self.set(PAUSED, id(), if state.is_some_and(|s| s.paused) { 1.0 } else { 0.0 });
        match state.and_then(|s| s.last_success) {
            Some(at) => self.set(LAST_SUCCESS, id(), unix_seconds(at)),
            None => self.remove(LAST_SUCCESS, id()),
        }
        match &snapshot.last_run {
            Some(run) => {
                // A run in progress leaves the previous run's value.
                if let Some(finished) = run.finished_at {
                    let seconds = (finished - run.started_at).num_milliseconds().max(0) as f64 / 1000.0;
                    self.set(SYNC_DURATION, id(), seconds);
                }
            }
            None => self.remove(SYNC_DURATION, id()),
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

fn unix_seconds(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
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
    use crate::state::{ConnectorState, RunRecord};
    use chrono::{TimeZone, Utc};

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::new();
        m.register_connector(&ConnectorId::new("a\"b"));
        m.add(SYNCS_TOTAL, vec![("connector_id", "c1".into()), ("status", "success".into())], 1.0);
        m.observe(SYNC_RUN_DURATION, vec![("connector_id", "c1".into())], 0.3);
        m.observe(SYNC_RUN_DURATION, vec![("connector_id", "c1".into())], 7.0);
        m.set(MEMORIES_PROCESSED, vec![("connector_id", "c1".into())], 25.0);
        let text = m.render();
        assert!(text.contains("memory_connector_syncs_total{connector_id=\"c1\",status=\"success\"} 1\n"), "{text}");
        let bucket = |le: &str, n: u64| format!("{SYNC_RUN_DURATION}_bucket{{connector_id=\"c1\",le=\"{le}\"}} {n}\n");
        for (le, n) in [("0.1", 0), ("0.5", 1), ("10", 2), ("+Inf", 2)] {
            assert!(text.contains(&bucket(le, n)), "{le}: {text}");
        }
        assert!(text.contains(&format!("{SYNC_RUN_DURATION}_count{{connector_id=\"c1\"}} 2\n")), "{text}");
        assert!(text.contains("memory_connector_memories_processed{connector_id=\"c1\"} 25\n"), "{text}");
        assert!(text.contains("memory_connector_memories_dead_total{connector_id=\"a\\\"b\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE memory_connector_errors_total counter\n"));
    }

    #[test]
    fn every_run_status_and_error_type_starts_at_zero_and_completed_counts_as_success() {
        let m = Metrics::new();
        let id = ConnectorId::new("c1");
        m.register_connector(&id);
        let text = m.render();
        for status in ["success", "partial", "failed", "timed_out"] {
            assert!(text.contains(&format!("{SYNCS_TOTAL}{{connector_id=\"c1\",status=\"{status}\"}} 0\n")), "{text}");
        }
        for error_type in ErrorType::ALL {
            let series = format!("{ERRORS_TOTAL}{{connector_id=\"c1\",error_type=\"{}\"}} 0\n", error_type.as_str());
            assert!(text.contains(&series), "{text}");
        }
        assert!(!text.contains("status=\"completed\""), "{text}");
        assert_eq!(sync_status_label(RunStatus::Completed), "success");
        assert_eq!(sync_status_label(RunStatus::TimedOut), "timed_out");
    }

    #[test]
    fn the_state_gauges_follow_the_snapshot() {
        let m = Metrics::new();
        let id = ConnectorId::new("c1");
        let finished = Utc.with_ymd_and_hms(2025, 12, 18, 15, 0, 0).single().expect("time");
        let mut state = ConnectorState::new(id.clone());
        state.consecutive_failures = 2;
        state.paused = true;
        state.last_success = Some(finished);
        let run = RunRecord {
            run_id: crate::ids::RunId::generate(finished),
            connector_id: id.clone(),
            trigger: "schedule".into(),
            started_at: finished - chrono::Duration::milliseconds(2500),
            finished_at: Some(finished),
            status: RunStatus::Completed,
            counts: Default::default(),
            possibly_truncated: false,
            error: None,
        };
        let counts = [(EntryStatus::Processed, 7), (EntryStatus::Submitted, 2), (EntryStatus::Dead, 1)];
        let mut snapshot = StatusSnapshot {
            state: Some(state),
            lease: None,
            counts: counts.into_iter().collect(),
            last_run: Some(run.clone()),
        };
        m.record_connector(&id, &snapshot);
        let text = m.render();
        for line in [
            "memory_connector_ledger_memories{connector_id=\"c1\",status=\"dead\"} 1\n",
            "memory_connector_ledger_memories{connector_id=\"c1\",status=\"failed\"} 0\n",
            "memory_connector_memories_processed{connector_id=\"c1\"} 9\n",
            "memory_connector_consecutive_failures{connector_id=\"c1\"} 2\n",
            "memory_connector_paused{connector_id=\"c1\"} 1\n",
            "memory_connector_last_success_timestamp_seconds{connector_id=\"c1\"} 1766070000\n",
            "memory_connector_sync_duration_seconds{connector_id=\"c1\"} 2.5\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
        // A run in progress keeps the previous duration; a reset state loses the last success.
        snapshot.last_run = Some(RunRecord { finished_at: None, status: RunStatus::Running, ..run });
        snapshot.state = None;
        m.record_connector(&id, &snapshot);
        let text = m.render();
        assert!(text.contains("memory_connector_sync_duration_seconds{connector_id=\"c1\"} 2.5\n"), "{text}");
        assert!(!text.contains("memory_connector_last_success_timestamp_seconds{"), "{text}");
        assert!(text.contains("memory_connector_paused{connector_id=\"c1\"} 0\n"), "{text}");
    }
}
