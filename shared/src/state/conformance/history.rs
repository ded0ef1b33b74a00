//! Run history, reset, retention and the list of connectors.

use super::data::{at, bare_entry, cid, entries_only, full_state, mid, rid, run, running};
use super::ok;
use crate::state::{Checkpoint, EntryStatus, RunStatus, StateError, StateStore};
use std::sync::Arc;
use std::time::Duration;

fn run_ids(runs: &[crate::state::RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

/// Newest first, limited, and a record written again by run id is replaced.
pub async fn runs_history(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("history");
    assert!(ok(s.runs(&c, 10).await, s, "runs of a new connector").is_empty(), "{s:?}: no history yet");
    for (id, started) in [("r2", at(200)), ("r1", at(100)), ("r3", at(300))] {
        ok(
            s.checkpoint(&c, Checkpoint { run: Some(running("history", id, started)), ..Checkpoint::default() }).await,
            s,
            "write run",
        );
    }
    assert_eq!(run_ids(&ok(s.runs(&c, 10).await, s, "runs")), ["r3", "r2", "r1"], "{s:?}: newest first");
    assert_eq!(run_ids(&ok(s.runs(&c, 2).await, s, "runs limited")), ["r3", "r2"], "{s:?}: limit keeps the newest");
    assert!(ok(s.runs(&c, 0).await, s, "runs limit 0").is_empty(), "{s:?}: limit 0 returns nothing");

    let finished = run("history", "r2", at(200));
    ok(s.checkpoint(&c, Checkpoint { run: Some(finished.clone()), ..Checkpoint::default() }).await, s, "rewrite run");
    let runs = ok(s.runs(&c, 10).await, s, "runs after rewrite");
    assert_eq!(run_ids(&runs), ["r3", "r2", "r1"], "{s:?}: a run written again is replaced, not added");
    assert_eq!(runs[1], finished, "{s:?}: the replaced run has the new fields");
    assert_eq!(runs[0].status, RunStatus::Running, "{s:?}: other runs are untouched");
}

/// Reset forgets the ledger and the state, keeps history, refuses while a run holds the lease.
pub async fn reset(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("reset");
    let entries = vec![bare_entry("m1", EntryStatus::Processed), bare_entry("m2", EntryStatus::Dead)];
    ok(s.try_acquire_lease(&c, &rid("run-1"), at(0), Duration::from_secs(60)).await, s, "acquire");
    ok(
        s.checkpoint(
            &c,
            Checkpoint {
                entries,
                connector: Some(full_state("reset")),
                run: Some(run("reset", "run-1", at(0))),
                lease_owner: Some(rid("run-1")),
                digest: None,
                marks: Vec::new(),
            },
        )
        .await,
        s,
        "checkpoint",
    );
    let holder = ok(s.lease(&c).await, s, "read lease").unwrap_or_else(|| panic!("{s:?}: lease should be held"));

    match s.reset(&c, at(30)).await {
        Err(StateError::Busy { connector, owner, expires_at }) => {
            assert_eq!(
                (connector, owner, expires_at),
                (c.clone(), holder.owner.clone(), holder.expires_at),
                "{s:?}: Busy names the connector, the running run and its lease expiry"
            );
        }
        other => panic!("{s:?}: reset while a run holds the lease must fail with Busy, got {other:?}"),
    }
    assert_eq!(ok(s.status_counts(&c).await, s, "count").len(), 2, "{s:?}: a refused reset changes nothing");
    assert!(ok(s.connector_state(&c).await, s, "state").is_some(), "{s:?}: a refused reset keeps the state");

    // Once the lease has expired the reset goes through.
    ok(s.reset(&c, holder.expires_at).await, s, "reset after the lease expired");
    assert!(
        ok(s.entries(&c, &[mid("m1"), mid("m2")]).await, s, "entries").is_empty(),
        "{s:?}: reset forgets the ledger"
    );
    assert!(ok(s.status_counts(&c).await, s, "count").is_empty(), "{s:?}: reset leaves no counts");
    assert_eq!(ok(s.connector_state(&c).await, s, "state"), None, "{s:?}: reset forgets the state");
    assert_eq!(run_ids(&ok(s.runs(&c, 10).await, s, "runs")), ["run-1"], "{s:?}: reset keeps the history");
    let next =
        ok(s.try_acquire_lease(&c, &rid("run-2"), holder.expires_at, Duration::from_secs(60)).await, s, "acquire");
    assert!(matches!(next, crate::state::LeaseOutcome::Acquired(_)), "{s:?}: lease free after reset: {next:?}");
    ok(s.release_lease(&c, &rid("run-2")).await, s, "release");
    ok(s.reset(&c, at(0)).await, s, "reset with no lease");
    ok(s.reset(&cid("never-seen"), at(0)).await, s, "reset of an unknown connector");
}

/// Retention removes one connector's runs started strictly before the cut-off.
pub async fn prune_runs(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    for connector in ["prune-a", "prune-b"] {
        for (id, started) in [("old", at(0)), ("cut", at(3_600)), ("new", at(7_200))] {
            let record = run(connector, &format!("{connector}-{id}"), started);
            ok(
                s.checkpoint(&cid(connector), Checkpoint { run: Some(record), ..Checkpoint::default() }).await,
                s,
                "write run",
            );
        }
    }
    assert_eq!(ok(s.prune_runs(&cid("prune-a"), at(3_600)).await, s, "prune"), 1, "{s:?}: the one old run removed");
    assert_eq!(
        run_ids(&ok(s.runs(&cid("prune-a"), 10).await, s, "runs")),
        ["prune-a-new", "prune-a-cut"],
        "{s:?}: a run started exactly at the cut-off is kept"
    );
    assert_eq!(
        run_ids(&ok(s.runs(&cid("prune-b"), 10).await, s, "runs")),
        ["prune-b-new", "prune-b-cut", "prune-b-old"],
        "{s:?}: another connector's history is untouched"
    );
    assert_eq!(ok(s.prune_runs(&cid("prune-b"), at(3_600)).await, s, "prune b"), 1);
    assert_eq!(ok(s.prune_runs(&cid("prune-a"), at(3_600)).await, s, "prune again"), 0, "{s:?}: nothing left");
    assert_eq!(ok(s.prune_runs(&cid("prune-a"), at(-1)).await, s, "prune nothing"), 0, "{s:?}: nothing that old");
    assert_eq!(ok(s.prune_runs(&cid("never-seen"), at(9_999)).await, s, "unknown"), 0);
}

/// Connectors with any record (state, ledger, history or lease), sorted.
pub async fn connectors_listing(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let listed = |ids: Vec<crate::ids::ConnectorId>| ids.into_iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
    assert!(ok(s.connectors().await, s, "list empty").is_empty(), "{s:?}: a new store has no connectors");
    ok(
        s.checkpoint(&cid("d-state"), Checkpoint { connector: Some(full_state("d-state")), ..Checkpoint::default() })
            .await,
        s,
        "state",
    );
    ok(s.checkpoint(&cid("b-ledger"), entries_only(vec![bare_entry("m", EntryStatus::Failed)])).await, s, "ledger");
    ok(
        s.checkpoint(
            &cid("a-history"),
            Checkpoint { run: Some(run("a-history", "r", at(0))), ..Checkpoint::default() },
        )
        .await,
        s,
        "run",
    );
    ok(s.try_acquire_lease(&cid("c-lease"), &rid("r"), at(0), Duration::from_secs(60)).await, s, "lease");
    assert_eq!(
        listed(ok(s.connectors().await, s, "list")),
        ["a-history", "b-ledger", "c-lease", "d-state"],
        "{s:?}: every connector with a state, entries, runs or a lease, sorted"
    );
    ok(s.reset(&cid("b-ledger"), at(0)).await, s, "reset");
    ok(s.release_lease(&cid("c-lease"), &rid("r")).await, s, "release");
    assert_eq!(
        listed(ok(s.connectors().await, s, "list after reset")),
        ["a-history", "d-state"],
        "{s:?}: a connector with nothing left is no longer listed"
    );
}

/// The status snapshot reads what the four single reads read, and nothing of
/// another connector.
pub async fn status_snapshot(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let c = cid("snapshot");
    let empty = ok(s.status_snapshot(&c).await, s, "snapshot of a new connector");
    assert_eq!(empty, crate::state::StatusSnapshot::default(), "{s:?}: a new connector has an empty snapshot");

    ok(s.try_acquire_lease(&c, &rid("snap-2"), at(300), Duration::from_secs(60)).await, s, "acquire");
    for (id, started) in [("snap-1", at(100)), ("snap-2", at(300))] {
        ok(
            s.checkpoint(
                &c,
                Checkpoint {
                    entries: vec![
                        bare_entry(&format!("{id}-a"), EntryStatus::Processed),
                        bare_entry(&format!("{id}-b"), EntryStatus::Dead),
                    ],
                    connector: Some(full_state("snapshot")),
                    run: Some(run("snapshot", id, started)),
                    lease_owner: None,
                    digest: None,
                    marks: Vec::new(),
                },
            )
            .await,
            s,
            "checkpoint",
        );
    }
    ok(s.checkpoint(&cid("other"), entries_only(vec![bare_entry("x", EntryStatus::Failed)])).await, s, "other");

    let snapshot = ok(s.status_snapshot(&c).await, s, "snapshot");
    assert_eq!(snapshot.state, ok(s.connector_state(&c).await, s, "state"), "{s:?}: snapshot state");
    assert!(snapshot.state.is_some(), "{s:?}: the state is there");
    assert_eq!(snapshot.lease, ok(s.lease(&c).await, s, "lease"), "{s:?}: snapshot lease");
    assert_eq!(snapshot.lease.as_ref().map(|l| l.owner.as_str()), Some("snap-2"), "{s:?}: the held lease");
    assert_eq!(
        snapshot.counts,
        std::collections::BTreeMap::from([(EntryStatus::Processed, 2), (EntryStatus::Dead, 2)]),
        "{s:?}: snapshot counts (this connector only)"
    );
    assert_eq!(snapshot.last_run.as_ref().map(|r| r.run_id.as_str()), Some("snap-2"), "{s:?}: the newest run");
    assert_eq!(snapshot.last_run, ok(s.runs(&c, 1).await, s, "runs").into_iter().next(), "{s:?}: snapshot run");
}

/// The state and lease of many connectors, read together, in the order asked.
pub async fn overviews(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let names: Vec<String> = (0..120).map(|i| format!("ov-{i:03}")).collect();
    for name in names.iter().step_by(3) {
        let state = Checkpoint { connector: Some(full_state(name)), ..Checkpoint::default() };
        ok(s.checkpoint(&cid(name), state).await, s, "state");
    }
    for name in names.iter().step_by(4) {
        ok(s.try_acquire_lease(&cid(name), &rid(name), at(0), Duration::from_secs(60)).await, s, "lease");
    }
    let mut asked: Vec<_> = names.iter().rev().map(|n| cid(n)).collect();
    asked.push(cid("never-seen"));
    let got = ok(s.overviews(&asked).await, s, "overviews");
    assert_eq!(got.len(), asked.len(), "{s:?}: one overview per connector asked");
    for (connector, overview) in asked.iter().zip(&got) {
        let i: Option<usize> = connector.as_str().strip_prefix("ov-").and_then(|n| n.parse().ok());
        assert_eq!(overview.state.is_some(), i.is_some_and(|i| i % 3 == 0), "{s:?}: state of {connector}");
        if let Some(state) = &overview.state {
            assert_eq!(state, &full_state(connector.as_str()), "{s:?}: the state of {connector} itself");
        }
        assert_eq!(
            overview.lease.as_ref().map(|l| l.owner.as_str()),
            i.filter(|i| i % 4 == 0).map(|_| connector.as_str()),
            "{s:?}: lease of {connector}"
        );
    }
}
