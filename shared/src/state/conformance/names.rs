//! Entries by their LightRAG name (`file_source`), across connectors.

use super::data::{at, bare_entry, cid, entries_only, full_entry};
use super::ok;
use crate::ids::ConnectorId;
use crate::state::{EntryStatus, LedgerEntry, StateStore};
use std::sync::Arc;

fn named(entry: LedgerEntry, name: &str) -> LedgerEntry {
    LedgerEntry { file_source: name.to_owned(), ..entry }
}

/// `entries_named` finds every entry carrying one of the names, in every
/// connector, with its provenance; follows renames and resets.
pub async fn entries_by_name(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (a, b) = (cid("names-a"), cid("names-b"));
    let shared = "memory_CTX_1.txt";
    let odd = "memory_%C3%A9t%C3%A9_%F0%9F%8E%89~0123456789abcdef.txt";
    let a1 = named(full_entry("1", EntryStatus::Processed), shared);
    let a2 = named(bare_entry("2", EntryStatus::WaitingTranscript), "memory_CTX_2.txt");
    let b1 = named(full_entry("1", EntryStatus::Submitted), shared);
    let b9 = named(full_entry("9", EntryStatus::Dead), odd);
    ok(s.checkpoint(&a, entries_only(vec![a1.clone(), a2.clone()])).await, s, "checkpoint a");
    ok(s.checkpoint(&b, entries_only(vec![b9.clone(), b1.clone()])).await, s, "checkpoint b");

    let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let found = ok(s.entries_named(&names(&[shared, "unknown.txt", odd, shared])).await, s, "entries_named");
    let expected: Vec<(ConnectorId, LedgerEntry)> = vec![(a.clone(), a1.clone()), (b.clone(), b1), (b.clone(), b9)];
    assert_eq!(found, expected, "{s:?}: every connector's entries of the names, provenance included, in order");
    assert!(ok(s.entries_named(&[]).await, s, "no names").is_empty(), "{s:?}: no names, no entries");
    assert!(ok(s.entries_named(&names(&["memory_CTX_1"])).await, s, "a prefix").is_empty(), "{s:?}: names match whole");

    // A memory whose name changed is found under its new name only.
    let renamed = LedgerEntry { last_ingested: Some(at(7)), ..named(a1, "memory_CTX_1b.txt") };
    ok(s.checkpoint(&a, entries_only(vec![renamed.clone()])).await, s, "rename");
    let found = ok(s.entries_named(&names(&[shared, "memory_CTX_1b.txt"])).await, s, "after rename");
    assert_eq!(found.len(), 2, "{s:?}: {found:?}");
    assert_eq!(found[0], (a.clone(), renamed), "{s:?}: the renamed entry under its new name");
    assert_eq!(found[1].0, b, "{s:?}: the other connector keeps the old name");

    ok(s.reset(&b, at(0)).await, s, "reset b");
    let found = ok(s.entries_named(&names(&[shared, odd, "memory_CTX_2.txt"])).await, s, "after reset");
    assert_eq!(found, vec![(a, a2)], "{s:?}: a reset connector's names are gone");
}
