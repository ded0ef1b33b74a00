//! The ledger digest's items: `DIGEST` (the root and the unconfirmed ids),
//! `DIGEST#nnn` (a shard's records), `OUTBOX#n` (unconfirmed ids beyond what
//! the root keeps inline). See `state::digest`.

use super::DynamoStore;
use super::keys::*;
use crate::ids::{ConnectorId, MemoryId};
use crate::state::{DigestRoot, DigestShard, DigestWrite, LedgerView, StateError};
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;

/// Unconfirmed ids kept in the root item; more go to `OUTBOX#n` items.
const INLINE_IDS: usize = 200;
const IDS_PER_OUTBOX: usize = 2_000;
/// Shard writes in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

fn ids_value(ids: &[MemoryId]) -> AttributeValue {
    AttributeValue::L(ids.iter().map(|id| AttributeValue::S(id.as_str().to_owned())).collect())
}

impl DynamoStore {
    fn ids_of(&self, value: &AttributeValue) -> Result<Vec<MemoryId>, StateError> {
        let list = value.as_l().map_err(|_| self.corrupt("digest", "unconfirmed ids are not a list"))?;
        list.iter()
            .map(|v| v.as_s().map(|s| MemoryId::new(s.clone())))
            .collect::<Result<_, _>>()
            .map_err(|_| self.corrupt("digest", "an unconfirmed id is not a string"))
    }

    /// The lease item and the digest root in one consistent `BatchGetItem`.
    pub(super) async fn read_ledger_view(&self, connector: &ConnectorId) -> Result<LedgerView, StateError> {
        let items = self.batch_get_keys(vec![key(connector, LEASE_SK), key(connector, DIGEST_SK)], None).await?;
        let sk_of = |item: &Item| item.get(SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let lease = items.iter().find(|i| sk_of(i) == LEASE_SK);
        let root = items.iter().find(|i| sk_of(i) == DIGEST_SK);
        let (generation, entries) = match lease {
            Some(item) => {
                let generation = self.number(item, GENERATION)?;
                (u64::try_from(generation).unwrap_or(0), self.counts_of(item)?.values().sum())
            }
            None => (0, 0),
        };
        // A marked new memory is an entry too (`marks`).
        let open = self.open_marks(connector).await?;
        let entries = entries + open.values().filter(|m| m.before.is_none()).count() as u64;
        let Some(root) = root else {
            return Ok(LedgerView { generation, entries, digest: None, unconfirmed: None });
        };
        let digest = match root.get("root").map(|v| v.as_b()) {
            None => None,
            Some(Ok(bytes)) => Some(DigestRoot::from_bytes(bytes.as_ref()).map_err(|e| self.corrupt("digest", e))?),
            Some(Err(_)) => return Err(self.corrupt("digest", "root is not binary")),
        };
        let unconfirmed = match (root.get("unconfirmed"), root.get("outbox")) {
            (Some(inline), _) => Some(self.ids_of(inline)?),
            (None, Some(_)) => {
                let chunks = self.number(root, "outbox")?;
                let keys = (0..chunks).map(|n| key(connector, &format!("{OUTBOX_PREFIX}{n}"))).collect();
                let mut found = self.batch_get_keys(keys, None).await?;
                found.sort_by_key(|item| {
                    sk_of(item).strip_prefix(OUTBOX_PREFIX).and_then(|n| n.parse::<i64>().ok()).unwrap_or(i64::MAX)
                });
                let mut ids = Vec::new();
                for item in &found {
                    if let Some(value) = item.get("ids") {
                        ids.extend(self.ids_of(value)?);
                    }
                }
                Some(ids)
            }
            (None, None) => None,
        };
        Ok(LedgerView { generation, entries, digest: digest.filter(|root| root.generation == generation), unconfirmed })
    }

    pub(super) async fn read_digest_shards(
        &self,
        connector: &ConnectorId,
        shards: &[u16],
    ) -> Result<Vec<DigestShard>, StateError> {
        let keys = shards.iter().map(|s| key(connector, &shard_sk(*s))).collect();
        let found = self.batch_get_keys(keys, None).await?;
        let mut out = Vec::with_capacity(shards.len());
        for &shard in shards {
            let sk = shard_sk(shard);
            let item = found.iter().find(|i| i.get(SK).and_then(|v| v.as_s().ok()) == Some(&sk));
            let records = match item.and_then(|i| i.get("records")) {
                None => DigestShard { shard, records: Vec::new() },
                Some(value) => {
                    let bytes = value.as_b().map_err(|_| self.corrupt("digest shard", "records are not binary"))?;
                    DigestShard::from_bytes(shard, bytes.as_ref()).map_err(|e| self.corrupt("digest shard", e))?
                }
            };
            out.push(records);
        }
        Ok(out)
    }

    /// The root item of a digest write (the root, the unconfirmed ids or how
    /// many `OUTBOX#n` items hold them).
    pub(super) fn digest_item(&self, connector: &ConnectorId, write: &DigestWrite) -> Result<Item, StateError> {
        let mut item = key(connector, DIGEST_SK);
        if let Some((root, _)) = &write.digest {
            item.insert("root".into(), AttributeValue::B(root.to_bytes().into()));
        }
        match &write.unconfirmed {
            None => {}
            Some(ids) if ids.len() <= INLINE_IDS => {
                item.insert("unconfirmed".into(), ids_value(ids));
            }
            Some(ids) => {
                let chunks = ids.len().div_ceil(IDS_PER_OUTBOX);
                item.insert("outbox".into(), AttributeValue::N(chunks.to_string()));
            }
        }
        Ok(item)
    }

    /// What goes before the root: the shards that changed (an empty one is
    /// deleted) and the `OUTBOX#n` items. Not transactional: the root names
    /// each shard's sum and count, and a reader checks them.
    pub(super) async fn write_digest_items(
        &self,
        connector: &ConnectorId,
        write: &DigestWrite,
    ) -> Result<(), StateError> {
        let mut items: Vec<(Item, bool)> = Vec::new();
        if let Some((_, shards)) = &write.digest {
            for shard in shards {
                let mut item = key(connector, &shard_sk(shard.shard));
                let empty = shard.records.is_empty();
                if !empty {
                    item.insert("records".into(), AttributeValue::B(shard.to_bytes().into()));
                }
                items.push((item, empty));
            }
        }
        if let Some(ids) = write.unconfirmed.as_ref().filter(|ids| ids.len() > INLINE_IDS) {
            for (n, chunk) in ids.chunks(IDS_PER_OUTBOX).enumerate() {
                let mut item = key(connector, &format!("{OUTBOX_PREFIX}{n}"));
                item.insert("ids".into(), ids_value(chunk));
                items.push((item, false));
            }
        }
        let writes = items.into_iter().map(|(item, delete)| async move {
            if delete {
                let key = key(connector, item.get(SK).and_then(|v| v.as_s().ok()).map_or("", String::as_str));
                self.delete_item(key, "DeleteItem (digest shard)").await?;
            } else {
                self.put_item(item, "PutItem (digest)").await?;
            }
            Ok::<(), StateError>(())
        });
        let results: Vec<Result<(), StateError>> =
            futures_util::stream::iter(writes).buffer_unordered(WRITES_IN_FLIGHT).collect().await;
        results.into_iter().collect()
    }
}
