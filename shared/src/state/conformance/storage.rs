//! Several instances on one storage: what one writes, the others (and a
//! later reopen) read; concurrent writers lose nothing; the lease is single
//! flight across instances.

use super::StoreFactory;
use super::data::{at, bare_entry, cid, full_entry, full_state, mid, rid, run};
use super::lease::{acquire_concurrently, assert_single_winner};
use super::ok;
use crate::ids::{ConnectorId, MemoryId};
use crate::state::{Checkpoint, EntryStatus, StateStore};
use std::collections::BTreeMap;
use std::time::Duration;

/// `open_same` must open the same, initially empty, storage on every call
/// (the same file, the same table), as a second process would.
pub async fn check_persistence(open_same: &StoreFactory) {
    let c = cid("persisted");
    let first = open_same().await;
    let a = first.as_ref();
    let entries = vec![full_entry("m1", EntryStatus::Failed), bare_entry("m2", EntryStatus::Processed)];
    ok(a.try_acquire_lease(&c, &rid("run-1"), at(0), Duration::from_secs(60)).await, a, "acquire");
    ok(
        a.checkpoint(
            &c,
            Checkpoint {
                entries: entries.clone(),
                connector: Some(full_state("persisted")),
                run: Some(run("persisted", "run-1", at(0))),
                lease_owner: Some(rid("run-1")),
                digest: None,
                marks: Vec::new(),
            },
        )
        .await,
        a,
        "checkpoint",
    );
    let expected = Snapshot::read(a, &c, &["m1", "m2"]).await;
    assert_eq!(expected.entries.len(), 2, "{a:?}: the checkpoint is readable by its writer");

    let second = open_same().await;
    let b = second.as_ref();
    assert_eq!(
        Snapshot::read(b, &c, &["m1", "m2"]).await,
        expected,
        "{b:?}: a second instance reads the first's writes"
    );

    // Both instances have read (and cached) the storage; now each writes in turn.
    let replaced = bare_entry("m1", EntryStatus::Processed);
    ok(a.checkpoint(&c, Checkpoint { entries: vec![replaced.clone()], ..Checkpoint::default() }).await, a, "rewrite");
    ok(a.release_lease(&c, &rid("run-1")).await, a, "release");
    let seen = ok(b.entries(&c, &[mid("m1")]).await, b, "read after the other's write");
    assert_eq!(seen.get(&mid("m1")), Some(&replaced), "{b:?}: sees a write made after it had read");
    assert_eq!(ok(b.lease(&c).await, b, "lease"), None, "{b:?}: sees the other instance release the lease");
    ok(
        b.checkpoint(&c, Checkpoint { entries: vec![bare_entry("m3", EntryStatus::Dead)], ..Checkpoint::default() })
            .await,
        b,
        "write",
    );
    assert_eq!(
        ok(a.status_counts(&c).await, a, "count").get(&EntryStatus::Dead),
        Some(&1),
        "{a:?}: the first instance sees the second's write"
    );

    // Concurrent writers on both instances: no checkpoint is lost.
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { first.clone() } else { second.clone() };
            let c = c.clone();
            tokio::spawn(async move {
                let entry = bare_entry(&format!("w{i:02}"), EntryStatus::Submitted);
                let result = store.checkpoint(&c, Checkpoint { entries: vec![entry], ..Checkpoint::default() }).await;
                ok(result, store.as_ref(), "concurrent checkpoint");
            })
        })
        .collect();
    for writer in writers {
        if let Err(join) = writer.await {
            panic!("a concurrent writer failed: {join}");
        }
    }
    for store in [a, b] {
        assert_eq!(
            ok(store.status_counts(&c).await, store, "count").get(&EntryStatus::Submitted),
            Some(&20),
            "{store:?}: every concurrent checkpoint from both instances landed"
        );
    }

    // The lease is single flight across instances too.
    let racing = cid("persisted-race");
    let mut racers = vec![first.clone(), second.clone()];
    for _ in 0..4 {
        racers.push(open_same().await);
    }
    let outcomes = acquire_concurrently(&racers, &racing, 30).await;
    for racer in &racers {
        assert_single_winner(racer.as_ref(), &outcomes, &racing).await;
    }
    drop(racers);

    let expected = Snapshot::read(a, &c, &["m1", "m2", "m3", "w00", "w19"]).await;
    drop((first, second));
    let reopened = open_same().await;
    let r = reopened.as_ref();
    assert_eq!(
        Snapshot::read(r, &c, &["m1", "m2", "m3", "w00", "w19"]).await,
        expected,
        "{r:?}: a reopened store reads everything back"
    );
    assert_eq!(
        ok(r.connectors().await, r, "list").iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        ["persisted", "persisted-race"],
        "{r:?}: both connectors are listed after a reopen"
    );
}

/// Everything a store says about one connector.
#[derive(Debug, PartialEq)]
struct Snapshot {
    entries: BTreeMap<MemoryId, crate::state::LedgerEntry>,
    state: Option<crate::state::ConnectorState>,
    runs: Vec<crate::state::RunRecord>,
    lease: Option<crate::state::Lease>,
    counts: BTreeMap<EntryStatus, u64>,
    connectors: Vec<ConnectorId>,
}

impl Snapshot {
    async fn read(s: &dyn StateStore, c: &ConnectorId, ids: &[&str]) -> Self {
        let ids: Vec<_> = ids.iter().map(|id| mid(id)).collect();
        Self {
            entries: ok(s.entries(c, &ids).await, s, "entries").into_iter().collect(),
            state: ok(s.connector_state(c).await, s, "state"),
            runs: ok(s.runs(c, 100).await, s, "runs"),
            lease: ok(s.lease(c).await, s, "lease"),
            counts: ok(s.status_counts(c).await, s, "counts"),
            connectors: ok(s.connectors().await, s, "connectors"),
        }
    }
}
