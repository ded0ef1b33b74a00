//! Read models of the connectors for `status`, `list` and the management
//! API: one place derives what a person is shown.

use crate::config::{Config, ConnectorConfig};
use crate::ids::ConnectorId;
use crate::schedule;
use crate::state::{EntryStatus, Lease, RunRecord, StateError, StateStore, StatusSnapshot};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One connector, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub connector_id: ConnectorId,
    pub description: Option<String>,
    pub enabled: bool,
    pub paused: bool,
    /// `running`, `interrupted` (a run died without finishing), `disabled`,
    /// `paused`, `idle` (never ran), or the last run's status.
    pub status: String,
    pub last_sync: Option<DateTime<Utc>>,
    pub last_run: Option<RunRecord>,
    pub next_run: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// Ledger entries per status (every status present).
    pub ledger: BTreeMap<EntryStatus, u64>,
    /// Memories whose document is in the sink.
    pub processed: u64,
    /// Memories failed on either side or dead.
    pub failed: u64,
    /// The live lease, when a run holds one.
    pub lease: Option<Lease>,
}

/// One row of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSummary {
    pub connector_id: ConnectorId,
    pub status: String,
    pub enabled: bool,
    pub last_sync: Option<DateTime<Utc>>,
}

pub async fn connector_status(
    connector: &ConnectorConfig,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<ConnectorStatus, StateError> {
    let id = &connector.id;
    let StatusSnapshot { state, lease, counts: mut ledger, last_run } = store.status_snapshot(id).await?;
    let lease = lease.filter(|l| !l.is_expired_at(now) && !l.owner.holder_is_gone());
    for status in EntryStatus::ALL {
        ledger.entry(status).or_insert(0);
    }
    let paused = state.as_ref().is_some_and(|s| s.paused);
    let status = derive_status(connector.enabled, paused, lease.is_some(), state.as_ref().map(|s| s.status.as_str()));
    let processed = ledger.iter().filter(|(s, _)| s.is_delivered()).map(|(_, n)| n).sum();
    let failed = [EntryStatus::Failed, EntryStatus::Dead, EntryStatus::LightragFailed]
        .iter()
        .map(|s| ledger.get(s).copied().unwrap_or(0))
        .sum();
    let next_run = (connector.enabled && !paused)
        .then(|| schedule::next_run(&connector.schedule, state.as_ref().and_then(|s| s.last_run_started), now))
        .flatten();
    Ok(ConnectorStatus {
        connector_id: id.clone(),
        description: connector.description.clone(),
        enabled: connector.enabled,
        paused,
        status,
        last_sync: state.as_ref().and_then(|s| s.last_success),
        last_run,
        next_run,
        consecutive_failures: state.as_ref().map_or(0, |s| s.consecutive_failures),
        ledger,
        processed,
        failed,
        lease,
    })
}

pub async fn list(
    config: &Config,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<ConnectorSummary>, StateError> {
    let mut rows = Vec::with_capacity(config.connectors.len());
    for connector in &config.connectors {
        let state = store.connector_state(&connector.id).await?;
        let running =
            store.lease(&connector.id).await?.is_some_and(|l| !l.is_expired_at(now) && !l.owner.holder_is_gone());
        let paused = state.as_ref().is_some_and(|s| s.paused);
        let status = match derive_status(connector.enabled, paused, running, state.as_ref().map(|s| s.status.as_str()))
        {
            s if s == "failed" || s == "running" || s == "disabled" || s == "paused" || s == "interrupted" => s,
            _ => "idle".to_owned(),
        };
        rows.push(ConnectorSummary {
            connector_id: connector.id.clone(),
            status,
            enabled: connector.enabled,
            last_sync: state.and_then(|s| s.last_success),
        });
    }
    Ok(rows)
}

fn derive_status(enabled: bool, paused: bool, running: bool, last: Option<&str>) -> String {
    if running {
        "running"
    } else if !enabled {
        "disabled"
    } else if paused {
        "paused"
    } else {
        match last {
            None => "idle",
            Some("running") => "interrupted",
            Some(other) => other,
        }
    }
    .to_owned()
}
