//! The DynamoDB state store (`aws` feature): one table for every connector.
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | connector state | connector id | `STATE` |
//! | lease, entry counts, ledger generation, the batch being written | connector id | `LEASE` |
//! | ledger entry | connector id | `ENTRY#<memory id>` (+ `open_pk` while listed by status) |
//! | ledger digest root (+ unconfirmed ids) | connector id | `DIGEST` |
//! | ledger digest shard | connector id | `DIGEST#<000..127>` |
//! | unconfirmed ids beyond the root's | connector id | `OUTBOX#<n>` |
//! | run record | connector id | `RUN#<started_at, RFC 3339 ms>#<run id>` (+ TTL `expire_at`) |
//! | a run's `sending` marks | connector id | `MARKS#<run id>` |
//!
//! - The lease is a conditional `UpdateItem` of the `LEASE` item (free,
//!   expired, or ours), the pattern Powertools' idempotency uses; a refusal
//!   returns the holder with `ReturnValuesOnConditionCheckFailure`.
//! - A page of memory ids is looked up with `BatchGetItem` (100 keys a call,
//!   strongly consistent, `UnprocessedKeys` retried with backoff); a run
//!   reads only the entries its digest cannot vouch for (decision 26).
//! - **A run's batch** (a checkpoint with `lease_owner`) is one conditional
//!   `UpdateItem` of the `LEASE` item, which is the fence (`owner = me`) and
//!   adds the batch's count changes and records the batch (ids, statuses
//!   before and after, a token) as pending; then one conditional `PutItem`
//!   per entry (status as expected, carrying the token). A crash between
//!   leaves the pending batch; whoever writes next settles it first: entries
//!   without the token were not written, their count change is taken back.
//!   Connector state, digest and run record (when there is a state) go in
//!   one `TransactWriteItems` fenced by the `LEASE` item, last. Decision 10's
//!   promise holds: a crash loses at most one batch of bookkeeping, and the
//!   state never claims progress that was not written.
//! - A run's `sending` marks are not entry writes: one item per run holds
//!   those still open, rewritten by each checkpoint after its entries, and
//!   every read shows them as entries (`marks`, decision 28).
//! - Checkpoints without a lease (`retry-failed`, imports) are transactions
//!   as before: entries conditional on the statuses just read, the count
//!   changes and the generation in the same transaction, carrying the token
//!   an entry had (so a pending batch of a crashed run settles right).
//! - Run records carry the TTL attribute `expire_at` (`retention_days` after
//!   they started) so DynamoDB expires history on its own; `prune_runs` is
//!   the exact, immediate form the cleanup function runs.
//! - Ledger entries listed by status (`failed`, `lightrag_failed`,
//!   `update_pending`, `dead`) carry `open_pk` = `<connector>#<status>`, the
//!   key of the sparse, keys-only global index `open` (sort key `sk`).
//!   Listing by those statuses queries the index and reads the items it
//!   names with a consistent `BatchGetItem`, so it costs what it finds.
//! - Entry counts per status are number attributes of the `LEASE` item;
//!   `status` is one `GetItem`, whatever the ledger's size.
//! - Entries are found by their LightRAG name (`file_source`) through the
//!   keys-only global index `name` (hash key `file_source`), then read with
//!   the consistent `BatchGetItem`; see `names`.
//! - `connectors()` is a consistent `Scan` of keys (used for listings and
//!   retention, not on the sync path); the only other scan is the look-up
//!   by name on a table without the `name` index (see `names`).
//! - Every request's read and write units are counted ([`DynamoStore::units`],
//!   the rules of `state::cost`).
//!
//! Items of the ledger, state and runs are the serde form of the records
//! (`serde_dynamo`), timestamps RFC 3339; the lease keeps epoch milliseconds
//! so the condition can compare them.

mod batches;
mod counts;
mod digest;
mod io;
mod items;
mod keys;
mod marks;
mod names;
mod table;
mod units;

use io::{IndexQuery, backoff};
use keys::*;
pub use keys::{NAME_INDEX, OPEN_INDEX, TTL_ATTRIBUTE};

use super::cost::{DENSE_MIN, DENSE_SHARE, Units};
use super::{
    Checkpoint, ConnectorState, DigestShard, EntryStatus, Lease, LeaseOutcome, LedgerEntry, LedgerView, Overview,
    RunRecord, StateError, StateStore,
};
use crate::config::StateConfig;
use crate::ids::{ConnectorId, MemoryId, RunId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The environment variable that names the table (wins over `state.table`).
pub const TABLE_ENV: &str = "STATE_TABLE";

/// Statuses remembered per connector beyond which the memory is cleared.
const MAX_HINTS: usize = 200_000;

/// The DynamoDB [`StateStore`]. Cheap to clone (clones share counters and memory).
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    history_ttl: Option<Duration>,
    /// Items returned by reads (queries, look-ups, scans) since `new`:
    /// what the reads cost, for tests and cost checks.
    items_read: Arc<AtomicU64>,
    /// Read and write units of every request (see `state::cost`).
    units: Arc<Mutex<Units>>,
    /// Tags this instance's pending batches (`<run id>#<nonce>`).
    nonce: u64,
    local: Arc<Mutex<HashMap<ConnectorId, Local>>>,
}

/// What this instance knows of a connector between calls.
#[derive(Debug, Default)]
struct Local {
    /// The status each entry had when last read or written here (`None`:
    /// absent): what a run's batch expects, checked by its conditions.
    hints: HashMap<MemoryId, Option<EntryStatus>>,
    /// A batch of ours that failed half-way is still pending.
    unsettled: bool,
    /// The marks of the run holding the lease, when it wrote any here.
    marks: Option<marks::OwnMarks>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore").field("table", &self.table).finish()
    }
}

impl DynamoStore {
    /// A store on `table` through `client` (no call is made).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            history_ttl: None,
            items_read: Arc::default(),
            units: Arc::default(),
            nonce: fastrand::u64(..),
            local: Arc::default(),
        }
    }

    /// Run records expire (DynamoDB TTL) this long after they started.
    pub fn with_history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = Some(ttl);
        self
    }

    /// The store `state` names: table from `STATE_TABLE` or `state.table`,
    /// history TTL from `state.cleanup.retention_days`, client from the
    /// default AWS chain ([`crate::aws::sdk_config`]).
    pub async fn from_config(state: &StateConfig) -> Result<Self, StateError> {
        let table = std::env::var(TABLE_ENV).ok().filter(|t| !t.is_empty()).or_else(|| state.table.clone());
        let Some(table) = table else {
            return Err(StateError::Unsupported(format!(
                "dynamodb needs a table: set state.table or the {TABLE_ENV} environment variable"
            )));
        };
        let client = Client::new(&crate::aws::sdk_config().await);
        Ok(Self::for_table(client, table, state))
    }

    /// [`DynamoStore::from_config`] with a client already built (Lambda cold start).
    pub fn for_table(client: Client, table: String, state: &StateConfig) -> Self {
        let store = Self::new(client, table);
        if state.cleanup.enabled && state.cleanup.retention_days > 0 {
            store.with_history_ttl(Duration::from_secs(u64::from(state.cleanup.retention_days) * 86_400))
        } else {
            store
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Items returned by this store's reads so far (clones share the count).
    pub fn items_read(&self) -> u64 {
        self.items_read.load(Ordering::Relaxed)
    }

    fn count_read(&self, items: usize) {
        self.items_read.fetch_add(items as u64, Ordering::Relaxed);
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn with_local<T>(&self, connector: &ConnectorId, f: impl FnOnce(&mut Local) -> T) -> T {
        let mut all = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        f(all.entry(connector.clone()).or_default())
    }

    /// Remembers the statuses of these entries (`None`: absent).
    fn remember(&self, connector: &ConnectorId, seen: impl IntoIterator<Item = (MemoryId, Option<EntryStatus>)>) {
        self.with_local(connector, |local| {
            if local.hints.len() > MAX_HINTS {
                local.hints.clear();
            }
            local.hints.extend(seen);
        });
    }

    /// This instance's tag for batches of `owner`.
    fn batch_owner(&self, owner: &RunId) -> String {
        format!("{}#{:016x}", owner.as_str(), self.nonce)
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn try_acquire_lease(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StateError> {
        let lease = Lease::new(owner.clone(), now, ttl);
        // `now` in whole milliseconds: expires (whole ms) <= now  <=>  expires_ms <= floor(now_ms).
        let now_ms = now.timestamp_millis();
        for attempt in 1..=MAX_RETRIES {
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(connector, LEASE_SK)))
                .update_expression("SET #owner = :owner, acquired_ms = :acquired, expires_ms = :expires")
                .condition_expression("attribute_not_exists(#owner) OR #expires <= :now OR #owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#expires", "expires_ms")
                .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
                .expression_attribute_values(
                    ":acquired",
                    AttributeValue::N(lease.acquired_at.timestamp_millis().to_string()),
                )
                .expression_attribute_values(
                    ":expires",
                    AttributeValue::N(lease.expires_at.timestamp_millis().to_string()),
                )
                .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            self.charge(0, super::cost::write_item(LEASE_ITEM_BYTES));
            let error = match update {
                Ok(_) => {
                    // A new run: what this instance remembered may be old.
                    self.with_local(connector, |local| local.hints.clear());
                    if let Err(error) = self.load_marks(connector, owner).await {
                        // Not held by a run that cannot start.
                        let _ = self.release_lease(connector, owner).await;
                        return Err(error);
                    }
                    return Ok(LeaseOutcome::Acquired(lease));
                }
                Err(error) => error,
            };
            let Some(refused) = error.as_service_error().and_then(|s| match s {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                    Some(c)
                }
                _ => None,
            }) else {
                return Err(self.fail("UpdateItem (lease)", &error));
            };
            let holder = match refused.item() {
                Some(item) => self.lease_from(item)?,
                None => self.lease(connector).await?,
            };
            match holder {
                Some(held) if !held.can_be_taken_by(owner, now) => return Ok(LeaseOutcome::Held(held)),
                // Released or changed between the write and the read: try again.
                _ => backoff(attempt).await,
            }
        }
        Err(self.fail_text("UpdateItem (lease)", "the lease kept changing while acquiring it"))
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(connector, LEASE_SK)))
            .update_expression("REMOVE #owner, acquired_ms, expires_ms")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
            .send()
            .await;
        self.charge(0, super::cost::write_item(LEASE_ITEM_BYTES));
        self.with_local(connector, |local| local.marks = None);
        match released {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("UpdateItem (release lease)", &e)),
        }
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        match self.get(connector, LEASE_SK, "GetItem (lease)").await? {
            Some(item) => self.lease_from(&item),
            None => Ok(None),
        }
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        self.get(connector, STATE_SK, "GetItem (state)")
            .await?
            .map(|item| self.record("connector state", item))
            .transpose()
    }

    async fn overviews(&self, connectors: &[ConnectorId]) -> Result<Vec<Overview>, StateError> {
        use futures_util::StreamExt;
        // Two keys per connector; chunks of 50 connectors (100 keys), a few
        // requests in flight, so 1,000 connectors cost 20 requests.
        let unique: Vec<&ConnectorId> = connectors.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let chunks: Vec<Vec<Item>> = unique
            .chunks(BATCH_GET_MAX / 2)
            .map(|chunk| chunk.iter().flat_map(|c| [key(c, STATE_SK), key(c, LEASE_SK)]).collect())
            .collect();
        let mut pages = futures_util::stream::iter(chunks.into_iter().map(|keys| self.batch_get_keys(keys, None)))
            .buffer_unordered(OVERVIEW_REQUESTS);
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        while let Some(page) = pages.next().await {
            for item in page? {
                let pk = item.get(PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let sk = item.get(SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                found.insert((pk, sk), item);
            }
        }
        let mut out = Vec::with_capacity(connectors.len());
        for connector in connectors {
            let mut take = |sk: &str| found.remove(&(connector.as_str().to_owned(), sk.to_owned()));
            let state = take(STATE_SK).map(|item| self.record("connector state", item)).transpose()?;
            let lease = take(LEASE_SK).map(|item| self.lease_from(&item)).transpose()?.flatten();
            out.push(Overview { state, lease });
        }
        Ok(out)
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        let mut ids = BTreeSet::new();
        self.scan_pages("Scan (connectors)", Some("#pk, #sk, #owner"), |items| {
            for item in items {
                // A released lease keeps its item (the counts live there): not state.
                let released = item.get(SK).and_then(|v| v.as_s().ok()).is_some_and(|sk| sk == LEASE_SK)
                    && !item.contains_key("owner");
                if let Some(AttributeValue::S(id)) = item.get(PK)
                    && !released
                {
                    // `#`-partitions (the cache) are not connectors: ids start alphanumeric.
                    if !id.starts_with('#') {
                        ids.insert(id.clone());
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(ids.into_iter().map(ConnectorId::new).collect())
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let mut found = self.stored_entries(connector, ids).await?;
        let open = self.open_marks(connector).await?;
        Self::overlay(&mut found, ids.iter().cloned(), &open);
        Ok(found)
    }

    async fn entries_named(&self, names: &[String]) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        self.entries_by_name(names).await
    }

    async fn entries_with_status_after(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let wanted: BTreeSet<EntryStatus> = statuses.iter().copied().collect();
        if wanted.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let open = self.open_marks(connector).await?;
        if open.is_empty() {
            return self.stored_with_status_after(connector, &wanted, after, limit).await;
        }
        // A marked memory is `sending`, whatever its stored entry says.
        let mut out: Vec<LedgerEntry> = self
            .stored_with_status_after(connector, &wanted, after, limit.saturating_add(open.len()))
            .await?
            .into_iter()
            .filter(|e| !open.contains_key(&e.memory_id))
            .collect();
        if wanted.contains(&EntryStatus::Sending) {
            let ids: Vec<MemoryId> = open.keys().filter(|id| after.is_none_or(|a| *id > a)).cloned().collect();
            let mut marked = self.stored_entries(connector, &ids).await?;
            Self::overlay(&mut marked, ids, &open);
            out.extend(marked.into_values());
        }
        out.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
        out.truncate(limit);
        Ok(out)
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let mut counts = match self.get(connector, LEASE_SK, "GetItem (status counts)").await? {
            Some(item) => self.counts_of(&item)?,
            None => BTreeMap::new(),
        };
        let open = self.open_marks(connector).await?;
        Self::count_marks(&mut counts, &open);
        Ok(counts)
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let Some(owner) = checkpoint.lease_owner.clone() else {
            let Checkpoint { entries, connector: state, run, digest, .. } = checkpoint.marks_as_entries();
            return self.unfenced(connector, &Self::latest(entries), state, run, digest).await;
        };
        let Checkpoint { entries, marks, connector: state, run, digest, .. } = checkpoint;
        let entries = Self::latest(entries);
        for part in entries.chunks(PART_MAX) {
            self.fenced_part(connector, &owner, part).await?;
        }
        let fenced = !entries.is_empty() || !marks.is_empty();
        if entries.is_empty() && !marks.is_empty() {
            // Only the lease holder marks: the fence, with no entry.
            self.fenced_part(connector, &owner, &[]).await?;
        }
        if fenced {
            self.write_marks(connector, &owner, &entries, marks).await?;
        }
        self.fenced_tail(connector, &owner, state, run, digest, fenced).await
    }

    async fn ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        self.read_ledger_view(connector).await
    }

    async fn digest_shards(&self, connector: &ConnectorId, shards: &[u16]) -> Result<Vec<DigestShard>, StateError> {
        self.read_digest_shards(connector, shards).await
    }

    async fn runs(&self, connector: &ConnectorId, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items =
            self.query_all("Query (runs)", connector, SortRange::Prefix(RUN_PREFIX), None, Some(limit), false).await?;
        items.into_iter().map(|item| self.record("run record", item)).collect()
    }

    async fn reset(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        let reset = self.reset_ledger(connector, now).await;
        // Whatever is left, this instance knows nothing of it any more.
        self.with_local(connector, |local| *local = Local::default());
        reset
    }

    async fn cache_get(&self, cache_key: &str, now: DateTime<Utc>) -> Result<Option<String>, StateError> {
        let Some(item) = self.get(&cache_partition(), cache_key, "GetItem (cache)").await? else {
            return Ok(None);
        };
        let expired = item
            .get("expires")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|at| at <= now.timestamp_millis());
        if expired {
            return Ok(None);
        }
        Ok(item.get("value").and_then(|v| v.as_s().ok()).cloned())
    }

    async fn cache_put(
        &self,
        cache_key: &str,
        value: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StateError> {
        let mut item = key(&cache_partition(), cache_key);
        item.insert("value".into(), AttributeValue::S(value.to_owned()));
        if let Some(at) = expires_at {
            item.insert("expires".into(), AttributeValue::N(at.timestamp_millis().to_string()));
            // DynamoDB's TTL removes it some time after (exactness comes from `expires`).
            item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(at.timestamp().to_string()));
        }
        self.put_item(item, "PutItem (cache)").await
    }

    async fn prune_runs(&self, connector: &ConnectorId, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.prune_runs_paged(connector, before, RESET_PAGE).await
    }
}

impl DynamoStore {
    /// [`StateStore::reset`]'s work.
    async fn reset_ledger(&self, connector: &ConnectorId, now: DateTime<Utc>) -> Result<(), StateError> {
        // Hold the connector while deleting, so no run starts half-way.
        let me = RunId::new(format!("reset-{:016x}", fastrand::u64(..)));
        match self.try_acquire_lease(connector, &me, now, RESET_LEASE).await? {
            LeaseOutcome::Held(held) => {
                return Err(StateError::Busy {
                    connector: connector.clone(),
                    owner: held.owner,
                    expires_at: held.expires_at,
                });
            }
            LeaseOutcome::Acquired(_) => {}
        }
        // Page by page, so a ledger of millions is never held in memory;
        // each page's deletes run a few at a time, and the lease is renewed
        // between pages. A deleted item is not read again, so every query
        // starts from the beginning. Then the digest's shards and lists.
        for prefix in [ENTRY_PREFIX, SHARD_PREFIX, OUTBOX_PREFIX, MARKS_PREFIX] {
            loop {
                let page = Some(RESET_PAGE);
                let keys = self
                    .query_all("Query (reset)", connector, SortRange::Prefix(prefix), Some("#pk, #sk"), page, true)
                    .await?;
                if keys.is_empty() {
                    break;
                }
                self.delete_concurrently(keys).await?;
                if let LeaseOutcome::Held(held) =
                    self.try_acquire_lease(connector, &me, Utc::now(), RESET_LEASE).await?
                {
                    // Only after the lease expired mid-reset (a page took minutes).
                    return Err(StateError::Busy {
                        connector: connector.clone(),
                        owner: held.owner,
                        expires_at: held.expires_at,
                    });
                }
            }
        }
        // The lease item goes last: it holds the counts, and this reset's lease.
        self.batch_delete(vec![key(connector, STATE_SK), key(connector, DIGEST_SK), key(connector, LEASE_SK)]).await?;
        Ok(())
    }

    /// Entries of these statuses as stored (marks aside), by memory id after `after`.
    async fn stored_with_status_after(
        &self,
        connector: &ConnectorId,
        wanted: &BTreeSet<EntryStatus>,
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        if wanted.iter().all(|status| is_open(*status)) {
            match self.open_ids(connector, wanted, after, limit).await {
                Ok(ids) => {
                    // The index is eventually consistent: read the items
                    // themselves (consistently) and keep those still wanted.
                    let found = self.stored_by_key(connector, &ids).await?;
                    let mut out: Vec<LedgerEntry> =
                        found.into_values().filter(|e| wanted.contains(&e.status)).collect();
                    out.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
                    return Ok(out);
                }
                Err(IndexQuery::Missing(detail)) => {
                    tracing::warn!(table = %self.table, %detail, "the state table has no `open` index (deployed before it existed?): listing entries by status reads the whole ledger; update the stack");
                }
                Err(IndexQuery::Failed(e)) => return Err(e),
            }
        }
        // A filter expression would still read the whole ledger; the status
        // is checked here instead, a page at a time: only what is kept is
        // held, and the reading stops at the page that completes `limit`.
        let mut out = Vec::new();
        let prefix = match after {
            Some(after) => SortRange::PrefixAfter(ENTRY_PREFIX, entry_sk(after)),
            None => SortRange::Prefix(ENTRY_PREFIX),
        };
        self.query_pages("Query (entries by status)", connector, prefix, None, None, true, |page| {
            for item in page {
                let entry: LedgerEntry = self.record("ledger entry", item)?;
                if wanted.contains(&entry.status) {
                    out.push(entry);
                    if out.len() == limit {
                        return Ok(Next::Stop);
                    }
                }
            }
            Ok(Next::More(None))
        })
        .await?;
        self.remember(connector, out.iter().map(|e| (e.memory_id.clone(), Some(e.status))));
        Ok(out)
    }

    /// These entries as stored (marks aside). Many ids that are a good part
    /// of the ledger (a run's confirmation after a first sync, a full read)
    /// are read as the key range from the first to the last: a `Query`
    /// charges a unit per 4 KB read, a `BatchGetItem` one per item, and an
    /// entry is well under 1 KB.
    async fn stored_entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let mut found = HashMap::with_capacity(ids.len());
        let wanted: BTreeSet<&MemoryId> = ids.iter().collect();
        match (wanted.first(), wanted.last()) {
            (Some(first), Some(last)) if self.dense(connector, wanted.len()).await? => {
                let range = SortRange::Between(entry_sk(first), entry_sk(last));
                self.query_pages("Query (entries in a range)", connector, range, None, None, true, |page| {
                    for item in page {
                        let entry: LedgerEntry = self.record("ledger entry", item)?;
                        if wanted.contains(&entry.memory_id) {
                            found.insert(entry.memory_id.clone(), entry);
                        }
                    }
                    Ok(Next::More(None))
                })
                .await?;
            }
            _ => return self.stored_by_key(connector, ids).await,
        }
        self.remember(connector, ids.iter().map(|id| (id.clone(), found.get(id).map(|e| e.status))));
        Ok(found)
    }

    /// These entries as stored, read by key (`BatchGetItem`).
    async fn stored_by_key(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let mut found = HashMap::with_capacity(ids.len());
        for item in self.batch_get(connector, &ids.iter().collect::<Vec<_>>(), None).await? {
            let entry: LedgerEntry = self.record("ledger entry", item)?;
            found.insert(entry.memory_id.clone(), entry);
        }
        self.remember(connector, ids.iter().map(|id| (id.clone(), found.get(id).map(|e| e.status))));
        Ok(found)
    }

    /// Whether `n` ids are worth reading as a key range: at least
    /// [`DENSE_MIN`] of them, and at least one in [`DENSE_SHARE`] of the
    /// ledger's entries (its counts, one small read).
    async fn dense(&self, connector: &ConnectorId, n: usize) -> Result<bool, StateError> {
        if n < DENSE_MIN {
            return Ok(false);
        }
        let total: u64 = match self.get(connector, LEASE_SK, "GetItem (ledger size)").await? {
            Some(item) => self.counts_of(&item)?.values().sum(),
            None => 0,
        };
        // No counts (an empty or very old ledger): nothing says the range is small.
        Ok(total > 0 && n as u64 * DENSE_SHARE >= total)
    }

    /// One write per item: the last entry of a memory wins.
    fn latest(entries: Vec<LedgerEntry>) -> Vec<LedgerEntry> {
        let mut latest: BTreeMap<MemoryId, LedgerEntry> = BTreeMap::new();
        for entry in entries {
            latest.insert(entry.memory_id.clone(), entry);
        }
        latest.into_values().collect()
    }

    /// [`StateStore::prune_runs`], `page` keys read and deleted at a time
    /// (runs without a TTL, from before cleanup was on, may be years of
    /// them). A deleted key is not read again: every query starts over.
    async fn prune_runs_paged(
        &self,
        connector: &ConnectorId,
        before: DateTime<Utc>,
        page: usize,
    ) -> Result<u64, StateError> {
        let mut removed = 0;
        loop {
            let range = SortRange::Between(RUN_PREFIX.to_owned(), format!("{RUN_PREFIX}{}", timestamp(before)));
            let keys =
                self.query_all("Query (prune runs)", connector, range, Some("#pk, #sk"), Some(page), true).await?;
            if keys.is_empty() {
                return Ok(removed);
            }
            removed += keys.len() as u64;
            self.delete_concurrently(keys).await?;
        }
    }

    /// Deletes these keys in `BatchWriteItem`s, [`OVERVIEW_REQUESTS`] at once.
    async fn delete_concurrently(&self, keys: Vec<Item>) -> Result<(), StateError> {
        use futures_util::StreamExt;
        let chunks: Vec<Vec<Item>> = keys.chunks(BATCH_WRITE_MAX).map(<[Item]>::to_vec).collect();
        let mut deletes = futures_util::stream::iter(chunks.into_iter().map(|chunk| self.batch_delete(chunk)))
            .buffer_unordered(OVERVIEW_REQUESTS);
        while let Some(done) = deletes.next().await {
            done?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
