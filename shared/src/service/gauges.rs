//! The gauges of `/metrics` that come from the state store, read at scrape
//! time (the way a Prometheus collector works): the ledger by status,
//! failures in a row, the last success, paused, the newest run's duration.
//! Read then, they are right after a restart and after changes made by other
//! processes (a `retry-failed` from the CLI, a one-shot `sync`).

use super::Service;
use crate::telemetry::metrics::Gauge;
use std::time::Duration;
use tracing::warn;

/// A scrape waits this long per connector for the store; then the previous
/// values stay (Prometheus' own scrape timeout is 10 s by default).
const READ_TIMEOUT: Duration = Duration::from_secs(3);

impl Service {
    /// Refreshes the state gauges of every enabled connector and the number
    /// of active runs; a store that fails or does not answer in time leaves
    /// a connector's previous values, and the log says so.
    pub(super) async fn refresh_gauges(&self) {
        let inner = &self.inner;
        for connector in inner.config.connectors.iter().filter(|c| c.enabled) {
            match tokio::time::timeout(READ_TIMEOUT, inner.store.status_snapshot(&connector.id)).await {
                Ok(Ok(snapshot)) => inner.metrics.record_connector(&connector.id, &snapshot),
                Ok(Err(e)) => {
                    warn!(target: "connector_core::service", connector_id = %connector.id, error = %e, "metrics: cannot read the connector's state; its gauges keep their previous values");
                }
                Err(_) => {
                    warn!(target: "connector_core::service", connector_id = %connector.id, timeout_s = READ_TIMEOUT.as_secs(), "metrics: the state store did not answer in time; the connector's gauges keep their previous values");
                }
            }
        }
        inner.metrics.set(Gauge::ActiveJobs, Vec::new(), self.active_count() as f64);
    }
}
