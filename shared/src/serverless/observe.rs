//! What the `sync` function tells the outside world after each event: one
//! metric line ([`crate::telemetry::emf`]) whatever the answer, and
//! `monitoring.alerts` judged from the connector's state before and after
//! the run ([`Alerter::evaluate_run`]).

use super::{FunctionError, SyncFunction, parse_sync_event};
use crate::ids::ConnectorId;
use crate::state::{ConnectorState, RunCounts};
use crate::telemetry::alerts::Alerter;
use crate::telemetry::emf::Invocation;
use chrono::Utc;
use serde_json::Value;
use tracing::warn;

impl FunctionError {
    /// Every [`FunctionError::reason`] (the template's alarm sums them all).
    pub const REASONS: [&'static str; 5] = ["unknown_connector", "bad_event", "config", "state", "secrets"];

    /// The `Reason` of the `RejectedEvents` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            FunctionError::BadEvent(_) => "bad_event",
            FunctionError::UnknownConnector(_) => "unknown_connector",
            FunctionError::Config(_) => "config",
            FunctionError::State(_) => "state",
            FunctionError::Secrets(_) => "secrets",
        }
    }
}

impl SyncFunction {
    /// The metric line of one invocation: the run by status (and its
    /// counts), or the event rejected by reason, so a failure is visible
    /// without reading logs whatever answer the invocation gives.
    pub(super) fn record_metrics(&self, event: &Value, result: &Result<Value, FunctionError>) {
        #[derive(serde::Deserialize)]
        struct Answer {
            status: String,
            connector_id: ConnectorId,
            counts: Option<RunCounts>,
            #[serde(default)]
            duration_ms: u64,
            run_id: Option<String>,
            trigger: Option<String>,
        }
        match result {
            Ok(value) => match <Answer as serde::Deserialize>::deserialize(value) {
                Ok(a) => self.metrics.emit(&Invocation::Run {
                    connector: &a.connector_id,
                    status: &a.status,
                    counts: a.counts.as_ref(),
                    duration_ms: a.duration_ms,
                    run_id: a.run_id.as_deref(),
                    trigger: a.trigger.as_deref(),
                }),
                Err(e) => warn!(error = %e, "no metrics for an answer without status and connector"),
            },
            Err(e) => {
                let connector = parse_sync_event(event).ok().map(|r| r.connector_id);
                self.metrics.emit(&Invocation::Rejected { reason: e.reason(), connector: connector.as_ref() });
            }
        }
    }

    /// `monitoring.alerts` after a run: the state before and after it.
    pub(super) async fn alert(
        &self,
        alerter: &Alerter,
        connector: &ConnectorId,
        before: Option<&ConnectorState>,
        error: Option<String>,
    ) {
        match self.store.connector_state(connector).await {
            Ok(Some(after)) => alerter.evaluate_run(before, &after, error, Utc::now()).await,
            Ok(None) => {}
            Err(e) => warn!(%connector, error = %e, "alerts: the connector state could not be read"),
        }
    }
}
