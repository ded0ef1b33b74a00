//! Ledger entries by their LightRAG name: one Query of the keys-only `name`
//! index per name (hash key `file_source`, every connector at once), then
//! the consistent `BatchGetItem` of the entries it names. The index is
//! eventually consistent, so an entry renamed a moment ago is checked
//! against its current item. A table without the index (deployed before
//! it) falls back to one consistent Scan of the table, with a warning: a
//! page at a time, keeping only the entries named (every ledger held
//! whole would not fit the api function).

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
            match self.index_entries(NAME_INDEX, NAME_KEY, name, None, usize::MAX).await {
                Ok(found) => {
                    for (connector, id) in found {
                        keys.entry(connector).or_default().push(id);
                    }
                }
                Err(IndexQuery::Missing(detail)) => {
                    tracing::warn!(table = %self.table, %detail, "the state table has no `name` index (deployed before it existed?): looking names up reads every ledger; update the stack");
                    return self.entries_named_by_scanning(&wanted).await;
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

    /// The ledger entries of every connector whose name is `wanted`: one
    /// Scan, each page's items dropped but for those, by connector and
    /// memory id.
    async fn entries_named_by_scanning(
        &self,
        wanted: &BTreeSet<&str>,
    ) -> Result<Vec<(ConnectorId, LedgerEntry)>, StateError> {
        let mut found: BTreeMap<(ConnectorId, MemoryId), LedgerEntry> = BTreeMap::new();
        self.scan_pages("Scan (entries by name)", None, |items| {
            for item in items {
                let is_entry = item.get(SK).and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with(ENTRY_PREFIX));
                let named = item.get(NAME_KEY).and_then(|v| v.as_s().ok()).is_some_and(|n| wanted.contains(n.as_str()));
                let Some(connector) = item.get(PK).and_then(|v| v.as_s().ok()).map(|pk| ConnectorId::new(pk.as_str()))
                else {
                    continue;
                };
                if is_entry && named {
                    let entry: LedgerEntry = self.record("ledger entry", item)?;
                    found.insert((connector, entry.memory_id.clone()), entry);
                }
            }
            Ok(())
        })
        .await?;
        Ok(found.into_iter().map(|((connector, _), entry)| (connector, entry)).collect())
    }
}
