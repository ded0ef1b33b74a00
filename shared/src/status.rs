//! Read models of the connectors for `status`, `list` and the management
//! API: one place derives what a person is shown.

use crate::config::{Config, ConnectorConfig};
use crate::ids::ConnectorId;
use crate::schedule;
use crate::state::{
    ConnectorState, EntryCounts, Lease, Overview, RunRecord, RunStatus, StateError, StateStore, StatusSnapshot,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// What a connector is shown as, derived in one place ([`DisplayStatus::derive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayStatus {
    /// A run holds a live lease.
    Running,
    /// The last run died without finishing (its lease is gone or expired).
    Interrupted,
    /// `enabled: false` in the config.
    Disabled,
    /// Paused through the API; the scheduler skips it.
    Paused,
    /// Never ran, or (in `list`) nothing to call out.
    Idle,
    Completed,
    Partial,
    Failed,
    TimedOut,
}

impl DisplayStatus {
    /// The one derivation: a live run first, then the config, the pause,
    /// and last what the previous run ended as.
    pub fn derive(enabled: bool, paused: bool, running: bool, last: Option<RunStatus>) -> Self {
        if running {
            DisplayStatus::Running
        } else if !enabled {
            DisplayStatus::Disabled
        } else if paused {
            DisplayStatus::Paused
        } else {
            match last {
                None | Some(RunStatus::Idle) => DisplayStatus::Idle,
                Some(RunStatus::Running) => DisplayStatus::Interrupted,
                Some(RunStatus::Completed) => DisplayStatus::Completed,
                Some(RunStatus::Partial) => DisplayStatus::Partial,
                Some(RunStatus::Failed) => DisplayStatus::Failed,
                Some(RunStatus::TimedOut) => DisplayStatus::TimedOut,
            }
        }
    }

    /// The `list` column: what the connector is doing now, calling out
    /// only a last run that failed or was interrupted (a run that completed,
    /// was partial or timed out is `idle` between runs, as the reference's
    /// `list` output shows); `status` shows the full value.
    pub fn summary(self) -> Self {
        match self {
            DisplayStatus::Completed | DisplayStatus::Partial | DisplayStatus::TimedOut => DisplayStatus::Idle,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DisplayStatus::Running => "running",
            DisplayStatus::Interrupted => "interrupted",
            DisplayStatus::Disabled => "disabled",
            DisplayStatus::Paused => "paused",
            DisplayStatus::Idle => "idle",
            DisplayStatus::Completed => "completed",
            DisplayStatus::Partial => "partial",
            DisplayStatus::Failed => "failed",
            DisplayStatus::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for DisplayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One connector, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub connector_id: ConnectorId,
    pub description: Option<String>,
    pub enabled: bool,
    pub paused: bool,
    pub status: DisplayStatus,
    pub last_sync: Option<DateTime<Utc>>,
    pub last_run: Option<RunRecord>,
    pub next_run: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// Ledger entries per status (every status present), submitted ones as
    /// LightRAG last confirmed them ([`EntryCounts::confirmed_but`]).
    pub ledger: EntryCounts,
    /// Memories whose document is in the sink.
    pub processed: u64,
    /// Memories that need attention: failed on either side, or dead.
    pub failed: u64,
    /// The live lease, when a run holds one.
    pub lease: Option<Lease>,
}

/// One row of `list` (and of `GET /connectors`).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSummary {
    pub connector_id: ConnectorId,
    /// [`DisplayStatus::summary`].
    pub status: DisplayStatus,
    /// How the last run ended ([`DisplayStatus::derive`] without the summary).
    pub detail: DisplayStatus,
    pub enabled: bool,
    pub paused: bool,
    pub description: Option<String>,
    pub last_sync: Option<DateTime<Utc>>,
}

pub async fn connector_status(
    connector: &ConnectorConfig,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<ConnectorStatus, StateError> {
    let StatusSnapshot { state, lease, counts, last_run } = store.status_snapshot(&connector.id).await?;
    let lease = lease.filter(|l| l.is_live_at(now));
    let ledger = EntryCounts::from_sparse(counts);
    // How many submitted entries still wait for LightRAG: the newest run's
    // count (exact at its end, kept current while it goes on), else the
    // watch list itself (a run that failed before it counted).
    let awaiting = match last_run.as_ref().and_then(|r| r.counts.awaiting) {
        Some(n) => Some(n),
        None => store.ledger_view(&connector.id).await?.unconfirmed.map(|ids| ids.len() as u64),
    };
    let ledger = match awaiting {
        Some(awaiting) => ledger.confirmed_but(awaiting),
        None => ledger,
    };
    let paused = state.as_ref().is_some_and(|s| s.paused);
    let next_run = (connector.enabled && !paused)
        .then(|| schedule::next_run(&connector.schedule, state.as_ref().and_then(|s| s.last_run_started), now))
        .flatten();
    Ok(ConnectorStatus {
        connector_id: connector.id.clone(),
        description: connector.description.clone(),
        enabled: connector.enabled,
        paused,
        status: display(connector, state.as_ref(), lease.is_some()),
        last_sync: state.as_ref().and_then(|s| s.last_success),
        last_run,
        next_run,
        consecutive_failures: state.as_ref().map_or(0, |s| s.consecutive_failures),
        processed: ledger.processed(),
        failed: ledger.failed(),
        ledger,
        lease,
    })
}

pub async fn list(
    config: &Config,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<ConnectorSummary>, StateError> {
    let ids: Vec<ConnectorId> = config.connectors.iter().map(|c| c.id.clone()).collect();
    let overviews = store.overviews(&ids).await?;
    let mut rows = Vec::with_capacity(config.connectors.len());
    for (connector, Overview { state, lease }) in config.connectors.iter().zip(overviews) {
        let running = lease.is_some_and(|l| l.is_live_at(now));
        let detail = display(connector, state.as_ref(), running);
        rows.push(ConnectorSummary {
            connector_id: connector.id.clone(),
            status: detail.summary(),
            detail,
            enabled: connector.enabled,
            paused: state.as_ref().is_some_and(|s| s.paused),
            description: connector.description.clone(),
            last_sync: state.and_then(|s| s.last_success),
        });
    }
    Ok(rows)
}

fn display(connector: &ConnectorConfig, state: Option<&ConnectorState>, running: bool) -> DisplayStatus {
    let paused = state.is_some_and(|s| s.paused);
    DisplayStatus::derive(connector.enabled, paused, running, state.map(|s| s.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_derivation_for_status_and_list() {
        let finished = DisplayStatus::derive(true, false, false, Some(RunStatus::Completed));
        assert_eq!((finished, finished.summary()), (DisplayStatus::Completed, DisplayStatus::Idle));
        let died = DisplayStatus::derive(true, false, false, Some(RunStatus::Running));
        assert_eq!((died, died.summary()), (DisplayStatus::Interrupted, DisplayStatus::Interrupted));
        assert_eq!(DisplayStatus::derive(false, true, true, None), DisplayStatus::Running);
        assert_eq!(DisplayStatus::derive(false, true, false, None), DisplayStatus::Disabled);
        assert_eq!(DisplayStatus::derive(true, true, false, Some(RunStatus::Failed)), DisplayStatus::Paused);
        assert_eq!(DisplayStatus::derive(true, false, false, Some(RunStatus::Failed)).summary(), DisplayStatus::Failed);
        assert_eq!(serde_json::to_value(DisplayStatus::TimedOut).unwrap(), "timed_out");
    }
}
