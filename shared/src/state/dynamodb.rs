//! The DynamoDB state store (`aws` feature): one table for every connector.
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | connector state | connector id | `STATE` |
//! | lease | connector id | `LEASE` (`owner`, `acquired_ms`, `expires_ms`) |
//! | ledger entry | connector id | `ENTRY#<memory id>` (+ `open_pk` while unsettled) |
//! | entry counts | connector id | `COUNTS` (a number attribute per status) |
//! | run record | connector id | `RUN#<started_at, RFC 3339 ms>#<run id>` (+ TTL `expire_at`) |
//!
//! - The lease is a conditional `PutItem` (free, expired, or ours), the
//!   pattern Powertools' idempotency uses; a refusal returns the holder with
//!   `ReturnValuesOnConditionCheckFailure`.
//! - A page of memory ids is looked up with `BatchGetItem` (100 keys a call,
//!   strongly consistent, `UnprocessedKeys` retried with backoff).
//! - A checkpoint is one `TransactWriteItems` with a `ConditionCheck` on the
//!   lease as fence. Above 100 items it is split (docs/decisions: each part
//!   carries the fence, entries first, connector state and run record in the
//!   last part), so a crash between parts loses only bookkeeping of that
//!   batch, never claims progress that was not written.
//! - Run records carry the TTL attribute `expire_at` (`retention_days` after
//!   they started) so DynamoDB expires history on its own; `prune_runs` is
//!   the exact, immediate form the cleanup function runs.
//! - Ledger entries that are not settled (every status but `processed` and
//!   `waiting_transcript`) carry `open_pk` = `<connector>#<status>`, the key
//!   of the sparse, keys-only global index `open` (sort key `sk`). Listing
//!   entries by status (the confirmation at the start of every run, `failed`,
//!   `retry-failed`) queries that index and reads the items it names with a
//!   consistent `BatchGetItem`, so it costs what it finds, not the ledger.
//! - Entry counts per status live in one item per connector (`sk` =
//!   `COUNTS`, a number attribute per status), changed with `ADD` in the
//!   same transaction as the entries. Each entry put is conditional on the
//!   status the count change assumed (read just before), so a concurrent
//!   writer makes the transaction fail and retry instead of the counts
//!   drifting. `status` is one `GetItem`, whatever the ledger's size.
//! - `connectors()` is a consistent `Scan` of keys (the only scan; used for
//!   listings and retention, not on the sync path).
//!
//! Items of the ledger, state and runs are the serde form of the records
//! (`serde_dynamo`), timestamps RFC 3339; the lease keeps epoch milliseconds
//! so the condition can compare them.

use super::{
    Checkpoint, ConnectorState, EntryStatus, Lease, LeaseOutcome, LedgerEntry, RunRecord, StateError, StateStore,
};
use crate::config::StateConfig;
use crate::ids::{ConnectorId, MemoryId, RunId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, ConditionCheck, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expire_at";
const STATE_SK: &str = "STATE";
const LEASE_SK: &str = "LEASE";
const COUNTS_SK: &str = "COUNTS";
const ENTRY_PREFIX: &str = "ENTRY#";
/// The sparse global index of unsettled ledger entries, and its key.
pub const OPEN_INDEX: &str = "open";
const OPEN_PK: &str = "open_pk";
const RUN_PREFIX: &str = "RUN#";
/// `TransactWriteItems` takes at most this many actions.
const TRANSACT_MAX: usize = 100;
const BATCH_GET_MAX: usize = 100;
const BATCH_WRITE_MAX: usize = 25;
/// Retries of unprocessed keys/items and of transaction conflicts.
const MAX_RETRIES: u32 = 8;
/// How long `reset` holds the connector while it deletes.
const RESET_LEASE: Duration = Duration::from_secs(300);
/// The environment variable that names the table (wins over `state.table`).
pub const TABLE_ENV: &str = "STATE_TABLE";

/// The DynamoDB [`StateStore`]. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    history_ttl: Option<Duration>,
    /// Items returned by reads (queries, look-ups, scans) since `new`:
    /// what the reads cost, for tests and cost checks.
    items_read: Arc<AtomicU64>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore").field("table", &self.table).finish()
    }
}

impl DynamoStore {
    /// A store on `table` through `client` (no call is made).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), history_ttl: None, items_read: Arc::default() }
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

    /// Creates the table (on-demand, TTL on `expire_at`) unless it exists.
    /// For tests and local stacks; in AWS the SAM template owns the table.
    pub async fn create_table(&self) -> Result<(), StateError> {
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash).map_err(|e| self.fail("CreateTable", &e))?)
            .key_schema(key(SK, KeyType::Range).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(PK).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(SK).map_err(|e| self.fail("CreateTable", &e))?)
            .attribute_definitions(attr(OPEN_PK).map_err(|e| self.fail("CreateTable", &e))?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(OPEN_INDEX)
                    .key_schema(key(OPEN_PK, KeyType::Hash).map_err(|e| self.fail("CreateTable", &e))?)
                    .key_schema(key(SK, KeyType::Range).map_err(|e| self.fail("CreateTable", &e))?)
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()
                    .map_err(|e| self.fail("CreateTable", &e))?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(self.fail("CreateTable", &e)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| self.fail("UpdateTimeToLive", &e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| self.fail("UpdateTimeToLive", &e))?;
        Ok(())
    }

    fn fail<E: std::error::Error>(&self, operation: &str, error: &E) -> StateError {
        StateError::Database {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{operation}: {}", crate::aws::error_text(error)),
        }
    }

    fn corrupt(&self, what: &str, detail: impl fmt::Display) -> StateError {
        StateError::Corrupt {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{what}: {detail}"),
        }
    }

    async fn get(&self, connector: &ConnectorId, sk: &str, operation: &str) -> Result<Option<Item>, StateError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(connector, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(operation, &e))?;
        self.count_read(usize::from(got.item.is_some()));
        Ok(got.item)
    }

    fn lease_from(&self, item: &Item) -> Result<Lease, StateError> {
        let owner = item.get("owner").and_then(|v| v.as_s().ok()).ok_or_else(|| self.corrupt("lease", "no owner"))?;
        let millis = |name: &str| -> Result<DateTime<Utc>, StateError> {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .ok_or_else(|| self.corrupt("lease", format!("{name} is not epoch milliseconds")))
        };
        Ok(Lease {
            owner: RunId::new(owner.clone()),
            acquired_at: millis("acquired_ms")?,
            expires_at: millis("expires_ms")?,
        })
    }

    fn record<T: serde::de::DeserializeOwned>(&self, what: &str, mut item: Item) -> Result<T, StateError> {
        item.remove(PK);
        item.remove(SK);
        item.remove(TTL_ATTRIBUTE);
        item.remove(OPEN_PK);
        serde_dynamo::from_item(item).map_err(|e| self.corrupt(what, e))
    }

    fn item_of<T: serde::Serialize>(
        &self,
        what: &str,
        value: &T,
        connector: &ConnectorId,
        sk: String,
    ) -> Result<Item, StateError> {
        let mut item: Item = serde_dynamo::to_item(value).map_err(|e| self.corrupt(what, e))?;
        item.insert(PK.into(), AttributeValue::S(connector.as_str().to_owned()));
        item.insert(SK.into(), AttributeValue::S(sk));
        Ok(item)
    }

    fn run_item(&self, connector: &ConnectorId, run: &RunRecord) -> Result<Item, StateError> {
        let mut item = self.item_of("run record", run, connector, run_sk(run.started_at, &run.run_id))?;
        if let Some(ttl) = self.history_ttl {
            let expire = run.started_at.timestamp().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
            item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(expire.to_string()));
        }
        Ok(item)
    }

    /// Every item of a key-condition query (all pages), strongly consistent.
    async fn query_all(
        &self,
        operation: &str,
        connector: &ConnectorId,
        range: SortRange,
        projection: Option<&str>,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<Vec<Item>, StateError> {
        let (condition, values) = match range {
            SortRange::Prefix(prefix) => {
                ("#pk = :pk AND begins_with(#sk, :prefix)", vec![(":prefix", prefix.to_owned())])
            }
            SortRange::Between(low, high) => {
                ("#pk = :pk AND #sk BETWEEN :low AND :high", vec![(":low", low), (":high", high)])
            }
        };
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(connector.as_str().to_owned()))
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start.take());
            query = query.expression_attribute_names("#sk", SK);
            for (name, value) in &values {
                query = query.expression_attribute_values(*name, AttributeValue::S(value.clone()));
            }
            if let Some(projection) = projection {
                query = query.projection_expression(projection);
                if projection.contains("#status") {
                    query = query.expression_attribute_names("#status", "status");
                }
            }
            if let Some(limit) = limit {
                let left = limit.saturating_sub(items.len()).max(1);
                query = query.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let page = query.send().await.map_err(|e| self.fail(operation, &e))?;
            let page_items = page.items.unwrap_or_default();
            self.count_read(page_items.len());
            items.extend(page_items);
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// The memory ids the `open` index lists under these statuses, the
    /// first `limit` in memory-id order (each status's index partition is
    /// in `sk` order; they are merged here).
    async fn open_ids(
        &self,
        connector: &ConnectorId,
        statuses: &BTreeSet<EntryStatus>,
        limit: usize,
    ) -> Result<Vec<MemoryId>, IndexQuery> {
        let mut ids: Vec<MemoryId> = Vec::new();
        for status in statuses {
            let mut start: Option<Item> = None;
            let mut taken = 0usize;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(OPEN_INDEX)
                    .key_condition_expression("#open = :open")
                    .expression_attribute_names("#open", OPEN_PK)
                    .expression_attribute_values(":open", AttributeValue::S(open_key(connector, *status)))
                    .limit(i32::try_from(limit - taken).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        let text = crate::aws::error_text(&e);
                        // No such index (an older table), or one still being
                        // built after a stack update: read the ledger meanwhile.
                        return Err(if text.contains("specified index") || text.contains("backfilling") {
                            IndexQuery::Missing(text)
                        } else {
                            IndexQuery::Failed(self.fail("Query (open index)", &e))
                        });
                    }
                };
                let items = page.items.unwrap_or_default();
                self.count_read(items.len());
                for item in &items {
                    let sk = item.get(SK).and_then(|v| v.as_s().ok());
                    let id = sk.and_then(|sk| sk.strip_prefix(ENTRY_PREFIX)).ok_or_else(|| {
                        IndexQuery::Failed(self.corrupt("open index", format!("an item without an entry key: {sk:?}")))
                    })?;
                    ids.push(MemoryId::new(id));
                }
                taken += items.len();
                match page.last_evaluated_key {
                    Some(next) if !next.is_empty() && taken < limit => start = Some(next),
                    _ => break,
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// Deletes these keys with `BatchWriteItem`, retrying unprocessed ones.
    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StateError> {
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| self.fail("BatchWriteItem", &e))
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0;
            while !requests.is_empty() {
                let done = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| self.fail("BatchWriteItem", &e))?;
                requests = done.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(self.fail_text("BatchWriteItem", "items still unprocessed after retries"));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    fn fail_text(&self, operation: &str, detail: &str) -> StateError {
        StateError::Database {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{operation}: {detail}"),
        }
    }

    /// One `TransactWriteItems`. Conflicts with other transactions are
    /// retried; a failed condition is reported: the fence (the first action,
    /// if `fenced`) or another one (an entry changed since it was read).
    async fn transact(&self, actions: Vec<TransactWriteItem>, fenced: bool) -> Result<Transacted, StateError> {
        let mut attempt = 0;
        loop {
            let sent = self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await;
            let error = match sent {
                Ok(_) => return Ok(Transacted::Done),
                Err(error) => error,
            };
            let reasons: Vec<String> = error
                .as_service_error()
                .and_then(|s| match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                        Some(c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let failed_check = |r: &String| r == "ConditionalCheckFailed";
            if fenced && reasons.first().is_some_and(failed_check) {
                return Ok(Transacted::FenceFailed);
            }
            if reasons.iter().any(failed_check) {
                return Ok(Transacted::Stale);
            }
            let conflict = reasons.iter().any(|r| r == "TransactionConflict")
                || error.as_service_error().is_some_and(|s| s.is_transaction_in_progress_exception());
            attempt += 1;
            if !conflict || attempt > MAX_RETRIES {
                return Err(self.fail("TransactWriteItems", &error));
            }
            backoff(attempt).await;
        }
    }

    /// The lease fence: the lease item exists and `owner` holds it.
    fn fence(&self, connector: &ConnectorId, owner: &RunId) -> Result<TransactWriteItem, StateError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(connector, LEASE_SK)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StateError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The ledger items of these memory ids that exist: `BatchGetItem`,
    /// strongly consistent, 100 keys a call (duplicates removed: it refuses
    /// them), `UnprocessedKeys` retried with backoff.
    async fn batch_get(
        &self,
        connector: &ConnectorId,
        ids: &[&MemoryId],
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StateError> {
        let unique: BTreeSet<&MemoryId> = ids.iter().copied().collect();
        let unique: Vec<&MemoryId> = unique.into_iter().collect();
        let mut found = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys: Vec<Item> = chunk.iter().map(|id| key(connector, &entry_sk(id))).collect();
            let mut wanted = KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true);
            if let Some(projection) = projection {
                wanted = wanted
                    .projection_expression(projection)
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_names("#status", "status");
            }
            let mut request = Some(wanted.build().map_err(|e| self.fail("BatchGetItem", &e))?);
            let mut attempt = 0;
            while let Some(keys) = request.take() {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| self.fail("BatchGetItem", &e))?;
                let items = got.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
                self.count_read(items.len());
                found.extend(items);
                request = got.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                if request.is_some() {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(self.fail_text("BatchGetItem", "keys still unprocessed after retries"));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// One transaction of a checkpoint: the fence, these entries (each
    /// conditional on the status just read), the counts' change, `tail`.
    async fn checkpoint_part(
        &self,
        connector: &ConnectorId,
        fence: Option<&TransactWriteItem>,
        entries: &[LedgerEntry],
        tail: &[TransactWriteItem],
    ) -> Result<Vec<TransactWriteItem>, StateError> {
        let ids: Vec<&MemoryId> = entries.iter().map(|e| &e.memory_id).collect();
        let before = if ids.is_empty() { HashMap::new() } else { self.statuses(connector, &ids).await? };
        let mut actions = Vec::with_capacity(TRANSACT_MAX);
        actions.extend(fence.cloned());
        let mut delta: BTreeMap<EntryStatus, i64> = BTreeMap::new();
        for entry in entries {
            let was = before.get(&entry.memory_id).copied();
            if was != Some(entry.status) {
                if let Some(was) = was {
                    *delta.entry(was).or_default() -= 1;
                }
                *delta.entry(entry.status).or_default() += 1;
            }
            let mut item = self.item_of("ledger entry", entry, connector, entry_sk(&entry.memory_id))?;
            if is_open(entry.status) {
                item.insert(OPEN_PK.into(), AttributeValue::S(open_key(connector, entry.status)));
            }
            actions.push(self.put_entry(item, was)?);
        }
        delta.retain(|_, n| *n != 0);
        if !delta.is_empty() {
            actions.push(self.add_counts(connector, &delta)?);
        }
        actions.extend(tail.iter().cloned());
        Ok(actions)
    }

    /// A ledger entry put that only succeeds if the entry's status is still
    /// `before` (`None`: the entry does not exist).
    fn put_entry(&self, item: Item, before: Option<EntryStatus>) -> Result<TransactWriteItem, StateError> {
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = match before {
            None => put.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK),
            Some(status) => put
                .condition_expression("#status = :before")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":before", AttributeValue::S(status.as_str().to_owned())),
        };
        let put = put.build().map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// `ADD` of these per-status changes to the connector's counts item.
    fn add_counts(
        &self,
        connector: &ConnectorId,
        delta: &BTreeMap<EntryStatus, i64>,
    ) -> Result<TransactWriteItem, StateError> {
        let mut update =
            aws_sdk_dynamodb::types::Update::builder().table_name(&self.table).set_key(Some(key(connector, COUNTS_SK)));
        let mut parts = Vec::new();
        for (i, (status, n)) in delta.iter().enumerate() {
            parts.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), status.as_str())
                .expression_attribute_values(format!(":c{i}"), AttributeValue::N(n.to_string()));
        }
        let update = update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The current status of each of these entries (consistent).
    async fn statuses(
        &self,
        connector: &ConnectorId,
        ids: &[&MemoryId],
    ) -> Result<HashMap<MemoryId, EntryStatus>, StateError> {
        let mut out = HashMap::with_capacity(ids.len());
        for item in self.batch_get(connector, ids, Some("#sk, #status")).await? {
            let id = item.get(SK).and_then(|v| v.as_s().ok()).and_then(|sk| sk.strip_prefix(ENTRY_PREFIX));
            let status = item.get("status").and_then(|v| v.as_s().ok()).and_then(|s| EntryStatus::parse(s));
            match (id, status) {
                (Some(id), Some(status)) => {
                    out.insert(MemoryId::new(id), status);
                }
                _ => return Err(self.corrupt("ledger entry", format!("no memory id or known status in {item:?}"))),
            }
        }
        Ok(out)
    }
}

/// How a `TransactWriteItems` ended.
enum Transacted {
    Done,
    /// The lease fence failed: the run lost its lease.
    FenceFailed,
    /// Another condition failed: an entry changed since it was read.
    Stale,
}

/// Why the `open` index could not answer.
enum IndexQuery {
    /// The table has no such index (created before it existed).
    Missing(String),
    Failed(StateError),
}

/// Statuses kept in the `open` index: all but the settled ones, which are
/// most of a ledger and never listed by status on the sync path.
fn is_open(status: EntryStatus) -> bool {
    !matches!(status, EntryStatus::Processed | EntryStatus::WaitingTranscript)
}

/// `open_pk`: no status contains `#`, so two connectors never share one.
fn open_key(connector: &ConnectorId, status: EntryStatus) -> String {
    format!("{}#{}", connector.as_str(), status.as_str())
}

/// Which sort keys of a connector a query reads.
enum SortRange {
    Prefix(&'static str),
    /// Inclusive bounds.
    Between(String, String),
}

/// The partition of the key-value cache (enrichments): `#` keeps it apart
/// from connector ids, which start with a letter or digit.
fn cache_partition() -> ConnectorId {
    ConnectorId::new("#CACHE")
}

fn key(connector: &ConnectorId, sk: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(connector.as_str().to_owned())),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn entry_sk(id: &MemoryId) -> String {
    format!("{ENTRY_PREFIX}{}", id.as_str())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn run_sk(started: DateTime<Utc>, run: &RunId) -> String {
    format!("{RUN_PREFIX}{}#{}", timestamp(started), run.as_str())
}

/// 25 ms, 50 ms, ... capped at 1.6 s, with jitter.
async fn backoff(attempt: u32) {
    let base = 25u64 << attempt.min(6);
    let jitter = fastrand::u64(0..=base / 2);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
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
        let mut item = key(connector, LEASE_SK);
        item.insert("owner".into(), AttributeValue::S(owner.as_str().to_owned()));
        item.insert("acquired_ms".into(), AttributeValue::N(lease.acquired_at.timestamp_millis().to_string()));
        item.insert("expires_ms".into(), AttributeValue::N(lease.expires_at.timestamp_millis().to_string()));
        // `now` in whole milliseconds: expires (whole ms) <= now  <=>  expires_ms <= floor(now_ms).
        let now_ms = now.timestamp_millis();
        for attempt in 1..=MAX_RETRIES {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk) OR #expires <= :now OR #owner = :owner")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#expires", "expires_ms")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
                .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let error = match put {
                Ok(_) => return Ok(LeaseOutcome::Acquired(lease)),
                Err(error) => error,
            };
            let Some(refused) = error.as_service_error().and_then(|s| match s {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => Some(c),
                _ => None,
            }) else {
                return Err(self.fail("PutItem (lease)", &error));
            };
            let holder = match refused.item() {
                Some(item) => Some(self.lease_from(item)?),
                None => self.lease(connector).await?,
            };
            match holder {
                Some(held) if !held.can_be_taken_by(owner, now) => return Ok(LeaseOutcome::Held(held)),
                // Released or changed between the write and the read: try again.
                _ => backoff(attempt).await,
            }
        }
        Err(self.fail_text("PutItem (lease)", "the lease kept changing while acquiring it"))
    }

    async fn release_lease(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(connector, LEASE_SK)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.as_str().to_owned()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.fail("DeleteItem (lease)", &e)),
        }
    }

    async fn lease(&self, connector: &ConnectorId) -> Result<Option<Lease>, StateError> {
        self.get(connector, LEASE_SK, "GetItem (lease)").await?.map(|item| self.lease_from(&item)).transpose()
    }

    async fn connector_state(&self, connector: &ConnectorId) -> Result<Option<ConnectorState>, StateError> {
        self.get(connector, STATE_SK, "GetItem (state)")
            .await?
            .map(|item| self.record("connector state", item))
            .transpose()
    }

    async fn connectors(&self) -> Result<Vec<ConnectorId>, StateError> {
        let mut ids = BTreeSet::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PK)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.fail("Scan (connectors)", &e))?;
            let items = page.items.unwrap_or_default();
            self.count_read(items.len());
            for item in items {
                if let Some(AttributeValue::S(id)) = item.get(PK) {
                    // `#`-partitions (the cache) are not connectors: ids start alphanumeric.
                    if !id.starts_with('#') {
                        ids.insert(id.clone());
                    }
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(ids.into_iter().map(ConnectorId::new).collect()),
            }
        }
    }

    async fn entries(
        &self,
        connector: &ConnectorId,
        ids: &[MemoryId],
    ) -> Result<HashMap<MemoryId, LedgerEntry>, StateError> {
        let mut found = HashMap::with_capacity(ids.len());
        for item in self.batch_get(connector, &ids.iter().collect::<Vec<_>>(), None).await? {
            let entry: LedgerEntry = self.record("ledger entry", item)?;
            found.insert(entry.memory_id.clone(), entry);
        }
        Ok(found)
    }

    async fn entries_with_status(
        &self,
        connector: &ConnectorId,
        statuses: &[EntryStatus],
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let wanted: BTreeSet<EntryStatus> = statuses.iter().copied().collect();
        if wanted.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        if wanted.iter().all(|status| is_open(*status)) {
            match self.open_ids(connector, &wanted, limit).await {
                Ok(ids) => {
                    // The index is eventually consistent: read the items
                    // themselves (consistently) and keep those still wanted.
                    let found = self.entries(connector, &ids).await?;
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
        // is checked here instead so the page size stays the query's.
        let mut out = Vec::new();
        let items = self
            .query_all("Query (entries by status)", connector, SortRange::Prefix(ENTRY_PREFIX), None, None, true)
            .await?;
        for item in items {
            let entry: LedgerEntry = self.record("ledger entry", item)?;
            if wanted.contains(&entry.status) {
                out.push(entry);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn status_counts(&self, connector: &ConnectorId) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let mut counts = BTreeMap::new();
        let Some(item) = self.get(connector, COUNTS_SK, "GetItem (status counts)").await? else {
            return Ok(counts);
        };
        for status in EntryStatus::ALL {
            let n = match item.get(status.as_str()) {
                None => continue,
                Some(value) => value.as_n().ok().and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| {
                    self.corrupt("entry counts", format!("{} is not a number: {value:?}", status.as_str()))
                })?,
            };
            if n > 0 {
                counts.insert(status, n as u64);
            }
        }
        Ok(counts)
    }

    async fn checkpoint(&self, connector: &ConnectorId, checkpoint: Checkpoint) -> Result<(), StateError> {
        let Checkpoint { entries, connector: state, run, lease_owner } = checkpoint;
        // One action per item in a transaction: the last entry of a memory wins.
        let mut latest: BTreeMap<MemoryId, LedgerEntry> = BTreeMap::new();
        for entry in entries {
            latest.insert(entry.memory_id.clone(), entry);
        }
        let latest: Vec<LedgerEntry> = latest.into_values().collect();
        let mut last = Vec::with_capacity(2);
        // State and run record last: the last part of a split checkpoint.
        if let Some(state) = &state {
            last.push(self.put(self.item_of("connector state", state, connector, STATE_SK.to_owned())?)?);
        }
        if let Some(run) = &run {
            last.push(self.put(self.run_item(connector, run)?)?);
        }
        let lost = |owner: &Option<RunId>| StateError::LeaseLost {
            connector: connector.clone(),
            owner: owner.clone().unwrap_or_else(|| RunId::new("")),
        };
        if latest.is_empty() && last.is_empty() {
            if let Some(owner) = &lease_owner
                && self.lease(connector).await?.map(|l| l.owner).as_ref() != Some(owner)
            {
                return Err(lost(&lease_owner));
            }
            return Ok(());
        }
        let fence = lease_owner.as_ref().map(|owner| self.fence(connector, owner)).transpose()?;
        // Each part: the fence, its entries, the counts' change, and in the
        // last part the state and the run record.
        let per_part = TRANSACT_MAX - usize::from(fence.is_some()) - 1 - last.len();
        let mut parts: Vec<&[LedgerEntry]> = latest.chunks(per_part).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let tail = if i + 1 == count { last.as_slice() } else { &[] };
            let mut attempt = 0;
            loop {
                let actions = self.checkpoint_part(connector, fence.as_ref(), part, tail).await?;
                match self.transact(actions, fence.is_some()).await? {
                    Transacted::Done => break,
                    Transacted::FenceFailed => return Err(lost(&lease_owner)),
                    // An entry changed between our read and the write (a
                    // concurrent `retry-failed`): read again, recount.
                    Transacted::Stale => {
                        attempt += 1;
                        if attempt > MAX_RETRIES {
                            return Err(self
                                .fail_text("TransactWriteItems", "ledger entries kept changing while being written"));
                        }
                        backoff(attempt).await;
                    }
                }
            }
        }
        Ok(())
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
        let items = self
            .query_all("Query (reset)", connector, SortRange::Prefix(ENTRY_PREFIX), Some("#pk, #sk"), None, true)
            .await?;
        let mut keys: Vec<Item> = items;
        keys.push(key(connector, STATE_SK));
        keys.push(key(connector, COUNTS_SK));
        self.batch_delete(keys).await?;
        self.release_lease(connector, &me).await
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail("PutItem (cache)", &e))?;
        Ok(())
    }

    async fn prune_runs(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        let mut removed = 0u64;
        for connector in self.connectors().await? {
            let keys = self
                .query_all(
                    "Query (prune runs)",
                    &connector,
                    SortRange::Between(RUN_PREFIX.to_owned(), format!("{RUN_PREFIX}{}", timestamp(before))),
                    Some("#pk, #sk"),
                    None,
                    true,
                )
                .await?;
            removed += keys.len() as u64;
            self.batch_delete(keys).await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
