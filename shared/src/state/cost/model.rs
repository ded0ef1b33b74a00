//! The cost model: a [`StateStore`] around any store that counts what the
//! `dynamodb` store would send for the same calls, item by item, in
//! request units ([`super`]'s rules). The bench's figure 8 runs the real
//! engine around it over SQLite; `sync::cost_tests` runs the same workload on
//! DynamoDB Local and checks that the store counted the same units.
//!
//! It follows the store's algorithm (module docs of `state::dynamodb`): a
//! run's batch is one update of the lease item (its size grows with the
//! pending batch) and one conditional put per entry, whose expected status
//! comes from what was read or written before (a wrong guess costs a failed
//! put, a read and a transaction); a state write is one transaction; writes
//! without the lease are transactions with a read of the statuses first.
//! Item sizes are computed from the records' serde form the way DynamoDB
//! sizes items (names plus values).

use super::{DENSE_MIN, DENSE_SHARE, Units, index_writes, read_item, read_query, transact_item, write_item};
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::digest::DigestWrite;
use crate::state::marks::{self, Mark};
use crate::state::{
    Checkpoint, ConnectorState, DigestShard, EntryStatus, Lease, LeaseOutcome, LedgerEntry, LedgerView, RunRecord,
    StateError, StateStore,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The lease item besides a pending batch (`dynamodb::keys::LEASE_ITEM_BYTES`).
const LEASE_ITEM_BYTES: usize = 300;
/// Entries of one batch write (`dynamodb::keys::PART_MAX`).
const PART_MAX: usize = 96;
const TRANSACT_MAX: usize = 100;
const BATCH_GET_MAX: usize = 100;
/// The data one Query page returns at most.
const QUERY_PAGE_BYTES: usize = 1 << 20;
/// Unconfirmed ids the root item keeps inline, ids per `OUTBOX#n` item.
const INLINE_IDS: usize = 200;
const IDS_PER_OUTBOX: usize = 2_000;
/// The digest root's binary size (`DigestRoot::to_bytes`).
const ROOT_BYTES: usize = 1 + 8 + 8 + 1 + crate::state::digest::SHARDS * 12;

/// Statuses in the `open` index ([`EntryStatus::listed_by_status`]).
fn indexed(status: EntryStatus) -> Option<EntryStatus> {
    status.listed_by_status().then_some(status)
}

/// A value's size as DynamoDB counts it (`dynamodb::units`).
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => n.to_string().trim_start_matches('-').trim_start_matches('0').len().div_ceil(2) + 1,
        Value::String(s) => s.len(),
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        Value::Object(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_bytes(v)).sum::<usize>(),
    }
}

/// The size of a record stored as an item (its fields are the attributes)
/// under `pk`/`sk`, plus `extra` attributes' bytes.
fn record_bytes<T: Serialize>(record: &T, connector: &ConnectorId, sk_len: usize, extra: usize) -> usize {
    let fields = match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
        _ => 0,
    };
    fields + "pk".len() + connector.as_str().len() + "sk".len() + sk_len + extra
}

fn entry_bytes(connector: &ConnectorId, entry: &LedgerEntry, token: bool) -> usize {
    let open = indexed(entry.status).map_or(0, |s| "open_pk".len() + connector.as_str().len() + 1 + s.as_str().len());
    let token = if token { "wt".len() + 16 } else { 0 };
    record_bytes(entry, connector, "ENTRY#".len() + entry.memory_id.as_str().len(), open + token)
}

fn run_bytes(connector: &ConnectorId, run: &RunRecord, ttl: bool) -> usize {
    // `RUN#<RFC 3339 ms>#<run id>`; the TTL attribute is epoch seconds.
    let sk = "RUN#".len() + 24 + 1 + run.run_id.as_str().len();
    record_bytes(run, connector, sk, if ttl { "expire_at".len() + 6 } else { 0 })
}

fn ids_bytes(ids: &[MemoryId]) -> usize {
    3 + ids.iter().map(|id| 1 + id.as_str().len()).sum::<usize>()
}

/// What the model remembers per connector, like the store does.
#[derive(Debug, Default)]
struct Local {
    hints: HashMap<MemoryId, Option<EntryStatus>>,
    /// The `MARKS#<run>` items in the table (run id: open marks), which the
    /// model keeps itself: the store it wraps writes marks as entries.
    marks: BTreeMap<String, BTreeMap<MemoryId, Mark>>,
    /// The run whose marks the store has loaded (`dynamodb::marks`).
    loaded: Option<RunId>,
    /// Its first write of marks is still to take over the other runs' items.
    older_pending: bool,
    /// Each entry's item size as written: the store it wraps may keep
    /// timestamps coarser than DynamoDB does (SQLite: milliseconds).
    sizes: HashMap<MemoryId, usize>,
}

/// The size of a run's marks item.
fn marks_item_bytes(connector: &ConnectorId, run: &str, marks: &BTreeMap<MemoryId, Mark>) -> usize {
    let open: Vec<Mark> = marks.values().cloned().collect();
    let encoded = crate::state::marks::encode(&open).map_or(0, |b| b.len());
    "pk".len() + connector.as_str().len() + "sk".len() + "MARKS#".len() + run.len() + "marks".len() + encoded
}

/// A [`StateStore`] that counts the `dynamodb` store's units for its calls.
#[derive(Debug)]
pub struct CostModel {
    inner: Arc<dyn StateStore>,
    units: Mutex<Units>,
    local: Mutex<HashMap<ConnectorId, Local>>,
    /// Run records carry the TTL attribute (`state.cleanup` enabled).
    ttl: bool,
}

impl CostModel {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self { inner, units: Mutex::new(Units::default()), local: Mutex::new(HashMap::new()), ttl: false }
    }

    /// Run records carry a TTL attribute, as with `state.cleanup` enabled.
    pub fn with_history_ttl(mut self) -> Self {
        self.ttl = true;
        self
    }

    /// The units so far, and starts counting again from zero.
    pub fn take(&self) -> Units {
        std::mem::take(&mut *self.units.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn add(&self, read_units: u64, write_units: u64, calls: u64) {
        self.units.lock().unwrap_or_else(PoisonError::into_inner).add(Units { read_units, write_units, calls });
    }

    fn hints<T>(&self, connector: &ConnectorId, f: impl FnOnce(&mut HashMap<MemoryId, Option<EntryStatus>>) -> T) -> T {
        let mut all = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut all.entry(connector.clone()).or_default().hints)
    }

    fn local<T>(&self, connector: &ConnectorId, f: impl FnOnce(&mut Local) -> T) -> T {
        let mut all = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        f(all.entry(connector.clone()).or_default())
    }

    /// The open marks (every run's, the latest of a memory winning): read
    /// with a `Query` unless the run holding the lease loaded them here.
    fn read_marks(&self, connector: &ConnectorId) -> BTreeMap<MemoryId, Mark> {
        let (loaded, bytes) = self.local(connector, |local| {
            let bytes = local.marks.iter().map(|(run, marks)| marks_item_bytes(connector, run, marks)).sum();
            (local.loaded.is_some(), bytes)
        });
        if !loaded {
            self.add(read_query(bytes, true), 0, 1);
        }
        self.open_marks(connector)
    }

    /// The open marks of every run's item, the latest of a memory winning (no read).
    fn open_marks(&self, connector: &ConnectorId) -> BTreeMap<MemoryId, Mark> {
        self.local(connector, |local| {
            let mut open = BTreeMap::new();
            for mark in local.marks.values().flat_map(BTreeMap::values) {
                marks::keep_latest(&mut open, mark.clone());
            }
            open
        })
    }

    /// `dynamodb::marks::load_marks`: a run took the lease.
    fn load_marks(&self, connector: &ConnectorId, owner: &RunId) {
        self.local(connector, |l| l.loaded = None);
        self.read_marks(connector);
        self.local(connector, |l| {
            l.loaded = Some(owner.clone());
            l.older_pending = true;
        });
    }

    /// A stored entry's item size: as written when the model saw it written.
    fn stored_bytes(&self, connector: &ConnectorId, entry: &LedgerEntry) -> usize {
        self.local(connector, |l| l.sizes.get(&entry.memory_id).copied())
            .unwrap_or_else(|| entry_bytes(connector, entry, true))
    }

    /// Remembers the item sizes of entries as written.
    fn written(&self, connector: &ConnectorId, sizes: impl IntoIterator<Item = (MemoryId, usize)>) {
        self.local(connector, |l| l.sizes.extend(sizes));
    }

    /// The status the store's item has: a marked memory's is its mark's `before`.
    fn stored_status(open: &BTreeMap<MemoryId, Mark>, entry: Option<&LedgerEntry>) -> Option<EntryStatus> {
        let entry = entry?;
        match open.get(&entry.memory_id) {
            Some(mark) if entry.status == EntryStatus::Sending => mark.before,
            _ => Some(entry.status),
        }
    }

    /// `dynamodb::marks::write_marks`: the run's item after a fenced checkpoint.
    fn write_marks(&self, connector: &ConnectorId, owner: &RunId, written: &[LedgerEntry], marked: &[LedgerEntry]) {
        if self.local(connector, |l| l.loaded.as_ref() != Some(owner)) {
            self.load_marks(connector, owner);
        }
        let own = owner.as_str().to_owned();
        let (put, deletes) = self.local(connector, |local| {
            let first = std::mem::take(&mut local.older_pending);
            let mut open = local.marks.get(&own).cloned().unwrap_or_default();
            let stored = local.marks.contains_key(&own);
            let mut older = Vec::new();
            if first {
                for (run, marks) in &local.marks {
                    if run != &own {
                        older.push(run.clone());
                        for mark in marks.values() {
                            marks::keep_latest(&mut open, mark.clone());
                        }
                    }
                }
            }
            let mut changed = false;
            for entry in written {
                changed |= open.remove(&entry.memory_id).is_some();
            }
            for entry in marked {
                let before = local.hints.get(&entry.memory_id).copied().flatten();
                open.insert(entry.memory_id.clone(), Mark::of(entry, before));
                changed = true;
            }
            if !changed && older.is_empty() {
                return (None, 0);
            }
            for run in &older {
                local.marks.remove(run);
            }
            let mut deletes = older.len();
            let put = if open.is_empty() {
                deletes += usize::from(stored);
                local.marks.remove(&own);
                None
            } else {
                let bytes = marks_item_bytes(connector, &own, &open);
                local.marks.insert(own.clone(), open);
                Some(bytes)
            };
            (put, deletes)
        });
        if let Some(bytes) = put {
            self.add(0, write_item(bytes), 1);
        }
        for _ in 0..deletes {
            self.add(0, 1, 1);
        }
    }

    /// A consistent `Query` returning items of these sizes, a page (1 MB) at a time.
    fn query_cost(&self, sizes: impl IntoIterator<Item = usize>) {
        let mut page = 0usize;
        for bytes in sizes {
            if page > 0 && page + bytes > QUERY_PAGE_BYTES {
                self.add(read_query(page, true), 0, 1);
                page = 0;
            }
            page += bytes;
        }
        self.add(read_query(page, true), 0, 1);
    }

    /// A consistent `BatchGetItem` of items of these sizes (`None`: absent).
    fn batch_get(&self, sizes: impl IntoIterator<Item = Option<usize>>) {
        let sizes: Vec<Option<usize>> = sizes.into_iter().collect();
        let units: u64 = sizes.iter().map(|s| s.map_or(1, read_item)).sum();
        self.add(units, 0, sizes.len().div_ceil(BATCH_GET_MAX) as u64);
    }

    /// The shard and outbox puts before a digest root, and the root item's size.
    async fn digest_items(&self, connector: &ConnectorId, write: &DigestWrite) -> usize {
        let keys = "pk".len() + connector.as_str().len() + "sk".len();
        if let Some((_, shards)) = &write.digest {
            for shard in shards {
                let bytes = keys + "DIGEST#000".len() + "records".len() + 16 * shard.records.len();
                self.add(0, if shard.records.is_empty() { 1 } else { write_item(bytes) }, 1);
            }
        }
        let mut root = keys + "DIGEST".len();
        if write.digest.is_some() {
            root += "root".len() + ROOT_BYTES;
        }
        match &write.unconfirmed {
            None => {}
            Some(ids) if ids.len() <= INLINE_IDS => root += "unconfirmed".len() + ids_bytes(ids),
            Some(ids) => {
                root += "outbox".len() + 2;
                for chunk in ids.chunks(IDS_PER_OUTBOX) {
                    self.add(0, write_item(keys + "OUTBOX#0".len() + "ids".len() + ids_bytes(chunk)), 1);
                }
            }
        }
        root
    }

    async fn fenced(&self, connector: &ConnectorId, checkpoint: &Checkpoint, entries: &[LedgerEntry]) {
        let ids: Vec<MemoryId> = entries.iter().map(|e| e.memory_id.clone()).collect();
        let open = self.open_marks(connector);
        let actual: HashMap<MemoryId, Option<EntryStatus>> = self
            .inner
            .entries(connector, &ids)
            .await
            .unwrap_or_default()
            .iter()
            .map(|(id, e)| (id.clone(), Self::stored_status(&open, Some(e))))
            .collect();
        for part in entries.chunks(PART_MAX) {
            let pending: usize = part.iter().map(|e| 4 + e.memory_id.as_str().len()).sum();
            self.add(0, write_item(LEASE_ITEM_BYTES + pending), 1);
            let mut conflicts = Vec::new();
            for entry in part {
                let guess = self.hints(connector, |h| h.get(&entry.memory_id).copied().flatten());
                let now = actual.get(&entry.memory_id).copied().flatten();
                if guess == now {
                    let index = index_writes(now.and_then(indexed), indexed(entry.status));
                    self.add(0, write_item(entry_bytes(connector, entry, true)) + index, 1);
                } else {
                    self.add(0, 1, 1);
                    conflicts.push((entry, now));
                }
            }
            if !conflicts.is_empty() {
                self.batch_get(conflicts.iter().map(|(_, now)| now.map(|_| 60)));
                let units: u64 = conflicts
                    .iter()
                    .map(|(e, now)| {
                        transact_item(entry_bytes(connector, e, true))
                            + index_writes(now.and_then(indexed), indexed(e.status))
                    })
                    .sum();
                self.add(0, units + transact_item(LEASE_ITEM_BYTES), 1);
            }
            self.hints(connector, |h| h.extend(part.iter().map(|e| (e.memory_id.clone(), Some(e.status)))));
            self.written(connector, part.iter().map(|e| (e.memory_id.clone(), entry_bytes(connector, e, true))));
        }
        let marks = &checkpoint.marks;
        if entries.is_empty() && !marks.is_empty() {
            self.add(0, write_item(LEASE_ITEM_BYTES), 1);
        }
        let had_entries = !entries.is_empty() || !marks.is_empty();
        if had_entries && let Some(owner) = &checkpoint.lease_owner {
            self.write_marks(connector, owner, entries, marks);
        }
        if checkpoint.connector.is_none() && checkpoint.digest.is_none() {
            match (&checkpoint.run, had_entries) {
                (Some(run), true) => self.add(0, write_item(run_bytes(connector, run, self.ttl)), 1),
                (Some(run), false) => {
                    self.add(0, transact_item(LEASE_ITEM_BYTES) + transact_item(run_bytes(connector, run, self.ttl)), 1)
                }
                (None, true) => {}
                (None, false) => self.add(1, 0, 1),
            }
            return;
        }
        let mut units = transact_item(LEASE_ITEM_BYTES);
        if let Some(write) = &checkpoint.digest {
            units += transact_item(self.digest_items(connector, write).await);
        }
        units += self.tail(connector, checkpoint);
        self.add(0, units, 1);
    }

    fn tail(&self, connector: &ConnectorId, checkpoint: &Checkpoint) -> u64 {
        let state = checkpoint.connector.as_ref().map_or(0, |s| transact_item(record_bytes(s, connector, 5, 0)));
        let run = checkpoint.run.as_ref().map_or(0, |r| transact_item(run_bytes(connector, r, self.ttl)));
        state + run
    }

    async fn unfenced(&self, connector: &ConnectorId, checkpoint: &Checkpoint, entries: &[LedgerEntry]) {
        let mut tail = self.tail(connector, checkpoint);
        let mut tail_items = usize::from(checkpoint.connector.is_some()) + usize::from(checkpoint.run.is_some());
        if let Some(write) = &checkpoint.digest {
            tail += transact_item(self.digest_items(connector, write).await);
            tail_items += 1;
        }
        if entries.is_empty() {
            if tail > 0 {
                self.add(0, tail, 1);
            }
            return;
        }
        let ids: Vec<MemoryId> = entries.iter().map(|e| e.memory_id.clone()).collect();
        let actual = self.inner.entries(connector, &ids).await.unwrap_or_default();
        let parts: Vec<&[LedgerEntry]> = entries.chunks(TRANSACT_MAX - 1 - tail_items).collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            self.batch_get(part.iter().map(|e| actual.get(&e.memory_id).map(|_| 60)));
            let units: u64 = part
                .iter()
                .map(|e| {
                    let now = actual.get(&e.memory_id).map(|a| a.status);
                    // An entry written by a run keeps its write token.
                    transact_item(entry_bytes(connector, e, actual.contains_key(&e.memory_id)))
                        + index_writes(now.and_then(indexed), indexed(e.status))
                })
                .sum();
            let last = if i + 1 == count { tail } else { 0 };
            self.add(0, units + transact_item(LEASE_ITEM_BYTES) + last, 1);
            self.hints(connector, |h| h.extend(part.iter().map(|e| (e.memory_id.clone(), Some(e.status)))));
            self.written(
                connector,
                part.iter()
                    .map(|e| (e.memory_id.clone(), entry_bytes(connector, e, actual.contains_key(&e.memory_id)))),
            );
        }
    }
}

#[async_trait]
impl StateStore for CostModel {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        self.add(0, write_item(LEASE_ITEM_BYTES), 1);
        let outcome = self.inner.try_acquire_lease(connector, owner, now, ttl).await?;
        if matches!(outcome, LeaseOutcome::Acquired(_)) {
            self.hints(connector, HashMap::clear);
            self.load_marks(connector, owner);
        }
        Ok(outcome)
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        self.add(0, write_item(LEASE_ITEM_BYTES), 1);
        self.local(connector, |l| l.loaded = None);
        self.inner.release_lease(connector, owner).await
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        self.add(1, 0, 1);
        self.inner.lease(connector).await
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        let state = self.inner.connector_state(connector).await?;
        self.add(state.as_ref().map_or(1, |s| read_item(record_bytes(s, connector, 5, 0))), 0, 1);
        Ok(state)
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        self.add(1, 0, 1);
        self.inner.connectors().await
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let found = self.inner.entries(connector, ids).await?;
        let unique: std::collections::BTreeSet<&MemoryId> = ids.iter().collect();
        // The stored items (a marked new memory has none), then the marks.
        let open = self.open_marks(connector);
        let stored = |id: &MemoryId| Self::stored_status(&open, found.get(id));
        if unique.len() >= DENSE_MIN {
            // The ledger's size from the lease item's counts (marks aside).
            self.add(1, 0, 1);
            let all = self.inner.entries_with_status_after(connector, &EntryStatus::ALL, None, usize::MAX).await?;
            let total = all.iter().filter(|e| Self::stored_status(&open, Some(e)).is_some()).count();
            if let (Some(first), Some(last)) = (unique.first(), unique.last())
                && total > 0
                && unique.len() as u64 * DENSE_SHARE >= total as u64
            {
                let mut range: Vec<&LedgerEntry> = all
                    .iter()
                    .filter(|e| {
                        (*first..=*last).contains(&&e.memory_id) && Self::stored_status(&open, Some(e)).is_some()
                    })
                    .collect();
                range.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
                self.query_cost(range.iter().map(|e| self.stored_bytes(connector, e)));
                self.hints(connector, |h| h.extend(unique.iter().map(|id| ((*id).clone(), stored(id)))));
                self.read_marks(connector);
                return Ok(found);
            }
        }
        self.batch_get(unique.iter().map(|id| stored(id).and(found.get(*id)).map(|e| self.stored_bytes(connector, e))));
        self.hints(connector, |h| h.extend(unique.iter().map(|id| ((*id).clone(), stored(id)))));
        self.read_marks(connector);
        Ok(found)
    }

    /// One Query of the keys-only `name` index per name (its items hold
    /// `pk`, `sk` and the name), then a `BatchGetItem` per connector.
    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let found = self.inner.entries_named(names).await?;
        let wanted: std::collections::BTreeSet<&String> = names.iter().collect();
        for name in wanted {
            let keys: usize = found
                .iter()
                .filter(|(_, e)| &e.file_source == name)
                .map(|(c, e)| {
                    let item = "pk".len() + c.as_str().len() + "sk".len() + "ENTRY#".len() + e.memory_id.as_str().len();
                    item + 2 * ("file_source".len() + name.len()) + 40 - name.len()
                })
                .sum();
            self.add(read_query(keys, false), 0, 1);
        }
        let mut by_connector: BTreeMap<&ConnectorId, Vec<&LedgerEntry>> = BTreeMap::new();
        for (connector, entry) in &found {
            by_connector.entry(connector).or_default().push(entry);
        }
        for (connector, entries) in by_connector {
            self.batch_get(entries.iter().map(|e| Some(self.stored_bytes(connector, e))));
        }
        Ok(found)
    }

    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let found = self.inner.entries_with_status_after(connector, statuses, after, limit).await?;
        if statuses.is_empty() || limit == 0 {
            return Ok(found);
        }
        let open = self.read_marks(connector);
        if statuses.contains(&EntryStatus::Sending) && !open.is_empty() {
            let marked: Vec<&Mark> = open.values().filter(|m| after.is_none_or(|a| &m.memory_id > a)).collect();
            // The stored entries under the marks (sized as the marked ones: one unit each).
            let sizes: Vec<Option<usize>> = marked
                .iter()
                .map(|m| {
                    m.before
                        .and(found.iter().find(|e| e.memory_id == m.memory_id))
                        .map(|e| self.stored_bytes(connector, e))
                })
                .collect();
            self.batch_get(sizes);
        }
        if statuses.iter().all(|s| indexed(*s).is_some()) {
            let keys: usize = found.iter().map(|e| 60 + e.memory_id.as_str().len()).sum();
            self.add(read_query(keys, false), 0, statuses.len() as u64);
            self.batch_get(found.iter().map(|e| Some(self.stored_bytes(connector, e))));
        } else {
            // The ledger in key order (after `after`), a page (1 MB) at a
            // time, up to the page that completes `limit`.
            let mut all = self.inner.entries_with_status_after(connector, &EntryStatus::ALL, after, usize::MAX).await?;
            all.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
            let (mut page, mut kept) = (0usize, 0usize);
            for entry in &all {
                let bytes = self.stored_bytes(connector, entry);
                if page > 0 && page + bytes > QUERY_PAGE_BYTES {
                    self.add(read_query(page, true), 0, 1);
                    page = 0;
                    if kept >= limit {
                        break;
                    }
                }
                page += bytes;
                kept += usize::from(statuses.contains(&entry.status));
            }
            if page > 0 || all.is_empty() {
                self.add(read_query(page, true), 0, 1);
            }
        }
        self.hints(connector, |h| {
            h.extend(found.iter().map(|e| (e.memory_id.clone(), Self::stored_status(&open, Some(e)))));
        });
        Ok(found)
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        self.add(1, 0, 1);
        self.read_marks(connector);
        self.inner.status_counts(connector).await
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let checkpoint = if checkpoint.lease_owner.is_none() { checkpoint.marks_as_entries() } else { checkpoint };
        let mut latest: BTreeMap<MemoryId, LedgerEntry> = BTreeMap::new();
        for entry in &checkpoint.entries {
            latest.insert(entry.memory_id.clone(), entry.clone());
        }
        let entries: Vec<LedgerEntry> = latest.into_values().collect();
        match checkpoint.lease_owner {
            Some(_) => self.fenced(connector, &checkpoint, &entries).await,
            None => self.unfenced(connector, &checkpoint, &entries).await,
        }
        self.inner.checkpoint(connector, checkpoint).await
    }

    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        let view = self.inner.ledger_view(connector).await?;
        self.read_marks(connector);
        let keys = "pk".len() + connector.as_str().len() + "sk".len();
        let lease = Some(LEASE_ITEM_BYTES);
        let root = (view.digest.is_some() || view.unconfirmed.is_some()).then(|| {
            let inline = view.unconfirmed.as_ref().filter(|ids| ids.len() <= INLINE_IDS);
            let listed = inline.map_or("outbox".len() + 2, |ids| "unconfirmed".len() + ids_bytes(ids));
            keys + "DIGEST".len() + view.digest.as_ref().map_or(0, |_| "root".len() + ROOT_BYTES) + listed
        });
        self.batch_get([lease, root]);
        if let Some(ids) = view.unconfirmed.as_ref().filter(|ids| ids.len() > INLINE_IDS) {
            self.batch_get(ids.chunks(IDS_PER_OUTBOX).map(|c| Some(keys + "OUTBOX#0ids".len() + ids_bytes(c))));
        }
        Ok(view)
    }

    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError> {
        let found = self.inner.digest_shards(connector, shards).await?;
        let keys = "pk".len() + connector.as_str().len() + "sk".len() + "DIGEST#000".len();
        self.batch_get(
            found.iter().map(|s| (!s.records.is_empty()).then(|| keys + "records".len() + 16 * s.records.len())),
        );
        Ok(found)
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let runs = self.inner.runs(connector, limit).await?;
        self.add(read_query(runs.iter().map(|r| run_bytes(connector, r, self.ttl)).sum(), true), 0, 1);
        Ok(runs)
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        self.add(0, 1, 1);
        self.local(connector, |local| *local = Local::default());
        self.inner.reset(connector, now).await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.add(0, 1, 1);
        self.inner.prune_runs(connector, before).await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let value = self.inner.cache_get(key, now).await?;
        self.add(value.as_ref().map_or(1, |v| read_item(key.len() + v.len() + 40)), 0, 1);
        Ok(value)
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        self.add(0, write_item(key.len() + value.len() + 40), 1);
        self.inner.cache_put(key, value, expires_at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance::{self, StoreFactory};
    use crate::state::sqlite::SqliteStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The model is a store like the others: every call answers as the
    /// store it wraps does (the counting is checked against DynamoDB Local
    /// in `sync::cost_tests`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let count = Arc::new(AtomicUsize::new(0));
        let fresh: StoreFactory = Box::new(move || {
            let path = dir.path().join(format!("state-{}.db", count.fetch_add(1, Ordering::SeqCst)));
            Box::pin(async move {
                let sqlite = SqliteStore::open(&path).await.expect("open sqlite store");
                Arc::new(CostModel::new(Arc::new(sqlite))) as Arc<dyn StateStore>
            })
        });
        conformance::run_all(&fresh).await;
    }
}
