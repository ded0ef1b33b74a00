//! [`StateStore`] for [`JsonStore`]: each call reads the cached document or
//! decides, under the file lock, the [`Change`] it makes.

use super::journal::Change;
use super::{Inner, JsonStore, Outcome};
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::digest::{DigestShard, LedgerView, ShardBytes};
use crate::state::{
    CacheValue, Checkpoint, ConnectorState, EntryStatus, Lease, LeaseOutcome, LedgerEntry, RunRecord, StateError,
    StateStore,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::PoisonError;
use std::time::Duration;

impl JsonStore {
    fn hold(&self, connector: &ConnectorId, held: bool) -> bool {
        let mut set = self.inner.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held {
            set.insert(connector.clone());
        } else {
            set.remove(connector);
        }
        set.is_empty()
    }
}

#[async_trait]
impl StateStore for JsonStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        let (key, owner) = (connector.clone(), owner.clone());
        let outcome = self
            .blocking(move |inner| {
                inner.write_as(true, |doc| {
                    let held = doc.connectors.get(&key).and_then(|r| r.lease.as_ref());
                    if let Some(held) = held.filter(|l| !l.can_be_taken_by(&owner, now)) {
                        return Ok(Outcome::Unchanged(LeaseOutcome::Held(held.clone())));
                    }
                    let lease = Lease::new(owner, now, ttl);
                    let change = Change::Lease { connector: key, lease: Some(lease.clone()) };
                    Ok(Outcome::Changed(LeaseOutcome::Acquired(lease), change))
                })
            })
            .await?;
        if matches!(outcome, LeaseOutcome::Acquired(_)) {
            self.hold(connector, true);
        }
        Ok(outcome)
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let (key, owner) = (connector.clone(), owner.clone());
        self.blocking(move |inner| {
            inner.write(|doc| match doc.connectors.get(&key) {
                Some(record) if record.holds_lease(&owner) => {
                    Ok(Outcome::Changed((), Change::Lease { connector: key, lease: None }))
                }
                _ => Ok(Outcome::Unchanged(())),
            })
        })
        .await?;
        // The end of this store's last run: the journal goes into the file.
        if self.hold(connector, false) {
            self.blocking(Inner::compact_now).await?;
        }
        Ok(())
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| inner.read(|doc| doc.connectors.get(&connector).and_then(|r| r.lease.clone()))).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| inner.read(|doc| doc.connectors.get(&connector).and_then(|r| r.state.clone()))).await
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.blocking(|inner| {
            inner.read(|doc| {
                doc.connectors.iter().filter(|(_, record)| !record.is_empty()).map(|(id, _)| id.clone()).collect()
            })
        })
        .await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let (connector, ids) = (connector.clone(), ids.to_vec());
        self.blocking(move |inner| {
            inner.read(|doc| {
                let Some(record) = doc.connectors.get(&connector) else {
                    return HashMap::new();
                };
                ids.into_iter().filter_map(|id| record.entries.get(&id).map(|entry| (id, entry.clone()))).collect()
            })
        })
        .await
    }

    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let (connector, statuses, after) = (connector.clone(), statuses.to_vec(), after.cloned());
        self.blocking(move |inner| {
            inner.read(|doc| {
                doc.connectors
                    .get(&connector)
                    .map(|record| {
                        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                        record
                            .entries
                            .range((from, Bound::Unbounded))
                            .map(|(_, entry)| entry)
                            .filter(|entry| statuses.contains(&entry.status))
                            .take(limit)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default()
            })
        })
        .await
    }

    /// One pass over the ledgers held in memory (the file has no index).
    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let names: std::collections::HashSet<String> = names.iter().cloned().collect();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let all = doc.connectors.iter().flat_map(|(id, record)| record.entries.values().map(move |e| (id, e)));
                all.filter(|(_, e)| names.contains(&e.file_source)).map(|(id, e)| (id.clone(), e.clone())).collect()
            })
        })
        .await
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let mut counts = BTreeMap::new();
                if let Some(record) = doc.connectors.get(&connector) {
                    for entry in record.entries.values() {
                        *counts.entry(entry.status).or_insert(0) += 1;
                    }
                }
                counts
            })
        })
        .await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let Checkpoint { entries, connector: state, run, lease_owner, digest, .. } =
                    checkpoint.marks_as_entries();
                let record = doc.connectors.get(&connector);
                if let Some(owner) = &lease_owner
                    && !record.is_some_and(|r| r.holds_lease(owner))
                {
                    return Err(StateError::LeaseLost { connector, owner: owner.clone() });
                }
                if entries.is_empty() && state.is_none() && run.is_none() && digest.is_none() {
                    return Ok(Outcome::Unchanged(()));
                }
                let generation =
                    (lease_owner.is_none() && !entries.is_empty()).then(|| record.map_or(0, |r| r.generation) + 1);
                let (state, run) = (state.map(Box::new), run.map(Box::new));
                let digest = digest.map(|write| Box::new(write.into()));
                Ok(Outcome::Changed((), Change::Checkpoint { connector, entries, state, run, generation, digest }))
            })
        })
        .await
    }

    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let Some(record) = doc.connectors.get(&connector) else {
                    return LedgerView::default();
                };
                LedgerView {
                    generation: record.generation,
                    entries: record.entries.len() as u64,
                    digest: record
                        .digest
                        .as_ref()
                        .map(|d| d.root.clone())
                        .filter(|root| root.generation == record.generation),
                    unconfirmed: record.unconfirmed.clone(),
                }
            })
        })
        .await
    }

    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError> {
        let (connector, shards) = (connector.clone(), shards.to_vec());
        let path = self.inner.path.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                let stored = doc.connectors.get(&connector).and_then(|r| r.digest.as_ref());
                shards
                    .into_iter()
                    .map(|shard| match stored.and_then(|d| d.shards.get(&shard)) {
                        Some(ShardBytes(bytes)) => DigestShard::from_bytes(shard, bytes)
                            .map_err(|detail| StateError::Corrupt { path: path.clone(), detail }),
                        None => Ok(DigestShard { shard, records: Vec::new() }),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })?
        })
        .await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.read(|doc| {
                doc.connectors
                    .get(&connector)
                    .map(|record| record.runs.iter().rev().take(limit).cloned().collect())
                    .unwrap_or_default()
            })
        })
        .await
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let Some(record) = doc.connectors.get(&connector) else {
                    return Ok(Outcome::Unchanged(()));
                };
                if let Some(lease) = record.lease.as_ref().filter(|l| !l.is_expired_at(now)) {
                    return Err(StateError::Busy {
                        connector,
                        owner: lease.owner.clone(),
                        expires_at: lease.expires_at,
                    });
                }
                let changed = record.state.is_some()
                    || record.lease.is_some()
                    || !record.entries.is_empty()
                    || record.digest.is_some()
                    || record.unconfirmed.is_some()
                    || record.generation != 0;
                Ok(if changed { Outcome::Changed((), Change::Reset { connector }) } else { Outcome::Unchanged(()) })
            })
        })
        .await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.read(|doc| doc.cache.get(&key).filter(|c| c.is_live_at(now)).map(|c| c.value.clone()))
        })
        .await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.blocking(move |inner| {
            inner.write(|_| {
                // Expired values are dropped here so the file does not grow forever.
                let value = CacheValue { value, expires_at };
                Ok(Outcome::Changed((), Change::CachePut { key, value, now: Utc::now() }))
            })
        })
        .await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        let connector = connector.clone();
        self.blocking(move |inner| {
            inner.write(|doc| {
                let removed = doc
                    .connectors
                    .get(&connector)
                    .map_or(0, |record| record.runs.iter().filter(|run| run.started_at < before).count() as u64);
                Ok(if removed > 0 {
                    Outcome::Changed(removed, Change::PruneRuns { connector, before })
                } else {
                    Outcome::Unchanged(0)
                })
            })
        })
        .await
    }
}
