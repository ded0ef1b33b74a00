//! A checkpoint's transactions: the lease fence, each entry put conditional
//! on the status its count change assumed, and the `ADD` to the counts item.

use super::DynamoStore;
use super::keys::*;
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::{EntryStatus, LedgerEntry, StateError};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use std::collections::{BTreeMap, HashMap};

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

    pub(super) fn put(&self, item: Item) -> Result<TransactWriteItem, StateError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.fail("TransactWriteItems", &e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// One transaction of a checkpoint: the fence, these entries (each
    /// conditional on the status just read), the counts' change, `tail`.
    pub(super) async fn checkpoint_part(
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
    pub(super) fn put_entry(&self, item: Item, before: Option<EntryStatus>) -> Result<TransactWriteItem, StateError> {
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
    pub(super) fn add_counts(
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
    pub(super) async fn statuses(
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
