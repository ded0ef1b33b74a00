//! A [`StateStore`] that names the method in progress for the AWS call
//! recorder ([`crate::aws::record`], tests' template check): each call is
//! recorded as used by the function, and the calls the store sends inside it
//! carry the method's name. Only built when recording is on.

use super::{
    Checkpoint, ConnectorState, DigestShard, EntryStatus, Lease, LeaseOutcome, LedgerEntry, LedgerView, Overview,
    RunRecord, StateError, StateStore, StatusSnapshot,
};
use crate::aws::record::{CallRecorder, in_store_method};
use crate::ids::{ConnectorId, MemoryId, RunId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct RecordedStore {
    inner: Arc<dyn StateStore>,
    recorder: CallRecorder,
}

impl RecordedStore {
    pub fn new(inner: Arc<dyn StateStore>, recorder: CallRecorder) -> Self {
        Self { inner, recorder }
    }

    /// `inner`, wrapped when `recorder` is given.
    pub fn wrap(inner: Arc<dyn StateStore>, recorder: Option<&CallRecorder>) -> Arc<dyn StateStore> {
        match recorder {
            Some(recorder) => Arc::new(Self::new(inner, recorder.clone())),
            None => inner,
        }
    }

    async fn call<F: Future>(&self, method: &'static str, future: F) -> F::Output {
        self.recorder.store_method(method);
        in_store_method(method, future).await
    }
}

#[async_trait]
impl StateStore for RecordedStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        self.call("try_acquire_lease", self.inner.try_acquire_lease(connector, owner, now, ttl)).await
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        self.call("release_lease", self.inner.release_lease(connector, owner)).await
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        self.call("lease", self.inner.lease(connector)).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        self.call("connector_state", self.inner.connector_state(connector)).await
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.call("connectors", self.inner.connectors()).await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        self.call("entries", self.inner.entries(connector, ids)).await
    }

    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        self.call("entries_named", self.inner.entries_named(names)).await
    }

    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let listed = self.inner.entries_with_status_after(connector, statuses, after, limit);
        self.call("entries_with_status", listed).await
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        self.call("status_counts", self.inner.status_counts(connector)).await
    }

    async fn status_snapshot(&self, connector: &ConnectorId) -> Result<StatusSnapshot, StateError> {
        self.call("status_snapshot", self.inner.status_snapshot(connector)).await
    }

    async fn overviews(&self, connectors: &[ConnectorId]) -> Result<Vec<Overview>, StateError> {
        self.call("overviews", self.inner.overviews(connectors)).await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        // A run's checkpoints (fenced by its lease) write what others never
        // do (marks, digests): a role that only writes plain ones needs less.
        let method = if checkpoint.lease_owner.is_some() { "checkpoint of a run" } else { "checkpoint" };
        self.call(method, self.inner.checkpoint(connector, checkpoint)).await
    }

    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        self.call("ledger_view", self.inner.ledger_view(connector)).await
    }

    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError> {
        self.call("digest_shards", self.inner.digest_shards(connector, shards)).await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.call("runs", self.inner.runs(connector, limit)).await
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        self.call("reset", self.inner.reset(connector, now)).await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.call("prune_runs", self.inner.prune_runs(connector, before)).await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        self.call("cache_get", self.inner.cache_get(key, now)).await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        self.call("cache_put", self.inner.cache_put(key, value, expires_at)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance::{self, StoreFactory};
    use crate::state::json::JsonStore;

    /// The decorator is a store like any other (it forwards every method),
    /// and it records each method it was called with.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_and_the_methods_it_records() {
        let dir = tempfile::tempdir().expect("dir");
        let calls = dir.path().join("calls");
        let recorder = CallRecorder::new("test-decorator", calls.clone(), &HashMap::new());
        let root = dir.path().to_owned();
        let factory: StoreFactory = Box::new(move || {
            let path = root.join(format!("state-{:016x}.json", fastrand::u64(..)));
            let recorder = recorder.clone();
            Box::pin(async move {
                let inner: Arc<dyn StateStore> = Arc::new(JsonStore::open(&path).await.expect("json store"));
                Arc::new(RecordedStore::new(inner, recorder)) as Arc<dyn StateStore>
            })
        });
        conformance::run_all(&factory).await;
        let mut recorded = String::new();
        for entry in std::fs::read_dir(&calls).expect("recorded calls") {
            recorded.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("read"));
        }
        for method in ["try_acquire_lease", "checkpoint", "entries", "entries_named", "overviews", "reset"] {
            let line = format!(r#"{{"role":"test-decorator","store_method":"{method}"}}"#);
            assert!(recorded.lines().any(|l| l == line), "{method} not recorded:\n{recorded}");
        }
    }
}
