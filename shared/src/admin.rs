//! What an operator does to a connector, in one place for the CLI, the
//! management API of `serve` and the api function: reset, pause and resume,
//! list the failed memories and make them eligible again. Each entry point
//! only translates its request into one of these calls.

use crate::ids::{ConnectorId, MemoryId, RunId};
use crate::state::{Checkpoint, ConnectorState, EntryStatus, LedgerEntry, StateError, StateStore};
use chrono::{DateTime, Utc};

/// At most this many entries are listed by `failed`.
pub const FAILED_LIST_LIMIT: usize = 10_000;
/// Entries `retry-failed` reads and rewrites at a time: what it holds in
/// memory whatever the ledger's size (the api function has 128 MB), and
/// what a timeout half-way can leave undone (it is repeated safely).
const REPLAY_PAGE: usize = 1_000;

/// Where a killed run's lease may be released before it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbandonedLeases {
    /// A lease whose holder was a process of this host that is gone is
    /// released (the binary: `reset` need not wait for a killed run's lease).
    Release,
    /// Only expiry frees a lease (Lambda: sandboxes share host names, so a
    /// live run elsewhere would look gone).
    Keep,
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The killed run whose lease was released first, if any.
    pub released_lease: Option<RunId>,
}

/// Forgets the connector's ledger and state (history stays), so the next
/// sync re-sends every memory. Refused with [`StateError::Busy`] while a
/// run holds the lease.
pub async fn reset(
    store: &dyn StateStore,
    connector: &ConnectorId,
    leases: AbandonedLeases,
    now: DateTime<Utc>,
) -> Result<ResetOutcome, StateError> {
    let released_lease = match leases {
        AbandonedLeases::Release => release_abandoned_lease(store, connector).await?,
        AbandonedLeases::Keep => None,
    };
    if let Some(owner) = &released_lease {
        tracing::warn!(connector_id = %connector, previous = %owner, "the lease's process is gone (killed mid-run); released it");
    }
    store.reset(connector, now).await?;
    Ok(ResetOutcome { released_lease })
}

/// Sets or clears the connector's `paused` flag (the scheduler skips a
/// paused connector; a manual trigger still runs it).
pub async fn set_paused(store: &dyn StateStore, connector: &ConnectorId, paused: bool) -> Result<(), StateError> {
    let mut state = store.connector_state(connector).await?.unwrap_or_else(|| ConnectorState::new(connector.clone()));
    state.paused = paused;
    store.checkpoint(connector, Checkpoint { connector: Some(state), ..Default::default() }).await
}

/// The memories that need attention ([`EntryStatus::FAILED`]), by memory id.
pub async fn failed(store: &dyn StateStore, connector: &ConnectorId) -> Result<Vec<LedgerEntry>, StateError> {
    failed_first(store, connector, FAILED_LIST_LIMIT).await
}

/// The first `limit` of [`failed`] (a page that shows a few).
pub async fn failed_first(
    store: &dyn StateStore,
    connector: &ConnectorId,
    limit: usize,
) -> Result<Vec<LedgerEntry>, StateError> {
    store.entries_with_status(connector, &EntryStatus::FAILED, limit).await
}

/// Makes failed and dead memories eligible again on the next run (attempts
/// reset). Returns how many.
pub async fn retry_failed(store: &dyn StateStore, connector: &ConnectorId) -> Result<usize, StateError> {
    replay(store, connector, REPLAY_PAGE).await
}

/// [`retry_failed`] a page of `page` entries at a time, each page written
/// before the next is read (a replayed entry is `failed` again: the pages
/// go by memory id, so it is not listed twice).
async fn replay(store: &dyn StateStore, connector: &ConnectorId, page: usize) -> Result<usize, StateError> {
    let mut count = 0;
    let mut after: Option<MemoryId> = None;
    loop {
        let stuck = store.entries_with_status_after(connector, &EntryStatus::REPLAYABLE, after.as_ref(), page).await?;
        // Empty, not short, ends it: a page read through an eventually
        // consistent index may come back short with more after it.
        let Some(last) = stuck.last() else { return Ok(count) };
        after = Some(last.memory_id.clone());
        let replayed: Vec<LedgerEntry> = stuck
            .into_iter()
            .map(|mut e| {
                e.status = EntryStatus::Failed;
                e.attempts = 0;
                e.next_attempt_at = None;
                e
            })
            .collect();
        count += replayed.len();
        store.checkpoint(connector, Checkpoint { entries: replayed, ..Default::default() }).await?;
    }
}

/// Releases the connector's lease when the process that holds it ran on
/// this host and is gone (killed mid-run: it never released it). Returns
/// the released owner. Not for Lambda (see [`AbandonedLeases::Keep`]).
pub async fn release_abandoned_lease(
    store: &dyn StateStore,
    connector: &ConnectorId,
) -> Result<Option<RunId>, StateError> {
    match store.lease(connector).await? {
        Some(lease) if lease.owner.holder_is_gone() => {
            store.release_lease(connector, &lease.owner).await?;
            Ok(Some(lease.owner))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::json::JsonStore;
    use crate::state::{EntryCounts, Lease, LeaseOutcome, Trigger};
    use std::time::Duration;

    /// `status`'s "failed" count and the `failed` listing are one rule.
    #[tokio::test]
    async fn failed_lists_what_status_counts_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonStore::open(&dir.path().join("state.json")).await.unwrap();
        let connector = ConnectorId::new("c");
        let now = Utc::now();
        let entries: Vec<LedgerEntry> = EntryStatus::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| LedgerEntry::new(format!("m{i}").into(), format!("f{i}.txt"), *s, now))
            .collect();
        store.checkpoint(&connector, Checkpoint { entries, ..Default::default() }).await.unwrap();
        let listed = failed(&store, &connector).await.unwrap();
        let counts = EntryCounts::from_sparse(store.status_counts(&connector).await.unwrap());
        assert_eq!(listed.len() as u64, counts.failed());
        assert!(listed.iter().all(|e| e.status.is_failed()));
        assert!(!listed.iter().any(|e| e.status == EntryStatus::UpdatePending));
        assert_eq!(retry_failed(&store, &connector).await.unwrap(), EntryStatus::REPLAYABLE.len());
    }

    /// `retry-failed` goes a page at a time, so a ledger of any size is
    /// never held whole: every failed and dead entry is replayed once, the
    /// replayed ones (`failed` again) are not read again, and it ends.
    #[tokio::test]
    async fn retry_failed_replays_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonStore::open(&dir.path().join("state.json")).await.unwrap();
        let connector = ConnectorId::new("c");
        let now = Utc::now();
        let status = |i: usize| match i % 3 {
            0 => EntryStatus::Failed,
            1 => EntryStatus::Dead,
            _ => EntryStatus::Processed,
        };
        let entries: Vec<LedgerEntry> = (0..11)
            .map(|i| LedgerEntry {
                attempts: 5,
                ..LedgerEntry::new(format!("m{i:02}").into(), format!("f{i}"), status(i), now)
            })
            .collect();
        store.checkpoint(&connector, Checkpoint { entries, ..Default::default() }).await.unwrap();

        assert_eq!(replay(&store, &connector, 2).await.unwrap(), 8, "4 failed and 4 dead, in pages of 2");
        let all = store.entries_with_status(&connector, &EntryStatus::ALL, 100).await.unwrap();
        let replayed: Vec<&str> = all
            .iter()
            .filter(|e| e.status == EntryStatus::Failed && e.attempts == 0)
            .map(|e| e.memory_id.as_str())
            .collect();
        assert_eq!(replayed, ["m00", "m01", "m03", "m04", "m06", "m07", "m09", "m10"]);
        assert_eq!(all.iter().filter(|e| e.status == EntryStatus::Processed).count(), 3, "settled ones untouched");
    }

    /// Both shapes reset through here; only the binary releases a dead holder's lease.
    #[tokio::test]
    async fn reset_releases_a_killed_runs_lease_only_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonStore::open(&dir.path().join("state.json")).await.unwrap();
        let connector = ConnectorId::new("c");
        // A pid that cannot exist on this host: the holder is gone.
        let dead = RunId::new(format!("20260101T000000000Z-00000000@{}:4194305", crate::liveness::this_host()));
        let now = Utc::now();
        let taken = store.try_acquire_lease(&connector, &dead, now, Duration::from_secs(3600)).await.unwrap();
        assert!(matches!(taken, LeaseOutcome::Acquired(Lease { .. })));
        let kept = reset(&store, &connector, AbandonedLeases::Keep, now).await;
        assert!(matches!(kept, Err(StateError::Busy { .. })), "{kept:?}");
        let done = reset(&store, &connector, AbandonedLeases::Release, now).await.unwrap();
        assert_eq!(done.released_lease, Some(dead));
        assert_eq!(Trigger::parse("from-the-future"), Trigger::Unknown);
    }
}
