//! The run report: what one run did, for people (`sync` output), machines
//! (`--json`), the run history and metrics.

use super::{ActionKind, RunOptions};
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::{RunCounts, RunRecord, RunStatus, Trigger};
use crate::telemetry::metrics::FinishedRun;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub memory_id: Option<MemoryId>,
    /// `fetch`, `plan`, `insert` or `replace`.
    pub stage: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedItem {
    pub memory_id: MemoryId,
    pub action: ActionKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: RunId,
    pub connector_id: ConnectorId,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub dry_run: bool,
    pub force: bool,
    /// The sink's address (URL or folder).
    pub sink: String,
    pub counts: RunCounts,
    /// The Memory API returned a full page: more memories may be waiting.
    pub possibly_truncated: bool,
    /// The run stopped at its deadline; the next run continues.
    pub stopped_early: bool,
    /// Why the run failed as a whole (fetch failed, sink refused).
    pub error: Option<String>,
    /// What the LightRAG server said about itself at the start (api mode).
    pub server: Option<crate::lightrag::Preflight>,
    /// Things a person should know that did not fail the run.
    pub warnings: Vec<String>,
    /// Submitted by this run and still queued in LightRAG when it ended.
    pub unconfirmed: u64,
    /// The first item errors (all of them are in the ledger).
    pub errors: Vec<ItemError>,
    /// How many item errors there were in all.
    pub error_count: u64,
    /// With `--dry-run`: what each memory would get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedItem>>,
}

impl RunReport {
    /// LightRAG confirmed a document this run watched.
    pub(super) fn confirmed_one(&mut self) {
        self.counts.confirmed += 1;
        self.counts.awaiting = self.counts.awaiting.map(|n| n.saturating_sub(1));
    }

    pub(super) fn new(
        run_id: &RunId,
        connector_id: &ConnectorId,
        options: &RunOptions,
        started_at: DateTime<Utc>,
        sink: String,
    ) -> Self {
        Self {
            run_id: run_id.clone(),
            connector_id: connector_id.clone(),
            trigger: options.trigger,
            status: RunStatus::Running,
            started_at,
            finished_at: None,
            duration_ms: 0,
            dry_run: options.dry_run,
            force: options.force,
            sink,
            counts: RunCounts::default(),
            possibly_truncated: false,
            stopped_early: false,
            error: None,
            server: None,
            warnings: Vec::new(),
            unconfirmed: 0,
            errors: Vec::new(),
            error_count: 0,
            plan: options.dry_run.then(Vec::new),
        }
    }

    pub(super) fn plan_item(&mut self, memory_id: &MemoryId, action: ActionKind, dry_run: bool) {
        if dry_run && let Some(plan) = self.plan.as_mut() {
            plan.push(PlannedItem { memory_id: memory_id.clone(), action });
        }
    }

    pub(super) fn push_error(&mut self, memory_id: Option<MemoryId>, stage: &str, message: String) {
        self.error_count += 1;
        if self.errors.len() < super::MAX_REPORTED_ERRORS {
            self.errors.push(ItemError { memory_id, stage: stage.into(), message });
        }
    }

    pub(super) fn finish(&mut self, status: RunStatus, elapsed: Duration) {
        self.status = status;
        self.duration_ms = elapsed.as_millis() as u64;
        self.finished_at = Some(self.started_at + chrono::Duration::milliseconds(self.duration_ms as i64));
    }

    /// The history record of this run as it stands.
    pub fn record(&self, status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: self.run_id.clone(),
            connector_id: self.connector_id.clone(),
            trigger: self.trigger,
            started_at: self.started_at,
            finished_at: if status == RunStatus::Running { None } else { self.finished_at },
            status,
            counts: self.counts,
            possibly_truncated: self.possibly_truncated,
            error: self.error.clone(),
        }
    }

    /// What the metrics record of this run.
    pub fn finished_run(&self) -> FinishedRun<'_> {
        FinishedRun {
            connector_id: &self.connector_id,
            status: self.status,
            counts: &self.counts,
            possibly_truncated: self.possibly_truncated,
            failed_as_whole: self.error.is_some(),
            duration_ms: self.duration_ms,
        }
    }

    /// Exit code of a one-shot `sync`: 0 completed, 3 partial, 1 failed.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            RunStatus::Completed | RunStatus::Idle => 0,
            RunStatus::Partial => 3,
            _ => 1,
        }
    }
}
