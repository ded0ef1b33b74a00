//! Records to items and back: the serde form of ledger entries, states and
//! runs (`serde_dynamo`), the lease's epoch milliseconds, the runs' TTL.

use super::DynamoStore;
use super::keys::*;
use crate::ids::{ConnectorId, RunId};
use crate::state::{EntryStatus, Lease, RunRecord, StateError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

impl DynamoStore {
    /// The lease an item of the `LEASE` key holds (`None`: released).
    pub(super) fn lease_from(&self, item: &Item) -> Result<Option<Lease>, StateError> {
        let Some(owner) = item.get("owner") else {
            return Ok(None);
        };
        let owner = owner.as_s().map_err(|_| self.corrupt("lease", "owner is not a string"))?;
        let millis = |name: &str| -> Result<DateTime<Utc>, StateError> {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .ok_or_else(|| self.corrupt("lease", format!("{name} is not epoch milliseconds")))
        };
        Ok(Some(Lease {
            owner: RunId::new(owner.clone()),
            acquired_at: millis("acquired_ms")?,
            expires_at: millis("expires_ms")?,
        }))
    }

    /// A number attribute of the `LEASE` item (absent: 0).
    pub(super) fn number(&self, item: &Item, name: &str) -> Result<i64, StateError> {
        match item.get(name) {
            None => Ok(0),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| self.corrupt("lease item", format!("{name} is not a number: {value:?}"))),
        }
    }

    /// Entry counts per status (statuses with none absent).
    pub(super) fn counts_of(&self, item: &Item) -> Result<BTreeMap<EntryStatus, u64>, StateError> {
        let mut counts = BTreeMap::new();
        for status in EntryStatus::ALL {
            let n = self.number(item, &count_attr(status))?;
            if n > 0 {
                counts.insert(status, n as u64);
            }
        }
        Ok(counts)
    }

    pub(super) fn record<T: serde::de::DeserializeOwned>(&self, what: &str, mut item: Item) -> Result<T, StateError> {
        item.remove(PK);
        item.remove(SK);
        item.remove(TTL_ATTRIBUTE);
        item.remove(OPEN_PK);
        item.remove(WRITE_TOKEN);
        serde_dynamo::from_item(item).map_err(|e| self.corrupt(what, e))
    }

    pub(super) fn item_of<T: serde::Serialize>(
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

    pub(super) fn run_item(&self, connector: &ConnectorId, run: &RunRecord) -> Result<Item, StateError> {
        let mut item = self.item_of("run record", run, connector, run_sk(run.started_at, &run.run_id))?;
        if let Some(ttl) = self.history_ttl {
            let expire = run.started_at.timestamp().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
            item.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(expire.to_string()));
        }
        Ok(item)
    }
}
