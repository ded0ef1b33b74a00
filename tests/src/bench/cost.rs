//! The cost model: the ledger operations of a run, counted by a
//! [`CountingStore`] around the real SQLite store while the real engine runs
//! in-process, turned into DynamoDB request units and Lambda GB-seconds.
//!
//! DynamoDB model (on-demand, what the `dynamodb` store sends, item by item):
//! - lease acquire and release: one conditional write each, 1 WRU;
//! - connector state read: one strongly-consistent GetItem, 1 RRU per 4 KB;
//! - ledger lookup of the fetched ids: BatchGetItem, strongly consistent,
//!   1 RRU per item per 4 KB (absent items cost 1 RRU too);
//! - checkpoint: one TransactWriteItems of the entries, the connector state,
//!   the run record and a lease ConditionCheck: 2 WRU per item per 1 KB;
//!   plus the sparse `open` index (keys only): 1 WRU when an entry enters or
//!   leaves it, 2 when it moves between two unsettled statuses; plus the
//!   entries' current statuses read first (consistent BatchGetItem, 1 RRU
//!   each) and the counts item's `ADD` (2 WRU) per transaction of 96 entries;
//! - status counts: one GetItem of the counts item, 1 RRU;
//! - entries by status: a Query of the `open` index (eventually consistent,
//!   0.5 RRU per 4 KB of keys) and a consistent BatchGetItem of what it
//!   names (1 RRU per item per 4 KB).
//!
//! Item sizes are the JSON size of the record plus 64 bytes of keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use connector_core::ids::{ConnectorId, MemoryId, RunId};
use connector_core::state::{
    Checkpoint, ConnectorState, EntryStatus, Lease, LeaseOutcome, LedgerEntry, RunRecord, StateError, StateStore,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prices used (AWS us-east-1, on-demand, November 2026 list prices).
pub const LAMBDA_USD_PER_GB_S: f64 = 0.000_016_666_7;
pub const LAMBDA_USD_PER_REQUEST: f64 = 0.20 / 1e6;
pub const DYNAMODB_USD_PER_WRU: f64 = 0.625 / 1e6;
pub const DYNAMODB_USD_PER_RRU: f64 = 0.125 / 1e6;
pub const LAMBDA_MEMORY_GB: f64 = 128.0 / 1024.0;
const KEY_BYTES: usize = 64;

/// Request units of the ledger operations seen.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Units {
    pub read_units: u64,
    pub write_units: u64,
    pub store_calls: u64,
}

fn units(bytes: usize, per: usize) -> u64 {
    bytes.div_ceil(per).max(1) as u64
}

fn size<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0) + KEY_BYTES
}

/// The `open` index of the DynamoDB store holds every status but the
/// settled ones (`is_open` in `shared/src/state/dynamodb.rs`).
fn indexed(status: EntryStatus) -> bool {
    !matches!(status, EntryStatus::Processed | EntryStatus::WaitingTranscript)
}

/// Index writes of an entry going from `before` to `after`.
fn index_writes(before: Option<EntryStatus>, after: EntryStatus) -> u64 {
    match (before.filter(|b| indexed(*b)), indexed(after)) {
        (None, false) => 0,
        (None, true) | (Some(_), false) => 1,
        (Some(b), true) => {
            if b == after {
                0
            } else {
                2
            }
        }
    }
}

/// A [`StateStore`] that counts what passes through it.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn StateStore>,
    units: Mutex<Units>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self { inner, units: Mutex::new(Units::default()) }
    }

    /// The units so far, and starts counting again from zero.
    pub fn take(&self) -> Units {
        std::mem::take(&mut *self.units.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add(&self, read: u64, write: u64) {
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        units.read_units += read;
        units.write_units += write;
        units.store_calls += 1;
    }
}

#[async_trait]
impl StateStore for CountingStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        self.add(0, 1);
        self.inner.try_acquire_lease(connector, owner, now, ttl).await
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        self.add(0, 1);
        self.inner.release_lease(connector, owner).await
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        self.add(1, 0);
        self.inner.lease(connector).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        let state = self.inner.connector_state(connector).await?;
        self.add(state.as_ref().map_or(1, |s| units(size(s), 4096)), 0);
        Ok(state)
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.add(1, 0);
        self.inner.connectors().await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let found = self.inner.entries(connector, ids).await?;
        let present: u64 = found.values().map(|e| units(size(e), 4096)).sum();
        let absent = (ids.len() - found.len().min(ids.len())) as u64;
        self.add(present + absent, 0);
        Ok(found)
    }

    async fn entries_with_status(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let found = self.inner.entries_with_status(connector, statuses, limit).await?;
        let index = units(found.len() * KEY_BYTES * 2, 4096).div_ceil(2);
        let items: u64 = found.iter().map(|e| units(size(e), 4096)).sum();
        self.add(index + items, 0);
        Ok(found)
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        self.add(1, 0);
        self.inner.status_counts(connector).await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let ids: Vec<MemoryId> = checkpoint.entries.iter().map(|e| e.memory_id.clone()).collect();
        let before = self.inner.entries(connector, &ids).await?;
        let entries = checkpoint.entries.len() as u64;
        // The counts item's ADD: once per transaction (up to 96 entries) that changes a status.
        let changes = checkpoint.entries.iter().any(|e| before.get(&e.memory_id).map(|b| b.status) != Some(e.status));
        let mut write = if changes { 2 * entries.div_ceil(96) } else { 0 };
        write += checkpoint
            .entries
            .iter()
            .map(|e| 2 * units(size(e), 1024) + index_writes(before.get(&e.memory_id).map(|b| b.status), e.status))
            .sum::<u64>();
        write += checkpoint.connector.as_ref().map_or(0, |c| 2 * units(size(c), 1024));
        write += checkpoint.run.as_ref().map_or(0, |r| 2 * units(size(r), 1024));
        write += if checkpoint.lease_owner.is_some() { 2 } else { 0 };
        self.add(entries, write);
        self.inner.checkpoint(connector, checkpoint).await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.add(1, 0);
        self.inner.runs(connector, limit).await
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        self.add(0, 1);
        self.inner.reset(connector, now).await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.add(0, 1);
        self.inner.prune_runs(connector, before).await
    }
}

/// Cost of one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RunCost {
    pub duration_s: f64,
    pub units: Units,
    pub lambda_usd: f64,
    pub dynamodb_usd: f64,
}

impl RunCost {
    pub fn new(duration_s: f64, units: Units) -> Self {
        let lambda_usd = duration_s * LAMBDA_MEMORY_GB * LAMBDA_USD_PER_GB_S + LAMBDA_USD_PER_REQUEST;
        let dynamodb_usd =
            units.read_units as f64 * DYNAMODB_USD_PER_RRU + units.write_units as f64 * DYNAMODB_USD_PER_WRU;
        Self { duration_s, units, lambda_usd, dynamodb_usd }
    }

    pub fn gb_seconds(&self) -> f64 {
        self.duration_s * LAMBDA_MEMORY_GB
    }

    pub fn usd(&self) -> f64 {
        self.lambda_usd + self.dynamodb_usd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_units_round_up_per_item() {
        assert_eq!(units(1, 1024), 1);
        assert_eq!(units(1024, 1024), 1);
        assert_eq!(units(1025, 1024), 2);
        assert_eq!(units(0, 4096), 1);
    }

    #[test]
    fn a_run_costs_its_lambda_seconds_and_units() {
        let cost = RunCost::new(1.0, Units { read_units: 1_000_000, write_units: 1_000_000, store_calls: 2 });
        assert!((cost.dynamodb_usd - 0.75).abs() < 1e-9);
        assert!((cost.lambda_usd - (0.125 * LAMBDA_USD_PER_GB_S + 0.2e-6)).abs() < 1e-12);
    }
}
