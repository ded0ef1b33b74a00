//! The ledger: checkpoints, lookups, status queries, odd ids, isolation.

use super::data::{at, bare_entry, cid, entries_only, full_entry, full_state, mid, rid, run, running};
use super::ok;
use crate::ids::MemoryId;
use crate::state::{Checkpoint, ConnectorState, EntryStatus, LedgerEntry, RunStatus, StateStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

fn by_id(entries: &[LedgerEntry]) -> HashMap<MemoryId, LedgerEntry> {
    entries.iter().map(|e| (e.memory_id.clone(), e.clone())).collect()
}

/// Entries, connector state and run record of one checkpoint read back equal.
pub async fn checkpoint_round_trip(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("round-trip");
    ok(s.try_acquire_lease(&c, &rid("run-1"), at(0), Duration::from_secs(60)).await, s, "acquire");
    let entries = vec![
        full_entry("full", EntryStatus::Failed),
        bare_entry("bare", EntryStatus::WaitingTranscript),
        LedgerEntry { last_error: Some(String::new()), attempts: u32::MAX, ..bare_entry("edge", EntryStatus::Dead) },
    ];
    let state = full_state("round-trip");
    let record = run("round-trip", "run-1", at(0));
    ok(
        s.checkpoint(
            &c,
            Checkpoint {
                entries: entries.clone(),
                connector: Some(state.clone()),
                run: Some(record.clone()),
                lease_owner: Some(rid("run-1")),
                digest: None,
                marks: Vec::new(),
            },
        )
        .await,
        s,
        "checkpoint",
    );
    let ids: Vec<_> = entries.iter().map(|e| e.memory_id.clone()).collect();
    assert_eq!(ok(s.entries(&c, &ids).await, s, "read entries"), by_id(&entries), "{s:?}: entries read back equal");
    assert_eq!(
        ok(s.connector_state(&c).await, s, "read state"),
        Some(state),
        "{s:?}: connector state reads back equal"
    );
    assert_eq!(ok(s.runs(&c, 10).await, s, "read runs"), vec![record], "{s:?}: run record reads back equal");

    // The other shapes of a connector state and a run record.
    let idle = ConnectorState::new(c.clone());
    let open_run = running("round-trip", "run-2", at(5));
    ok(
        s.checkpoint(
            &c,
            Checkpoint { connector: Some(idle.clone()), run: Some(open_run.clone()), ..Checkpoint::default() },
        )
        .await,
        s,
        "checkpoint without entries",
    );
    assert_eq!(ok(s.connector_state(&c).await, s, "read state"), Some(idle), "{s:?}: a new state replaces the old");
    assert_eq!(
        ok(s.runs(&c, 1).await, s, "read runs"),
        vec![open_run],
        "{s:?}: a run with no finish, no error and zero counts reads back equal"
    );
    assert_eq!(
        ok(s.entries(&c, &ids).await, s, "read entries").len(),
        3,
        "{s:?}: a checkpoint without entries keeps the ledger"
    );
}

/// `entries(ids)` returns exactly the ids that exist.
pub async fn entries_lookup(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("lookup");
    let stored: Vec<_> = (0..50).map(|i| bare_entry(&format!("m{i:03}"), EntryStatus::Processed)).collect();
    ok(s.checkpoint(&c, entries_only(stored.clone())).await, s, "checkpoint");

    let asked = vec![mid("m007"), mid("missing"), mid("m042"), mid("m007"), mid("m0")];
    let found = ok(s.entries(&c, &asked).await, s, "read entries");
    assert_eq!(found, by_id(&[stored[7].clone(), stored[42].clone()]), "{s:?}: only existing ids are returned");
    assert!(ok(s.entries(&c, &[]).await, s, "read no ids").is_empty(), "{s:?}: no ids, no entries");
    assert!(
        ok(s.entries(&cid("other"), &asked).await, s, "read unknown connector").is_empty(),
        "{s:?}: an unknown connector has no entries"
    );
    let all: Vec<_> = stored.iter().map(|e| e.memory_id.clone()).collect();
    assert_eq!(ok(s.entries(&c, &all).await, s, "read all").len(), 50, "{s:?}: every stored id is found");
}

/// Writing an entry again replaces it whole.
pub async fn upsert_replaces(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("upsert");
    ok(s.checkpoint(&c, entries_only(vec![full_entry("m", EntryStatus::Failed)])).await, s, "first write");
    let replacement = bare_entry("m", EntryStatus::Processed);
    ok(s.checkpoint(&c, entries_only(vec![replacement.clone()])).await, s, "second write");
    assert_eq!(
        ok(s.entries(&c, &[mid("m")]).await, s, "read entry").remove(&mid("m")),
        Some(replacement),
        "{s:?}: the second write replaces every field (Some becomes None)"
    );
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count"),
        BTreeMap::from([(EntryStatus::Processed, 1)]),
        "{s:?}: an upsert does not duplicate the entry"
    );
}

pub async fn status_counts(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("counts");
    assert!(ok(s.status_counts(&c).await, s, "count empty").is_empty(), "{s:?}: no entries, no counts");
    let mut entries = Vec::new();
    for (status, n) in [(EntryStatus::Processed, 5), (EntryStatus::Failed, 2), (EntryStatus::Dead, 1)] {
        entries.extend((0..n).map(|i| bare_entry(&format!("{status}-{i}"), status)));
    }
    ok(s.checkpoint(&c, entries_only(entries)).await, s, "checkpoint");
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count"),
        BTreeMap::from([(EntryStatus::Processed, 5), (EntryStatus::Failed, 2), (EntryStatus::Dead, 1)]),
        "{s:?}: counts per status, statuses with none absent"
    );
}

/// Filter by status, ordered by memory id, at most `limit`.
pub async fn entries_with_status(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("by-status");
    let entries = vec![
        bare_entry("e", EntryStatus::Failed),
        full_entry("b", EntryStatus::Dead),
        bare_entry("d", EntryStatus::Processed),
        full_entry("a", EntryStatus::Failed),
        bare_entry("c", EntryStatus::Failed),
        bare_entry("f", EntryStatus::UpdatePending),
    ];
    ok(s.checkpoint(&c, entries_only(entries.clone())).await, s, "checkpoint");
    let ids = |found: Vec<LedgerEntry>| found.into_iter().map(|e| e.memory_id.as_str().to_owned()).collect::<Vec<_>>();

    let failed = ok(s.entries_with_status(&c, &[EntryStatus::Failed], 100).await, s, "query failed");
    assert_eq!(failed[0], entries[3], "{s:?}: entries come back whole");
    assert_eq!(ids(failed), ["a", "c", "e"], "{s:?}: one status, ordered by memory id");
    let retryable = ok(
        s.entries_with_status(&c, &[EntryStatus::Dead, EntryStatus::Failed, EntryStatus::UpdatePending], 100).await,
        s,
        "query several",
    );
    assert_eq!(ids(retryable), ["a", "b", "c", "e", "f"], "{s:?}: several statuses, merged in memory-id order");
    let limited = ok(s.entries_with_status(&c, &[EntryStatus::Failed, EntryStatus::Dead], 2).await, s, "query limit");
    assert_eq!(ids(limited), ["a", "b"], "{s:?}: the limit keeps the first ids");
    assert!(
        ok(s.entries_with_status(&c, &[EntryStatus::Failed], 0).await, s, "query limit 0").is_empty(),
        "{s:?}: limit 0 returns nothing"
    );
    assert!(
        ok(s.entries_with_status(&c, &[], 100).await, s, "query no status").is_empty(),
        "{s:?}: no statuses returns nothing"
    );
    assert!(
        ok(s.entries_with_status(&c, &[EntryStatus::Submitted], 100).await, s, "query absent").is_empty(),
        "{s:?}: a status nobody has returns nothing"
    );
    // A page starts after a memory id (it need not be listed, nor exist):
    // the listing is read a page at a time without holding it whole.
    let statuses = [EntryStatus::Failed, EntryStatus::Dead, EntryStatus::UpdatePending, EntryStatus::Processed];
    let after = |id: &str| MemoryId::new(id);
    let page = ok(s.entries_with_status_after(&c, &statuses, Some(&after("b")), 2).await, s, "page after b");
    assert_eq!(ids(page), ["c", "d"], "{s:?}: the page after `b`, at most `limit`");
    let page = ok(s.entries_with_status_after(&c, &EntryStatus::FAILED, Some(&after("bb")), 100).await, s, "after bb");
    assert_eq!(ids(page), ["c", "e"], "{s:?}: after an id the ledger does not hold");
    let page = ok(s.entries_with_status_after(&c, &statuses, Some(&after("f")), 100).await, s, "after the last");
    assert!(page.is_empty(), "{s:?}: nothing after the last");

    // An entry that changes status leaves its old listing and joins the new one.
    let moved = vec![
        bare_entry("a", EntryStatus::Processed),
        bare_entry("c", EntryStatus::Dead),
        bare_entry("d", EntryStatus::Failed),
        bare_entry("e", EntryStatus::Failed),
    ];
    ok(s.checkpoint(&c, entries_only(moved)).await, s, "checkpoint moves");
    let failed = ok(s.entries_with_status(&c, &[EntryStatus::Failed], 100).await, s, "query failed after moves");
    assert_eq!(ids(failed), ["d", "e"], "{s:?}: settled and moved entries leave the failed listing");
    let dead = ok(s.entries_with_status(&c, &[EntryStatus::Dead], 100).await, s, "query dead after moves");
    assert_eq!(ids(dead), ["b", "c"], "{s:?}: a moved entry joins its new status");
    let processed = ok(s.entries_with_status(&c, &[EntryStatus::Processed], 100).await, s, "query processed");
    assert_eq!(ids(processed), ["a"], "{s:?}: settled entries are listed too when asked for");
    let counts = ok(s.status_counts(&c).await, s, "counts after moves");
    let expected = BTreeMap::from([
        (EntryStatus::Processed, 1),
        (EntryStatus::Dead, 2),
        (EntryStatus::Failed, 2),
        (EntryStatus::UpdatePending, 1),
    ]);
    assert_eq!(counts, expected, "{s:?}: counts follow every move, and a rewrite with the same status counts once");
}

/// Two connectors with the same memory ids never see each other's records.
pub async fn connectors_isolated(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (one, two) = (cid("one"), cid("two"));
    ok(
        s.checkpoint(
            &one,
            Checkpoint {
                entries: vec![full_entry("shared-id", EntryStatus::Processed)],
                connector: Some(full_state("one")),
                run: Some(run("one", "run-1", at(0))),
                lease_owner: None,
                digest: None,
                marks: Vec::new(),
            },
        )
        .await,
        s,
        "checkpoint one",
    );
    ok(s.checkpoint(&two, entries_only(vec![bare_entry("shared-id", EntryStatus::Failed)])).await, s, "checkpoint two");
    ok(s.try_acquire_lease(&one, &rid("run-1"), at(0), Duration::from_secs(60)).await, s, "lease one");

    let got = |found: HashMap<MemoryId, LedgerEntry>| found.get(&mid("shared-id")).map(|e| e.status);
    assert_eq!(got(ok(s.entries(&two, &[mid("shared-id")]).await, s, "read two")), Some(EntryStatus::Failed));
    assert_eq!(got(ok(s.entries(&one, &[mid("shared-id")]).await, s, "read one")), Some(EntryStatus::Processed));
    assert_eq!(ok(s.connector_state(&two).await, s, "state two"), None, "{s:?}: state is per connector");
    assert!(ok(s.runs(&two, 10).await, s, "runs two").is_empty(), "{s:?}: run history is per connector");
    assert_eq!(ok(s.lease(&two).await, s, "lease two"), None, "{s:?}: the lease is per connector");
    let second = ok(s.try_acquire_lease(&two, &rid("run-2"), at(0), Duration::from_secs(60)).await, s, "lease two");
    assert!(matches!(second, crate::state::LeaseOutcome::Acquired(_)), "{s:?}: leases are independent: {second:?}");
    ok(s.checkpoint(&two, Checkpoint { lease_owner: Some(rid("run-2")), ..Checkpoint::default() }).await, s, "fenced");

    ok(s.release_lease(&two, &rid("run-2")).await, s, "release two");
    ok(s.reset(&two, at(0)).await, s, "reset two");
    assert_eq!(
        got(ok(s.entries(&one, &[mid("shared-id")]).await, s, "read one after reset of two")),
        Some(EntryStatus::Processed),
        "{s:?}: resetting one connector leaves the other alone"
    );
    assert_eq!(
        ok(s.connector_state(&one).await, s, "state one").map(|st| st.status),
        Some(RunStatus::Partial),
        "{s:?}: resetting one connector leaves the other's state"
    );
}

/// Memory ids with slashes, quotes, SQL, unicode and 500 characters round-trip.
pub async fn odd_memory_ids(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("odd-ids");
    let mut odd: Vec<String> = [
        "a/b",
        "\"quoted\"",
        "it's",
        "🦀 crab émoji 記憶",
        "with space",
        "back\\slash",
        "../../etc/passwd",
        "line\nbreak\ttab",
        "'; DROP TABLE entries; --",
        "%s%n{}",
        "null",
        "0",
        "00",
        "Z",
        "a",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    odd.push("x".repeat(500));
    odd.push("é".repeat(500));
    let entries: Vec<_> = odd.iter().map(|id| full_entry(id, EntryStatus::Submitted)).collect();
    ok(s.checkpoint(&c, entries_only(entries.clone())).await, s, "checkpoint odd ids");

    let ids: Vec<_> = odd.iter().map(|id| mid(id)).collect();
    assert_eq!(ok(s.entries(&c, &ids).await, s, "read odd ids"), by_id(&entries), "{s:?}: odd ids round-trip");
    let listed = ok(s.entries_with_status(&c, &[EntryStatus::Submitted], 1_000).await, s, "list odd ids");
    let mut sorted = odd.clone();
    sorted.sort();
    assert_eq!(
        listed.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(),
        sorted.iter().map(String::as_str).collect::<Vec<_>>(),
        "{s:?}: memory-id order is the byte order of the UTF-8 ids"
    );
}

/// The mark a run writes before a document leaves (`sending`, with the
/// hash being sent and when) reads back whole, is counted and listed, and
/// the settlement that follows in one checkpoint with other entries moves it.
pub async fn sending_marks(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("sending");
    let delivered = full_entry("replaced", EntryStatus::Processed);
    ok(s.checkpoint(&c, entries_only(vec![delivered.clone()])).await, s, "first delivery");
    let marks = vec![
        LedgerEntry { status: EntryStatus::Sending, last_ingested: Some(at(9)), ..delivered.clone() },
        LedgerEntry {
            pending_hash: Some(crate::ids::ContentHash::new("sha256:new")),
            last_ingested: Some(at(9)),
            ..bare_entry("new", EntryStatus::Sending)
        },
    ];
    ok(s.checkpoint(&c, entries_only(marks.clone())).await, s, "marks");
    let ids = [mid("replaced"), mid("new")];
    assert_eq!(ok(s.entries(&c, &ids).await, s, "read marks"), by_id(&marks), "{s:?}: marks read back whole");
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count marks"),
        BTreeMap::from([(EntryStatus::Sending, 2)]),
        "{s:?}: a mark moves the entry out of its old status"
    );
    let listed = ok(s.entries_with_status(&c, &[EntryStatus::Sending], 10).await, s, "list marks");
    assert_eq!(listed, vec![marks[1].clone(), marks[0].clone()], "{s:?}: marks are listed by status");

    // The answer settles one mark while the next one is written.
    let settled = LedgerEntry { status: EntryStatus::Submitted, ..marks[1].clone() };
    let next = LedgerEntry { last_ingested: Some(at(10)), ..bare_entry("next", EntryStatus::Sending) };
    ok(s.checkpoint(&c, entries_only(vec![settled.clone(), next.clone()])).await, s, "settle and mark");
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count after settling"),
        BTreeMap::from([(EntryStatus::Sending, 2), (EntryStatus::Submitted, 1)]),
        "{s:?}: counts follow a settlement and a mark written together"
    );
    let listed = ok(s.entries_with_status(&c, &[EntryStatus::Sending], 10).await, s, "list after settling");
    assert_eq!(
        listed.iter().map(|e| e.memory_id.as_str()).collect::<Vec<_>>(),
        ["next", "replaced"],
        "{s:?}: a settled mark leaves the listing"
    );
}

/// Marks passed as marks (a run's checkpoint, decision 28) read as the
/// `sending` entries [`LedgerEntry::marked`] makes over the stored ones,
/// wherever a store keeps them: looked up, listed, counted and in the
/// ledger's size; a later entry of the memory replaces its mark, and the
/// marks of a run that ended open stay for the next run, which settles them.
pub async fn marks_apart(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("marks");
    let lease = Duration::from_secs(60);
    let delivered = full_entry("replaced", EntryStatus::Processed);
    ok(s.checkpoint(&c, entries_only(vec![delivered.clone()])).await, s, "first delivery");
    ok(s.try_acquire_lease(&c, &rid("run-1"), at(0), lease).await, s, "acquire");
    let ids = [mid("replaced"), mid("new")];
    ok(s.entries(&c, &ids).await, s, "read before marking");
    let hash = crate::ids::ContentHash::new("5e".repeat(32));
    let name = "memory_ctx_new.txt";
    let marks = vec![
        LedgerEntry::marked(Some(&delivered), &mid("replaced"), &delivered.file_source, &hash, at(9)),
        LedgerEntry::marked(None, &mid("new"), name, &hash, at(9)),
    ];
    let marking = |owner: &str, entries: Vec<LedgerEntry>, marks: Vec<LedgerEntry>| Checkpoint {
        entries,
        marks,
        lease_owner: Some(rid(owner)),
        ..Checkpoint::default()
    };
    match s.checkpoint(&c, marking("run-0", Vec::new(), marks.clone())).await {
        Err(crate::state::StateError::LeaseLost { .. }) => {}
        other => panic!("{s:?}: marks from a run without the lease must be refused, got {other:?}"),
    }
    ok(s.checkpoint(&c, marking("run-1", Vec::new(), marks.clone())).await, s, "marks");
    assert_eq!(ok(s.entries(&c, &ids).await, s, "read marks"), by_id(&marks), "{s:?}: marks read as entries");
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count marks"),
        BTreeMap::from([(EntryStatus::Sending, 2)]),
        "{s:?}: a mark moves its memory out of its stored status"
    );
    let listed = ok(s.entries_with_status(&c, &[EntryStatus::Sending], 10).await, s, "list marks");
    assert_eq!(listed, vec![marks[1].clone(), marks[0].clone()], "{s:?}: marks are listed as sending");
    assert!(
        ok(s.entries_with_status(&c, &[EntryStatus::Processed], 10).await, s, "list processed").is_empty(),
        "{s:?}: a marked memory is not listed under its stored status"
    );
    assert_eq!(ok(s.ledger_view(&c).await, s, "view").entries, 2, "{s:?}: a marked new memory is in the ledger");

    // The run ends with one answer written; the other mark stays open.
    let answered = LedgerEntry { status: EntryStatus::Submitted, ..marks[1].clone() };
    ok(s.checkpoint(&c, marking("run-1", vec![answered.clone()], Vec::new())).await, s, "answer");
    ok(s.release_lease(&c, &rid("run-1")).await, s, "release");
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count after the answer"),
        BTreeMap::from([(EntryStatus::Sending, 1), (EntryStatus::Submitted, 1)]),
        "{s:?}: an answer replaces its mark"
    );

    // The next run finds the open mark and settles it.
    ok(s.try_acquire_lease(&c, &rid("run-2"), at(20), lease).await, s, "acquire again");
    let found = ok(s.entries(&c, &ids).await, s, "read in the next run");
    assert_eq!(found.get(&mid("replaced")), Some(&marks[0]), "{s:?}: an open mark outlives its run");
    assert_eq!(found.get(&mid("new")), Some(&answered), "{s:?}");
    let settled = LedgerEntry { status: EntryStatus::Submitted, ..marks[0].clone() };
    ok(s.checkpoint(&c, marking("run-2", vec![settled.clone()], Vec::new())).await, s, "settle");
    assert!(
        ok(s.entries_with_status(&c, &[EntryStatus::Sending], 10).await, s, "list after settling").is_empty(),
        "{s:?}: no mark is left"
    );
    assert_eq!(
        ok(s.status_counts(&c).await, s, "count after settling"),
        BTreeMap::from([(EntryStatus::Submitted, 2)]),
        "{s:?}"
    );
    assert_eq!(ok(s.entries(&c, &ids).await, s, "read settled"), by_id(&[settled, answered]), "{s:?}");
}
