//! A run's `sending` marks, kept in one item per run instead of one entry
//! write each (decision 28).
//!
//! - A run's checkpoint writes its entries first, then its marks item,
//!   `MARKS#<run id>`: the marks still open (new ones added, those whose
//!   entries were just written removed), or nothing when none is. The
//!   checkpoint returns, and the documents leave, only after both, so a
//!   mark is durable before its request and removed only once its answer
//!   is; a crash in between leaves a mark over a written entry, which the
//!   next run settles by asking LightRAG, as it would a mark.
//! - Marks only the lease holder writes: a checkpoint with marks and no
//!   entries still makes the batch fence.
//! - A run that takes the lease reads every `MARKS#` item of the connector
//!   once (those of runs that died or were cut off at their deadline): its
//!   first checkpoint that writes entries or marks writes them into its own
//!   item, then deletes theirs. While it holds the lease this instance
//!   answers reads from what it keeps (nobody else writes marks then); it
//!   forgets them when it releases the lease.
//! - Every read shows a marked memory as the `sending` entry
//!   [`Mark::entry`] makes over its stored entry; status counts move it
//!   from its stored status to `sending`.

use super::DynamoStore;
use super::keys::*;
use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::marks::{self, Mark};
use crate::state::{EntryStatus, LedgerEntry, StateError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

/// The attribute of a marks item holding them ([`marks::encode`]).
const MARKS_ATTR: &str = "marks";

/// The marks this instance keeps for the run that holds the lease.
#[derive(Debug)]
pub(super) struct OwnMarks {
    owner: RunId,
    open: BTreeMap<MemoryId, Mark>,
    /// This run's item exists.
    stored: bool,
    /// Items of earlier runs, taken over, still to delete.
    older: Vec<String>,
}

pub(super) fn marks_sk(run: &RunId) -> String {
    format!("{MARKS_PREFIX}{}", run.as_str())
}

impl DynamoStore {
    /// Every run's open marks of the connector (the latest of a memory wins),
    /// and the sort keys of the items holding them.
    pub(super) async fn read_marks(
        &self,
        connector: &ConnectorId,
    ) -> Result<(BTreeMap<MemoryId, Mark>, Vec<String>), StateError> {
        let items =
            self.query_all("Query (marks)", connector, SortRange::Prefix(MARKS_PREFIX), None, None, true).await?;
        let mut open: BTreeMap<MemoryId, Mark> = BTreeMap::new();
        let mut sks = Vec::with_capacity(items.len());
        for item in items {
            let sk = item.get(SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let bytes = item.get(MARKS_ATTR).and_then(|v| v.as_b().ok()).map(|b| b.as_ref()).unwrap_or_default();
            for mark in marks::decode(bytes).map_err(|e| self.corrupt(&format!("marks item {sk}"), e))? {
                marks::keep_latest(&mut open, mark);
            }
            sks.push(sk);
        }
        Ok((open, sks))
    }

    /// The open marks: this instance's own while its run holds the lease
    /// (nobody else writes marks then), else read.
    pub(super) async fn open_marks(&self, connector: &ConnectorId) -> Result<BTreeMap<MemoryId, Mark>, StateError> {
        match self.with_local(connector, |l| l.marks.as_ref().map(|m| m.open.clone())) {
            Some(open) => Ok(open),
            None => Ok(self.read_marks(connector).await?.0),
        }
    }

    /// A run took the lease: its marks start as every open one, read once.
    pub(super) async fn load_marks(&self, connector: &ConnectorId, owner: &RunId) -> Result<(), StateError> {
        let (open, sks) = self.read_marks(connector).await?;
        let own = marks_sk(owner);
        let stored = sks.contains(&own);
        let older = sks.into_iter().filter(|sk| sk != &own).collect();
        self.with_local(connector, |l| l.marks = Some(OwnMarks { owner: owner.clone(), open, stored, older }));
        Ok(())
    }

    /// After the entries of a fenced checkpoint: this run's marks item
    /// without the marks of `written`, with `marked` added (see the module doc).
    pub(super) async fn write_marks(
        &self,
        connector: &ConnectorId,
        owner: &RunId,
        written: &[LedgerEntry],
        marked: Vec<LedgerEntry>,
    ) -> Result<(), StateError> {
        let loaded = self.with_local(connector, |l| l.marks.as_ref().is_some_and(|m| &m.owner == owner));
        if !loaded {
            self.load_marks(connector, owner).await?;
        }
        let (item, delete_own, older) = self.with_local(connector, |local| {
            let hints = &local.hints;
            let Some(own) = local.marks.as_mut() else { return (None, false, Vec::new()) };
            let mut changed = false;
            for entry in written {
                changed |= own.open.remove(&entry.memory_id).is_some();
            }
            for entry in &marked {
                let before = hints.get(&entry.memory_id).copied().flatten();
                own.open.insert(entry.memory_id.clone(), Mark::of(entry, before));
                changed = true;
            }
            let older = std::mem::take(&mut own.older);
            if !changed && older.is_empty() {
                return (None, false, older);
            }
            let delete_own = own.open.is_empty() && own.stored;
            own.stored = !own.open.is_empty();
            let open: Vec<Mark> = own.open.values().cloned().collect();
            (Some(open).filter(|o| !o.is_empty()), delete_own, older)
        });
        if let Some(open) = item {
            let bytes = marks::encode(&open).map_err(|e| self.corrupt("marks", e))?;
            let mut item = key(connector, &marks_sk(owner));
            item.insert(MARKS_ATTR.to_owned(), AttributeValue::B(bytes.into()));
            self.put_item(item, "PutItem (marks)").await?;
        }
        let mut gone: Vec<_> = older.iter().map(|sk| key(connector, sk)).collect();
        if delete_own {
            gone.push(key(connector, &marks_sk(owner)));
        }
        // One at a time: usually none, or the one item of a run that died.
        for key in gone {
            self.delete_item(key, "DeleteItem (marks)").await?;
        }
        Ok(())
    }

    /// `stored` (entries as stored, by memory id) with the marked ones among
    /// `ids` shown as their marks.
    pub(super) fn overlay(
        stored: &mut HashMap<MemoryId, LedgerEntry>,
        ids: impl IntoIterator<Item = MemoryId>,
        open: &BTreeMap<MemoryId, Mark>,
    ) {
        for id in ids {
            if let Some(mark) = open.get(&id) {
                let entry = mark.entry(stored.get(&id));
                stored.insert(id, entry);
            }
        }
    }

    /// Status counts as stored, with each marked memory moved to `sending`.
    pub(super) fn count_marks(counts: &mut BTreeMap<EntryStatus, u64>, open: &BTreeMap<MemoryId, Mark>) {
        for mark in open.values() {
            if let Some(before) = mark.before
                && let Some(n) = counts.get_mut(&before)
            {
                *n = n.saturating_sub(1);
            }
            *counts.entry(EntryStatus::Sending).or_default() += 1;
        }
        counts.retain(|_, n| *n > 0);
    }
}
