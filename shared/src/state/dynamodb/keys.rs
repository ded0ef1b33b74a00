//! The table's keys: partition = connector, sort key = record kind (+ id),
//! and the `open` index key of unsettled entries.

use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::EntryStatus;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use std::time::Duration;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expire_at";
pub(super) const STATE_SK: &str = "STATE";
pub(super) const LEASE_SK: &str = "LEASE";
pub(super) const COUNTS_SK: &str = "COUNTS";
pub(super) const ENTRY_PREFIX: &str = "ENTRY#";
/// The sparse global index of unsettled ledger entries, and its key.
pub const OPEN_INDEX: &str = "open";
pub(super) const OPEN_PK: &str = "open_pk";
/// The keys-only global index of ledger entries by their LightRAG name
/// (hash key: the entries' own `file_source` attribute), for the
/// provenance lookups (decision 0022).
pub const NAME_INDEX: &str = "name";
pub(super) const NAME_KEY: &str = "file_source";
pub(super) const RUN_PREFIX: &str = "RUN#";
/// `TransactWriteItems` takes at most this many actions.
pub(super) const TRANSACT_MAX: usize = 100;
pub(super) const BATCH_GET_MAX: usize = 100;
pub(super) const BATCH_WRITE_MAX: usize = 25;
/// `BatchGetItem`/`BatchWriteItem` requests in flight at once when
/// reading many connectors or deleting a ledger.
pub(super) const OVERVIEW_REQUESTS: usize = 8;
/// Ledger keys a reset reads and deletes at a time.
pub(super) const RESET_PAGE: usize = 2_000;
/// Retries of unprocessed keys/items and of transaction conflicts.
pub(super) const MAX_RETRIES: u32 = 8;
/// How long `reset` holds the connector while it deletes.
pub(super) const RESET_LEASE: Duration = Duration::from_secs(300);

/// Statuses kept in the `open` index: all but the settled ones, which are
/// most of a ledger and never listed by status on the sync path.
pub(super) fn is_open(status: EntryStatus) -> bool {
    !matches!(status, EntryStatus::Processed | EntryStatus::WaitingTranscript)
}

/// `open_pk`: no status contains `#`, so two connectors never share one.
pub(super) fn open_key(connector: &ConnectorId, status: EntryStatus) -> String {
    format!("{}#{}", connector.as_str(), status.as_str())
}

/// Which sort keys of a connector a query reads.
pub(super) enum SortRange {
    Prefix(&'static str),
    /// Inclusive bounds.
    Between(String, String),
}

/// The partition of the key-value cache (enrichments): `#` keeps it apart
/// from connector ids, which start with a letter or digit.
pub(super) fn cache_partition() -> ConnectorId {
    ConnectorId::new("#CACHE")
}

pub(super) fn key(connector: &ConnectorId, sk: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(connector.as_str().to_owned())),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

pub(super) fn entry_sk(id: &MemoryId) -> String {
    format!("{ENTRY_PREFIX}{}", id.as_str())
}

pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn run_sk(started: DateTime<Utc>, run: &RunId) -> String {
    format!("{RUN_PREFIX}{}#{}", timestamp(started), run.as_str())
}
