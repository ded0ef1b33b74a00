//! The ledger digest, the engine's side (decision 26): which ledger states
//! let a fetched memory go unread, how memories and entries are
//! fingerprinted, how a page is compared with the digest, and the digest a
//! run leaves for the next one. Pure functions; `lookup` drives them.
//!
//! **Settled.** `plan` leaves a memory alone, whatever the clock and without
//! `--force`, in exactly two cases, and only these enter the digest:
//! - the entry is `submitted` or `processed` with content hash `h` and a
//!   provenance record, and the memory renders (with its enrichment) to a
//!   document of hash `h`: unchanged (without a provenance record `plan`'s
//!   caller writes one, so the entry is read);
//! - the entry is `waiting_transcript` with nothing delivered and the memory
//!   still renders to nothing: still waiting, nothing to record.
//!
//! A leaf also holds the entry's name in LightRAG, and a memory expects the
//! name the rule makes for it: an entry under a name an older rule made is
//! always read, so the run checks its identity in the sink (decision 0001)
//! on the real name.
//!
//! Every other entry (failed, dead, in LightRAG's failure backoff, an update
//! pending, a delivered memory that lost its text) has leaf `0`, which no
//! memory's expectation equals: it is always read, and `plan` decides on the
//! real entry. A memory's expectation is what its entry must be for the
//! first case (it renders to a document) or the second (it renders to
//! nothing), so a digest match gives `plan`'s answer without the entry.

use crate::ids::MemoryId;
use crate::state::digest::{DigestRecord, DigestRoot, DigestShard, SHARDS, Watch, shard_of};
use crate::state::{EntryStatus, LedgerEntry};
use crate::sync::plan::Action;
use crate::transform::Rendered;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A ledger state `plan` leaves alone (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled<'a> {
    Delivered(&'a str),
    Waiting,
}

impl Settled<'_> {
    /// What `plan` decides for a memory found in this state.
    pub(super) fn action(&self) -> Action {
        match self {
            Settled::Delivered(_) => Action::Unchanged,
            Settled::Waiting => Action::WaitForTranscript { record: false },
        }
    }
}

/// The settled state of an entry, if it is one.
pub(super) fn settled(entry: &LedgerEntry) -> Option<Settled<'_>> {
    match (entry.status, &entry.content_hash) {
        (EntryStatus::Submitted | EntryStatus::Processed, Some(hash)) if entry.provenance.is_some() => {
            Some(Settled::Delivered(hash.as_str()))
        }
        (EntryStatus::WaitingTranscript, None) => Some(Settled::Waiting),
        _ => None,
    }
}

/// The settled state in which `plan` leaves a memory rendered so alone.
pub(super) fn expected(rendered: &Rendered) -> Settled<'_> {
    match rendered {
        Rendered::Document(document) => Settled::Delivered(document.hash.as_str()),
        Rendered::WaitingForTranscript => Settled::Waiting,
    }
}

/// Salted fingerprints of ids and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Keys {
    pub salt: u64,
}

impl Keys {
    pub fn fresh() -> Self {
        Self { salt: fastrand::u64(..) }
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(self.salt.to_le_bytes());
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(bytes)
    }

    pub fn id(&self, id: &MemoryId) -> u64 {
        self.hash(&[b"id", id.as_str().as_bytes()])
    }

    /// Never 0 (the leaf of an unsettled entry). `name`: the entry's name in LightRAG.
    pub fn leaf(&self, id: &MemoryId, name: &str, state: Settled<'_>) -> u64 {
        let (id, name) = (id.as_str().as_bytes(), name.as_bytes());
        let leaf = match state {
            Settled::Delivered(hash) => self.hash(&[b"delivered", id, name, hash.as_bytes()]),
            Settled::Waiting => self.hash(&[b"waiting", id, name]),
        };
        leaf.max(1)
    }

    pub fn entry_leaf(&self, entry: &LedgerEntry) -> u64 {
        settled(entry).map_or(0, |state| self.leaf(&entry.memory_id, &entry.file_source, state))
    }
}

/// The entries a run wrote or read back, as the next digest needs them:
/// each one's leaf, and whether it is still waiting for confirmation; what
/// the run submitted (the end-of-run wait reads them back); and which stored
/// entries wait for LightRAG's word.
#[derive(Debug)]
pub(super) struct Finals {
    pub keys: Keys,
    pub entries: HashMap<MemoryId, (u64, bool)>,
    pub submitted: Vec<MemoryId>,
    pub watch: Watch,
}

impl Finals {
    pub fn new(keys: Keys, watch: Watch) -> Self {
        Self { keys, entries: HashMap::new(), submitted: Vec::new(), watch }
    }

    /// An entry as this run wrote it: it waits for LightRAG when it was just
    /// submitted or marked.
    pub fn record(&mut self, entry: &LedgerEntry) {
        self.keep(entry, awaits_lightrag(entry.status));
    }

    /// An entry as read: it waits as this run last recorded it, else as the
    /// watch says.
    pub fn read(&mut self, entry: &LedgerEntry) {
        self.keep(entry, self.awaits(entry));
    }

    /// Whether a stored entry waits for LightRAG's word: as this run last
    /// recorded it (it submitted or confirmed it), else as the watch says.
    pub fn awaits(&self, entry: &LedgerEntry) -> bool {
        match self.entries.get(&entry.memory_id) {
            Some((_, unconfirmed)) => *unconfirmed,
            None => self.watch.awaits(entry),
        }
    }

    /// An entry LightRAG confirmed processed, left as it is stored.
    pub fn confirmed(&mut self, entry: &LedgerEntry) {
        self.keep(entry, false);
    }

    fn keep(&mut self, entry: &LedgerEntry, unconfirmed: bool) {
        self.entries.insert(entry.memory_id.clone(), (self.keys.entry_leaf(entry), unconfirmed));
    }
}

/// Whether an entry this run writes waits for LightRAG's answer: submitted,
/// or marked `sending` (its answer not recorded: the run dies, or the sink
/// refused).
fn awaits_lightrag(status: EntryStatus) -> bool {
    matches!(status, EntryStatus::Submitted | EntryStatus::Sending)
}

/// What the digest says about a fetched memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// Its entry is settled as the memory expects: no read.
    Settled,
    /// It has no entry: no read.
    New,
    /// Read its entry.
    Read,
}

/// A fetched memory as the digest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fetched {
    pub id: u64,
    /// The leaf its entry has when `plan` leaves it alone.
    pub expects: u64,
}

/// Shards whose sum differs from the page's, plus those of `also` (page
/// positions whose entries are known already: their shard is rewritten).
pub(super) fn dirty_shards(root: &DigestRoot, page: &[Fetched], also: &[usize]) -> Vec<u16> {
    let mut sums = vec![0u64; SHARDS];
    for f in page {
        let s = shard_of(f.id);
        sums[s] = sums[s].wrapping_add(f.expects);
    }
    let mut dirty: Vec<bool> = sums.iter().zip(&root.sums).map(|(page, stored)| page != stored).collect();
    for &i in also {
        dirty[shard_of(page[i].id)] = true;
    }
    dirty.iter().enumerate().filter(|(_, d)| **d).map(|(s, _)| s as u16).collect()
}

/// What each fetched memory needs, given the shards read (those of
/// [`dirty_shards`]). A shard that does not match its root entry (a crash
/// between writing shards and root) vouches for nothing.
pub(super) fn classify(root: &DigestRoot, page: &[Fetched], read: &[DigestShard]) -> Vec<Known> {
    let mut shards: HashMap<u16, Option<HashMap<u64, u64>>> = HashMap::new();
    for shard in read {
        let i = usize::from(shard.shard);
        let consistent =
            root.sums.get(i) == Some(&shard.sum()) && root.counts.get(i) == Some(&(shard.records.len() as u32));
        let records = consistent.then(|| shard.records.iter().map(|r| (r.id, r.leaf)).collect());
        shards.insert(shard.shard, records);
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for f in page {
        *seen.entry(f.id).or_default() += 1;
    }
    page.iter()
        .map(|f| {
            if seen.get(&f.id).copied().unwrap_or(0) > 1 {
                // Two fetched ids with one fingerprint: read both.
                return Known::Read;
            }
            match shards.get(&(shard_of(f.id) as u16)) {
                None => Known::Settled,
                Some(None) => Known::Read,
                Some(Some(records)) => match records.get(&f.id) {
                    Some(&leaf) if leaf == f.expects => Known::Settled,
                    Some(_) => Known::Read,
                    None if root.complete => Known::New,
                    None => Known::Read,
                },
            }
        })
        .collect()
}

/// The digest a run leaves: `finals` are the page's memories with the leaf
/// of their entry at the end of the run (`None`: no entry); `previous` the
/// valid root it started from with the shards it read (`None`: build all
/// shards anew under `keys`); `entries` the ledger's size now. `None` when
/// nothing changed.
pub(super) fn next_digest(
    keys: Keys,
    generation: u64,
    previous: Option<(&DigestRoot, &[DigestShard])>,
    finals: &[(u64, Option<u64>)],
    entries: u64,
) -> Option<(DigestRoot, Vec<DigestShard>)> {
    let mut root = match previous {
        Some((root, _)) => root.clone(),
        None => DigestRoot::empty(generation, keys.salt),
    };
    root.generation = generation;
    let rewritten: Vec<u16> = match previous {
        Some((_, read)) => read.iter().map(|s| s.shard).collect(),
        None => (0..SHARDS as u16).collect(),
    };
    // The page's records by shard; a fingerprint two ids share is recorded
    // once, unsettled, so both are read.
    let mut by_shard: BTreeMap<u16, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (id, _) in finals {
        *seen.entry(*id).or_default() += 1;
    }
    for (id, leaf) in finals {
        let shared = seen.get(id).copied().unwrap_or(0) > 1;
        let leaf = match leaf {
            Some(leaf) if !shared => *leaf,
            Some(_) => 0,
            None if shared => 0,
            None => continue,
        };
        by_shard.entry(shard_of(*id) as u16).or_default().insert(*id, leaf);
    }
    let mut changed = Vec::new();
    for shard in rewritten {
        let records: Vec<DigestRecord> = by_shard
            .remove(&shard)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, leaf)| DigestRecord { id, leaf })
            .collect();
        let new = DigestShard { shard, records };
        let old = previous.and_then(|(_, read)| read.iter().find(|s| s.shard == shard));
        let i = usize::from(shard);
        let (sum, count) = (new.sum(), new.records.len() as u32);
        if previous.is_none() || old != Some(&new) || root.sums[i] != sum || root.counts[i] != count {
            root.sums[i] = sum;
            root.counts[i] = count;
            changed.push(new);
        }
    }
    let complete = root.records() == entries;
    let same_root = previous.is_some_and(|(old, _)| old.complete == complete && old.generation == generation);
    root.complete = complete;
    if changed.is_empty() && same_root {
        return None;
    }
    Some((root, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ContentHash;

    fn entry(id: &str, status: EntryStatus, hash: Option<&str>) -> LedgerEntry {
        use crate::state::conformance::data::{bare_entry, full_provenance};
        LedgerEntry {
            content_hash: hash.map(ContentHash::new),
            provenance: Some(full_provenance()),
            ..bare_entry(id, status)
        }
    }

    #[test]
    fn only_states_plan_leaves_alone_are_settled() {
        let keys = Keys { salt: 1 };
        let id = MemoryId::new("m");
        let delivered = keys.leaf(&id, "memory_m.txt", Settled::Delivered("h"));
        for status in [EntryStatus::Submitted, EntryStatus::Processed] {
            assert_eq!(keys.entry_leaf(&entry("m", status, Some("h"))), delivered);
        }
        for status in [EntryStatus::Failed, EntryStatus::Dead, EntryStatus::LightragFailed, EntryStatus::UpdatePending]
        {
            assert_eq!(keys.entry_leaf(&entry("m", status, Some("h"))), 0, "{status}");
        }
        assert_eq!(keys.entry_leaf(&entry("m", EntryStatus::Submitted, None)), 0);
        assert_eq!(keys.entry_leaf(&entry("m", EntryStatus::WaitingTranscript, Some("h"))), 0);
        assert_eq!(
            keys.entry_leaf(&entry("m", EntryStatus::WaitingTranscript, None)),
            keys.leaf(&id, "memory_m.txt", Settled::Waiting)
        );
        let n = MemoryId::new("n");
        assert_ne!(delivered, keys.leaf(&n, "memory_m.txt", Settled::Delivered("h")));
        assert_ne!(Keys { salt: 2 }.leaf(&id, "n", Settled::Waiting), keys.leaf(&id, "n", Settled::Waiting));
        // Delivered by a version without provenance records: the caller of
        // `plan` writes one, so the entry is read.
        let older = LedgerEntry { provenance: None, ..entry("m", EntryStatus::Processed, Some("h")) };
        assert_eq!(keys.entry_leaf(&older), 0);
        // Under a name an older rule made: never what the memory expects.
        let renamed =
            LedgerEntry { file_source: "memory_M.txt".into(), ..entry("m", EntryStatus::Processed, Some("h")) };
        assert_ne!(keys.entry_leaf(&renamed), delivered);
    }

    /// A mark written before a document leaves (`sending`) is never
    /// settled, whatever the hash and provenance it carries: a digest
    /// recorded while an entry is marked makes the next run read it (and
    /// recover it), and the run hands its id on with the unconfirmed ones.
    #[test]
    fn a_sending_mark_is_never_vouched_for() {
        let keys = Keys { salt: 5 };
        let id = MemoryId::new("m");
        let marked =
            LedgerEntry { pending_hash: Some(ContentHash::new("h")), ..entry("m", EntryStatus::Sending, Some("h")) };
        assert_eq!(keys.entry_leaf(&marked), 0);
        let mut finals = Finals::new(keys, Watch::default());
        finals.record(&marked);
        assert_eq!(finals.entries.get(&id), Some(&(0, true)), "unsettled, read back by id at the next start");
        // A digest left with the mark: the page expecting the delivered document is read.
        let page = [Fetched { id: keys.id(&id), expects: keys.leaf(&id, "memory_m.txt", Settled::Delivered("h")) }];
        let (root, shards) = next_digest(keys, 0, None, &[(page[0].id, Some(0))], 1).expect("new");
        let dirty = dirty_shards(&root, &page, &[]);
        let read: Vec<DigestShard> = shards.into_iter().filter(|s| dirty.contains(&s.shard)).collect();
        assert_eq!(classify(&root, &page, &read), vec![Known::Read]);
    }

    #[test]
    fn a_page_compares_by_shard_and_then_by_record() {
        let keys = Keys { salt: 9 };
        let ids: Vec<MemoryId> = (0..300).map(|i| MemoryId::new(format!("m{i}"))).collect();
        let leaf = |i: usize, h: &str| keys.leaf(&ids[i], "", Settled::Delivered(h));
        let finals: Vec<(u64, Option<u64>)> = (0..300).map(|i| (keys.id(&ids[i]), Some(leaf(i, "a")))).collect();
        let (root, shards) = next_digest(keys, 0, None, &finals, 300).expect("a new digest");
        assert!(root.complete && shards.len() == SHARDS);

        // The same page: no shard differs, nothing is read.
        let mut page: Vec<Fetched> =
            finals.iter().map(|(id, l)| Fetched { id: *id, expects: l.unwrap_or(0) }).collect();
        assert!(dirty_shards(&root, &page, &[]).is_empty());
        // One edit and one new memory: their shards differ; the rest of those shards still match.
        page[7].expects = leaf(7, "b");
        let new = MemoryId::new("new");
        page.push(Fetched { id: keys.id(&new), expects: keys.leaf(&new, "", Settled::Waiting) });
        let dirty = dirty_shards(&root, &page, &[]);
        assert!(dirty.len() <= 2 && dirty.contains(&(shard_of(page[7].id) as u16)));
        let read: Vec<DigestShard> = shards.iter().filter(|s| dirty.contains(&s.shard)).cloned().collect();
        let known = classify(&root, &page, &read);
        assert_eq!(known[7], Known::Read);
        assert_eq!(known[300], Known::New, "a complete digest knows a new memory");
        assert_eq!(known.iter().filter(|k| **k == Known::Settled).count(), 299);
        // A shard whose records disagree with the root vouches for nothing.
        let mut broken = read.clone();
        broken[0].records.pop();
        let known = classify(&root, &page, &broken);
        for (f, k) in page.iter().zip(&known) {
            if shard_of(f.id) == usize::from(broken[0].shard) {
                assert_eq!(*k, Known::Read);
            }
        }
    }

    #[test]
    fn the_next_digest_rewrites_only_what_changed() {
        let keys = Keys { salt: 3 };
        let finals: Vec<(u64, Option<u64>)> = (0..50u64).map(|i| (i * 7 + 1, Some(i + 1))).collect();
        let (root, shards) = next_digest(keys, 4, None, &finals, 80).expect("new");
        assert!(!root.complete, "30 entries have no record");
        let read: Vec<DigestShard> = shards.iter().filter(|s| s.shard < 3).cloned().collect();
        assert_eq!(next_digest(keys, 4, Some((&root, &read)), &finals, 80), None, "nothing changed");
        let mut edited = finals.clone();
        edited[0].1 = Some(0);
        let (next, changed) = next_digest(keys, 4, Some((&root, &read)), &edited, 80).expect("changed");
        assert_eq!(changed.iter().map(|s| s.shard).collect::<Vec<_>>(), vec![shard_of(1) as u16]);
        assert_eq!(next.sums[shard_of(1)], changed[0].sum());
        // Two ids on one fingerprint: one unsettled record.
        let (_, shards) = next_digest(keys, 0, None, &[(5, Some(9)), (5, None)], 2).expect("new");
        assert_eq!(shards[5].records, vec![DigestRecord { id: 5, leaf: 0 }]);
    }
}
