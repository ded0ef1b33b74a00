//! Checkpoints without a lease (`retry-failed`, imports, tests): each part
//! one `TransactWriteItems` of the entries (each conditional on the status
//! just read), the count changes and the generation on the lease item, and in
//! the last part the connector state, run record and digest root.

use super::DynamoStore;
use super::io::{Transacted, backoff};
use super::keys::*;
use super::units::item_bytes;
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::cost;
use crate::state::{ConnectorState, DigestWrite, EntryStatus, LedgerEntry, RunRecord, StateError};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use std::collections::{BTreeMap, HashMap};

/// A condition expression with its attribute names and values, for any of
/// the SDK's builders (one home for each rule a write is conditional on).
pub(super) struct Condition {
    pub expression: &'static str,
    pub names: HashMap<String, String>,
    pub values: Option<HashMap<String, AttributeValue>>,
}

impl Condition {
    fn new(expression: &'static str, names: &[(&str, &str)], values: &[(&str, AttributeValue)]) -> Self {
        let names = names.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let values: HashMap<_, _> = values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        Self { expression, names, values: (!values.is_empty()).then_some(values) }
    }

    /// The entry's status is still `before` (`None`: the entry does not exist).
    pub fn status_still(before: Option<EntryStatus>) -> Self {
        match before {
            None => Self::new("attribute_not_exists(#pk)", &[("#pk", PK)], &[]),
            Some(status) => Self::new(
                "#status = :before",
                &[("#status", "status")],
                &[(":before", AttributeValue::S(status.as_str().to_owned()))],
            ),
        }
    }

    /// On the lease item: `owner` holds the lease and no other writer's
    /// batch is pending (`me`: this writer's batch owner).
    pub fn batch_fence(owner: &RunId, me: String) -> Self {
        Self::new(
            "#owner = :owner AND (attribute_not_exists(#po) OR #po = :me)",
            &[("#owner", "owner"), ("#po", PENDING_OWNER), ("#pt", PENDING_TOKEN), ("#pi", PENDING_ITEMS)],
            &[(":owner", AttributeValue::S(owner.as_str().to_owned())), (":me", AttributeValue::S(me))],
        )
    }
}

/// An entry's status and write token as read just before a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Current {
    pub status: EntryStatus,
    pub token: Option<String>,
}

impl DynamoStore {
    /// The lease fence: the lease item exists and `owner` holds it.
    pub(super) fn fence(&self, connector: &ConnectorId, owner: &RunId) -> Result<TransactWriteItem, StateError> {
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

    /// A put inside a transaction, with what it costs there.
    pub(super) fn put(&self, item: Item) -> Result<(TransactWriteItem, u64), StateError> {
        let units = cost::transact_item(item_bytes(&item));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok((TransactWriteItem::builder().put(put).build(), units))
    }

    /// The last writes of a checkpoint, as transaction puts: the connector
    /// state, the run record and the digest root (its shards and unconfirmed
    /// ids are written here first, before the root that vouches for them).
    pub(super) async fn tail(
        &self,
        connector: &ConnectorId,
        state: Option<&ConnectorState>,
        run: Option<&RunRecord>,
        digest: Option<&DigestWrite>,
    ) -> Result<Vec<(TransactWriteItem, u64)>, StateError> {
        let mut tail = Vec::with_capacity(3);
        if let Some(state) = state {
            tail.push(self.put(self.item_of("connector state", state, connector, STATE_SK.to_owned())?)?);
        }
        if let Some(run) = run {
            tail.push(self.put(self.run_item(connector, run)?)?);
        }
        if let Some(write) = digest {
            self.write_digest_items(connector, write).await?;
            tail.push(self.put(self.digest_item(connector, write)?)?);
        }
        Ok(tail)
    }

    /// The ledger item of `entry`, with its `open` index key and write token.
    pub(super) fn entry_item(
        &self,
        connector: &ConnectorId,
        entry: &LedgerEntry,
        token: Option<&str>,
    ) -> Result<Item, StateError> {
        let mut item = self.item_of("ledger entry", entry, connector, entry_sk(&entry.memory_id))?;
        if is_open(entry.status) {
            item.insert(OPEN_PK.into(), AttributeValue::S(open_key(connector, entry.status)));
        }
        if let Some(token) = token {
            item.insert(WRITE_TOKEN.into(), AttributeValue::S(token.to_owned()));
        }
        Ok(item)
    }

    /// Writes `entries`, then `tail` (state, run record, digest root) in the
    /// last part, each part one transaction that moves the generation on.
    pub(super) async fn unfenced(
        &self,
        connector: &ConnectorId,
        entries: &[LedgerEntry],
        state: Option<ConnectorState>,
        run: Option<RunRecord>,
        digest: Option<DigestWrite>,
    ) -> Result<(), StateError> {
        let tail = self.tail(connector, state.as_ref(), run.as_ref(), digest.as_ref()).await?;
        if entries.is_empty() {
            if tail.is_empty() {
                return Ok(());
            }
            let units = tail.iter().map(|(_, u)| u).sum();
            let actions = tail.into_iter().map(|(a, _)| a).collect();
            return match self.transact(actions, false, units).await? {
                Transacted::Done => Ok(()),
                _ => Err(self.fail_text("TransactWriteItems", "a condition failed on an unconditional write")),
            };
        }
        let per_part = TRANSACT_MAX - 1 - tail.len();
        let parts: Vec<&[LedgerEntry]> = entries.chunks(per_part).collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let tail = if i + 1 == count { tail.as_slice() } else { &[] };
            let mut attempt = 0;
            loop {
                let ids: Vec<&MemoryId> = part.iter().map(|e| &e.memory_id).collect();
                let before = self.current(connector, &ids).await?;
                let mut actions = Vec::with_capacity(part.len() + 1 + tail.len());
                let mut units = 0;
                let mut delta: BTreeMap<EntryStatus, i64> = BTreeMap::new();
                for entry in part {
                    let was = before.get(&entry.memory_id);
                    let was_status = was.map(|c| c.status);
                    if was_status != Some(entry.status) {
                        if let Some(was) = was_status {
                            *delta.entry(was).or_default() -= 1;
                        }
                        *delta.entry(entry.status).or_default() += 1;
                    }
                    // A pending batch of a crashed run settles by these tokens: keep the one there.
                    let item = self.entry_item(connector, entry, was.and_then(|c| c.token.as_deref()))?;
                    units += cost::transact_item(item_bytes(&item))
                        + cost::index_writes(
                            was_status.filter(|s| is_open(*s)),
                            Some(entry.status).filter(|s| is_open(*s)),
                        );
                    actions.push(self.put_entry(item, was_status)?);
                }
                actions.push(self.add_counts(connector, &delta, true, None)?);
                units += cost::transact_item(LEASE_ITEM_BYTES);
                actions.extend(tail.iter().map(|(a, _)| a.clone()));
                units += tail.iter().map(|(_, u)| u).sum::<u64>();
                match self.transact(actions, false, units).await? {
                    Transacted::Done => break,
                    Transacted::FenceFailed | Transacted::Stale => {
                        // An entry changed between our read and the write: read again, recount.
                        attempt += 1;
                        if attempt > MAX_RETRIES {
                            return Err(self
                                .fail_text("TransactWriteItems", "ledger entries kept changing while being written"));
                        }
                        backoff(attempt).await;
                    }
                }
            }
            self.remember(connector, part.iter().map(|e| (e.memory_id.clone(), Some(e.status))));
        }
        Ok(())
    }

    /// A ledger entry put that only succeeds if the entry's status is still
    /// `before` (`None`: the entry does not exist).
    pub(super) fn put_entry(&self, item: Item, before: Option<EntryStatus>) -> Result<TransactWriteItem, StateError> {
        let condition = Condition::status_still(before);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values);
        let put = put.build().map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// `ADD` of these count changes to the lease item (and of 1 to the
    /// generation when `moves_generation`), only while `pending` (a token)
    /// is still the pending batch, when given.
    pub(super) fn add_counts(
        &self,
        connector: &ConnectorId,
        delta: &BTreeMap<EntryStatus, i64>,
        moves_generation: bool,
        pending: Option<&str>,
    ) -> Result<TransactWriteItem, StateError> {
        let mut update = Update::builder().table_name(&self.table).set_key(Some(key(connector, LEASE_SK)));
        let mut parts = Vec::new();
        for (i, (status, n)) in delta.iter().filter(|(_, n)| **n != 0).enumerate() {
            parts.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), count_attr(*status))
                .expression_attribute_values(format!(":c{i}"), AttributeValue::N(n.to_string()));
        }
        if moves_generation || parts.is_empty() {
            parts.push("#gen :one".into());
            update = update
                .expression_attribute_names("#gen", GENERATION)
                .expression_attribute_values(":one", AttributeValue::N(u8::from(moves_generation).to_string()));
        }
        if let Some(token) = pending {
            update = update
                .condition_expression("#ptok = :ptok")
                .expression_attribute_names("#ptok", PENDING_TOKEN)
                .expression_attribute_values(":ptok", AttributeValue::S(token.to_owned()));
        }
        let update = update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The current status and write token of each of these entries (consistent).
    pub(super) async fn current(
        &self,
        connector: &ConnectorId,
        ids: &[&MemoryId],
    ) -> Result<HashMap<MemoryId, Current>, StateError> {
        let mut out = HashMap::with_capacity(ids.len());
        for item in self.batch_get(connector, ids, Some("#sk, #status, #wt")).await? {
            let id = item.get(SK).and_then(|v| v.as_s().ok()).and_then(|sk| sk.strip_prefix(ENTRY_PREFIX));
            let status = item.get("status").and_then(|v| v.as_s().ok()).and_then(|s| EntryStatus::parse(s));
            let token = item.get(WRITE_TOKEN).and_then(|v| v.as_s().ok()).cloned();
            match (id, status) {
                (Some(id), Some(status)) => {
                    out.insert(MemoryId::new(id), Current { status, token });
                }
                _ => return Err(self.corrupt("ledger entry", format!("no memory id or known status in {item:?}"))),
            }
        }
        Ok(out)
    }
}
