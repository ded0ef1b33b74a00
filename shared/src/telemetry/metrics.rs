//! Prometheus metrics of the service, in the text exposition format 0.0.4.
//!
//! Written by hand (a few maps behind a mutex) rather than with
//! `prometheus-client`: that crate speaks OpenMetrics and renames counters
//! to `*_total`, while the reference names `memory_connector_memories_processed`
//! and the output must pass `promtool check metrics`. See decision 0006.
//!
//! Three kinds of series (decision 0020 says why):
//! - counters and histograms of what this process did: runs, memories,
//!   requests to the Memory API and LightRAG;
//! - gauges read from the state store at scrape time
//!   ([`Metrics::record_connector`]): the ledger by status, failures in a
//!   row, the last success, paused. They are right after a restart and after
//!   changes made elsewhere (`retry-failed` from the CLI, a one-shot `sync`);
//! - every label value known in advance (run statuses, error types) starts
//!   at zero, so `rate()` and `increase()` see the first event.

use crate::ids::ConnectorId;
use crate::state::{EntryCounts, RunCounts, RunStatus, StatusSnapshot};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const SYNC_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const REQUEST_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A counter family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Sync runs by final status ([`sync_status_label`]).
    Syncs,
    MemoriesNew,
    MemoriesUpdated,
    MemoriesSkipped,
    MemoriesFailed,
    MemoriesDead,
    TruncatedFetches,
    /// Errors by [`ErrorType`].
    Errors,
}

/// A gauge family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    MemoriesProcessed,
    /// The newest finished run's duration (the reference's
    /// `memory_connector_sync_duration_seconds`).
    SyncDuration,
    ActiveJobs,
    LedgerMemories,
    ConsecutiveFailures,
    LastSuccess,
    Paused,
    ProcessStart,
}

/// A histogram family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    SyncRunDuration,
    MemoryApiRequestDuration,
    LightragRequestDuration,
}

/// One family of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// Every family, in the order of the exposition.
pub const FAMILIES: [Family; 19] = [
    Family::Counter(Counter::Syncs),
    Family::Gauge(Gauge::MemoriesProcessed),
    Family::Counter(Counter::MemoriesNew),
    Family::Counter(Counter::MemoriesUpdated),
    Family::Counter(Counter::MemoriesSkipped),
    Family::Counter(Counter::MemoriesFailed),
    Family::Counter(Counter::MemoriesDead),
    Family::Counter(Counter::TruncatedFetches),
    Family::Counter(Counter::Errors),
    Family::Gauge(Gauge::SyncDuration),
    Family::Histogram(Histogram::SyncRunDuration),
    Family::Histogram(Histogram::MemoryApiRequestDuration),
    Family::Histogram(Histogram::LightragRequestDuration),
    Family::Gauge(Gauge::ActiveJobs),
    Family::Gauge(Gauge::LedgerMemories),
    Family::Gauge(Gauge::ConsecutiveFailures),
    Family::Gauge(Gauge::LastSuccess),
    Family::Gauge(Gauge::Paused),
    Family::Gauge(Gauge::ProcessStart),
];

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Counter(c) => c.name(),
            Family::Gauge(g) => g.name(),
            Family::Histogram(h) => h.name(),
        }
    }

    fn help(self) -> &'static str {
        match self {
            Family::Counter(Counter::Syncs) => {
                "Sync runs by final status: success (the run completed), partial, failed, timed_out."
            }
            Family::Counter(Counter::MemoriesNew) => "Memories inserted for the first time.",
            Family::Counter(Counter::MemoriesUpdated) => "Changed memories whose document was replaced.",
            Family::Counter(Counter::MemoriesSkipped) => "Memories skipped while waiting for a transcript.",
            Family::Counter(Counter::MemoriesFailed) => "Memory deliveries that failed (kept for retry).",
            Family::Counter(Counter::MemoriesDead) => {
                "Dead memories (attempts exhausted) met by runs, counted once per run."
            }
            Family::Counter(Counter::TruncatedFetches) => {
                "Fetches that returned a full page (more memories may be waiting)."
            }
            Family::Counter(Counter::Errors) => {
                "Errors by type (run_failed, memory_failed, lightrag_failed, malformed, timed_out, already_running)."
            }
            Family::Gauge(Gauge::MemoriesProcessed) => "Memories whose document is in LightRAG, per the ledger.",
            Family::Gauge(Gauge::SyncDuration) => {
                "Duration of the connector's newest finished run, per the run history."
            }
            Family::Gauge(Gauge::ActiveJobs) => "Sync runs in progress in this process.",
            Family::Gauge(Gauge::LedgerMemories) => {
                "Memories in the ledger by status (waiting_transcript, submitted, processed, lightrag_failed, \
                 update_pending, failed, dead)."
            }
            Family::Gauge(Gauge::ConsecutiveFailures) => "Failed runs in a row (0 after a run that did not fail).",
            Family::Gauge(Gauge::LastSuccess) => {
                "When the newest run that did not fail finished, in Unix seconds; absent until one did."
            }
            Family::Gauge(Gauge::Paused) => "1 while the connector is paused (the scheduler skips it), else 0.",
            Family::Gauge(Gauge::ProcessStart) => "Start time of the process since unix epoch in seconds.",
            Family::Histogram(Histogram::SyncRunDuration) => "Duration of the sync runs of this process.",
            Family::Histogram(Histogram::MemoryApiRequestDuration) => {
                "Duration of Memory API fetches (retries included)."
            }
            Family::Histogram(Histogram::LightragRequestDuration) => {
                "Duration of LightRAG requests (health check, deliveries, status reads)."
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
            Gauge::SyncDuration => "memory_connector_sync_duration_seconds",
            Gauge::ActiveJobs => "memory_connector_active_jobs",
            Gauge::LedgerMemories => "memory_connector_ledger_memories",
            Gauge::ConsecutiveFailures => "memory_connector_consecutive_failures",
            Gauge::LastSuccess => "memory_connector_last_success_timestamp_seconds",
            Gauge::Paused => "memory_connector_paused",
            Gauge::ProcessStart => "process_start_time_seconds",
        }
    }
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Histogram::SyncRunDuration => "memory_connector_sync_run_duration_seconds",
            Histogram::MemoryApiRequestDuration => "memory_connector_memory_api_request_duration_seconds",
            Histogram::LightragRequestDuration => "memory_connector_lightrag_request_duration_seconds",
        }
    }

    fn bounds(self) -> &'static [f64] {
        match self {
            Histogram::SyncRunDuration => SYNC_BUCKETS,
            Histogram::MemoryApiRequestDuration | Histogram::LightragRequestDuration => REQUEST_BUCKETS,
        }
    }
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

/// The statuses a finished run can have; each starts at zero.
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

fn connector_label(connector: &ConnectorId) -> Labels {
    vec![("connector_id", connector.to_string())]
}

/// What the metrics read of a finished run (the sync engine's report hands
/// it over), so telemetry needs nothing of the engine.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRun<'a> {
    pub connector_id: &'a ConnectorId,
    pub status: RunStatus,
    pub counts: &'a RunCounts,
    /// The Memory API returned a full page: more memories may be waiting.
    pub possibly_truncated: bool,
    /// The run failed as a whole (fetch failed, sink refused).
    pub failed_as_whole: bool,
    pub duration_ms: u64,
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

    fn remove(&self, gauge: Gauge, labels: Labels) {
        self.lock().values.remove(&(gauge.name(), labels));
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

    /// Makes a histogram series exist with no observations, so that the
    /// first one is seen by `increase()` (e.g. the first LightRAG error).
    pub fn register_histogram(&self, histogram: Histogram, labels: Labels) {
        let bounds = histogram.bounds();
        let mut inner = self.lock();
        let h = inner.histograms.entry((histogram.name(), labels)).or_default();
        if h.counts.len() != bounds.len() {
            h.counts = vec![0; bounds.len()];
        }
    }

    /// The process start (`process_start_time_seconds`), in Unix seconds.
    pub fn set_process_start(&self, at: chrono::DateTime<chrono::Utc>) {
        self.set(Gauge::ProcessStart, Vec::new(), unix_seconds(at));
    }

    /// Feeds the counters and histograms from one finished run.
    pub fn record_run(&self, report: FinishedRun<'_>) {
        let id = || connector_label(report.connector_id);
        let c = report.counts;
        let status = sync_status_label(report.status).to_owned();
        self.add(Counter::Syncs, vec![("connector_id", report.connector_id.to_string()), ("status", status)], 1.0);
        for (counter, n) in [
            (Counter::MemoriesNew, c.new),
            (Counter::MemoriesUpdated, c.updated),
            (Counter::MemoriesSkipped, c.skipped),
            (Counter::MemoriesFailed, c.failed),
            (Counter::MemoriesDead, c.dead),
        ] {
            self.add(counter, id(), n as f64);
        }
        self.add(Counter::TruncatedFetches, id(), if report.possibly_truncated { 1.0 } else { 0.0 });
        for (kind, n) in [
            (ErrorType::RunFailed, u64::from(report.failed_as_whole)),
            (ErrorType::MemoryFailed, c.failed),
            (ErrorType::LightragFailed, c.lightrag_failed),
            (ErrorType::Malformed, c.rejected),
            (ErrorType::TimedOut, u64::from(report.status == RunStatus::TimedOut)),
        ] {
            if n > 0 {
                self.add_error(report.connector_id, kind, n as f64);
            }
        }
        self.observe(Histogram::SyncRunDuration, id(), report.duration_ms as f64 / 1000.0);
    }

    pub fn record_error(&self, connector: &ConnectorId, error_type: ErrorType) {
        self.add_error(connector, error_type, 1.0);
    }

    fn add_error(&self, connector: &ConnectorId, error_type: ErrorType, by: f64) {
        let labels = vec![("connector_id", connector.to_string()), ("error_type", error_type.as_str().to_owned())];
        self.add(Counter::Errors, labels, by);
    }

    /// Makes a connector's counters and run-duration histogram exist (at
    /// zero) before its first run, one counter per run status and error type
    /// too, so dashboards and `rate()` see them from the start.
    pub fn register_connector(&self, connector: &ConnectorId) {
        self.register_histogram(Histogram::SyncRunDuration, connector_label(connector));
        let mut inner = self.lock();
        for family in FAMILIES {
            if let Family::Counter(counter) = family
                && !matches!(counter, Counter::Syncs | Counter::Errors)
            {
                inner.values.entry((counter.name(), connector_label(connector))).or_insert(0.0);
            }
        }
        for status in FINISHED {
            let labels =
                vec![("connector_id", connector.to_string()), ("status", sync_status_label(status).to_owned())];
            inner.values.entry((Counter::Syncs.name(), labels)).or_insert(0.0);
        }
        for error_type in ErrorType::ALL {
            let labels = vec![("connector_id", connector.to_string()), ("error_type", error_type.as_str().to_owned())];
            inner.values.entry((Counter::Errors.name(), labels)).or_insert(0.0);
        }
    }

    /// The gauges that come from the state store, from one read of a
    /// connector's state, ledger counts and newest run (at scrape time).
    pub fn record_connector(&self, connector: &ConnectorId, snapshot: &StatusSnapshot) {
        let id = || connector_label(connector);
        let counts = EntryCounts::from_sparse(snapshot.counts.clone());
        // Submitted documents LightRAG confirmed keep their entries (decision
        // 29): as `status` does, count all but those the newest run left
        // waiting as processed.
        let counts = match snapshot.last_run.as_ref().and_then(|r| r.counts.awaiting) {
            Some(awaiting) => counts.confirmed_but(awaiting),
            None => counts,
        };
        for (status, n) in counts.iter() {
            let labels = vec![("connector_id", connector.to_string()), ("status", status.as_str().to_owned())];
            self.set(Gauge::LedgerMemories, labels, n as f64);
        }
        self.set(Gauge::MemoriesProcessed, id(), counts.processed() as f64);
        let state = snapshot.state.as_ref();
        self.set(Gauge::ConsecutiveFailures, id(), state.map_or(0, |s| s.consecutive_failures) as f64);
        self.set(Gauge::Paused, id(), if state.is_some_and(|s| s.paused) { 1.0 } else { 0.0 });
        match state.and_then(|s| s.last_success) {
            Some(at) => self.set(Gauge::LastSuccess, id(), unix_seconds(at)),
            None => self.remove(Gauge::LastSuccess, id()),
        }
        match &snapshot.last_run {
            Some(run) => {
                // A run in progress leaves the previous run's value.
                if let Some(finished) = run.finished_at {
                    let seconds = (finished - run.started_at).num_milliseconds().max(0) as f64 / 1000.0;
                    self.set(Gauge::SyncDuration, id(), seconds);
                }
            }
            None => self.remove(Gauge::SyncDuration, id()),
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
    use crate::state::{ConnectorState, EntryStatus, RunRecord};
    use chrono::{TimeZone, Utc};

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::new();
        m.register_connector(&ConnectorId::new("a\"b"));
        m.add(Counter::Syncs, vec![("connector_id", "c1".into()), ("status", "success".into())], 1.0);
        m.observe(Histogram::SyncRunDuration, vec![("connector_id", "c1".into())], 0.3);
        m.observe(Histogram::SyncRunDuration, vec![("connector_id", "c1".into())], 7.0);
        m.set(Gauge::MemoriesProcessed, vec![("connector_id", "c1".into())], 25.0);
        let text = m.render();
        assert!(text.contains("memory_connector_syncs_total{connector_id=\"c1\",status=\"success\"} 1\n"), "{text}");
        let run = Histogram::SyncRunDuration.name();
        let bucket = |le: &str, n: u64| format!("{run}_bucket{{connector_id=\"c1\",le=\"{le}\"}} {n}\n");
        for (le, n) in [("0.1", 0), ("0.5", 1), ("10", 2), ("+Inf", 2)] {
            assert!(text.contains(&bucket(le, n)), "{le}: {text}");
        }
        assert!(text.contains(&format!("{run}_count{{connector_id=\"c1\"}} 2\n")), "{text}");
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
            let series = format!("{}{{connector_id=\"c1\",status=\"{status}\"}} 0\n", Counter::Syncs.name());
            assert!(text.contains(&series), "{text}");
        }
        for error_type in ErrorType::ALL {
            let series =
                format!("{}{{connector_id=\"c1\",error_type=\"{}\"}} 0\n", Counter::Errors.name(), error_type.as_str());
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
            trigger: crate::state::Trigger::Schedule,
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
        // Confirmed documents keep `submitted` entries: all but those the run left waiting are processed.
        let mut waiting = run.clone();
        waiting.counts.awaiting = Some(1);
        m.record_connector(&id, &StatusSnapshot { last_run: Some(waiting), ..snapshot.clone() });
        let text = m.render();
        for line in [
            "memory_connector_ledger_memories{connector_id=\"c1\",status=\"submitted\"} 1\n",
            "memory_connector_ledger_memories{connector_id=\"c1\",status=\"processed\"} 8\n",
            "memory_connector_memories_processed{connector_id=\"c1\"} 9\n",
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
