//! The ledger digest: kept per connector, handed out only while it describes
//! the ledger's generation, moved on by writes without the lease, forgotten
//! by reset (see `state::digest`).

use super::data::{at, bare_entry, cid, entries_only, full_state, mid, rid};
use super::ok;
use crate::ids::MemoryId;
use crate::state::digest::{DigestRecord, DigestRoot, DigestShard, DigestWrite, LedgerView, SHARDS};
use crate::state::{Checkpoint, EntryStatus, StateStore};
use std::sync::Arc;
use std::time::Duration;

fn shard(n: u16, leaves: &[u64]) -> DigestShard {
    let records = leaves
        .iter()
        .enumerate()
        .map(|(i, &leaf)| DigestRecord { id: n as u64 + (i as u64) * SHARDS as u64, leaf })
        .collect();
    DigestShard { shard: n, records }
}

fn root_of(generation: u64, shards: &[&DigestShard]) -> DigestRoot {
    let mut root = DigestRoot::empty(generation, 42);
    for s in shards {
        root.sums[usize::from(s.shard)] = s.sum();
        root.counts[usize::from(s.shard)] = s.records.len() as u32;
    }
    root
}

fn write(root: DigestRoot, shards: Vec<DigestShard>, unconfirmed: Vec<MemoryId>) -> Checkpoint {
    Checkpoint {
        digest: Some(DigestWrite { digest: Some((root, shards)), unconfirmed: Some(unconfirmed) }),
        lease_owner: Some(rid("run-1")),
        connector: Some(full_state("digest")),
        ..Checkpoint::default()
    }
}

pub async fn ledger_digest(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("digest");
    let view = |v: Result<LedgerView, _>| ok(v, s, "ledger view");
    assert_eq!(view(s.ledger_view(&c).await), LedgerView::default(), "{s:?}: a new connector has no digest");

    ok(s.try_acquire_lease(&c, &rid("run-1"), at(0), Duration::from_secs(600)).await, s, "acquire");
    let entries = vec![bare_entry("a", EntryStatus::Processed), bare_entry("b", EntryStatus::WaitingTranscript)];
    let fenced = Checkpoint { entries, lease_owner: Some(rid("run-1")), ..Checkpoint::default() };
    ok(s.checkpoint(&c, fenced).await, s, "fenced entries");
    let seen = view(s.ledger_view(&c).await);
    assert_eq!((seen.generation, seen.entries), (0, 2), "{s:?}: a run's own writes keep the generation");

    let (three, five) = (shard(3, &[7, u64::MAX]), shard(5, &[9]));
    let root = root_of(0, &[&three, &five]);
    let long: Vec<MemoryId> = (0..2_500).map(|i| mid(&format!("unconfirmed-{i:05}"))).collect();
    ok(s.checkpoint(&c, write(root.clone(), vec![three.clone(), five.clone()], long.clone())).await, s, "digest");
    let seen = view(s.ledger_view(&c).await);
    assert_eq!(seen.digest.as_ref(), Some(&root), "{s:?}: the root reads back");
    assert_eq!(seen.unconfirmed.as_ref(), Some(&long), "{s:?}: 2,500 unconfirmed ids read back in order");
    let shards = ok(s.digest_shards(&c, &[5, 3, 7]).await, s, "digest shards");
    assert_eq!(shards, vec![five.clone(), three.clone(), shard(7, &[])], "{s:?}: shards as asked, unwritten empty");

    // A later write names only the shards that changed; the others keep theirs.
    let new_five = shard(5, &[1, 2]);
    let root = root_of(0, &[&three, &new_five]);
    ok(s.checkpoint(&c, write(root.clone(), vec![new_five.clone()], vec![mid("b")])).await, s, "digest again");
    let shards = ok(s.digest_shards(&c, &[3, 5]).await, s, "digest shards");
    assert_eq!(shards, vec![three.clone(), new_five.clone()], "{s:?}: an unnamed shard keeps its records");
    assert_eq!(view(s.ledger_view(&c).await).unconfirmed, Some(vec![mid("b")]), "{s:?}: short list inline");

    // A state write without a digest keeps it; so does a checkpoint of state only without the lease.
    let plain = Checkpoint { connector: Some(full_state("digest")), ..Checkpoint::default() };
    ok(s.checkpoint(&c, plain).await, s, "state only");
    assert_eq!(view(s.ledger_view(&c).await).digest.as_ref(), Some(&root), "{s:?}: no entries, same generation");

    // Entries written without the lease: the digest no longer describes the ledger.
    ok(s.checkpoint(&c, entries_only(vec![bare_entry("a", EntryStatus::Failed)])).await, s, "unfenced");
    let seen = view(s.ledger_view(&c).await);
    assert!(seen.generation > 0, "{s:?}: an unfenced write moves the generation: {seen:?}");
    assert_eq!(seen.digest, None, "{s:?}: a digest of another generation is not handed out");
    assert_eq!(seen.unconfirmed, Some(vec![mid("b")]), "{s:?}: the unconfirmed ids do not depend on it");
    assert_eq!(seen.entries, 2);

    let current = root_of(seen.generation, &[&three, &new_five]);
    ok(s.checkpoint(&c, write(current.clone(), Vec::new(), Vec::new())).await, s, "digest of the new generation");
    assert_eq!(view(s.ledger_view(&c).await).digest, Some(current), "{s:?}: valid again");

    // Forgotten by a write without a digest part ...
    let clear = Checkpoint {
        digest: Some(DigestWrite { digest: None, unconfirmed: Some(vec![mid("a")]) }),
        lease_owner: Some(rid("run-1")),
        ..Checkpoint::default()
    };
    ok(s.checkpoint(&c, clear).await, s, "forget the digest");
    let seen = view(s.ledger_view(&c).await);
    assert_eq!((seen.digest, seen.unconfirmed), (None, Some(vec![mid("a")])), "{s:?}: forgotten, list kept");
    let unknown = Checkpoint {
        digest: Some(DigestWrite { digest: None, unconfirmed: None }),
        lease_owner: Some(rid("run-1")),
        ..Checkpoint::default()
    };
    ok(s.checkpoint(&c, unknown).await, s, "forget the list");
    assert_eq!(view(s.ledger_view(&c).await).unconfirmed, None, "{s:?}: an unknown list reads back unknown");

    // ... and by reset, with the generation and the list.
    ok(s.checkpoint(&c, write(root_of(seen.generation, &[&three]), vec![three], Vec::new())).await, s, "again");
    ok(s.release_lease(&c, &rid("run-1")).await, s, "release");
    ok(s.reset(&c, at(1)).await, s, "reset");
    assert_eq!(view(s.ledger_view(&c).await), LedgerView::default(), "{s:?}: reset forgets the digest");
    assert_eq!(
        ok(s.digest_shards(&c, &[3]).await, s, "shards after reset"),
        vec![shard(3, &[])],
        "{s:?}: reset forgets the shards"
    );
    assert_eq!(view(s.ledger_view(&cid("other")).await), LedgerView::default(), "{s:?}: per connector");
}
