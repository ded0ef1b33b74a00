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
/// The lease, the entry counts, the ledger generation and the batch being
/// written: one item, so a batch's counts and its fence are one conditional
/// write (decision 26).
pub(super) const LEASE_SK: &str = "LEASE";
pub(super) const ENTRY_PREFIX: &str = "ENTRY#";
/// The ledger digest's root (and the unconfirmed ids).
pub(super) const DIGEST_SK: &str = "DIGEST";
/// A digest shard: `DIGEST#000` ... `DIGEST#127`.
pub(super) const SHARD_PREFIX: &str = "DIGEST#";
/// Unconfirmed ids beyond what the digest item keeps inline: `OUTBOX#0`, ...
pub(super) const OUTBOX_PREFIX: &str = "OUTBOX#";
/// The lease item's attributes besides the lease.
pub(super) const GENERATION: &str = "generation";
pub(super) const PENDING_OWNER: &str = "pend_owner";
pub(super) const PENDING_TOKEN: &str = "pend_token";
pub(super) const PENDING_ITEMS: &str = "pend_items";
/// The write token on a ledger entry: which batch wrote it.
pub(super) const WRITE_TOKEN: &str = "wt";
/// The sparse global index of unsettled ledger entries, and its key.
pub const OPEN_INDEX: &str = "open";
pub(super) const OPEN_PK: &str = "open_pk";
/// The keys-only global index of ledger entries by their LightRAG name
/// (hash key: the entries' own `file_source` attribute), for the
/// provenance lookups (decision 0022).
pub const NAME_INDEX: &str = "name";
pub(super) const NAME_KEY: &str = "file_source";
pub(super) const RUN_PREFIX: &str = "RUN#";
/// A run's `sending` marks: `MARKS#<run id>` (decision 28).
pub(super) const MARKS_PREFIX: &str = "MARKS#";
/// `TransactWriteItems` takes at most this many actions.
pub(super) const TRANSACT_MAX: usize = 100;
/// Entries of one batch write (a run's batch is pending as one record on the
/// lease item, which stays far below DynamoDB's 400 KB item limit).
pub(super) const PART_MAX: usize = 96;
/// The lease item's size besides a pending batch (lease, counts, generation),
/// for counting units: an update is charged by the item's size.
pub const LEASE_ITEM_BYTES: usize = 300;
pub(super) const BATCH_GET_MAX: usize = 100;
pub(super) const BATCH_WRITE_MAX: usize = 25;
/// `BatchGetItem`/`BatchWriteItem` requests in flight at once when
/// reading many connectors or deleting a ledger.
pub(super) const OVERVIEW_REQUESTS: usize = 8;
/// Keys a reset (ledger) or a prune (runs) reads and deletes at a time.
pub(super) const RESET_PAGE: usize = 2_000;
/// Retries of unprocessed keys/items and of transaction conflicts.
pub(super) const MAX_RETRIES: u32 = 8;
/// How long `reset` holds the connector while it deletes.
pub(super) const RESET_LEASE: Duration = Duration::from_secs(300);

/// Statuses kept in the `open` index ([`EntryStatus::listed_by_status`]).
pub(super) fn is_open(status: EntryStatus) -> bool {
    status.listed_by_status()
}

/// The lease item's count attribute of a status.
pub(super) fn count_attr(status: EntryStatus) -> String {
    format!("n_{}", status.as_str())
}

pub(super) fn shard_sk(shard: u16) -> String {
    format!("{SHARD_PREFIX}{shard:03}")
}

/// `open_pk`: no status contains `#`, so two connectors never share one.
pub(super) fn open_key(connector: &ConnectorId, status: EntryStatus) -> String {
    format!("{}#{}", connector.as_str(), status.as_str())
}

/// Which sort keys of a connector a query reads.
pub(super) enum SortRange {
    Prefix(&'static str),
    /// Under the prefix, from the first sort key after the given one.
    PrefixAfter(&'static str, String),
    /// Inclusive bounds.
    Between(String, String),
}

/// After a page of a query: stop, or read on (the next page holding at
/// most that many items, `None`: as many as fit).
pub(super) enum Next {
    Stop,
    More(Option<usize>),
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
