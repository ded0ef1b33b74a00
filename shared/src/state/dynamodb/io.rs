//! The calls to DynamoDB, each with its paging, its retries of unprocessed
//! keys and transaction conflicts, and errors that name the table and the
//! operation. Every read is counted ([`DynamoStore::items_read`]).

use super::DynamoStore;
use super::keys::*;
use super::units::item_bytes;
use crate::ids::{ConnectorId, MemoryId};
use crate::retry::{self, Policy, Transient};
use crate::state::cost;
use crate::state::{EntryStatus, StateError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, TransactWriteItem, WriteRequest};
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

impl DynamoStore {
    pub(super) fn fail<E: std::error::Error>(&self, operation: &str, error: &E) -> StateError {
        StateError::Database {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{operation}: {}", crate::http::error_chain(error)),
        }
    }

    pub(super) fn corrupt(&self, what: &str, detail: impl fmt::Display) -> StateError {
        StateError::Corrupt {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{what}: {detail}"),
        }
    }

    pub(super) async fn get(
        &self,
        connector: &ConnectorId,
        sk: &str,
        operation: &str,
    ) -> Result<Option<Item>, StateError> {
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
        match &got.item {
            Some(item) => self.charge_reads(std::slice::from_ref(item), 0),
            None => self.charge_reads(&[], 1),
        }
        Ok(got.item)
    }

    /// Every item of a key-condition query (all pages), strongly consistent.
    pub(super) async fn query_all(
        &self,
        operation: &str,
        connector: &ConnectorId,
        range: SortRange,
        projection: Option<&str>,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        self.query_pages(operation, connector, range, projection, limit, forward, |page| {
            items.extend(page);
            Ok(match limit {
                Some(l) if items.len() >= l => {
                    items.truncate(l);
                    Next::Stop
                }
                Some(l) => Next::More(Some(l - items.len())),
                None => Next::More(None),
            })
        })
        .await?;
        Ok(items)
    }

    /// The pages of a key-condition query, strongly consistent, one at a
    /// time: `each` takes a page and says whether to read on (and at most how
    /// many items the next page may hold). `limit`: at most that many items
    /// in the first page.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn query_pages(
        &self,
        operation: &str,
        connector: &ConnectorId,
        range: SortRange,
        projection: Option<&str>,
        limit: Option<usize>,
        forward: bool,
        mut each: impl FnMut(Vec<Item>) -> Result<Next, StateError>,
    ) -> Result<(), StateError> {
        let mut start: Option<Item> = None;
        let (condition, values) = match range {
            SortRange::Prefix(prefix) => {
                ("#pk = :pk AND begins_with(#sk, :prefix)", vec![(":prefix", prefix.to_owned())])
            }
            SortRange::PrefixAfter(prefix, after) => {
                // DynamoDB's own cursor: the position need not hold an item.
                start = Some(key(connector, &after));
                ("#pk = :pk AND begins_with(#sk, :prefix)", vec![(":prefix", prefix.to_owned())])
            }
            SortRange::Between(low, high) => {
                ("#pk = :pk AND #sk BETWEEN :low AND :high", vec![(":low", low), (":high", high)])
            }
        };
        let mut limit = limit;
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
                query = query.limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
            }
            let page = query.send().await.map_err(|e| self.fail(operation, &e))?;
            let page_items = page.items.unwrap_or_default();
            self.count_read(page_items.len());
            self.charge(cost::read_query(page_items.iter().map(item_bytes).sum(), true), 0);
            match each(page_items)? {
                Next::Stop => return Ok(()),
                Next::More(next) => limit = next,
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// The pages of a consistent `Scan` of the whole table, one at a time
    /// (`each` takes a page). A projection may name `#pk`, `#sk` and `#owner`.
    pub(super) async fn scan_pages(
        &self,
        operation: &str,
        projection: Option<&str>,
        mut each: impl FnMut(Vec<Item>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut start: Option<Item> = None;
        loop {
            let mut scan =
                self.client.scan().table_name(&self.table).consistent_read(true).set_exclusive_start_key(start.take());
            if let Some(projection) = projection {
                scan = scan.projection_expression(projection);
                for (name, attribute) in [("#pk", PK), ("#sk", SK), ("#owner", "owner")] {
                    if projection.contains(name) {
                        scan = scan.expression_attribute_names(name, attribute);
                    }
                }
            }
            let page = scan.send().await.map_err(|e| self.fail(operation, &e))?;
            let items = page.items.unwrap_or_default();
            self.count_read(items.len());
            self.charge(cost::read_query(items.iter().map(item_bytes).sum(), true), 0);
            each(items)?;
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// The memory ids the `open` index lists under these statuses, the
    /// first `limit` in memory-id order (each status's index partition is
    /// in `sk` order; they are merged here).
    pub(super) async fn open_ids(
        &self,
        connector: &ConnectorId,
        statuses: &BTreeSet<EntryStatus>,
        after: Option<&MemoryId>,
        limit: usize,
    ) -> Result<Vec<MemoryId>, IndexQuery> {
        let mut ids: Vec<MemoryId> = Vec::new();
        let after = after.map(entry_sk);
        for status in statuses {
            let value = open_key(connector, *status);
            let found = self.index_entries(OPEN_INDEX, OPEN_PK, &value, after.as_deref(), limit).await?;
            ids.extend(found.into_iter().map(|(_, id)| id));
        }
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// The ledger entries (connector, memory id) a keys-only global index
    /// lists under `value` of its hash key `key`: every page, at most `limit`;
    /// with `after`, only sort keys after it (an index sorted by `sk`).
    pub(super) async fn index_entries(
        &self,
        index: &str,
        key: &str,
        value: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(ConnectorId, MemoryId)>, IndexQuery> {
        let operation = format!("Query ({index} index)");
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#key = :value")
                .expression_attribute_names("#key", key)
                .expression_attribute_values(":value", AttributeValue::S(value.to_owned()))
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(after) = after {
                query = query
                    .key_condition_expression("#key = :value AND #sk > :after")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":after", AttributeValue::S(after.to_owned()));
            }
            let page = query.send().await.map_err(|e| self.index_error(&operation, &e))?;
            let items = page.items.unwrap_or_default();
            self.count_read(items.len());
            // Keys only, and the index's own key: what the index item holds.
            let bytes: usize = items.iter().map(|i| item_bytes(i) + key.len() + 40).sum();
            self.charge(cost::read_query(bytes, false), 0);
            for item in &items {
                let pk = item.get(PK).and_then(|v| v.as_s().ok());
                let sk = item.get(SK).and_then(|v| v.as_s().ok());
                match (pk, sk.and_then(|sk| sk.strip_prefix(ENTRY_PREFIX))) {
                    (Some(pk), Some(id)) => found.push((ConnectorId::new(pk.as_str()), MemoryId::new(id))),
                    _ => {
                        let detail = format!("an item without an entry key: {sk:?}");
                        return Err(IndexQuery::Failed(self.corrupt(&format!("{index} index"), detail)));
                    }
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() && found.len() < limit => start = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// One unconditional `PutItem`, its write units counted.
    pub(super) async fn put_item(&self, item: Item, operation: &str) -> Result<(), StateError> {
        let units = cost::write_item(item_bytes(&item));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.fail(operation, &e))?;
        self.charge(0, units);
        Ok(())
    }

    /// A failed Query of a global index: no such index (an older table), or
    /// one still being built after a stack update, is `Missing` (the caller
    /// reads the ledger meanwhile); anything else is `Failed`.
    pub(super) fn index_error<E: std::error::Error>(&self, operation: &str, error: &E) -> IndexQuery {
        let text = crate::http::error_chain(error);
        if text.contains("specified index") || text.contains("backfilling") {
            IndexQuery::Missing(text)
        } else {
            IndexQuery::Failed(self.fail(operation, error))
        }
    }

    /// Deletes these keys with `BatchWriteItem`, retrying unprocessed ones.
    /// Deletes one item (a write unit for the small items deleted so).
    pub(super) async fn delete_item(&self, key: Item, operation: &str) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| self.fail(operation, &e))?;
        self.charge(0, 1);
        Ok(())
    }

    pub(super) async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StateError> {
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| self.fail("BatchWriteItem", &e))
                })
                .collect::<Result<_, _>>()?;
            let pending = Mutex::new(requests);
            let attempt = || async {
                let requests = std::mem::take(&mut *lock(&pending));
                let sent = requests.len();
                let done = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| Pass::Failed(self.fail("BatchWriteItem", &e)))?;
                let left = done.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                self.charge(0, (sent - left.len()) as u64);
                if left.is_empty() {
                    return Ok(());
                }
                *lock(&pending) = left;
                Err(Pass::Again(self.fail_text("BatchWriteItem", "items still unprocessed after retries")))
            };
            retry::retrying(STORE_RETRY, attempt, |_, _, _| {}).await.result.map_err(Pass::into_error)?;
        }
        Ok(())
    }

    pub(super) fn fail_text(&self, operation: &str, detail: &str) -> StateError {
        StateError::Database {
            path: PathBuf::from(format!("dynamodb:{}", self.table)),
            detail: format!("{operation}: {detail}"),
        }
    }

    /// One `TransactWriteItems`. Conflicts with other transactions are
    /// retried; a failed condition is reported: the fence (the first action,
    /// if `fenced`) or another one (an entry changed since it was read).
    /// `units`: what the transaction costs when it goes through.
    pub(super) async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        fenced: bool,
        units: u64,
    ) -> Result<Transacted, StateError> {
        let attempt = || async {
            let sent = self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await;
            let error = match sent {
                Ok(_) => {
                    self.charge(0, units);
                    return Ok(Transacted::Done);
                }
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
            let failure = self.fail("TransactWriteItems", &error);
            Err(if conflict { Pass::Again(failure) } else { Pass::Failed(failure) })
        };
        retry::retrying(STORE_RETRY, attempt, |_, _, _| {}).await.result.map_err(Pass::into_error)
    }

    /// The ledger items of these memory ids that exist: `BatchGetItem`,
    /// strongly consistent, 100 keys a call (duplicates removed: it refuses
    /// them), `UnprocessedKeys` retried with backoff.
    pub(super) async fn batch_get(
        &self,
        connector: &ConnectorId,
        ids: &[&MemoryId],
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StateError> {
        let unique: BTreeSet<&MemoryId> = ids.iter().copied().collect();
        let keys: Vec<Item> = unique.into_iter().map(|id| key(connector, &entry_sk(id))).collect();
        self.batch_get_keys(keys, projection).await
    }

    /// The items of these keys that exist: `BatchGetItem`, strongly
    /// consistent, 100 keys a call, `UnprocessedKeys` retried with backoff.
    /// Keys must be unique (DynamoDB refuses duplicates). A projection may
    /// name `#sk`, `#status` and `#wt`.
    pub(super) async fn batch_get_keys(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StateError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut wanted = KeysAndAttributes::builder().set_keys(Some(chunk.to_vec())).consistent_read(true);
            if let Some(projection) = projection {
                wanted = wanted.projection_expression(projection).expression_attribute_names("#sk", SK);
                for (name, attribute) in [("#status", "status"), ("#wt", WRITE_TOKEN)] {
                    if projection.contains(name) {
                        wanted = wanted.expression_attribute_names(name, attribute);
                    }
                }
            }
            let pending = Mutex::new(Some(wanted.build().map_err(|e| self.fail("BatchGetItem", &e))?));
            let asked = Mutex::new(chunk.len());
            let got_so_far = Mutex::new(Vec::new());
            let attempt = || async {
                let Some(keys) = lock(&pending).take() else { return Ok(()) };
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| Pass::Failed(self.fail("BatchGetItem", &e)))?;
                let items = got.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
                self.count_read(items.len());
                let left =
                    got.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                // Absent keys cost a read unit each too.
                let unanswered = left.as_ref().map_or(0, |k| k.keys().len());
                let mut asked = lock(&asked);
                self.charge_reads(&items, asked.saturating_sub(items.len() + unanswered));
                *asked = unanswered;
                drop(asked);
                lock(&got_so_far).extend(items);
                if left.is_none() {
                    return Ok(());
                }
                *lock(&pending) = left;
                Err(Pass::Again(self.fail_text("BatchGetItem", "keys still unprocessed after retries")))
            };
            retry::retrying(STORE_RETRY, attempt, |_, _, _| {}).await.result.map_err(Pass::into_error)?;
            found.extend(got_so_far.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
        Ok(found)
    }
}

/// How a `TransactWriteItems` ended.
pub(super) enum Transacted {
    Done,
    /// The lease fence failed: the run lost its lease.
    FenceFailed,
    /// Another condition failed: an entry changed since it was read.
    Stale,
}

/// Why the `open` index could not answer.
pub(super) enum IndexQuery {
    /// The table has no such index (created before it existed).
    Missing(String),
    Failed(StateError),
}

/// How the store's own loops retry: 25 ms, 50 ms, ... up to 1.6 s (each
/// with up to as much again of jitter), [`MAX_RETRIES`] times.
pub(super) const STORE_RETRY: Policy = Policy {
    retries: MAX_RETRIES,
    first_delay: Duration::from_millis(25),
    max_delay: Duration::from_millis(1600),
    multiplier: 2.0,
    // DynamoDB's own answers carry no `Retry-After`.
    max_retry_after: Duration::ZERO,
};

/// One pass of a retried store call that did not finish.
enum Pass {
    /// Unprocessed items or a transaction conflict: worth another pass.
    Again(StateError),
    Failed(StateError),
}

impl Pass {
    fn into_error(self) -> StateError {
        match self {
            Pass::Again(error) | Pass::Failed(error) => error,
        }
    }
}

impl Transient for Pass {
    fn is_transient(&self) -> bool {
        matches!(self, Pass::Again(_))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The wait before retry `attempt` of a loop that repeats a larger step
/// (taking the lease, re-reading a changed checkpoint), on [`STORE_RETRY`].
pub(super) async fn backoff(attempt: u32) {
    if let Some(delay) = STORE_RETRY.delay(attempt) {
        tokio::time::sleep(delay).await;
    }
}
