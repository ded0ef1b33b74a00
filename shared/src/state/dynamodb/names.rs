//! Ledger entries by their LightRAG name: one Query of the keys-only `name`
//! index per name (hash key `file_source`, every connector at once), then
//! the consistent `BatchGetItem` of the entries it names. The index is
//! eventually consistent, so an entry renamed a moment ago is checked
//! against its current item. A table without the index (deployed before
//! it) falls back to reading each connector's ledger, with a warning.

use super::DynamoStore;
use super::io::IndexQuery;
use super::keys::*;
use crate::ids::{ConnectorId, MemoryId};
use crate::state::{LedgerEntry, StateError, StateStore};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, BTreeSet};

impl DynamoStore {
    pub(super) async fn entries_by_name(
        &self,
        names: &[String],
    ) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut keys: BTreeMap<ConnectorId, Vec<MemoryId>> = BTreeMap::new();
        for name in &wanted {
            match self.name_keys(name).await {
                Ok(found) => {
                    for (connector, id) in found {
                        keys.entry(connector).or_default().push(id);
                    }
                }
                Err(IndexQuery::Missing(detail)) => {
                    tracing::warn!(table = %self.table, %detail, "the state table has no `name` index (deployed before it existed?): looking names up reads every ledger; update the stack");
                    return crate::state::entries_named_by_reading_all(self, names).await;
                }
                Err(IndexQuery::Failed(e)) => return Err(e),
            }
        }
        let mut out = Vec::new();
        for (connector, ids) in keys {
            let mut entries: Vec<LedgerEntry> = self
                .entries(&connector, &ids)
                .await?
                .into_values()
                .filter(|e| wanted.contains(e.file_source.as_str()))
                .collect();
            entries.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
            out.extend(entries.into_iter().map(|e| (connector.clone(), e)));
        }
        Ok(out)
    }

    /// The (connector, memory id) keys the `name` index lists under `name`.
    async fn name_keys(&self, name: &str) -> Result<Vec<(ConnectorId, MemoryId)>, IndexQuery> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(NAME_INDEX)
                .key_condition_expression("#name = :name")
                .expression_attribute_names("#name", NAME_KEY)
                .expression_attribute_values(":name", AttributeValue::S(name.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.index_error("Query (name index)", &e))?;
            let items = page.items.unwrap_or_default();
            self.count_read(items.len());
            for item in &items {
                let pk = item.get(PK).and_then(|v| v.as_s().ok());
                let id = item.get(SK).and_then(|v| v.as_s().ok()).and_then(|sk| sk.strip_prefix(ENTRY_PREFIX));
                match (pk, id) {
                    (Some(pk), Some(id)) => found.push((ConnectorId::new(pk.as_str()), MemoryId::new(id))),
                    _ => {
                        return Err(IndexQuery::Failed(
                            self.corrupt("name index", format!("an item that is not a ledger entry: {pk:?}")),
                        ));
                    }
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(found),
            }
        }
    }
}
