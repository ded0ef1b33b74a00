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
use std::collections::{BTreeMap, BTreeSet};

impl DynamoStore {
    pub(super) async fn entries_by_name(
        &self,
        names: &[String],
    ) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut keys: BTreeMap<ConnectorId, Vec<MemoryId>> = BTreeMap::new();
        for name in &wanted {
            match self.index_entries(NAME_INDEX, NAME_KEY, name, usize::MAX).await {
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
}
