//! The ledger digest: what the ledger knew, at the end of the last run, about
//! the memories of the page that run fetched, kept beside the ledger so the
//! next run reads ledger entries only where something differs (decision 26).
//!
//! The stores keep it as data and guard its validity; what goes into a
//! record (which ledger states count as settled, how a memory is
//! fingerprinted) is the sync engine's rule (`sync::digest`).
//!
//! - A **record** is one memory of that page with an entry in the ledger:
//!   the fingerprint of its id and the fingerprint of its settled state
//!   (`0`: not settled, always read).
//! - Records fall into [`SHARDS`] shards by id fingerprint. The **root**
//!   holds each shard's wrapping sum of leaves and its number of records, so
//!   a run compares the page with the ledger shard by shard after reading
//!   one small item, and reads a shard's records only where the sums differ.
//! - **Validity.** Every store keeps a ledger *generation* per connector. A
//!   checkpoint that writes entries without holding the lease (`retry-failed`,
//!   imports) moves it on; a digest describes the generation it was made
//!   against and is only handed out while that is still the current one. A
//!   run's own writes keep the generation: a run that dies leaves the
//!   connector `running`, and the next run then reads the ledger in full.
//! - **Unconfirmed**: the memory ids whose documents were submitted and not
//!   yet confirmed processed, so the next run's confirmation needs no listing
//!   by status. Kept apart from the digest's validity (each id is read back).

use super::{EntryStatus, LedgerEntry, RunStatus, StateError, StateStore};
use crate::ids::{ConnectorId, MemoryId};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;

/// Shards of a digest. 128 keeps the root at ~1.5 KB (one read unit) and a
/// shard of a 10,000-memory page at ~80 records (~1.3 KB).
pub const SHARDS: usize = 128;

/// One memory of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DigestRecord {
    /// Fingerprint of the memory id; its shard is `id % SHARDS`.
    pub id: u64,
    /// Fingerprint of its settled ledger state; `0`: not settled.
    pub leaf: u64,
}

impl DigestRecord {
    pub fn shard(&self) -> usize {
        shard_of(self.id)
    }
}

/// The shard of an id fingerprint.
pub fn shard_of(id: u64) -> usize {
    (id % SHARDS as u64) as usize
}

/// The records of one shard, sorted by id fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestShard {
    pub shard: u16,
    pub records: Vec<DigestRecord>,
}

impl DigestShard {
    /// The wrapping sum of the leaves (what the root keeps).
    pub fn sum(&self) -> u64 {
        sum_of(self.records.iter().map(|r| r.leaf))
    }

    /// 16 bytes per record, little endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.records.len() * 16);
        for r in &self.records {
            out.extend_from_slice(&r.id.to_le_bytes());
            out.extend_from_slice(&r.leaf.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(shard: u16, bytes: &[u8]) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(16) {
            return Err(format!("digest shard {shard}: {} bytes is not a whole number of records", bytes.len()));
        }
        let records = bytes
            .chunks_exact(16)
            .map(|c| DigestRecord { id: le_u64(&c[..8]), leaf: le_u64(&c[8..]) })
            .collect::<Vec<_>>();
        if records.windows(2).any(|w| w[0].id >= w[1].id) || records.iter().any(|r| r.shard() != usize::from(shard)) {
            return Err(format!("digest shard {shard}: records out of order or in the wrong shard"));
        }
        Ok(Self { shard, records })
    }
}

/// The wrapping sum of leaves.
pub fn sum_of(leaves: impl IntoIterator<Item = u64>) -> u64 {
    leaves.into_iter().fold(0u64, u64::wrapping_add)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

/// The digest's root: per shard the sum of leaves and the number of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRoot {
    /// The ledger generation the digest describes.
    pub generation: u64,
    /// Keys the fingerprints (random per digest): the Memory API's data
    /// cannot be chosen to make two states sum alike.
    pub salt: u64,
    /// Every ledger entry of the connector has a record: a memory without
    /// one is known to be new.
    pub complete: bool,
    /// `SHARDS` sums.
    pub sums: Vec<u64>,
    /// `SHARDS` record counts.
    pub counts: Vec<u32>,
}

const ROOT_VERSION: u8 = 1;
const ROOT_BYTES: usize = 1 + 8 + 8 + 1 + SHARDS * 12;

impl DigestRoot {
    /// An empty digest (no records) for `generation` under `salt`.
    pub fn empty(generation: u64, salt: u64) -> Self {
        Self { generation, salt, complete: true, sums: vec![0; SHARDS], counts: vec![0; SHARDS] }
    }

    pub fn records(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROOT_BYTES);
        out.push(ROOT_VERSION);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.salt.to_le_bytes());
        out.push(u8::from(self.complete));
        for (sum, count) in self.sums.iter().zip(&self.counts) {
            out.extend_from_slice(&sum.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != ROOT_BYTES || bytes[0] != ROOT_VERSION {
            return Err(format!("digest root: {} bytes of version {:?}", bytes.len(), bytes.first()));
        }
        let complete = match bytes[17] {
            0 => false,
            1 => true,
            other => return Err(format!("digest root: completeness flag {other}")),
        };
        let (mut sums, mut counts) = (Vec::with_capacity(SHARDS), Vec::with_capacity(SHARDS));
        for chunk in bytes[18..].chunks_exact(12) {
            sums.push(le_u64(&chunk[..8]));
            let mut c = [0u8; 4];
            c.copy_from_slice(&chunk[8..]);
            counts.push(u32::from_le_bytes(c));
        }
        Ok(Self { generation: le_u64(&bytes[1..9]), salt: le_u64(&bytes[9..17]), complete, sums, counts })
    }
}

/// Binary parts of a digest in the JSON store: base64 strings.
macro_rules! base64_serde {
    ($ty:ty, $to:expr, $from:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&STANDARD.encode($to(self)))
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let bytes = STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)?;
                $from(&bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}

base64_serde!(DigestRoot, DigestRoot::to_bytes, DigestRoot::from_bytes);

/// A shard as the JSON store keeps it (the shard number is the map key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardBytes(pub Vec<u8>);

base64_serde!(ShardBytes, |s: &ShardBytes| s.0.clone(), |b: &[u8]| Ok::<_, String>(ShardBytes(b.to_vec())));

/// What a run reads first: the generation, the ledger's size, the digest
/// (when it still describes the ledger) and the unconfirmed ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerView {
    pub generation: u64,
    /// Entries in the ledger (all statuses).
    pub entries: u64,
    /// `None` when there is none, or it was made against another generation.
    pub digest: Option<DigestRoot>,
    /// `None` when never recorded (a ledger older than the digest).
    pub unconfirmed: Option<Vec<MemoryId>>,
}

/// The digest part of a checkpoint (a run's last write).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestWrite {
    /// The new root and the shards that changed (the others keep their
    /// records); `None` forgets the digest (the next run reads in full).
    pub digest: Option<(DigestRoot, Vec<DigestShard>)>,
    /// `None`: not known (the next run lists submitted entries by status).
    pub unconfirmed: Option<Vec<MemoryId>>,
}

impl DigestWrite {
    /// Whether the root names these shards' current contents: the root's
    /// sums and counts agree with each written shard.
    pub fn is_consistent(&self) -> bool {
        self.digest.as_ref().is_none_or(|(root, shards)| {
            root.sums.len() == SHARDS
                && root.counts.len() == SHARDS
                && shards.iter().all(|s| {
                    let i = usize::from(s.shard);
                    i < SHARDS && root.sums[i] == s.sum() && root.counts[i] as usize == s.records.len()
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_shard_round_trip_through_bytes() {
        let mut root = DigestRoot::empty(7, 0xdead_beef);
        root.sums[3] = u64::MAX;
        root.counts[3] = 2;
        root.complete = false;
        assert_eq!(DigestRoot::from_bytes(&root.to_bytes()), Ok(root.clone()));
        assert!(DigestRoot::from_bytes(&root.to_bytes()[1..]).is_err());
        let shard = DigestShard {
            shard: 3,
            records: vec![DigestRecord { id: 3, leaf: u64::MAX }, DigestRecord { id: 131, leaf: 1 }],
        };
        assert_eq!(shard.sum(), 0, "wrapping");
        assert_eq!(DigestShard::from_bytes(3, &shard.to_bytes()), Ok(shard.clone()));
        assert!(DigestShard::from_bytes(4, &shard.to_bytes()).is_err(), "records of another shard");
        let json = serde_json::to_string(&root).expect("json");
        assert_eq!(serde_json::from_str::<DigestRoot>(&json).expect("parse"), root);
    }
}

/// How long before the end of the last clean run a submitted entry of a
/// later run may say it was delivered (clocks of two hosts disagree).
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Run records looked through for the last clean run.
const HISTORY: usize = 50;

/// Which stored entries wait for LightRAG's word (decision 29). A document
/// LightRAG confirmed processed keeps its `submitted` entry: the
/// confirmation only takes it off the watch list the last run recorded (the
/// digest's unconfirmed ids), so confirming costs no entry write.
/// - A `sending` mark always waits.
/// - A `submitted` entry waits when the list names it; after a run that did
///   not end cleanly (killed, timed out, failed: what it submitted may not
///   be on the list) also when it was delivered after the last clean run
///   ended ([`Watch::since`]).
/// - Without a list (a ledger older than the list), every `submitted`
///   entry waits, as it did then.
#[derive(Debug, Default)]
pub struct Watch {
    listed: Option<HashSet<MemoryId>>,
    since: Option<DateTime<Utc>>,
}

impl Watch {
    /// `since`: from [`Watch::since`].
    pub fn new(listed: Option<&[MemoryId]>, since: Option<DateTime<Utc>>) -> Self {
        Self { listed: listed.map(|ids| ids.iter().cloned().collect()), since }
    }

    /// After a run that did not end cleanly (`state` says it is still
    /// running, failed or timed out), the time from which submitted entries
    /// wait whatever the list says: when the last clean run (completed or
    /// partial) ended, less [`CLOCK_SKEW`]; the beginning of time when none
    /// is in the recent history. `None` after a clean run.
    pub async fn since(
        store: &dyn StateStore,
        connector: &ConnectorId,
        state: Option<&super::ConnectorState>,
    ) -> Result<Option<DateTime<Utc>>, StateError> {
        let unclean =
            state.is_some_and(|s| matches!(s.status, RunStatus::Running | RunStatus::Failed | RunStatus::TimedOut));
        if !unclean {
            return Ok(None);
        }
        let runs = store.runs(connector, HISTORY).await?;
        let clean = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Completed | RunStatus::Partial))
            .find_map(|r| r.finished_at);
        Ok(Some(clean.map_or(DateTime::<Utc>::MIN_UTC, |at| at - CLOCK_SKEW)))
    }

    /// The watch `status` and look-ups read: the recorded list, and the
    /// connector's state and history.
    pub async fn of(store: &dyn StateStore, connector: &ConnectorId) -> Result<Self, StateError> {
        let view = store.ledger_view(connector).await?;
        let state = store.connector_state(connector).await?;
        let since = Self::since(store, connector, state.as_ref()).await?;
        Ok(Self::new(view.unconfirmed.as_deref(), since))
    }

    /// Whether a run did not end cleanly before this watch: what it
    /// submitted is looked for beyond the list.
    pub fn after_unclean_run(&self) -> bool {
        self.since.is_some()
    }

    /// An entry's status as LightRAG last confirmed it: a `submitted` one
    /// off the watch is processed.
    pub fn status_of(&self, entry: &LedgerEntry) -> EntryStatus {
        match entry.status {
            EntryStatus::Submitted if !self.awaits(entry) => EntryStatus::Processed,
            status => status,
        }
    }

    pub fn awaits(&self, entry: &LedgerEntry) -> bool {
        match entry.status {
            EntryStatus::Sending => true,
            EntryStatus::Submitted => match &self.listed {
                None => true,
                Some(listed) => {
                    listed.contains(&entry.memory_id)
                        || self.since.is_some_and(|since| entry.last_ingested.is_none_or(|at| at >= since))
                }
            },
            _ => false,
        }
    }
}
