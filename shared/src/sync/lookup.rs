//! Which ledger entries a run reads (decision 26): every fetched memory's
//! after a crash or with `--force`; none when the ledger is empty; else only
//! those the digest cannot vouch for. And the digest the run leaves.

use super::SyncEngine;
use super::digest::{self, Fetched, Finals, Keys, Known};
use crate::enrich::Enrichments;
use crate::ids::MemoryId;
use crate::memory_api::model::FetchedPage;
use crate::state::{DigestRoot, DigestShard, DigestWrite, LedgerEntry, LedgerView, StateError};
use crate::sync::plan::Action;
use crate::transform;
use std::collections::{BTreeSet, HashMap, HashSet};
use tracing::debug;

/// What a run knows of the fetched memories' entries before planning.
pub(super) struct Lookup {
    /// Entries read, and those the confirmation at the start read.
    pub entries: HashMap<MemoryId, LedgerEntry>,
    /// Memories the digest vouches for: what `plan` would do, and their leaf.
    pub vouched: HashMap<MemoryId, (Action, u64)>,
    /// Memories with an entry before the run (to count the ones it adds).
    existed: HashSet<MemoryId>,
    /// The valid digest the run started from, and the shards it read.
    previous: Option<(DigestRoot, Vec<DigestShard>)>,
    /// Entries read from the ledger (for the log).
    pub read: usize,
}

impl SyncEngine {
    /// Builds new digests under this salt.
    #[cfg(test)]
    pub(crate) fn with_salt(mut self, salt: u64) -> Self {
        self.salt = Some(salt);
        self
    }

    pub(super) fn new_keys(&self) -> Keys {
        #[cfg(test)]
        if let Some(salt) = self.salt {
            return Keys { salt };
        }
        Keys::fresh()
    }

    /// Reads the entry of every fetched memory, as before the ledger digest
    /// (decision 26); tests compare the two paths run by run.
    pub fn reading_every_entry(mut self) -> Self {
        self.digest = false;
        self
    }

    /// Reads what the run needs (see the module doc). `known` holds what the
    /// confirmation at the start read already.
    pub(super) async fn look_up(
        &self,
        view: &LedgerView,
        keys: Keys,
        page: &FetchedPage,
        enriched: &Enrichments,
        full: bool,
        known: HashMap<MemoryId, LedgerEntry>,
    ) -> Result<Lookup, StateError> {
        let mut lookup =
            Lookup { entries: known, vouched: HashMap::new(), existed: HashSet::new(), previous: None, read: 0 };
        let digest = view.digest.as_ref().filter(|_| !full);
        match digest {
            None if view.entries == 0 => {
                debug!("the ledger is empty: every fetched memory is new");
            }
            None => {
                let missing: Vec<MemoryId> =
                    page.memories.iter().map(|m| m.id.clone()).filter(|id| !lookup.entries.contains_key(id)).collect();
                lookup.read = missing.len();
                let found = self.store.entries(&self.connector.id, &missing).await?;
                lookup.entries.extend(found);
            }
            Some(root) => self.compare(root, keys, page, enriched, &mut lookup).await?,
        }
        lookup.existed = lookup.entries.keys().chain(lookup.vouched.keys()).cloned().collect();
        Ok(lookup)
    }

    /// The page against a valid digest: render each memory (as planning
    /// would), compare shard sums, read the shards that differ, then only the
    /// entries those cannot vouch for.
    async fn compare(
        &self,
        root: &DigestRoot,
        keys: Keys,
        page: &FetchedPage,
        enriched: &Enrichments,
        lookup: &mut Lookup,
    ) -> Result<(), StateError> {
        let transformation = &self.connector.transformation;
        let skip_empty = self.connector.ingestion.skip_empty_transcripts;
        let mut fetched = Vec::with_capacity(page.memories.len());
        let mut actions = Vec::with_capacity(page.memories.len());
        for memory in &page.memories {
            let rendered = transform::render(
                &self.connector.context_id,
                memory,
                transformation,
                skip_empty,
                enriched.get(&memory.id),
            );
            let expected = digest::expected(&rendered);
            let name = transform::file_source(&self.connector.context_id, memory.id.as_str());
            let expects = keys.leaf(&memory.id, &name, expected);
            fetched.push(Fetched { id: keys.id(&memory.id), expects });
            actions.push((expected.action(), expects));
        }
        let known: Vec<usize> =
            (0..page.memories.len()).filter(|&i| lookup.entries.contains_key(&page.memories[i].id)).collect();
        let dirty = digest::dirty_shards(root, &fetched, &known);
        let read =
            if dirty.is_empty() { Vec::new() } else { self.store.digest_shards(&self.connector.id, &dirty).await? };
        let classes = digest::classify(root, &fetched, &read);
        let mut to_read = Vec::new();
        for ((memory, class), action) in page.memories.iter().zip(classes).zip(actions) {
            if lookup.entries.contains_key(&memory.id) {
                continue;
            }
            match class {
                Known::Settled => {
                    lookup.vouched.insert(memory.id.clone(), action);
                }
                Known::New => {}
                Known::Read => to_read.push(memory.id.clone()),
            }
        }
        debug!(shards = dirty.len(), entries = to_read.len(), "the digest differs here; reading");
        lookup.read = to_read.len();
        if !to_read.is_empty() {
            let found = self.store.entries(&self.connector.id, &to_read).await?;
            lookup.entries.extend(found);
        }
        lookup.previous = Some((root.clone(), read));
        Ok(())
    }

    /// The digest this run leaves: every fetched memory with the leaf of its
    /// entry now (`finals`: what the run wrote or read back; else what it
    /// read or the digest vouched for). `None` when nothing changed.
    pub(super) fn leave_digest(
        &self,
        view: &LedgerView,
        lookup: &Lookup,
        page: &FetchedPage,
        finals: &Finals,
    ) -> Option<(DigestRoot, Vec<DigestShard>)> {
        let keys = finals.keys;
        let mut created = 0u64;
        let records: Vec<(u64, Option<u64>)> = page
            .memories
            .iter()
            .map(|memory| {
                let id = &memory.id;
                let leaf = match (finals.entries.get(id), lookup.vouched.get(id), lookup.entries.get(id)) {
                    (Some((leaf, _)), _, _) => Some(*leaf),
                    (None, Some((_, leaf)), _) => Some(*leaf),
                    (None, None, Some(entry)) => Some(keys.entry_leaf(entry)),
                    (None, None, None) => None,
                };
                if leaf.is_some() && !lookup.existed.contains(id) {
                    created += 1;
                }
                (keys.id(id), leaf)
            })
            .collect();
        let previous = lookup.previous.as_ref().map(|(root, read)| (root, read.as_slice()));
        digest::next_digest(keys, view.generation, previous, &records, view.entries + created)
    }

    /// The digest part of the run's last write: `None` when neither the
    /// digest nor the unconfirmed ids changed.
    pub(super) fn digest_write(
        &self,
        view: &LedgerView,
        lookup: &Lookup,
        page: &FetchedPage,
        finals: &Finals,
    ) -> Option<DigestWrite> {
        let digest = self.leave_digest(view, lookup, page, finals);
        let unconfirmed = self.unconfirmed(view, lookup, finals);
        let unchanged = digest.is_none() && unconfirmed == view.unconfirmed;
        let digest = digest.or_else(|| view.digest.clone().map(|root| (root, Vec::new())));
        (!unchanged).then_some(DigestWrite { digest, unconfirmed })
    }

    /// The ids still waiting for LightRAG's confirmation when the run ends:
    /// those recorded before and those the run saw submitted, less the ones
    /// it saw confirmed. Without confirmation the recorded list stays.
    fn unconfirmed(&self, view: &LedgerView, lookup: &Lookup, finals: &Finals) -> Option<Vec<MemoryId>> {
        if !self.settings.confirm {
            return view.unconfirmed.clone();
        }
        let mut ids: BTreeSet<&MemoryId> = view.unconfirmed.iter().flatten().collect();
        ids.extend(finals.entries.iter().filter(|(_, (_, unconfirmed))| *unconfirmed).map(|(id, _)| id));
        ids.extend(lookup.entries.values().filter(|e| finals.watch.awaits(e)).map(|e| &e.memory_id));
        let still = |id: &MemoryId| match finals.entries.get(id) {
            Some((_, unconfirmed)) => *unconfirmed,
            None => lookup.entries.get(id).is_none_or(|e| finals.watch.awaits(e)),
        };
        Some(ids.into_iter().filter(|id| still(id)).cloned().collect())
    }
}
