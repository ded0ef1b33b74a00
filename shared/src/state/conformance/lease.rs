//! The lease: single flight per connector, and checkpoints fenced by it.

use super::data::{at, bare_entry, cid, entries_only, full_state, mid, rid, run};
use super::ok;
use crate::state::{Checkpoint, EntryStatus, LeaseOutcome, StateError, StateStore};
use chrono::TimeDelta;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

/// Free -> acquired; held while unexpired (also at the last millisecond);
/// renewed by its holder; taken over once expired; released only by its owner.
pub async fn lease_lifecycle(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("lease-lifecycle");
    assert_eq!(ok(s.lease(&c).await, s, "lease of a new connector"), None, "{s:?}: a new connector has no lease");

    // `now` with sub-millisecond precision: the returned lease is what the store keeps.
    let now = at(0) + TimeDelta::microseconds(456);
    let LeaseOutcome::Acquired(first) = ok(s.try_acquire_lease(&c, &rid("run-a"), now, TTL).await, s, "acquire free")
    else {
        panic!("{s:?}: a free lease must be acquired");
    };
    assert_eq!(first.owner, rid("run-a"), "{s:?}: lease owner");
    assert!(
        first.acquired_at <= now && now - first.acquired_at < TimeDelta::milliseconds(1),
        "{s:?}: acquired_at {} should be `now` ({now}) to the millisecond",
        first.acquired_at
    );
    assert_eq!(first.expires_at - first.acquired_at, TimeDelta::seconds(60), "{s:?}: expires_at = acquired_at + ttl");
    assert_eq!(
        ok(s.lease(&c).await, s, "read lease"),
        Some(first.clone()),
        "{s:?}: lease() returns exactly the acquired lease"
    );

    let last_moment = first.expires_at - TimeDelta::milliseconds(1);
    assert_eq!(
        ok(s.try_acquire_lease(&c, &rid("run-b"), last_moment, TTL).await, s, "acquire held"),
        LeaseOutcome::Held(first.clone()),
        "{s:?}: an unexpired lease is held by its owner"
    );

    let renewed_at = at(10);
    let renewed = match ok(s.try_acquire_lease(&c, &rid("run-a"), renewed_at, TTL).await, s, "renew") {
        LeaseOutcome::Acquired(lease) => lease,
        other => panic!("{s:?}: the holder taking its lease again renews it, got {other:?}"),
    };
    assert_eq!(renewed.expires_at, renewed_at + TimeDelta::seconds(60), "{s:?}: renewal extends the lease");

    let taken = match ok(s.try_acquire_lease(&c, &rid("run-b"), renewed.expires_at, TTL).await, s, "take expired") {
        LeaseOutcome::Acquired(lease) => lease,
        other => panic!("{s:?}: a lease is expired at its expires_at and can be taken, got {other:?}"),
    };
    assert_eq!(taken.owner, rid("run-b"), "{s:?}: new owner after takeover");

    ok(s.release_lease(&c, &rid("run-a")).await, s, "release by non-owner");
    assert_eq!(
        ok(s.lease(&c).await, s, "read lease"),
        Some(taken.clone()),
        "{s:?}: a release by a run that does not hold the lease changes nothing"
    );
    ok(s.release_lease(&c, &rid("run-b")).await, s, "release by owner");
    assert_eq!(ok(s.lease(&c).await, s, "read lease"), None, "{s:?}: released by its owner, the lease is gone");
    ok(s.release_lease(&c, &rid("run-b")).await, s, "release twice");

    let again = ok(s.try_acquire_lease(&c, &rid("run-c"), at(20), TTL).await, s, "acquire after release");
    assert!(matches!(again, LeaseOutcome::Acquired(_)), "{s:?}: a released lease is free, got {again:?}");
}

/// 20 concurrent acquirers: exactly one wins, the others see the winner.
pub async fn lease_single_flight(store: Arc<dyn StateStore>) {
    let c = cid("single-flight");
    let outcomes = acquire_concurrently(std::slice::from_ref(&store), &c, 20).await;
    assert_single_winner(store.as_ref(), &outcomes, &c).await;
}

/// Spawns `count` acquirers spread over `stores`, all at the same instant.
pub(super) async fn acquire_concurrently(
    stores: &[Arc<dyn StateStore>],
    connector: &crate::ids::ConnectorId,
    count: usize,
) -> Vec<LeaseOutcome> {
    let start = Arc::new(tokio::sync::Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (connector, start) = (connector.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let outcome = store.try_acquire_lease(&connector, &rid(&format!("racer-{i:02}")), at(0), TTL).await;
                (store, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        match task.await {
            Ok((store, outcome)) => outcomes.push(ok(outcome, store.as_ref(), "concurrent acquire")),
            Err(join) => panic!("an acquiring task failed: {join}"),
        }
    }
    outcomes
}

pub(super) async fn assert_single_winner(
    s: &dyn StateStore,
    outcomes: &[LeaseOutcome],
    connector: &crate::ids::ConnectorId,
) {
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            LeaseOutcome::Acquired(lease) => Some(lease.clone()),
            LeaseOutcome::Held(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{s:?}: exactly one of {} concurrent acquirers wins: {outcomes:?}", outcomes.len());
    let winner = &winners[0];
    for outcome in outcomes {
        if let LeaseOutcome::Held(holder) = outcome {
            assert_eq!(holder, winner, "{s:?}: every loser is told who holds the lease");
        }
    }
    assert_eq!(ok(s.lease(connector).await, s, "read lease"), Some(winner.clone()), "{s:?}: the winner holds it");
}

/// A checkpoint naming a run that does not hold the lease writes nothing.
pub async fn lease_checkpoint_guard(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("fenced");
    let fenced = |owner: &str, id: &str| Checkpoint {
        entries: vec![bare_entry(id, EntryStatus::Submitted)],
        connector: Some(full_state("fenced")),
        run: Some(run("fenced", owner, at(0))),
        lease_owner: Some(rid(owner)),
        digest: None,
        marks: Vec::new(),
    };
    let assert_lost = |result: Result<(), StateError>, owner: &str, when: &str| match result {
        Err(StateError::LeaseLost { connector, owner: lost }) => {
            assert_eq!((connector, lost), (c.clone(), rid(owner)), "{s:?}: LeaseLost names connector and run ({when})");
        }
        other => panic!("{s:?}: a checkpoint {when} must fail with LeaseLost, got {other:?}"),
    };

    assert_lost(s.checkpoint(&c, fenced("run-a", "m1")).await, "run-a", "when nobody holds the lease");

    ok(s.try_acquire_lease(&c, &rid("run-a"), at(0), TTL).await, s, "acquire");
    assert_lost(s.checkpoint(&c, fenced("run-b", "m1")).await, "run-b", "by a run that never held the lease");
    assert_nothing_written(s, &c, "m1").await;

    // Expired but not taken over: the run still holds it and may write.
    ok(s.checkpoint(&c, fenced("run-a", "m2")).await, s, "checkpoint by the holder after expiry");
    assert_eq!(ok(s.entries(&c, &[mid("m2")]).await, s, "read entries").len(), 1, "{s:?}: the holder's write landed");

    ok(s.try_acquire_lease(&c, &rid("run-b"), at(61), TTL).await, s, "take over");
    assert_lost(s.checkpoint(&c, fenced("run-a", "m3")).await, "run-a", "after another run took the lease over");
    assert_lost(
        s.checkpoint(&c, Checkpoint { lease_owner: Some(rid("run-a")), ..entries_only(Vec::new()) }).await,
        "run-a",
        "with nothing to write",
    );
    assert!(
        ok(s.entries(&c, &[mid("m3")]).await, s, "read entries").is_empty(),
        "{s:?}: the fenced checkpoint wrote no entry"
    );
    let runs = ok(s.runs(&c, 10).await, s, "read runs");
    assert_eq!(runs.len(), 1, "{s:?}: only the holder's run record exists: {runs:?}");
}

async fn assert_nothing_written(s: &dyn StateStore, c: &crate::ids::ConnectorId, id: &str) {
    assert!(ok(s.entries(c, &[mid(id)]).await, s, "read entries").is_empty(), "{s:?}: LeaseLost wrote an entry");
    assert_eq!(ok(s.connector_state(c).await, s, "read state").as_ref(), None, "{s:?}: LeaseLost wrote the state");
    assert!(ok(s.runs(c, 10).await, s, "read runs").is_empty(), "{s:?}: LeaseLost wrote a run record");
}
